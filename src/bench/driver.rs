//! The request/response load loop over TCP, one per thread: echo, tcp,
//! HTTP and connect all run here, each with its own response [`Parser`],
//! over plain TCP or TLS ([`Stream`]).
//!
//! The loop copies the server's care: sockets registered once for read
//! and write (edge-triggered, readiness kept in the connection), reads
//! until `WouldBlock` (or, plain TCP only, a short read), writes until
//! `WouldBlock`, a non-blocking connect checked with `take_error` and
//! `peer_addr`, then the TLS handshake driven by the same events.
//!
//! A WebSocket workload (`bench ws --echo`) sends an upgrade request once
//! a connection is up (after TLS), and the connection is open for requests
//! only once the server answered 101 (before time zero, like a connect).
//!
//! Requests come from a list taken round-robin ([`Request`]: a head and a
//! body shared by every request that sends it). Nothing is copied or
//! allocated per request: each connection keeps a queue of the requests
//! it has not finished writing, written straight from the list with one
//! `writev` (TLS: one record) for as many as are queued, and a FIFO of
//! send times (capacity `depth`) for the ones awaiting an answer, so
//! every pipelined request is timed on its own. The two are apart: a
//! server may answer a request before it has read all of its body.
//!
//! Load: each connection offers `depth` *slots*. Closed loop: a free slot
//! is filled at once. Open loop: arrivals come from a [`Schedule`] into a
//! backlog, and wait there for a free slot; latency counts from the
//! arrival's intended time, so waiting shows (coordinated omission).

use std::collections::VecDeque;
use std::io::{self, ErrorKind, IoSlice};
use std::net::SocketAddr;
use std::sync::Arc;

use mio::{Events, Interest, Poll, Token};

use super::kind::Kind;
use super::net;
use super::record::Recorder;
use super::run::{self, Clock, Plan, Schedule, Sleeper, ThreadOut};
use super::stream::Stream;
use super::tls::Tls;

/// How long a failed connection waits before it is tried again.
const RETRY_NS: u64 = 10_000_000;
/// How often in-flight requests are checked against the timeout.
const SCAN_NS: u64 = 20_000_000;
/// Bytes taken from a socket per read.
const READ_BUF: usize = 64 * 1024;
/// Buffers one `writev` takes at most (two per request: head and body).
const MAX_IOV: usize = 64;

/// One complete response, as its parser judged it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    /// Fine, or why not.
    pub verdict: Result<(), Kind>,
    /// Its status code (HTTP); 0 where the protocol has none.
    pub status: u16,
}

impl Answer {
    /// An answer without a status code.
    pub fn plain(verdict: Result<(), Kind>) -> Answer {
        Answer { verdict, status: 0 }
    }
}

/// Where a parser's responses go, and what it may ask about them.
pub trait Sink {
    /// The request the next response answers (its index in the
    /// workload's list), if one is awaited: HTTP needs it, since the
    /// answer to a HEAD has no body.
    fn request(&self) -> Option<usize>;
    /// One complete response.
    fn done(&mut self, answer: Answer);
}

/// A closure taking each answer is a sink whose requests are unknown (a
/// HEAD among them is not: every answer is read as having its body).
impl<F: FnMut(Answer)> Sink for F {
    fn request(&self) -> Option<usize> {
        None
    }

    fn done(&mut self, answer: Answer) {
        self(answer);
    }
}

/// A response parser: one per connection, fed the bytes as they arrive.
pub trait Parser {
    /// Takes bytes read; calls `sink.done` once per complete response.
    /// Err means the stream cannot be followed any more (the connection
    /// is dropped, its in-flight requests fail with that kind).
    fn feed(&mut self, data: &[u8], sink: &mut impl Sink) -> Result<(), Kind>;
    /// The peer closed: Some(answer) if that completed a response
    /// (an EOF-delimited body, a greeting); None otherwise.
    fn eof(&mut self) -> Option<Answer>;
    /// Forgets any partial response (the connection was replaced).
    fn reset(&mut self);
}

