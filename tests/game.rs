//! The game against the real binary: the UDP handshake and its
//! amplification bound, garbage and spoofing counted, a silent player
//! dropped, a WebSocket player and a UDP player seeing each other move,
//! and the Python client playing.

mod util;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use reactor::service::game::wire::{self, Ent, button};
use util::server::{Server, serial};
use util::ws::{Ws, frame};
use util::*;

/// A UDP player: its socket, its WELCOME, the snapshots it decoded.
struct Player {
    sock: UdpSocket,
    me: wire::Welcome,
    ring: Vec<(u32, Vec<Ent>)>,
    seq: u32,
}

fn udp(server: SocketAddr) -> UdpSocket {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    sock.connect(server).unwrap();
    sock
}

/// Sends `msg` until an answer comes (UDP may drop); the answer.
fn ask(sock: &UdpSocket, msg: &[u8]) -> Vec<u8> {
    let mut buf = [0u8; 2048];
    for _ in 0..10 {
        sock.send(msg).unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            return buf[..n].to_vec();
        }
    }
    panic!("no answer to {msg:?}");
}

impl Player {
    fn join(server: SocketAddr) -> Player {
        let sock = udp(server);
        let mut hello = Vec::new();
        wire::hello(&mut hello);
        let cookie = ask(&sock, &hello);
        assert_eq!(cookie[0], wire::COOKIE);
        assert!(cookie.len() <= hello.len(), "the cookie outgrew the hello");
        let mut join = Vec::new();
        wire::join(
            u64::from_le_bytes(cookie[2..10].try_into().unwrap()),
            &mut join,
        );
        let me = wire::parse_welcome(&ask(&sock, &join)).expect("WELCOME");
        Player {
            sock,
            me,
            ring: Vec::new(),
            seq: 0,
        }
    }

    fn latest(&self) -> u32 {
        self.ring.last().map_or(0, |(t, _)| *t)
    }

    /// Presses `b` for one input, then reads snapshots until one newer
    /// than what it had; the world it shows.
    fn play(&mut self, b: u8) -> Vec<Ent> {
        self.seq += 1;
        let mut out = Vec::new();
        wire::input(self.me.token, self.latest(), self.seq, &[b], &mut out);
        self.sock.send(&out).unwrap();
        let mut buf = [0u8; 2048];
        loop {
            let n = self.sock.recv(&mut buf).expect("a snapshot within 500 ms");
            let ring = &self.ring;
            let Ok((h, ents)) = wire::parse_snapshot(&buf[..n], |t| {
                ring.iter().find(|(k, _)| *k == t).map(|(_, e)| &e[..])
            }) else {
                continue;
            };
            if h.tick > self.latest() {
                self.ring.push((h.tick, ents.clone()));
                if self.ring.len() > 32 {
                    self.ring.remove(0);
                }
                return ents;
            }
        }
    }
}

