//! The crate's one error type.
//!
//! Errors that end the server (a listener that cannot bind, a poll that
//! fails) are `Error`s. Errors on one connection never become an `Error`:
//! the reactor logs them and closes that connection alone.

use std::fmt;
use std::io;

/// Everything that can stop `reactor serve` or `reactor bench` from starting
/// or running.
#[derive(Debug)]
pub enum Error {
    /// A listening socket could not be opened: names the service and address
    /// so the one-line message says what to change.
    Bind {
        /// Which service asked for the address ("echo", "chat", ...).
        service: &'static str,
        /// The address as the user wrote it.
        addr: String,
        /// What the OS said.
        source: io::Error,
    },
    /// A value on the command line or in a `Config` makes no sense.
    Config(String),
    /// Any other I/O failure of the loop itself (poll, waker, signals).
    Io(io::Error),
    /// A second SIGINT/SIGTERM stopped the server before it had flushed.
    Aborted,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Bind {
                service,
                addr,
                source,
            } => write!(f, "{service}: cannot listen on {addr}: {source}"),
            Error::Config(msg) => write!(f, "{msg}"),
            Error::Io(e) => write!(f, "{e}"),
            Error::Aborted => write!(
                f,
                "stopped by a second signal before pending output was sent"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Bind { source, .. } => Some(source),
            Error::Io(e) => Some(e),
            Error::Config(_) | Error::Aborted => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
