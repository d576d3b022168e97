//! The request/response load loop over TCP, one per thread: echo, HTTP and
//! connect all run here, each with its own response [`Parser`].
//!
//! The loop copies the server's care: sockets registered once for read
//! and write (edge-triggered, readiness kept in the connection), reads
//! until `WouldBlock` or a short read, writes until `WouldBlock`, a
//! non-blocking connect checked with `take_error` and `peer_addr`.
//!
//! Requests are identical, so the bytes to send are periodic: a template
//! of the request repeated `depth + 1` times is written from, at the
//! offset where the last write stopped. Nothing is allocated per request:
//! each connection keeps a FIFO (capacity `depth`) of send times, so every
//! pipelined request is timed on its own.
//!
//! Load: each connection offers `depth` *slots*. Closed loop: a free slot
//! is filled at once. Open loop: arrivals come from a [`Schedule`] into a
//! backlog, and wait there for a free slot; latency counts from the
//! arrival's intended time, so waiting shows (coordinated omission).

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::kind::Kind;
use super::net;
use super::record::Recorder;
use super::run::{self, Clock, Plan, Schedule, Sleeper, ThreadOut};

/// How long a failed connection waits before it is tried again.
const RETRY_NS: u64 = 10_000_000;
/// How often in-flight requests are checked against the timeout.
const SCAN_NS: u64 = 20_000_000;
/// Bytes taken from a socket per read.
const READ_BUF: usize = 64 * 1024;

/// A response parser: one per connection, fed the bytes as they arrive.
pub trait Parser {
    /// Takes bytes read; calls `done` once per complete response, with
    /// its verdict. Err means the stream cannot be followed any more (the
    /// connection is dropped, its in-flight requests fail with that kind).
    fn feed(&mut self, data: &[u8], done: &mut impl FnMut(Result<(), Kind>)) -> Result<(), Kind>;
    /// The peer closed: Some(verdict) if that completed a response
    /// (an EOF-delimited body, a greeting); None otherwise.
    fn eof(&mut self) -> Option<Result<(), Kind>>;
    /// Forgets any partial response (the connection was replaced).
    fn reset(&mut self);
}

/// What one workload sends and how.
#[derive(Clone, Debug)]
pub struct Spec<P> {
    /// The server.
    pub addr: SocketAddr,
    /// One request's bytes (empty: nothing is sent, as in `connect`).
    pub request: Vec<u8>,
    /// Requests in flight per connection.
    pub depth: usize,
    /// One request per connection: connect, ask, answer, close.
    pub per_conn: bool,
    /// The parser each connection starts with.
    pub parser: P,
}

/// A request in flight.
#[derive(Clone, Copy, Debug)]
struct Pending {
    /// When it was meant to be sent (ns since the base).
    intended: u64,
    /// When it was queued for writing (or its connect began).
    sent: u64,
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No socket (not started, failed, or between per-connection cycles).
    Idle,
    /// Connect started, not yet confirmed.
    Connecting,
    /// Connected: requests flow.
    Open,
}

/// One client connection.
#[derive(Debug)]
struct Conn<P> {
    /// The socket, if any.
    sock: Option<TcpStream>,
    /// Life stage.
    state: State,
    /// The socket took our last write whole (readiness kept in user space).
    writable: bool,
    /// The peer's FIN was announced: read to EOF, not to a short read.
    peer_closed: bool,
    /// Requests in flight, oldest first.
    fifo: VecDeque<Pending>,
    /// Request bytes queued but not yet written.
    queued: usize,
    /// Offset in the periodic request stream where the next write starts.
    out_pos: usize,
    /// The response parser.
    parser: P,
    /// When the current connect started.
    since: u64,
    /// Index of this connection across all threads (source address choice).
    global: usize,
}

/// The loop's state for one thread.
struct Driver<P> {
    /// The readiness queue.
    poll: Poll,
    /// The workload.
    spec: Spec<P>,
    /// `spec.request` repeated `depth + 1` times: what writes copy from.
    tmpl: Vec<u8>,
    /// The run's plan (this thread's share).
    plan: Plan,
    /// The clock (ns since the run's base instant).
    clock: Clock,
    /// Connections; the index is the token.
    conns: Vec<Conn<P>>,
    /// Free request slots (connection keys; stale ones are skipped).
    slots: VecDeque<usize>,
    /// Open loop: arrivals waiting for a free slot (intended times).
    backlog: VecDeque<u64>,
    /// Open loop: the arrival schedule.
    sched: Option<Schedule>,
    /// Sleeps until the next deadline (to the microsecond in open loop).
    sleeper: Sleeper,
    /// Connections with bytes queued since the last flush pass.
    dirty: Vec<usize>,
    /// Connections to retry, with when.
    retry: Vec<(u64, usize)>,
    /// Read buffer shared by every connection of this thread.
    rbuf: Vec<u8>,
    /// Requests left to start (with `-n`).
    quota: Option<u64>,
    /// Past time zero: requests may be sent (see [`Driver::setup`]).
    started: bool,
    /// No new requests: draining what is in flight.
    stopping: bool,
    /// What was measured.
    rec: Recorder,
}

