//! `reactor bench chat`: K members join the lobby; S of them send lines
//! on a schedule (`--rate` lines/s in total, default 1000). A line is
//! `bench SENDER SEQ T`, T its intended send time, so every receiver
//! measures fan-out latency from the schedule on its own, and checks per
//! sender that sequence numbers arrive in order and without gaps.
//! At the end, deliveries owed (lines x (K-1)) minus deliveries seen is
//! the loss. Notices (`* ...`) are skipped; `ERROR` lines are counted.
//!
//! `reactor bench ws` is the same workload with browser-like members: each
//! opens `GET /ws` (over TLS for `wss://`), checks the 101, then sends
//! every line as a masked text frame and reads each line as one text
//! frame (answering pings).
//!
//! With several servers (`--server`, repeatable; rooms shared over a bus
//! such as `reactor serve --bus`), member i joins server i mod N, and
//! each delivery is `local` (its sender on the receiver's server) or
//! `remote` (on another): counted, owed and timed apart as well as in
//! the totals.
//!
//! Several load processes can drive one run (`scripts/million.sh`;
//! `docs/PERFORMANCE.md`, "A million members"): each is given its range of members
//! (`--first-member`), which decides each member's server, room
//! (`--room-size`: rooms of N instead of the lobby), source address and
//! sender number, so rooms and servers line up across the processes.
//! Lines carry their intended time on the wall clock, so a receiver in
//! another process times them; `--expect-lines` owes a process's members
//! the lines of senders elsewhere. Every member that hears a measured
//! line is counted (`members_heard`), and in one room each line's
//! deliveries and the time to its last one are kept (`line_deliveries`),
//! for `bench merge` to add up over the processes.

use std::io::{self, ErrorKind, IoSlice, Write};
use std::net::SocketAddr;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde_json::json;

use super::cli::{ChatArgs, Common, RoomOpts, WsArgs};
use super::echo::{self, client_frame_op};
use super::kind::{self, Kind};
use super::net;
use super::record::Recorder;
use super::report::Report;
use super::run::{self, Plan, Schedule, Setup, ThreadOut};
use super::stream::Stream;
use super::tls::Tls;

/// Lines per second when no --rate is given.
const DEFAULT_RATE: f64 = 1000.0;
/// Longest line we keep waiting for.
const MAX_LINE: usize = 8192;
/// Longest wait for `--go-file` (ns).
const GO_WAIT_NS: u64 = 600_000_000_000;
/// Lines kept in the per-line table (one room); more are still counted.
const MAX_TABLE: usize = 100_000;

/// The parts deliveries are split into with several servers, by index:
/// from a sender on the receiver's server, and from one on another.
const SPLIT: [&str; 2] = ["local", "remote"];
/// Their counters: deliveries seen, owed and lost.
const SPLIT_COUNTERS: [(&str, &str, &str); 2] = [
    ("deliveries_local", "deliveries_owed_local", "lost_local"),
    ("deliveries_remote", "deliveries_owed_remote", "lost_remote"),
];

/// One server the members join.
#[derive(Clone, Debug)]
struct Target {
    /// Where to connect.
    addr: SocketAddr,
    /// WebSocket: the upgrade request (`/ws` on `--http`); lines over TCP
    /// (`--chat`): none.
    upgrade: Option<Vec<u8>>,
    /// TLS for its members (`wss://`).
    tls: Option<Tls>,
}

/// One member.
struct Member {
    /// Its connection (TLS for `wss://`).
    sock: Stream,
    /// TLS: when its handshake began, until it is done and recorded.
    handshaking: Option<u64>,
    /// Bytes of an incomplete line.
    partial: Vec<u8>,
    /// Bytes to send that the socket did not take yet.
    out: Vec<u8>,
    /// Welcome line seen.
    welcomed: bool,
    /// Gone: the server closed it, or refused its upgrade; its events are
    /// ignored (its failure was counted once).
    dead: bool,
    /// The 101 was read (always true for lines).
    upgraded: bool,
    /// Next sequence number expected from each sender.
    expect: Vec<u64>,
    /// Which server it joined (index into the room's targets).
    server: usize,
    /// Its global number (`--first-member` plus its place here).
    g: u64,
    /// Rooms: its `/join` was queued (after the welcome).
    join_sent: bool,
    /// It heard a measured line.
    heard: bool,
}

/// Where member g goes: its server and room, and whether it sends. The
/// same on every load process given the same flags, so the processes'
/// members line up.
#[derive(Clone, Debug)]
struct Layout {
    /// Servers.
    n: u64,
    /// `--room-size` (none: everyone in the lobby).
    size: Option<u64>,
    /// `--room-spread`: servers per room.
    spread: u64,
    /// Senders per room.
    senders: u64,
}

