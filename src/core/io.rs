//! What a hook may do: the connection it was called for ([`Io::link`],
//! with helpers to queue bytes and read the clock) and the rest of the
//! loop ([`Io::core`]: other connections, the pool, the counters). Input
//! comes separately, as an [`Input`] lent for the call, so a hook can read
//! its input while it writes to any connection, its own included.

use std::time::Duration;

use crate::buf::Buffer;

use super::kinds::Kinds;
use super::link::Link;
use super::state::Core;
use super::timer::Millis;

/// A hook's view of its connection and of the loop.
pub struct Io<'a, A: Kinds> {
    /// The connection's slab key (its token in the poll set).
    pub key: usize,
    /// The connection's I/O state (its slot is `InHand` meanwhile).
    pub link: &'a mut Link,
    /// Everything else the loop owns.
    pub core: &'a mut Core<A>,
}

impl<A: Kinds> Io<'_, A> {
    /// Queues `bytes` for this connection's peer.
    pub fn send(&mut self, bytes: &[u8]) {
        self.link.queue(bytes, &mut self.core.pool);
    }

    /// Queues a whole buffer for the peer (moved, not copied, when nothing
    /// else is queued).
    pub fn send_buffer(&mut self, buf: Box<Buffer>) {
        self.link.queue_buf(buf, &mut self.core.pool);
    }

    /// The protocol has more to send than it has queued (a file body):
    /// the loop calls its `drained` hook whenever the output has room,
    /// until the hook answers anything but `Again`.
    pub fn refill(&mut self) {
        self.link.refill = true;
    }

    /// True when the output is at its cap: take no new message now.
    pub fn full(&self) -> bool {
        self.link.unsent() >= self.core.limits.output_cap
    }

    /// Bytes that may still be queued before the output is at its cap.
    pub fn room(&self) -> usize {
        self.core
            .limits
            .output_cap
            .saturating_sub(self.link.unsent())
    }

    /// True once the peer has sent FIN: no input will come after what is
    /// buffered.
    pub fn peer_done(&self) -> bool {
        self.link.read_eof
    }

    /// "Now" on the loop's clock.
    pub fn now(&self) -> Millis {
        self.core.now()
    }

    /// `now + d` (a real deadline even for zero).
    pub fn due_in(&self, d: Duration) -> Millis {
        self.core.due_in(d)
    }

    /// `now + d`, or 0 (no deadline) for zero.
    pub fn timeout(&self, d: Duration) -> Millis {
        self.core.timeout(d)
    }

    /// Moves this connection's deadline to `when` (0: none) now, outside
    /// the once-per-turn `progress` hook (a keep-alive ping's answer).
    pub fn set_deadline(&mut self, when: Millis) {
        self.core.rearm(self.key, self.link, when);
    }
}

/// The bytes a connection has read and not yet used, lent to a hook. What
/// the hook consumes is dropped; the rest stays for its next call.
pub struct Input<'a> {
    /// The connection's input buffer, taken out for the call.
    buf: &'a mut Option<Box<Buffer>>,
}

impl<'a> Input<'a> {
    /// Lends `buf` to a hook.
    pub(super) fn new(buf: &'a mut Option<Box<Buffer>>) -> Input<'a> {
        Input { buf }
    }

    /// The unused bytes, oldest first.
    pub fn data(&self) -> &[u8] {
        self.buf.as_ref().map_or(&[], |b| b.data())
    }

    /// The unused bytes, writable in place (frames are unmasked where they
    /// lie).
    pub fn data_mut(&mut self) -> &mut [u8] {
        match self.buf.as_mut() {
            Some(b) => b.data_mut(),
            None => &mut [],
        }
    }

    /// True when no byte is left.
    pub fn is_empty(&self) -> bool {
        self.buf.as_ref().is_none_or(|b| b.is_empty())
    }

    /// Drops the first `n` bytes: they were used.
    pub fn consume(&mut self, n: usize) {
        if let Some(b) = self.buf.as_mut() {
            b.consume(n.min(b.len()));
        }
    }

    /// Keeps only the first `n` bytes (a decoder moved what it keeps to
    /// the front).
    pub fn keep_front(&mut self, n: usize) {
        if let Some(b) = self.buf.as_mut() {
            let len = b.len();
            b.truncate_back(len.saturating_sub(n));
        }
    }

    /// Takes the whole buffer (every byte counts as used).
    pub fn take(&mut self) -> Option<Box<Buffer>> {
        self.buf.take()
    }
}