/// Runs `spec` on `--threads` loops, each with its share of the
/// connections, and merges what they measured.
pub fn drive<P: Parser + Clone + Send + Sync + 'static>(
    spec: Spec<P>,
    c: &super::cli::Common,
) -> crate::Result<run::Merged> {
    let setup = run::Setup {
        common: c,
        conns: c.conns,
        threads: c.threads.min(c.conns.max(1)),
    };
    run::drive(setup, move |plan| run_thread(spec.clone(), plan))
}

/// Runs the request/response workload `spec` for this thread's `plan`.
pub fn run_thread<P: Parser + Clone>(spec: Spec<P>, plan: Plan) -> io::Result<ThreadOut> {
    let mut d = Driver::new(spec, plan)?;
    d.start();
    d.run()
}

impl<P: Parser + Clone> Driver<P> {
    /// Sets up the connections (not yet connected).
    fn new(mut spec: Spec<P>, plan: Plan) -> io::Result<Driver<P>> {
        if spec.per_conn {
            spec.depth = 1;
        }
        spec.depth = spec.depth.max(1);
        let tmpl = spec.request.repeat(spec.depth + 1);
        let conns = (0..plan.conns)
            .map(|i| Conn {
                sock: None,
                state: State::Idle,
                writable: false,
                peer_closed: false,
                fifo: VecDeque::with_capacity(spec.depth),
                queued: 0,
                out_pos: 0,
                parser: spec.parser.clone(),
                since: 0,
                global: plan.first_conn + i,
            })
            .collect();
        // Setup failures count: the window is set at time zero.
        let mut rec = Recorder::new(0, u64::MAX);
        if plan.rate.is_none() && !spec.per_conn {
            // Closed loop keep-alive: a request is queued the moment its
            // slot frees, so its service time is its latency.
            rec = rec.service_is_latency();
        }
        let poll = Poll::new()?;
        let sleeper = Sleeper::new(poll.registry(), &plan, plan.rate.is_some())?;
        Ok(Driver {
            poll,
            sleeper,
            tmpl,
            clock: plan.clock,
            rec,
            quota: plan.count,
            conns,
            slots: VecDeque::new(),
            backlog: VecDeque::new(),
            sched: None,
            dirty: Vec::new(),
            retry: Vec::new(),
            rbuf: vec![0; READ_BUF],
            started: false,
            stopping: false,
            spec,
            plan,
        })
    }

    /// Keep-alive: connect everything now. Per connection: every
    /// connection is a free slot (a cycle waiting to start).
    fn start(&mut self) {
        let now = self.clock.now();
        for key in 0..self.conns.len() {
            if self.spec.per_conn {
                self.slots.push_back(key);
            } else {
                self.start_connect(key, now);
            }
        }
    }

    /// The loop: schedule, dispatch, flush, poll, handle events; until the
    /// run ends and what is in flight is answered or timed out.
    fn run(mut self) -> io::Result<ThreadOut> {
        let mut events = Events::with_capacity(1024);
        self.setup(&mut events)?;
        self.begin();
        let mut next_tick = self.plan.first_tick();
        let mut next_scan = self.clock.now() + SCAN_NS;
        let mut cpu_from = None;
        let mut stop_at = u64::MAX;
        loop {
            let now = self.clock.now();
            if cpu_from.is_none() && now >= self.plan.from {
                cpu_from = Some(super::procstat::thread_sched());
            }
            if !self.stopping && (now >= self.plan.until || self.quota == Some(0)) {
                self.stopping = true;
                stop_at = now;
                self.rec.unsent += self.backlog.len() as u64;
                self.backlog.clear();
            }
            if self.stopping && (self.idle() || now >= stop_at + self.plan.timeout) {
                self.expire_all(now);
                break;
            }
            while now >= next_tick {
                // The collector may be gone (it only prints): ignore that.
                let _ = self
                    .plan
                    .ticks
                    .send((self.plan.thread, self.rec.take_tick()));
                next_tick += 1_000_000_000;
            }
            if now >= next_scan {
                self.scan_timeouts(now);
                next_scan = now + SCAN_NS;
            }
            self.run_retries(now);
            self.dispatch(now);
            self.flush_dirty(now);
            let wake = self.next_wake(next_tick.min(next_scan), stop_at);
            self.sleeper
                .wait(&mut self.poll, &mut events, &self.clock, wake)?;
            for ev in events.iter().filter(|e| e.token() != run::ALARM) {
                self.on_event(ev);
            }
        }
        let end = self.clock.now();
        Ok(ThreadOut::new(
            self.rec,
            cpu_from,
            &self.sleeper,
            stop_at,
            end,
        ))
    }

