//! The loop's clock and its one timer structure.
//!
//! Time is read once per loop iteration (`Clock::tick`), as Redis caches
//! its time: every deadline set during that iteration uses the same "now".
//! Times are milliseconds since the reactor started, in a `u64`; the app's
//! periodic timer alone counts microseconds, and has a timerfd of its own
//! to wake the loop on time (`AppTimer`).
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
    /// "Now" for this iteration, in ms since `start`, plus one.
    now: Millis,
    /// The same reading in µs since `start` (no plus one).
    now_us: u64,
}

impl Clock {
    /// A clock starting at zero.
    pub fn new() -> Clock {
        Clock {
            start: Instant::now(),
            now: 0,
            now_us: 0,
        }
    }

    /// Reads the OS clock; call once per iteration.
    pub fn tick(&mut self) -> Millis {
        // +1 keeps every deadline > 0, so 0 can mean "no deadline".
        self.now_us = self.start.elapsed().as_micros() as u64;
        self.now = self.now_us / 1000 + 1;
        self.now
    }

    /// "Now" as of the last tick, in µs since the start.
    pub fn now_us(&self) -> u64 {
        self.now_us
    }

    /// Nanoseconds from this very moment (the OS clock read afresh, not
    /// the turn's reading) until `us` µs after the start; 0 if past.
    pub fn ns_until(&self, us: u64) -> u64 {
        let at = Duration::from_micros(us);
        at.saturating_sub(self.start.elapsed()).as_nanos() as u64
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
/// drift), with a timerfd that wakes the loop when it is due.
///
/// Why the timerfd: poll's own timeout counts whole milliseconds, and mio
/// rounds it up, so a loop that slept on it woke at the first whole ms
/// of its clock after the due time, then up to a ms past that: each call
/// up to 2 ms late, so a 30 Hz tick's intervals were off by over 1 ms in
/// a third to half of the ticks. The timerfd sits in the poll set like a
/// socket, is armed for the due time to the nanosecond, and wakes
/// `epoll_wait` within microseconds of it. It is never read: the
/// registration is edge-triggered, and each expiry after a re-arm is a
/// new edge. Without it (it could not be made) the ms timeout does.
#[derive(Debug)]
pub(super) struct AppTimer {
    /// The period, in µs.
    pub(super) period_us: u64,
    /// When it is due next, in µs on the loop's clock.
    pub(super) next_us: u64,
    /// Armed for `next_us`; registered under [`ALARM`].
    pub(super) alarm: Option<crate::sys::TimerFd>,
}

/// The token of the app timer's timerfd. Slab keys count up from zero,
/// so the top of the token space is free for the loop's own sources.
pub(super) const ALARM: mio::Token = mio::Token(usize::MAX - 3);

impl AppTimer {
    /// The ms (on the loop's clock) at which poll must wake for it; `None`
    /// while the timerfd will wake it.
    pub(super) fn due_ms(&self) -> Option<Millis> {
        // The clock's ms are elapsed ms + 1: the first reading at or past
        // `next_us` is ceil(next_us / 1000) + 1 (never early).
        self.alarm
            .is_none()
            .then(|| self.next_us.div_ceil(1000) + 1)
    }

    /// Called at `clock`'s reading: if due, moves to the next period after
    /// it, arms the timerfd for that, and answers the periods skipped on
    /// the way (`Some(0)`: none).
    pub(super) fn fire(&mut self, clock: &Clock) -> Option<u64> {
        let now_us = clock.now_us();
        if now_us < self.next_us {
            return None;
        }
        let behind = (now_us - self.next_us) / self.period_us;
        self.next_us += (behind + 1) * self.period_us;
        self.arm(clock);
        Some(behind)
    }

    /// Arms the timerfd for `next_us`, measured from the OS clock now (the
    /// turn's work so far does not make it late). If that fails, the timer
    /// falls back to poll's ms timeout.
    pub(super) fn arm(&mut self, clock: &Clock) {
        if let Some(alarm) = &self.alarm
            && let Err(e) = alarm.set(clock.ns_until(self.next_us))
        {
            log::warn!("app timer: cannot arm its timerfd ({e}): using poll's ms timeout");
            self.alarm = None;
        }
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
        // 30 Hz: 33,333 µs; without a timerfd poll wakes at the first ms
        // reading at or past it (34 + 1: the clock's ms start at 1).
        let at = |us| Clock {
            start: Instant::now(),
            now: us / 1000 + 1,
            now_us: us,
        };
        let mut t = AppTimer {
            period_us: 33_333,
            next_us: 33_333,
            alarm: None,
        };
        assert_eq!(t.due_ms(), Some(35));
        assert_eq!(t.fire(&at(33_332)), None);
        assert_eq!(t.fire(&at(33_333)), Some(0));
        assert_eq!(t.next_us, 66_666);
        // Late by 2.5 periods: two are skipped, the next stays on the grid.
        assert_eq!(t.fire(&at(66_666 + 83_333)), Some(2));
        assert_eq!(t.next_us, 5 * 33_333);
        assert_eq!(t.fire(&at(5 * 33_333)), Some(0));
    }

    #[test]
    fn an_armed_app_timer_leaves_the_poll_timeout_alone() {
        let mut t = AppTimer {
            period_us: 1_000,
            next_us: 1_000,
            alarm: Some(crate::sys::TimerFd::new().unwrap()),
        };
        assert_eq!(t.due_ms(), None, "the timerfd wakes the loop");
        let c = Clock::new();
        t.arm(&c);
        assert!(t.alarm.is_some(), "arming a fresh timerfd succeeds");
        assert!(c.ns_until(1_000) <= 1_000_000);
        assert_eq!(c.ns_until(0), 0, "a time past is due now");
    }

    #[test]
    fn zero_duration_means_no_deadline() {
        let mut c = Clock::new();
        c.tick();
        assert_eq!(c.timeout(Duration::ZERO), 0);
        assert!(c.timeout(Duration::from_millis(5)) >= c.now() + 5);
    }
}
