//! What the loop owns besides the app: the slab of sockets, the buffer
//! pool, the clock, the deadlines, the lists of connections with work
//! waiting, the limits and the counters. Hooks reach it through
//! `Io::core`, so a protocol can queue bytes for any connection.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use log::{debug, trace, warn};
use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::buf::Pool;
use crate::transport::Transport;

use super::kinds::Kinds;
use super::link::{Link, Phase};
use super::listener::Listener;
use super::timer::{ALARM, AppTimer, Clock, Millis, Timers};

/// One connection: what the loop knows of it, and its protocol's state.
#[derive(Debug)]
pub struct Conn<S> {
    /// Socket, buffers, readiness, phase, deadline.
    pub link: Link,
    /// The protocol's state (one variant per protocol).
    pub state: S,
}

/// A source registered by the app, and whether it is on the deferred list.
#[derive(Debug)]
pub struct SourceSlot<S> {
    /// The app's socket or timer.
    pub source: S,
    /// On the deferred list.
    pub deferred: bool,
}

/// One entry of the slab; its key is its token in the poll set. Listeners
/// and sources are boxed so the common entry, a connection, sets the size.
#[derive(Debug)]
pub enum Slot<A: Kinds> {
    /// A listening socket.
    Listener(Box<Listener<A::Listen>>),
    /// A socket the app owns (a datagram socket, a timer).
    Source(Box<SourceSlot<A::Source>>),
    /// A connection.
    Conn(Conn<A::State>),
    /// The connection being driven right now: taken out of its slot for
    /// its turn, put back at the end of it.
    InHand,
}

/// What an event said about a source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// Readable (or an error or hang-up, which a read will report).
    pub readable: bool,
    /// Writable (or an error, which a write will report).
    pub writable: bool,
}

/// The loop's limits: the ones a protocol does not decide.
#[derive(Clone, Debug)]
pub struct CoreLimits {
    /// Open connections; past it a new client gets the app's refusal line
    /// and is closed.
    pub max_conns: usize,
    /// Output a connection may have queued before the loop stops using
    /// its input: past it, input that arrived waits unused, the socket is
    /// not read (so the peer's window closes), until the output drains.
    pub output_cap: usize,
    /// Bytes read from one connection per turn (fairness).
    pub read_budget: usize,
    /// Connections accepted per listener per turn (fairness).
    pub accepts_per_tick: usize,
    /// After our last byte of a closing connection, how long to wait for
    /// the peer's FIN before closing anyway (lingering close).
    pub linger: Duration,
    /// On shutdown, how long connections may take to finish.
    pub grace: Duration,
    /// A transport handshake (TLS) must finish within this long of accept.
    pub handshake_timeout: Duration,
    /// Buffer memory all connections together may hold; past it the ones
    /// holding the most are evicted (0: no cap).
    pub max_client_memory: usize,
    /// Output queued for other connections (fan-out) is written at most
    /// once per this long: the first after a quiet spell goes out before
    /// the loop sleeps, as with zero; more within the period wait for its
    /// end, so what several turns queued for one connection leaves in
    /// one `write`. Whole
    /// milliseconds (a shorter one is 1 ms); zero: every turn.
    pub flush_delay: Duration,
}

impl Default for CoreLimits {
    fn default() -> Self {
        CoreLimits {
            max_conns: 10_000,
            output_cap: 64 * 1024,
            read_budget: 64 * 1024,
            accepts_per_tick: 64,
            linger: Duration::from_secs(2),
            grace: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            max_client_memory: 0,
            flush_delay: Duration::ZERO,
        }
    }
}

/// The loop's counters: plain integers, owned by its one thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Connections accepted (and kept) or connected.
    pub accepted: u64,
    /// Connections turned away at `max_conns`.
    pub refused: u64,
    /// Connections closed.
    pub closed: u64,
    /// Bytes read from connections.
    pub bytes_in: u64,
    /// Bytes written to connections.
    pub bytes_out: u64,
    /// Readiness events handled.
    pub events: u64,
    /// Polls that returned at least one event.
    pub wakeups: u64,
    /// Loop turns (polls, timeouts included).
    pub iterations: u64,
    /// Connections closed by a deadline.
    pub timeouts: u64,
    /// Accept errors for lack of fds, each retried later.
    pub accept_errors: u64,
    /// Connections evicted because all of them held too much memory.
    pub evicted: u64,
    /// Times the memory cap was passed (one per episode, however many
    /// connections it took to get back under).
    pub memory_episodes: u64,
}

