//! `reactor bench chat`: K members join the lobby; S of them send lines
//! on a schedule (`--rate` lines/s in total, default 1000). A line is
//! `bench SENDER SEQ T`, T its intended send time, so every receiver
//! measures fan-out latency from the schedule on its own, and checks per
//! sender that sequence numbers arrive in order and without gaps.
//! At the end, deliveries owed (lines x (K-1)) minus deliveries seen is
//! the loss. Notices (`* ...`) are skipped; `ERROR` lines are counted.

use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde_json::json;

use super::cli::ChatArgs;
use super::record::Recorder;
use super::report::Report;
use super::run::{self, Plan, Schedule, Setup, ThreadOut};
use super::{BenchError, Kind, net};

/// Lines per second when no --rate is given.
const DEFAULT_RATE: f64 = 1000.0;
/// Longest line we keep waiting for.
const MAX_LINE: usize = 8192;

/// One member.
struct Member {
    /// Its socket.
    sock: TcpStream,
    /// Bytes of an incomplete line.
    partial: Vec<u8>,
    /// Bytes to send that the socket did not take yet.
    out: Vec<u8>,
    /// Welcome line seen.
    welcomed: bool,
    /// Next sequence number expected from each sender.
    expect: Vec<u64>,
}

/// What a receiver makes of one line.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A notice or our own welcome.
    Notice,
    /// A server error line.
    Error,
    /// A bench line: sender, sequence, intended time.
    Bench(usize, u64, u64),
    /// Anything else.
    Other,
}

/// Classifies one received line (without its newline).
pub fn classify(line: &[u8]) -> Line {
    if line.starts_with(b"* ") {
        return Line::Notice;
    }
    if line.starts_with(b"ERROR") {
        return Line::Error;
    }
    let Some(at) = line.windows(8).position(|w| w == b": bench ") else {
        return Line::Other;
    };
    let Ok(text) = std::str::from_utf8(&line[at + 8..]) else {
        return Line::Other;
    };
    let mut it = text.split(' ').map(str::parse::<u64>);
    match (it.next(), it.next(), it.next()) {
        (Some(Ok(s)), Some(Ok(q)), Some(Ok(t))) => Line::Bench(s as usize, q, t),
        _ => Line::Other,
    }
}

/// Runs the chat workload (one thread: the members share one loop).
pub fn bench(a: &ChatArgs) -> Result<Report, BenchError> {
    let mut c = a.common.clone();
    c.rate = Some(c.rate.unwrap_or(DEFAULT_RATE));
    let k = c.conns.max(2);
    let senders = a.senders.clamp(1, k);
    let addr = a.addr;
    let setup = Setup {
        common: &c,
        conns: k,
        threads: 1,
    };
    let m = run::drive(setup, move |plan| run_thread(addr, senders, plan))?;
    let config = json!({ "members": k, "senders": senders });
    Ok(Report::new("chat", a.addr.to_string(), config, &c, k, m))
}

/// Connects every member and waits for each welcome line.
fn join(addr: SocketAddr, plan: &Plan, senders: usize, poll: &Poll) -> io::Result<Vec<Member>> {
    let mut members = Vec::with_capacity(plan.conns);
    for i in 0..plan.conns {
        let src = net::source_ip(i, plan.source_ips, addr);
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        if let Some(ip) = src {
            sock.bind(&SocketAddr::new(ip, 0).into())?;
        }
        sock.connect_timeout(&addr.into(), std::time::Duration::from_nanos(plan.timeout))?;
        sock.set_nonblocking(true)?;
        sock.set_tcp_nodelay(true)?;
        let mut s = TcpStream::from_std(sock.into());
        poll.registry()
            .register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        members.push(Member {
            sock: s,
            partial: Vec::new(),
            out: Vec::new(),
            welcomed: false,
            expect: vec![0; senders],
        });
    }
    Ok(members)
}

