//! Byte buffers and the pool they come from.
//!
//! An idle connection holds no buffer at all: `Option<Box<Buffer>>` is one
//! pointer, `None` while idle. When bytes arrive (or must be sent) the
//! connection takes a buffer from the [`Pool`]; when the buffer empties it
//! goes back. The pool keeps a bounded number of free buffers, so a burst
//! of traffic does not pin its peak memory forever.
//!
//! Every buffer counts its storage in a per-thread total as it is made,
//! grown and dropped ([`held_bytes`]): an event loop owns its buffers on
//! its own thread, so that total, less its pool's free buffers, is what
//! its connections hold (the whole-server memory cap reads it once a turn).

use std::cell::Cell;
use std::io::{self, Read};

thread_local! {
    /// Bytes of storage in this thread's live buffers.
    static HELD: Cell<usize> = const { Cell::new(0) };
}

/// Bytes of storage in the buffers alive on this thread (pooled or not).
pub fn held_bytes() -> usize {
    HELD.with(Cell::get)
}

/// Adds `grown` bytes to this thread's total and takes `shrunk` off.
fn count(grown: usize, shrunk: usize) {
    HELD.with(|h| h.set((h.get() + grown).saturating_sub(shrunk)));
}

/// Size of a read buffer: one read's worth.
pub const CHUNK: usize = 16 * 1024;

/// Size of a small output buffer: a chat line or a greeting fits, so fan-out
/// to ten thousand members does not pin ten thousand 16 KiB chunks.
pub const SMALL: usize = 512;

/// A byte queue: `bytes[head..tail]` holds data, `bytes[tail..]` is room
/// for more. The Vec is kept fully initialised (its `len` is its size) so
/// a `read` can go straight into the spare room without `unsafe`.
#[derive(Debug)]
pub struct Buffer {
    /// Storage; `bytes.len()` is the buffer's size.
    bytes: Vec<u8>,
    /// Start of the unconsumed data.
    head: usize,
    /// End of the data; where the next read or append lands.
    tail: usize,
}

impl Buffer {
    /// A buffer of `size` zeroed bytes.
    fn with_size(size: usize) -> Buffer {
        count(size, 0);
        Buffer {
            bytes: vec![0; size],
            head: 0,
            tail: 0,
        }
    }

    /// The data not yet consumed.
    pub fn data(&self) -> &[u8] {
        &self.bytes[self.head..self.tail]
    }

    /// The data not yet consumed, writable in place (TLS decrypts records
    /// where they lie).
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[self.head..self.tail]
    }

    /// Bytes of data held.
    pub fn len(&self) -> usize {
        self.tail - self.head
    }

    /// True when no data is held.
    pub fn is_empty(&self) -> bool {
        self.head == self.tail
    }

    /// Drops `n` bytes from the front (they were sent or parsed).
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.head += n.min(self.len());
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
        }
    }

    /// Drops the last `n` bytes of data (queued, never to be sent).
    pub fn truncate_back(&mut self, n: usize) {
        self.tail -= n.min(self.len());
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
        }
    }

    /// Appends `data`, growing the storage if it does not fit.
    pub fn extend(&mut self, data: &[u8]) {
        self.reserve(data.len());
        self.bytes[self.tail..self.tail + data.len()].copy_from_slice(data);
        self.tail += data.len();
    }

    /// Makes room for `n` more bytes at the tail: first by sliding the data
    /// to the front, then by growing the storage to the next power of two
    /// (a grown buffer is freed, not pooled, when it empties).
    pub fn reserve(&mut self, n: usize) {
        if self.bytes.len() - self.tail >= n {
            return;
        }
        if self.head > 0 {
            self.bytes.copy_within(self.head..self.tail, 0);
            self.tail -= self.head;
            self.head = 0;
        }
        if self.bytes.len() - self.tail < n {
            let want = (self.tail + n).next_power_of_two();
            count(want - self.bytes.len(), 0);
            self.bytes.resize(want, 0);
        }
    }

    /// Bytes of storage (what the buffer costs, whatever it holds).
    pub fn capacity(&self) -> usize {
        self.bytes.len()
    }

    /// Reads once from `src` into the spare room (making `CHUNK` of room
    /// first if there is little). Returns what `read` returned.
    pub fn read_from(&mut self, src: &mut impl Read) -> io::Result<usize> {
        if self.bytes.len() - self.tail < CHUNK / 4 {
            self.reserve(CHUNK);
        }
        let n = src.read(&mut self.bytes[self.tail..])?;
        self.tail += n;
        Ok(n)
    }

    /// Makes room for `n` bytes, then lets `fill` write into exactly that
    /// room (e.g. a positioned file read); keeps what it reports written.
    pub fn fill_with(
        &mut self,
        n: usize,
        fill: impl FnOnce(&mut [u8]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        self.reserve(n);
        let got = fill(&mut self.bytes[self.tail..self.tail + n])?;
        self.tail += got.min(n);
        Ok(got.min(n))
    }

    /// Room left before the storage would have to grow or slide.
    pub fn spare(&self) -> usize {
        self.bytes.len() - self.tail
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        count(0, self.bytes.len());
    }
}

