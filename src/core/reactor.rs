//! The loop itself: one thread, one `mio::Poll`, one `Slab` of sockets.
//!
//! Each turn runs the same named phases, as Redis's `aeProcessEvents`
//! does:
//!
//! 1. **before sleep**: let the app do its own (`App::before_sleep`),
//!    write the output fan-out queued for other connections (at most once
//!    per `flush_delay`, if one is set), hold the
//!    memory cap, and free the connections closed during the turn (only
//!    now, after the event batch, because slab keys are reused);
//! 2. **poll** until the nearest deadline (or not at all, if the ready
//!    list has work left);
//! 3. **dispatch** each event: record the readiness in user space and let
//!    the slot do what it allows;
//! 4. **deferred list**: slots that were cut short by a fairness budget, or
//!    had work no event would announce, get their next slice;
//! 5. **timers**: deadlines, accept retries, the app's own periodic timer
//!    (`Core::every`), the 10 Hz housekeeping tick, the end of the shutdown
//!    grace.
//!
//! Every socket is registered once, for reading and writing, and its
//! readiness is remembered in its slot (`readable`, `writable`), cleared
//! only when an operation returns `WouldBlock` (or a short count). So the
//! steady state makes no `epoll_ctl` calls at all (sozu's design).
//!
//! The deferred list is what `select`'s level-triggered re-report was: a
//! socket with bytes still waiting is reported by `select` on every call;
//! under edge triggering the kernel says it once, so the loop keeps its
//! own list of slots it owes another look.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use log::{debug, info, trace, warn};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;

use crate::error::{Error, Result};
use crate::sys;

use super::accept;
use super::app::{App, Why};
use super::drive;
use super::link::Phase;
use super::listener::{ListenSocket, Listener};
use super::memory;
use super::state::{Core, CoreLimits, Counters, Ready, Slot};
use super::timer::{ALARM, Due, Millis, timeout_until};

/// Token of the signal pipe. Slab keys count up from zero, so the top of
/// the token space is free for the loop's own sources.
const SIGNALS: Token = Token(usize::MAX - 1);
/// Token of the waker other threads ring.
const WAKER: Token = Token(usize::MAX - 2);
/// Housekeeping period: 10 Hz, as Redis's default `hz`.
const CRON_MS: Millis = 100;
/// File descriptors kept free below the open-files limit, beyond those
/// already open at start (listeners, the poll fd, the signal pipe): room
/// for the accept that refuses a client past the cap, and for files.
pub const FD_RESERVE: usize = 32;
/// Free buffers the pool keeps of each size (chunks of 16 KiB and smalls
/// of 512 B: at most 4.1 MiB, trimmed back once a second when unused).
const POOL_KEEP: usize = 256;
/// Events taken from the kernel per poll.
const EVENT_BATCH: usize = 1024;
/// Bytes read between two looks at the memory cap within a turn: a turn
/// with many busy connections cannot overshoot the cap by more than what
/// this much input makes them hold.
const MEMORY_STEP: u64 = 256 * 1024;
/// How far what the buffers hold must fall from its peak before the loop
/// has the allocator give its free memory back (a burst's worth: below
/// this, the memory is kept for the next burst).
const GIVE_BACK: usize = 4 << 20;

/// Stops a running loop from another thread, as SIGTERM would.
#[derive(Clone, Debug)]
pub struct Stopper {
    /// Rings the loop.
    waker: Arc<Waker>,
    /// Tells it why it was rung.
    stop: Arc<AtomicBool>,
}

impl Stopper {
    /// Asks for a graceful shutdown.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        if let Err(e) = self.waker.wake() {
            warn!("cannot wake the loop: {e}");
        }
    }
}

/// What a loop leaves when it ends.
#[derive(Debug)]
pub struct Ended<A> {
    /// The app, with whatever it counted.
    pub app: A,
    /// The loop's counters.
    pub counters: Counters,
    /// A second signal stopped it before its connections had finished.
    pub aborted: bool,
}

