//! The loop's clock and its one timer structure.
//!
//! Time is read once per loop iteration (`Clock::tick`), as Redis caches
//! its time: every deadline set during that iteration uses the same "now".
//! Times are milliseconds since the reactor started, in a `u64`.
//!
//! Connection deadlines live in a binary heap with *lazy re-arming*: a
//! connection keeps its current deadline in a field, and activity only
//! moves that field forward (no heap operation per read). When the heap
//! entry comes due, the reactor looks at the field: if it moved, the entry
//! is pushed again at the new time; if not, the deadline has passed. So a
//! connection normally has one heap entry, and a busy connection costs one
//! heap push per timeout period, not one per byte. Only a deadline moved
//! *earlier* (a close starting its short linger) pushes a second entry;
//! the later one finds the connection gone or re-arms harmlessly.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Milliseconds since the reactor started.
pub type Millis = u64;

/// The loop's cached clock.
#[derive(Debug)]
pub struct Clock {
    /// When the reactor started: time zero.
    start: Instant,
    /// "Now" for this iteration, in ms since `start`.
    now: Millis,
}

impl Clock {
    /// A clock starting at zero.
    pub fn new() -> Clock {
        Clock {
            start: Instant::now(),
            now: 0,
        }
    }

    /// Reads the OS clock; call once per iteration.
    pub fn tick(&mut self) -> Millis {
        // +1 keeps every deadline > 0, so 0 can mean "no deadline".
        self.now = self.start.elapsed().as_millis() as Millis + 1;
        self.now
    }

    /// "Now" as of the last tick.
    pub fn now(&self) -> Millis {
        self.now
    }

    /// `now + d`, always a real deadline (even for `d` zero: then it is
    /// due at the next timer phase).
    pub fn due_in(&self, d: Duration) -> Millis {
        self.now + d.as_millis() as Millis
    }

    /// `now + d`, or 0 (no deadline) when `d` is zero: for timeouts where
    /// zero means "never", like the idle timeout.
    pub fn timeout(&self, d: Duration) -> Millis {
        if d.is_zero() {
            0
        } else {
            self.now + d.as_millis() as Millis
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// One heap entry: at `when`, look at connection `key` (if its `id` still
/// matches: slab keys are reused, ids are not).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Due {
    /// When to look.
    pub when: Millis,
    /// Slab key of the connection (u32 keeps an entry at 16 bytes; keys
    /// stay below `max_conns`).
    pub key: u32,
    /// The connection's serial id when the entry was pushed.
    pub id: u32,
}

/// A min-heap of connection deadlines.
#[derive(Debug, Default)]
pub struct Timers {
    /// Entries, earliest first.
    heap: BinaryHeap<Reverse<Due>>,
}

impl Timers {
    /// An empty timer heap.
    pub fn new() -> Timers {
        Timers::default()
    }

    /// Schedules a look at connection `key`/`id` at `when`.
    pub fn push(&mut self, when: Millis, key: usize, id: u32) {
        let key = key as u32;
        self.heap.push(Reverse(Due { when, key, id }));
    }

    /// The earliest entry's time, if any.
    pub fn next(&self) -> Option<Millis> {
        self.heap.peek().map(|Reverse(d)| d.when)
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    pub fn pop_due(&mut self, now: Millis) -> Option<Due> {
        match self.heap.peek() {
            Some(Reverse(d)) if d.when <= now => self.heap.pop().map(|Reverse(d)| d),
            _ => None,
        }
    }

    /// Replaces every entry with `entries` (one per live connection), and
    /// gives back the memory the old ones took.
    pub fn rebuild(&mut self, entries: impl Iterator<Item = Due>) {
        let mut v: Vec<Reverse<Due>> = std::mem::take(&mut self.heap).into_vec();
        v.clear();
        v.extend(entries.map(Reverse));
        if v.capacity() > 4 * v.len().max(256) {
            v.shrink_to_fit();
        }
        self.heap = BinaryHeap::from(v);
    }

    /// Entries held (live and stale).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// The app's periodic timer: a fixed-rate schedule in microseconds (so a
/// period that is not a whole number of ms, 33.3 ms at 30 Hz, does not
/// drift), met at the loop's ms clock.
#[derive(Clone, Copy, Debug)]
pub(super) struct AppTimer {
    /// The period, in µs.
    pub(super) period_us: u64,
    /// When it is due next, in µs on the loop's clock.
    pub(super) next_us: u64,
}

impl AppTimer {
    /// The ms at which it is due (rounded up: never early).
    pub(super) fn due_ms(&self) -> Millis {
        self.next_us.div_ceil(1000)
    }

    /// Called at `now` (ms): if due, moves to the next period after `now`
    /// and answers the periods skipped on the way (`Some(0)`: none).
    pub(super) fn fire(&mut self, now: Millis) -> Option<u64> {
        let now_us = now * 1000;
        if now_us < self.next_us {
            return None;
        }
        let behind = (now_us - self.next_us) / self.period_us;
        self.next_us += (behind + 1) * self.period_us;
        Some(behind)
    }
}

/// Milliseconds from `now` until `deadline` as a poll timeout.
pub fn timeout_until(now: Millis, deadline: Millis) -> Duration {
    Duration::from_millis(deadline.saturating_sub(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_deadline_order_and_only_when_due() {
        let mut t = Timers::new();
        t.push(30, 1, 1);
        t.push(10, 2, 2);
        t.push(20, 3, 3);
        assert_eq!(t.next(), Some(10));
        assert_eq!(t.pop_due(9), None);
        assert_eq!(t.pop_due(25).map(|d| d.key), Some(2));
        assert_eq!(t.pop_due(25).map(|d| d.key), Some(3));
        assert_eq!(std::mem::size_of::<Due>(), 16);
        assert_eq!(t.pop_due(25), None);
        assert_eq!(t.len(), 1);
        t.rebuild(
            [Due {
                when: 40,
                key: 7,
                id: 9,
            }]
            .into_iter(),
        );
        assert_eq!(t.len(), 1, "rebuild keeps only what it is given");
        assert_eq!(t.pop_due(40).map(|d| d.key), Some(7));
    }

    #[test]
    fn the_app_timer_keeps_its_phase_and_counts_what_it_skips() {
        // 30 Hz: 33,333 µs, due at 34, 67, 100 ms (never early).
        let mut t = AppTimer {
            period_us: 33_333,
            next_us: 33_333,
        };
        assert_eq!(t.due_ms(), 34);
        assert_eq!(t.fire(33), None);
        assert_eq!(t.fire(34), Some(0));
        assert_eq!(t.due_ms(), 67);
        // Late by 2.5 periods: two are skipped, the next stays on the grid.
        assert_eq!(t.fire(67 + 83), Some(2));
        assert_eq!(t.next_us, 5 * 33_333);
        assert_eq!(t.fire(167), Some(0));
    }

    #[test]
    fn zero_duration_means_no_deadline() {
        let mut c = Clock::new();
        c.tick();
        assert_eq!(c.timeout(Duration::ZERO), 0);
        assert!(c.timeout(Duration::from_millis(5)) >= c.now() + 5);
    }
}
