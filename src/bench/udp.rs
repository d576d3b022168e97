//! `reactor bench udp`: datagrams at a fixed (or Poisson) rate over `-c`
//! connected sockets. Each carries a sequence number, its intended send
//! time and its actual send time, so the echo alone tells the latency
//! (from the schedule and from the send), and a bitmap of sequence
//! numbers counts loss, reordering and duplicates. Each datagram has one
//! outcome ([`Ledger`]): answered; refused (an ICMP error reported by its
//! socket, a `connect` error); not sent (a `write` error); or, not back
//! within `--timeout` after the end, lost (a `timeout` error).

use std::io::{self, ErrorKind};
use std::net::SocketAddr;

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use serde_json::json;

use super::cli::UdpArgs;
use super::kind::{self, Kind};
use super::net;
use super::record::Recorder;
use super::report::Report;
use super::run::{self, Plan, Schedule, Setup, ThreadOut};

/// Header bytes: sequence number, intended time, send time (u64 each).
const HEADER: usize = 24;
/// Rate when none is given.
const DEFAULT_RATE: f64 = 10_000.0;

/// One bit per sequence number.
#[derive(Debug, Default)]
struct Bits(Vec<u64>);

impl Bits {
    /// Bit `n`.
    fn get(&self, n: u64) -> bool {
        self.0
            .get((n / 64) as usize)
            .is_some_and(|w| w & (1 << (n % 64)) != 0)
    }

    /// Sets or clears bit `n`.
    fn put(&mut self, n: u64, on: bool) {
        let w = (n / 64) as usize;
        if w >= self.0.len() {
            self.0.resize(w + 1, 0);
        }
        if on {
            self.0[w] |= 1 << (n % 64);
        } else {
            self.0[w] &= !(1 << (n % 64));
        }
    }
}

/// Every datagram's outcome, by sequence number: exactly one of answered,
/// refused (the socket reported an ICMP error for it), not sent (the send
/// failed), or, when none of these happened by the end, lost.
///
/// A socket error on a connected UDP socket is the kernel passing on an
/// ICMP message about some earlier datagram of that socket, without
/// saying which: it is charged to that socket's oldest datagram with no
/// outcome yet. Datagram `seq` goes out on socket `seq % sockets`.
#[derive(Debug)]
pub struct Ledger {
    /// Sockets the datagrams rotate over.
    sockets: u64,
    /// Datagrams numbered so far (sent or not).
    numbered: u64,
    /// Answered (a second answer is a duplicate).
    answered: Bits,
    /// Refused.
    refused: Bits,
    /// The send failed: never on the wire.
    unsent: Bits,
    /// Highest answered sequence number + 1 (0: none): reordering.
    top: u64,
    /// Per socket: where the search for its oldest open datagram starts.
    oldest: Vec<u64>,
    /// The first measured datagram (after the warmup); u64::MAX: none yet.
    from: u64,
    /// Of the measured datagrams: (numbered, answered, refused, not sent).
    measured: [u64; 4],
}

/// What an answer was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// New, in order.
    InOrder,
    /// New, but after a higher one.
    Reordered,
    /// Answered before.
    Duplicate,
}

impl Ledger {
    /// A ledger for datagrams spread over `sockets` sockets.
    pub fn new(sockets: usize) -> Ledger {
        let sockets = sockets.max(1);
        Ledger {
            sockets: sockets as u64,
            numbered: 0,
            answered: Bits::default(),
            refused: Bits::default(),
            unsent: Bits::default(),
            top: 0,
            oldest: (0..sockets as u64).collect(),
            from: u64::MAX,
            measured: [0; 4],
        }
    }

    /// Numbers the next datagram, measured if `measured` (from the first
    /// measured one on, all are); returns its sequence number.
    pub fn next(&mut self, measured: bool) -> u64 {
        let seq = self.numbered;
        if measured && self.from == u64::MAX {
            self.from = seq;
        }
        self.numbered += 1;
        self.note(seq, 0, 1);
        seq
    }