/// One event loop: the app (the protocols) and everything else it owns.
pub struct Reactor<A: App> {
    /// The protocols: everything the loop calls hooks on.
    pub app: A,
    /// The slab, the pool, the clock and the rest a hook may touch.
    core: Core<A>,
    /// The OS readiness queue (epoll).
    poll: Poll,
    /// Keys of the listeners and sources, freed when shutting down.
    listeners: Vec<usize>,
    /// SIGINT/SIGTERM (and SIGHUP, SIGUSR1 for the app), if this loop
    /// handles signals.
    signals: Option<Signals>,
    /// Rung by other threads: a `Stopper`, or the app's own messages.
    waker: Arc<Waker>,
    /// Set by `Stopper::stop` before it rings.
    stop: Arc<AtomicBool>,
    /// A second signal came: stop now, without flushing.
    abort: bool,
    /// When the housekeeping tick runs next.
    next_cron: Millis,
    /// The memory episode under way: when the memory cap was last found
    /// passed, and how many connections it has evicted (one log line when
    /// it begins and one when it ends).
    over_memory: Option<(Millis, u64)>,
    /// How many loops share the limits (`max_conns` is split over them).
    loops: usize,
    /// When the loop has read this many bytes, it looks at the memory cap
    /// again without waiting for the end of the turn.
    memory_check_at: u64,
    /// The most buffer memory alive (the pool's free buffers included) at
    /// any look since the allocator last gave free memory back: once what is held has fallen well below it,
    /// a burst has ended, and the cron gives its memory back.
    held_peak: usize,
    /// `max_conns` has been fitted to the open-files limit.
    fitted: bool,
}