/// One request's bytes: a head and a body (often empty), both shared by
/// every connection that sends it.
#[derive(Clone, Debug)]
pub struct Request {
    /// The first bytes (HTTP: the request line and headers).
    pub head: Arc<[u8]>,
    /// The bytes after (HTTP: the body; a file's bytes, loaded once).
    pub body: Arc<[u8]>,
}

impl Request {
    /// A request of `head` alone.
    pub fn new(head: Vec<u8>) -> Request {
        Request {
            head: head.into(),
            body: Arc::from(&[][..]),
        }
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.head.len() + self.body.len()
    }

    /// True if nothing is sent (the connect workload).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What one workload sends and how.
#[derive(Clone, Debug)]
pub struct Spec<P> {
    /// The server.
    pub addr: SocketAddr,
    /// The requests, taken in turn (one empty request: nothing is sent,
    /// as in `connect`).
    pub requests: Arc<[Request]>,
    /// Requests in flight per connection.
    pub depth: usize,
    /// One request per connection: connect, ask, answer, close.
    pub per_conn: bool,
    /// The parser each connection starts with.
    pub parser: P,
    /// TLS over every connection.
    pub tls: Option<Tls>,
    /// Once connected (and through the handshake), close our side (TLS:
    /// `close_notify`) and wait for the server to close: the cycle of
    /// `connect --tls`.
    pub hang_up: bool,
    /// WebSocket: this upgrade request goes first on every connection,
    /// which opens once the server answers 101 (anything else is a
    /// `status` error).
    pub upgrade: Option<Arc<[u8]>>,
}

/// A request awaiting its answer.
#[derive(Clone, Copy, Debug)]
struct Pending {
    /// When it was meant to be sent (ns since the base).
    intended: u64,
    /// When it was queued for writing (or its connect began).
    sent: u64,
    /// Which request of the list.
    req: u32,
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No socket (not started, failed, or between per-connection cycles).
    Idle,
    /// Connect started, not yet confirmed.
    Connecting,
    /// Connected; the TLS handshake runs.
    Handshaking,
    /// The WebSocket upgrade is sent; its 101 is awaited.
    Upgrading,
    /// Requests flow.
    Open,
}

impl State {
    /// True while the connection is on its way to open: connecting, in
    /// its TLS handshake, or awaiting its upgrade's 101.
    fn setting_up(self) -> bool {
        matches!(
            self,
            State::Connecting | State::Handshaking | State::Upgrading
        )
    }
}

/// One client connection.
#[derive(Debug)]
struct Conn<P> {
    /// The socket (and TLS), if any.
    stream: Option<Stream>,
    /// Life stage.
    state: State,
    /// The socket took our last write whole (readiness kept in user space).
    writable: bool,
    /// The peer's FIN was announced: read to EOF, not to a short read.
    peer_closed: bool,
    /// Requests awaiting an answer, oldest first.
    fifo: VecDeque<Pending>,
    /// Requests not yet wholly written (indexes into the list), oldest
    /// first.
    out: VecDeque<u32>,
    /// Bytes of `out`'s first request already written.
    out_off: usize,
    /// The response parser.
    parser: P,
    /// When the current connect (then handshake) started.
    since: u64,
    /// Index of this connection across all threads (source address choice).
    global: usize,
    /// The response to the upgrade as it arrives (empty once open).
    head: Vec<u8>,
}

/// The loop's state for one thread.
struct Driver<P> {
    /// The readiness queue.
    poll: Poll,
    /// The workload.
    spec: Spec<P>,
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
    /// The next request of the list to send.
    next_req: usize,
    /// Requests left to start (with `-n`).
    quota: Option<u64>,
    /// Past time zero: requests may be sent (see [`Driver::setup`]).
    started: bool,
    /// No new requests: draining what is in flight.
    stopping: bool,
    /// What was measured.
    rec: Recorder,
}

/// The responses of one read on one connection: matched to the requests
/// awaiting them, recorded, their slots freed.
struct Answers<'a> {
    /// The connection's requests awaiting answers.
    fifo: &'a mut VecDeque<Pending>,
    /// Where the responses are recorded.
    rec: &'a mut Recorder,
    /// Free slots (keep-alive: an answer frees one).
    slots: &'a mut VecDeque<usize>,
    /// The connection.
    key: usize,
    /// Keep-alive (else one request per connection).
    keep_alive: bool,
    /// When the bytes were read.
    now: u64,
    /// Responses completed.
    completed: usize,
    /// A response came that nobody asked for.
    unsolicited: bool,
}

