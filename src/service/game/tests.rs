//! The game in memory: the handshake and its amplification bound, the
//! tokens, deltas decoded to the server's world, loss and reordering,
//! the inputs' credit, tags, timeouts, and how big a snapshot gets.

use std::net::SocketAddr;

use super::cookie::{Secret, WINDOW_MS, siphash};
use super::wire::{self, Ent, SnapError, button};
use super::*;

fn addr(n: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, (n >> 8) as u8, n as u8], 40_000 + n))
}

fn game() -> Game {
    Game::new(GameConfig::default(), Secret::new([7, 11]))
}

/// A tiny xorshift for reproducible loss and garbage.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// A UDP client as the Python one is: handshake, inputs, and a ring of
/// the snapshots it decoded (for deltas).
struct Client {
    from: SocketAddr,
    welcome: Option<wire::Welcome>,
    ring: Vec<(u32, Vec<Ent>)>,
    latest: u32,
    seq: u32,
    sent: Vec<u8>,
    no_base: u32,
}

impl Client {
    fn new(from: SocketAddr) -> Client {
        Client {
            from,
            welcome: None,
            ring: Vec::new(),
            latest: 0,
            seq: 0,
            sent: Vec::new(),
            no_base: 0,
        }
    }

    fn join(&mut self, g: &mut Game, now: Millis) {
        let mut out = Vec::new();
        let mut reply = Vec::new();
        wire::hello(&mut out);
        g.datagram(self.from, &out, now, &mut reply);
        assert_eq!(reply[0], wire::COOKIE);
        let cookie = u64::from_le_bytes(reply[2..10].try_into().unwrap());
        out.clear();
        wire::join(cookie, &mut out);
        g.datagram(self.from, &out, now, &mut reply);
        self.welcome = Some(wire::parse_welcome(&reply).expect("a WELCOME"));
    }

    fn token(&self) -> u32 {
        self.welcome.unwrap().token
    }

    /// The INPUT for pressing `b` next, carrying the last inputs too.
    fn input(&mut self, b: u8) -> Vec<u8> {
        self.seq += 1;
        self.sent.insert(0, b);
        self.sent.truncate(wire::MAX_REDUNDANT);
        let mut out = Vec::new();
        wire::input(self.token(), self.latest, self.seq, &self.sent, &mut out);
        out
    }

    fn recv(&mut self, bytes: &[u8]) -> Result<(wire::SnapHead, Vec<Ent>), SnapError> {
        let ring = &self.ring;
        let got = wire::parse_snapshot(bytes, |t| {
            ring.iter().find(|(k, _)| *k == t).map(|(_, e)| &e[..])
        });
        match &got {
            Ok((h, ents)) if h.tick > self.latest => {
                self.latest = h.tick;
                self.ring.push((h.tick, ents.clone()));
                if self.ring.len() > RING {
                    self.ring.remove(0);
                }
            }
            Err(SnapError::NoBase(_)) => self.no_base += 1,
            _ => {}
        }
        got
    }
}

/// Steps `g` and returns each player's snapshot by where it goes.
fn tick(g: &mut Game, now: Millis) -> Vec<(Via, Vec<u8>)> {
    g.step(now, 0);
    let mut v = Vec::new();
    g.snapshots(|via, b| {
        v.push((*via, b.to_vec()));
        true
    });
    v
}

fn snap_for(snaps: &[(Via, Vec<u8>)], to: SocketAddr) -> &[u8] {
    &snaps.iter().find(|(v, _)| *v == Via::Udp(to)).unwrap().1
}

#[test]
fn siphash_matches_the_reference_vectors() {
    // The paper's key 00..0f; messages 00.. of lengths 0 and 15.
    let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
    let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
    assert_eq!(siphash(k0, k1, &[]), 0x726f_db47_dd0e_0e31);
    let m: Vec<u8> = (0..15).collect();
    assert_eq!(siphash(k0, k1, &m), 0xa129_ca61_49be_45e5);
}

#[test]
fn a_cookie_proves_the_address_and_expires() {
    let s = Secret::new([1, 2]);
    let (a, b) = (addr(1), addr(2));
    let c = s.cookie(a, 5_000);
    assert!(s.check(a, c, 5_000));
    assert!(s.check(a, c, WINDOW_MS + 9_999), "good in the next window");
    assert!(!s.check(a, c, 2 * WINDOW_MS), "stale two windows on");
    assert!(!s.check(b, c, 5_000), "another address's");
    assert!(!Secret::new([1, 3]).check(a, c, 5_000), "another server's");
}

