//! The chat bus: one loop's chat rooms joined to every other server's
//! through Redis pub/sub, as a sans-I/O state machine. The protocol file
//! `proto/bus.rs` gives it the bytes of its two Redis connections and the
//! clock; this file says what to send, what the bytes mean, and when to
//! connect or give a connection up. Tested in memory (`tests` below).
//!
//! # Two connections a loop
//!
//! RESP2 lets a subscribed connection send nothing but (un)subscribes and
//! pings, so the bus keeps two: `Sub`, subscribed to one channel per room
//! with members on this loop (`PREFIX:room:NAME`) and to its own probe
//! channel; and `Cmd`, which publishes and keeps the shared state
//! (presence, nicks). However many rooms and members, a loop holds these
//! two; Redis's cost per line is one delivery per server with members in
//! the room, not per member.
//!
//! # A line's way
//!
//! The hub delivers a line to the room's members here first, then hands
//! it to [`Bus::publish`], which wraps it in an envelope and queues a
//! `PUBLISH`: local members never wait for Redis. The envelope is
//! `1 NODE.LOOP STREAM SEQ\n` and the line: its origin (a random 64-bit
//! node id a process draws at start, and the loop's index), the stream
//! (numbered anew each time the origin's room opens) and the line's number
//! in it. A receiver drops lines from its own process (the loops of one
//! process hear each other directly, `proto/loops.rs`), drops repeats, and
//! counts a jump in a stream's numbers as lines lost: loss is counted,
//! never silent. One origin publishes on one connection in order, and
//! Redis delivers in publish order, so each sender's order is kept
//! everywhere; lines of different senders may interleave differently on
//! different servers (each server hears its own members first).
//!
//! # Faults
//!
//! - Redis down, refusing or unreachable: the loop serves on, its rooms
//!   local; each connection retries after 100 ms, doubling to 4 s,
//!   drawn between half and all of that (jitter), and never gives up.
//!   Rooms known to span servers are told once when they are cut off and
//!   once when they are whole again.
//! - Lines said meanwhile wait in a queue of at most `queue_cap` bytes
//!   (with the replies they await); what does not fit is dropped and
//!   counted. The subscriber connection is always read dry, whatever the
//!   members do (their own caps deal with slow members), so Redis's
//!   output limit for subscribers never cuts it off.
//! - Redis frozen or a connection wedged: every command gets its answer
//!   within 5 s or its connection is dropped and made again; the
//!   subscriber is pinged every 3 s and must answer within 3 s; and a
//!   probe published to the loop's own channel every 3 s must come back
//!   within 6 s (a `PUBLISH` that reaches no subscriber says at once
//!   that the subscription is gone, as after a failover behind a proxy).
//!
//! # Shared state
//!
//! Redis keeps who is where, for `/who`, `/rooms` and unique nicks:
//!
//! - `PREFIX:node:ORIGIN`, a lease refreshed every third of `lease`, and
//!   the set `PREFIX:nodes`: an origin whose lease has lapsed is dead (a
//!   process killed with no goodbye), and its entries are ignored and
//!   cleaned by the next query that meets them;
//! - `PREFIX:where:ROOM`, the origins with members in the room, and
//!   `PREFIX:who:ROOM:ORIGIN`, their nicks; `PREFIX:rooms:ORIGIN`, each
//!   room's member count at that origin;
//! - `PREFIX:nick:NICK`, the origin holding a custom nick, and
//!   `PREFIX:nicks:ORIGIN`, the nicks an origin holds.
//!
//! The queries are Lua scripts, run atomically by Redis; a nick is taken
//! only if no live origin holds it. On every (re)connect the loop wipes
//! its own entries and writes them afresh from its members, so a Redis
//! that restarted empty, or updates dropped at the cap, are made good.
//! One Redis is the authority: with a replica promoted after a failover,
//! what the old primary had not yet replicated (a nick taken a moment
//! before) may be lost, and for a moment two members may hold one nick.
//! Scripts name keys they are not given, so the bus needs one Redis (or
//! Sentinel), not Redis Cluster.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write as _;
use std::time::Duration;

use log::{info, warn};

use super::answer::{Ask, Asked};
use super::resp::{self, Value};

mod envelope;
mod scripts;
#[cfg(test)]
mod tests;

pub use envelope::Origin;
use envelope::{Heard, parse_envelope, take_in_order};
use scripts::{CLAIM_SCRIPT, RELEASE_SCRIPT, ROOMS_SCRIPT, WHO_SCRIPT, WIPE_SCRIPT};

/// Which of a loop's two Redis connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Subscribed to the rooms' channels: lines from other servers.
    Sub,
    /// Publishes lines and keeps presence and nicks.
    Cmd,
}

/// The two roles, in the order the bus keeps them.
pub const ROLES: [Role; 2] = [Role::Sub, Role::Cmd];

impl Role {
    /// Its index in the bus's arrays (and the loop's, for its keys).
    pub fn at(self) -> usize {
        match self {
            Role::Sub => 0,
            Role::Cmd => 1,
        }
    }

    /// Its name in logs and in `CLIENT SETNAME`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Sub => "sub",
            Role::Cmd => "cmd",
        }
    }
}

/// First retry delay after a connection fails.
const RETRY_FIRST_MS: u64 = 100;
/// Longest retry delay (the delay drawn is between half and all of it).
const RETRY_MAX_MS: u64 = 4000;
/// A new connection must be answered (connect, then its greeting) within
/// this long.
const GREETING_MS: u64 = 3000;
/// Every command must be answered within this long.
const REPLY_MS: u64 = 5000;
/// The subscriber is pinged this often, and must answer within as long.
const PING_MS: u64 = 3000;
/// A probe is published to the loop's own channel this often...
const PROBE_MS: u64 = 3000;
/// ...and must come back within this long.
const PROBE_BACK_MS: u64 = 6000;
/// The checks [`Bus::tick`] makes, as bits of `Bus::overdue`: a
/// connection's greeting (by role), the oldest command's reply, the
/// ping's answer, the probe's return.
const LATE_GREETING: [u8; 2] = [1, 2];
/// See [`LATE_GREETING`].
const LATE_REPLY: u8 = 4;
/// See [`LATE_GREETING`].
const LATE_PING: u8 = 8;
/// See [`LATE_GREETING`].
const LATE_PROBE: u8 = 16;
/// The `LATE_*` checks of connection `role`.
const fn checks_of(role: Role) -> u8 {
    match role {
        Role::Sub => LATE_GREETING[0] | LATE_PING | LATE_PROBE,
        Role::Cmd => LATE_GREETING[1] | LATE_REPLY,
    }
}
/// Channels per `SUBSCRIBE` when subscribing to every room again.
const SUBSCRIBE_BATCH: usize = 512;
/// Most names a `/who` answer lists, and rooms a `/rooms` answer.
pub const MAX_LISTED: usize = 100;
/// What one reply we wait for costs the queue (its entry in the list).
const WAIT_COST: usize = std::mem::size_of::<Waiting>();