impl Layout {
    /// Member g's room (0: the lobby).
    fn room(&self, g: u64) -> u64 {
        self.size.map_or(0, |s| g / s)
    }

    /// The first member of g's room.
    fn room_first(&self, g: u64) -> u64 {
        self.size.map_or(0, |s| g / s * s)
    }

    /// Member g's server: in turn over all of them (the lobby), or in
    /// turn over its room's `spread` servers.
    fn server(&self, g: u64) -> usize {
        let i = match self.size {
            None => g,
            Some(_) => self.room(g) * self.spread + g % self.spread,
        };
        (i % self.n) as usize
    }

    /// Member g's place among its room's senders, if it sends.
    fn sender(&self, g: u64) -> Option<usize> {
        let k = g - self.room_first(g);
        (k < self.senders).then_some(k as usize)
    }
}

/// What a receiving member's handling needs to know.
struct Cx<'a> {
    /// Deliveries of lines meant before this are not measured.
    from: u64,
    /// WebSocket frames (else lines).
    ws: bool,
    /// Where members go.
    layout: &'a Layout,
    /// Deliveries split into local and remote.
    split: bool,
    /// Keep the per-line table (one room).
    table: bool,
    /// This process's clock's zero on the wall clock (ns since the epoch).
    wall0: u64,
    /// The global numbers of the members here.
    here: std::ops::Range<u64>,
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

/// The servers given: the positional one (if any), then each
/// `--server`; none, or one given twice, is an error.
fn servers(first: Option<&String>, more: &[String]) -> crate::Result<Vec<String>> {
    let all: Vec<String> = first.into_iter().chain(more).cloned().collect();
    if all.is_empty() {
        return Err(kind::config("no server: give ADDR (or URL) or --server"));
    }
    for (i, a) in all.iter().enumerate() {
        if all[..i].contains(a) {
            return Err(kind::config(format!(
                "'{a}' is given twice: each server once"
            )));
        }
    }
    Ok(all)
}

/// Runs the chat workload (one thread: the members share one loop).
pub fn bench(a: &ChatArgs) -> crate::Result<Report> {
    let names = servers(a.addr.as_ref(), &a.servers)?;
    let mut targets = Vec::with_capacity(names.len());
    for name in &names {
        let to = net::target(name, a.common.timeout).map_err(kind::config)?;
        targets.push(Target {
            addr: to.addr,
            upgrade: None,
            tls: None,
        });
    }
    let room = Room {
        targets,
        senders: a.senders,
        opts: a.room.clone(),
    };
    workload(room, &a.common, "chat", names)
}

/// Runs the chat workload over WebSocket (`reactor bench ws URL`): `ws://`,
/// or `wss://` (TLS, ALPN `http/1.1`); with `--echo`, the echo workload
/// (`echo::bench_ws`) against an echo endpoint instead.
pub fn bench_ws(a: &WsArgs) -> crate::Result<Report> {
    let names = servers(a.url.as_ref(), &a.servers)?;
    let mut targets = Vec::with_capacity(names.len());
    for name in &names {
        targets.push(ws_target(name, a)?);
    }
    if a.echo {
        let Some(t) = targets.pop() else {
            unreachable!("servers() gives at least one")
        };
        let target = echo::WsTarget {
            addr: t.addr,
            upgrade: t.upgrade.unwrap_or_default(),
            tls: t.tls,
        };
        return echo::bench_ws(a, target);
    }
    let room = Room {
        targets,
        senders: a.senders,
        opts: a.room.clone(),
    };
    workload(room, &a.common, "ws", names)
}

/// The server of a `ws://` or `wss://` URL: its address, its upgrade
/// request, its TLS (SNI the URL's host).
fn ws_target(name: &str, a: &WsArgs) -> crate::Result<Target> {
    let as_http =
        |scheme: &str, http: &str| name.strip_prefix(scheme).map(|r| format!("{http}{r}"));
    let Some(url) = as_http("ws://", "http://").or_else(|| as_http("wss://", "https://")) else {
        return Err(kind::config(format!("'{name}': a ws:// or wss:// URL")));
    };
    let url = super::http::parse_url(&url, a.common.timeout).map_err(kind::config)?;
    let upgrade = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        url.path, url.authority
    );
    let tls = match url.tls {
        true => Some(Tls::new(&a.tls_opts, &url.host, &[b"http/1.1"])?),
        false => None,
    };
    Ok(Target {
        addr: url.addr,
        upgrade: Some(upgrade.into_bytes()),
        tls,
    })
}

/// Where the members go and how they talk.
#[derive(Clone, Debug)]
struct Room {
    /// The servers, in the order given: member i joins server i mod N.
    targets: Vec<Target>,
    /// Members that send, per room.
    senders: usize,
    /// Rooms, load processes, setup pace.
    opts: RoomOpts,
}