#[test]
fn the_handshake_joins_and_no_answer_outgrows_its_question() {
    let mut g = game();
    let mut reply = Vec::new();
    // Unpadded HELLO: malformed, not answered.
    g.datagram(addr(1), &[wire::HELLO, wire::VERSION], 0, &mut reply);
    assert!(reply.is_empty());
    assert_eq!(g.stats.malformed, 1);
    // A JOIN with a made-up cookie: a fresh cookie, no player.
    let mut join = Vec::new();
    wire::join(12345, &mut join);
    g.datagram(addr(1), &join, 0, &mut reply);
    assert_eq!(
        (reply[0], g.stats.bad_cookies, g.len()),
        (wire::COOKIE, 1, 0)
    );
    assert!(reply.len() <= join.len());
    // The real thing.
    let mut c = Client::new(addr(1));
    c.join(&mut g, 0);
    assert_eq!(g.len(), 1);
    assert_ne!(c.token(), 0);
    // Its WELCOME lost, it joins again: the same player.
    let first = c.welcome;
    c.join(&mut g, 100);
    assert_eq!((c.welcome, g.len()), (first, 1));
    // Garbage from strangers never gets more back than it brought.
    let mut rng = Rng(99);
    for i in 0..5_000u32 {
        let len = (rng.next() % 64) as usize;
        let mut d: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if let Some(first) = d.first_mut() {
            *first = [wire::HELLO, wire::JOIN, wire::INPUT, wire::BYE, 0x10][i as usize % 5];
        }
        if d.len() > 1 && i % 3 == 0 {
            d[1] = wire::VERSION;
        }
        g.datagram(addr(1000 + (i % 50) as u16), &d, 0, &mut reply);
        assert!(
            reply.len() <= d.len(),
            "{} bytes answered with {}",
            d.len(),
            reply.len()
        );
    }
    assert_eq!(g.len(), 1, "no stranger joined");
    assert!(
        g.stats.malformed > 1000 && g.stats.unknown > 0,
        "{:?}",
        g.stats
    );
}

#[test]
fn a_wrong_token_moves_no_one() {
    let mut g = game();
    let mut c = Client::new(addr(1));
    c.join(&mut g, 0);
    let mut reply = Vec::new();
    let mut forged = Vec::new();
    wire::input(c.token() ^ 1, 0, 1, &[button::RIGHT], &mut forged);
    g.datagram(addr(1), &forged, 0, &mut reply);
    g.datagram(addr(2), &forged, 0, &mut reply);
    let before = g.players[0].x;
    tick(&mut g, 33);
    assert_eq!(g.players[0].x, before);
    assert_eq!((g.stats.spoofed, g.stats.unknown), (1, 1));
    let bye = {
        let mut b = Vec::new();
        wire::bye(c.token() ^ 1, &mut b);
        b
    };
    g.datagram(addr(1), &bye, 0, &mut reply);
    assert_eq!(g.len(), 1);
    let real = c.input(button::RIGHT);
    g.datagram(addr(1), &real, 0, &mut reply);
    tick(&mut g, 66);
    assert_eq!(g.players[0].x, before + g.step_len());
}

#[test]
fn deltas_against_the_acked_tick_decode_to_the_world() {
    let mut g = game();
    let mut a = Client::new(addr(1));
    let mut b = Client::new(addr(2));
    a.join(&mut g, 0);
    b.join(&mut g, 0);
    let mut reply = Vec::new();
    let mut now = 0;
    let mut full = 0;
    for t in 0..60 {
        now += 33;
        let inp = a.input(if t % 20 < 10 {
            button::RIGHT
        } else {
            button::DOWN
        });
        g.datagram(a.from, &inp, now, &mut reply);
        let inp = b.input(0);
        g.datagram(b.from, &inp, now, &mut reply);
        let snaps = tick(&mut g, now);
        for c in [&mut a, &mut b] {
            let bytes = snap_for(&snaps, c.from).to_vec();
            let (h, ents) = c.recv(&bytes).expect("decodes");
            assert_eq!(ents, g.world(), "tick {}", h.tick);
            if h.base == 0 {
                full += 1;
            }
        }
    }
    // Only the first snapshot of each is full: the others are deltas, and
    // the idle player's entity costs nothing in them.
    assert_eq!(full, 2);
    let last = snap_for(&tick(&mut g, now + 33), a.from).len();
    assert!(last < wire::SNAPSHOT_HEAD + 2 * wire::FULL_ENTITY, "{last}");
}

