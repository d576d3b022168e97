//! Why a request failed ([`Kind`]), what a run ends with ([`Outcome`]),
//! and the run's own errors: every one
//! is a [`crate::Error`] (a bad flag or input file is `Config`; a failure
//! of the machinery, such as a thread or a file write, is `Io` with what
//! was being done).

use std::fmt;
use std::io;

/// Why a request (or a connection) failed; each failure counts once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The connection could not be made (refused, reset, unreachable).
    Connect,
    /// Reading failed, or the peer closed with requests in flight.
    Read,
    /// Writing failed.
    Write,
    /// No answer within `--timeout`.
    Timeout,
    /// The answer's bytes were wrong (echo mismatch, unparsable reply).
    Verify,
    /// HTTP status not 2xx or 3xx (or not one of `--expect-status`).
    Status,
    /// The TLS handshake failed (a certificate refused, an alert, no
    /// common parameters) or did not finish in time, or a record did not
    /// decrypt.
    Tls,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 7] = [
        Kind::Connect,
        Kind::Read,
        Kind::Write,
        Kind::Timeout,
        Kind::Verify,
        Kind::Status,
        Kind::Tls,
    ];

    /// The name used in the summary and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Connect => "connect",
            Kind::Read => "read",
            Kind::Write => "write",
            Kind::Timeout => "timeout",
            Kind::Verify => "verify",
            Kind::Status => "status",
            Kind::Tls => "tls",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What `run` asks the binary to exit with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The run finished (even with errors: they are in the report).
    Done,
    /// `compare` found a regression.
    Regression,
}

/// A user's mistake (a flag, an input file): `Error::Config(msg)`.
pub fn config(msg: impl Into<String>) -> crate::Error {
    crate::Error::Config(msg.into())
}

/// An I/O failure while doing `what`: `Error::Io`, its message naming it.
pub fn io(what: impl fmt::Display, e: io::Error) -> crate::Error {
    crate::Error::Io(io::Error::new(e.kind(), format!("{what}: {e}")))
}