/// The members' loop.
fn run_thread(addr: SocketAddr, senders: usize, plan: Plan) -> io::Result<ThreadOut> {
    let mut poll = Poll::new()?;
    let mut members = join(addr, &plan, senders, &poll)?;
    let clock = plan.clock;
    let mut rec = Recorder::new(plan.from, plan.until);
    let mut sched = Schedule::new(
        clock.now(),
        plan.rate.unwrap_or(DEFAULT_RATE),
        plan.poisson,
        plan.seed,
    );
    let mut seqs = vec![0u64; senders];
    let (mut next_sender, mut lines_measured, mut got_measured) = (0usize, 0u64, 0u64);
    let mut events = Events::with_capacity(1024);
    let mut rbuf = vec![0u8; 64 * 1024];
    let mut line = Vec::with_capacity(64);
    let (mut next_tick, mut stop_at, mut cpu_from) = (1_000_000_000u64, u64::MAX, None);
    let mut quota = plan.count;
    let others = (members.len() - 1) as u64;
    loop {
        let now = clock.now();
        if cpu_from.is_none() && now >= plan.from {
            cpu_from = Some(super::procstat::thread_sched());
        }
        if stop_at == u64::MAX && (now >= plan.until || quota == Some(0)) {
            stop_at = now;
        }
        let owed = lines_measured * others;
        if stop_at != u64::MAX && (got_measured >= owed || now >= stop_at + plan.timeout) {
            let lost = owed.saturating_sub(got_measured);
            rec.error(now, Kind::Timeout, lost);
            rec.count(now, "lines_sent", lines_measured);
            rec.count(now, "deliveries_owed", owed);
            rec.count(now, "lost", lost);
            break;
        }
        while now >= next_tick {
            let _ = plan.ticks.send((plan.thread, rec.take_tick()));
            next_tick += 1_000_000_000;
        }
        let ready = members.iter().all(|m| m.welcomed);
        while ready && stop_at == u64::MAX && sched.peek() <= now && quota != Some(0) {
            let t = sched.peek();
            sched.advance();
            rec.lagged(now, t);
            let s = next_sender;
            next_sender = (next_sender + 1) % senders;
            line.clear();
            let _ = writeln!(line, "bench {s} {} {t}", seqs[s]);
            seqs[s] += 1;
            if t >= plan.from {
                lines_measured += 1;
            }
            if let Some(q) = &mut quota {
                *q -= 1;
            }
            let m = &mut members[s];
            m.out.extend_from_slice(&line);
            if flush(m).is_err() {
                rec.error(now, Kind::Write, 1);
            }
            rec.wrote(now, line.len());
        }
        run::wait(
            &mut poll,
            &mut events,
            &clock,
            &sched,
            &plan,
            stop_at,
            next_tick,
        )?;
        for ev in events.iter() {
            let m = &mut members[ev.token().0];
            if ev.is_writable() && flush(m).is_err() {
                rec.error(clock.now(), Kind::Write, 1);
            }
            let r = receive(m, &mut rbuf, &mut rec, &clock, plan.from);
            got_measured += r;
        }
    }
    let end = clock.now();
    Ok(ThreadOut {
        rec,
        cpu_ns: super::procstat::thread_sched()
            .0
            .saturating_sub(cpu_from.unwrap_or_default().0),
        wait_ns: super::procstat::thread_sched()
            .1
            .saturating_sub(cpu_from.unwrap_or_default().1),
        stop_at: stop_at.min(end),
        end_at: end,
    })
}

/// Writes what member `m` has queued, until done or `WouldBlock`.
fn flush(m: &mut Member) -> io::Result<()> {
    while !m.out.is_empty() {
        match m.sock.write(&m.out) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => {
                m.out.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads member `m` until `WouldBlock` and handles each complete line;
/// returns measured deliveries seen.
fn receive(
    m: &mut Member,
    rbuf: &mut [u8],
    rec: &mut Recorder,
    clock: &run::Clock,
    from: u64,
) -> u64 {
    let mut got = 0;
    loop {
        match m.sock.read(rbuf) {
            Ok(0) => {
                rec.error(clock.now(), Kind::Read, 1);
                return got;
            }
            Ok(n) => {
                let now = clock.now();
                rec.read(now, n);
                m.partial.extend_from_slice(&rbuf[..n]);
                let mut start = 0;
                while let Some(end) = m.partial[start..].iter().position(|&b| b == b'\n') {
                    got += on_line(m, start, start + end, rec, now, from);
                    start += end + 1;
                }
                m.partial.drain(..start);
                if m.partial.len() > MAX_LINE {
                    rec.error(now, Kind::Verify, 1);
                    m.partial.clear();
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return got,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {
                rec.error(clock.now(), Kind::Read, 1);
                return got;
            }
        }
    }
}

/// Handles `m.partial[a..b]`, one line; returns 1 for a measured delivery.
fn on_line(m: &mut Member, a: usize, b: usize, rec: &mut Recorder, now: u64, from: u64) -> u64 {
    match classify(&m.partial[a..b]) {
        Line::Notice => {
            m.welcomed = true;
            0
        }
        Line::Error => {
            rec.error(now, Kind::Status, 1);
            0
        }
        Line::Other => {
            rec.error(now, Kind::Verify, 1);
            0
        }
        Line::Bench(s, seq, t) => {
            let Some(want) = m.expect.get_mut(s) else {
                rec.error(now, Kind::Verify, 1);
                return 0;
            };
            if seq < *want {
                rec.count(now, "out_of_order", 1);
            } else {
                if seq > *want {
                    rec.count(now, "gaps", seq - *want);
                }
                *want = seq + 1;
            }
            rec.done(now, t, t);
            u64::from(t >= from)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_lines() {
        assert_eq!(classify(b"* guest3 joined lobby"), Line::Notice);
        assert_eq!(
            classify(b"[lobby] guest3: bench 2 17 12345"),
            Line::Bench(2, 17, 12345)
        );
        assert_eq!(classify(b"ERROR too slow"), Line::Error);
        assert_eq!(classify(b"[lobby] guest3: hello"), Line::Other);
    }
}
