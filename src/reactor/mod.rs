//! The event loop: one thread, one `mio::Poll`, one `Slab` of sockets.
//!
//! Each turn of the loop runs the same named phases, as Redis's
//! `aeProcessEvents` does:
//!
//! 1. **before sleep**: write output that fan-out queued for other
//!    connections, and free the connections closed during the last turn
//!    (only now, after the event batch, because slab keys are reused);
//! 2. **poll** until the nearest deadline (or not at all, if the ready list
//!    has leftover work);
//! 3. **dispatch** each event: record the readiness in user space and let
//!    the connection do what it allows;
//! 4. **ready list**: connections and listeners that were cut short by a
//!    fairness cap last turn get their next slice;
//! 5. **timers**: idle and linger deadlines, accept retries, the 10 Hz
//!    housekeeping tick, the shutdown grace.
//!
//! Every socket is registered once, for reading and writing, and its
//! readiness is remembered in its slot (`readable`, `writable`), cleared
//! only when an operation returns `WouldBlock` (or a short count). So the
//! steady state makes no `epoll_ctl` calls at all (sozu's design).

/// An `Outbox` over the reactor's connections, borrowing only the fields
/// it needs, so the chat hub (another field) can be borrowed beside it.
macro_rules! outbox {
    ($r:ident) => {
        ConnOutbox {
            slab: &mut $r.slab,
            pool: &mut $r.pool,
            flush: &mut $r.flush,
            too_slow: &mut $r.too_slow,
            limits: &$r.limits,
            now: $r.clock.now(),
            bytes_out: &mut $r.stats.bytes_out,
            bus: $r.bus.as_ref(),
        }
    };
}

mod accept;
pub mod bus;
mod conn;
mod drive;
mod http;
mod outbox;
mod udp;
mod ws;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use log::{debug, info, trace, warn};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::buf::Pool;
use crate::config::{Config, Limits};
use crate::error::{Error, Result};
use crate::listen;
use crate::service::Service;
use crate::service::chat::ChatHub;
use crate::service::http::{DateCache, HttpConfig};
use crate::service::ws as websocket;
use crate::stats::Stats;
use crate::sys;
use crate::timer::{Clock, Due, Millis, Timers, timeout_until};

use accept::{ListenSocket, Listener};
use conn::{Conn, Phase};
use outbox::ConnOutbox;
use udp::UdpEcho;

/// Token of the signal pipe. Slab keys count up from zero, so the top of
/// the token space is free for the loop's own sources.
const SIGNALS: Token = Token(usize::MAX - 1);
/// Token of the waker another thread uses to ask for shutdown.
const WAKER: Token = Token(usize::MAX - 2);
/// Housekeeping period (publishing stats for other threads): 10 Hz, as
/// Redis's default `hz`.
const CRON_MS: Millis = 100;
/// File descriptors kept free below the open-files limit, beyond those
/// already open at start (listeners, the poll fd, the signal pipe): room
/// for the accept that refuses a client past the cap, and for files.
pub const FD_RESERVE: usize = 32;
/// Free buffers the pool keeps of each size (chunks of 16 KiB and smalls of
/// 512 B: at most 4.1 MiB, and trimmed back once a second when unused).
const POOL_KEEP: usize = 256;
/// Events taken from the kernel per poll.
const EVENT_BATCH: usize = 1024;

/// One entry of the slab. Listeners and the UDP socket are boxed so the
/// common entry, a connection, sets the slot size.
#[derive(Debug)]
pub enum Slot {
    /// A listening socket.
    Listener(Box<Listener>),
    /// The UDP echo socket.
    Udp(Box<UdpEcho>),
    /// A client connection.
    Conn(Conn),
}

/// What the loop shares with other threads: a stop flag (set, then the
/// waker rings) and the latest stats snapshot.
#[derive(Debug, Default)]
pub struct Shared {
    /// Set by `Handle::shutdown`.
    pub stop: AtomicBool,
    /// Copied from the loop's counters every `CRON_MS` and at exit.
    pub stats: Mutex<Stats>,
}