/// Where the bus is and how it behaves.
#[derive(Clone, Debug)]
pub struct BusConfig {
    /// `HOST:PORT`, for logs.
    pub addr: String,
    /// Prefix of every key and channel (several deployments can share one
    /// Redis).
    pub prefix: String,
    /// The database for the keys (`SELECT`; channels are global).
    pub db: u32,
    /// `AUTH` user, if any (Redis 6 ACLs).
    pub user: Option<String>,
    /// `AUTH` password, if any.
    pub password: Option<String>,
    /// Bytes the lines (and other commands) waiting for Redis may hold.
    pub queue_cap: usize,
    /// How long an origin's lease lasts: a server killed without a goodbye
    /// vanishes from `/who` elsewhere within this long.
    pub lease: Duration,
}

/// How the bus stands, as `/stats` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum BusState {
    /// A connection failed; waiting to try again.
    Down = 1,
    /// Connecting, or waiting for Redis's first answers.
    Connecting = 2,
    /// Both connections answer.
    Up = 3,
}

/// The bus's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BusStats {
    /// Lines handed to Redis and acknowledged.
    pub published: u64,
    /// Lines from other servers delivered to members here.
    pub received: u64,
    /// Lines not sent: the queue was at its cap.
    pub dropped: u64,
    /// Lines from other servers that never came (gaps in their numbers).
    pub lost: u64,
    /// The subscriber's last ping round trip, in microseconds.
    pub rtt_us: u64,
    /// Connections made again after one was lost or failed.
    pub reconnects: u64,
    /// Bytes waiting for Redis now.
    pub queued: u64,
}

/// What the bus has for the loop and the hub, taken with [`Bus::events`].
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Open connection `Role` to Redis now.
    Connect(Role),
    /// Give connection `Role` up now (it failed a check).
    Drop(Role),
    /// A check of connection `Role` found its deadline passed: read the
    /// connection before the next tick, whether or not the loop has seen
    /// it readable (the next tick gives it up if nothing came).
    Look(Role),
    /// Connection `Cmd` is open: tell the bus who is here (`Bus::present`
    /// for every member, `Bus::reclaim` for every custom nick).
    Roster,
    /// Tell the members of `room` this line (cut off, or whole again).
    Notice {
        /// The room.
        room: Box<str>,
        /// The whole line, `\n` included.
        line: Box<str>,
    },
    /// The answer to member `member`'s `/who` in `room`.
    Who {
        /// The member who asked.
        member: usize,
        /// The room asked about.
        room: Box<str>,
        /// Up to `MAX_LISTED` nicks, sorted.
        names: Vec<String>,
        /// Members in the room on every server.
        total: u64,
    },
    /// The answer to member `member`'s `/rooms`.
    Rooms {
        /// The member who asked.
        member: usize,
        /// Up to `MAX_LISTED` rooms, sorted, with their member counts.
        rooms: Vec<(String, u64)>,
        /// Rooms on every server.
        total: u64,
    },
    /// Whether member `member` may take `nick`.
    Nick {
        /// The member who asked.
        member: usize,
        /// The nick asked for.
        nick: Box<str>,
        /// Taken for it (no other server's member holds it).
        ok: bool,
    },
    /// After a reconnect, member `member`'s nick turned out to be held by
    /// a member elsewhere (taken while the bus was down).
    NickLost {
        /// The member.
        member: usize,
        /// The nick it loses.
        nick: Box<str>,
    },
    /// Member `member`'s question got no answer: the bus went down.
    NoAnswer {
        /// The member who asked.
        member: usize,
    },
}

/// How one connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Not connected; connect at `retry_at` (ms on the loop's clock).
    Down { retry_at: u64 },
    /// Connecting since `since`.
    Connecting { since: u64 },
    /// Connected; its first answers (greeting) awaited since `since`.
    Greeting { since: u64 },
    /// Answering.
    Ready,
}

impl Stage {
    /// True while bytes can be handed to its socket.
    fn open(self) -> bool {
        matches!(self, Stage::Greeting { .. } | Stage::Ready)
    }
}

/// A reply awaited, and what it means.
#[derive(Debug)]
enum Wait {
    /// Part of the greeting (`AUTH`, `SELECT`, `CLIENT SETNAME`, the wipe).
    Hello,
    /// Nothing to do with it but check it is not an error.
    Ignore,
    /// A line published in the room with this key and serial; the answer
    /// counts the servers subscribed.
    Publish { room: u32, serial: u32 },
    /// `PUBSUB NUMSUB` for that room.
    NumSub { room: u32, serial: u32 },
    /// The probe: an answer of 0 means our own subscription is gone.
    Probe,
    /// A `PING` on the subscriber.
    Ping,
    /// A member's `/who`.
    Who {
        member: usize,
        epoch: u32,
        room: Box<str>,
    },
    /// A member's `/rooms`.
    Rooms { member: usize, epoch: u32 },
    /// A member's `/nick`.
    Claim {
        member: usize,
        epoch: u32,
        nick: Box<str>,
    },
    /// A nick claimed again after a reconnect.
    Reclaim { member: usize, nick: Box<str> },
}

/// A reply awaited since `at`.
#[derive(Debug)]
struct Waiting {
    /// When its command was handed to the socket.
    at: u64,
    /// What it means.
    wait: Wait,
}

/// One connection's state.
#[derive(Debug)]
struct Side {
    /// How it stands.
    stage: Stage,
    /// Failed attempts since it was last ready.
    attempts: u32,
    /// Commands not yet handed to its socket.
    out: Vec<u8>,
    /// The replies those will get, in order.
    queued: VecDeque<Wait>,
    /// Replies awaited for commands handed to the socket, in order.
    waiting: VecDeque<Waiting>,
    /// Bytes its socket still held at the last look.
    unsent: usize,
    /// When a whole reply or push last came on it (loop ms; 0: never).
    heard_at: u64,
    /// Lines published while the connection was not ready (`Cmd` only):
    /// sent once it is, after its greeting.
    backlog: Vec<u8>,
    /// The replies those will get.
    backlog_waits: VecDeque<Wait>,
}

impl Side {
    /// A connection to make now.
    fn new() -> Side {
        Side {
            stage: Stage::Down { retry_at: 0 },
            attempts: 0,
            out: Vec::new(),
            queued: VecDeque::new(),
            waiting: VecDeque::new(),
            unsent: 0,
            heard_at: 0,
            backlog: Vec::new(),
            backlog_waits: VecDeque::new(),
        }
    }

    /// Bytes this side holds for Redis, its awaited replies counted.
    fn held(&self) -> usize {
        let waits = self.queued.len() + self.waiting.len() + self.backlog_waits.len();
        self.out.len() + self.unsent + self.backlog.len() + waits * WAIT_COST
    }

    /// Queues command `args`, whose reply means `wait`.
    fn command(&mut self, args: &[&[u8]], wait: Wait) {
        resp::command(&mut self.out, args);
        self.queued.push_back(wait);
    }
}

