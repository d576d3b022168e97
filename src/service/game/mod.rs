//! The game: a small top-down game of tag in one arena, as a sans-I/O
//! state machine. Players move with four buttons; one of them is "it",
//! and touching another player passes "it" on (the one tagged is frozen
//! for a second, so there is no tagging straight back) and scores a tag.
//!
//! The model is the classic one of Quake III and Valve's Source engine:
//!
//! - The server is authoritative. Clients send only *inputs* (buttons),
//!   each with a sequence number, and each datagram repeats the last few
//!   (`wire::MAX_REDUNDANT`) so one that is lost is carried by the next.
//!   Nothing is ever sent twice by the server: a lost snapshot is simply
//!   replaced by the next one.
//! - The world advances in fixed *ticks* (`GameConfig::hz`, 30 a second),
//!   driven by the loop's timer. A tick applies each player's queued
//!   inputs (one per tick on average: a player's *credit* grows by one a
//!   tick, up to `CREDIT_MAX`, so late inputs catch up but a client cannot
//!   move faster by sending more), then the tags, then records the world.
//! - Every tick each player is sent a *snapshot*: the world, as a *delta*
//!   against the last snapshot that player acknowledged (the server keeps
//!   the last `RING` worlds, shared by all players), or in full when it
//!   acknowledged none of those. It carries the sequence number of the
//!   player's last applied input, so the client can *reconcile*: take the
//!   server's position and replay its inputs not yet applied.
//!
//! This module knows no sockets: `datagram` takes a UDP payload and its
//! sender and says what to answer; `ws_join`/`ws_message` do the same for
//! WebSocket players; `step` runs a tick; `snapshots` hands each player's
//! bytes to a closure with where they go (`Via`). `proto/game.rs` moves
//! them. Everything is deterministic given the secret and the inputs.

pub mod cookie;
#[cfg(test)]
mod tests;
pub mod wire;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use self::cookie::Secret;
use self::wire::{Ent, Msg, SnapHead, Welcome, flag};

/// Milliseconds on the caller's clock (the loop's, in the server).
pub type Millis = u64;

/// The page (`GET /game`): self-contained, it draws the arena, predicts
/// and reconciles its own player, interpolates the others, and shows
/// ping, tick and loss; it plays over `/game/ws`.
pub const PAGE: &[u8] = include_bytes!("game.html");

/// Arena width, units.
pub const WIDTH: u16 = 800;
/// Arena height, units.
pub const HEIGHT: u16 = 600;
/// A player's radius, units.
pub const RADIUS: u16 = 12;
/// Sub-units per unit: positions are integers in 1/16 of a unit.
pub const SUB: u16 = 16;
/// Speed, units per second (the step per tick is this over `hz`).
pub const SPEED: u32 = 180;
/// The most players an arena holds: a full snapshot of this many is
/// 17 + 128 × 9 = 1,169 bytes, under `wire::MTU_BUDGET`.
pub const MAX_PLAYERS: usize = 128;
/// Worlds kept for deltas: about a second at 30 Hz. A player whose last
/// ack is older than this gets full snapshots until it acks again.
pub const RING: usize = 32;
/// Inputs a player may have waiting; past it the oldest is dropped.
pub const INPUT_QUEUE: usize = 8;
/// Most inputs applied to one player in one tick (catching up).
pub const CREDIT_MAX: u8 = 3;
/// The largest datagram taken: every valid message is far smaller.
pub const MAX_DATAGRAM: usize = 256;

/// The arena's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GameConfig {
    /// Ticks per second (1 to 100).
    pub hz: u32,
    /// Most players (at most `MAX_PLAYERS`).
    pub max_players: usize,
    /// A UDP player silent this long is dropped, ms.
    pub timeout: Millis,
}

impl Default for GameConfig {
    fn default() -> Self {
        GameConfig {
            hz: 30,
            max_players: MAX_PLAYERS,
            timeout: 5_000,
        }
    }
}

/// Where a player's snapshots go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// A UDP address (proved by the cookie).
    Udp(SocketAddr),
    /// A WebSocket connection's slab key.
    Ws(usize),
}