    /// Keep-alive: waits until every connection is up or has failed (each
    /// failure counted once; the failed are tried again once the run has
    /// begun), up to the timeout: a connect still pending then is
    /// abandoned. So no request is scheduled before there is a connection
    /// to carry it, and connecting is not its latency.
    fn setup(&mut self, events: &mut Events) -> io::Result<()> {
        let deadline = self.clock.now().saturating_add(self.plan.timeout);
        loop {
            let now = self.clock.now();
            let pending: Vec<usize> = (0..self.conns.len())
                .filter(|&k| self.conns[k].state == State::Connecting)
                .collect();
            if pending.is_empty() {
                return Ok(());
            }
            if now >= deadline {
                for key in pending {
                    self.abandon(key, now);
                }
                return Ok(());
            }
            self.sleeper
                .wait(&mut self.poll, events, &self.clock, deadline)?;
            for ev in events.iter().filter(|e| e.token() != run::ALARM) {
                self.on_event(ev);
            }
        }
    }

    /// Time zero: the window and the schedule start.
    fn begin(&mut self) {
        self.started = true;
        let p = &mut self.plan;
        let zero = p.start();
        self.rec.set_window(p.from, p.until);
        self.sleeper.count_from(p.from);
        self.sched = p.rate.map(|r| Schedule::new(zero, r, p.poisson, p.seed));
    }

    /// The earliest time the loop must wake on its own.
    fn next_wake(&self, mut at: u64, stop_at: u64) -> u64 {
        if !self.stopping {
            at = at.min(self.plan.until);
            if let Some(s) = &self.sched {
                at = at.min(s.peek());
            }
        } else {
            at = at.min(stop_at.saturating_add(self.plan.timeout));
        }
        if let Some(&(when, _)) = self.retry.iter().min_by_key(|r| r.0) {
            at = at.min(when);
        }
        if !self.dirty.is_empty() {
            at = 0;
        }
        at
    }

    /// True when nothing is in flight: no request, and no connect (a
    /// connect still pending at the end is waited for, up to the timeout,
    /// so one that never completes is counted, not forgotten).
    fn idle(&self) -> bool {
        self.conns
            .iter()
            .all(|c| c.fifo.is_empty() && c.state != State::Connecting)
    }

    /// Takes due arrivals into the backlog and fills free slots.
    fn dispatch(&mut self, now: u64) {
        if let Some(s) = &mut self.sched {
            // With `-n`, the schedule holds only the arrivals still to
            // start: a loop that wakes late must not take more.
            let room =
                |backlog: &VecDeque<u64>| self.quota.is_none_or(|q| (backlog.len() as u64) < q);
            while !self.stopping && s.peek() <= now && room(&self.backlog) {
                self.rec.lagged(now, s.peek());
                self.backlog.push_back(s.peek());
                s.advance();
            }
        }
        while let Some(&key) = self.slots.front() {
            if !self.started || self.stopping || self.quota == Some(0) {
                return;
            }
            let intended = match (&self.sched, self.backlog.front()) {
                (None, _) => now,
                (Some(_), Some(&t)) => t,
                (Some(_), None) => return,
            };
            self.slots.pop_front();
            let c = &self.conns[key];
            let usable = if self.spec.per_conn {
                c.state == State::Idle && c.fifo.is_empty()
            } else {
                c.state == State::Open && c.fifo.len() < self.spec.depth
            };
            if !usable {
                continue; // a stale slot
            }
            if self.sched.is_some() {
                self.backlog.pop_front();
            }
            if let Some(q) = &mut self.quota {
                *q -= 1;
            }
            if self.spec.per_conn {
                self.conns[key].fifo.push_back(Pending {
                    intended,
                    sent: now,
                });
                self.start_connect(key, now);
            } else {
                self.queue_request(key, intended, now);
            }
        }
    }

    /// Puts one request on connection `key`'s queue.
    fn queue_request(&mut self, key: usize, intended: u64, now: u64) {
        let c = &mut self.conns[key];
        c.fifo.push_back(Pending {
            intended,
            sent: now,
        });
        if c.queued == 0 && !self.spec.request.is_empty() {
            self.dirty.push(key);
        }
        c.queued += self.spec.request.len();
    }

