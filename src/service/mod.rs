//! The services: protocol logic as sans-I/O state machines.
//!
//! Nothing in this module touches a socket. Each service takes bytes that
//! arrived and says what to send and whether to close; the protocols on
//! the loop (`src/proto/`) move the bytes. That split keeps every protocol
//! testable in memory, byte by byte, and keeps the loop readable.

mod answer;
pub mod bus;
pub mod chat;
pub mod echo;
pub mod game;
pub mod greet;
pub mod http;
pub mod resp;
pub mod ws;

pub use answer::{Ask, Asked, Outbox, Verdict};

/// Which service a listener serves (what its clients speak).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    /// Seed 000's greeting.
    Greet,
    /// TCP echo.
    Echo,
    /// UDP echo.
    Udp,
    /// Line chat with rooms.
    Chat,
    /// Echo over a Unix stream socket.
    Unix,
    /// The game over UDP.
    Game,
    /// HTTP/1.1: hello, stats, static files.
    Http,
    /// A listener of HTTP over TLS. Its connections are `Http` with a TLS
    /// transport: the protocol never knows.
    Https,
    /// A listener of echo over TLS. Its connections are `Echo` with a TLS
    /// transport.
    TlsEcho,
}

impl Service {
    /// The short name used in logs and error messages.
    pub fn name(self) -> &'static str {
        match self {
            Service::Greet => "greet",
            Service::Echo => "echo",
            Service::Udp => "udp",
            Service::Chat => "chat",
            Service::Unix => "unix",
            Service::Game => "game",
            Service::Http => "http",
            Service::Https => "https",
            Service::TlsEcho => "tls-echo",
        }
    }

    /// The protocol a listener's connections speak: `Http` for `Https`,
    /// `Echo` for `TlsEcho`, the service itself otherwise.
    pub fn base(self) -> Service {
        match self {
            Service::Https => Service::Http,
            Service::TlsEcho => Service::Echo,
            other => other,
        }
    }

    /// True for a listener whose clients speak TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Service::Https | Service::TlsEcho)
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