impl Room {
    /// Where members go.
    fn layout(&self) -> Layout {
        let n = self.targets.len() as u64;
        Layout {
            n,
            size: self.opts.room_size,
            spread: self.opts.room_spread.unwrap_or(n).min(n),
            senders: self.senders as u64,
        }
    }

    /// WebSocket members (else lines over TCP).
    fn ws(&self) -> bool {
        self.targets.iter().any(|t| t.upgrade.is_some())
    }

    /// Deliveries are split into local and remote.
    fn split(&self) -> bool {
        self.targets.len() > 1
    }
}

/// The chat workload in `room`, named `name` in the report; `names` are
/// its servers as given.
fn workload(
    mut room: Room,
    common: &Common,
    name: &'static str,
    names: Vec<String>,
) -> crate::Result<Report> {
    let mut c = common.clone();
    c.rate = Some(c.rate.unwrap_or(DEFAULT_RATE));
    let k = c.conns.max(1);
    if let Some(size) = room.opts.room_size {
        room.senders = room.senders.min(size as usize);
    }
    let senders = room.senders;
    let n = room.targets.len();
    let layout = room.layout();
    let g0 = room.opts.first_member;
    let o = room.opts.clone();
    let setup = Setup {
        common: &c,
        conns: k,
        threads: 1,
    };
    let m = run::drive(setup, move |plan| run_thread(&room, plan))?;
    let mut per_server = vec![0u64; n];
    for g in g0..g0 + k as u64 {
        per_server[layout.server(g)] += 1;
    }
    let mut config = match n {
        1 => json!({ "members": k, "senders": senders }),
        _ => json!({
            "members": k, "senders": senders, "servers": names,
            "members_per_server": per_server,
        }),
    };
    config["room_size"] = json!(o.room_size);
    config["room_spread"] = json!(o.room_size.map(|_| layout.spread));
    config["first_member"] = json!(g0);
    config["expect_lines"] = json!(o.expect_lines);
    config["connect_rate"] = json!(o.connect_rate);
    let mut r = Report::new(name, names.join(","), config, &c, k, m);
    let x = &r.m.rec.extra;
    let owed = x.get("deliveries_owed_remote").copied().unwrap_or(0);
    if n > 1 && owed > 0 && x.get("deliveries_remote").copied().unwrap_or(0) == 0 {
        r.notes.push(
            "no delivery crossed servers: do the servers share a bus (reactor serve --bus, the same --bus-prefix)?"
                .into(),
        );
    }
    Ok(r)
}

/// Connects every member (blocking, each within the timeout) and queues
/// the upgrade request of each (`ws`); TLS handshakes begin with the
/// first write.
fn join(room: &Room, plan: &Plan, poll: &Poll) -> io::Result<Vec<Member>> {
    let layout = room.layout();
    let mut members = Vec::with_capacity(plan.conns);
    let began = plan.clock.now();
    for i in 0..plan.conns {
        let g = room.opts.first_member + i as u64;
        if let Some(rate) = room.opts.connect_rate.filter(|r| *r > 0.0) {
            let due = began + (i as f64 / rate * 1e9) as u64;
            let now = plan.clock.now();
            if due > now {
                std::thread::sleep(std::time::Duration::from_nanos(due - now));
            }
        }
        let server = layout.server(g);
        let target = &room.targets[server];
        let addr = target.addr;
        let src = net::source_ip(g as usize, plan.source_ips, addr);
        let timeout = std::time::Duration::from_nanos(plan.timeout);
        let sock = net::connect_blocking(addr, src, timeout).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("member {} of {}: connect: {e}", i + 1, plan.conns),
            )
        })?;
        sock.set_nonblocking(true)?;
        sock.set_tcp_nodelay(true)?;
        let s = TcpStream::from_std(sock.into());
        let mut s = Stream::new(s, target.tls.as_ref())?;
        poll.registry().register(
            s.socket(),
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let mut m = Member {
            handshaking: (!s.is_plain()).then(|| plan.clock.now()),
            sock: s,
            partial: Vec::new(),
            out: Vec::new(),
            welcomed: false,
            dead: false,
            upgraded: true,
            expect: vec![0; room.senders],
            server,
            g,
            join_sent: false,
            heard: false,
        };
        if let Some(upgrade) = &target.upgrade {
            m.out.extend_from_slice(upgrade);
            m.upgraded = false;
            // Sent now, not once every member is connected: with setup
            // paced over many seconds, a server's header timeout would
            // close the first members before their upgrade came.
            flush(&mut m)?;
        }
        members.push(m);
    }
    Ok(members)
}