/// The game's counters and gauges (in `/stats` as `game_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GameStats {
    /// Players now (gauge).
    pub players: u64,
    /// Players over UDP now (gauge).
    pub udp_players: u64,
    /// Ticks run.
    pub ticks: u64,
    /// Ticks skipped because the loop was late by more than a period.
    pub missed_ticks: u64,
    /// Snapshots sent (or handed to a socket that refused them).
    pub snapshots: u64,
    /// Of which full (no base acknowledged, or a delta would be bigger).
    pub full_snapshots: u64,
    /// Snapshot bytes.
    pub snapshot_bytes: u64,
    /// The largest snapshot of the last tick (gauge).
    pub snapshot_max: u64,
    /// Snapshots not sent: the WebSocket's output was full, or the UDP
    /// socket's send buffer.
    pub snapshots_dropped: u64,
    /// INPUT messages taken.
    pub inputs: u64,
    /// INPUTs carrying nothing new (late or reordered): ignored.
    pub stale_inputs: u64,
    /// Inputs dropped from a full queue.
    pub overflowed_inputs: u64,
    /// Cookies sent (answers to HELLO and to a JOIN with a stale cookie).
    pub cookies: u64,
    /// JOINs with a wrong or expired cookie.
    pub bad_cookies: u64,
    /// Players joined (UDP and WebSocket).
    pub joined: u64,
    /// Joins refused: the arena was full.
    pub refused: u64,
    /// Datagrams or frames that were not a well-formed message.
    pub malformed: u64,
    /// From a player's address with the wrong token (spoofed): ignored.
    pub spoofed: u64,
    /// INPUT or BYE from an address that has not joined: ignored.
    pub unknown: u64,
    /// UDP players dropped for silence.
    pub timeouts: u64,
    /// The last tick's simulation and encoding, µs (gauge; the protocol
    /// file measures it).
    pub tick_us: u64,
    /// The longest tick's work since start, µs (gauge).
    pub tick_max_us: u64,
    /// Ticks whose work took longer than a period (the next one is late).
    pub tick_overruns: u64,
    /// Ticks timed against the one before them (all but the first of
    /// each stretch of play): the denominator of the jitter counts.
    pub tick_intervals: u64,
    /// The last tick's jitter: |time since the tick before − the periods
    /// due|, µs (gauge).
    pub tick_jitter_us: u64,
    /// The largest jitter since start, µs (gauge).
    pub tick_jitter_max_us: u64,
    /// Ticks whose jitter was over each of `JITTER_STEPS_US`.
    pub tick_jitter_over: [u64; JITTER_STEPS_US.len()],
}

/// The thresholds of `GameStats::tick_jitter_over`, µs: a tick counts
/// under every threshold its jitter is over (cumulative counts, read from
/// above).
pub const JITTER_STEPS_US: [u64; 5] = [250, 500, 1_000, 2_000, 5_000];

impl std::ops::AddAssign for GameStats {
    fn add_assign(&mut self, o: GameStats) {
        let GameStats {
            players,
            udp_players,
            ticks,
            missed_ticks,
            snapshots,
            full_snapshots,
            snapshot_bytes,
            snapshot_max,
            snapshots_dropped,
            inputs,
            stale_inputs,
            overflowed_inputs,
            cookies,
            bad_cookies,
            joined,
            refused,
            malformed,
            spoofed,
            unknown,
            timeouts,
            tick_us,
            tick_max_us,
            tick_overruns,
            tick_intervals,
            tick_jitter_us,
            tick_jitter_max_us,
            tick_jitter_over,
        } = o;
        self.players += players;
        self.udp_players += udp_players;
        self.ticks += ticks;
        self.missed_ticks += missed_ticks;
        self.snapshots += snapshots;
        self.full_snapshots += full_snapshots;
        self.snapshot_bytes += snapshot_bytes;
        self.snapshot_max = self.snapshot_max.max(snapshot_max);
        self.snapshots_dropped += snapshots_dropped;
        self.inputs += inputs;
        self.stale_inputs += stale_inputs;
        self.overflowed_inputs += overflowed_inputs;
        self.cookies += cookies;
        self.bad_cookies += bad_cookies;
        self.joined += joined;
        self.refused += refused;
        self.malformed += malformed;
        self.spoofed += spoofed;
        self.unknown += unknown;
        self.timeouts += timeouts;
        self.tick_us = self.tick_us.max(tick_us);
        self.tick_max_us = self.tick_max_us.max(tick_max_us);
        self.tick_overruns += tick_overruns;
        self.tick_intervals += tick_intervals;
        self.tick_jitter_us = self.tick_jitter_us.max(tick_jitter_us);
        self.tick_jitter_max_us = self.tick_jitter_max_us.max(tick_jitter_max_us);
        for (a, b) in self.tick_jitter_over.iter_mut().zip(tick_jitter_over) {
            *a += b;
        }
    }
}

