//! `reactor bench game`: bot players of the game (`reactor serve --game`),
//! over UDP and over WebSocket (`/game/ws`), in one mio loop.
//!
//! Each bot plays as the real clients do (`examples/game_client.py`, the
//! page): the handshake with the cookie (HELLO, COOKIE, JOIN, WELCOME;
//! over WebSocket the WELCOME comes by itself), then once a tick an INPUT
//! with the next sequence number and the seven before it, acknowledging
//! the newest snapshot it has; it walks in a direction it changes each
//! second. Every snapshot is decoded with the server's own
//! `wire::parse_snapshot`, a delta against the copy the bot kept of its
//! base (the last 64, as the page keeps).
//!
//! What it measures, over the window, at the bots:
//! - tick jitter: each snapshot's arrival against the previous one's, as
//!   |inter-arrival - ticks between them x period|, and the inter-arrival
//!   of one tick's worth less the period, signed (`--hz` comes from
//!   WELCOME; the period is the server's, whole microseconds);
//! - snapshot sizes, deltas and full snapshots apart (the header says:
//!   base 0 is full), and the bytes per player each way;
//! - input-to-snapshot latency: from the send of input `k` to the first
//!   snapshot whose `ack_seq` is `k` or more (the "requests" and
//!   "latency" of the summary: one request is one input);
//! - loss: snapshots received against the ticks their numbers span (and
//!   against the clock), and with `--loss P` the datagrams each bot drops
//!   on purpose, in and out, by a seeded RNG;
//! - with `--stats`, the server's own view over the same window (its
//!   tick jitter by the OS clock, skipped ticks, overruns, snapshots), and
//!   with `--pid` its CPU per tick and per player.
//!
//! The inputs of all bots are one schedule at `players x hz`, bot `k mod
//! N` sending the k-th, so their phases against the server's tick are
//! spread evenly (a real crowd's are random): the latency includes the
//! wait for the next tick, 0 to a period.

use std::collections::BTreeMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use mio::net::{TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};
use serde_json::{Value, json};

use super::chat::server_frame;
use super::cli::GameArgs;
use super::echo::client_frame_op;
use super::hist::{histogram, quantile};
use super::kind::{self, Kind};
use super::net;
use super::record::Recorder;
use super::report::{LAG_LIMIT_NS, Report};
use super::run::{self, Plan, Schedule, Setup, ThreadOut};
use super::text::{fmt_bytes, fmt_ns};
use crate::service::game::wire::{self, Ent, SnapError, Welcome};

/// Snapshots a bot keeps to decode deltas against (the page's 64; the
/// server bases a delta on at most 32 ticks back).
const RING: usize = 64;
/// Input send times a bot keeps, by sequence number.
const SENT_KEEP: usize = 256;
/// A HELLO or JOIN unanswered this long is sent again (as the Python
/// client does).
const RESEND_NS: u64 = 250_000_000;
/// After the window: acknowledgements of the last inputs are awaited this
/// long (a few ticks), with no input sent.
const DRAIN_NS: u64 = 250_000_000;
/// A datagram's IPv4 and UDP headers, for the bandwidth on the wire.
const UDP_IPV4_HEADERS: u64 = 28;
/// The same over IPv6.
const UDP_IPV6_HEADERS: u64 = 48;
/// A server that waited for a CPU this share of the window gets a note:
/// its tick timing is then partly the machine's.
const SERVER_WAIT_NOTE: f64 = 0.01;
/// Moves a bot may make: the four directions and the four diagonals.
const MOVES: [u8; 8] = {
    use wire::button::{DOWN, LEFT, RIGHT, UP};
    [
        UP,
        DOWN,
        LEFT,
        RIGHT,
        UP | LEFT,
        UP | RIGHT,
        DOWN | LEFT,
        DOWN | RIGHT,
    ]
};

/// What the bots play against, resolved once.
#[derive(Clone, Debug)]
struct Spec {
    /// The game's UDP address.
    udp: Option<SocketAddr>,
    /// The WebSocket players' server and upgrade request.
    ws: Option<(SocketAddr, Vec<u8>)>,
    /// Players in all.
    players: usize,
    /// Of them, over WebSocket (the first ones).
    ws_players: usize,
    /// Simulated loss, each way.
    loss: f64,
    /// Seed of moves and loss.
    seed: u64,
    /// Never acknowledge.
    no_ack: bool,
    /// `/stats`: where, and the request.
    stats: Option<(SocketAddr, Vec<u8>)>,
    /// The server's processes (`--pid`).
    pids: Vec<u32>,
}

/// Runs the game workload.
pub fn bench(a: &GameArgs) -> crate::Result<Report> {
    let c = a.common();
    let spec = spec(a)?;
    let shared: Arc<Mutex<Option<Tally>>> = Arc::default();
    let setup = Setup {
        common: &c,
        conns: spec.players,
        threads: 1,
    };
    let (s, out) = (spec.clone(), shared.clone());
    let m = run::drive(setup, move |plan| run_thread(&s, &out, plan))?;
    let tally = shared
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .ok_or_else(|| kind::io("the game loop", io::Error::other("ended without a result")))?;
    let target = match (&a.addr, &a.ws) {
        (Some(u), Some(w)) => format!("{u} + {w}"),
        (Some(u), None) => u.clone(),
        (None, Some(w)) => w.clone(),
        (None, None) => String::new(),
    };
    let config = json!({
        "players": spec.players, "ws_players": spec.ws_players,
        "udp": a.addr, "ws": a.ws, "loss": spec.loss, "seed": spec.seed,
        "no_ack": spec.no_ack, "stats": a.stats,
    });
    let mut r = Report::new("game", target, config, &c, spec.players, m);
    figures(&mut r, &spec, &tally);
    Ok(r)
}