    /// Adds `n` to measured counter `i` if `seq` is measured.
    fn note(&mut self, seq: u64, i: usize, n: i64) {
        if seq >= self.from {
            self.measured[i] = self.measured[i].saturating_add_signed(n);
        }
    }

    /// The send of `seq` failed.
    pub fn not_sent(&mut self, seq: u64) {
        self.unsent.put(seq, true);
        self.note(seq, 3, 1);
    }

    /// True if `seq` has an outcome.
    fn settled(&self, seq: u64) -> bool {
        self.answered.get(seq) || self.refused.get(seq) || self.unsent.get(seq)
    }

    /// Socket `sock` reported an error: its oldest open datagram was
    /// refused. Returns that datagram, if any is open.
    pub fn refuse(&mut self, sock: usize) -> Option<u64> {
        let mut seq = self.oldest[sock];
        while seq < self.numbered && self.settled(seq) {
            seq += self.sockets;
        }
        self.oldest[sock] = seq;
        if seq >= self.numbered {
            return None;
        }
        self.refused.put(seq, true);
        self.note(seq, 2, 1);
        Some(seq)
    }

    /// An intact answer to `seq` (below the count numbered). An answer to
    /// a datagram charged with a refusal moves the refusal to the next
    /// open datagram of its socket (or drops it: there was none).
    pub fn answer(&mut self, seq: u64) -> Arrival {
        if self.answered.get(seq) {
            return Arrival::Duplicate;
        }
        self.answered.put(seq, true);
        self.note(seq, 1, 1);
        if self.refused.get(seq) {
            self.refused.put(seq, false);
            self.note(seq, 2, -1);
            self.refuse((seq % self.sockets) as usize);
        }
        if seq + 1 < self.top {
            return Arrival::Reordered;
        }
        self.top = seq + 1;
        Arrival::InOrder
    }

    /// Of the measured datagrams: (sent, answered, refused, open): open
    /// ones have no outcome yet (at the end: lost).
    pub fn tally(&self) -> (u64, u64, u64, u64) {
        let [numbered, answered, refused, unsent] = self.measured;
        let sent = numbered - unsent;
        (
            sent,
            answered,
            refused,
            sent.saturating_sub(answered + refused),
        )
    }
}

/// Runs the UDP workload.
pub fn bench(a: &UdpArgs) -> crate::Result<Report> {
    if a.size < HEADER {
        return Err(kind::config(format!("--size must be at least {HEADER}")));
    }
    let mut c = a.common.clone();
    c.rate = Some(c.rate.unwrap_or(DEFAULT_RATE));
    let (host, port) = net::split_host_port(&a.addr, None).map_err(kind::config)?;
    let addr = net::resolve(&host, port, None).map_err(kind::config)?.addr;
    let size = a.size;
    let setup = Setup {
        common: &c,
        conns: c.conns.max(1),
        threads: c.threads.min(c.conns.max(1)),
    };
    let m = run::drive(setup, move |plan| run_thread(addr, size, plan))?;
    let config = json!({ "size": a.size });
    Ok(Report::new(
        "udp",
        a.addr.clone(),
        config,
        &c,
        c.conns.max(1),
        m,
    ))
}

/// Datagrams the kernel dropped at the UDP sockets bound to `ports` for
/// want of receive buffer (the `drops` column of `/proc/net/udp` and
/// `/proc/net/udp6`); 0 where there is no `/proc`.
pub fn socket_drops(ports: &[u16]) -> u64 {
    let mut drops = 0;
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let port = cols
                .get(1)
                .and_then(|local| local.rsplit(':').next())
                .and_then(|hex| u16::from_str_radix(hex, 16).ok());
            if port.is_some_and(|p| ports.contains(&p)) {
                drops += cols.last().and_then(|d| d.parse::<u64>().ok()).unwrap_or(0);
            }
        }
    }
    drops
}