impl<A: App> Reactor<A> {
    /// A loop around `app` with `limits`, handling SIGINT/SIGTERM if
    /// `signals`; `loops` is how many loops share the limits (`max_conns`
    /// is split over them and kept below the open-files limit).
    pub fn new(app: A, mut limits: CoreLimits, signals: bool, loops: usize) -> Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let signals = if signals {
            let mut s = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1])?;
            poll.registry()
                .register(&mut s, SIGNALS, Interest::READABLE)?;
            Some(s)
        } else {
            None
        };
        let loops = loops.max(1);
        limits.max_client_memory = limits.max_client_memory.div_ceil(loops);
        let core = Core::new(poll.registry().try_clone()?, limits, POOL_KEEP);
        Ok(Reactor {
            app,
            core,
            poll,
            listeners: Vec::new(),
            signals,
            waker,
            stop: Arc::new(AtomicBool::new(false)),
            abort: false,
            next_cron: 0,
            over_memory: None,
            loops,
            memory_check_at: MEMORY_STEP,
            held_peak: 0,
            fitted: false,
        })
    }

    /// Registers a listener whose clients speak `listen` (over TLS with
    /// `tls`); returns its TCP address, if it has one.
    pub fn listen(
        &mut self,
        socket: ListenSocket,
        listen: A::Listen,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<Option<std::net::SocketAddr>> {
        let entry = self.core.slab.vacant_entry();
        let key = entry.key();
        let mut listener = Box::new(Listener::new(socket, listen, tls));
        listener.register(self.poll.registry(), Token(key))?;
        let addr = listener.local_addr();
        entry.insert(Slot::Listener(listener));
        self.listeners.push(key);
        Ok(addr)
    }

    /// Registers a socket the app owns; it is freed when shutting down.
    pub fn add_source(&mut self, source: A::Source) -> Result<usize> {
        let key = self.core.add_source(source)?;
        self.listeners.push(key);
        Ok(key)
    }

    /// The loop's own state, for setting up before it runs.
    pub fn core(&mut self) -> &mut Core<A> {
        &mut self.core
    }

    /// A handle that stops this loop from another thread.
    pub fn stopper(&self) -> Stopper {
        Stopper {
            waker: self.waker.clone(),
            stop: self.stop.clone(),
        }
    }

    /// This loop's waker (the app's other threads ring it; `App::woken`
    /// runs when they do).
    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Fits this loop's share of `max_conns` under the open-files limit,
    /// counting the fds open now (so call it once the listeners are open;
    /// `run` does, if it was not done). A server with several loops does it
    /// for all of them before it says it is ready, since counting the open
    /// fds opens one for a moment.
    pub fn fit_fd_limit(&mut self) {
        if !self.fitted {
            self.fitted = true;
            clamp_max_conns(&mut self.core.limits, self.loops);
        }
    }

    /// Runs until shutdown completes (or is cut short by a second signal);
    /// returns the app and the counters.
    pub fn run(mut self) -> Result<Ended<A>> {
        let mut events = Events::with_capacity(EVENT_BATCH);
        self.fit_fd_limit();
        self.core.clock.tick();
        self.next_cron = self.core.now() + CRON_MS;
        loop {
            self.before_sleep();
            if self.finished() {
                break;
            }
            let timeout = self.poll_timeout();
            self.wait(&mut events, timeout)?;
            self.dispatch(&events);
            self.run_deferred();
            self.run_timers();
        }
        self.finish()
    }

    /// Phase 1: the app's own work, write what fan-out queued (unless
    /// `flush_delay` holds it for a later turn), the memory
    /// cap, then free closed connections. The app goes first, so what it
    /// sends elsewhere (a rename to the bus) leaves before the members
    /// are told of it, and fan-out it queues leaves this turn. Each step
    /// is cheap when it has nothing to do, which is most turns.
    fn before_sleep(&mut self) {
        self.app.before_sleep(&mut self.core);
        drive::run_orders(&mut self.app, &mut self.core);
        if !self.core.flush.is_empty() && self.core.flush_due() <= self.core.now() {
            self.flush_fanout();
        }
        self.check_memory();
        if !self.core.closed.is_empty() {
            self.free_closed();
        }
    }

    /// Drives the connections fan-out queued output for, once each.
    #[inline(never)]
    fn flush_fanout(&mut self) {
        self.core.flushed_at = self.core.now();
        while let Some(key) = self.core.flush.pop() {
            if let Some(Slot::Conn(c)) = self.core.slab.get_mut(key) {
                c.link.flush_queued = false;
                drive::drive(&mut self.app, &mut self.core, key);
            }
        }
    }

    /// Frees the connections closed this turn; accepting resumes at once
    /// if it waits for fds.
    #[inline(never)]
    fn free_closed(&mut self) {
        for key in self.core.closed.drain(..) {
            // Dropping the socket closes its fd, and epoll forgets a closed
            // fd by itself (we never dup one), so no deregister call.
            if let Some(Slot::Conn(c)) = self.core.slab.try_remove(key) {
                trace!("conn {} freed (token {key})", c.link.id);
            }
        }
        self.retry_accepts_now();
    }

    /// Holds the memory cap: an O(1) look at what the connections hold,
    /// before every sleep and every `MEMORY_STEP` of input within a turn.
    #[inline]
    fn check_memory(&mut self) {
        let all = crate::buf::held_bytes();
        self.held_peak = self.held_peak.max(all);
        let held = all.saturating_sub(self.core.pool.free_bytes());
        let cap = self.core.limits.max_client_memory;
        if cap != 0 && held > cap {
            self.evict_largest(cap);
        }
    }

    /// Once a second: when what the buffers hold has fallen by more than
    /// `GIVE_BACK` since its peak (a burst has gone), the allocator gives
    /// its free memory back to the kernel, so the RSS returns too.
    fn give_back_memory(&mut self) {
        let held = crate::buf::held_bytes();
        if self.held_peak > held + GIVE_BACK {
            sys::release_free_memory();
            debug!(
                "memory: gave back what a burst left free ({held} bytes held, peak {})",
                self.held_peak
            );
        }
        self.held_peak = held;
    }

    /// Past the memory cap `cap`, evicts the connections holding the most
    /// until the whole is a tenth under it (so the ones left can go on
    /// filling their own caps without setting it off again at once).
    #[inline(never)]
    fn evict_largest(&mut self, cap: usize) {
        let now = self.core.now();
        let held = memory::held_by_connections(&self.core.pool);
        let (_, mut evicted) = self.over_memory.unwrap_or_else(|| {
            self.core.counters.memory_episodes += 1;
            warn!(
                "memory: connections hold {held} bytes, over --max-client-memory {cap}: evicting the largest"
            );
            (now, 0)
        });
        let target = cap - cap / 10;
        for key in memory::largest(&self.core.slab) {
            if memory::held_by_connections(&self.core.pool) <= target {
                break;
            }
            drive::evict(&mut self.app, &mut self.core, key);
            evicted += 1;
        }
        self.over_memory = Some((now, evicted));
    }

    /// Ends the memory episode once a whole second has passed without the
    /// cap being found passed, with one line saying what it took.
    fn end_memory_episode(&mut self, now: Millis) {
        if let Some((last, evicted)) = self.over_memory
            && now.saturating_sub(last) >= 1000
        {
            self.over_memory = None;
            let held = memory::held_by_connections(&self.core.pool);
            info!(
                "memory: back under --max-client-memory ({held} bytes held) after evicting {evicted} connections"
            );
        }
    }

    /// Fds were just freed: listeners waiting out EMFILE try again at the
    /// next timer phase instead of after their full retry delay, so a
    /// queue of clients drains as fast as fds come back.
    fn retry_accepts_now(&mut self) {
        let now = self.core.now();
        for &key in &self.listeners {
            if let Some(Slot::Listener(l)) = self.core.slab.get_mut(key)
                && l.retry_at > now
            {
                l.retry_at = now.max(1);
            }
        }
    }

    /// True once shutdown has finished (or was cut short).
    fn finished(&self) -> bool {
        self.abort || (self.core.shutting_down() && self.core.open == 0)
    }

    /// How long poll may sleep: not at all with work on the deferred list,
    /// else until the nearest deadline. Measured from the turn's one clock
    /// reading, so the sleep may run long by the time the turn took
    /// (microseconds; no deadline here is that fine); reading the clock
    /// again just for this would cost a second `clock_gettime` a turn.
    fn poll_timeout(&mut self) -> Option<Duration> {
        if !self.core.deferred.is_empty() {
            return Some(Duration::ZERO);
        }
        let mut next = self.next_cron;
        if let Some(due) = self.core.app_timer.as_ref().and_then(|t| t.due_ms()) {
            next = next.min(due);
        }
        if let Some(t) = self.core.timers.next() {
            next = next.min(t);
        }
        if !self.core.flush.is_empty() {
            next = next.min(self.core.flush_due());
        }
        if self.core.shutting_down() {
            next = next.min(self.core.shutdown_at);
        }
        for &key in &self.listeners {
            if let Some(Slot::Listener(l)) = self.core.slab.get(key)
                && l.retry_at != 0
            {
                next = next.min(l.retry_at);
            }
        }
        Some(timeout_until(self.core.now(), next))
    }

    /// Phase 2: sleep in the kernel until an event or the timeout, then
    /// read the clock once for the whole turn.
    fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> Result<()> {
        loop {
            match self.poll.poll(events, timeout) {
                Ok(()) => break,
                // EINTR: a signal landed during the sleep. Not an error;
                // the signal itself arrives as an event on SIGNALS.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Io(e)),
            }
        }
        self.core.clock.tick();
        self.core.counters.iterations += 1;
        if !events.is_empty() {
            self.core.counters.wakeups += 1;
        }
        Ok(())
    }

    /// Phase 3: hand each event to its slot.
    fn dispatch(&mut self, events: &Events) {
        for event in events.iter() {
            self.core.counters.events += 1;
            trace!(
                "event token={} readable={} writable={} read_closed={} write_closed={} error={}",
                event.token().0,
                event.is_readable(),
                event.is_writable(),
                event.is_read_closed(),
                event.is_write_closed(),
                event.is_error()
            );
            // Closed/error flags are hints: treat them as readiness and let
            // the next read or write report what really happened.
            let ready = Ready {
                readable: event.is_readable() || event.is_read_closed() || event.is_error(),
                writable: event.is_writable() || event.is_write_closed() || event.is_error(),
            };
            match event.token() {
                SIGNALS => self.on_signals(),
                // The app timer's timerfd: the wake-up was the point; the
                // timer phase sees from the clock that it is due.
                ALARM => {}
                WAKER => {
                    if self.stop.load(Ordering::Acquire) {
                        self.begin_shutdown("shutdown requested");
                    }
                    self.app.woken(&mut self.core);
                    drive::run_orders(&mut self.app, &mut self.core);
                }
                Token(key) => self.on_ready(key, ready, event.is_read_closed()),
            }
        }
    }

    /// Records readiness for slot `key` and does the work it allows.
    fn on_ready(&mut self, key: usize, ready: Ready, read_closed: bool) {
        match self.core.slab.get_mut(key) {
            // Spurious: nothing lives at this key (mio allows such events).
            None => trace!("event for empty token {key}: ignored"),
            Some(Slot::Listener(l)) => {
                l.ready |= ready.readable;
                accept::accept_ready(&mut self.app, &mut self.core, key);
            }
            Some(Slot::Source(_)) => self.source_ready(key, ready),
            // Closed earlier in this batch: its key is not reused until the
            // batch is over, so the event is simply stale.
            Some(Slot::Conn(c)) if c.link.phase == Phase::Closed => {}
            Some(Slot::Conn(c)) => {
                c.link.readable |= ready.readable;
                c.link.writable |= ready.writable;
                c.link.peer_closed |= read_closed;
                drive::drive(&mut self.app, &mut self.core, key);
                // What peers make the loop hold grows with what it reads:
                // within a turn, look again after every MEMORY_STEP read.
                if self.core.counters.bytes_in >= self.memory_check_at {
                    self.memory_check_at = self.core.counters.bytes_in + MEMORY_STEP;
                    self.check_memory();
                }
            }
            Some(Slot::InHand) => debug!("event for token {key} during its own turn: ignored"),
        }
    }

    /// Lets the app work on its source `key`, taken out of its slot for
    /// the call so the app can reach connections meanwhile.
    fn source_ready(&mut self, key: usize, ready: Ready) {
        if self.core.shutting_down() {
            return; // sources are freed at the end of this turn
        }
        let Some(slot) = self.core.slab.get_mut(key) else {
            return;
        };
        let Slot::Source(mut s) = std::mem::replace(slot, Slot::InHand) else {
            return;
        };
        s.deferred = false;
        let again = self
            .app
            .source_ready(key, &mut s.source, ready, &mut self.core);
        if let Some(slot) = self.core.slab.get_mut(key) {
            *slot = Slot::Source(s);
        }
        drive::run_orders(&mut self.app, &mut self.core);
        if again {
            self.core.defer(key);
        }
    }

    /// Phase 4: give every slot on the deferred list its next slice.
    fn run_deferred(&mut self) {
        if self.core.deferred.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.core.deferred);
        for &key in &batch {
            match self.core.slab.get_mut(key) {
                Some(Slot::Conn(c)) => {
                    c.link.deferred = false;
                    drive::drive(&mut self.app, &mut self.core, key);
                }
                Some(Slot::Listener(l)) => {
                    l.deferred = false;
                    accept::accept_ready(&mut self.app, &mut self.core, key);
                }
                Some(Slot::Source(_)) => self.source_ready(key, Ready::default()),
                Some(Slot::InHand) | None => {}
            }
        }
        // Keep the allocation: swap the emptied batch back unless new work
        // was queued meanwhile (then that list is the one to keep).
        if self.core.deferred.is_empty() {
            let mut batch = batch;
            batch.clear();
            self.core.deferred = batch;
        }
    }

    /// Phase 5: deadlines, accept retries, the app's timer, housekeeping,
    /// shutdown grace.
    fn run_timers(&mut self) {
        let now = self.core.now();
        while let Some(due) = self.core.timers.pop_due(now) {
            let key = due.key as usize;
            let Some(Slot::Conn(c)) = self.core.slab.get_mut(key) else {
                continue;
            };
            let link = &mut c.link;
            // A stale entry: another connection now holds this key, or this
            // one is closed or has no deadline any more.
            if link.id != due.id || link.phase == Phase::Closed || link.deadline == 0 {
                continue;
            }
            if link.deadline > now {
                // Activity moved the deadline: look again then (lazy re-arm).
                self.core.timers.push(link.deadline, key, link.id);
                continue;
            }
            // This entry is spent: with the deadline cleared, whatever the
            // expiry sets next (a linger, a ping's answer) arms a new one.
            link.deadline = 0;
            drive::expire(&mut self.app, &mut self.core, key);
        }
        for i in 0..self.listeners.len() {
            let key = self.listeners[i];
            if let Some(Slot::Listener(l)) = self.core.slab.get_mut(key)
                && l.retry_at != 0
                && l.retry_at <= now
            {
                l.retry_at = 0;
                accept::accept_ready(&mut self.app, &mut self.core, key);
            }
        }
        let clock = &self.core.clock;
        if let Some(missed) = self.core.app_timer.as_mut().and_then(|t| t.fire(clock)) {
            self.app.timer(&mut self.core, missed);
            drive::run_orders(&mut self.app, &mut self.core);
        }
        if now >= self.next_cron {
            self.cron(now);
        }
        let core = &self.core;
        if core.shutting_down() && now >= core.shutdown_at && core.open > 0 {
            warn!(
                "grace period over: closing {} connections that still had work",
                core.open
            );
            self.close_all();
        }
    }

    /// Housekeeping, 10 times a second: the app's; once a second, give
    /// back pool buffers a burst left unused and compact the timer heap.
    fn cron(&mut self, now: Millis) {
        self.next_cron = now + CRON_MS;
        self.app.cron(&mut self.core);
        drive::run_orders(&mut self.app, &mut self.core);
        self.end_memory_episode(now);
        if now / 1000 != (now - CRON_MS.min(now)) / 1000 {
            self.core.pool.trim();
            self.compact_timers();
            self.give_back_memory();
        }
    }

    /// Rebuilds the timer heap with one entry per live connection, once
    /// stale entries dominate it. Lazy re-arming leaves entries behind: a
    /// closed connection's stays until its deadline, and a deadline moved
    /// earlier adds one that the older entry does not replace. Without
    /// this, the heap would grow with the connection and request rates.
    /// O(n), at most once a second.
    fn compact_timers(&mut self) {
        let core = &mut self.core;
        if core.timers.len() <= 2 * core.open + 1024 {
            return;
        }
        let live = core.slab.iter().filter_map(|(key, slot)| match slot {
            Slot::Conn(c) if c.link.phase != Phase::Closed && c.link.deadline != 0 => Some(Due {
                when: c.link.deadline,
                key: key as u32,
                id: c.link.id,
            }),
            _ => None,
        });
        core.timers.rebuild(live);
    }

    /// Reads pending signals: the first SIGINT/SIGTERM starts a graceful
    /// shutdown, a second one stops at once; SIGHUP and SIGUSR1 go to the
    /// app (`App::signal`), in the order they came.
    fn on_signals(&mut self) {
        let Some(signals) = self.signals.as_mut() else {
            return;
        };
        let caught: Vec<i32> = signals.pending().collect();
        for sig in caught {
            if sig == SIGHUP || sig == SIGUSR1 {
                self.app.signal(sig, &mut self.core);
                drive::run_orders(&mut self.app, &mut self.core);
                continue;
            }
            let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
            if self.core.shutting_down() {
                warn!("{name} again: stopping now, without flushing");
                self.abort = true;
                return;
            }
            self.begin_shutdown(name);
        }
    }

    /// Stops accepting and tells every connection; they finish as their
    /// protocols say. The loop ends when none is left or the grace ends.
    fn begin_shutdown(&mut self, why: &str) {
        if self.core.shutting_down() {
            return;
        }
        let grace = self.core.limits.grace;
        self.core.shutdown_at = self.core.due_in(grace).max(self.core.now());
        info!(
            "{why}: shutting down, {} connections open, grace {:.1}s",
            self.core.open,
            grace.as_secs_f64()
        );
        // Stop accepting: listeners and sources are freed after this batch
        // (their events later in it are no-ops: accept and the sources'
        // hook check the shutdown first).
        self.core.closed.append(&mut self.listeners);
        for key in self.conn_keys() {
            drive::shut_down(&mut self.app, &mut self.core, key);
        }
    }

    /// The keys of the connections not yet closed.
    fn conn_keys(&self) -> Vec<usize> {
        self.core
            .slab
            .iter()
            .filter(|(_, s)| matches!(s, Slot::Conn(c) if c.link.phase != Phase::Closed))
            .map(|(k, _)| k)
            .collect()
    }

    /// Closes every connection now (grace over, or abort).
    fn close_all(&mut self) {
        for key in self.conn_keys() {
            drive::close_now(&mut self.app, &mut self.core, key, Why::Shutdown);
        }
    }

    /// After the loop: close what is left, free it, hand back the app and
    /// the counters.
    fn finish(mut self) -> Result<Ended<A>> {
        self.close_all();
        self.before_sleep();
        Ok(Ended {
            app: self.app,
            counters: self.core.counters,
            aborted: self.abort,
        })
    }
}

/// Gives this loop its share of `max_conns` (the limit is for the whole
/// server, split evenly over `loops`), kept below its share of the
/// open-files limit less the fds open now and a reserve, so accept meets
/// EMFILE only when something else takes fds (files being served).
fn clamp_max_conns(limits: &mut CoreLimits, loops: usize) {
    limits.max_conns = limits.max_conns.div_ceil(loops);
    let Ok((soft, _)) = sys::nofile_limit() else {
        return;
    };
    let in_use = std::fs::read_dir("/proc/self/fd").map_or(16, |d| d.count());
    let reserve = in_use + FD_RESERVE;
    let room = ((soft as usize).saturating_sub(reserve) / loops).max(1);
    if limits.max_conns > room {
        warn!(
            "max-conns per loop {} is over the open-files limit {soft} (less {reserve} fds in use or reserved, split over {loops} loops): using {room}",
            limits.max_conns
        );
        limits.max_conns = room;
    }
    debug!("max-conns {} per loop", limits.max_conns);
}