impl Sink for Answers<'_> {
    fn request(&self) -> Option<usize> {
        self.fifo.front().map(|p| p.req as usize)
    }

    fn done(&mut self, a: Answer) {
        let Some(p) = self.fifo.pop_front() else {
            self.unsolicited = true;
            return;
        };
        record(self.rec, self.now, p, a);
        self.completed += 1;
        if self.keep_alive {
            self.slots.push_back(self.key);
        }
    }
}

/// Records request `p`'s answer `a` at `now`.
fn record(rec: &mut Recorder, now: u64, p: Pending, a: Answer) {
    rec.status(now, a.status, a.verdict.is_err());
    match a.verdict {
        Ok(()) => rec.done(now, p.intended, p.sent),
        Err(k) => rec.error(now, k, 1),
    }
}

/// The kind of failure an I/O error on a stream is: `tls` for a TLS
/// error (rustls's, as `InvalidData`), else `other`.
fn kind_of(e: &io::Error, other: Kind) -> Kind {
    if e.kind() == ErrorKind::InvalidData {
        Kind::Tls
    } else {
        other
    }
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
        if spec.requests.is_empty() {
            spec.requests = Arc::from(vec![Request::new(Vec::new())]);
        }
        let conns = (0..plan.conns)
            .map(|i| Conn {
                stream: None,
                state: State::Idle,
                writable: false,
                peer_closed: false,
                fifo: VecDeque::with_capacity(spec.depth),
                out: VecDeque::with_capacity(spec.depth),
                out_off: 0,
                parser: spec.parser.clone(),
                since: 0,
                global: plan.first_conn + i,
                head: Vec::new(),
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
            next_req: 0,
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
                    .send((self.plan.thread, self.rec.take_tick(1_000_000_000)));
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
        self.plan.last_tick(&mut self.rec, end);
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
                .filter(|&k| self.conns[k].state.setting_up())
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

    /// True when nothing is in flight: no request, and no connect or
    /// handshake (one still pending at the end is waited for, up to the
    /// timeout, so one that never completes is counted, not forgotten).
    fn idle(&self) -> bool {
        self.conns
            .iter()
            .all(|c| c.fifo.is_empty() && !c.state.setting_up())
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
                c.state == State::Idle && c.fifo.is_empty() && c.out.is_empty()
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
            self.queue_request(key, intended, now);
            if self.spec.per_conn {
                self.start_connect(key, now);
            }
        }
    }

    /// Puts the next request of the list on connection `key`: awaited
    /// (the FIFO) and to be written (its queue, written once the
    /// connection is open).
    fn queue_request(&mut self, key: usize, intended: u64, now: u64) {
        let req = self.next_req;
        self.next_req = (self.next_req + 1) % self.spec.requests.len();
        let c = &mut self.conns[key];
        c.fifo.push_back(Pending {
            intended,
            sent: now,
            req: req as u32,
        });
        if !self.spec.requests[req].is_empty() {
            if c.out.is_empty() {
                self.dirty.push(key);
            }
            c.out.push_back(req as u32);
        }
    }

    /// Writes what every dirty connection has queued.
    fn flush_dirty(&mut self, now: u64) {
        while let Some(key) = self.dirty.pop() {
            self.flush(key, now);
        }
    }

    /// Writes connection `key`'s waiting ciphertext, then its queued
    /// requests, until done or `WouldBlock`.
    fn flush(&mut self, key: usize, now: u64) {
        let requests = &self.spec.requests;
        let c = &mut self.conns[key];
        let Some(stream) = &mut c.stream else { return };
        if c.state != State::Open || !c.writable {
            return;
        }
        match stream.flush() {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                c.writable = false;
                return;
            }
            Err(e) => return self.fail(key, kind_of(&e, Kind::Write), now),
        }
        while !c.out.is_empty() && c.writable {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let (n_iov, total) = gather(requests, &c.out, c.out_off, &mut iov);
            match stream.write(&iov[..n_iov]) {
                Ok(0) => return self.fail(key, Kind::Write, now),
                Ok(n) => {
                    advance(requests, &mut c.out, &mut c.out_off, n);
                    self.rec.wrote(now, n);
                    if n < total && stream.is_plain() {
                        c.writable = false; // a short write: the socket is full
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => c.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.fail(key, kind_of(&e, Kind::Write), now),
            }
        }
    }

    /// Starts connecting `key`; a failure to even start counts as a
    /// connect error.
    fn start_connect(&mut self, key: usize, now: u64) {
        let src = net::source_ip(self.conns[key].global, self.plan.source_ips, self.spec.addr);
        let stream = net::connect(self.spec.addr, src).and_then(|s| {
            let mut st = Stream::new(s, None)?;
            self.poll.registry().register(
                st.socket(),
                Token(key),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(st)
        });
        match stream {
            Ok(s) => {
                let c = &mut self.conns[key];
                c.stream = Some(s);
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
            let Some(stream) = c.stream.take() else {
                return;
            };
            let now = self.clock.now();
            match net::connected(stream.sock()) {
                Ok(true) => {
                    self.rec.connected(now, c.since);
                    c.state = State::Handshaking;
                    c.since = now;
                }
                Ok(false) => {
                    c.stream = Some(stream);
                    return;
                }
                Err(_) => {
                    c.stream = Some(stream);
                    return self.fail(key, Kind::Connect, now);
                }
            }
            // TLS begins once TCP is up: the connect time is TCP's alone.
            match &self.spec.tls {
                None => c.stream = Some(stream),
                Some(t) => match stream.into_tls(t) {
                    Ok(s) => c.stream = Some(s),
                    Err(_) => return self.fail(key, Kind::Tls, now),
                },
            }
        }
        let c = &mut self.conns[key];
        if c.state == State::Handshaking {
            let Some(stream) = &mut c.stream else { return };
            match stream.handshake() {
                Ok(Some(h)) => {
                    let now = self.clock.now();
                    if !stream.is_plain() {
                        self.rec.handshaken(now, c.since, &h);
                    }
                    match self.spec.upgrade.clone() {
                        Some(up) => return self.send_upgrade(key, &up, now),
                        None => self.opened(key, now),
                    }
                }
                Ok(None) => return,
                Err(_) => return self.fail(key, Kind::Tls, self.clock.now()),
            }
        }
        let c = &mut self.conns[key];
        if c.state == State::Upgrading {
            self.read_upgrade(key);
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

    /// Sends the WebSocket upgrade on `key`, just connected: one small
    /// write into an empty socket, which takes it whole (if it does not,
    /// the connection fails as a write error).
    fn send_upgrade(&mut self, key: usize, up: &[u8], now: u64) {
        let c = &mut self.conns[key];
        let Some(stream) = &mut c.stream else { return };
        let sent = stream.write(&[IoSlice::new(up)]);
        let flushed = stream.flush();
        match (sent, flushed) {
            (Ok(n), Ok(())) if n == up.len() => {
                c.state = State::Upgrading;
                c.since = now;
                c.head.clear();
            }
            (Err(e), _) | (_, Err(e)) => self.fail(key, kind_of(&e, Kind::Write), now),
            _ => self.fail(key, Kind::Write, now),
        }
    }

    /// Reads the answer to the upgrade on `key`: a `101` opens the
    /// connection (bytes after its head go to the parser); any other
    /// status is a `status` error.
    fn read_upgrade(&mut self, key: usize) {
        loop {
            let c = &mut self.conns[key];
            let Some(stream) = &mut c.stream else { return };
            let res = stream.read(&mut self.rbuf);
            let now = self.clock.now();
            let n = match res {
                Ok(0) => return self.fail(key, Kind::Read, now),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return self.fail(key, kind_of(&e, Kind::Read), now),
            };
            self.rec.read(now, n);
            c.head.extend_from_slice(&self.rbuf[..n]);
            let Some(end) = c.head.windows(4).position(|w| w == b"\r\n\r\n") else {
                if c.head.len() > READ_BUF {
                    return self.fail(key, Kind::Status, now); // no end to it
                }
                continue;
            };
            if !c.head.starts_with(b"HTTP/1.1 101 ") {
                return self.fail(key, Kind::Status, now);
            }
            // Frames right behind the head: nobody asked for them yet, so
            // the parser (fed them once the connection is open) says so.
            let rest = c.head.split_off(end + 4);
            c.head = Vec::new();
            self.opened(key, now);
            if !rest.is_empty() {
                self.rbuf[..rest.len()].copy_from_slice(&rest);
                self.feed(key, rest.len(), now);
            }
            return;
        }
    }

    /// The connect (and handshake) completed.
    fn opened(&mut self, key: usize, now: u64) {
        let c = &mut self.conns[key];
        c.state = State::Open;
        c.writable = true;
        if self.spec.per_conn {
            if let Some(p) = c.fifo.front_mut() {
                p.sent = now; // service time runs from the request
            }
        } else {
            for _ in 0..self.spec.depth {
                self.slots.push_back(key);
            }
        }
        if self.spec.hang_up
            && let Some(s) = &mut c.stream
            && s.close().is_err()
        {
            self.fail(key, Kind::Write, now);
        }
    }

    /// Reads connection `key` until `WouldBlock` (a short read, on plain
    /// TCP) or EOF, feeding its parser. Returns the time of the last read.
    fn read(&mut self, key: usize) -> u64 {
        loop {
            let c = &mut self.conns[key];
            let Some(stream) = &mut c.stream else {
                return self.clock.now();
            };
            let res = stream.read(&mut self.rbuf);
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
                    // A plain read that did not fill the buffer drained the
                    // socket (epoll(7)), unless the FIN came in the same
                    // event; TLS may hold more plaintext: read on.
                    let plain = c.stream.as_ref().is_some_and(Stream::is_plain);
                    if (plain && n < self.rbuf.len() && !c.peer_closed) || c.state != State::Open {
                        return now;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return now,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(key, kind_of(&e, Kind::Read), now);
                    return now;
                }
            }
        }
    }

    /// Feeds `rbuf[..n]` to `key`'s parser, recording each response.
    /// Returns false if the connection was dropped or recycled.
    fn feed(&mut self, key: usize, n: usize, now: u64) -> bool {
        let Conn { parser, fifo, .. } = &mut self.conns[key];
        let mut answers = Answers {
            fifo,
            rec: &mut self.rec,
            slots: &mut self.slots,
            key,
            keep_alive: !self.spec.per_conn,
            now,
            completed: 0,
            unsolicited: false,
        };
        let res = parser.feed(&self.rbuf[..n], &mut answers);
        let (completed, unsolicited) = (answers.completed, answers.unsolicited);
        if unsolicited {
            // Bytes nobody asked for: the stream cannot be trusted.
            self.fail(key, Kind::Verify, now);
            return false;
        }
        if let Err(k) = res {
            self.fail(key, k, now);
            return false;
        }
        if self.spec.per_conn && completed > 0 {
            self.recycle(key, now);
            return false;
        }
        true
    }

    /// The peer closed its side.
    fn on_eof(&mut self, key: usize, now: u64) {
        let c = &mut self.conns[key];
        if let Some(answer) = c.parser.eof()
            && let Some(p) = c.fifo.pop_front()
        {
            record(&mut self.rec, now, p, answer);
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
        if let Some(mut s) = c.stream.take() {
            let _ = self.poll.registry().deregister(s.socket());
        }
        c.state = State::Idle;
        c.writable = false;
        c.peer_closed = false;
        c.fifo.clear();
        c.out.clear();
        c.out_off = 0;
        c.head = Vec::new();
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
                State::Connecting | State::Handshaking | State::Upgrading => {
                    now.saturating_sub(c.since) > t
                }
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
    /// fails as `connect`, a handshake as `tls` (with a cycle's request
    /// waiting on it, that request counts once, as this), an upgrade
    /// unanswered and requests sent and unanswered as `timeout`.
    fn abandon(&mut self, key: usize, now: u64) {
        let kind = match self.conns[key].state {
            State::Connecting => Kind::Connect,
            State::Handshaking => Kind::Tls,
            _ => Kind::Timeout,
        };
        self.fail(key, kind, now);
    }

    /// At the end: whatever is still in flight is abandoned.
    fn expire_all(&mut self, now: u64) {
        for key in 0..self.conns.len() {
            let c = &self.conns[key];
            if !c.fifo.is_empty() || c.state.setting_up() {
                self.abandon(key, now);
            }
            self.close(key);
        }
    }
}

/// Fills `iov` with the unwritten bytes of the requests queued in `out`
/// (the first one from `off`), as many as fit; returns (buffers, bytes).
fn gather<'a>(
    requests: &'a [Request],
    out: &VecDeque<u32>,
    off: usize,
    iov: &mut [IoSlice<'a>; MAX_IOV],
) -> (usize, usize) {
    let (mut n, mut total, mut skip) = (0, 0, off);
    for &r in out {
        if n + 2 > MAX_IOV {
            break;
        }
        let req = &requests[r as usize];
        for part in [&req.head[..], &req.body[..]] {
            let from = skip.min(part.len());
            skip -= from;
            if from < part.len() {
                iov[n] = IoSlice::new(&part[from..]);
                n += 1;
                total += part.len() - from;
            }
        }
    }
    (n, total)
}

/// Moves `out` on past `n` bytes written (`off`: into its first request).
fn advance(requests: &[Request], out: &mut VecDeque<u32>, off: &mut usize, mut n: usize) {
    while let Some(&r) = out.front() {
        let left = requests[r as usize].len() - *off;
        if n < left {
            *off += n;
            return;
        }
        n -= left;
        *off = 0;
        out.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_resume_mid_request_and_cross_requests() {
        let r = |h: &str, b: &str| Request {
            head: h.as_bytes().into(),
            body: b.as_bytes().into(),
        };
        let reqs = [r("ab", "cde"), r("f", "")];
        let mut out: VecDeque<u32> = [0, 1, 0].into();
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        // From offset 1: "b", "cde", "f", "ab", "cde".
        let (n, total) = gather(&reqs, &out, 1, &mut iov);
        let got: Vec<&[u8]> = iov[..n].iter().map(|s| &s[..]).collect();
        assert_eq!(got, [&b"b"[..], b"cde", b"f", b"ab", b"cde"]);
        assert_eq!(total, 10);
        // Past "a" (already), "bcd": into the first body.
        let mut off = 1;
        advance(&reqs, &mut out, &mut off, 3);
        assert_eq!((out.len(), off), (3, 4));
        // "e", "f", "a": into the third request's head.
        advance(&reqs, &mut out, &mut off, 3);
        assert_eq!((out.iter().copied().collect::<Vec<_>>(), off), (vec![0], 1));
        let (n, total) = gather(&reqs, &out, off, &mut iov);
        assert_eq!((n, total), (2, 4));
        advance(&reqs, &mut out, &mut off, 4);
        assert!(out.is_empty() && off == 0);
    }
}