/// One thread: its sockets, its share of the rate.
fn run_thread(addr: SocketAddr, size: usize, mut plan: Plan) -> io::Result<ThreadOut> {
    let mut poll = Poll::new()?;
    let mut socks = Vec::new();
    for i in 0..plan.conns.max(1) {
        let ip = net::source_ip(plan.first_conn + i, plan.source_ips, addr).unwrap_or(
            if addr.is_ipv4() {
                [0, 0, 0, 0].into()
            } else {
                [0u16; 8].into()
            },
        );
        let mut s = UdpSocket::bind(SocketAddr::new(ip, 0))?;
        s.connect(addr)?;
        poll.registry()
            .register(&mut s, Token(i), Interest::READABLE)?;
        socks.push(s);
    }
    let clock = plan.clock;
    plan.start();
    let mut rec = Recorder::new(plan.from, plan.until);
    let mut sched = Schedule::new(
        plan.zero,
        plan.rate.unwrap_or(DEFAULT_RATE),
        plan.poisson,
        plan.seed,
    );
    let mut ledger = Ledger::new(socks.len());
    let mut out = vec![0u8; size];
    for (i, b) in out[HEADER..].iter_mut().enumerate() {
        *b = b'a' + (i % 26) as u8;
    }
    let mut inb = vec![0u8; 65536];
    let mut events = Events::with_capacity(256);
    let mut sleeper = run::Sleeper::new(poll.registry(), &plan, true)?;
    let mut next_sock = 0;
    let (mut next_tick, mut quota) = (plan.first_tick(), plan.count);
    let mut cpu_from = None;
    let mut stop_at = u64::MAX;
    loop {
        let now = clock.now();
        if cpu_from.is_none() && now >= plan.from {
            cpu_from = Some(super::procstat::thread_sched());
        }
        if stop_at == u64::MAX && (now >= plan.until || quota == Some(0)) {
            stop_at = now;
        }
        let (sent, _, refused, open) = ledger.tally();
        if stop_at != u64::MAX && (open == 0 || now >= stop_at + plan.timeout) {
            // Each datagram once: refused, lost (neither answered nor
            // refused in time); the unsent were counted as they failed.
            rec.error(now, Kind::Connect, refused);
            rec.error(now, Kind::Timeout, open);
            rec.count(now, "refused", refused);
            rec.count(now, "lost", open);
            rec.count(now, "sent", sent);
            // Replies that reached our sockets but found their receive
            // buffers full were lost here, not by the server: say so.
            let ports: Vec<u16> = socks
                .iter()
                .filter_map(|s| s.local_addr().ok().map(|a| a.port()))
                .collect();
            rec.count(now, "generator_dropped", socket_drops(&ports));
            break;
        }
        while now >= next_tick {
            let _ = plan.ticks.send((plan.thread, rec.take_tick(1_000_000_000)));
            next_tick += 1_000_000_000;
        }
        while stop_at == u64::MAX && sched.peek() <= now && quota != Some(0) {
            let intended = sched.peek();
            sched.advance();
            rec.lagged(now, intended);
            let seq = ledger.next(intended >= plan.from);
            out[..8].copy_from_slice(&seq.to_le_bytes());
            out[8..16].copy_from_slice(&intended.to_le_bytes());
            out[16..24].copy_from_slice(&clock.now().to_le_bytes());
            if let Some(q) = &mut quota {
                *q -= 1;
            }
            match send(&socks[next_sock], &out, || ledger.refuse(next_sock)) {
                Ok(k) => rec.wrote(now, k),
                // A full send buffer drops the datagram here, not at the
                // server: say so.
                Err(_) => {
                    ledger.not_sent(seq);
                    rec.error(now, Kind::Write, 1);
                }
            }
            next_sock = (next_sock + 1) % socks.len();
        }
        let wake = run::next_wake(&sched, &plan, stop_at, next_tick);
        sleeper.wait(&mut poll, &mut events, &clock, wake)?;
        for ev in events.iter().filter(|e| e.token() != run::ALARM) {
            let i = ev.token().0;
            loop {
                match socks[i].recv(&mut inb) {
                    Ok(k) => {
                        let now = clock.now();
                        rec.read(now, k);
                        match check(&inb[..k], &out, ledger.numbered) {
                            Some((seq, intended, sent)) => match ledger.answer(seq) {
                                Arrival::Duplicate => rec.count(now, "duplicates", 1),
                                arrival => {
                                    if arrival == Arrival::Reordered {
                                        rec.count(now, "reordered", 1);
                                    }
                                    rec.done(now, intended, sent);
                                }
                            },
                            // Not one of ours: no datagram to charge.
                            None => rec.error(now, Kind::Verify, 1),
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    // An ICMP error (port unreachable, ...) for an earlier
                    // datagram; the socket stays usable.
                    Err(_) => {
                        ledger.refuse(i);
                    }
                }
            }
        }
    }
    let end = clock.now();
    plan.last_tick(&mut rec, end);
    Ok(ThreadOut::new(rec, cpu_from, &sleeper, stop_at, end))
}

/// Sends `d` on `s`. A socket error (`ECONNREFUSED`, ...) is about an
/// earlier datagram (`refused` is told) and this one was not sent: it is
/// tried once more; an error then is this datagram's.
fn send(s: &UdpSocket, d: &[u8], mut refused: impl FnMut() -> Option<u64>) -> io::Result<usize> {
    match s.send(d) {
        Err(e) if e.raw_os_error().is_some_and(icmp_error) => {
            refused();
            s.send(d)
        }
        other => other,
    }
}

/// True for the errnos a connected UDP socket reports from ICMP.
fn icmp_error(errno: i32) -> bool {
    [
        libc::ECONNREFUSED,
        libc::EHOSTUNREACH,
        libc::ENETUNREACH,
        libc::EHOSTDOWN,
        libc::EMSGSIZE,
    ]
    .contains(&errno)
}

/// Checks an echoed datagram against what we send: Some((seq, intended,
/// sent)) if it is ours and intact.
fn check(d: &[u8], sent_tmpl: &[u8], sent_count: u64) -> Option<(u64, u64, u64)> {
    if d.len() != sent_tmpl.len() || d[HEADER..] != sent_tmpl[HEADER..] {
        return None;
    }
    let word = |i: usize| u64::from_le_bytes(d[i..i + 8].try_into().unwrap_or([0; 8]));
    let seq = word(0);
    (seq < sent_count).then(|| (seq, word(8), word(16)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that is never read drops what its buffer cannot hold, and
    /// the count is found by its port (and only by its port).
    #[test]
    fn drops_at_our_own_socket_are_counted() {
        let sink = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        sink.set_recv_buffer_size(4096).unwrap();
        sink.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let to = sink.local_addr().unwrap().as_socket().unwrap();
        let other = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = socket_drops(&[to.port()]);
        for _ in 0..500 {
            other.send_to(&[0u8; 1000], to).unwrap();
        }
        let dropped = socket_drops(&[to.port()]) - before;
        assert!(dropped > 0 && dropped <= 500, "{dropped}");
        assert_eq!(socket_drops(&[other.local_addr().unwrap().port()]), 0);
    }

    #[test]
    fn sequence_bookkeeping() {
        let mut s = Ledger::new(1);
        for _ in 0..1001 {
            s.next(true);
        }
        assert_eq!(s.answer(0), Arrival::InOrder);
        assert_eq!(s.answer(2), Arrival::InOrder);
        assert_eq!(s.answer(1), Arrival::Reordered);
        assert_eq!(s.answer(2), Arrival::Duplicate);
        assert_eq!(s.answer(1000), Arrival::InOrder);
    }

    #[test]
    fn one_outcome_per_datagram() {
        // Two sockets: even numbers on socket 0, odd on 1.
        let mut l = Ledger::new(2);
        for i in 0..8 {
            l.next(i >= 4);
        }
        l.not_sent(0);
        assert_eq!(l.answer(2), Arrival::InOrder);
        // Socket 0's oldest open datagram is 4 (0 never left, 2 answered).
        assert_eq!(l.refuse(0), Some(4));
        assert_eq!(l.refuse(1), Some(1));
        // 4 is answered after all: its refusal moves on to 6.
        assert_eq!(l.answer(4), Arrival::InOrder);
        assert_eq!(l.refuse(0), None, "4 and 6 are settled");
        // Measured from 4: sent 4..8, answered 4, refused 6; 5 and 7 open.
        assert_eq!(l.tally(), (4, 1, 1, 2));
    }
}