/// The reactor: everything one event-loop thread owns.
pub struct Reactor {
    /// The OS readiness queue (epoll).
    poll: Poll,
    /// Listeners, the UDP socket and connections; the key is the token.
    slab: Slab<Slot>,
    /// Buffers for connections with bytes in flight.
    pool: Pool,
    /// "Now", read once per turn.
    clock: Clock,
    /// Connection deadlines.
    timers: Timers,
    /// Keys with leftover work (cut short by a fairness cap).
    ready: Vec<usize>,
    /// Spare vector swapped with `ready` each turn (no allocation).
    ready_spare: Vec<usize>,
    /// Keys with output queued by another connection (chat fan-out).
    flush: Vec<usize>,
    /// Keys closed this turn, removed from the slab before the next poll.
    closed: Vec<usize>,
    /// Chat members over their output cap, dropped after the hub returns.
    too_slow: Vec<usize>,
    /// Keys of the listeners and the UDP socket.
    listeners: Vec<usize>,
    /// Addresses actually bound (port 0 resolved), for `Server`.
    bound: Vec<(Service, std::net::SocketAddr)>,
    /// The Unix socket path, if any.
    unix_path: Option<std::path::PathBuf>,
    /// Chat rooms and members.
    chat: ChatHub,
    /// What HTTP serves and its request limits.
    http_cfg: HttpConfig,
    /// TLS configurations (shared by every TLS connection), if a TLS
    /// service runs.
    tls: Option<crate::tls::TlsSetup>,
    /// The `Date` header value, formatted at most once a second.
    date: DateCache,
    /// The loop turn (its clock reading) `date` was last brought up to.
    date_turn: Millis,
    /// The connection being driven made progress: `drive` refreshes its
    /// deadline once, at the end (see `drive.rs`).
    moved: bool,
    /// Where HTTP responses are written before they are queued (reused).
    http_out: Vec<u8>,
    /// The limits.
    limits: Limits,
    /// The counters.
    stats: Stats,
    /// Connections open (not yet closed).
    open: usize,
    /// Serial number for the next connection.
    next_id: u32,
    /// Receive buffer for UDP (64 KiB), allocated on first use.
    udp_buf: Vec<u8>,
    /// 0 while running; once shutting down, the end of the grace period.
    shutdown_at: Millis,
    /// A second signal came: stop now, without flushing.
    abort: bool,
    /// When the housekeeping tick runs next.
    next_cron: Millis,
    /// Last time "server full" was logged (throttle).
    warned_full: Millis,
    /// Last time an accept error was logged (throttle).
    warned_accept: Millis,
    /// SIGINT/SIGTERM, if this reactor handles signals.
    signals: Option<Signals>,
    /// Rung by `Handle::shutdown` and by other loops with chat lines.
    waker: Arc<Waker>,
    /// The other loops (chat rooms span them), when there are several.
    bus: Option<bus::Bus>,
    /// Shared with `Handle`s.
    shared: Arc<Shared>,
}