    /// Writes what every dirty connection has queued.
    fn flush_dirty(&mut self, now: u64) {
        while let Some(key) = self.dirty.pop() {
            self.flush(key, now);
        }
    }

    /// Writes connection `key`'s queued bytes until done or `WouldBlock`.
    fn flush(&mut self, key: usize, now: u64) {
        let len = self.spec.request.len().max(1);
        let c = &mut self.conns[key];
        let Some(sock) = &mut c.sock else { return };
        while c.queued > 0 && c.writable && c.state == State::Open {
            let end = (c.out_pos + c.queued).min(self.tmpl.len());
            let chunk = &self.tmpl[c.out_pos..end];
            match sock.write(chunk) {
                Ok(0) => return self.fail(key, Kind::Write, now),
                Ok(n) => {
                    c.queued -= n;
                    c.out_pos = (c.out_pos + n) % len;
                    self.rec.wrote(now, n);
                    if n < chunk.len() {
                        c.writable = false; // a short write: the socket is full
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => c.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return self.fail(key, Kind::Write, now),
            }
        }
    }

    /// Starts connecting `key`; a failure to even start counts as a
    /// connect error.
    fn start_connect(&mut self, key: usize, now: u64) {
        let src = net::source_ip(self.conns[key].global, self.plan.source_ips, self.spec.addr);
        let sock = net::connect(self.spec.addr, src).and_then(|mut s| {
            self.poll.registry().register(
                &mut s,
                Token(key),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(s)
        });
        match sock {
            Ok(s) => {
                let c = &mut self.conns[key];
                c.sock = Some(s);
                c.state = State::Connecting;
                c.since = now;
            }
            Err(_) => self.fail(key, Kind::Connect, now),
        }
    }

    /// One readiness event. The clock is read once per event, after the
    /// read (a response's arrival time); the requests that follow are
    /// stamped with that time too, which can only overstate latency by
    /// the few microseconds until their write.
    fn on_event(&mut self, ev: &mio::event::Event) {
        let key = ev.token().0;
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if ev.is_read_closed() {
            c.peer_closed = true;
        }
        if c.state == State::Connecting {
            let Some(sock) = &c.sock else { return };
            let now = self.clock.now();
            match net::connected(sock) {
                Ok(true) => self.opened(key, now),
                Ok(false) => return,
                Err(_) => return self.fail(key, Kind::Connect, now),
            }
        }
        let c = &mut self.conns[key];
        if c.state != State::Open {
            return;
        }
        if ev.is_writable() {
            c.writable = true;
        }
        let now = self.read(key);
        // Refill the slots the answers freed now, not after the whole
        // batch: the server gets its next request while we read others.
        self.dispatch(now);
        self.flush_dirty(now);
        self.flush(key, now);
    }

    /// The connect completed.
    fn opened(&mut self, key: usize, now: u64) {
        let c = &mut self.conns[key];
        c.state = State::Open;
        c.writable = true;
        if self.spec.per_conn {
            if !self.spec.request.is_empty() {
                if let Some(p) = c.fifo.front_mut() {
                    p.sent = now; // service time runs from the request
                }
                c.queued = self.spec.request.len();
            }
        } else {
            for _ in 0..self.spec.depth {
                self.slots.push_back(key);
            }
        }
    }

    /// Reads connection `key` until `WouldBlock`, a short read or EOF,
    /// feeding its parser. Returns the time of the last read.
    fn read(&mut self, key: usize) -> u64 {
        loop {
            let c = &mut self.conns[key];
            let Some(sock) = &mut c.sock else {
                return self.clock.now();
            };
            let res = sock.read(&mut self.rbuf);
            let now = self.clock.now();
            match res {
                Ok(0) => {
                    self.on_eof(key, now);
                    return now;
                }
                Ok(n) => {
                    self.rec.read(now, n);
                    if !self.feed(key, n, now) {
                        return now;
                    }
                    let c = &self.conns[key];
                    // A read that did not fill the buffer drained the socket
                    // (epoll(7)); unless the FIN came in the same event.
                    if (n < self.rbuf.len() && !c.peer_closed) || c.state != State::Open {
                        return now;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return now,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.fail(key, Kind::Read, now);
                    return now;
                }
            }
        }
    }

    /// Feeds `rbuf[..n]` to `key`'s parser, recording each response.
    /// Returns false if the connection was dropped or recycled.
    fn feed(&mut self, key: usize, n: usize, now: u64) -> bool {
        let Conn { parser, fifo, .. } = &mut self.conns[key];
        let (rec, slots) = (&mut self.rec, &mut self.slots);
        let keep_alive = !self.spec.per_conn;
        let mut unsolicited = false;
        let mut completed = 0;
        let res = parser.feed(&self.rbuf[..n], &mut |verdict| match fifo.pop_front() {
            Some(p) => {
                match verdict {
                    Ok(()) => rec.done(now, p.intended, p.sent),
                    Err(k) => rec.error(now, k, 1),
                }
                completed += 1;
                if keep_alive {
                    slots.push_back(key);
                }
            }
            None => unsolicited = true,
        });
        if unsolicited {
            // Bytes nobody asked for: the stream cannot be trusted.
            self.fail(key, Kind::Verify, now);
            return false;
        }
        if let Err(k) = res {
            self.fail(key, k, now);
            return false;
        }
        if !keep_alive && completed > 0 {
            self.recycle(key, now);
            return false;
        }
        true
    }

    /// The peer closed its side.
    fn on_eof(&mut self, key: usize, now: u64) {
        let c = &mut self.conns[key];
        if let Some(verdict) = c.parser.eof()
            && let Some(p) = c.fifo.pop_front()
        {
            match verdict {
                Ok(()) => self.rec.done(now, p.intended, p.sent),
                Err(k) => self.rec.error(now, k, 1),
            }
        }
        if !c.fifo.is_empty() {
            // Closed with answers owed: each one is a read error.
            return self.fail(key, Kind::Read, now);
        }
        if self.spec.per_conn {
            self.recycle(key, now);
        } else {
            // An idle keep-alive connection the server closed: reconnect.
            self.close(key);
            if !self.stopping {
                self.start_connect(key, now);
            }
        }
    }

    /// Per-connection mode: this cycle is over; the slot is free again.
    fn recycle(&mut self, key: usize, _now: u64) {
        self.close(key);
        self.slots.push_back(key);
    }

    /// Drops `key`'s socket and state (not its errors: see `fail`).
    fn close(&mut self, key: usize) {
        let c = &mut self.conns[key];
        if let Some(mut s) = c.sock.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        c.state = State::Idle;
        c.writable = false;
        c.peer_closed = false;
        c.fifo.clear();
        c.queued = 0;
        c.out_pos = 0;
        c.parser.reset();
    }

    /// Connection `key` failed with `kind`: every request in flight on it
    /// fails (at least one failure counts), then it is retried shortly.
    fn fail(&mut self, key: usize, kind: Kind, now: u64) {
        let lost = self.conns[key].fifo.len().max(1) as u64;
        self.rec.error(now, kind, lost);
        self.close(key);
        if !self.stopping {
            self.retry.push((now + RETRY_NS, key));
        }
    }

    /// Starts the retries that are due.
    fn run_retries(&mut self, now: u64) {
        let mut i = 0;
        while i < self.retry.len() {
            if self.retry[i].0 > now {
                i += 1;
                continue;
            }
            let (_, key) = self.retry.swap_remove(i);
            if self.stopping || self.conns[key].state != State::Idle {
                continue;
            }
            if self.spec.per_conn {
                self.slots.push_back(key);
            } else {
                self.start_connect(key, now);
            }
        }
    }

    /// Abandons connections whose oldest request (or connect) is older
    /// than the timeout.
    fn scan_timeouts(&mut self, now: u64) {
        let t = self.plan.timeout;
        for key in 0..self.conns.len() {
            let c = &self.conns[key];
            let late = match c.state {
                State::Connecting => now.saturating_sub(c.since) > t,
                State::Open => c
                    .fifo
                    .front()
                    .is_some_and(|p| now.saturating_sub(p.sent) > t),
                State::Idle => false,
            };
            if late {
                self.abandon(key, now);
            }
        }
    }

    /// Gives up on what connection `key` has in flight, as one failure
    /// per request (or one for the connection): a connect still pending
    /// fails as `connect` (with a cycle's request waiting on it, that
    /// request counts once, as this), requests sent and unanswered as
    /// `timeout`.
    fn abandon(&mut self, key: usize, now: u64) {
        let kind = match self.conns[key].state {
            State::Connecting => Kind::Connect,
            _ => Kind::Timeout,
        };
        self.fail(key, kind, now);
    }

    /// At the end: whatever is still in flight is abandoned.
    fn expire_all(&mut self, now: u64) {
        for key in 0..self.conns.len() {
            let c = &self.conns[key];
            if !c.fifo.is_empty() || c.state == State::Connecting {
                self.abandon(key, now);
            }
            self.close(key);
        }
    }
}
