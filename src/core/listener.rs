//! A listening socket and what its clients get (the accept loop that
//! takes them is `accept.rs`).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use crate::listen::UnixListen;
use crate::transport::Transport;

use super::timer::Millis;

/// A listening socket and what its clients get.
#[derive(Debug)]
pub struct Listener<L> {
    /// The socket.
    pub socket: ListenSocket,
    /// What its clients speak (the app's tag).
    pub listen: L,
    /// The TLS configuration its clients' handshakes use, if it is a TLS
    /// listener: the connection's transport is then TLS over the socket.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Clients may be waiting: set by an event, cleared by `WouldBlock`.
    pub ready: bool,
    /// On the loop's deferred list.
    pub deferred: bool,
    /// After EMFILE: when to try accepting again (0: not waiting).
    pub retry_at: Millis,
    /// Last time "server full" was logged (a throttle).
    pub(super) warned_full: Millis,
    /// Last time an accept error was logged (a throttle).
    pub(super) warned_error: Millis,
}

/// A TCP or Unix listening socket.
#[derive(Debug)]
pub enum ListenSocket {
    /// TCP.
    Tcp(TcpListener),
    /// Unix stream; removes its socket file when dropped.
    Unix(UnixListen),
}

impl<L: Copy + std::fmt::Display> Listener<L> {
    /// A listener whose clients speak `listen`, over TLS if `tls`.
    pub fn new(socket: ListenSocket, listen: L, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        Listener {
            socket,
            listen,
            tls,
            ready: false,
            deferred: false,
            retry_at: 0,
            warned_full: 0,
            warned_error: 0,
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

    /// Accepts one client, with its address for the logs. `TCP_NODELAY`
    /// is set on TCP clients: replies are written whole, so Nagle's delay
    /// would only add latency.
    pub(super) fn accept(&mut self) -> io::Result<(Transport, String)> {
        match &mut self.socket {
            ListenSocket::Tcp(l) => {
                let (stream, addr): (TcpStream, SocketAddr) = l.accept()?;
                let _ = stream.set_nodelay(true);
                Ok((Transport::Tcp(stream), addr.to_string()))
            }
            ListenSocket::Unix(u) => {
                let (stream, _) = u.listener.accept()?;
                Ok((Transport::Unix(stream), "unix".to_string()))
            }
        }
    }
}