impl GameStats {
    /// A tick began `interval_us` after the one before it, when
    /// `expected_us` were due (one period, more if ticks were skipped):
    /// its jitter is the difference, either way.
    pub fn tick_began(&mut self, interval_us: u64, expected_us: u64) {
        let jitter = interval_us.abs_diff(expected_us);
        self.tick_intervals += 1;
        self.tick_jitter_us = jitter;
        self.tick_jitter_max_us = self.tick_jitter_max_us.max(jitter);
        for (n, step) in self.tick_jitter_over.iter_mut().zip(JITTER_STEPS_US) {
            *n += u64::from(jitter > step);
        }
    }

    /// A tick's work took `work_us`, with ticks `period_us` apart.
    pub fn tick_done(&mut self, work_us: u64, period_us: u64) {
        self.tick_us = work_us;
        self.tick_max_us = self.tick_max_us.max(work_us);
        self.tick_overruns += u64::from(work_us > period_us);
    }

    /// Every figure as (name, kind, help, value), for `/stats` and
    /// `/metrics`.
    pub fn figures(&self) -> [(&'static str, &'static str, &'static str, u64); 31] {
        let s = self;
        let over = s.tick_jitter_over;
        [
            ("game_players", "gauge", "Game players now.", s.players),
            (
                "game_udp_players",
                "gauge",
                "Game players over UDP now.",
                s.udp_players,
            ),
            ("game_ticks", "counter", "Game ticks run.", s.ticks),
            (
                "game_missed_ticks",
                "counter",
                "Game ticks skipped: the loop was late.",
                s.missed_ticks,
            ),
            (
                "game_snapshots",
                "counter",
                "Game snapshots sent.",
                s.snapshots,
            ),
            (
                "game_full_snapshots",
                "counter",
                "Game snapshots sent in full, not as deltas.",
                s.full_snapshots,
            ),
            (
                "game_snapshot_bytes",
                "counter",
                "Game snapshot bytes.",
                s.snapshot_bytes,
            ),
            (
                "game_snapshot_max",
                "gauge",
                "Largest game snapshot of the last tick, bytes.",
                s.snapshot_max,
            ),
            (
                "game_snapshots_dropped",
                "counter",
                "Game snapshots not sent (output full).",
                s.snapshots_dropped,
            ),
            (
                "game_inputs",
                "counter",
                "Game INPUT messages taken.",
                s.inputs,
            ),
            (
                "game_stale_inputs",
                "counter",
                "Game INPUTs late or reordered, ignored.",
                s.stale_inputs,
            ),
            (
                "game_overflowed_inputs",
                "counter",
                "Game inputs dropped from a full queue.",
                s.overflowed_inputs,
            ),
            ("game_cookies", "counter", "Game cookies sent.", s.cookies),
            (
                "game_bad_cookies",
                "counter",
                "Game JOINs with a wrong or expired cookie.",
                s.bad_cookies,
            ),
            ("game_joined", "counter", "Game players joined.", s.joined),
            (
                "game_refused",
                "counter",
                "Game joins refused: arena full.",
                s.refused,
            ),
            (
                "game_malformed",
                "counter",
                "Game datagrams or frames malformed, ignored.",
                s.malformed,
            ),
            (
                "game_spoofed",
                "counter",
                "Game datagrams with a wrong token, ignored.",
                s.spoofed,
            ),
            (
                "game_unknown",
                "counter",
                "Game datagrams from addresses not joined, ignored.",
                s.unknown,
            ),
            (
                "game_timeouts",
                "counter",
                "Game UDP players dropped for silence.",
                s.timeouts,
            ),
            (
                "game_tick_us",
                "gauge",
                "Last game tick's work, microseconds.",
                s.tick_us,
            ),
            (
                "game_tick_max_us",
                "gauge",
                "Longest game tick's work since start, microseconds.",
                s.tick_max_us,
            ),
            (
                "game_tick_overruns",
                "counter",
                "Game ticks whose work took longer than a period.",
                s.tick_overruns,
            ),
            (
                "game_tick_intervals",
                "counter",
                "Game ticks timed against the tick before them.",
                s.tick_intervals,
            ),
            (
                "game_tick_jitter_us",
                "gauge",
                "Last game tick's jitter (time since the tick before minus the period), microseconds.",
                s.tick_jitter_us,
            ),
            (
                "game_tick_jitter_max_us",
                "gauge",
                "Largest game tick jitter since start, microseconds.",
                s.tick_jitter_max_us,
            ),
            (
                "game_tick_jitter_over_250us",
                "counter",
                "Game ticks with a jitter over 250 microseconds.",
                over[0],
            ),
            (
                "game_tick_jitter_over_500us",
                "counter",
                "Game ticks with a jitter over 500 microseconds.",
                over[1],
            ),
            (
                "game_tick_jitter_over_1ms",
                "counter",
                "Game ticks with a jitter over 1 millisecond.",
                over[2],
            ),
            (
                "game_tick_jitter_over_2ms",
                "counter",
                "Game ticks with a jitter over 2 milliseconds.",
                over[3],
            ),
            (
                "game_tick_jitter_over_5ms",
                "counter",
                "Game ticks with a jitter over 5 milliseconds.",
                over[4],
            ),
        ]
    }
}

/// One player (about 140 bytes, with no heap storage of its own).
#[derive(Clone, Debug)]
struct Player {
    /// Its id, unique among the players now.
    id: u16,
    /// Where its snapshots go.
    via: Via,
    /// Its session token (UDP; 0 over WebSocket).
    token: u32,
    /// Position, sub-units.
    x: i32,
    /// Position, sub-units.
    y: i32,
    /// It is "it".
    it: bool,
    /// Frozen until this tick.
    frozen_until: u32,
    /// Tags made.
    score: u16,
    /// The highest input sequence number received.
    last_seq: u32,
    /// The last input applied (what snapshots acknowledge).
    applied_seq: u32,
    /// Inputs waiting, oldest first: (seq, buttons).
    queue: [(u32, u8); INPUT_QUEUE],
    /// How many of `queue` are in use.
    queued: u8,
    /// Inputs it may still have applied this tick.
    credit: u8,
    /// The newest tick it acknowledged (0: none).
    acked: u32,
    /// The tick it joined at: it cannot have acked anything older.
    joined_tick: u32,
    /// When it was last heard from (ms on the loop's clock).
    heard: Millis,
}

impl Player {
    fn frozen(&self, tick: u32) -> bool {
        tick < self.frozen_until
    }