/// Checks the flags and resolves the addresses.
fn spec(a: &GameArgs) -> crate::Result<Spec> {
    let players = a.players as usize;
    let udp = match &a.addr {
        Some(s) => {
            let (host, port) = net::split_host_port(s, None).map_err(kind::config)?;
            Some(net::resolve(&host, port, None).map_err(kind::config)?.addr)
        }
        None => None,
    };
    let ws = match &a.ws {
        Some(url) => {
            let Some(rest) = url.strip_prefix("ws://") else {
                return Err(kind::config(format!(
                    "--ws '{url}': a ws://HOST:PORT/game/ws URL (wss:// is not supported here)"
                )));
            };
            let u = super::http::parse_url(&format!("http://{rest}"), a.timeout)
                .map_err(kind::config)?;
            let upgrade = format!(
                "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                u.path, u.authority
            );
            Some((u.addr, upgrade.into_bytes()))
        }
        None => None,
    };
    let ws_players = match (udp.is_some(), ws.is_some(), a.ws_players) {
        (_, false, _) => 0,
        (false, true, None) => players,
        (false, true, Some(n)) if n as usize != players => {
            return Err(kind::config(
                "--ws-players: without ADDR every player is a WebSocket one (leave it out)",
            ));
        }
        (true, true, None) => players / 2,
        (_, true, Some(n)) => n as usize,
    };
    if ws_players > players {
        return Err(kind::config(format!(
            "--ws-players {ws_players} is more than --players {players}"
        )));
    }
    let stats = match &a.stats {
        Some(s) => {
            let url = if s.starts_with("http://") {
                s.clone()
            } else if s.contains("://") {
                return Err(kind::config(format!("--stats '{s}': an http:// URL")));
            } else {
                format!("http://{s}/stats")
            };
            let u = super::http::parse_url(&url, a.timeout).map_err(kind::config)?;
            let req = format!(
                "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                u.path, u.authority
            );
            Some((u.addr, req.into_bytes()))
        }
        None => None,
    };
    Ok(Spec {
        udp,
        ws,
        players,
        ws_players,
        loss: a.loss,
        seed: a.seed,
        no_ack: a.no_ack,
        stats,
        pids: a.pid.clone(),
    })
}