/// Members' presence changes of one turn, written as one command per key
/// (`SADD`/`SREM` of every nick in a room's set, one `HINCRBY` per room)
/// when the turn's output is taken, not two commands per member: when a
/// load balancer or a network blip drops 16,000 members of one server in
/// one turn, Redis gets a few commands, not 32,000. Anything else that reads or writes these keys (`/who`, a room
/// emptied, a greeting) writes the batch first or replaces it, so Redis
/// sees the changes in the order they happened.
#[derive(Debug, Default)]
struct PresenceBatch {
    /// A room, then each nick's last change in its who-set: present or not.
    sets: BTreeMap<Box<str>, BTreeMap<Box<str>, bool>>,
    /// A room, then the change to its count of members here.
    counts: BTreeMap<Box<str>, i64>,
    /// What those will take as commands, about (against the queue cap).
    bytes: usize,
}

impl PresenceBatch {
    /// Nothing waits.
    fn is_empty(&self) -> bool {
        self.sets.is_empty() && self.counts.is_empty()
    }

    /// Nick `nick` is (`present`) or is no longer in `room`'s who-set;
    /// `count` (+1, -1 or 0) changes `room`'s count.
    fn change(&mut self, room: &str, nick: &str, present: bool, count: i64) {
        self.bytes += nick.len() + 16;
        if let Some(nicks) = self.sets.get_mut(room) {
            nicks.insert(nick.into(), present);
        } else {
            self.sets
                .insert(room.into(), BTreeMap::from([(nick.into(), present)]));
        }
        if count != 0 {
            *self.counts.entry(room.into()).or_default() += count;
        }
    }

    /// Queues the batch on `side` as commands, for the keys of `origin`
    /// under `prefix`, and empties it.
    fn write(&mut self, side: &mut Side, prefix: &str, origin: Origin) {
        for (room, nicks) in std::mem::take(&mut self.sets) {
            let who = format!("{prefix}:who:{room}:{origin}");
            for (verb, present) in [(&b"SADD"[..], true), (&b"SREM"[..], false)] {
                let mut args: Vec<&[u8]> = vec![verb, who.as_bytes()];
                args.extend(
                    nicks
                        .iter()
                        .filter(|&(_, &p)| p == present)
                        .map(|(n, _)| n.as_bytes()),
                );
                if args.len() > 2 {
                    side.command(&args, Wait::Ignore);
                }
            }
        }
        let counts = format!("{prefix}:rooms:{origin}");
        for (room, delta) in std::mem::take(&mut self.counts) {
            if delta != 0 {
                let by = delta.to_string();
                side.command(
                    &[
                        b"HINCRBY",
                        counts.as_bytes(),
                        room.as_bytes(),
                        by.as_bytes(),
                    ],
                    Wait::Ignore,
                );
            }
        }
        self.bytes = 0;
    }
}

/// A room with members on this loop, as the bus sees it.
#[derive(Debug)]
struct Room {
    /// Its name.
    name: Box<str>,
    /// Told apart from an earlier room in the same slab entry.
    serial: u32,
    /// Its members here.
    members: u32,
    /// Redis confirmed the subscription.
    subscribed: bool,
    /// Other servers are known to have members in it.
    spans: bool,
    /// Its members were told it is cut off, and not yet that it is whole.
    cut_off: bool,
    /// Our stream in it.
    stream: u32,
    /// The number of our last line in it.
    seq: u64,
    /// The other origins heard in it.
    heard: Vec<Heard>,
}

/// A loop's end of the bus. See the module docs.
#[derive(Debug)]
pub struct Bus {
    /// Where and how.
    config: BusConfig,
    /// Who we are.
    origin: Origin,
    /// `Sub` and `Cmd`.
    sides: [Side; 2],
    /// Rooms with members here.
    rooms: slab::Slab<Room>,
    /// Room name to its key in `rooms`.
    by_name: HashMap<Box<str>, usize>,
    /// Serial of the next room, and stream of its next opening.
    next_serial: u32,
    /// `PREFIX:room:`, the front of every room channel.
    room_channel: String,
    /// `PREFIX:probe:ORIGIN`, our probe channel.
    probe_channel: String,
    /// Members with a question out, and the epoch their answers carry.
    epochs: HashMap<usize, u32>,
    /// The next epoch.
    next_epoch: u32,
    /// What the loop and the hub have yet to do.
    events: Vec<Event>,
    /// The counters.
    stats: BusStats,
    /// As the bus stood at the last look (for logging changes once).
    state: BusState,
    /// When the state last became other than up (for the log line).
    down_since: u64,
    /// The subscriber's ping out: when sent (loop ms) and a precise clock.
    ping: Option<(u64, std::time::Instant)>,
    /// When the next ping is due.
    next_ping: u64,
    /// The number of the last probe sent, and of the last heard back.
    probes: (u64, u64),
    /// When the oldest probe not yet heard back was sent.
    probe_out: Option<u64>,
    /// When a message on a channel last came on the subscriber (loop ms).
    pushed_at: u64,
    /// The checks found past their deadline at the last tick
    /// (`LATE_*` bits): a second tick in a row gives the connection up.
    overdue: u8,
    /// When the next probe is due.
    next_probe: u64,
    /// When the lease is refreshed next.
    next_lease: u64,
    /// Presence was not written in full (an update did not fit the cap):
    /// write it afresh once the queue has room.
    dirty: bool,
    /// Members' arrivals and departures this turn, not yet commands.
    batch: PresenceBatch,
    /// The server is shutting down: no more connections or commands.
    closing: bool,
    /// Both connections have been ready at least once.
    ever_up: bool,
    /// This outage has been logged (one line for it, not one a retry).
    told: bool,
    /// The random state behind the retry jitter.
    rng: u64,
    /// Scratch for building commands.
    scratch: Vec<u8>,
}

impl Bus {
    /// A bus for the loop `origin`, not yet connected (the first
    /// [`Bus::tick`] asks for both connections).
    pub fn new(config: BusConfig, origin: Origin) -> Bus {
        let room_channel = format!("{}:room:", config.prefix);
        let probe_channel = format!("{}:probe:{origin}", config.prefix);
        Bus {
            rng: origin.node ^ u64::from(origin.lane).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            config,
            origin,
            sides: [Side::new(), Side::new()],
            rooms: slab::Slab::new(),
            by_name: HashMap::new(),
            next_serial: 1,
            room_channel,
            probe_channel,
            epochs: HashMap::new(),
            next_epoch: 1,
            events: Vec::new(),
            stats: BusStats::default(),
            state: BusState::Connecting,
            down_since: 0,
            ping: None,
            next_ping: 0,
            probes: (0, 0),
            probe_out: None,
            pushed_at: 0,
            overdue: 0,
            next_probe: 0,
            next_lease: 0,
            dirty: false,
            batch: PresenceBatch::default(),
            closing: false,
            ever_up: false,
            told: false,
            scratch: Vec::new(),
        }
    }

    /// Who this loop is on the bus.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// Where Redis is (for logs).
    pub fn addr(&self) -> &str {
        &self.config.addr
    }

    /// How the bus stands.
    pub fn state(&self) -> BusState {
        let stages = self.sides.iter().map(|s| s.stage);
        if stages.clone().all(|s| s == Stage::Ready) {
            BusState::Up
        } else if stages.clone().any(|s| matches!(s, Stage::Down { .. })) {
            BusState::Down
        } else {
            BusState::Connecting
        }
    }

    /// The counters, with the queue's size as of now.
    pub fn stats(&self) -> BusStats {
        BusStats {
            queued: self.sides.iter().map(Side::held).sum::<usize>() as u64,
            ..self.stats
        }
    }