/// Free lists of buffers in two sizes, each bounded in count.
///
/// Buffers are boxed on purpose: a connection holds `Option<Box<Buffer>>`,
/// one word, and buffers move between it and the pool without copying.
#[derive(Debug)]
pub struct Pool {
    /// Empty `CHUNK`-sized buffers, for reads and large output.
    #[allow(clippy::vec_box)]
    chunks: Vec<Box<Buffer>>,
    /// Empty `SMALL`-sized buffers, for short output (chat lines).
    #[allow(clippy::vec_box)]
    smalls: Vec<Box<Buffer>>,
    /// Most buffers kept on each free list; the rest are freed.
    keep: usize,
    /// Fewest chunks and smalls that sat unused on the free lists since
    /// the last `trim`: that many were not needed, and can go.
    unused: (usize, usize),
}

impl Pool {
    /// A pool that keeps at most `keep` free buffers.
    pub fn new(keep: usize) -> Pool {
        Pool {
            chunks: Vec::new(),
            smalls: Vec::new(),
            keep,
            unused: (0, 0),
        }
    }

    /// Frees the buffers that sat unused since the last call, so memory
    /// taken by a burst goes back once the burst is over. Call it on a
    /// slow tick (the reactor does, once a second).
    pub fn trim(&mut self) {
        let (chunks, smalls) = self.unused;
        self.chunks
            .truncate(self.chunks.len() - chunks.min(self.chunks.len()));
        self.smalls
            .truncate(self.smalls.len() - smalls.min(self.smalls.len()));
        self.chunks.shrink_to_fit();
        self.smalls.shrink_to_fit();
        self.unused = (self.chunks.len(), self.smalls.len());
    }

    /// An empty `CHUNK` buffer (for a read): a pooled one if any, else new.
    pub fn get(&mut self) -> Box<Buffer> {
        let buf = self.chunks.pop();
        self.unused.0 = self.unused.0.min(self.chunks.len());
        buf.unwrap_or_else(|| Box::new(Buffer::with_size(CHUNK)))
    }

    /// An empty buffer fit for `n` bytes of output: small if they fit in
    /// `SMALL`, else a chunk. It grows later if more is queued.
    pub fn get_for(&mut self, n: usize) -> Box<Buffer> {
        if n > SMALL {
            return self.get();
        }
        let buf = self.smalls.pop();
        self.unused.1 = self.unused.1.min(self.smalls.len());
        buf.unwrap_or_else(|| Box::new(Buffer::with_size(SMALL)))
    }

    /// Returns a buffer to the free list of its size. A buffer that grew to
    /// another size, or one past `keep` on its list, is freed instead.
    pub fn put(&mut self, mut buf: Box<Buffer>) {
        let list = match buf.bytes.len() {
            CHUNK => &mut self.chunks,
            SMALL => &mut self.smalls,
            _ => return,
        };
        if list.len() < self.keep {
            buf.head = 0;
            buf.tail = 0;
            list.push(buf);
        }
    }

    /// Gives `slot`'s buffer back if it is empty, leaving `None`: the rule
    /// that keeps idle connections free of buffers.
    pub fn release_if_empty(&mut self, slot: &mut Option<Box<Buffer>>) {
        if slot.as_ref().is_some_and(|b| b.is_empty())
            && let Some(buf) = slot.take()
        {
            self.put(buf);
        }
    }

    /// Free buffers held right now (both sizes).
    pub fn free_count(&self) -> usize {
        self.chunks.len() + self.smalls.len()
    }