impl Reactor {
    /// Opens every configured listener and registers it. Fails with a
    /// one-line error naming the service and address.
    pub fn new(config: Config) -> Result<Reactor> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let limits = config.limits.clone();
        let mut reactor = Reactor {
            poll,
            slab: Slab::new(),
            pool: Pool::new(POOL_KEEP),
            clock: Clock::new(),
            timers: Timers::new(),
            ready: Vec::new(),
            ready_spare: Vec::new(),
            flush: Vec::new(),
            closed: Vec::new(),
            too_slow: Vec::new(),
            listeners: Vec::new(),
            bound: Vec::new(),
            unix_path: None,
            chat: ChatHub::new(limits.max_line),
            http_cfg: config.http_config.clone(),
            tls: None,
            date: DateCache::new(),
            date_turn: 0,
            moved: false,
            http_out: Vec::new(),
            stats: Stats::default(),
            open: 0,
            next_id: 1,
            udp_buf: Vec::new(),
            shutdown_at: 0,
            abort: false,
            next_cron: 0,
            warned_full: 0,
            warned_accept: 0,
            signals: None,
            bus: None,
            waker,
            shared: Arc::new(Shared::default()),
            limits,
        };
        reactor.open_listeners(&config)?;
        if config.handle_signals {
            let mut signals = Signals::new([SIGINT, SIGTERM])?;
            reactor
                .poll
                .registry()
                .register(&mut signals, SIGNALS, Interest::READABLE)?;
            reactor.signals = Some(signals);
        }
        clamp_max_conns(&mut reactor.limits, config.threads.max(1));
        Ok(reactor)
    }

    /// Binds and registers the listeners `config` asks for.
    fn open_listeners(&mut self, config: &Config) -> Result<()> {
        let tcp = [
            (Service::Greet, config.greet),
            (Service::Echo, config.echo),
            (Service::Chat, config.chat),
            (Service::Http, config.http),
        ];
        for (service, addr) in tcp {
            if let Some(addr) = addr {
                let l = listen::tcp(service.name(), addr, config.reuse_port)?;
                self.add_listener(ListenSocket::Tcp(l), service)?;
            }
        }
        let tls = [
            (Service::Https, config.https),
            (Service::TlsEcho, config.tls_echo),
        ];
        for (service, addr) in tls {
            if let Some(addr) = addr {
                if self.tls.is_none() {
                    let (cert, key) = (config.tls_cert.as_deref(), config.tls_key.as_deref());
                    let setup = crate::tls::TlsSetup::load(cert, key)?;
                    self.tls = Some(setup);
                }
                let l = listen::tcp(service.name(), addr, config.reuse_port)?;
                self.add_listener(ListenSocket::Tcp(l), service)?;
            }
        }
        if let Some(path) = &config.unix {
            let u = listen::unix(Service::Unix.name(), path)?;
            self.add_listener(ListenSocket::Unix(u), Service::Unix)?;
            info!("unix listening on {}", path.display());
            self.unix_path = Some(path.clone());
        }
        if let Some(addr) = config.udp {
            let socket = listen::udp(Service::Udp.name(), addr, config.reuse_port)?;
            let local = socket.local_addr()?;
            let entry = self.slab.vacant_entry();
            let key = entry.key();
            let mut udp = Box::new(UdpEcho::new(socket, self.limits.udp_queue));
            self.poll.registry().register(
                &mut udp.socket,
                Token(key),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            entry.insert(Slot::Udp(udp));
            self.listeners.push(key);
            self.bound.push((Service::Udp, local));
            info!("udp listening on {local}");
        }
        Ok(())
    }

    /// Puts a listener in the slab and registers it.
    fn add_listener(&mut self, socket: ListenSocket, service: Service) -> Result<()> {
        let entry = self.slab.vacant_entry();
        let key = entry.key();
        let mut listener = Box::new(Listener::new(socket, service));
        listener.register(self.poll.registry(), Token(key))?;
        if let Some(addr) = listener.local_addr() {
            info!("{} listening on {addr}", service.name());
            self.bound.push((service, addr));
        }
        entry.insert(Slot::Listener(listener));
        self.listeners.push(key);
        Ok(())
    }

    /// The address a service is bound to (port 0 resolved).
    pub fn local_addr(&self, service: Service) -> Option<std::net::SocketAddr> {
        self.bound
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, a)| *a)
    }

    /// The Unix socket path, if serving one.
    pub fn unix_path(&self) -> Option<&std::path::Path> {
        self.unix_path.as_deref()
    }

    /// The waker and shared state, for a `Handle`.
    pub fn shared(&self) -> (Arc<Waker>, Arc<Shared>) {
        (self.waker.clone(), self.shared.clone())
    }

    /// Runs the loop until shutdown completes; returns the final counters.
    pub fn run(mut self) -> Result<Stats> {
        let mut events = Events::with_capacity(EVENT_BATCH);
        self.clock.tick();
        self.next_cron = self.clock.now() + CRON_MS;
        loop {
            self.before_sleep();
            if self.finished() {
                break;
            }
            let timeout = self.poll_timeout();
            self.wait(&mut events, timeout)?;
            self.dispatch(&events);
            self.run_ready_list();
            self.run_timers();
        }
        self.finish()
    }

    /// Phase 1: write what fan-out queued, then free closed connections.
    fn before_sleep(&mut self) {
        while let Some(key) = self.flush.pop() {
            if let Some(Slot::Conn(c)) = self.slab.get_mut(key) {
                c.flush_queued = false;
                self.drive(key);
            }
        }
        let freed = !self.closed.is_empty();
        for key in self.closed.drain(..) {
            // Dropping the socket closes its fd, and epoll forgets a closed
            // fd by itself (we never dup one), so no deregister call.
            if let Some(Slot::Conn(c)) = self.slab.try_remove(key) {
                trace!("conn {} freed (token {key})", c.id);
            }
        }
        if freed {
            self.retry_accepts_now();
        }
    }

    /// Fds were just freed: listeners waiting out EMFILE try again at the
    /// next timer phase instead of after their full retry delay, so a
    /// queue of clients drains as fast as fds come back.
    fn retry_accepts_now(&mut self) {
        let now = self.clock.now();
        for &key in &self.listeners {
            if let Some(Slot::Listener(l)) = self.slab.get_mut(key)
                && l.retry_at > now
            {
                l.retry_at = now.max(1);
            }
        }
    }

    /// True once shutdown has finished (or was cut short).
    fn finished(&self) -> bool {
        self.abort || (self.shutdown_at != 0 && self.open == 0)
    }

    /// How long poll may sleep: not at all with leftover work, else until
    /// the nearest deadline.
    fn poll_timeout(&mut self) -> Option<Duration> {
        if !self.ready.is_empty() {
            return Some(Duration::ZERO);
        }
        let mut next = self.next_cron;
        if let Some(t) = self.timers.next() {
            next = next.min(t);
        }
        if self.shutdown_at != 0 {
            next = next.min(self.shutdown_at);
        }
        for &key in &self.listeners {
            if let Some(Slot::Listener(l)) = self.slab.get(key)
                && l.retry_at != 0
            {
                next = next.min(l.retry_at);
            }
        }
        Some(timeout_until(self.clock.tick(), next))
    }

    /// Phase 2: sleep in the kernel until an event or the timeout.
    fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> Result<()> {
        loop {
            match self.poll.poll(events, timeout) {
                Ok(()) => break,
                // EINTR: a signal landed during the sleep. Not an error;
                // the signal itself arrives as an event on SIGNALS.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Io(e)),
            }
        }
        self.clock.tick();
        self.stats.iterations += 1;
        if !events.is_empty() {
            self.stats.wakeups += 1;
        }
        Ok(())
    }

    /// Phase 3: hand each event to its slot.
    fn dispatch(&mut self, events: &Events) {
        for event in events.iter() {
            self.stats.events += 1;
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
            let r = event.is_readable() || event.is_read_closed() || event.is_error();
            let w = event.is_writable() || event.is_write_closed() || event.is_error();
            match event.token() {
                SIGNALS => self.on_signals(),
                WAKER => {
                    if self.shared.stop.load(Ordering::Acquire) {
                        self.begin_shutdown("shutdown requested");
                    }
                    self.take_bus();
                }
                Token(key) => self.on_ready(key, r, w, event.is_read_closed()),
            }
        }
    }

    /// Records readiness for slot `key` and does the work it allows.
    fn on_ready(&mut self, key: usize, readable: bool, writable: bool, read_closed: bool) {
        match self.slab.get_mut(key) {
            // Spurious: nothing lives at this key (mio allows such events).
            None => trace!("event for empty token {key}: ignored"),
            Some(Slot::Listener(l)) => {
                l.ready |= readable;
                self.accept(key);
            }
            Some(Slot::Udp(u)) => {
                u.readable |= readable;
                u.writable |= writable;
                self.drive_udp(key);
            }
            // Closed earlier in this batch: its key is not reused until the
            // batch is over, so the event is simply stale.
            Some(Slot::Conn(c)) if c.phase == Phase::Closed => {}
            Some(Slot::Conn(c)) => {
                c.readable |= readable;
                c.writable |= writable;
                c.peer_closed |= read_closed;
                self.drive(key);
            }
        }
    }

    /// Puts `key` on the ready list (once) for another slice next turn.
    fn defer(&mut self, key: usize) {
        let queued = match self.slab.get_mut(key) {
            Some(Slot::Conn(c)) => &mut c.queued,
            Some(Slot::Listener(l)) => &mut l.queued,
            Some(Slot::Udp(u)) => &mut u.queued,
            None => return,
        };
        if !*queued {
            *queued = true;
            self.ready.push(key);
        }
    }

    /// Phase 4: give every deferred slot its next slice.
    fn run_ready_list(&mut self) {
        if self.ready.is_empty() {
            return;
        }
        let spare = std::mem::take(&mut self.ready_spare);
        let mut batch = std::mem::replace(&mut self.ready, spare);
        for &key in &batch {
            match self.slab.get_mut(key) {
                Some(Slot::Conn(c)) => {
                    c.queued = false;
                    self.drive(key);
                }
                Some(Slot::Listener(l)) => {
                    l.queued = false;
                    self.accept(key);
                }
                Some(Slot::Udp(u)) => {
                    u.queued = false;
                    self.drive_udp(key);
                }
                None => {}
            }
        }
        batch.clear();
        self.ready_spare = batch;
    }

    /// Phase 5: deadlines, accept retries, housekeeping, shutdown grace.
    fn run_timers(&mut self) {
        let now = self.clock.now();
        while let Some(due) = self.timers.pop_due(now) {
            let key = due.key as usize;
            let Some(Slot::Conn(c)) = self.slab.get_mut(key) else {
                continue;
            };
            // A stale entry: another connection now holds this key, or this
            // one is closed or has no deadline any more.
            if c.id != due.id || c.phase == Phase::Closed || c.deadline == 0 {
                continue;
            }
            if c.deadline > now {
                // Activity moved the deadline: look again then (lazy re-arm).
                self.timers.push(c.deadline, key, c.id);
                continue;
            }
            // This entry is spent: with the deadline cleared, whatever
            // `expire` sets next (a linger, a ping's answer) arms a new one.
            c.deadline = 0;
            self.expire(key);
        }
        for i in 0..self.listeners.len() {
            let key = self.listeners[i];
            if let Some(Slot::Listener(l)) = self.slab.get_mut(key)
                && l.retry_at != 0
                && l.retry_at <= now
            {
                l.retry_at = 0;
                self.accept(key);
            }
        }
        if now >= self.next_cron {
            self.cron(now);
        }
        if self.shutdown_at != 0 && now >= self.shutdown_at && self.open > 0 {
            warn!(
                "grace period over: closing {} connections that still had work",
                self.open
            );
            self.close_all();
        }
    }

    /// Housekeeping, 10 times a second: publish the counters; once a
    /// second, give back pool buffers a burst left unused.
    fn cron(&mut self, now: Millis) {
        self.next_cron = now + CRON_MS;
        self.publish_stats();
        if now / 1000 != (now - CRON_MS.min(now)) / 1000 {
            self.pool.trim();
            self.compact_timers();
        }
    }

    /// Rebuilds the timer heap with one entry per live connection, once
    /// stale entries dominate it. Lazy re-arming leaves entries behind: a
    /// closed connection's stays until its deadline, and a deadline moved
    /// earlier (HTTP's header deadline, on every keep-alive request) adds
    /// one that the older entry does not replace. Without this, the heap
    /// would grow with the connection and request rates. O(n), at most
    /// once a second.
    fn compact_timers(&mut self) {
        if self.timers.len() <= 2 * self.open + 1024 {
            return;
        }
        let live = self.slab.iter().filter_map(|(key, slot)| match slot {
            Slot::Conn(c) if c.phase != Phase::Closed && c.deadline != 0 => Some(Due {
                when: c.deadline,
                key: key as u32,
                id: c.id,
            }),
            _ => None,
        });
        self.timers.rebuild(live);
    }

    /// Copies the counters where `Handle::stats` reads them.
    fn publish_stats(&mut self) {
        self.stats.open = self.open as u64;
        let mut shared = self.shared.stats.lock().unwrap_or_else(|e| e.into_inner());
        *shared = self.stats;
    }

    /// Reads pending signals: the first SIGINT/SIGTERM starts a graceful
    /// shutdown, a second one stops at once.
    fn on_signals(&mut self) {
        let Some(signals) = self.signals.as_mut() else {
            return;
        };
        let pending: Vec<i32> = signals.pending().collect();
        for sig in pending {
            let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
            if self.shutdown_at != 0 {
                warn!("{name} again: stopping now, without flushing");
                self.abort = true;
                return;
            }
            self.begin_shutdown(name);
        }
    }

    /// Stops accepting, tells chat members, and lets every connection
    /// finish: echo clients get everything that already arrived echoed,
    /// then all close. The loop ends when none is left or the grace ends.
    fn begin_shutdown(&mut self, why: &str) {
        if self.shutdown_at != 0 {
            return;
        }
        let grace = self.limits.shutdown_grace;
        self.shutdown_at = self.clock.after(grace).max(self.clock.now());
        info!(
            "{why}: shutting down, {} connections open, grace {:.1}s",
            self.open,
            grace.as_secs_f64()
        );
        // Stop accepting: listeners and the UDP socket are freed after this
        // batch (their events later in it are no-ops: `accept` and
        // `drive_udp` check `shutdown_at`).
        self.closed.append(&mut self.listeners);
        self.announce("* server shutting down");
        let keys: Vec<usize> = self
            .slab
            .iter()
            .filter(|(_, s)| matches!(s, Slot::Conn(c) if c.is_serving()))
            .map(|(k, _)| k)
            .collect();
        for key in keys {
            if let Some(Slot::Conn(c)) = self.slab.get_mut(key) {
                match c.service {
                    // Finish what already arrived: echo it, answer it.
                    Service::Echo | Service::Unix | Service::Http => c.phase = Phase::Draining,
                    Service::Ws => {
                        let going = websocket::close_frame(websocket::code::GOING_AWAY);
                        self.ws_end(key, &going)
                    }
                    _ => self.begin_close(key),
                }
                self.drive(key);
            }
        }
    }

    /// Delivers chat lines other loops published to this loop's members.
    fn take_bus(&mut self) {
        let Some(bus) = self.bus.take() else {
            return;
        };
        for msg in bus.take() {
            self.chat.deliver(&msg.room, &msg.line, &mut outbox!(self));
        }
        self.bus = Some(bus);
        self.drop_too_slow();
    }

    /// Joins this loop to the others: `bus` reaches them; default chat
    /// nicks are numbered so they stay unique across `loops` loops.
    pub fn join_loops(&mut self, index: usize, loops: usize, bus: bus::Bus) {
        self.bus = Some(bus);
        self.chat.set_guests(crate::service::chat::Guests {
            stride: loops,
            tag: index,
        });
    }

    /// This loop's waker (other loops ring it).
    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Sends one line to every chat member.
    fn announce(&mut self, line: &str) {
        self.chat.announce(line, &mut outbox!(self));
        self.drop_too_slow();
    }

    /// Closes every connection now (grace over, or abort).
    fn close_all(&mut self) {
        let keys: Vec<usize> = self
            .slab
            .iter()
            .filter(|(_, s)| matches!(s, Slot::Conn(c) if c.phase != Phase::Closed))
            .map(|(k, _)| k)
            .collect();
        for key in keys {
            self.close(key, crate::service::chat::Leave::Shutdown);
        }
    }

    /// After the loop: close what is left, publish and log the totals.
    fn finish(mut self) -> Result<Stats> {
        self.close_all();
        self.before_sleep();
        self.publish_stats();
        info!("stopped: {}", self.stats);
        if self.abort {
            return Err(Error::Aborted);
        }
        Ok(self.stats)
    }
}

/// Gives this loop its share of `max_conns` (the limit is for the whole
/// server, split evenly over `loops`), kept below its share of the
/// open-files limit less the fds open now and a reserve, so accept meets
/// EMFILE only when something else takes fds (files being served).
fn clamp_max_conns(limits: &mut Limits, loops: usize) {
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
