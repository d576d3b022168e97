//! One client connection: its socket, its readiness as last reported, its
//! buffers (none while idle) and where it is in its life.

use std::io::{self, ErrorKind};

use crate::buf::{Buffer, Pool};
use crate::service::Service;
use crate::timer::Millis;
use crate::transport::Transport;

use crate::service::http::{FileBody, HttpConn};
use crate::service::ws::Decoder;

/// Where a connection is in its life. Closing is staged, so the client
/// reads our last bytes before any reset (nginx's lingering close).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reading and writing normally.
    Open,
    /// Shutting down: still served until what already arrived is read and
    /// answered, then `Flushing`.
    Draining,
    /// No more reading: send what is queued, then FIN and `Lingering`.
    Flushing,
    /// FIN sent: read and discard until the client's FIN (or the linger
    /// deadline), so closing does not reset unread data away.
    Lingering,
    /// Done: on the reactor's `closed` list, removed from the slab after
    /// this iteration.
    /// Events still in this batch for its token are no-ops.
    Closed,
}

/// A client connection. Kept small: an idle one is 72 bytes here plus one
/// 16-byte timer entry, and no buffers.
#[derive(Debug)]
pub struct Conn {
    /// The socket (TCP, Unix or TLS), registered once for both directions.
    pub transport: Transport,
    /// Bytes read but not yet consumed by the service (a partial line);
    /// `None` when there are none.
    pub input: Option<Box<Buffer>>,
    /// Bytes queued for the client and not yet written; `None` when empty.
    pub output: Option<Box<Buffer>>,
    /// Protocol state an idle connection does not need: HTTP's body being
    /// discarded or file being sent, a WebSocket message in flight. `None`
    /// between requests and messages (so an idle connection pays 8 bytes).
    pub extra: Option<Box<Extra>>,
    /// When the timer should look at this connection (ms on the reactor
    /// clock; 0 = no deadline). Moved forward on activity; see `timer.rs`.
    pub deadline: Millis,
    /// A second time, by service (0: none). Chat: since when the output
    /// has stayed above the soft limit. HTTP: when the request head now
    /// arriving is due (its header deadline, which `deadline` may not pass
    /// while the head is incomplete).
    pub mark: Millis,
    /// Serial number, unique for the reactor's life (slab keys are reused).
    pub id: u32,
    /// The service this connection speaks.
    pub service: Service,
    /// Where it is in its life.
    pub phase: Phase,
    /// The last event said readable and no read has hit `WouldBlock` (or a
    /// short read) since: there may be bytes to read.
    pub readable: bool,
    /// There is room in the socket's send buffer, as far as we know.
    pub writable: bool,
    /// The client sent FIN (a read returned 0).
    pub read_eof: bool,
    /// An event said the peer closed its side (RDHUP): a short read no
    /// longer means drained, since the FIN itself is still to be read.
    pub peer_closed: bool,
    /// On the reactor's ready list (has leftover work for the next turn).
    pub queued: bool,
    /// On the reactor's flush list (output queued by another connection).
    pub flush_queued: bool,
    /// WebSocket: a keep-alive ping went out and no sign of life (input,
    /// or output taken by the socket) came since.
    pub pinged: bool,
}

/// The boxed, rarely needed part of a connection's protocol state.
#[derive(Debug)]
pub struct Extra {
    /// HTTP: where the request stream is while a body is being discarded.
    pub proto: HttpConn,
    /// HTTP: a file body being streamed.
    pub file: Option<FileBody>,
    /// WebSocket: the fragmented message being reassembled.
    pub ws: Decoder,
}

impl Extra {
    /// HTTP state `proto`, with no file and no WebSocket message.
    pub fn new(proto: HttpConn) -> Extra {
        Extra {
            proto,
            file: None,
            ws: Decoder::default(),
        }
    }
}

impl Conn {
    /// A fresh connection. Writable is assumed: a new socket has room in its
    /// send buffer, so a greeting can go out before the first event.
    pub fn new(transport: Transport, service: Service, id: u32) -> Conn {
        Conn {
            transport,
            input: None,
            output: None,
            extra: None,
            deadline: 0,
            mark: 0,
            id,
            service,
            phase: Phase::Open,
            readable: false,
            writable: true,
            read_eof: false,
            peer_closed: false,
            queued: false,
            flush_queued: false,
            pinged: false,
        }
    }

    /// Bytes queued for the client: our output, plus what the transport
    /// holds (TLS records not yet written), so flushing and the staged
    /// close wait for both.
    pub fn pending(&self) -> usize {
        self.output.as_ref().map_or(0, |b| b.len()) + self.transport.pending()
    }

    /// Queues `bytes` for the client, taking a buffer from `pool` if the
    /// connection has none.
    pub fn queue(&mut self, bytes: &[u8], pool: &mut Pool) {
        self.output
            .get_or_insert_with(|| pool.get_for(bytes.len()))
            .extend(bytes);
    }

    /// Queues a whole buffer: moved in without copying if nothing else is
    /// queued (echo's zero-copy path), else appended and returned to `pool`.
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
    /// returns the bytes of output taken. Bytes the transport holds (TLS)
    /// go first; output waits while the transport cannot carry it yet (a
    /// TLS handshake). On a plain socket a short write means the send
    /// buffer is full (epoll(7)), so we stop there instead of trying again
    /// only to get `WouldBlock`. The buffer goes back to the pool once empty.
    pub fn flush(&mut self, pool: &mut Pool) -> io::Result<usize> {
        let mut total = 0;
        let short_is_full = self.transport.short_write_means_full();
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
                    let short = n < out.len();
                    out.consume(n);
                    total += n;
                    if short && short_is_full {
                        self.writable = false;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        pool.release_if_empty(&mut self.output);
        Ok(total)
    }

    /// True while the connection is still serving its client.
    pub fn is_serving(&self) -> bool {
        matches!(self.phase, Phase::Open | Phase::Draining)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_connection_stays_small() {
        // The memory goal is 128 bytes per idle connection, all counted.
        assert!(std::mem::size_of::<Conn>() <= 72);
        assert!(std::mem::size_of::<super::super::Slot>() <= 72);
    }
}