/// Waits until every member is welcomed or gone (each failure counted
/// once), up to `timeout` (ns) from now; a member still waiting then is a
/// `timeout` error, and gone.
fn welcome_all(
    members: &mut [Member],
    io: &mut Io,
    rec: &mut Recorder,
    clock: &run::Clock,
    timeout: u64,
    cx: &Cx,
) -> io::Result<()> {
    let deadline = clock.now().saturating_add(timeout);
    loop {
        let now = clock.now();
        if members.iter().all(|m| m.welcomed || m.dead) {
            return Ok(());
        }
        if now >= deadline {
            for m in members.iter_mut().filter(|m| !m.welcomed && !m.dead) {
                rec.error(now, Kind::Timeout, 1);
                m.dead = true;
            }
            return Ok(());
        }
        io.sleeper
            .wait(&mut io.poll, &mut io.events, clock, deadline)?;
        for ev in io.events.iter().filter(|e| e.token() != run::ALARM) {
            // Nothing is measured yet: no delivery counts.
            let m = &mut members[ev.token().0];
            serve(m, ev, &mut io.rbuf, rec, clock, cx);
        }
    }
}

/// Waits for `go` to exist (at most [`GO_WAIT_NS`]), serving the members
/// meanwhile (pings answered); returns the measured deliveries read. The
/// load processes see the file at different moments (each looks every
/// 10 ms, and a busy machine delays some): lines of senders in a process
/// that saw it first reach this one while it still waits, and are owed
/// here (`--expect-lines`) like those that come later.
fn wait_go(
    go: &std::path::Path,
    members: &mut [Member],
    io: &mut Io,
    rec: &mut Recorder,
    clock: &run::Clock,
    cx: &Cx,
) -> io::Result<Got> {
    let deadline = clock.now().saturating_add(GO_WAIT_NS);
    let mut got: Got = [0; 2];
    while !go.exists() && clock.now() < deadline {
        let wake = clock.now() + 10_000_000;
        io.sleeper.wait(&mut io.poll, &mut io.events, clock, wake)?;
        for ev in io.events.iter().filter(|e| e.token() != run::ALARM) {
            let [l, r] = serve(&mut members[ev.token().0], ev, &mut io.rbuf, rec, clock, cx);
            got[0] += l;
            got[1] += r;
        }
    }
    Ok(got)
}

/// Measured deliveries read: from senders on the receiver's server, and
/// (several servers) from senders on another, indexed like [`SPLIT`].
type Got = [u64; 2];

/// A member's readiness event: writes what it has queued, reads what came
/// (answering pings); returns the measured deliveries read. A write that
/// fails is a `write` error; a member already gone is skipped.
fn serve(
    m: &mut Member,
    ev: &mio::event::Event,
    rbuf: &mut [u8],
    rec: &mut Recorder,
    clock: &run::Clock,
    cx: &Cx,
) -> Got {
    if m.dead {
        return [0; 2];
    }
    if ev.is_writable() && flush(m).is_err() {
        rec.error(clock.now(), Kind::Write, 1);
    }
    let got = receive(m, rbuf, rec, clock, cx);
    if let Some(since) = m.handshaking
        && let Some(h) = m.sock.handshake_done()
    {
        rec.handshaken(clock.now(), since, &h);
        m.handshaking = None;
    }
    if !m.dead && (!m.out.is_empty() || m.sock.pending()) && flush(m).is_err() {
        rec.error(clock.now(), Kind::Write, 1); // a pong
    }
    got
}

/// The poll set and what waiting on it takes.
struct Io {
    /// The members' readiness.
    poll: Poll,
    /// Its events.
    events: Events,
    /// Waits until the next send (precise: a timerfd).
    sleeper: run::Sleeper,
    /// The read buffer every member shares.
    rbuf: Vec<u8>,
}