    /// What the loop and the hub have yet to do, oldest first.
    pub fn events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// True if there is anything in [`Bus::events`].
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    // ---- the connections ------------------------------------------------

    /// Housekeeping at `now` (ms): connections to make, checks that
    /// failed, pings, probes, the lease. Call it a few times a second.
    ///
    /// A deadline gives a connection up only when two ticks in a row find
    /// it passed. Between them the loop reads the connection
    /// ([`Event::Look`]), whether or not `epoll_wait` has said so: a loop
    /// working through long turns on a crowded machine finds its clock
    /// seconds on, with the answer waiting unread in the socket (its
    /// readiness queued behind a thousand members'), and must not take
    /// that for silence.
    ///
    /// And a deadline counts from the last sign of life, not from the
    /// question alone: a ping's answer is due 3 s after the ping or after
    /// the last thing the subscriber heard, whichever is later; a
    /// command's reply 5 s after it was sent or after the last reply; the
    /// probe 6 s after it or the last message on any channel. Redis
    /// answers a subscriber's ping after every message queued for it, so
    /// a subscriber that is behind (its loop busy delivering a burst, as
    /// while a million members join their rooms, each join a notice to a
    /// room spread over 4 servers) is late with the pong while its stream
    /// is plainly alive; dropping it then lost what was in flight and made
    /// every server subscribe and write its presence again, 159-207 times
    /// over the 60 servers of a million-member run. A connection that
    /// delivers nothing at all is still given up as before.
    pub fn tick(&mut self, now: u64) {
        if self.closing {
            return;
        }
        for role in ROLES {
            let side = &mut self.sides[role.at()];
            let late = match side.stage {
                Stage::Down { retry_at } if now >= retry_at => {
                    side.stage = Stage::Connecting { since: now };
                    self.events.push(Event::Connect(role));
                    false
                }
                Stage::Connecting { since } | Stage::Greeting { since } => {
                    now.saturating_sub(since) >= GREETING_MS
                }
                _ => false,
            };
            if self.late_twice(LATE_GREETING[role.at()], late) {
                self.fail(role, now, "no answer in time", true);
            }
        }
        let cmd = &self.sides[Role::Cmd.at()];
        let late = cmd
            .waiting
            .front()
            .is_some_and(|w| now.saturating_sub(w.at.max(cmd.heard_at)) >= REPLY_MS);
        if self.late_twice(LATE_REPLY, late) {
            self.fail(Role::Cmd, now, "a command went unanswered for 5 s", true);
        }
        if self.sides[Role::Sub.at()].stage == Stage::Ready {
            self.check_subscriber(now);
        }
        if self.sides[Role::Cmd.at()].stage == Stage::Ready {
            self.keep_up(now);
        }
    }

    /// True if check `bit` is `late` now and was at the last tick too
    /// (see [`Bus::tick`]); remembers it for the next.
    fn late_twice(&mut self, bit: u8, late: bool) -> bool {
        let was = self.overdue & bit != 0;
        if late {
            self.overdue |= bit;
        } else {
            self.overdue &= !bit;
        }
        if late && !was {
            let role = if bit & checks_of(Role::Cmd) != 0 {
                Role::Cmd
            } else {
                Role::Sub
            };
            self.events.push(Event::Look(role));
        }
        late && was
    }

    /// The subscriber's checks: its ping, and the probe.
    fn check_subscriber(&mut self, now: u64) {
        let heard = self.sides[Role::Sub.at()].heard_at;
        let late =
            matches!(self.ping, Some((sent, _)) if now.saturating_sub(sent.max(heard)) >= PING_MS);
        if self.late_twice(LATE_PING, late) {
            return self.fail(Role::Sub, now, "no answer to a ping in 3 s", true);
        }
        if self.ping.is_none() && now >= self.next_ping {
            let side = &mut self.sides[Role::Sub.at()];
            resp::command(&mut side.out, &[b"PING"]);
            side.queued.push_back(Wait::Ping);
            self.ping = Some((now, std::time::Instant::now()));
            self.next_ping = now + PING_MS;
        }
        let pushed = self.pushed_at;
        let late = self
            .probe_out
            .is_some_and(|sent| now.saturating_sub(sent.max(pushed)) >= PROBE_BACK_MS);
        if self.late_twice(LATE_PROBE, late) {
            self.fail(
                Role::Sub,
                now,
                "the probe did not come back: the subscription is gone",
                true,
            );
        }
    }

    /// The command connection's rounds: the probe, the lease, and
    /// presence written afresh if an update was dropped.
    fn keep_up(&mut self, now: u64) {
        if now >= self.next_probe && self.sides[Role::Sub.at()].stage == Stage::Ready {
            self.next_probe = now + PROBE_MS;
            self.probes.0 += 1;
            let n = self.probes.0.to_string();
            let channel = self.probe_channel.clone();
            self.sides[Role::Cmd.at()]
                .command(&[b"PUBLISH", channel.as_bytes(), n.as_bytes()], Wait::Probe);
            self.probe_out.get_or_insert(now);
        }
        if now >= self.next_lease {
            self.next_lease = now + self.lease_ms() / 3;
            let key = format!("{}:node:{}", self.config.prefix, self.origin);
            let secs = self.config.lease.as_secs().max(1).to_string();
            self.sides[Role::Cmd.at()].command(
                &[b"SET", key.as_bytes(), b"1", b"EX", secs.as_bytes()],
                Wait::Ignore,
            );
        }
        if self.dirty && self.sides[Role::Cmd.at()].held() < self.config.queue_cap / 2 {
            self.dirty = false;
            self.greet_cmd(false);
            self.events.push(Event::Roster);
        }
    }

    /// The lease in ms (at least a second).
    fn lease_ms(&self) -> u64 {
        (self.config.lease.as_millis() as u64).max(1000)
    }

    /// Connection `role` is open (the TCP connect finished) at `now`: its
    /// greeting is queued (and, for `Cmd`, an [`Event::Roster`]).
    pub fn connected(&mut self, role: Role, now: u64) {
        let side = &mut self.sides[role.at()];
        side.stage = Stage::Greeting { since: now };
        side.unsent = 0;
        match role {
            Role::Sub => self.greet_sub(),
            Role::Cmd => {
                self.greet_cmd(true);
                self.events.push(Event::Roster);
            }
        }
    }

    /// The first words on a connection: `AUTH`, `CLIENT SETNAME`.
    fn hello(&mut self, role: Role) {
        let name = format!("{}-{}-{}", self.config.prefix, self.origin, role.name());
        let side = &mut self.sides[role.at()];
        match (&self.config.user, &self.config.password) {
            (Some(user), Some(pass)) => {
                side.command(&[b"AUTH", user.as_bytes(), pass.as_bytes()], Wait::Hello)
            }
            (None, Some(pass)) => side.command(&[b"AUTH", pass.as_bytes()], Wait::Hello),
            _ => {}
        }
        side.command(&[b"CLIENT", b"SETNAME", name.as_bytes()], Wait::Hello);
    }

