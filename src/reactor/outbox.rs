//! The chat hub's `Outbox` over the reactor's connections.
//!
//! Fan-out appends a line to each receiver's output buffer and puts the
//! receiver on the flush list; the writes happen once, before the loop
//! sleeps, so ten lines to one member become one `write`. This is also
//! where output caps are enforced (Redis's `client-output-buffer-limit`
//! for pub/sub): a member over the hard limit, or over the soft limit for
//! longer than allowed, goes on the `too_slow` list. It is dropped after
//! the hub call returns, never in the middle of a fan-out.
//!
//! A member is judged on what the kernel would not take, not on what one
//! burst queued: once a member has a chunk's worth queued, the outbox
//! writes it out right away, and only what is left counts against the caps.
//! Otherwise one large read from a sender would push every reader over a
//! small cap before a single write was tried.

use slab::Slab;

use crate::buf::{CHUNK, Pool};
use crate::config::Limits;
use crate::service::{Outbox, Service};
use crate::timer::Millis;

use super::Slot;
use super::bus::Bus;
use super::ws::frame_lines;

/// An `Outbox` that writes into the reactor's connections.
pub struct ConnOutbox<'a> {
    /// All slots; only `Slot::Conn`s that are still serving receive bytes.
    pub slab: &'a mut Slab<Slot>,
    /// Where output buffers come from.
    pub pool: &'a mut Pool,
    /// Connections with output to write before the loop sleeps.
    pub flush: &'a mut Vec<usize>,
    /// Connections over their output cap, to drop after this call.
    pub too_slow: &'a mut Vec<usize>,
    /// The caps.
    pub limits: &'a Limits,
    /// The reactor's "now".
    pub now: Millis,
    /// The reactor's count of bytes written.
    pub bytes_out: &'a mut u64,
    /// The other loops, when there are several.
    pub bus: Option<&'a Bus>,
}

impl Outbox for ConnOutbox<'_> {
    fn send(&mut self, to: usize, bytes: &[u8]) {
        let Some(Slot::Conn(conn)) = self.slab.get_mut(to) else {
            return;
        };
        // A member on its way out gets nothing more.
        if !conn.is_serving() {
            return;
        }
        if conn.service == Service::Ws {
            frame_lines(conn, bytes, self.pool);
        } else {
            conn.queue(bytes, self.pool);
        }
        if conn.pending() >= CHUNK {
            // A write error here is met again by the flush before sleep,
            // which closes the connection; nothing to do about it now.
            if let Ok(n) = conn.flush(self.pool) {
                *self.bytes_out += n as u64;
            }
        }
        let pending = conn.pending();
        let limits = self.limits;
        if pending > limits.chat_output_hard {
            self.too_slow.push(to);
        } else if pending > limits.chat_output_soft {
            if conn.mark == 0 {
                conn.mark = self.now;
            } else if self.now - conn.mark >= limits.chat_soft_time.as_millis() as Millis {
                self.too_slow.push(to);
            }
        } else {
            conn.mark = 0;
        }
        if !conn.flush_queued {
            conn.flush_queued = true;
            self.flush.push(to);
        }
    }

    fn publish(&mut self, room: &str, line: &[u8]) {
        if let Some(bus) = self.bus {
            bus.publish(room, line);
        }
    }

    fn has_peers(&self) -> bool {
        self.bus.is_some()
    }
}
