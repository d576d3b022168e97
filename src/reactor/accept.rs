//! Listeners and the accept loop.
//!
//! Three pitfalls live here:
//! - one readable event on a listener can stand for many queued clients,
//!   so accept until `WouldBlock` (but at most `accepts_per_tick` per turn,
//!   keeping the listener on the ready list if it is cut short);
//! - past `--max-conns`, a client still gets accepted, told so in one line
//!   and closed, so the backlog drains and accepting resumes below the cap;
//! - EMFILE/ENFILE leave the client queued in the kernel. Under edge
//!   triggering no new event will come for it, so the loop would stall
//!   silently; under level triggering it would spin. We keep the listener
//!   marked ready and retry on a short timer, logging at most once a second.

use std::io::{self, ErrorKind};
use std::net::SocketAddr;

use log::{debug, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use crate::listen::UnixListen;
use crate::service::Service;
use crate::timer::Millis;
use crate::transport::Transport;

/// How long to wait before retrying accept after EMFILE/ENFILE.
pub const ACCEPT_RETRY_MS: Millis = 100;

/// The line a client gets when the server is full.
pub const FULL_LINE: &[u8] = b"ERROR too many connections\n";

/// A listening socket of one service.
#[derive(Debug)]
pub struct Listener {
    /// The socket.
    pub socket: ListenSocket,
    /// The service its clients get.
    pub service: Service,
    /// Clients may be waiting: set by an event, cleared by `WouldBlock`.
    pub ready: bool,
    /// On the reactor's ready list.
    pub queued: bool,
    /// After EMFILE: when to try accepting again (0: not waiting).
    pub retry_at: Millis,
}

/// A TCP or Unix listening socket.
#[derive(Debug)]
pub enum ListenSocket {
    /// TCP.
    Tcp(TcpListener),
    /// Unix stream; removes its socket file when dropped.
    Unix(UnixListen),
}

/// One accepted client and its address for the logs.
pub struct Accepted {
    /// The client's socket.
    pub transport: Transport,
    /// Where it came from, as text ("127.0.0.1:48437", "unix").
    pub peer: String,
}

impl Listener {
    /// A listener for `service`, not yet registered.
    pub fn new(socket: ListenSocket, service: Service) -> Listener {
        Listener {
            socket,
            service,
            ready: false,
            queued: false,
            retry_at: 0,
        }
    }

    /// Registers the listener for readable events (once, for its life).
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match &mut self.socket {
            ListenSocket::Tcp(l) => registry.register(l, token, Interest::READABLE),
            ListenSocket::Unix(u) => registry.register(&mut u.listener, token, Interest::READABLE),
        }
    }

    /// The bound TCP address, if TCP.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.socket {
            ListenSocket::Tcp(l) => l.local_addr().ok(),
            ListenSocket::Unix(_) => None,
        }
    }

    /// Accepts one client. `TCP_NODELAY` is set on TCP clients: replies are
    /// written whole, so Nagle's delay would only add latency.
    pub fn accept(&mut self) -> io::Result<Accepted> {
        match &mut self.socket {
            ListenSocket::Tcp(l) => {
                let (stream, addr): (TcpStream, SocketAddr) = l.accept()?;
                let _ = stream.set_nodelay(true);
                Ok(Accepted {
                    transport: Transport::Tcp(stream),
                    peer: addr.to_string(),
                })
            }
            ListenSocket::Unix(u) => {
                let (stream, _) = u.listener.accept()?;
                Ok(Accepted {
                    transport: Transport::Unix(stream),
                    peer: "unix".to_string(),
                })
            }
        }
    }
}

/// What the accept loop should do with an accept error.
#[derive(Debug, PartialEq, Eq)]
pub enum AcceptError {
    /// No more clients queued: wait for the next event.
    Drained,
    /// This client went away before we took it, or a signal interrupted
    /// us: go on with the next (nginx and accept(2) treat these as EAGAIN).
    Retry,
    /// Out of fds (or memory): retry on a timer.
    Exhausted,
}

/// Sorts an accept error into what to do about it.
pub fn classify(e: &io::Error) -> AcceptError {
    match e.kind() {
        ErrorKind::WouldBlock => AcceptError::Drained,
        ErrorKind::Interrupted | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset => {
            AcceptError::Retry
        }
        _ => match e.raw_os_error() {
            Some(libc::EPROTO) | Some(libc::ENETDOWN) | Some(libc::EHOSTUNREACH) => {
                AcceptError::Retry
            }
            // EMFILE, ENFILE, ENOBUFS, ENOMEM and anything unknown: back off.
            _ => AcceptError::Exhausted,
        },
    }
}

/// Turns a client away: one error line, best effort (a non-blocking write
/// into a fresh socket's empty send buffer), then close.
pub fn refuse(mut client: Accepted, line: &[u8]) {
    debug!("refused {}: server full", client.peer);
    if !line.is_empty()
        && let Err(e) = client.transport.write_plain(line)
    {
        debug!("refusal line to {} not sent: {e}", client.peer);
    }
    client.transport.discard_input();
}

/// Logs `msg` at warn level unless it was logged within the last second;
/// returns the new "last logged" time.
pub fn warn_throttled(last: Millis, now: Millis, msg: std::fmt::Arguments<'_>) -> Millis {
    if last == 0 || now.saturating_sub(last) >= 1000 {
        warn!("{msg}");
        now
    } else {
        last
    }
}