#[test]
fn loss_and_reordering_are_survived_without_retransmission() {
    let mut g = game();
    let mut c = Client::new(addr(1));
    let mut other = Client::new(addr(2));
    c.join(&mut g, 0);
    other.join(&mut g, 0);
    let spawn = (g.players[0].x, g.players[0].y);
    let mut rng = Rng(12345);
    let mut reply = Vec::new();
    let mut late: Option<Vec<u8>> = None;
    let (mut now, mut decoded, mut lost) = (0, 0, 0);
    let mut pressed = Vec::new();
    for t in 0..600 {
        now += 33;
        let b = [button::RIGHT, button::LEFT, button::DOWN, button::UP][t / 37 % 4];
        pressed.push(b);
        let inp = c.input(b);
        // A third of the inputs lost (never two in eight: redundancy
        // covers that), some delivered a tick late, after a newer one.
        if rng.chance(30) {
        } else if rng.chance(10) {
            if let Some(old) = late.replace(inp) {
                g.datagram(c.from, &old, now, &mut reply);
            }
        } else {
            g.datagram(c.from, &inp, now, &mut reply);
            if let Some(old) = late.take() {
                g.datagram(c.from, &old, now, &mut reply);
            }
        }
        let inp = other.input(button::LEFT);
        g.datagram(other.from, &inp, now, &mut reply);
        let snaps = tick(&mut g, now);
        // A third of the snapshots lost.
        if rng.chance(33) {
            lost += 1;
            continue;
        }
        let (_, ents) = c
            .recv(snap_for(&snaps, c.from))
            .expect("every delivered snapshot decodes");
        assert_eq!(ents, g.world());
        decoded += 1;
    }
    assert!(
        lost > 150 && decoded > 350,
        "lost {lost}, decoded {decoded}"
    );
    assert_eq!(
        c.no_base, 0,
        "a delta is always against a tick the client has"
    );
    // With every input delivered at last, the server applied each once:
    // the client's own replay of them lands where the server put it.
    let last = c.input(0);
    for _ in 0..4 {
        g.datagram(c.from, &last, now, &mut reply);
        now += 33;
        tick(&mut g, now);
    }
    let p = &g.players[0];
    assert_eq!(p.applied_seq, c.seq);
    let (mut x, mut y) = spawn;
    for b in pressed {
        (x, y) = moved(x, y, b, g.step_len());
    }
    assert_eq!((p.x, p.y), (x, y), "{:?}", g.stats);
    assert!(g.stats.stale_inputs > 0);
}

#[test]
fn sending_more_inputs_does_not_move_faster() {
    let mut g = game();
    let mut c = Client::new(addr(1));
    c.join(&mut g, 0);
    let mut reply = Vec::new();
    let x0 = g.players[0].x;
    for t in 0..20 {
        for _ in 0..3 {
            let inp = c.input(button::RIGHT);
            g.datagram(c.from, &inp, 0, &mut reply);
        }
        tick(&mut g, t);
    }
    let moved_by = g.players[0].x - x0;
    assert!(
        moved_by <= (20 + i32::from(CREDIT_MAX)) * g.step_len(),
        "{moved_by}"
    );
    assert!(g.stats.overflowed_inputs > 0);
}

#[test]
fn it_tags_and_the_tagged_is_frozen() {
    let mut g = game();
    let mut a = Client::new(addr(1));
    let mut b = Client::new(addr(2));
    a.join(&mut g, 0);
    b.join(&mut g, 0);
    tick(&mut g, 0);
    assert!(
        g.players[0].it && !g.players[1].it,
        "the first to come is it"
    );
    // Put them next to each other.
    g.players[1].x = g.players[0].x + 10 * 16;
    g.players[1].y = g.players[0].y;
    let snaps = tick(&mut g, 33);
    assert!(!g.players[0].it && g.players[1].it);
    assert_eq!(g.players[0].score, 1);
    let (_, ents) = a.recv(snap_for(&snaps, a.from)).unwrap();
    assert_eq!(ents[1].flags, wire::flag::IT | wire::flag::FROZEN);
    // Frozen: its inputs are taken but it does not move.
    let x = g.players[1].x;
    let inp = b.input(button::RIGHT);
    let mut reply = Vec::new();
    g.datagram(b.from, &inp, 66, &mut reply);
    tick(&mut g, 66);
    assert_eq!(g.players[1].x, x);
    assert_eq!(g.players[1].applied_seq, 1);
}

#[test]
fn silent_udp_players_are_dropped_and_a_full_arena_refuses() {
    let cfg = GameConfig {
        max_players: 2,
        timeout: 1_000,
        ..GameConfig::default()
    };
    let mut g = Game::new(cfg, Secret::new([3, 4]));
    let mut a = Client::new(addr(1));
    let mut b = Client::new(addr(2));
    a.join(&mut g, 0);
    let mut out = Vec::new();
    assert!(g.ws_join(9, 0, &mut out).is_some());
    let mut reply = Vec::new();
    let mut hello = Vec::new();
    wire::hello(&mut hello);
    g.datagram(b.from, &hello, 0, &mut reply);
    let cookie = u64::from_le_bytes(reply[2..10].try_into().unwrap());
    let mut join = Vec::new();
    wire::join(cookie, &mut join);
    g.datagram(b.from, &join, 0, &mut reply);
    assert_eq!(reply, [wire::REJECT, wire::reason::FULL]);
    assert_eq!(g.stats.refused, 1);
    tick(&mut g, 1_000);
    assert_eq!(g.len(), 2);
    tick(&mut g, 1_001);
    assert_eq!((g.len(), g.stats.timeouts), (1, 1), "the UDP one went");
    assert_eq!(g.stats.udp_players, 0);
    b.join(&mut g, 1_002);
    assert_eq!(g.len(), 2);
}