    fn ent(&self, tick: u32) -> Ent {
        let mut flags = 0;
        if self.it {
            flags |= flag::IT;
        }
        if self.frozen(tick) {
            flags |= flag::FROZEN;
        }
        Ent {
            id: self.id,
            x: self.x as u16,
            y: self.y as u16,
            flags,
            score: self.score,
        }
    }

    fn push(&mut self, seq: u32, buttons: u8) -> bool {
        let mut dropped = false;
        if self.queued as usize == INPUT_QUEUE {
            self.queue.copy_within(1.., 0);
            self.queued -= 1;
            dropped = true;
        }
        self.queue[self.queued as usize] = (seq, buttons);
        self.queued += 1;
        dropped
    }

    fn pop(&mut self) -> Option<(u32, u8)> {
        if self.queued == 0 {
            return None;
        }
        let first = self.queue[0];
        self.queue.copy_within(1.., 0);
        self.queued -= 1;
        Some(first)
    }
}

/// One world as of a tick: the players sorted by id.
#[derive(Debug, Default)]
struct Frame {
    tick: u32,
    ents: Vec<Ent>,
}

/// Where a player is moved by `buttons` from (`x`, `y`), `step`
/// sub-units per axis (times 181/256, about 1/√2, on a diagonal), kept
/// inside the walls. The page and the Python client do the same sums.
pub fn moved(x: i32, y: i32, buttons: u8, step: i32) -> (i32, i32) {
    use wire::button::{DOWN, LEFT, RIGHT, UP};
    let dx = i32::from(buttons & RIGHT != 0) - i32::from(buttons & LEFT != 0);
    let dy = i32::from(buttons & DOWN != 0) - i32::from(buttons & UP != 0);
    let s = if dx != 0 && dy != 0 {
        step * 181 / 256
    } else {
        step
    };
    let r = i32::from(RADIUS * SUB);
    let clamp = |v: i32, max: u16| v.clamp(r, i32::from(max) * i32::from(SUB) - r);
    (clamp(x + dx * s, WIDTH), clamp(y + dy * s, HEIGHT))
}

/// The arena.
pub struct Game {
    cfg: GameConfig,
    secret: Secret,
    /// The last tick run (0: none yet).
    tick: u32,
    /// The players, in the order they joined.
    players: Vec<Player>,
    /// UDP players by address.
    by_addr: HashMap<SocketAddr, u16>,
    /// The next id to try.
    next_id: u16,
    /// The last `RING` worlds, oldest first, one per tick.
    frames: VecDeque<Frame>,
    /// This tick's snapshot bodies by base tick (0: full): the two count
    /// bytes, then the body. Players with the same base share one.
    bodies: Vec<(u32, Vec<u8>)>,
    /// Scratch for one snapshot.
    scratch: Vec<u8>,
    /// The counters.
    pub stats: GameStats,
}

impl Game {
    /// An empty arena with `cfg`, its cookies and tokens keyed by `secret`.
    pub fn new(cfg: GameConfig, secret: Secret) -> Game {
        let cfg = GameConfig {
            hz: cfg.hz.clamp(1, 100),
            max_players: cfg.max_players.clamp(1, MAX_PLAYERS),
            ..cfg
        };
        Game {
            cfg,
            secret,
            tick: 0,
            players: Vec::new(),
            by_addr: HashMap::new(),
            next_id: 1,
            frames: VecDeque::with_capacity(RING),
            bodies: Vec::new(),
            scratch: Vec::with_capacity(wire::MTU_BUDGET),
            stats: GameStats::default(),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> GameConfig {
        self.cfg
    }

    /// The last tick run.
    pub fn tick(&self) -> u32 {
        self.tick
    }

    /// Players now.
    pub fn len(&self) -> usize {
        self.players.len()
    }

    /// True with no players.
    pub fn is_empty(&self) -> bool {
        self.players.is_empty()
    }

    /// Sub-units moved per tick along one axis.
    pub fn step_len(&self) -> i32 {
        (SPEED * u32::from(SUB) / self.cfg.hz) as i32
    }

    /// The world as of the last tick.
    pub fn world(&self) -> &[Ent] {
        self.frames.back().map_or(&[], |f| &f.ents)
    }

    fn welcome(&self, p: &Player, out: &mut Vec<u8>) {
        let w = Welcome {
            id: p.id,
            token: p.token,
            hz: self.cfg.hz as u8,
            step: self.step_len() as u16,
            width: WIDTH,
            height: HEIGHT,
            radius: RADIUS as u8,
            sub: SUB as u8,
        };
        wire::welcome(&w, out);
    }

    /// Adds a player reached by `via`; `None` when the arena is full.
    fn add(&mut self, via: Via, now: Millis) -> Option<usize> {
        if self.players.len() >= self.cfg.max_players {
            self.stats.refused += 1;
            return None;
        }
        let mut id = self.next_id;
        while id == 0 || self.players.iter().any(|p| p.id == id) {
            id = id.wrapping_add(1);
        }
        self.next_id = id.wrapping_add(1);
        self.stats.joined += 1;
        let token = match via {
            Via::Udp(addr) => self.secret.token(addr, self.stats.joined).max(1),
            Via::Ws(_) => 0,
        };
        // Spawn points spread over the arena by id (deterministic).
        let r = u32::from(RADIUS);
        let (w, h) = (u32::from(WIDTH) - 4 * r, u32::from(HEIGHT) - 4 * r);
        let x = (2 * r + (u32::from(id) * 197) % w) * u32::from(SUB);
        let y = (2 * r + (u32::from(id) * 131) % h) * u32::from(SUB);
        self.players.push(Player {
            id,
            via,
            token,
            x: x as i32,
            y: y as i32,
            it: false,
            frozen_until: 0,
            score: 0,
            last_seq: 0,
            applied_seq: 0,
            queue: [(0, 0); INPUT_QUEUE],
            queued: 0,
            credit: 0,
            acked: 0,
            joined_tick: self.tick,
            heard: now,
        });
        if let Via::Udp(addr) = via {
            self.by_addr.insert(addr, id);
            self.stats.udp_players += 1;
        }
        self.stats.players = self.players.len() as u64;
        Some(self.players.len() - 1)
    }

    /// Removes player `id` (a BYE, a timeout, a closed WebSocket).
    pub fn leave(&mut self, id: u16) {
        if let Some(i) = self.players.iter().position(|p| p.id == id) {
            let p = self.players.remove(i);
            if let Via::Udp(addr) = p.via {
                self.by_addr.remove(&addr);
                self.stats.udp_players -= 1;
            }
            self.stats.players = self.players.len() as u64;
        }
    }

    /// A UDP datagram `data` from `from` at `now`: what to answer goes in
    /// `reply` (cleared first; empty: nothing). Before `from` has joined
    /// (proved its address with a cookie), `reply` is never longer than
    /// `data`.
    pub fn datagram(&mut self, from: SocketAddr, data: &[u8], now: Millis, reply: &mut Vec<u8>) {
        reply.clear();
        let msg = if data.len() <= MAX_DATAGRAM {
            wire::parse(data)
        } else {
            None
        };
        let Some(msg) = msg else {
            self.stats.malformed += 1;
            return;
        };
        let known = self.by_addr.get(&from).copied();
        match msg {
            Msg::Hello { version } if version != wire::VERSION => {
                wire::reject(wire::reason::VERSION, reply)
            }
            Msg::Hello { .. } => {
                self.stats.cookies += 1;
                wire::cookie(self.secret.cookie(from, now), reply);
            }
            Msg::Join { version, .. } if version != wire::VERSION => {
                wire::reject(wire::reason::VERSION, reply)
            }
            Msg::Join { cookie, .. } => {
                if let Some(i) = known.and_then(|id| self.index(id)) {
                    // Its WELCOME was lost: the same again.
                    self.players[i].heard = now;
                    self.welcome(&self.players[i], reply);
                } else if !self.secret.check(from, cookie, now) {
                    self.stats.bad_cookies += 1;
                    self.stats.cookies += 1;
                    wire::cookie(self.secret.cookie(from, now), reply);
                } else {
                    match self.add(Via::Udp(from), now) {
                        Some(i) => self.welcome(&self.players[i], reply),
                        None => wire::reject(wire::reason::FULL, reply),
                    }
                }
            }
            Msg::Input {
                token,
                ack,
                seq,
                buttons,
            } => match known.and_then(|id| self.index(id)) {
                None => self.stats.unknown += 1,
                Some(i) if self.players[i].token != token => self.stats.spoofed += 1,
                Some(i) => self.input(i, ack, seq, buttons, now),
            },
            Msg::Bye { token } => match known.and_then(|id| self.index(id)) {
                None => self.stats.unknown += 1,
                Some(i) if self.players[i].token != token => self.stats.spoofed += 1,
                Some(i) => self.leave(self.players[i].id),
            },
        }
        debug_assert!(known.is_some() || reply.len() <= data.len());
    }

    /// A WebSocket player arrives: its WELCOME goes in `out`, and its id
    /// is returned; `None` (with a REJECT in `out`) when the arena is full.
    pub fn ws_join(&mut self, key: usize, now: Millis, out: &mut Vec<u8>) -> Option<u16> {
        match self.add(Via::Ws(key), now) {
            Some(i) => {
                self.welcome(&self.players[i], out);
                Some(self.players[i].id)
            }
            None => {
                wire::reject(wire::reason::FULL, out);
                None
            }
        }
    }

    /// A binary message from WebSocket player `id`; `false` if it said BYE.
    pub fn ws_message(&mut self, id: u16, data: &[u8], now: Millis) -> bool {
        let Some(i) = self.index(id) else {
            return false;
        };
        match wire::parse(data) {
            Some(Msg::Input {
                ack, seq, buttons, ..
            }) => {
                self.input(i, ack, seq, buttons, now);
                true
            }
            Some(Msg::Bye { .. }) => {
                self.leave(id);
                false
            }
            _ => {
                self.stats.malformed += 1;
                true
            }
        }
    }

    fn index(&self, id: u16) -> Option<usize> {
        self.players.iter().position(|p| p.id == id)
    }

    /// Takes an INPUT for player `i`: the ack, and whichever of the inputs
    /// it carries are newer than any received.
    fn input(&mut self, i: usize, ack: u32, seq: u32, buttons: &[u8], now: Millis) {
        self.stats.inputs += 1;
        let tick = self.tick;
        let p = &mut self.players[i];
        p.heard = now;
        if ack <= tick && ack > p.acked && ack > p.joined_tick {
            p.acked = ack;
        }
        let mut fresh = false;
        for (back, &b) in buttons.iter().enumerate().rev() {
            let q = seq - back as u32;
            if q > p.last_seq {
                p.last_seq = q;
                fresh = true;
                if p.push(q, b) {
                    self.stats.overflowed_inputs += 1;
                }
            }
        }
        if !fresh {
            self.stats.stale_inputs += 1;
        }
    }

    /// Runs one tick at `now`; `missed` ticks were skipped before it.
    pub fn step(&mut self, now: Millis, missed: u64) {
        self.tick += 1;
        let tick = self.tick;
        self.stats.ticks += 1;
        self.stats.missed_ticks += missed;
        // Silent UDP players go.
        let timeout = self.cfg.timeout;
        let gone: Vec<u16> = self
            .players
            .iter()
            .filter(|p| matches!(p.via, Via::Udp(_)) && now.saturating_sub(p.heard) > timeout)
            .map(|p| p.id)
            .collect();
        for id in gone {
            self.stats.timeouts += 1;
            self.leave(id);
        }
        // Inputs.
        let step = self.step_len();
        for p in &mut self.players {
            p.credit = (p.credit + 1).min(CREDIT_MAX);
            while p.credit > 0 {
                let Some((seq, buttons)) = p.pop() else {
                    break;
                };
                p.credit -= 1;
                p.applied_seq = seq;
                if !p.frozen(tick) {
                    (p.x, p.y) = moved(p.x, p.y, buttons, step);
                }
            }
        }
        self.tag(tick);
        // Record the world.
        let mut frame = if self.frames.len() == RING {
            self.frames.pop_front().unwrap_or_default()
        } else {
            Frame::default()
        };
        frame.tick = tick;
        frame.ents.clear();
        frame.ents.extend(self.players.iter().map(|p| p.ent(tick)));
        frame.ents.sort_unstable_by_key(|e| e.id);
        self.frames.push_back(frame);
        self.bodies.clear();
    }

    /// Someone is "it" whenever anyone plays; "it" touching a player who
    /// is not frozen tags them.
    fn tag(&mut self, tick: u32) {
        let Some(it) = self.players.iter().position(|p| p.it).or_else(|| {
            let i = (0..self.players.len()).min_by_key(|&i| self.players[i].id)?;
            self.players[i].it = true;
            Some(i)
        }) else {
            return;
        };
        if self.players[it].frozen(tick) {
            return;
        }
        let (x, y) = (self.players[it].x, self.players[it].y);
        let reach = i64::from(2 * RADIUS * SUB);
        let touched = (0..self.players.len())
            .filter(|&j| j != it && !self.players[j].frozen(tick))
            .filter(|&j| {
                let (dx, dy) = (
                    i64::from(self.players[j].x - x),
                    i64::from(self.players[j].y - y),
                );
                dx * dx + dy * dy < reach * reach
            })
            .min_by_key(|&j| self.players[j].id);
        if let Some(j) = touched {
            let hz = self.cfg.hz;
            let tagger = &mut self.players[it];
            tagger.it = false;
            tagger.score = tagger.score.saturating_add(1);
            let tagged = &mut self.players[j];
            tagged.it = true;
            tagged.frozen_until = tick + hz;
        }
    }

    /// The frame of `tick`, if it is still kept.
    fn frame(&self, tick: u32) -> Option<&Frame> {
        let first = self.frames.front()?.tick;
        let i = tick.checked_sub(first)? as usize;
        self.frames.get(i)
    }

    /// The body (counts, then entities) of this tick's snapshot against
    /// `base` (0: full), made once per tick and base: its index in
    /// `bodies`. A delta no smaller than the full snapshot is not used.
    fn body(&mut self, base: u32) -> usize {
        if let Some(i) = self.bodies.iter().position(|(b, _)| *b == base) {
            return i;
        }
        let now = self.frames.back().map_or(&[][..], |f| &f.ents);
        let mut v = Vec::with_capacity(wire::MTU_BUDGET);
        v.extend_from_slice(&[0, 0]);
        let delta = match self.frame(base) {
            Some(old) if base != 0 => wire::delta_body(&old.ents, now, &mut v),
            _ => None,
        };
        match delta {
            Some((removed, changed)) if v.len() - 2 < now.len() * wire::FULL_ENTITY => {
                v[0] = removed;
                v[1] = changed;
                self.bodies.push((base, v));
                self.bodies.len() - 1
            }
            _ if base != 0 => self.body(0),
            _ => {
                v.truncate(2);
                v[1] = now.len() as u8;
                wire::full_body(now, &mut v);
                self.bodies.push((0, v));
                self.bodies.len() - 1
            }
        }
    }

    /// This tick's snapshot for every player, each handed to `send` with
    /// where it goes; `send` answers `false` if it could not be sent
    /// (counted as dropped).
    pub fn snapshots(&mut self, mut send: impl FnMut(&Via, &[u8]) -> bool) {
        let tick = self.tick;
        self.stats.snapshot_max = 0;
        let mut scratch = std::mem::take(&mut self.scratch);
        for i in 0..self.players.len() {
            let acked = self.players[i].acked;
            let base = if acked != 0 && acked < tick && self.frame(acked).is_some() {
                acked
            } else {
                0
            };
            let b = self.body(base);
            let (base, body) = (&self.bodies[b].0, &self.bodies[b].1);
            let p = &self.players[i];
            let head = SnapHead {
                tick,
                base: *base,
                ack_seq: p.applied_seq,
                you: p.id,
            };
            scratch.clear();
            wire::snap_head(&head, body[0], body[1], &mut scratch);
            scratch.extend_from_slice(&body[2..]);
            debug_assert!(scratch.len() <= wire::MTU_BUDGET);
            self.stats.snapshots += 1;
            if *base == 0 {
                self.stats.full_snapshots += 1;
            }
            self.stats.snapshot_bytes += scratch.len() as u64;
            self.stats.snapshot_max = self.stats.snapshot_max.max(scratch.len() as u64);
            if !send(&p.via, &scratch) {
                self.stats.snapshots_dropped += 1;
            }
        }
        self.scratch = scratch;
    }
}
