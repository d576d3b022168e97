//! The byte pipe under a connection: plain TCP or a Unix stream today,
//! TLS later, behind one type the services never see (as Redis's
//! `ConnectionType` and sozu's `SocketHandler`).

use std::io::{self, Read, Write};
use std::net::Shutdown;

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};

/// One connection's socket. An enum rather than a trait object: one
/// pointer-free word of storage, and static dispatch on the hot path.
#[derive(Debug)]
pub enum Transport {
    /// A TCP stream.
    Tcp(TcpStream),
    /// A Unix domain stream.
    Unix(UnixStream),
}

impl Transport {
    /// Registers the socket once, for both directions; readiness is then
    /// tracked in user space, so the steady state makes no `epoll_ctl`.
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let both = Interest::READABLE | Interest::WRITABLE;
        match self {
            Transport::Tcp(s) => s.register(registry, token, both),
            Transport::Unix(s) => s.register(registry, token, both),
        }
    }

    /// Sends FIN: we will write no more, the peer may still send.
    pub fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.shutdown(Shutdown::Write),
            Transport::Unix(s) => s.shutdown(Shutdown::Write),
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.read(buf),
            Transport::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.write(buf),
            Transport::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
