//! The byte pipe under a connection: plain TCP, a Unix stream or TLS over
//! TCP, behind one type the services never see (as Redis's
//! `ConnectionType` and sozu's `SocketHandler`).
//!
//! The loop talks to it in plaintext: `read_into` appends what the peer
//! sent, `write_from` takes what to send. What differs is what a count
//! proves. On a plain socket a short read means drained and a short write
//! means full (epoll(7)); under TLS neither holds (records arrive in
//! pieces, and one write encrypts at most one record), so TLS reports
//! readiness itself ([`Got::drained`], `WouldBlock`). TLS may also hold
//! ciphertext for the peer (`pending`) that the loop must send before a
//! close, and cannot carry data before its handshake (`can_send`).

use std::io::{self, Write};
use std::net::Shutdown;
use std::sync::Arc;

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};

use crate::buf::{Buffer, Pool};
pub use crate::tls::Got;
use crate::tls::TlsStream;

/// One connection's socket. An enum rather than a trait object: static
/// dispatch on the hot path, and the TLS state boxed so a plain
/// connection pays one word for the possibility.
#[derive(Debug)]
pub enum Transport {
    /// A TCP stream.
    Tcp(TcpStream),
    /// A Unix domain stream.
    Unix(UnixStream),
    /// TLS over a TCP stream (rustls, unbuffered).
    Tls(Box<TlsStream>),
}

impl Transport {
    /// Registers the socket once, for both directions; readiness is then
    /// tracked in user space, so the steady state makes no `epoll_ctl`.
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let both = Interest::READABLE | Interest::WRITABLE;
        match self {
            Transport::Tcp(s) => s.register(registry, token, both),
            Transport::Unix(s) => s.register(registry, token, both),
            Transport::Tls(t) => t.socket().register(registry, token, both),
        }
    }

    /// Wraps a TCP stream in a TLS server connection using `config`.
    pub fn start_tls(self, config: Arc<rustls::ServerConfig>) -> io::Result<Transport> {
        match self {
            Transport::Tcp(s) => Ok(Transport::Tls(Box::new(TlsStream::new(s, config)?))),
            _ => Err(io::Error::other("TLS runs over TCP only")),
        }
    }

    /// The peer's address (a TCP or TLS peer; `None` for a Unix peer, or
    /// once the socket is no longer connected). One `getpeername` call.
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Transport::Tcp(s) => s.peer_addr().ok(),
            Transport::Unix(_) => None,
            Transport::Tls(t) => t.peer_addr(),
        }
    }

    /// True for a TLS transport.
    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// Reads what the peer sent into `buf` (plaintext). `Ok(n == 0)` is
    /// the end of input. `peer_closed` (an RDHUP event) tells a plain
    /// socket that a short read does not prove it drained: the FIN is
    /// still to be read.
    pub fn read_into(
        &mut self,
        buf: &mut Buffer,
        pool: &mut Pool,
        peer_closed: bool,
    ) -> io::Result<Got> {
        let n = match self {
            Transport::Tcp(s) => buf.read_from(s)?,
            Transport::Unix(s) => buf.read_from(s)?,
            Transport::Tls(t) => return t.read_into(buf, pool),
        };
        // A read that did not fill the room means the socket is drained
        // (epoll(7)): skip the read that would only say WouldBlock.
        let drained = n > 0 && buf.spare() > 0 && !peer_closed;
        Ok(Got { n, drained })
    }

    /// Writes from `data` (plaintext); returns how much was taken.
    pub fn write_from(&mut self, data: &[u8], pool: &mut Pool) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.write(data),
            Transport::Unix(s) => s.write(data),
            Transport::Tls(t) => t.write_from(data, pool),
        }
    }

    /// Writes `data` to a plain stream (TCP or Unix); TLS takes nothing
    /// this way (its bytes go through `write_from`).
    #[inline]
    pub fn write_plain_stream(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.write(data),
            Transport::Unix(s) => s.write(data),
            Transport::Tls(_) => Ok(0),
        }
    }

    /// Sends bytes the transport itself holds (TLS ciphertext): `Ok` when
    /// none are left, `WouldBlock` when the socket is full.
    pub fn send_pending(&mut self, pool: &mut Pool) -> io::Result<()> {
        match self {
            Transport::Tls(t) => t.send_pending(pool),
            _ => Ok(()),
        }
    }

    /// Bytes the transport holds for the peer (TLS ciphertext).
    pub fn unsent(&self) -> usize {
        match self {
            Transport::Tls(t) => t.unsent(),
            _ => 0,
        }
    }

    /// True once data can be sent (TLS: after the handshake).
    pub fn can_send(&self) -> bool {
        match self {
            Transport::Tls(t) => t.can_send(),
            _ => true,
        }
    }

    /// Ends our direction: TLS sends `close_notify` first, then FIN.
    /// `Ok(false)` while the alert still waits for room in the socket.
    pub fn shutdown_write(&mut self, pool: &mut Pool) -> io::Result<bool> {
        match self {
            Transport::Tcp(s) => s.shutdown(Shutdown::Write).map(|()| true),
            Transport::Unix(s) => s.shutdown(Shutdown::Write).map(|()| true),
            Transport::Tls(t) => t.shutdown_write(pool),
        }
    }

    /// Bytes of buffer storage the transport holds itself (TLS records
    /// in and out).
    pub fn held(&self) -> usize {
        match self {
            Transport::Tls(t) => t.held(),
            _ => 0,
        }
    }

    /// For an outbound connection after a writable event: `Ok(true)` once
    /// `connect` has finished, `Ok(false)` while it is still on its way,
    /// the error if it failed.
    pub fn connect_result(&self) -> io::Result<bool> {
        let Transport::Tcp(s) = self else {
            return Ok(true);
        };
        if let Some(e) = s.take_error()? {
            return Err(e);
        }
        match s.peer_addr() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives any buffers the transport holds back to `pool` (on close).
    pub fn release(&mut self, pool: &mut Pool) {
        if let Transport::Tls(t) = self {
            t.release(pool);
        }
    }

    /// Writes `line` as is, best effort, on a plain socket (refusing a
    /// client); a TLS client cannot read plaintext, so it gets nothing.
    pub fn write_plain(&mut self, line: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.write(line),
            Transport::Unix(s) => s.write(line),
            Transport::Tls(_) => Ok(0),
        }
    }

    /// Before dropping a refused client: FIN after our line, then read and
    /// discard what it already sent (up to 64 KiB), since closing a socket
    /// with unread input sends RST, which can wipe our line from the
    /// client's buffer before it reads it. Best effort, never blocks.
    pub fn discard_input(&mut self) {
        let mut sink = [0u8; 4096];
        let (stream, fin): (&mut dyn io::Read, io::Result<()>) = match self {
            Transport::Tcp(s) => {
                let fin = s.shutdown(Shutdown::Write);
                (s, fin)
            }
            Transport::Unix(s) => {
                let fin = s.shutdown(Shutdown::Write);
                (s, fin)
            }
            Transport::Tls(_) => return,
        };
        if fin.is_err() {
            return;
        }
        for _ in 0..16 {
            match stream.read(&mut sink) {
                Ok(n) if n > 0 => {}
                _ => return,
            }
        }
    }
}