/// The members' loop: join, wait for every welcome (the setup), then send
/// on schedule from time zero.
fn run_thread(room: &Room, mut plan: Plan) -> io::Result<ThreadOut> {
    let poll = Poll::new()?;
    let mut members = join(room, &plan, &poll)?;
    let ws = room.ws();
    let clock = plan.clock;
    let layout = room.layout();
    let sleeper = run::Sleeper::new(poll.registry(), &plan, true)?;
    let mut io = Io {
        poll,
        events: Events::with_capacity(1024),
        sleeper,
        rbuf: vec![0u8; 64 * 1024],
    };
    // Setup failures count: the window is set at time zero.
    let mut rec = Recorder::new(0, u64::MAX);
    if room.split() {
        rec = rec.split(&SPLIT);
    }
    let mut cx = Cx {
        from: u64::MAX,
        ws,
        layout: &layout,
        split: room.split(),
        table: room.opts.room_size.is_none(),
        wall0: clock.zero_wall_ns(),
        here: room.opts.first_member..room.opts.first_member + members.len() as u64,
    };
    welcome_all(&mut members, &mut io, &mut rec, &clock, plan.timeout, &cx)?;
    let live: Vec<usize> = (0..members.len()).filter(|&i| !members[i].dead).collect();
    if let Some(path) = &room.opts.ready_file {
        std::fs::write(path, format!("{}\n", live.len()))?;
    }
    // From here every line is a measured one (none was sent before the
    // setup was done): one from another process may come while this one
    // still waits for --go-file.
    cx.from = 0;
    // Deliveries measured so far (`Got`): those read while waiting for go.
    let mut got: Got = [0; 2];
    if let Some(path) = &room.opts.go_file {
        got = wait_go(path, &mut members, &mut io, &mut rec, &clock, &cx)?;
    }
    let zero = plan.start();
    rec.set_window(plan.from, plan.until);
    io.sleeper.count_from(plan.from);
    cx.from = plan.from;
    // The senders: in each room its first members, those here that joined;
    // taken in turn by their place in the room, then by room, so the
    // first lines go to every room (each room's first sender, then its
    // second...).
    let mut senders: Vec<usize> = live
        .iter()
        .copied()
        .filter(|&i| layout.sender(members[i].g).is_some())
        .collect();
    senders.sort_by_key(|&i| (layout.sender(members[i].g), members[i].g));
    // Members here that joined, per room and server: who each line is owed to.
    let mut in_room: std::collections::HashMap<u64, Vec<u64>> = Default::default();
    for &i in &live {
        let m = &members[i];
        in_room
            .entry(layout.room(m.g))
            .or_insert_with(|| vec![0; room.targets.len()])[m.server] += 1;
    }
    // Deliveries owed, [local, remote], as `Got`.
    let mut owed_by: Got = [0; 2];
    let mut sched = Schedule::new(
        zero,
        plan.rate.unwrap_or(DEFAULT_RATE),
        plan.poisson,
        plan.seed,
    );
    let mut seqs = vec![0u64; senders.len()];
    let (mut next_sender, mut lines_measured, mut owed) = (0usize, 0u64, 0u64);
    let mut line = Vec::with_capacity(64);
    let (mut next_tick, mut stop_at, mut cpu_from) = (plan.first_tick(), u64::MAX, None);
    // No sender here: nothing to send; else -n, if given.
    let mut quota = if senders.is_empty() {
        Some(0)
    } else {
        plan.count
    };
    // Lines from senders in other load processes.
    let foreign = room.opts.expect_lines * live.len() as u64;
    owed += foreign;
    loop {
        let now = clock.now();
        if cpu_from.is_none() && now >= plan.from {
            cpu_from = Some(super::procstat::thread_sched());
        }
        let got_measured = got[0] + got[1];
        // A process that only listens ends once it heard all it is owed.
        let heard_all = foreign > 0 && senders.is_empty() && got_measured >= owed;
        if stop_at == u64::MAX
            && (now >= plan.until || (quota == Some(0) && !senders.is_empty()) || heard_all)
        {
            stop_at = now;
        }
        if stop_at != u64::MAX && (got_measured >= owed || now >= stop_at + plan.timeout) {
            let lost = owed.saturating_sub(got_measured);
            rec.error(now, Kind::Timeout, lost);
            rec.count(now, "lines_sent", lines_measured);
            rec.count(now, "deliveries_owed", owed);
            rec.count(now, "lost", lost);
            rec.count(now, "members", live.len() as u64);
            let heard = live.iter().filter(|&&i| members[i].heard).count();
            rec.count(now, "members_heard", heard as u64);
            if room.split() {
                for (i, (seen, due, lost)) in SPLIT_COUNTERS.into_iter().enumerate() {
                    rec.count(now, seen, got[i]);
                    rec.count(now, due, owed_by[i]);
                    rec.count(now, lost, owed_by[i].saturating_sub(got[i]));
                }
            }
            break;
        }
        while now >= next_tick {
            let _ = plan.ticks.send((plan.thread, rec.take_tick(1_000_000_000)));
            next_tick += 1_000_000_000;
        }
        while stop_at == u64::MAX && sched.peek() <= now && quota != Some(0) {
            let t = sched.peek();
            sched.advance();
            rec.lagged(now, t);
            let k = next_sender;
            next_sender = (next_sender + 1) % senders.len();
            let sender = &members[senders[k]];
            // The sender's number is its global one; the time, the wall
            // clock's, so receivers in other processes can time it.
            let (g, stamp) = (sender.g, cx.wall0 + t);
            line.clear();
            if ws {
                let mut text = [0u8; 80];
                let mut w = &mut text[..];
                let _ = write!(w, "bench {g} {} {stamp}", seqs[k]);
                let n = 80 - w.len();
                client_frame(&text[..n], &mut line);
            } else {
                let _ = writeln!(line, "bench {g} {} {stamp}", seqs[k]);
            }
            seqs[k] += 1;
            if t >= plan.from {
                lines_measured += 1;
                let counts = &in_room[&layout.room(g)];
                let (here, all) = (counts[sender.server], counts.iter().sum::<u64>());
                owed += all - 1;
                owed_by[0] += here - 1;
                owed_by[1] += all - here;
            }
            if let Some(q) = &mut quota {
                *q -= 1;
            }
            let m = &mut members[senders[k]];
            m.out.extend_from_slice(&line);
            if flush(m).is_err() {
                rec.error(now, Kind::Write, 1);
            }
            rec.wrote(now, line.len());
        }
        let wake = run::next_wake(&sched, &plan, stop_at, next_tick);
        io.sleeper
            .wait(&mut io.poll, &mut io.events, &clock, wake)?;
        for ev in io.events.iter().filter(|e| e.token() != run::ALARM) {
            let m = &mut members[ev.token().0];
            let [l, r] = serve(m, ev, &mut io.rbuf, &mut rec, &clock, &cx);
            got[0] += l;
            got[1] += r;
        }
    }
    let end = clock.now();
    plan.last_tick(&mut rec, end);
    Ok(ThreadOut::new(rec, cpu_from, &io.sleeper, stop_at, end))
}