    /// The subscriber's greeting, then every room subscribed again.
    fn greet_sub(&mut self) {
        self.hello(Role::Sub);
        let channel = self.probe_channel.clone();
        let side = &mut self.sides[Role::Sub.at()];
        resp::command(&mut side.out, &[b"SUBSCRIBE", channel.as_bytes()]);
        for room in self.rooms.iter_mut().map(|(_, r)| r) {
            room.subscribed = false;
        }
        let names: Vec<Box<str>> = self.rooms.iter().map(|(_, r)| r.name.clone()).collect();
        for batch in names.chunks(SUBSCRIBE_BATCH) {
            self.subscribe_all(batch);
        }
    }

    /// `SUBSCRIBE` for the rooms `names`, in one command.
    fn subscribe_all(&mut self, names: &[Box<str>]) {
        let side = &mut self.sides[Role::Sub.at()];
        resp::header(&mut side.out, b'*', names.len() + 1);
        resp::bulk(&mut side.out, b"SUBSCRIBE");
        for name in names {
            resp::header(&mut side.out, b'$', self.room_channel.len() + name.len());
            side.out.extend_from_slice(self.room_channel.as_bytes());
            side.out.extend_from_slice(name.as_bytes());
            side.out.extend_from_slice(b"\r\n");
        }
    }

    /// The command connection's greeting (with `hello` first, on a new
    /// connection): this origin's old entries wiped, its lease taken, and
    /// each room's count and presence set (its members follow, as the hub
    /// tells them with `present`).
    fn greet_cmd(&mut self, hello: bool) {
        // The greeting writes the rooms' counts as they stand, and the
        // roster every member anew: what the batch held is in them.
        self.batch = PresenceBatch::default();
        if hello {
            self.hello(Role::Cmd);
            if self.config.db != 0 {
                let db = self.config.db.to_string();
                self.sides[Role::Cmd.at()].command(&[b"SELECT", db.as_bytes()], Wait::Hello);
            }
        }
        let origin = self.origin.to_string();
        let secs = self.config.lease.as_secs().max(1).to_string();
        let prefix = self.config.prefix.clone();
        let side = &mut self.sides[Role::Cmd.at()];
        let wait = if hello { Wait::Hello } else { Wait::Ignore };
        side.command(
            &[
                b"EVAL",
                WIPE_SCRIPT.as_bytes(),
                b"0",
                prefix.as_bytes(),
                origin.as_bytes(),
                b"1",
                secs.as_bytes(),
            ],
            wait,
        );
        let counts = format!("{prefix}:rooms:{origin}");
        for (_, room) in &self.rooms {
            let n = room.members.to_string();
            side.command(
                &[
                    b"HSET",
                    counts.as_bytes(),
                    room.name.as_bytes(),
                    n.as_bytes(),
                ],
                Wait::Ignore,
            );
            let key = format!("{prefix}:where:{}", room.name);
            side.command(&[b"SADD", key.as_bytes(), origin.as_bytes()], Wait::Ignore);
        }
    }

    /// Connection `role` closed or failed at `now` (the loop saw it go).
    pub fn closed(&mut self, role: Role, now: u64) {
        if matches!(self.sides[role.at()].stage, Stage::Down { .. }) {
            return; // given up already (`Event::Drop`), or never opened
        }
        if self.closing {
            // Shutting down: gone as it should, no retry, nothing to tell.
            self.sides[role.at()].stage = Stage::Down { retry_at: u64::MAX };
            self.state = self.state();
            return;
        }
        let why = match self.sides[role.at()].stage {
            Stage::Connecting { .. } => "cannot connect",
            _ => "connection lost",
        };
        self.fail(role, now, why, false);
    }

    /// Connection `role` failed at `now` for `why`: down, a retry after
    /// the backoff, questions answered with regret, the state logged and
    /// the split told if it changed; `drop`: ask the loop to close it.
    fn fail(&mut self, role: Role, now: u64, why: &str, drop: bool) {
        let was = self.state();
        // Its checks start afresh on the next connection.
        self.overdue &= !checks_of(role);
        let side = &mut self.sides[role.at()];
        let first = RETRY_FIRST_MS << side.attempts.min(6);
        let delay = first.min(RETRY_MAX_MS);
        let jitter = next_random(&mut self.rng) % (delay / 2 + 1);
        side.stage = Stage::Down {
            retry_at: now + delay / 2 + jitter,
        };
        side.attempts = side.attempts.saturating_add(1);
        side.unsent = 0;
        // What was meant for this connection goes with it (a new one
        // starts with its own greeting); lines said meanwhile wait in the
        // backlog.
        side.out.clear();
        let lost: Vec<Wait> = side
            .waiting
            .drain(..)
            .map(|w| w.wait)
            .chain(side.queued.drain(..))
            .collect();
        if role == Role::Sub {
            self.ping = None;
            for (_, room) in &mut self.rooms {
                room.subscribed = false;
            }
        }
        self.probe_out = None;
        for wait in lost {
            self.regret(wait);
        }
        if drop {
            self.events.push(Event::Drop(role));
        }
        if was == BusState::Up {
            self.down_since = now;
            warn!(
                "bus: lost redis at {} ({} {why}); rooms that span servers are cut off; retrying",
                self.config.addr,
                role.name()
            );
            self.cut_off();
            self.told = true;
        } else if !self.told {
            self.told = true;
            warn!(
                "bus: cannot reach redis at {} ({} {why}); serving locally, retrying",
                self.config.addr,
                role.name()
            );
        }
        self.state = self.state();
    }

    /// A question lost with its connection: its member is told.
    fn regret(&mut self, wait: Wait) {
        match wait {
            Wait::Who { member, epoch, .. }
            | Wait::Rooms { member, epoch }
            | Wait::Claim { member, epoch, .. }
                if self.epochs.get(&member) == Some(&epoch) =>
            {
                self.events.push(Event::NoAnswer { member });
            }
            _ => {}
        }
    }

    /// Tells each room known to span servers, once, that it is cut off.
    fn cut_off(&mut self) {
        for (_, room) in &mut self.rooms {
            if room.spans && !room.cut_off {
                room.cut_off = true;
                self.events.push(Event::Notice {
                    room: room.name.clone(),
                    line: format!(
                        "* netsplit: {} is cut off from the other servers; lines said here are held for them, as many as fit\n",
                        room.name
                    )
                    .into(),
                });
            }
        }
    }

    /// Tells each cut-off room that is subscribed again that it is whole.
    fn heal(&mut self) {
        if self.state() != BusState::Up {
            return;
        }
        for (_, room) in &mut self.rooms {
            if room.cut_off && room.subscribed {
                room.cut_off = false;
                self.events.push(Event::Notice {
                    room: room.name.clone(),
                    line: format!("* netjoin: {} reaches the other servers again\n", room.name)
                        .into(),
                });
            }
        }
    }

