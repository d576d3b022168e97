//! A client connection's byte stream, plain TCP or TLS, for loops that
//! are edge-triggered: [`Stream::read`] and [`Stream::write`] behave like
//! a non-blocking socket's (`WouldBlock` when nothing can move), whatever
//! TLS does underneath.
//!
//! TLS is rustls's buffered `ClientConnection`. The edge-triggered
//! pitfalls it brings, handled here:
//! - a plaintext read shorter than the buffer proves nothing (records
//!   arrive in pieces, and a record's plaintext may wait in rustls):
//!   `read` returns `WouldBlock` only once the socket said so and rustls
//!   holds no plaintext, and callers read until then;
//! - reading can make TLS want to write (handshake messages, a key
//!   update, an alert): `read` writes them on the way;
//! - plaintext taken is not yet on the wire: ciphertext can wait in
//!   rustls for the socket, so [`Stream::flush`] comes first on every
//!   writable event, and [`Stream::pending`] says when it must.

use std::io::{self, ErrorKind, IoSlice, Read, Write};

use mio::net::TcpStream;
use rustls::ClientConnection;

use super::tls::Tls;

/// A connection's bytes: TCP, or TLS over TCP.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS (boxed: a rustls connection is large, and plain connections
    /// should not pay for it).
    Tls(Box<TlsStream>),
}

/// A TLS client connection on a socket.
#[derive(Debug)]
pub struct TlsStream {
    /// The socket.
    sock: TcpStream,
    /// rustls's state and buffers.
    conn: ClientConnection,
    /// The socket read returned 0 (the peer's FIN).
    sock_eof: bool,
}

/// How a TLS handshake went, once it is done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// It resumed an earlier session (no certificate, no key exchange
    /// from scratch, in TLS 1.2; a PSK in TLS 1.3).
    pub resumed: bool,
    /// Protocol version, cipher suite and key exchange group, e.g.
    /// `TLSv1_3 TLS13_AES_256_GCM_SHA384 X25519`.
    pub params: String,
}

/// A TLS error as an I/O error of kind `InvalidData` (how callers tell a
/// TLS failure from a socket's).
fn tls_err(e: rustls::Error) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, format!("tls: {e}"))
}

impl Stream {
    /// A plain stream on `sock`, or, with `tls`, a TLS client whose
    /// handshake starts at the first write or [`Stream::handshake`].
    pub fn new(sock: TcpStream, tls: Option<&Tls>) -> io::Result<Stream> {
        let plain = Stream::Plain(sock);
        match tls {
            None => Ok(plain),
            Some(t) => plain.into_tls(t),
        }
    }

    /// The same socket, now a TLS client (its ClientHello, with fresh key
    /// shares, made here); a TLS stream stays as it is.
    pub fn into_tls(self, tls: &Tls) -> io::Result<Stream> {
        let Stream::Plain(sock) = self else {
            return Ok(self);
        };
        let conn = ClientConnection::new(tls.config.clone(), tls.name.clone()).map_err(tls_err)?;
        Ok(Stream::Tls(Box::new(TlsStream {
            sock,
            conn,
            sock_eof: false,
        })))
    }

    /// The socket, for registration and connect checks.
    pub fn socket(&mut self) -> &mut TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &mut t.sock,
        }
    }

    /// The socket, to look at.
    pub fn sock(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.sock,
        }
    }

    /// True for plain TCP, where a read shorter than the buffer means the
    /// socket is drained (epoll(7)); never for TLS.
    pub fn is_plain(&self) -> bool {
        matches!(self, Stream::Plain(_))
    }

    /// Reads plaintext into `buf`: `Ok(0)` is the end of the stream (FIN,
    /// or TLS `close_notify`), `WouldBlock` means nothing until the next
    /// event. A TLS error is `InvalidData`.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(t) => t.read(buf),
        }
    }

    /// Writes from `bufs` (in order, as one stream); returns the bytes
    /// taken. TLS takes plaintext while no ciphertext is stuck (it
    /// encrypts and sends what the socket accepts): a full socket is
    /// `WouldBlock` once earlier ciphertext cannot leave.
    pub fn write(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write_vectored(bufs),
            Stream::Tls(t) => t.write(bufs),
        }
    }

    /// Sends ciphertext waiting in rustls: `Ok` once it is all out,
    /// `WouldBlock` if the socket is full. Plain: nothing waits.
    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(_) => Ok(()),
            Stream::Tls(t) => t.flush(),
        }
    }

    /// True if ciphertext waits for the socket.
    pub fn pending(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(t) => t.conn.wants_write(),
        }
    }

    /// Drives the TLS handshake as far as the socket allows: `Ok(Some)`
    /// once it is done, `Ok(None)` while it waits for the server. Plain
    /// streams have none: done at once.
    pub fn handshake(&mut self) -> io::Result<Option<Handshake>> {
        let Stream::Tls(t) = self else {
            return Ok(Some(Handshake {
                resumed: false,
                params: String::new(),
            }));
        };
        loop {
            match t.flush() {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                other => other?,
            }
            if !t.conn.is_handshaking() {
                return Ok(Some(t.summary()));
            }
            match t.conn.read_tls(&mut t.sock) {
                Ok(0) => {
                    return Err(io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "tls: closed during the handshake",
                    ));
                }
                Ok(_) => {
                    t.conn.process_new_packets().map_err(tls_err)?;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// TLS: the handshake's kind and parameters, once it is done; None
    /// before, and for plain streams.
    pub fn handshake_done(&self) -> Option<Handshake> {
        match self {
            Stream::Tls(t) if !t.conn.is_handshaking() => Some(t.summary()),
            _ => None,
        }
    }

    /// TLS: queues `close_notify` and sends what the socket takes (the
    /// rest goes with the next flush); then the server closes its side.
    /// Plain: shuts our side for writing.
    pub fn close(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Tls(t) => {
                t.conn.send_close_notify();
                match t.flush() {
                    Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(()),
                    other => other,
                }
            }
        }
    }
}

impl TlsStream {
    /// See [`Stream::read`].
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                // FIN without close_notify: the end all the same (many
                // servers close so); a body sized by it could be cut.
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if self.sock_eof {
                return Ok(0);
            }
            match self.conn.read_tls(&mut self.sock) {
                Ok(0) => self.sock_eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            self.conn.process_new_packets().map_err(tls_err)?;
            // Post-handshake messages and alerts want out; a full socket
            // keeps them for the next flush.
            match self.flush() {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                other => other?,
            }
        }
    }

    /// See [`Stream::write`].
    fn write(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.flush()?;
        let n = self.conn.writer().write_vectored(bufs)?;
        match self.flush() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(n),
            Err(e) => Err(e),
            Ok(()) => Ok(n),
        }
    }

    /// See [`Stream::flush`].
    fn flush(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The finished handshake's kind and parameters.
    fn summary(&self) -> Handshake {
        let c = &self.conn;
        let name = |s: Option<String>| s.unwrap_or_else(|| "?".into());
        Handshake {
            resumed: c.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
            params: format!(
                "{} {} {}",
                name(c.protocol_version().map(|v| format!("{v:?}"))),
                name(
                    c.negotiated_cipher_suite()
                        .map(|s| format!("{:?}", s.suite()))
                ),
                name(
                    c.negotiated_key_exchange_group()
                        .map(|g| format!("{:?}", g.name()))
                ),
            ),
        }
    }
}