fn game_server(extra: &[&str]) -> (Server, SocketAddr) {
    let mut args = vec!["--game", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let srv = Server::start(&args);
    let addr = srv.addr("game");
    (srv, addr)
}

/// Waits until `/stats` satisfies `cond`; the figures.
fn wait_stats(
    srv: &Server,
    what: &str,
    cond: impl Fn(&std::collections::HashMap<String, u64>) -> bool,
) -> std::collections::HashMap<String, u64> {
    let mut last = Default::default();
    let ok = wait_until(TIMEOUT, || {
        last = srv.stats();
        cond(&last)
    });
    assert!(ok, "{what}: {last:?}");
    last
}

/// Promise: before an address is proved, nothing it sends is answered
/// with more bytes than it sent; garbage and spoofed datagrams are
/// ignored and counted; a good cookie joins.
#[test]
fn the_udp_handshake_never_amplifies() {
    let _g = serial();
    let (srv, addr) = game_server(&[]);
    let sock = udp(addr);
    let mut rng = Rng::new(20);
    let (mut sent, mut answered) = (0usize, 0usize);
    let mut buf = [0u8; 2048];
    // Garbage of every kind, each followed by a padded HELLO: the first
    // answer after it is the HELLO's cookie (nothing answers garbage).
    let mut hello = Vec::new();
    wire::hello(&mut hello);
    for i in 0..40 {
        let len = rng.range(0, 300);
        let mut junk = rng.bytes(len);
        if let Some(b) = junk.first_mut() {
            *b = [wire::HELLO, wire::JOIN, wire::INPUT, wire::BYE][i % 4];
        }
        sock.send(&junk).unwrap();
        sent += junk.len();
        let reply = ask(&sock, &hello);
        sent += hello.len();
        answered += reply.len();
        assert!(reply.len() <= hello.len());
        if reply[0] != wire::COOKIE {
            // The junk happened to be a well-formed HELLO or JOIN: its own
            // answer came first, and was no bigger than it.
            assert!(reply.len() <= junk.len(), "{junk:?} got {reply:?}");
            let n = sock.recv(&mut buf).expect("the hello's cookie");
            answered += n;
        }
    }
    assert!(answered <= sent, "{answered} bytes answered to {sent}");
    // A JOIN with a forged cookie gets a fresh cookie, no bigger.
    let mut join = Vec::new();
    wire::join(0xdead_beef, &mut join);
    let reply = ask(&sock, &join);
    assert_eq!(reply[0], wire::COOKIE);
    assert!(reply.len() <= join.len());
    let s = wait_stats(&srv, "garbage counted", |s| {
        s["game_malformed"] + s["game_unknown"] + s["game_spoofed"] >= 20
            && s["game_bad_cookies"] >= 1
    });
    assert_eq!(s["game_players"], 0, "no one joined: {s:?}");
    // A player joins; INPUT with a wrong token from its address is spoofed.
    let mut p = Player::join(addr);
    let mut forged = Vec::new();
    wire::input(p.me.token ^ 0x55, 0, 1, &[button::RIGHT], &mut forged);
    p.sock.send(&forged).unwrap();
    let world = p.play(0);
    assert_eq!(world.len(), 1);
    wait_stats(&srv, "spoofed counted", |s| {
        s["game_spoofed"] >= 1 && s["game_players"] == 1
    });
    let mut bye = Vec::new();
    wire::bye(p.me.token, &mut bye);
    p.sock.send(&bye).unwrap();
    wait_stats(&srv, "bye", |s| s["game_players"] == 0);
    srv.stop("udp handshake");
}

/// Promise: a UDP player that stops sending is dropped after the timeout
/// (and the tick stops with no one playing).
#[test]
fn a_silent_udp_player_is_dropped() {
    let _g = serial();
    let (srv, addr) = game_server(&["--game-timeout", "300ms"]);
    let mut p = Player::join(addr);
    p.play(0);
    let s = wait_stats(&srv, "timed out", |s| {
        s["game_timeouts"] == 1 && s["game_players"] == 0
    });
    let ticks = s["game_ticks"];
    let s = srv.stats();
    assert!(
        s["game_ticks"] <= ticks + 1,
        "the tick stops with no players: {s:?}"
    );
    srv.stop("silent player");
}

/// The world in a WebSocket binary frame, decoded against `ring`.
fn ws_snapshot(ws: &mut Ws, ring: &mut Vec<(u32, Vec<Ent>)>) -> (u32, Vec<Ent>) {
    loop {
        let f = ws.recv();
        assert_eq!(f.opcode, 2, "binary frames only: {f:?}");
        let got = wire::parse_snapshot(&f.payload, |t| {
            ring.iter().find(|(k, _)| *k == t).map(|(_, e)| &e[..])
        });
        if let Ok((h, ents)) = got {
            ring.push((h.tick, ents.clone()));
            if ring.len() > 32 {
                ring.remove(0);
            }
            return (h.tick, ents);
        }
    }
}

/// Promise: UDP and WebSocket players share one arena: each sees the
/// other move.
#[test]
fn a_websocket_player_and_a_udp_player_see_each_other_move() {
    let _g = serial();
    let (srv, addr) = game_server(&[]);
    let http = srv.addr("http");
    let page = http_get(http, "/game");
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains("/game/ws"),
        "the page plays over /game/ws"
    );
    let mut ws = Ws::open_at(http, "/game/ws");
    let f = ws.recv();
    let me = wire::parse_welcome(&f.payload).expect("a WELCOME frame");
    assert_eq!((f.opcode, me.token, me.hz), (2, 0, 30));
    let mut p = Player::join(addr);
    assert_ne!(p.me.id, me.id);
    let mut ring = Vec::new();
    let pos = |w: &[Ent], id: u16| w.iter().find(|e| e.id == id).map(|e| (e.x, e.y));
    let (mut udp_saw, mut ws_saw) = (Vec::new(), Vec::new());
    let start = Instant::now();
    let mut seq = 0;
    // Until each has seen the other move (UDP right, WebSocket down).
    while start.elapsed() < TIMEOUT {
        seq += 1;
        let mut msg = Vec::new();
        wire::input(
            0,
            ring.last().map_or(0, |(t, _)| *t),
            seq,
            &[button::DOWN],
            &mut msg,
        );
        ws.send(&frame(true, 2, &msg, true));
        let (_, world) = ws_snapshot(&mut ws, &mut ring);
        ws_saw.extend(pos(&world, p.me.id));
        let world = p.play(button::RIGHT);
        udp_saw.extend(pos(&world, me.id));
        let moved = |v: &Vec<(u16, u16)>, x: bool| {
            v.len() > 5
                && if x {
                    v[v.len() - 1].0 > v[0].0
                } else {
                    v[v.len() - 1].1 > v[0].1
                }
        };
        if moved(&ws_saw, true) && moved(&udp_saw, false) {
            break;
        }
    }
    assert!(
        ws_saw.len() > 5 && ws_saw.last().unwrap().0 > ws_saw[0].0,
        "the page saw the UDP player go right: {ws_saw:?}"
    );
    assert!(
        udp_saw.len() > 5 && udp_saw.last().unwrap().1 > udp_saw[0].1,
        "the UDP player saw the page go down: {udp_saw:?}"
    );
    let s = srv.stats();
    assert_eq!((s["game_players"], s["game_udp_players"]), (2, 1), "{s:?}");
    assert!(
        s["game_snapshots"] > s["game_full_snapshots"],
        "deltas were sent: {s:?}"
    );
    drop(ws);
    wait_stats(&srv, "the page left", |s| s["game_players"] == 1);
    let mut bye = Vec::new();
    wire::bye(p.me.token, &mut bye);
    p.sock.send(&bye).unwrap();
    wait_stats(&srv, "all left", |s| s["game_players"] == 0);
    srv.stop("ws and udp");
}

/// Promise: the Python client joins, receives snapshots and sees itself.
#[test]
fn the_python_client_plays() {
    let _g = serial();
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("no python3: skipped");
        return;
    }
    let (srv, addr) = game_server(&[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/game_client.py");
    let out = std::process::Command::new("python3")
        .args([script, &addr.to_string(), "--seconds", "1", "--quiet"])
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = parse_summary(&text);
    assert!(summary.0 > 10, "snapshots: {text}");
    assert!(summary.1.contains(&summary.2), "it saw itself: {text}");
    wait_stats(&srv, "it left", |s| {
        s["game_players"] == 0 && s["game_joined"] == 1
    });
    srv.stop("python client");
}

/// (snapshots, players seen, own id) from the client's summary line.
fn parse_summary(text: &str) -> (u64, Vec<String>, String) {
    let line = text.lines().last().unwrap_or_default();
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .unwrap_or_default()
            .to_string()
    };
    let players = field("players=").split(',').map(str::to_string).collect();
    (
        field("snapshots=").parse().unwrap_or(0),
        players,
        field("id="),
    )
}