    /// A connection's greeting was all answered: it is ready.
    fn ready(&mut self, role: Role, now: u64) {
        let lease = self.lease_ms();
        let side = &mut self.sides[role.at()];
        side.stage = Stage::Ready;
        if side.attempts > 0 && self.ever_up {
            self.stats.reconnects += 1;
        }
        side.attempts = 0;
        if role == Role::Sub {
            self.next_ping = now + PING_MS;
        } else {
            self.next_lease = now + lease / 3;
            self.next_probe = now;
            // Lines said while it was not ready go now, in order.
            let backlog = std::mem::take(&mut side.backlog);
            side.out.extend_from_slice(&backlog);
            let waits = std::mem::take(&mut side.backlog_waits);
            side.queued.extend(waits);
        }
        if self.state() == BusState::Up && self.state != BusState::Up {
            if self.ever_up {
                info!(
                    "bus: redis at {} is back after {} ms; rooms span servers again",
                    self.config.addr,
                    now.saturating_sub(self.down_since)
                );
            } else {
                info!("bus: connected to redis at {}", self.config.addr);
            }
            self.ever_up = true;
            self.told = false;
        }
        self.state = self.state();
        self.heal();
    }

    /// Hands connection `role`'s queued commands to `send` (its socket's
    /// output) at `now`, if it is open; `unsent` is what that socket still
    /// holds. Call it once per loop turn, before the loop sleeps.
    pub fn take_output(&mut self, role: Role, now: u64, unsent: usize, send: impl FnOnce(&[u8])) {
        if role == Role::Cmd && self.cmd_open() {
            self.write_batch();
        }
        let side = &mut self.sides[role.at()];
        side.unsent = unsent;
        if !side.stage.open() || side.out.is_empty() {
            return;
        }
        send(&side.out);
        side.unsent += side.out.len();
        side.out.clear();
        side.waiting
            .extend(side.queued.drain(..).map(|wait| Waiting { at: now, wait }));
    }

    /// True if connection `role` has commands to hand over.
    pub fn has_output(&self, role: Role) -> bool {
        let side = &self.sides[role.at()];
        side.stage.open() && (!side.out.is_empty() || (role == Role::Cmd && !self.batch.is_empty()))
    }

    /// The server is shutting down: this origin's entries are wiped and
    /// its lease given up (on `Cmd`, if open); nothing is sent after.
    pub fn goodbye(&mut self) {
        if self.closing {
            return;
        }
        self.closing = true;
        // The wipe takes every entry away; nothing may follow it.
        self.batch = PresenceBatch::default();
        let side = &mut self.sides[Role::Cmd.at()];
        if side.stage.open() {
            let origin = self.origin.to_string();
            side.command(
                &[
                    b"EVAL",
                    WIPE_SCRIPT.as_bytes(),
                    b"0",
                    self.config.prefix.as_bytes(),
                    origin.as_bytes(),
                    b"0",
                    b"0",
                ],
                Wait::Ignore,
            );
        }
    }

    // ---- what Redis says -------------------------------------------------

    /// Bytes from connection `role` at `now`: every whole reply is used,
    /// lines from other servers go to `deliver(room, line)`; returns how
    /// many bytes were used. An error (not RESP2, or an answer that makes
    /// no sense) means the connection must go: the bus is already down on
    /// it and retrying.
    pub fn input(
        &mut self,
        role: Role,
        data: &[u8],
        now: u64,
        deliver: &mut impl FnMut(&str, &[u8]),
    ) -> Result<usize, String> {
        let mut used = 0;
        while used < data.len() {
            let (value, n) = match resp::decode(&data[used..]) {
                Ok(Some(v)) => v,
                Ok(None) => break,
                Err(e) => {
                    let why = format!("not RESP2 ({e})");
                    self.fail(role, now, &why, false);
                    return Err(why);
                }
            };
            used += n;
            self.sides[role.at()].heard_at = now;
            let ok = match role {
                Role::Sub => self.on_sub(&value, now, deliver),
                Role::Cmd => self.on_cmd(&value, now),
            };
            if let Err(why) = ok {
                self.fail(role, now, &why, false);
                return Err(why);
            }
        }
        Ok(used)
    }

    /// One reply or push on the subscriber.
    fn on_sub(
        &mut self,
        value: &Value<'_>,
        now: u64,
        deliver: &mut impl FnMut(&str, &[u8]),
    ) -> Result<(), String> {
        let items = value.items();
        let kind = items.first().and_then(Value::bytes);
        match (kind, items.get(1).and_then(Value::bytes), items.get(2)) {
            (Some(b"message"), Some(channel), Some(payload)) => {
                self.pushed_at = now;
                let payload = payload.bytes().unwrap_or_default();
                self.on_message(channel, payload, deliver);
                Ok(())
            }
            (Some(b"subscribe"), Some(channel), _) => {
                self.on_subscribed(channel, now);
                Ok(())
            }
            (Some(b"unsubscribe"), _, _) => Ok(()),
            (Some(b"pong"), _, _) => match self.sides[Role::Sub.at()].waiting.pop_front() {
                Some(Waiting {
                    wait: Wait::Ping, ..
                }) => {
                    if let Some((_, at)) = self.ping.take() {
                        self.stats.rtt_us = at.elapsed().as_micros() as u64;
                    }
                    Ok(())
                }
                other => Err(format!("a pong where {other:?} was awaited")),
            },
            _ => self.on_sub_reply(value),
        }
    }

    /// A plain reply on the subscriber: its greeting's, or a sign that it
    /// is not subscribed at all (`+PONG` to a ping: a new connection
    /// behind a proxy).
    fn on_sub_reply(&mut self, value: &Value<'_>) -> Result<(), String> {
        let side = &mut self.sides[Role::Sub.at()];
        match side.waiting.pop_front().map(|w| w.wait) {
            // Ready once the probe's subscription is confirmed, next.
            Some(Wait::Hello) => match value {
                Value::Error(e) => Err(format!("redis refused: {}", String::from_utf8_lossy(e))),
                _ => Ok(()),
            },
            Some(Wait::Ping) => Err("a ping answered as if not subscribed".into()),
            other => Err(format!("unexpected reply {value:?} (awaiting {other:?})")),
        }
    }

    /// Redis confirmed a subscription.
    fn on_subscribed(&mut self, channel: &[u8], now: u64) {
        if channel == self.probe_channel.as_bytes() {
            // The greeting's last answer (replies come in order).
            if self.sides[Role::Sub.at()].stage != Stage::Ready {
                self.ready(Role::Sub, now);
            }
            return;
        }
        if let Some(room) = self.room_of(channel) {
            room.subscribed = true;
            if room.cut_off {
                self.heal();
            }
        }
    }

    /// The room a channel is for, if it has members here.
    fn room_of(&mut self, channel: &[u8]) -> Option<&mut Room> {
        let name = channel.strip_prefix(self.room_channel.as_bytes())?;
        let name = std::str::from_utf8(name).ok()?;
        let &key = self.by_name.get(name)?;
        self.rooms.get_mut(key)
    }