/// Writes what member `m` has queued, until done or `WouldBlock`.
fn flush(m: &mut Member) -> io::Result<()> {
    match m.sock.flush() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
        other => other?,
    }
    while !m.out.is_empty() {
        match m.sock.write(&[IoSlice::new(&m.out)]) {
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

/// Reads member `m` until `WouldBlock` and handles each complete line
/// (or frame, with `ws`); returns measured deliveries seen.
fn receive(
    m: &mut Member,
    rbuf: &mut [u8],
    rec: &mut Recorder,
    clock: &run::Clock,
    cx: &Cx,
) -> Got {
    let mut got = [0; 2];
    loop {
        match m.sock.read(rbuf) {
            Ok(0) => {
                rec.error(clock.now(), Kind::Read, 1);
                m.dead = true;
                return got;
            }
            Ok(n) => {
                let now = clock.now();
                rec.read(now, n);
                m.partial.extend_from_slice(&rbuf[..n]);
                let start = if !cx.ws {
                    lines(m, rec, now, cx, &mut got)
                } else {
                    // The 101's head first, then frames (maybe in one read).
                    let head = if m.upgraded { 0 } else { upgraded(m, rec, now) };
                    if m.dead {
                        return got;
                    }
                    match m.upgraded {
                        true => frames(m, head, rec, now, cx, &mut got),
                        false => 0,
                    }
                };
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
                m.dead = true;
                return got;
            }
        }
    }
}

/// Handles the complete lines in `m.partial`; returns where the rest starts.
fn lines(m: &mut Member, rec: &mut Recorder, now: u64, cx: &Cx, got: &mut Got) -> usize {
    let mut start = 0;
    while let Some(end) = m.partial[start..].iter().position(|&b| b == b'\n') {
        on_line(m, start, start + end, rec, now, cx, got);
        start += end + 1;
    }
    start
}

/// Handles the complete server frames in `m.partial` from `start`: text
/// frames are lines, pings are answered; returns where the rest starts.
fn frames(
    m: &mut Member,
    mut start: usize,
    rec: &mut Recorder,
    now: u64,
    cx: &Cx,
    got: &mut Got,
) -> usize {
    while let Some((opcode, body)) = server_frame(&m.partial[start..]) {
        let (a, b) = (start + body.start, start + body.end);
        match opcode {
            0x1 => on_line(m, a, b, rec, now, cx, got),
            0x9 => {
                let payload = m.partial[a..b].to_vec();
                let mut pong = Vec::with_capacity(payload.len() + 6);
                client_frame_op(0xA, &payload, &mut pong);
                m.out.extend_from_slice(&pong);
            }
            0x8 => rec.error(now, Kind::Read, 1), // the server closed us
            _ => rec.error(now, Kind::Verify, 1),
        }
        start = b;
    }
    start
}

/// Reads the response to the upgrade: a 101 lets frames begin; anything
/// else is a status error, and the member is gone. Returns the head's
/// length (0 while incomplete).
fn upgraded(m: &mut Member, rec: &mut Recorder, now: u64) -> usize {
    let Some(end) = m.partial.windows(4).position(|w| w == b"\r\n\r\n") else {
        return 0;
    };
    if !m.partial.starts_with(b"HTTP/1.1 101 ") {
        rec.error(now, Kind::Status, 1);
        m.dead = true;
    }
    m.upgraded = true;
    end + 4
}

/// The opcode and payload range of the unmasked server frame at the start
/// of `b`, if it is all there.
pub(super) fn server_frame(b: &[u8]) -> Option<(u8, std::ops::Range<usize>)> {
    let [b0, b1, ..] = *b else {
        return None;
    };
    let (len, at) = match b1 & 0x7F {
        126 => (
            u16::from_be_bytes(b.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(b.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    (b.len() >= at + len).then_some((b0 & 0x0F, at..at + len))
}

/// Appends a masked client text frame carrying `text`.
fn client_frame(text: &[u8], out: &mut Vec<u8>) {
    client_frame_op(0x1, text, out);
}

/// Handles `m.partial[a..b]`, one line; a measured delivery is added to
/// `got` (local or remote). With rooms, the first notice (the welcome)
/// sends the member's `/join`, and its answer is its welcome.
fn on_line(
    m: &mut Member,
    a: usize,
    b: usize,
    rec: &mut Recorder,
    now: u64,
    cx: &Cx,
    got: &mut Got,
) {
    match classify(&m.partial[a..b]) {
        Line::Notice => match cx.layout.size {
            None => m.welcomed = true,
            Some(_) if m.partial[a..b].starts_with(b"* you joined ") => m.welcomed = true,
            Some(_) if !m.join_sent => {
                m.join_sent = true;
                let cmd = format!("/join b{}", cx.layout.room(m.g));
                match cx.ws {
                    true => client_frame(cmd.as_bytes(), &mut m.out),
                    false => {
                        m.out.extend_from_slice(cmd.as_bytes());
                        m.out.push(b'\n');
                    }
                }
            }
            Some(_) => {}
        },
        Line::Error => rec.error(now, Kind::Status, 1),
        Line::Other => rec.error(now, Kind::Verify, 1),
        Line::Bench(s, seq, stamp) => {
            // The sender's place in this member's room, if it is in it.
            let first = cx.layout.room_first(m.g);
            let s = s as u64;
            let place = (s >= first && cx.layout.room(s) == cx.layout.room(m.g))
                .then(|| cx.layout.sender(s))
                .flatten();
            let Some(want) = place.and_then(|k| m.expect.get_mut(k)) else {
                rec.error(now, Kind::Verify, 1);
                return;
            };
            if seq < *want {
                rec.count(now, "out_of_order", 1);
            } else {
                if seq > *want {
                    rec.count(now, "gaps", seq - *want);
                }
                *want = seq + 1;
            }
            // The stamp is on the wall clock: back onto this one.
            let t = stamp.saturating_sub(cx.wall0);
            rec.done(now, t, t);
            let part = match cx.split {
                true => {
                    let remote = cx.layout.server(s) != m.server;
                    rec.part(usize::from(remote), now, t);
                    usize::from(remote)
                }
                false => 0,
            };
            // A line from a sender here is measured if meant after the
            // window opened (as it is owed); one from another process (owed
            // by --expect-lines), if it came after: the processes' windows
            // open a few ms apart.
            let measured = match cx.here.contains(&s) {
                true => t >= cx.from,
                false => now >= cx.from,
            };
            got[part] += u64::from(measured);
            if measured {
                m.heard = true;
                if cx.table && (rec.lines.len() < MAX_TABLE || rec.lines.contains_key(&(s, seq))) {
                    let e = rec.lines.entry((s, seq)).or_insert((0, 0));
                    e.0 += 1;
                    e.1 = e.1.max(now.saturating_sub(t));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_lines_up_members_rooms_and_servers() {
        // The lobby: member g on server g mod n; the first two send.
        let lobby = Layout {
            n: 3,
            size: None,
            spread: 3,
            senders: 2,
        };
        let servers: Vec<usize> = (0..6).map(|g| lobby.server(g)).collect();
        assert_eq!(servers, [0, 1, 2, 0, 1, 2]);
        assert_eq!((lobby.room(5), lobby.room_first(5)), (0, 0));
        assert_eq!(
            (lobby.sender(0), lobby.sender(1), lobby.sender(2)),
            (Some(0), Some(1), None)
        );
        // Rooms of 4 over 2 of 6 servers: room r on servers 2r, 2r+1 (mod 6).
        let rooms = Layout {
            n: 6,
            size: Some(4),
            spread: 2,
            senders: 1,
        };
        let at: Vec<(u64, usize)> = (0..12).map(|g| (rooms.room(g), rooms.server(g))).collect();
        assert_eq!(
            at,
            [
                (0, 0),
                (0, 1),
                (0, 0),
                (0, 1),
                (1, 2),
                (1, 3),
                (1, 2),
                (1, 3),
                (2, 4),
                (2, 5),
                (2, 4),
                (2, 5)
            ]
        );
        assert_eq!(
            (rooms.room_first(6), rooms.sender(4), rooms.sender(5)),
            (4, Some(0), None)
        );
    }

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

    /// A fake lobby for `k` members: welcomes each, waits for `ready`,
    /// sends each member `before` lines of a sender in another load
    /// process (members 0 and 1), creates `go`, then sends `after` more;
    /// then holds the connections until the bench closes them.
    fn fake_lobby(
        k: usize,
        before: u64,
        after: u64,
        ready: std::path::PathBuf,
        go: std::path::PathBuf,
    ) -> (SocketAddr, std::thread::JoinHandle<()>) {
        use std::io::Read;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let mut socks: Vec<std::net::TcpStream> =
                (0..k).map(|_| l.accept().unwrap().0).collect();
            for s in &mut socks {
                s.write_all(b"* welcome to the lobby\n").unwrap();
            }
            let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !ready.exists() && std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let say = |socks: &mut [std::net::TcpStream], seq: u64| {
                let wall = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos();
                for s in socks.iter_mut() {
                    for sender in 0..2 {
                        let line = format!("[lobby] guest{sender}: bench {sender} {seq} {wall}\n");
                        s.write_all(line.as_bytes()).unwrap();
                    }
                }
            };
            for seq in 0..before {
                say(&mut socks, seq);
            }
            // The bench reads these while it still waits for the go file.
            std::thread::sleep(std::time::Duration::from_millis(200));
            std::fs::write(&go, "").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(50));
            for seq in before..before + after {
                say(&mut socks, seq);
            }
            for s in &mut socks {
                let mut buf = [0u8; 256];
                while let Ok(1..) = s.read(&mut buf) {}
            }
        });
        (addr, h)
    }

    /// Runs `reactor bench chat ARGS...` in this process (the flags parsed
    /// as `bench chat` parses them).
    fn run_chat(args: &[&str]) -> Report {
        use clap::Parser;
        #[derive(Parser)]
        struct Chat {
            #[command(flatten)]
            a: ChatArgs,
        }
        let mut v = vec!["chat"];
        v.extend_from_slice(args);
        let c = Chat::try_parse_from(v).expect("valid flags");
        bench(&c.a).expect("the run itself works")
    }

    /// A listen-only load process (`--expect-lines`, no sender here) is
    /// owed every line of the senders in another process, including those
    /// that reach it while it still waits for `--go-file` (the other
    /// process saw the file first and began sending): each is counted
    /// once, none lost, and the process ends as soon as it has heard them
    /// all rather than at `-d` plus `--timeout` (scripts/million.sh).
    #[test]
    fn lines_heard_while_waiting_for_go_are_counted() {
        let dir = std::env::temp_dir().join(format!("reactor-chat-go-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ready, go) = (dir.join("ready"), dir.join("go"));
        let _ = std::fs::remove_file(&go);
        let (k, before, after) = (3usize, 2u64, 3u64);
        let (addr, server) = fake_lobby(k, before, after, ready.clone(), go.clone());
        let (addr, ready_s, go_s) = (
            addr.to_string(),
            ready.display().to_string(),
            go.display().to_string(),
        );
        let t0 = std::time::Instant::now();
        let r = run_chat(&[
            &addr,
            "-c",
            "3",
            "--senders",
            "2",
            "--first-member",
            "2",
            "--expect-lines",
            "10",
            "--ready-file",
            &ready_s,
            "--go-file",
            &go_s,
            "-d",
            "10s",
            "--timeout",
            "1s",
            "-q",
        ]);
        let took = t0.elapsed();
        server.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let x = &r.m.rec.extra;
        let owed = k as u64 * 2 * (before + after);
        assert_eq!(x["deliveries_owed"], owed, "{x:?}");
        assert_eq!(r.m.rec.requests, owed, "every delivery was seen: {x:?}");
        assert_eq!(x["lost"], 0, "{x:?}");
        assert_eq!(x["members_heard"], k as u64, "{x:?}");
        assert_eq!(r.m.rec.errors.total(), 0, "{:?}", r.m.rec.errors);
        assert!(
            took < std::time::Duration::from_secs(5),
            "it heard all it was owed and ended at once, not at -d: {took:?}"
        );
    }

    #[test]
    fn frames_round_trip_through_the_server_codec() {
        // A client frame decodes with the server's decoder...
        let mut f = Vec::new();
        client_frame(b"bench 0 1 2", &mut f);
        let mut got = Vec::new();
        let mut d = crate::service::ws::Decoder::default();
        let kept = d
            .feed(&mut f, crate::service::ws::Accept::text(4096), |e| {
                if let crate::service::ws::Event::Text(t) = e {
                    got.push(t.to_vec());
                }
                true
            })
            .unwrap();
        assert_eq!((kept, got), (0, vec![b"bench 0 1 2".to_vec()]));
        // ...and a server frame parses here, only once whole.
        let (h, n) = crate::service::ws::text_header(300);
        let mut s = h[..n].to_vec();
        s.extend_from_slice(&[b'x'; 300]);
        assert_eq!(server_frame(&s[..200]), None);
        assert_eq!(server_frame(&s), Some((1, 4..304)));
    }
}