/// xorshift64*, seeded through splitmix64: the bots' moves and the
/// simulated loss, the same for the same seed.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    /// A generator for stream `stream` of bot `bot` under `seed`.
    fn new(seed: u64, bot: usize, stream: u64) -> Rng {
        let mut z = seed
            .wrapping_add((bot as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .wrapping_add(stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// Sizes of one kind of snapshot.
#[derive(Clone, Copy, Debug, Default)]
struct Sizes {
    /// How many.
    n: u64,
    /// Their bytes.
    bytes: u64,
    /// The largest.
    max: u64,
}

impl Sizes {
    fn add(&mut self, len: usize) {
        self.n += 1;
        self.bytes += len as u64;
        self.max = self.max.max(len as u64);
    }

    fn mean(&self) -> f64 {
        self.bytes as f64 / self.n.max(1) as f64
    }
}

/// The game's figures beyond what the recorder holds, over the window.
#[derive(Debug)]
struct Tally {
    /// Ticks per second (from WELCOME; 0 if no one joined).
    hz: u32,
    /// The server's tick period, ns (whole µs, as its timer has it).
    period_ns: u64,
    /// |inter-arrival - ticks x period| of each bot's snapshots, ns.
    jitter: Histogram<u64>,
    /// The inter-arrival of one tick's worth: less (ticks - 1) periods.
    gap: Histogram<u64>,
    /// Deltas, then full snapshots.
    sizes: [Sizes; 2],
    /// Snapshots the bots' tick numbers say were sent to them.
    expected: u64,
    /// Snapshots taken (newer than the newest the bot had).
    received: u64,
    /// Older than the bot's newest (or the same again): ignored.
    stale: u64,
    /// Deltas against a tick the bot did not have.
    no_base: u64,
    /// Datagrams dropped on purpose: arriving, leaving.
    dropped: [u64; 2],
    /// UDP datagrams actually received and sent in the window.
    datagrams: [u64; 2],
    /// Inputs sent in the window, and of those acknowledged.
    inputs: [u64; 2],
    /// Players in the arena at time zero: over UDP, over WebSocket.
    joined: [u64; 2],
    /// Joins refused (the arena full, a wrong version).
    refused: u64,
    /// Bots that never got in: no WELCOME within the timeout, or no
    /// connection.
    failed: u64,
    /// Bots lost during the run (a WebSocket closed).
    lost_bots: u64,
    /// Headers a UDP datagram carries on the wire.
    udp_headers: u64,
    /// The server's /stats at the window's start and end.
    server: Option<Result<(Stats, Stats), String>>,
    /// The share of the window the server (`--pid`) was runnable but
    /// waited for a CPU: its core was shared.
    server_wait: Option<f64>,
}

/// `/stats`, the numbers.
type Stats = BTreeMap<String, u64>;

/// A bot's transport.
#[derive(Debug)]
enum Link {
    /// A connected UDP socket.
    Udp(UdpSocket),
    /// A WebSocket over TCP.
    Ws(Box<WsLink>),
}

/// A WebSocket player's connection.
#[derive(Debug)]
struct WsLink {
    /// The socket.
    sock: TcpStream,
    /// Bytes read and not yet taken (the 101's head, frames).
    inb: Vec<u8>,
    /// Bytes to write.
    out: Vec<u8>,
    /// The 101 came.
    upgraded: bool,
}

/// Where a bot is in the game.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// HELLO sent (UDP), or the upgrade (WebSocket): waiting.
    Hello,
    /// JOIN sent with this cookie.
    Join(u64),
    /// In the arena.
    Playing,
    /// Refused, failed, or left.
    Gone,
}

/// One bot player.
#[derive(Debug)]
struct Bot {
    /// Its transport.
    link: Link,
    /// Its phase.
    phase: Phase,
    /// When HELLO or JOIN was last sent (ns).
    asked_at: u64,
    /// Its WELCOME.
    me: Option<Welcome>,
    /// The snapshots kept, at `tick % RING`.
    ring: Vec<Option<(u32, Vec<Ent>)>>,
    /// The newest snapshot's tick (0: none).
    latest: u32,
    /// When it arrived, if in the window (0: not, so no jitter from it).
    latest_at: u64,
    /// The last input's sequence number.
    seq: u32,
    /// The buttons of the last inputs, newest first.
    history: [u8; wire::MAX_REDUNDANT],
    /// The buttons held now.
    held: u8,
    /// (seq, send time) of the last inputs, at `seq % SENT_KEEP`.
    sent: Vec<(u32, u64)>,
    /// The highest `ack_seq` seen.
    acked: u32,
    /// In the window: the first and last tick taken, and how many.
    span: (u32, u32, u64),
    /// Its moves.
    moves: Rng,
    /// Simulated loss: arriving, leaving.
    lose: [Rng; 2],
}

/// What a message's handling needs to know.
#[derive(Clone, Copy, Debug)]
struct Cx {
    /// The window (ns on the run's clock; `u64::MAX` before time zero).
    from: u64,
    /// Its end.
    until: u64,
    /// The tick period (ns), once known.
    period_ns: u64,
    /// Never acknowledge.
    no_ack: bool,
    /// Simulated loss.
    loss: f64,
}

impl Cx {
    fn in_window(&self, now: u64) -> bool {
        now >= self.from && now <= self.until
    }
}

impl Bot {
    fn new(link: Link, i: usize, seed: u64) -> Bot {
        let mut moves = Rng::new(seed, i, 0);
        let held = MOVES[(moves.next() % MOVES.len() as u64) as usize];
        Bot {
            link,
            phase: Phase::Hello,
            asked_at: 0,
            me: None,
            ring: vec![None; RING],
            latest: 0,
            latest_at: 0,
            seq: 0,
            history: [0; wire::MAX_REDUNDANT],
            held,
            sent: vec![(0, 0); SENT_KEEP],
            acked: 0,
            span: (0, 0, 0),
            moves,
            lose: [Rng::new(seed, i, 1), Rng::new(seed, i, 2)],
        }
    }

    fn handshaking(&self) -> bool {
        matches!(self.phase, Phase::Hello | Phase::Join(_))
    }

    /// Sends one game message: a datagram (unless the simulated loss takes
    /// it), or a masked binary frame.
    fn send(&mut self, msg: &[u8], now: u64, cx: &Cx, rec: &mut Recorder, t: &mut Tally) {
        let counted = cx.in_window(now);
        match &mut self.link {
            Link::Udp(s) => {
                if cx.loss > 0.0 && self.lose[1].chance(cx.loss) {
                    t.dropped[1] += u64::from(counted);
                    return;
                }
                match s.send(msg) {
                    Ok(n) if counted => {
                        rec.wrote(now, n);
                        t.datagrams[1] += 1;
                    }
                    Ok(_) => {}
                    // A full send buffer: the datagram is lost here.
                    Err(e) if e.kind() == ErrorKind::WouldBlock => rec.error(now, Kind::Write, 1),
                    // An ICMP error for an earlier datagram (the server's
                    // port closed): this one was not sent.
                    Err(_) => rec.error(now, Kind::Connect, 1),
                }
            }
            Link::Ws(w) => {
                let before = w.out.len();
                client_frame_op(0x2, msg, &mut w.out);
                if counted {
                    rec.wrote(now, w.out.len() - before);
                }
                if flush(w).is_err() {
                    rec.error(now, Kind::Write, 1);
                    self.phase = Phase::Gone;
                }
            }
        }
    }

    /// UDP: sends HELLO, or JOIN with the cookie it has.
    fn ask(&mut self, now: u64, cx: &Cx, rec: &mut Recorder, t: &mut Tally) {
        let mut msg = Vec::with_capacity(wire::HELLO_LEN);
        match self.phase {
            Phase::Hello => wire::hello(&mut msg),
            Phase::Join(cookie) => wire::join(cookie, &mut msg),
            _ => return,
        }
        self.asked_at = now;
        self.send(&msg, now, cx, rec, t);
    }

    /// The next input: the buttons held (a new direction each second),
    /// with the seven before it and the newest snapshot as the ack.
    fn input(&mut self, now: u64, cx: &Cx, rec: &mut Recorder, t: &mut Tally) {
        let Some(me) = self.me else { return };
        self.seq += 1;
        if self.seq.is_multiple_of(u32::from(me.hz.max(1))) {
            self.held = MOVES[(self.moves.next() % MOVES.len() as u64) as usize];
        }
        self.history.copy_within(..wire::MAX_REDUNDANT - 1, 1);
        self.history[0] = self.held;
        let n = (self.seq as usize).min(wire::MAX_REDUNDANT);
        let ack = if cx.no_ack { 0 } else { self.latest };
        let mut msg = Vec::with_capacity(wire::INPUT_HEAD + n);
        wire::input(me.token, ack, self.seq, &self.history[..n], &mut msg);
        self.sent[self.seq as usize % SENT_KEEP] = (self.seq, now);
        if cx.in_window(now) {
            t.inputs[0] += 1;
        }
        self.send(&msg, now, cx, rec, t);
    }

    /// One message from the server, `b`, at `now`.
    fn message(&mut self, b: &[u8], now: u64, cx: &Cx, rec: &mut Recorder, t: &mut Tally) {
        match (b.first().copied(), self.phase) {
            (Some(wire::COOKIE), Phase::Hello | Phase::Join(_)) if b.len() == wire::COOKIE_LEN => {
                let cookie = u64::from_le_bytes(b[2..10].try_into().unwrap_or_default());
                self.phase = Phase::Join(cookie);
                self.ask(now, cx, rec, t);
            }
            (Some(wire::WELCOME), _) => match wire::parse_welcome(b) {
                Some(w) if self.handshaking() => {
                    self.me = Some(w);
                    self.phase = Phase::Playing;
                }
                Some(_) => {} // a WELCOME again (a JOIN resent): no news
                None => rec.error(now, Kind::Verify, 1),
            },
            (Some(wire::REJECT), Phase::Hello | Phase::Join(_)) => {
                t.refused += 1;
                rec.error(now, Kind::Status, 1);
                self.phase = Phase::Gone;
            }
            (Some(wire::SNAPSHOT), Phase::Playing) => self.snapshot(b, now, cx, rec, t),
            // A snapshot after BYE, or before WELCOME (not ours yet).
            (Some(wire::SNAPSHOT), _) => {}
            _ => rec.error(now, Kind::Verify, 1),
        }
    }

    /// A snapshot: decoded by the server's own code against the base the
    /// bot kept; measured if in the window; its `ack_seq` times inputs.
    fn snapshot(&mut self, b: &[u8], now: u64, cx: &Cx, rec: &mut Recorder, t: &mut Tally) {
        let ring = &self.ring;
        let parsed = wire::parse_snapshot(b, |tick| match &ring[tick as usize % RING] {
            Some((k, ents)) if *k == tick => Some(&ents[..]),
            _ => None,
        });
        let measured = cx.in_window(now);
        let (head, ents) = match parsed {
            Ok(p) => p,
            Err(SnapError::NoBase(_)) => {
                t.no_base += u64::from(measured);
                return;
            }
            Err(SnapError::Malformed) => {
                rec.error(now, Kind::Verify, 1);
                return;
            }
        };
        if head.tick <= self.latest {
            t.stale += u64::from(measured);
            return;
        }
        let me = self.me.map_or(0, |w| w.id);
        if head.you != me || ents.binary_search_by_key(&me, |e| e.id).is_err() {
            rec.error(now, Kind::Verify, 1);
        }
        if measured {
            rec.read(now, b.len());
            t.sizes[usize::from(head.base == 0)].add(b.len());
            if self.latest_at >= cx.from && self.latest_at > 0 {
                let ticks = u64::from(head.tick - self.latest);
                let interval = now - self.latest_at;
                t.jitter
                    .saturating_record(interval.abs_diff(ticks * cx.period_ns));
                t.gap
                    .saturating_record(interval.saturating_sub((ticks - 1) * cx.period_ns));
            }
            if self.span.2 == 0 {
                self.span.0 = head.tick;
            }
            self.span.1 = head.tick;
            self.span.2 += 1;
        }
        // Inputs up to ack_seq are acknowledged: each input's latency is
        // to the first snapshot that acknowledges it.
        let first = self
            .acked
            .saturating_add(1)
            .max(head.ack_seq.saturating_sub(SENT_KEEP as u32 - 1));
        for k in first..=head.ack_seq {
            let (seq, at) = self.sent[k as usize % SENT_KEEP];
            if seq == k && at >= cx.from {
                rec.done(now, at, at);
                t.inputs[1] += 1;
            }
        }
        self.acked = self.acked.max(head.ack_seq);
        self.latest = head.tick;
        self.latest_at = if measured { now } else { 0 };
        self.ring[head.tick as usize % RING] = Some((head.tick, ents));
    }

    /// The socket is ready: reads what is waiting (UDP: each datagram
    /// through the simulated loss), and writes what is queued (WebSocket).
    fn ready(
        &mut self,
        buf: &mut [u8],
        clock: &run::Clock,
        cx: &Cx,
        rec: &mut Recorder,
        t: &mut Tally,
    ) {
        loop {
            let got = match &self.link {
                Link::Udp(s) => s.recv(buf),
                Link::Ws(_) => return self.ws_ready(buf, clock, cx, rec, t),
            };
            match got {
                Ok(n) => {
                    let now = clock.now();
                    if cx.loss > 0.0 && self.lose[0].chance(cx.loss) {
                        t.dropped[0] += u64::from(cx.in_window(now));
                        continue;
                    }
                    t.datagrams[0] += u64::from(cx.in_window(now));
                    self.message(&buf[..n], now, cx, rec, t);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // An ICMP error (the server's port closed).
                Err(_) => rec.error(clock.now(), Kind::Connect, 1),
            }
        }
    }

    /// A WebSocket player's socket is ready: writes what is queued, reads
    /// the 101's head and the frames.
    fn ws_ready(
        &mut self,
        buf: &mut [u8],
        clock: &run::Clock,
        cx: &Cx,
        rec: &mut Recorder,
        t: &mut Tally,
    ) {
        let Link::Ws(w) = &mut self.link else { return };
        let mut closed = flush(w).is_err();
        loop {
            match w.sock.read(buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => w.inb.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        let mut upgraded = w.upgraded;
        let mut inb = std::mem::take(&mut w.inb);
        let now = clock.now();
        let mut at = 0;
        if !upgraded {
            match inb.windows(4).position(|x| x == b"\r\n\r\n") {
                Some(end) if inb.starts_with(b"HTTP/1.1 101 ") => {
                    upgraded = true;
                    at = end + 4;
                }
                Some(_) => {
                    rec.error(now, Kind::Status, 1);
                    self.phase = Phase::Gone;
                    return;
                }
                None => {}
            }
        }
        let mut pongs = Vec::new();
        let mut server_closed = false;
        while let Some((opcode, body)) = server_frame(&inb[at..]).filter(|_| upgraded) {
            let (a, b) = (at + body.start, at + body.end);
            at = b;
            match opcode {
                0x2 => self.message(&inb[a..b], now, cx, rec, t),
                0x9 => client_frame_op(0xA, &inb[a..b], &mut pongs),
                0x8 => server_closed = true,
                _ => rec.error(now, Kind::Verify, 1),
            }
        }
        inb.drain(..at);
        let Link::Ws(w) = &mut self.link else { return };
        w.upgraded = upgraded;
        w.inb = inb;
        if !pongs.is_empty() {
            w.out.extend_from_slice(&pongs);
            closed |= flush(w).is_err();
        }
        if (closed || server_closed) && self.phase != Phase::Gone {
            // The server closed us (or the connection broke) mid-game.
            rec.error(now, Kind::Read, 1);
            if self.phase == Phase::Playing {
                t.lost_bots += 1;
            }
            self.phase = Phase::Gone;
        }
    }

    /// Leaves: BYE (not subject to the simulated loss: the run is over),
    /// and a close frame over WebSocket.
    fn bye(&mut self) {
        let Some(me) = self.me else { return };
        if self.phase != Phase::Playing {
            return;
        }
        let mut msg = Vec::new();
        wire::bye(me.token, &mut msg);
        match &mut self.link {
            Link::Udp(s) => {
                let _ = s.send(&msg);
            }
            Link::Ws(w) => {
                client_frame_op(0x2, &msg, &mut w.out);
                client_frame_op(0x8, &1000u16.to_be_bytes(), &mut w.out);
                let _ = flush(w);
            }
        }
        self.phase = Phase::Gone;
    }
}

/// Writes what `w` has queued, until done or `WouldBlock`.
fn flush(w: &mut WsLink) -> io::Result<()> {
    while !w.out.is_empty() {
        match w.sock.write(&w.out) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => {
                w.out.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Opens every bot's socket: UDP bound and connected; WebSocket connected
/// (blocking, within the timeout) with its upgrade sent. A bot whose
/// connection fails is gone, a `connect` error.
fn open(spec: &Spec, plan: &Plan, poll: &Poll, rec: &mut Recorder) -> io::Result<Vec<Bot>> {
    let mut bots = Vec::with_capacity(spec.players);
    let timeout = Duration::from_nanos(plan.timeout);
    for i in 0..spec.players {
        let link = if i < spec.ws_players {
            let Some((addr, upgrade)) = &spec.ws else {
                unreachable!("ws players without --ws")
            };
            match net::connect_blocking(*addr, None, timeout) {
                Ok(sock) => {
                    sock.set_nonblocking(true)?;
                    sock.set_tcp_nodelay(true)?;
                    let mut w = WsLink {
                        sock: TcpStream::from_std(sock.into()),
                        inb: Vec::new(),
                        out: upgrade.clone(),
                        upgraded: false,
                    };
                    poll.registry().register(
                        &mut w.sock,
                        Token(i),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    flush(&mut w)?;
                    Some(Link::Ws(Box::new(w)))
                }
                Err(_) => None,
            }
        } else {
            let Some(addr) = spec.udp else {
                unreachable!("udp players without ADDR")
            };
            let any: SocketAddr = if addr.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                ([0u16; 8], 0).into()
            };
            let mut s = UdpSocket::bind(any)?;
            s.connect(addr)?;
            poll.registry()
                .register(&mut s, Token(i), Interest::READABLE)?;
            Some(Link::Udp(s))
        };
        match link {
            Some(l) => bots.push(Bot::new(l, i, spec.seed)),
            None => {
                rec.error(plan.clock.now(), Kind::Connect, 1);
                // A placeholder that never plays: a socket nobody reads.
                let s = UdpSocket::bind(([127, 0, 0, 1], 0).into())?;
                let mut b = Bot::new(Link::Udp(s), i, spec.seed);
                b.phase = Phase::Gone;
                bots.push(b);
            }
        }
    }
    Ok(bots)
}

/// Reads `/stats` (blocking, within `timeout`): its numbers.
fn fetch_stats(addr: SocketAddr, request: &[u8], timeout: Duration) -> Result<Stats, String> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("/stats at {addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(timeout));
    s.write_all(request)
        .map_err(|e| format!("/stats at {addr}: {e}"))?;
    let mut text = Vec::new();
    s.read_to_end(&mut text)
        .map_err(|e| format!("/stats at {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&text);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("/stats: no response head")?;
    if !head.starts_with("HTTP/1.1 200") {
        let line = head.lines().next().unwrap_or_default();
        return Err(format!("/stats answered {line}"));
    }
    let v: BTreeMap<String, Value> =
        serde_json::from_str(body.trim()).map_err(|e| format!("/stats is not JSON: {e}"))?;
    Ok(v.into_iter()
        .filter_map(|(k, v)| Some((k, v.as_u64()?)))
        .collect())
}

/// What the reader saw at one moment: `/stats` (with `--stats`) and the
/// server's time on and waiting for a CPU (with `--pid`), and when.
#[derive(Debug)]
struct Seen {
    /// `/stats`, or why not.
    stats: Option<Result<Stats, String>>,
    /// The `--pid` processes' (run, wait) ns, added up (`/proc/PID/schedstat`).
    sched: Option<(u64, u64)>,
    /// When (ns on the run's clock).
    at: u64,
}

/// (ns on a CPU, ns runnable but waiting for one) of `pids`' main
/// threads, added up; None if one cannot be read.
fn sched_of(pids: &[u32]) -> Option<(u64, u64)> {
    let mut sum = (0, 0);
    for pid in pids {
        let text = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
        let mut f = text.split_whitespace().map(|v| v.parse::<u64>().ok());
        sum.0 += f.next()??;
        sum.1 += f.next()??;
    }
    (!pids.is_empty()).then_some(sum)
}

/// Reads `/stats` and the server's CPU wait at `from` and at `until` (ns
/// on `clock`), on a thread of its own so the bots' loop never blocks on
/// it. None if there is nothing to read (no `--stats`, no `--pid`).
fn stats_reader(
    spec: &Spec,
    clock: run::Clock,
    from: u64,
    until: u64,
    timeout: Duration,
) -> Option<std::thread::JoinHandle<(Seen, Seen)>> {
    if spec.stats.is_none() && spec.pids.is_empty() {
        return None;
    }
    let (stats, pids) = (spec.stats.clone(), spec.pids.clone());
    let look = move |t: u64| {
        let now = clock.now();
        if t > now {
            std::thread::sleep(Duration::from_nanos(t - now));
        }
        Seen {
            sched: sched_of(&pids),
            at: clock.now(),
            stats: stats
                .as_ref()
                .map(|(addr, req)| fetch_stats(*addr, req, timeout)),
        }
    };
    std::thread::Builder::new()
        .name("bench-stats".into())
        .spawn(move || (look(from), look(until)))
        .ok()
}

/// The bots' loop.
fn run_thread(spec: &Spec, out: &Mutex<Option<Tally>>, mut plan: Plan) -> io::Result<ThreadOut> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let clock = plan.clock;
    // Setup failures count: the window is set at time zero.
    let mut rec = Recorder::new(0, u64::MAX).service_is_latency();
    let mut t = Tally {
        hz: 0,
        period_ns: 0,
        jitter: histogram(),
        gap: histogram(),
        sizes: [Sizes::default(); 2],
        expected: 0,
        received: 0,
        stale: 0,
        no_base: 0,
        dropped: [0; 2],
        datagrams: [0; 2],
        inputs: [0; 2],
        joined: [0; 2],
        refused: 0,
        failed: 0,
        lost_bots: 0,
        udp_headers: match spec.udp {
            Some(a) if a.is_ipv6() => UDP_IPV6_HEADERS,
            _ => UDP_IPV4_HEADERS,
        },
        server: None,
        server_wait: None,
    };
    let mut bots = open(spec, &plan, &poll, &mut rec)?;
    let mut sleeper = run::Sleeper::new(poll.registry(), &plan, true)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut cx = Cx {
        from: u64::MAX,
        until: u64::MAX,
        period_ns: 0,
        no_ack: spec.no_ack,
        loss: spec.loss,
    };
    // The handshakes, each bot resending until answered, all within the
    // timeout. Players already in get snapshots meanwhile (decoded, not
    // measured) but send no input before time zero.
    let began = clock.now();
    loop {
        let now = clock.now();
        if !bots.iter().any(Bot::handshaking) {
            break;
        }
        if now >= began + plan.timeout {
            for b in bots.iter_mut().filter(|b| b.handshaking()) {
                rec.error(now, Kind::Timeout, 1);
                b.phase = Phase::Gone;
            }
            break;
        }
        let mut wake = began + plan.timeout;
        for b in bots.iter_mut().filter(|b| b.handshaking()) {
            if matches!(b.link, Link::Udp(_)) {
                if now >= b.asked_at + RESEND_NS {
                    b.ask(now, &cx, &mut rec, &mut t);
                }
                wake = wake.min(b.asked_at + RESEND_NS);
            }
        }
        sleeper.wait(&mut poll, &mut events, &clock, wake)?;
        for ev in events.iter().filter(|e| e.token() != run::ALARM) {
            bots[ev.token().0].ready(&mut buf, &clock, &cx, &mut rec, &mut t);
        }
    }
    // Never in: no connection, no WELCOME in time, a refused upgrade (the
    // refused are counted apart).
    let outside = bots.iter().filter(|b| b.me.is_none()).count() as u64;
    t.failed = outside.saturating_sub(t.refused);
    let hz = bots.iter().find_map(|b| b.me.map(|w| u32::from(w.hz)));
    let zero = plan.start();
    rec.set_window(plan.from, plan.until);
    sleeper.count_from(plan.from);
    cx.from = plan.from;
    cx.until = plan.until;
    let stats = stats_reader(
        spec,
        clock,
        plan.from,
        plan.until,
        Duration::from_nanos(plan.timeout),
    );
    let playing: Vec<bool> = bots.iter().map(|b| b.phase == Phase::Playing).collect();
    for b in bots.iter().filter(|b| b.phase == Phase::Playing) {
        t.joined[usize::from(matches!(b.link, Link::Ws(_)))] += 1;
    }
    let hz = hz.unwrap_or(0);
    t.hz = hz;
    t.period_ns = if hz > 0 {
        1_000_000 / u64::from(hz) * 1000
    } else {
        0
    };
    cx.period_ns = t.period_ns;
    // One schedule for every bot's inputs: the k-th is bot k mod N's.
    let n = bots.len();
    let mut sched = Schedule::new(zero, (n as u64 * u64::from(hz)).max(1) as f64, false, 0);
    let mut slot = 0usize;
    let (mut next_tick, mut stop_at, mut cpu_from) = (plan.first_tick(), u64::MAX, None);
    loop {
        let now = clock.now();
        if cpu_from.is_none() && now >= plan.from {
            cpu_from = Some(super::procstat::thread_sched());
        }
        if stop_at == u64::MAX && (now >= plan.until || hz == 0) {
            stop_at = now;
        }
        if stop_at != u64::MAX && now >= stop_at + DRAIN_NS.min(plan.timeout) {
            break;
        }
        while now >= next_tick {
            let _ = plan.ticks.send((plan.thread, rec.take_tick(1_000_000_000)));
            next_tick += 1_000_000_000;
        }
        while stop_at == u64::MAX && sched.peek() <= now {
            let intended = sched.peek();
            sched.advance();
            rec.lagged(now, intended);
            let b = &mut bots[slot % n];
            slot += 1;
            if b.phase == Phase::Playing {
                b.input(now, &cx, &mut rec, &mut t);
            }
        }
        let wake = if stop_at == u64::MAX {
            sched.peek().min(plan.until)
        } else {
            stop_at + DRAIN_NS.min(plan.timeout)
        };
        sleeper.wait(&mut poll, &mut events, &clock, wake.min(next_tick))?;
        for ev in events.iter().filter(|e| e.token() != run::ALARM) {
            bots[ev.token().0].ready(&mut buf, &clock, &cx, &mut rec, &mut t);
        }
    }
    let end = clock.now();
    for (b, &was) in bots.iter().zip(&playing) {
        let (first, last, got) = b.span;
        if was && got > 0 {
            t.expected += u64::from(last - first) + 1;
            t.received += got;
        }
    }
    // Replies that reached our sockets but found their receive buffers
    // full were lost here, not by the server: say so.
    let ports: Vec<u16> = bots
        .iter()
        .filter_map(|b| match &b.link {
            Link::Udp(s) => s.local_addr().ok().map(|a| a.port()),
            Link::Ws(_) => None,
        })
        .collect();
    rec.count(end, "generator_dropped", super::udp::socket_drops(&ports));
    for b in &mut bots {
        b.bye();
    }
    if let Some(h) = stats {
        match h.join() {
            Ok((a, b)) => {
                t.server = match (a.stats, b.stats) {
                    (Some(Ok(a)), Some(Ok(b))) => Some(Ok((a, b))),
                    (Some(Err(e)), _) | (_, Some(Err(e))) => Some(Err(e)),
                    _ => None,
                };
                if let (Some(x), Some(y)) = (a.sched, b.sched) {
                    let span = b.at.saturating_sub(a.at).max(1) as f64;
                    t.server_wait = Some(y.1.saturating_sub(x.1) as f64 / span);
                }
            }
            Err(_) => t.server = Some(Err("the /stats reader panicked".into())),
        }
    }
    *out.lock().unwrap_or_else(|p| p.into_inner()) = Some(t);
    plan.last_tick(&mut rec, end);
    Ok(ThreadOut::new(rec, cpu_from, &sleeper, stop_at, end))
}

/// A signed nanosecond figure (a quantile less the period).
fn fmt_signed(ns: i64) -> String {
    if ns < 0 {
        format!("-{}", fmt_ns(ns.unsigned_abs()))
    } else {
        fmt_ns(ns as u64)
    }
}

/// Of the server's tick jitter thresholds, the smallest that at most
/// `share` of the ticks were over (None: more were over the largest).
fn bound(over: &[(u64, u64)], intervals: u64, share: f64) -> Option<u64> {
    over.iter()
        .find(|(_, n)| *n as f64 <= share * intervals as f64)
        .map(|(us, _)| *us)
}

/// The game's block of the summary and of the JSON, and its verdicts.
fn figures(r: &mut Report, spec: &Spec, t: &Tally) {
    use std::fmt::Write as _;
    let (down, up) = (r.m.rec.bytes_in as f64, r.m.rec.bytes_out as f64);
    let lag = &r.m.rec.lag;
    let lag_p99 = if lag.is_empty() {
        0
    } else {
        lag.value_at_quantile(0.99)
    };
    let window = r.m.window_s.max(1e-9);
    let players = (t.joined[0] + t.joined[1]).max(1);
    let period = t.period_ns as i64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Game: {} players in ({} UDP, {} WebSocket), {} refused, {} never in, {} lost during the run; {} Hz; {}",
        t.joined[0] + t.joined[1],
        t.joined[0],
        t.joined[1],
        t.refused,
        t.failed,
        t.lost_bots,
        t.hz,
        if spec.no_ack {
            "--no-ack: no snapshot acknowledged, so every one is full"
        } else {
            "snapshots acknowledged, so deltas"
        }
    );
    let _ = writeln!(
        s,
        "  (the requests above are inputs: latency runs from an input's send to the first snapshot acknowledging it)"
    );
    let lost = t.expected.saturating_sub(t.received);
    let by_clock = (window * f64::from(t.hz) * players as f64).round() as u64;
    let _ = writeln!(
        s,
        "  snapshots: {} taken of {} their tick numbers span ({} lost, {:.2}%; {} the clock says), {} stale, {} undecodable",
        t.received,
        t.expected,
        lost,
        100.0 * lost as f64 / t.expected.max(1) as f64,
        by_clock,
        t.stale,
        t.no_base
    );
    let [d, f] = t.sizes;
    let _ = writeln!(
        s,
        "  snapshot size: deltas {} (mean {:.0} B, max {} B), full {} (mean {:.0} B, max {} B)",
        d.n,
        d.mean(),
        d.max,
        f.n,
        f.mean(),
        f.max
    );
    let _ = writeln!(
        s,
        "  tick jitter at the bots, |inter-arrival - ticks x period|: p50 {}, p99 {}, max {} ({} intervals)",
        fmt_ns(quantile(&t.jitter, 0.5)),
        fmt_ns(quantile(&t.jitter, 0.99)),
        fmt_ns(t.jitter.max()),
        t.jitter.len()
    );
    if !t.gap.is_empty() {
        let signed = |p: f64| fmt_signed(quantile(&t.gap, p) as i64 - period);
        let _ = writeln!(
            s,
            "  inter-arrival - period: min {}, p50 {}, p99 {}, max {}",
            fmt_signed(t.gap.min() as i64 - period),
            signed(0.5),
            signed(0.99),
            signed(1.0)
        );
    }
    let per = |bytes: f64| fmt_bytes(bytes / window / players as f64);
    let wire_down = down + (t.datagrams[0] * t.udp_headers) as f64;
    let wire_up = up + (t.datagrams[1] * t.udp_headers) as f64;
    let headers = if t.joined[0] > 0 && t.joined[1] == 0 {
        format!(
            "; with IP and UDP headers {}/s and {}/s",
            per(wire_down),
            per(wire_up)
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        s,
        "  per player: down {}/s, up {}/s of messages{}{headers}",
        per(down),
        per(up),
        if t.joined[1] > 0 {
            " (WebSocket: with their frame headers)"
        } else {
            ""
        }
    );
    if spec.loss > 0.0 {
        let _ = writeln!(
            s,
            "  simulated loss {:.1}%: dropped {} of {} datagrams arriving, {} of {} leaving",
            spec.loss * 100.0,
            t.dropped[0],
            t.dropped[0] + t.datagrams[0],
            t.dropped[1],
            t.dropped[1] + t.datagrams[1]
        );
    }
    let _ = writeln!(
        s,
        "  inputs: {} sent, {} acknowledged",
        t.inputs[0], t.inputs[1]
    );
    let mut server = Value::Null;
    let stat_ticks = match &t.server {
        Some(Ok((a, b))) => {
            let d = |k: &str| {
                let at = |m: &Stats| m.get(k).copied().unwrap_or(0);
                at(b).saturating_sub(at(a))
            };
            let g = |k: &str| b.get(k).copied().unwrap_or(0);
            let intervals = d("game_tick_intervals");
            let over: Vec<(u64, u64)> = [
                (250, "game_tick_jitter_over_250us"),
                (500, "game_tick_jitter_over_500us"),
                (1000, "game_tick_jitter_over_1ms"),
                (2000, "game_tick_jitter_over_2ms"),
                (5000, "game_tick_jitter_over_5ms"),
            ]
            .iter()
            .map(|(us, k)| (*us, d(k)))
            .collect();
            let has_jitter = b.contains_key("game_tick_intervals");
            let p99 = bound(&over, intervals, 0.01);
            let p50 = bound(&over, intervals, 0.5);
            let le = |b: Option<u64>| match b {
                Some(us) => format!("<= {}", fmt_ns(us * 1000)),
                None => "> 5ms".into(),
            };
            let shares: Vec<String> = over
                .iter()
                .map(|(us, n)| {
                    format!(
                        "{} {n} ({:.2}%)",
                        fmt_ns(us * 1000),
                        100.0 * *n as f64 / intervals.max(1) as f64
                    )
                })
                .collect();
            let _ = writeln!(
                s,
                "  server, /stats over the window: {} ticks, {} skipped, {} overran their period; snapshots {} sent ({} full), {} dropped",
                d("game_ticks"),
                d("game_missed_ticks"),
                d("game_tick_overruns"),
                d("game_snapshots"),
                d("game_full_snapshots"),
                d("game_snapshots_dropped"),
            );
            if has_jitter {
                let _ = writeln!(
                    s,
                    "  server tick jitter (its OS clock, tick start to tick start): p50 {}, p99 {}; over {}; max since start {}; longest tick's work since start {}",
                    le(p50),
                    le(p99),
                    shares.join(", "),
                    fmt_ns(g("game_tick_jitter_max_us") * 1000),
                    fmt_ns(g("game_tick_max_us") * 1000),
                );
            } else {
                let _ = writeln!(
                    s,
                    "  server: its /stats has no tick jitter (an older server)"
                );
            }
            server = json!({
                "ticks": d("game_ticks"), "missed_ticks": d("game_missed_ticks"),
                "tick_overruns": d("game_tick_overruns"), "tick_intervals": intervals,
                "tick_jitter_over_us": over.iter().map(|(us, n)| json!({"us": us, "ticks": n})).collect::<Vec<_>>(),
                "tick_jitter_p50_le_us": p50, "tick_jitter_p99_le_us": p99,
                "tick_jitter_max_us_since_start": g("game_tick_jitter_max_us"),
                "tick_max_us_since_start": g("game_tick_max_us"),
                "snapshots": d("game_snapshots"), "full_snapshots": d("game_full_snapshots"),
                "snapshot_bytes": d("game_snapshot_bytes"),
                "snapshots_dropped": d("game_snapshots_dropped"),
                "players_at_end": g("game_players"),
            });
            if d("game_missed_ticks") > 0 || d("game_tick_overruns") > 0 {
                r.notes.push(format!(
                    "the server skipped {} ticks and {} overran their period",
                    d("game_missed_ticks"),
                    d("game_tick_overruns")
                ));
            }
            Some(d("game_ticks"))
        }
        Some(Err(e)) => {
            r.notes.push(format!("--stats: {e}"));
            None
        }
        None => None,
    };
    let mut cpu = Value::Null;
    if let Some((a, b)) = r.m.server {
        let cpu_s = (b.cpu_s - a.cpu_s).max(0.0);
        let ticks = stat_ticks
            .filter(|&n| n > 0)
            .map_or(r.m.server_window_s * f64::from(t.hz), |n| n as f64)
            .max(1.0);
        let per_tick = cpu_s / ticks;
        let _ = writeln!(
            s,
            "  server CPU (all its work: inputs, ticks, snapshots): {cpu_s:.2} CPU-s, {} per tick, {} per player per tick ({} ticks{}; /proc counts in 10 ms)",
            fmt_ns((per_tick * 1e9) as u64),
            fmt_ns((per_tick / players as f64 * 1e9) as u64),
            ticks,
            if stat_ticks.is_some() {
                ", from /stats"
            } else {
                " by the clock"
            }
        );
        cpu = json!({ "cpu_s": cpu_s, "per_tick_us": per_tick * 1e6,
            "per_player_tick_us": per_tick * 1e6 / players as f64,
            "wait_for_cpu": t.server_wait });
    }
    if let Some(w) = t.server_wait {
        let _ = writeln!(
            s,
            "  server waited for a CPU {:.1}% of the window (runnable, another task on its core)",
            w * 100.0
        );
        if w >= SERVER_WAIT_NOTE {
            r.notes.push(format!(
                "the server waited for a CPU {:.1}% of the window: its core was shared, and its tick jitter is partly the machine's",
                w * 100.0
            ));
        }
    }
    let q = |h: &Histogram<u64>, p: f64| quantile(h, p) as f64 / 1e3;
    let json = json!({
        "hz": t.hz, "period_us": t.period_ns as f64 / 1e3,
        "players": { "udp": t.joined[0], "ws": t.joined[1], "refused": t.refused,
            "never_in": t.failed, "lost_during_run": t.lost_bots },
        "no_ack": spec.no_ack, "loss": spec.loss,
        "snapshots": { "expected_by_tick": t.expected, "received": t.received, "lost": lost,
            "expected_by_clock": by_clock, "stale": t.stale, "undecodable": t.no_base,
            "delta": { "count": d.n, "mean_bytes": d.mean(), "max_bytes": d.max },
            "full": { "count": f.n, "mean_bytes": f.mean(), "max_bytes": f.max } },
        "jitter_us": { "p50": q(&t.jitter, 0.5), "p99": q(&t.jitter, 0.99),
            "max": q(&t.jitter, 1.0), "count": t.jitter.len() },
        "interarrival_minus_period_us": if t.gap.is_empty() { Value::Null } else { json!({
            "min": (t.gap.min() as i64 - period) as f64 / 1e3,
            "p50": (quantile(&t.gap, 0.5) as i64 - period) as f64 / 1e3,
            "p99": (quantile(&t.gap, 0.99) as i64 - period) as f64 / 1e3,
            "max": (t.gap.max() as i64 - period) as f64 / 1e3 }) },
        "per_player_bytes_per_sec": { "down": down / window / players as f64,
            "up": up / window / players as f64,
            "down_wire": wire_down / window / players as f64,
            "up_wire": wire_up / window / players as f64 },
        "datagrams": { "received": t.datagrams[0], "sent": t.datagrams[1],
            "dropped_in": t.dropped[0], "dropped_out": t.dropped[1] },
        "inputs": { "sent": t.inputs[0], "acknowledged": t.inputs[1] },
        "histograms": { "jitter": super::hist::encode(&t.jitter),
            "interarrival": super::hist::encode(&t.gap) },
        "server": server, "server_cpu": cpu,
    });
    if t.joined[0] + t.joined[1] == 0 {
        r.invalid.push("no player got into the arena".into());
    }
    if t.refused > 0 {
        r.notes.push(format!(
            "{} players were refused: the arena was full (the server's --game-max-players)",
            t.refused
        ));
    }
    if t.no_base > 0 {
        r.notes.push(format!(
            "{} snapshots were deltas against a tick the bot did not have",
            t.no_base
        ));
    }
    if lag_p99 > LAG_LIMIT_NS {
        r.invalid.push(format!(
            "the bots sent their inputs late: p99 lag {} (limit {})",
            fmt_ns(lag_p99),
            fmt_ns(LAG_LIMIT_NS)
        ));
    }
    r.figures = Some((s, json));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loss_is_seeded_and_near_its_rate() {
        let mut a = Rng::new(7, 3, 1);
        let mut b = Rng::new(7, 3, 1);
        let draws: Vec<bool> = (0..10_000).map(|_| a.chance(0.1)).collect();
        assert!(
            draws.iter().all(|&d| d == b.chance(0.1)),
            "same seed, same drops"
        );
        let n = draws.iter().filter(|&&d| d).count();
        assert!((800..1200).contains(&n), "{n} of 10000 at 10%");
        let (mut c, mut d) = (Rng::new(7, 4, 1), Rng::new(7, 3, 2));
        assert_ne!(
            c.next(),
            Rng::new(7, 3, 1).next(),
            "another bot, another stream"
        );
        assert_ne!(
            d.next(),
            Rng::new(7, 3, 1).next(),
            "another direction, another stream"
        );
        assert!(!Rng::new(1, 0, 0).chance(0.0));
        assert!(Rng::new(1, 0, 0).chance(1.0));
    }

    #[test]
    fn server_frames_are_found_whole() {
        assert_eq!(server_frame(&[0x82, 2, 9, 9]), Some((2, 2..4)));
        assert_eq!(server_frame(&[0x82, 3, 9, 9]), None);
        let mut long = vec![0x82, 126, 0, 200];
        long.resize(204, 0);
        assert_eq!(server_frame(&long), Some((2, 4..204)));
        assert_eq!(server_frame(&[0x82]), None);
    }

    #[test]
    fn jitter_bounds_from_the_servers_counts() {
        let over = [(250, 40), (500, 9), (1000, 0), (2000, 0), (5000, 0)];
        assert_eq!(bound(&over, 1000, 0.01), Some(500));
        assert_eq!(bound(&over, 1000, 0.5), Some(250));
        assert_eq!(bound(&[(5000, 50)], 1000, 0.01), None);
    }
}