    /// A line published on a channel: delivered unless it is our own
    /// process's, a repeat, or for a room with nobody here.
    fn on_message(
        &mut self,
        channel: &[u8],
        payload: &[u8],
        deliver: &mut impl FnMut(&str, &[u8]),
    ) {
        if channel == self.probe_channel.as_bytes() {
            let n = std::str::from_utf8(payload)
                .ok()
                .and_then(|s| s.parse().ok());
            if let Some(n) = n {
                self.probes.1 = self.probes.1.max(n);
                if self.probes.1 >= self.probes.0 {
                    self.probe_out = None;
                }
            }
            return;
        }
        let Some((origin, stream, seq, line)) = parse_envelope(payload) else {
            return; // not ours: someone else publishing on our channels
        };
        if origin.node == self.origin.node {
            return; // our own process: its loops heard it directly
        }
        let Some(name) = channel.strip_prefix(self.room_channel.as_bytes()) else {
            return;
        };
        let Some(room) = std::str::from_utf8(name)
            .ok()
            .and_then(|name| self.by_name.get(name))
            .and_then(|&key| self.rooms.get_mut(key))
        else {
            return; // nobody here any more
        };
        room.spans = true;
        if !take_in_order(&mut room.heard, origin, stream, seq, &mut self.stats.lost) {
            return;
        }
        self.stats.received += 1;
        deliver(&room.name, line);
    }

    /// One reply on the command connection, matched to what it answers.
    fn on_cmd(&mut self, value: &Value<'_>, now: u64) -> Result<(), String> {
        let side = &mut self.sides[Role::Cmd.at()];
        let Some(Waiting { wait, .. }) = side.waiting.pop_front() else {
            return Err(format!("a reply nothing awaited: {value:?}"));
        };
        if let (Value::Error(e), Wait::Hello) = (value, &wait) {
            return Err(format!("redis refused: {}", String::from_utf8_lossy(e)));
        }
        match wait {
            Wait::Hello => {
                let side = &self.sides[Role::Cmd.at()];
                if !side.waiting.iter().any(|w| matches!(w.wait, Wait::Hello)) {
                    self.ready(Role::Cmd, now);
                }
            }
            Wait::Ignore | Wait::Ping => {
                if let Value::Error(e) = value {
                    warn!(
                        "bus: redis refused a command: {}",
                        String::from_utf8_lossy(e)
                    );
                }
            }
            Wait::Publish { room, serial } => {
                self.stats.published += 1;
                if let (Some(n), Some(r)) = (value.int(), self.rooms.get_mut(room as usize))
                    && r.serial == serial
                {
                    r.spans = n > 1;
                }
            }
            Wait::NumSub { room, serial } => {
                let n = value.items().get(1).and_then(Value::int);
                if let (Some(n), Some(r)) = (n, self.rooms.get_mut(room as usize))
                    && r.serial == serial
                {
                    r.spans |= n > 1;
                }
            }
            Wait::Probe => {
                if value.int() == Some(0) && self.sides[Role::Sub.at()].stage == Stage::Ready {
                    self.fail(
                        Role::Sub,
                        now,
                        "the probe reached no subscriber: the subscription is gone",
                        true,
                    );
                }
            }
            Wait::Who {
                member,
                epoch,
                room,
            } => self.on_who(member, epoch, room, value),
            Wait::Rooms { member, epoch } => self.on_rooms(member, epoch, value),
            Wait::Claim {
                member,
                epoch,
                nick,
            } => {
                if self.epochs.get(&member) == Some(&epoch) {
                    let ok = value.int() == Some(1);
                    self.events.push(Event::Nick { member, nick, ok });
                }
            }
            Wait::Reclaim { member, nick } => {
                if value.int() == Some(0) {
                    self.events.push(Event::NickLost { member, nick });
                }
            }
        }
        Ok(())
    }

    /// The answer to a `/who`: `[total, [names]]`.
    fn on_who(&mut self, member: usize, epoch: u32, room: Box<str>, value: &Value<'_>) {
        if self.epochs.get(&member) != Some(&epoch) {
            return; // the member is gone
        }
        let items = value.items();
        let (Some(total), Some(list)) = (items.first().and_then(Value::int), items.get(1)) else {
            self.events.push(Event::NoAnswer { member });
            return;
        };
        let names = list
            .items()
            .iter()
            .filter_map(Value::bytes)
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
        self.events.push(Event::Who {
            member,
            room,
            names,
            total: total.max(0) as u64,
        });
    }

    /// The answer to a `/rooms`: `[total, name, count, ...]`.
    fn on_rooms(&mut self, member: usize, epoch: u32, value: &Value<'_>) {
        if self.epochs.get(&member) != Some(&epoch) {
            return;
        }
        let items = value.items();
        let Some(total) = items.first().and_then(Value::int) else {
            self.events.push(Event::NoAnswer { member });
            return;
        };
        let rooms = items[1..]
            .chunks_exact(2)
            .filter_map(|kv| {
                let name = String::from_utf8_lossy(kv[0].bytes()?).into_owned();
                Some((name, kv[1].int()?.max(0) as u64))
            })
            .collect();
        self.events.push(Event::Rooms {
            member,
            rooms,
            total: total.max(0) as u64,
        });
    }

    // ---- what the hub says -----------------------------------------------

    /// True while commands can be queued on `Cmd` (it is open).
    fn cmd_open(&self) -> bool {
        !self.closing && self.sides[Role::Cmd.at()].stage.open()
    }

    /// Queues a presence update unless `Cmd` is closed (the next greeting
    /// writes presence afresh) or the queue is full (then later, in full).
    fn presence(&mut self, args: &[&[u8]]) {
        if !self.cmd_open() {
            return;
        }
        self.write_batch();
        let side = &mut self.sides[Role::Cmd.at()];
        if side.held() + args.iter().map(|a| a.len() + 16).sum::<usize>() > self.config.queue_cap {
            self.dirty = true;
            return;
        }
        side.command(args, Wait::Ignore);
    }

    /// Batches a member's change (see [`PresenceBatch`]), unless it would
    /// pass the queue cap: then presence is written afresh later.
    fn batch_change(&mut self, room: &str, nick: &str, present: bool, count: i64) {
        if !self.cmd_open() {
            return;
        }
        let held = self.sides[Role::Cmd.at()].held() + self.batch.bytes;
        if held + room.len() + nick.len() + 64 > self.config.queue_cap {
            self.dirty = true;
            return;
        }
        self.batch.change(room, nick, present, count);
    }

    /// Queues the presence batch as commands, if anything waits in it.
    fn write_batch(&mut self) {
        if !self.batch.is_empty() {
            let side = &mut self.sides[Role::Cmd.at()];
            self.batch.write(side, &self.config.prefix, self.origin);
        }
    }

    /// The first member of `room` on this loop arrived: subscribe.
    pub fn subscribe(&mut self, room: &str) {
        if self.by_name.contains_key(room) {
            return;
        }
        let serial = self.next_serial;
        self.next_serial = self.next_serial.wrapping_add(1).max(1);
        let key = self.rooms.insert(Room {
            name: room.into(),
            serial,
            members: 0,
            subscribed: false,
            spans: false,
            cut_off: false,
            stream: serial,
            seq: 0,
            heard: Vec::new(),
        });
        self.by_name.insert(room.into(), key);
        if !self.closing && self.sides[Role::Sub.at()].stage.open() {
            self.subscribe_all(&[room.into()]);
        }
        let origin = self.origin.to_string();
        let where_key = format!("{}:where:{room}", self.config.prefix);
        self.presence(&[b"SADD", where_key.as_bytes(), origin.as_bytes()]);
        if self.cmd_open() {
            let channel = format!("{}{room}", self.room_channel);
            self.sides[Role::Cmd.at()].command(
                &[b"PUBSUB", b"NUMSUB", channel.as_bytes()],
                Wait::NumSub {
                    room: key as u32,
                    serial,
                },
            );
        }
    }