/// The figure for docs/GAME.md: 100 players, all moving every tick.
#[test]
fn a_snapshot_of_100_moving_players_fits_one_datagram() {
    let mut g = game();
    let mut clients: Vec<Client> = (0..100).map(|i| Client::new(addr(i))).collect();
    for c in &mut clients {
        c.join(&mut g, 0);
    }
    let mut reply = Vec::new();
    let (mut full, mut delta) = (0, 0);
    for t in 1..=40u64 {
        for (i, c) in clients.iter_mut().enumerate() {
            let b =
                [button::RIGHT, button::DOWN | button::LEFT, button::UP][(i + t as usize / 10) % 3];
            let inp = c.input(b);
            g.datagram(c.from, &inp, t * 33, &mut reply);
        }
        let snaps = tick(&mut g, t * 33);
        for (c, (_, bytes)) in clients.iter_mut().zip(&snaps) {
            assert!(bytes.len() <= wire::MTU_BUDGET);
            let (h, ents) = c.recv(bytes).unwrap();
            assert_eq!(ents.len(), 100);
            if h.base == 0 {
                full = full.max(bytes.len());
            } else {
                delta = delta.max(bytes.len());
            }
        }
    }
    eprintln!("100 players in view: full snapshot {full} bytes, delta {delta} bytes");
    assert_eq!(full, wire::SNAPSHOT_HEAD + 100 * wire::FULL_ENTITY);
    assert!(delta < full, "delta {delta}, full {full}");
    // At 128 players, the cap, a full snapshot still fits.
    const { assert!(wire::SNAPSHOT_HEAD + MAX_PLAYERS * wire::FULL_ENTITY <= wire::MTU_BUDGET) };
}

#[test]
fn the_same_base_is_encoded_once_and_a_bigger_delta_becomes_full() {
    let mut now = Vec::new();
    let base: Vec<Ent> = (1..=3)
        .map(|id| Ent {
            id,
            x: 100,
            y: 100,
            flags: 0,
            score: 0,
        })
        .collect();
    now.extend(base.iter().map(|e| Ent {
        x: e.x + 1000,
        ..*e
    }));
    let mut out = Vec::new();
    let counts = wire::delta_body(&base, &now, &mut out).unwrap();
    assert_eq!(counts, (0, 3));
    // Far moves cost id + mask + x + y = 7 bytes, under a full entity's 9.
    assert_eq!(out.len(), 3 * 7);
    // A player gone and one new.
    now.remove(0);
    now.push(Ent {
        id: 9,
        x: 5,
        y: 6,
        flags: 1,
        score: 2,
    });
    out.clear();
    assert_eq!(wire::delta_body(&base, &now, &mut out), Some((1, 3)));
    let mut snap = Vec::new();
    wire::snap_head(
        &wire::SnapHead {
            tick: 2,
            base: 1,
            ack_seq: 0,
            you: 1,
        },
        1,
        3,
        &mut snap,
    );
    snap.extend_from_slice(&out);
    let (_, got) = wire::parse_snapshot(&snap, |_| Some(&base[..])).unwrap();
    assert_eq!(got, now);
    // Cut anywhere, it is malformed, never a panic.
    for cut in 0..snap.len() {
        assert!(wire::parse_snapshot(&snap[..cut], |_| Some(&base[..])).is_err());
    }
}

/// The tick's timing: jitter either way of the periods due, counted
/// under every threshold it is over; work longer than a period is an
/// overrun.
#[test]
fn tick_jitter_and_overruns_are_counted() {
    let mut s = GameStats::default();
    s.tick_began(33_333, 33_333);
    s.tick_began(32_100, 33_333); // early by 1,233 us
    s.tick_began(66_666 + 600, 66_666); // a tick skipped, then late by 600 us
    assert_eq!(s.tick_intervals, 3);
    assert_eq!(s.tick_jitter_us, 600);
    assert_eq!(s.tick_jitter_max_us, 1_233);
    assert_eq!(s.tick_jitter_over, [2, 2, 1, 0, 0]);
    s.tick_done(900, 33_333);
    s.tick_done(40_000, 33_333);
    s.tick_done(1_000, 33_333);
    assert_eq!(
        (s.tick_us, s.tick_max_us, s.tick_overruns),
        (1_000, 40_000, 1)
    );
    let names: Vec<_> = s.figures().iter().map(|f| f.0).collect();
    assert!(names.contains(&"game_tick_jitter_over_1ms"), "{names:?}");
}