/// Everything the loop owns besides the app and the poll itself.
pub struct Core<A: Kinds> {
    /// Registers the sockets added while the loop runs.
    pub(super) registry: Registry,
    /// Listeners, sources and connections; a slot's key is its token.
    pub(super) slab: Slab<Slot<A>>,
    /// Buffers for connections with bytes in flight (none while idle).
    pub pool: Pool,
    /// "Now", read once per turn.
    pub(super) clock: Clock,
    /// Connection deadlines (a heap with lazy re-arming).
    pub(super) timers: Timers,
    /// Keys with work no event will announce: driven again next turn.
    pub(super) deferred: Vec<usize>,
    /// Keys whose output another connection queued: written before sleep
    /// (once `flush_delay` has passed since the last time).
    pub(super) flush: Vec<usize>,
    /// `flush_delay` in ms (0: write the flush list every turn).
    pub(super) flush_every: Millis,
    /// When the flush list was last written (0: never).
    pub(super) flushed_at: Millis,
    /// Keys closed this turn: freed after the event batch, since a later
    /// event in it may still name them.
    pub(super) closed: Vec<usize>,
    /// What hooks asked for other connections (fan-out drops): applied as
    /// soon as the asking hook returns.
    pub(super) orders: Vec<(usize, Order)>,
    /// The limits.
    pub limits: CoreLimits,
    /// The counters.
    pub counters: Counters,
    /// Connections open (accepted or connecting, not yet closed).
    pub(super) open: usize,
    /// Serial number for the next connection.
    pub(super) next_id: u32,
    /// 0 while running; once shutting down, the end of the grace period.
    pub(super) shutdown_at: Millis,
    /// The app's periodic timer (`every`), if it asked for one.
    pub(super) app_timer: Option<AppTimer>,
}

/// Another connection, reached from a hook: its I/O state, its protocol's
/// state, and what writing to it needs.
pub struct Peer<'a, S> {
    /// Its socket and buffers.
    pub link: &'a mut Link,
    /// Its protocol's state.
    pub state: &'a mut S,
    /// Where its buffers come from.
    pub pool: &'a mut Pool,
    /// The loop's count of bytes written, for writes made to it here.
    pub bytes_out: &'a mut u64,
}

/// What a hook may ask the loop to do with another connection once the
/// turn is over (what needs the app, which the hook is using meanwhile).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Close it now.
    Abort,
}

impl<A: Kinds> Core<A> {
    /// An empty core registering with `registry`.
    pub(super) fn new(registry: Registry, limits: CoreLimits, pool_keep: usize) -> Core<A> {
        let flush_every = limits.flush_delay.as_micros().div_ceil(1000) as Millis;
        Core {
            registry,
            slab: Slab::new(),
            pool: Pool::new(pool_keep),
            clock: Clock::new(),
            timers: Timers::new(),
            deferred: Vec::new(),
            flush: Vec::new(),
            flush_every,
            flushed_at: 0,
            closed: Vec::new(),
            orders: Vec::new(),
            limits,
            counters: Counters::default(),
            open: 0,
            next_id: 1,
            shutdown_at: 0,
            app_timer: None,
        }
    }

    /// Calls the app's `timer` hook every `period` (at most 1 kHz), the
    /// first time one period from now; a zero `period` stops it. A timerfd
    /// wakes the loop for each call, to the microsecond (`AppTimer`); the
    /// call comes in the timer phase, after the connections' deadlines. A
    /// fixed-rate schedule: a late call does not push the next one back.
    pub fn every(&mut self, period: Duration) {
        let period_us = (period.as_micros() as u64).max(if period.is_zero() { 0 } else { 1000 });
        // Stopping drops the timerfd (closing it takes it out of the poll
        // set); a new period reuses the one there is.
        let alarm = self.app_timer.take().and_then(|t| t.alarm);
        if period_us == 0 {
            return;
        }
        let alarm = alarm.or_else(|| self.new_alarm());
        let mut t = AppTimer {
            period_us,
            next_us: self.clock.now_us() + period_us,
            alarm,
        };
        t.arm(&self.clock);
        self.app_timer = Some(t);
    }

    /// A timerfd registered for the app timer, or `None` (logged) if the
    /// OS refuses one: the timer then runs on poll's ms timeout.
    fn new_alarm(&mut self) -> Option<crate::sys::TimerFd> {
        use std::os::fd::AsRawFd;
        let made = crate::sys::TimerFd::new().and_then(|t| {
            let fd = t.as_raw_fd();
            let mut source = mio::unix::SourceFd(&fd);
            self.registry
                .register(&mut source, ALARM, Interest::READABLE)
                .map(|()| t)
        });
        made.map_err(|e| warn!("app timer: no timerfd ({e}): using poll's ms timeout"))
            .ok()
    }