    /// The last member of `room` on this loop left: unsubscribe, and
    /// withdraw from the room's presence.
    pub fn unsubscribe(&mut self, room: &str) {
        let Some(key) = self.by_name.remove(room) else {
            return;
        };
        self.rooms.remove(key);
        if !self.closing && self.sides[Role::Sub.at()].stage.open() {
            let channel = format!("{}{room}", self.room_channel);
            let side = &mut self.sides[Role::Sub.at()];
            resp::command(&mut side.out, &[b"UNSUBSCRIBE", channel.as_bytes()]);
        }
        let origin = self.origin.to_string();
        let prefix = &self.config.prefix;
        let where_key = format!("{prefix}:where:{room}");
        let who = format!("{prefix}:who:{room}:{origin}");
        let counts = format!("{prefix}:rooms:{origin}");
        self.presence(&[b"SREM", where_key.as_bytes(), origin.as_bytes()]);
        self.presence(&[b"DEL", who.as_bytes()]);
        self.presence(&[b"HDEL", counts.as_bytes(), room.as_bytes()]);
    }

    /// Member `nick` is in `room` here (it joined, or the roster says so
    /// after a greeting: `counted` false, the count was set already).
    pub fn present(&mut self, room: &str, nick: &str, counted: bool) {
        if counted && let Some(r) = self.by_name.get(room).and_then(|&k| self.rooms.get_mut(k)) {
            r.members += 1;
        }
        self.batch_change(room, nick, true, i64::from(counted));
    }

    /// Member `member` (`nick`) left `room` here.
    pub fn absent(&mut self, room: &str, nick: &str) {
        let Some(r) = self.by_name.get(room).and_then(|&k| self.rooms.get_mut(k)) else {
            return; // the room went with it (`unsubscribe` withdrew it all)
        };
        r.members = r.members.saturating_sub(1);
        self.batch_change(room, nick, false, -1);
    }

    /// Member `member` disconnected: answers still coming for it are
    /// dropped.
    pub fn gone(&mut self, member: usize) {
        self.epochs.remove(&member);
    }

    /// A member of `room` here changed its nick from `old` to `new`.
    pub fn renamed(&mut self, room: &str, old: &str, new: &str) {
        self.batch_change(room, old, false, 0);
        self.batch_change(room, new, true, 0);
    }

    /// A member let custom nick `nick` go.
    pub fn release(&mut self, nick: &str) {
        let origin = self.origin.to_string();
        let prefix = self.config.prefix.clone();
        self.presence(&[
            b"EVAL",
            RELEASE_SCRIPT.as_bytes(),
            b"0",
            prefix.as_bytes(),
            nick.as_bytes(),
            origin.as_bytes(),
        ]);
    }

    /// After a greeting: member `member` holds custom nick `nick` here;
    /// claim it again (an [`Event::NickLost`] if someone took it since).
    pub fn reclaim(&mut self, member: usize, nick: &str) {
        if !self.cmd_open() {
            return;
        }
        let origin = self.origin.to_string();
        let prefix = self.config.prefix.clone();
        self.sides[Role::Cmd.at()].command(
            &[
                b"EVAL",
                CLAIM_SCRIPT.as_bytes(),
                b"0",
                prefix.as_bytes(),
                nick.as_bytes(),
                origin.as_bytes(),
            ],
            Wait::Reclaim {
                member,
                nick: nick.into(),
            },
        );
    }

    /// Member `member` asks what only Redis knows.
    pub fn ask(&mut self, member: usize, ask: Ask<'_>) -> Asked {
        if self.closing || self.sides[Role::Cmd.at()].stage != Stage::Ready {
            return Asked::Unreachable;
        }
        // A member that joined this turn and asks at once sees itself.
        self.write_batch();
        let next = &mut self.next_epoch;
        let epoch = *self.epochs.entry(member).or_insert_with(|| {
            let e = *next;
            *next = next.wrapping_add(1);
            e
        });
        let prefix = self.config.prefix.clone();
        let origin = self.origin.to_string();
        let max = MAX_LISTED.to_string();
        let side = &mut self.sides[Role::Cmd.at()];
        match ask {
            Ask::Who(room) => side.command(
                &[
                    b"EVAL",
                    WHO_SCRIPT.as_bytes(),
                    b"0",
                    prefix.as_bytes(),
                    room.as_bytes(),
                    max.as_bytes(),
                ],
                Wait::Who {
                    member,
                    epoch,
                    room: room.into(),
                },
            ),
            Ask::Rooms => side.command(
                &[
                    b"EVAL",
                    ROOMS_SCRIPT.as_bytes(),
                    b"0",
                    prefix.as_bytes(),
                    max.as_bytes(),
                ],
                Wait::Rooms { member, epoch },
            ),
            Ask::Nick(nick) => side.command(
                &[
                    b"EVAL",
                    CLAIM_SCRIPT.as_bytes(),
                    b"0",
                    prefix.as_bytes(),
                    nick.as_bytes(),
                    origin.as_bytes(),
                ],
                Wait::Claim {
                    member,
                    epoch,
                    nick: nick.into(),
                },
            ),
        }
        Asked::Sent
    }

    /// A line said in `room` here: publish it to the other servers, or
    /// drop it (counted) if the queue is at its cap.
    pub fn publish(&mut self, room: &str, line: &[u8]) {
        if self.closing {
            return;
        }
        let Some(&key) = self.by_name.get(room) else {
            return; // nobody here: the hub only publishes for its rooms
        };
        let Some(r) = self.rooms.get_mut(key) else {
            return;
        };
        let side = &mut self.sides[Role::Cmd.at()];
        let head = &mut self.scratch;
        head.clear();
        // Writing to a Vec cannot fail.
        let _ = writeln!(head, "1 {} {} {}", self.origin, r.stream, r.seq + 1);
        let channel_len = self.room_channel.len() + room.len();
        let cost = head.len() + line.len() + channel_len + 40 + WAIT_COST;
        if side.held() + cost > self.config.queue_cap {
            self.stats.dropped += 1;
            return;
        }
        r.seq += 1;
        let (out, waits) = if side.stage == Stage::Ready {
            (&mut side.out, &mut side.queued)
        } else {
            (&mut side.backlog, &mut side.backlog_waits)
        };
        resp::header(out, b'*', 3);
        resp::bulk(out, b"PUBLISH");
        resp::header(out, b'$', channel_len);
        out.extend_from_slice(self.room_channel.as_bytes());
        out.extend_from_slice(room.as_bytes());
        out.extend_from_slice(b"\r\n");
        resp::header(out, b'$', head.len() + line.len());
        out.extend_from_slice(head);
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
        waits.push_back(Wait::Publish {
            room: key as u32,
            serial: r.serial,
        });
    }
}

/// xorshift64: the jitter's random numbers (no need for more).
fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

/// A node id for this process: 64 random bits from the OS's hasher keys.
pub fn random_node() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}
