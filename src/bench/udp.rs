//! `reactor bench udp`: datagrams at a fixed (or Poisson) rate over `-c`
//! connected sockets. Each carries a sequence number, its intended send
//! time and its actual send time, so the echo alone tells the latency
//! (from the schedule and from the send), and a bitmap of sequence
//! numbers counts loss, reordering and duplicates. A datagram not back
//! within `--timeout` after the end is lost (a timeout error).

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

/// Sequence numbers seen: duplicates and reordering.
#[derive(Debug, Default)]
pub struct Seen {
    /// One bit per sequence number.
    bits: Vec<u64>,
    /// Highest seen so far (+1; 0 = none).
    top: u64,
}

/// What a received sequence number was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// New, in order.
    InOrder,
    /// New, but after a higher one.
    Reordered,
    /// Seen before.
    Duplicate,
}

impl Seen {
    /// Records `n`.
    pub fn mark(&mut self, n: u64) -> Arrival {
        let (w, b) = ((n / 64) as usize, n % 64);
        if w >= self.bits.len() {
            self.bits.resize(w + 1, 0);
        }
        if self.bits[w] & (1 << b) != 0 {
            return Arrival::Duplicate;
        }
        self.bits[w] |= 1 << b;
        if n + 1 < self.top {
            return Arrival::Reordered;
        }
        self.top = n + 1;
        Arrival::InOrder
    }
}

/// Runs the UDP workload.
pub fn bench(a: &UdpArgs) -> crate::Result<Report> {
    if a.size < HEADER {
        return Err(kind::config(format!("--size must be at least {HEADER}")));
    }
    let mut c = a.common.clone();
    c.rate = Some(c.rate.unwrap_or(DEFAULT_RATE));
    let (addr, size) = (a.addr, a.size);
    let setup = Setup {
        common: &c,
        conns: c.conns.max(1),
        threads: c.threads.min(c.conns.max(1)),
    };
    let m = run::drive(setup, move |plan| run_thread(addr, size, plan))?;
    let config = json!({ "size": a.size });
    Ok(Report::new(
        "udp",
        a.addr.to_string(),
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
fn run_thread(addr: SocketAddr, size: usize, plan: Plan) -> io::Result<ThreadOut> {
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
    let mut rec = Recorder::new(plan.from, plan.until);
    let mut sched = Schedule::new(
        0,
        plan.rate.unwrap_or(DEFAULT_RATE),
        plan.poisson,
        plan.seed,
    );
    let mut seen = Seen::default();
    let mut out = vec![0u8; size];
    for (i, b) in out[HEADER..].iter_mut().enumerate() {
        *b = b'a' + (i % 26) as u8;
    }
    let mut inb = vec![0u8; 65536];
    let mut events = Events::with_capacity(256);
    let mut sleeper = run::Sleeper::new(poll.registry(), &plan, true)?;
    let (mut n, mut first_measured, mut next_sock) = (0u64, None, 0usize);
    let (mut got_measured, mut next_tick, mut quota) = (0u64, 1_000_000_000u64, plan.count);
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
        let sent_measured = first_measured.map_or(0, |f| n - f);
        if stop_at != u64::MAX && (got_measured >= sent_measured || now >= stop_at + plan.timeout) {
            let lost = sent_measured.saturating_sub(got_measured);
            rec.error(now, Kind::Timeout, lost);
            rec.count(now, "lost", lost);
            rec.count(now, "sent", sent_measured);
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
            let _ = plan.ticks.send((plan.thread, rec.take_tick()));
            next_tick += 1_000_000_000;
        }
        while stop_at == u64::MAX && sched.peek() <= now && quota != Some(0) {
            let intended = sched.peek();
            sched.advance();
            rec.lagged(now, intended);
            if first_measured.is_none() && intended >= plan.from {
                first_measured = Some(n);
            }
            out[..8].copy_from_slice(&n.to_le_bytes());
            out[8..16].copy_from_slice(&intended.to_le_bytes());
            out[16..24].copy_from_slice(&clock.now().to_le_bytes());
            n += 1;
            if let Some(q) = &mut quota {
                *q -= 1;
            }
            match socks[next_sock].send(&out) {
                Ok(k) => rec.wrote(now, k),
                // A full send buffer drops the datagram here, not at the
                // server: say so.
                Err(_) => rec.error(now, Kind::Write, 1),
            }
            next_sock = (next_sock + 1) % socks.len();
        }
        let wake = run::next_wake(&sched, &plan, stop_at, next_tick);
        sleeper.wait(&mut poll, &mut events, &clock, wake)?;
        for ev in events.iter().filter(|e| e.token() != run::ALARM) {
            let s = &socks[ev.token().0];
            loop {
                match s.recv(&mut inb) {
                    Ok(k) => {
                        let now = clock.now();
                        rec.read(now, k);
                        let first = first_measured.unwrap_or(u64::MAX);
                        match check(&inb[..k], &out, n) {
                            Some((seq, intended, sent)) => match seen.mark(seq) {
                                Arrival::Duplicate => rec.count(now, "duplicates", 1),
                                arrival => {
                                    if arrival == Arrival::Reordered {
                                        rec.count(now, "reordered", 1);
                                    }
                                    if seq >= first {
                                        got_measured += 1;
                                    }
                                    rec.done(now, intended, sent);
                                }
                            },
                            None => rec.error(now, Kind::Verify, 1),
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    // ECONNREFUSED from an ICMP port unreachable, etc.
                    Err(_) => {
                        rec.error(clock.now(), Kind::Read, 1);
                        break;
                    }
                }
            }
        }
    }
    let end = clock.now();
    Ok(ThreadOut::new(rec, cpu_from, &sleeper, stop_at, end))
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
        let mut s = Seen::default();
        assert_eq!(s.mark(0), Arrival::InOrder);
        assert_eq!(s.mark(2), Arrival::InOrder);
        assert_eq!(s.mark(1), Arrival::Reordered);
        assert_eq!(s.mark(2), Arrival::Duplicate);
        assert_eq!(s.mark(1000), Arrival::InOrder);
    }
}
