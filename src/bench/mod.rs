//! `reactor bench`: a load generator that is itself a mio event loop (one
//! per thread), and reports what happened without the known lies of the
//! usual tools. See `docs/BENCH.md`.
//!
//! - `cli.rs`: the flags. `run` below dispatches on them.
//! - `driver.rs`: the request/response loop over TCP (echo, tcp, http,
//!   connect): closed or open loop, a FIFO of send times per connection.
//! - `echo.rs` (echo and tcp), `http.rs`, `connect.rs`: the response
//!   parsers it drives.
//! - `udp.rs`, `chat.rs`, `idle.rs`: workloads with loops of their own.
//! - `record.rs`: histograms and counters, per thread, merged at the end.
//! - `run.rs`: threads, the per-second series, the live ticker, and the
//!   `Sleeper` every loop waits in (a timerfd for sends on schedule,
//!   spinning with `--busy-poll`).
//! - `procstat.rs`: `/proc` sampling of the server and of ourselves.
//! - `report.rs`: the summary, the JSON, `compare`; `plot.rs`: the SVG.
//! - `net.rs`: non-blocking connect from a chosen source address.

pub mod chat;
pub mod cli;
pub mod connect;
pub mod driver;
pub mod echo;
pub mod http;
pub mod idle;
pub mod net;
pub mod plot;
pub mod procstat;
pub mod record;
pub mod report;
pub mod run;
pub mod udp;

use std::fmt;

use cli::{BenchArgs, BenchCommand};

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
    /// HTTP status not 2xx or 3xx.
    Status,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 6] = [
        Kind::Connect,
        Kind::Read,
        Kind::Write,
        Kind::Timeout,
        Kind::Verify,
        Kind::Status,
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
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed bench run: a message for the user (exit code 2).
#[derive(Debug)]
pub struct BenchError(pub String);

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

/// What `run` asks the binary to exit with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The run finished (even with errors: they are in the report).
    Done,
    /// `compare` found a regression.
    Regression,
}

/// Runs `reactor bench ...`: the workload, then the report.
pub fn run(args: BenchArgs) -> Result<Outcome, BenchError> {
    match args.command {
        BenchCommand::Echo(a) => run::finish(echo::bench(&a)?, &a.common),
        BenchCommand::Http(a) => run::finish(http::bench(&a)?, &a.common),
        BenchCommand::Tcp(a) => run::finish(echo::bench_tcp(&a)?, &a.common),
        BenchCommand::Connect(a) => run::finish(connect::bench(&a)?, &a.common),
        BenchCommand::Udp(a) => run::finish(udp::bench(&a)?, &a.common),
        BenchCommand::Chat(a) => run::finish(chat::bench(&a)?, &a.common),
        BenchCommand::Ws(a) => run::finish(chat::bench_ws(&a)?, &a.common),
        BenchCommand::Idle(a) => run::finish(idle::bench(&a)?, &a.common),
        BenchCommand::Compare(a) => report::compare(&a),
    }
}