    /// Bytes of storage in the free buffers.
    pub fn free_bytes(&self) -> usize {
        self.chunks.len() * CHUNK + self.smalls.len() * SMALL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_consume_and_slide() {
        let mut pool = Pool::new(4);
        let mut b = pool.get();
        b.extend(b"hello world");
        b.consume(6);
        assert_eq!(b.data(), b"world");
        b.consume(5);
        assert!(b.is_empty());
        assert_eq!(b.spare(), CHUNK, "an emptied buffer rewinds to the front");
    }

    #[test]
    fn grown_buffers_are_freed_not_pooled() {
        let mut pool = Pool::new(4);
        let mut b = pool.get();
        let big = vec![7u8; CHUNK * 3 + 5];
        b.extend(&big);
        assert_eq!(b.data(), &big[..]);
        pool.put(b);
        assert_eq!(pool.free_count(), 0);
        let b = pool.get();
        assert!(b.is_empty());
        assert_eq!(b.spare(), CHUNK);
    }

    #[test]
    fn small_output_gets_a_small_buffer_that_can_grow() {
        let mut pool = Pool::new(4);
        let mut b = pool.get_for(20);
        assert_eq!(b.spare(), SMALL);
        b.extend(&[1u8; SMALL + 1]);
        assert_eq!(b.len(), SMALL + 1);
        assert!(pool.get_for(SMALL + 1).spare() >= CHUNK);
        let small = pool.get_for(1);
        pool.put(small);
        assert_eq!(pool.get_for(3).spare(), SMALL, "reused from the small list");
    }

    #[test]
    fn trim_frees_what_sat_unused_for_a_whole_period() {
        let mut pool = Pool::new(8);
        let bufs: Vec<_> = (0..4).map(|_| pool.get()).collect();
        for b in bufs {
            pool.put(b);
        }
        pool.trim(); // period 1 saw the pool empty: nothing was surplus
        assert_eq!(pool.free_count(), 4);
        let b = pool.get(); // period 2 dips to 3 free
        pool.put(b);
        pool.trim(); // 3 sat unused all period: freed
        assert_eq!(pool.free_count(), 1);
        pool.trim(); // the last one sat unused too
        assert_eq!(pool.free_count(), 0);
    }

    #[test]
    fn truncate_back_drops_queued_tail() {
        let mut pool = Pool::new(1);
        let mut b = pool.get();
        b.extend(b"line one\nline two\n");
        b.consume(5);
        b.truncate_back(9);
        assert_eq!(b.data(), b"one\n");
        b.truncate_back(100);
        assert!(b.is_empty());
    }

    #[test]
    fn buffers_count_their_storage_while_they_live() {
        let before = held_bytes();
        let mut pool = Pool::new(4);
        let mut b = pool.get();
        assert_eq!(held_bytes(), before + CHUNK);
        b.extend(&vec![1u8; CHUNK + 1]);
        assert_eq!(held_bytes(), before + 2 * CHUNK, "growth is counted");
        pool.put(b); // grown: freed, not pooled
        assert_eq!(held_bytes(), before);
        let small = pool.get_for(10);
        pool.put(small);
        assert_eq!(pool.free_bytes(), SMALL);
        assert_eq!(held_bytes() - pool.free_bytes(), before, "nothing lent out");
    }

    #[test]
    fn pool_keeps_at_most_keep() {
        let mut pool = Pool::new(2);
        let bufs: Vec<_> = (0..5).map(|_| pool.get()).collect();
        for b in bufs {
            pool.put(b);
        }
        assert_eq!(pool.free_count(), 2);
    }

    #[test]
    fn release_if_empty_only_when_empty() {
        let mut pool = Pool::new(2);
        let mut slot = Some(pool.get());
        slot.as_mut().unwrap().extend(b"x");
        pool.release_if_empty(&mut slot);
        assert!(slot.is_some());
        slot.as_mut().unwrap().consume(1);
        pool.release_if_empty(&mut slot);
        assert!(slot.is_none());
        assert_eq!(pool.free_count(), 1);
    }

    #[test]
    fn read_from_fills_spare_room() {
        let mut pool = Pool::new(1);
        let mut b = pool.get();
        let mut src: &[u8] = b"abc";
        assert_eq!(b.read_from(&mut src).unwrap(), 3);
        assert_eq!(b.data(), b"abc");
    }
}