    /// "Now" on the loop's clock (ms since it started, read once a turn).
    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    /// `now + d` (a real deadline even for zero: the next timer phase).
    pub fn due_in(&self, d: Duration) -> Millis {
        self.clock.due_in(d)
    }

    /// `now + d`, or 0 (no deadline) for zero, where zero means never.
    pub fn timeout(&self, d: Duration) -> Millis {
        self.clock.timeout(d)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open
    }

    /// True once a graceful shutdown has begun.
    pub fn shutting_down(&self) -> bool {
        self.shutdown_at != 0
    }

    /// Connection `key` (for fan-out), unless it is the one being driven
    /// (its hook has it already) or not a connection.
    pub fn peer(&mut self, key: usize) -> Option<Peer<'_, A::State>> {
        match self.slab.get_mut(key) {
            Some(Slot::Conn(c)) => Some(Peer {
                link: &mut c.link,
                state: &mut c.state,
                pool: &mut self.pool,
                bytes_out: &mut self.counters.bytes_out,
            }),
            _ => None,
        }
    }

    /// Every connection's key and protocol state, in slab order.
    pub fn states(&self) -> impl Iterator<Item = (usize, &A::State)> {
        self.slab.iter().filter_map(|(k, s)| match s {
            Slot::Conn(c) if c.link.phase != Phase::Closed => Some((k, &c.state)),
            _ => None,
        })
    }

    /// Connection `key` has output queued by someone else: write it before
    /// the loop sleeps (once, however many lines were queued meanwhile),
    /// or with `flush_delay`, once that has passed since the last time.
    pub fn flush_soon(&mut self, key: usize) {
        if let Some(Slot::Conn(c)) = self.slab.get_mut(key)
            && !c.link.flush_queued
        {
            c.link.flush_queued = true;
            self.flush.push(key);
        }
    }

    /// When the flush list is to be written: now, unless `flush_delay`
    /// holds it until that long after the last time (not while shutting
    /// down).
    pub(super) fn flush_due(&self) -> Millis {
        if self.flush_every == 0 || self.shutting_down() || self.flushed_at == 0 {
            return self.now();
        }
        self.flushed_at + self.flush_every
    }

    /// Writes connection `key`'s queued output now, as far as its socket
    /// takes it; an error is left for its next turn to meet and handle.
    pub fn flush_peer(&mut self, key: usize) {
        if let Some(Slot::Conn(c)) = self.slab.get_mut(key)
            && let Ok(n) = c.link.flush(&mut self.pool)
        {
            self.counters.bytes_out += n as u64;
        }
    }

    /// Begins closing connection `key` (not the one being driven: its
    /// hook answers `Act::Close` instead): it uses no more input, sends
    /// what it has queued (before the loop sleeps), then FIN and linger.
    pub fn close_peer(&mut self, key: usize) {
        let when = self.clock.due_in(self.limits.linger);
        let Some(Slot::Conn(c)) = self.slab.get_mut(key) else {
            return;
        };
        let link = &mut c.link;
        if !matches!(link.phase, Phase::Open | Phase::Draining) {
            return;
        }
        link.phase = Phase::Flushing;
        if link.deadline == 0 || when < link.deadline {
            self.timers.push(when, key, link.id);
        }
        link.deadline = when;
        self.flush_soon(key);
    }

    /// Asks for `order` on connection `key` (not the one being driven: its
    /// hook answers with an `Act` instead). Carried out when the asking
    /// hook returns (a connection's turn, or a loop-level hook: `cron`,
    /// `woken`, `before_sleep`, `source_ready`).
    pub fn order(&mut self, key: usize, order: Order) {
        self.orders.push((key, order));
    }

    /// Puts slot `key` on the deferred list (once) for another turn.
    pub fn defer(&mut self, key: usize) {
        let queued = match self.slab.get_mut(key) {
            Some(Slot::Conn(c)) => &mut c.link.deferred,
            Some(Slot::Listener(l)) => &mut l.deferred,
            Some(Slot::Source(s)) => &mut s.deferred,
            Some(Slot::InHand) | None => return,
        };
        if !*queued {
            *queued = true;
            self.deferred.push(key);
        }
    }

    /// Reads connection `key` next turn though no event said it is
    /// readable (a read that finds nothing costs one `WouldBlock`): for
    /// an answer that may wait unseen behind other sockets' readiness, on
    /// a turn that `epoll_wait` filled with others (its batch holds 1,024).
    pub fn look(&mut self, key: usize) {
        if let Some(Slot::Conn(c)) = self.slab.get_mut(key) {
            c.link.readable = true;
            self.defer(key);
        }
    }

    /// Puts connection `key`, in hand for its turn, on the deferred list (once).
    pub(super) fn defer_link(&mut self, key: usize, link: &mut Link) {
        if !link.deferred {
            link.deferred = true;
            self.deferred.push(key);
        }
    }

    /// Moves connection `key`'s deadline to `when` (0: none). A later
    /// deadline needs no heap work (the entry re-arms itself lazily); an
    /// earlier one, or the first, needs an entry of its own.
    pub(super) fn rearm(&mut self, key: usize, link: &mut Link, when: Millis) {
        if when != 0 && (link.deadline == 0 || when < link.deadline) {
            self.timers.push(when, key, link.id);
        }
        link.deadline = when;
    }

    /// Stops using `link`'s input: what is queued goes out, then FIN and
    /// the linger; the linger deadline starts now.
    pub(super) fn begin_close(&mut self, key: usize, link: &mut Link) {
        if matches!(
            link.phase,
            Phase::Open | Phase::Draining | Phase::Connecting
        ) {
            link.phase = Phase::Flushing;
            let when = self.clock.due_in(self.limits.linger);
            self.rearm(key, link, when);
        }
    }

    /// A serial number for a new connection (never 0, wrapping).
    pub(super) fn next_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }

    /// Puts a new connection in the slab and registers its socket for both
    /// directions, once for its life. Returns its key.
    pub(super) fn insert(&mut self, mut link: Link, state: A::State) -> io::Result<usize> {
        let entry = self.slab.vacant_entry();
        let key = entry.key();
        link.transport.register(&self.registry, Token(key))?;
        entry.insert(Slot::Conn(Conn { link, state }));
        self.open += 1;
        self.counters.accepted += 1;
        Ok(key)
    }

    /// Opens an outbound TCP connection to `addr` speaking `state`: the
    /// connect runs in the background, and `opened` is called once it has
    /// finished (or `closed`, with `Why::Failed`, if it failed). Returns
    /// the connection's key.
    pub fn connect(&mut self, addr: SocketAddr, state: A::State) -> io::Result<usize> {
        let stream = mio::net::TcpStream::connect(addr)?;
        let _ = stream.set_nodelay(true);
        let id = self.next_id();
        let mut link = Link::new(Transport::Tcp(stream), id, Phase::Connecting);
        let key = self.slab.vacant_key();
        let when = self.clock.due_in(self.limits.handshake_timeout);
        link.deadline = when;
        self.timers.push(when, key, id);
        let key = self.insert(link, state)?;
        debug!("conn {id}: connecting to {addr} (token {key})");
        Ok(key)
    }

    /// Registers a socket of the app's (polled for both directions) and
    /// returns its key.
    pub fn add_source(&mut self, mut source: A::Source) -> io::Result<usize> {
        let entry = self.slab.vacant_entry();
        let key = entry.key();
        self.registry.register(
            &mut source,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        entry.insert(Slot::Source(Box::new(SourceSlot {
            source,
            deferred: false,
        })));
        trace!("source registered (token {key})");
        Ok(key)
    }

    /// Every listener's tag and the TLS configuration its new clients'
    /// handshakes use, to replace it (a reloaded certificate): clients
    /// already accepted keep the one they started with.
    pub fn listener_tls(
        &mut self,
    ) -> impl Iterator<Item = (A::Listen, &mut Option<std::sync::Arc<rustls::ServerConfig>>)> {
        self.slab.iter_mut().filter_map(|(_, slot)| match slot {
            Slot::Listener(l) => Some((l.listen, &mut l.tls)),
            _ => None,
        })
    }

    /// Source `key`, if it is one.
    pub fn source(&mut self, key: usize) -> Option<&mut A::Source> {
        match self.slab.get_mut(key) {
            Some(Slot::Source(s)) => Some(&mut s.source),
            _ => None,
        }
    }

    /// Takes connection `key` out of its slot for its turn (leaving
    /// `InHand`); `None` if the slot holds no connection, or a closed one.
    #[inline]
    pub(super) fn take(&mut self, key: usize) -> Option<Conn<A::State>> {
        match self.slab.get_mut(key)? {
            slot @ Slot::Conn(_) => match std::mem::replace(slot, Slot::InHand) {
                Slot::Conn(c) if c.link.phase != Phase::Closed => Some(c),
                other => {
                    *slot = other;
                    None
                }
            },
            _ => None,
        }
    }

    /// Puts connection `key` back in its slot after its turn.
    #[inline]
    pub(super) fn put(&mut self, key: usize, conn: Conn<A::State>) {
        if let Some(slot @ Slot::InHand) = self.slab.get_mut(key) {
            // The slot holds `InHand`, which owns nothing: no drop needed.
            std::mem::forget(std::mem::replace(slot, Slot::Conn(conn)));
        }
    }
}
