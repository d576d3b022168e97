//! One connection's I/O state: its socket, what the last events said about
//! it, its buffers (none while idle), and where it is in its life. This is
//! all the loop knows of a connection; what the bytes mean is its
//! protocol's state, kept beside it (`Conn::state`).

use std::io::{self, ErrorKind};

use crate::buf::{Buffer, Pool};
use crate::transport::Transport;

use super::timer::Millis;

/// Where a connection is in its life. Closing is staged, so the peer reads
/// our last bytes before any reset (nginx's lingering close).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// An outbound connection whose `connect` has not finished yet.
    Connecting,
    /// Reading and writing normally.
    Open,
    /// The server is shutting down: input that already arrived is still
    /// read and used, then the connection closes (`Flushing`).
    Draining,
    /// No more input is used: send what is queued (and what the protocol
    /// still has to send), then FIN and `Lingering`.
    Flushing,
    /// FIN sent: read and discard until the peer's FIN (or the linger
    /// deadline), so that closing does not reset unread data away.
    Lingering,
    /// Done: on the loop's `closed` list, freed after this turn. Events
    /// still in this batch for its token are no-ops.
    Closed,
}

/// A connection as the loop sees it. An idle one holds no buffer: both
/// queues are `None` until bytes arrive or must be sent.
#[derive(Debug)]
pub struct Link {
    /// The socket (TCP, Unix or TLS), registered once for both directions.
    pub transport: Transport,
    /// Bytes read and not yet used by the protocol (a partial message, or
    /// messages left while the output was full).
    pub input: Option<Box<Buffer>>,
    /// Bytes queued for the peer and not yet written.
    pub output: Option<Box<Buffer>>,
    /// When the timer phase looks at this connection (ms on the loop's
    /// clock; 0: never). Activity only moves the field; see `timer.rs`.
    pub deadline: Millis,
    /// Serial number, unique for the loop's life (slab keys are reused).
    pub id: u32,
    /// Where it is in its life.
    pub phase: Phase,
    /// The last event said readable, and no read has since returned
    /// `WouldBlock` or a short count: there may be bytes to read.
    pub readable: bool,
    /// There is room in the socket's send buffer, as far as we know.
    pub writable: bool,
    /// The peer sent FIN (a read returned 0): no more input will come.
    pub read_eof: bool,
    /// An event said the peer closed its side (RDHUP): a short read no
    /// longer proves the socket drained, since the FIN is still unread.
    pub peer_closed: bool,
    /// The protocol stopped using its input before the end (its output
    /// was full, or a budget ran out): use the rest before reading more.
    pub held_input: bool,
    /// The protocol has more to send than it queued (a file body): its
    /// `drained` hook is called whenever the output has room, until it
    /// answers anything but `Again`.
    pub refill: bool,
    /// On the loop's deferred list: it has work no event will announce.
    pub deferred: bool,
    /// On the loop's flush list: another connection queued output for it.
    pub flush_queued: bool,
}

impl Link {
    /// A new connection in `phase`. Writable is assumed: a new socket has
    /// room in its send buffer, so first words can go out before any event.
    pub fn new(transport: Transport, id: u32, phase: Phase) -> Link {
        Link {
            transport,
            input: None,
            output: None,
            deadline: 0,
            id,
            phase,
            readable: false,
            writable: phase != Phase::Connecting,
            read_eof: false,
            peer_closed: false,
            held_input: false,
            refill: false,
            deferred: false,
            flush_queued: false,
        }
    }

    /// Bytes queued for the peer: our output plus what the transport holds
    /// (TLS records not yet written), so flushing and the staged close wait
    /// for both.
    pub fn unsent(&self) -> usize {
        self.output.as_ref().map_or(0, |b| b.len()) + self.transport.unsent()
    }

    /// True while the connection still serves its peer (its input is used).
    pub fn is_serving(&self) -> bool {
        matches!(self.phase, Phase::Open | Phase::Draining)
    }

    /// Bytes of buffer storage this connection holds (both queues and the
    /// transport's own), what the whole-server memory cap counts.
    pub fn held(&self) -> usize {
        let size = |b: &Option<Box<Buffer>>| b.as_ref().map_or(0, |b| b.capacity());
        size(&self.input) + size(&self.output) + self.transport.held()
    }

    /// Queues `bytes` for the peer, taking a buffer from `pool` if needed.
    pub fn queue(&mut self, bytes: &[u8], pool: &mut Pool) {
        self.output
            .get_or_insert_with(|| pool.get_for(bytes.len()))
            .extend(bytes);
    }

    /// Queues a whole buffer: moved in without a copy when nothing else is
    /// queued (a read buffer handed straight to the output), else appended
    /// and given back.
    pub fn queue_buf(&mut self, buf: Box<Buffer>, pool: &mut Pool) {
        match &mut self.output {
            None => self.output = Some(buf),
            Some(out) => {
                out.extend(buf.data());
                pool.put(buf);
            }
        }
    }

    /// Writes queued output until it is all sent or the socket is full;
    /// returns the bytes of output taken. The buffer goes back to the pool
    /// once empty.
    pub fn flush(&mut self, pool: &mut Pool) -> io::Result<usize> {
        let written = if self.transport.is_tls() {
            self.flush_tls(pool)?
        } else {
            self.flush_plain()?
        };
        pool.release_if_empty(&mut self.output);
        Ok(written)
    }

    /// `flush` on a plain socket, where a short write means the send
    /// buffer is full (epoll(7)): we stop there instead of trying again
    /// only to get `WouldBlock`.
    fn flush_plain(&mut self) -> io::Result<usize> {
        let mut total = 0;
        while self.writable {
            let Some(out) = self.output.as_mut().filter(|b| !b.is_empty()) else {
                break;
            };
            match self.transport.write_plain_stream(out.data()) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    let short = n < out.len();
                    out.consume(n);
                    total += n;
                    if short {
                        self.writable = false;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }

    /// `flush` over TLS: the records the transport holds go first, output
    /// waits while the handshake runs, and one write encrypts at most one
    /// record, so a short count proves nothing about the socket.
    fn flush_tls(&mut self, pool: &mut Pool) -> io::Result<usize> {
        let mut total = 0;
        while self.writable {
            match self.transport.send_pending(pool) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.writable = false;
                    break;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let Some(out) = self.output.as_mut() else {
                break;
            };
            if out.is_empty() || !self.transport.can_send() {
                break;
            }
            match self.transport.write_from(out.data(), pool) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    out.consume(n);
                    total += n;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }

    /// Gives every buffer back to `pool` (the connection is closing).
    pub fn release(&mut self, pool: &mut Pool) {
        for slot in [&mut self.input, &mut self.output] {
            if let Some(buf) = slot.take() {
                pool.put(buf);
            }
        }
        self.transport.release(pool);
    }
}

/// True for errors that mean "the peer went away": closed quietly, at
/// debug level, since they are part of normal life for a server.
pub fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset
            | ErrorKind::BrokenPipe
            | ErrorKind::ConnectionAborted
            | ErrorKind::UnexpectedEof
            | ErrorKind::WriteZero
            | ErrorKind::NotConnected
    )
}
