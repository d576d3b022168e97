//! The server's counters, as `/stats`, `/metrics` and `Handle::stats`
//! show them: the loop's own (`core::Counters`) and the protocols', kept
//! as plain integers by the one thread that owns them (no atomics on the
//! hot path), copied out as a snapshot a few times a second for other
//! threads and at exit. The one list of figures both formats print is
//! here too (`Figures`).

use std::fmt;
use std::io::Write as _;

use crate::core::Counters;
use crate::service::http::Site;

/// Counters and gauges of one reactor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted (and kept) since start.
    pub accepted: u64,
    /// Connections turned away at `--max-conns`.
    pub refused: u64,
    /// Connections open now (gauge).
    pub open: u64,
    /// Connections closed since start.
    pub closed: u64,
    /// Bytes read from clients (TCP, Unix and UDP).
    pub bytes_in: u64,
    /// Bytes written to clients (TCP, Unix and UDP).
    pub bytes_out: u64,
    /// Readiness events handled.
    pub events: u64,
    /// Polls that returned at least one event.
    pub wakeups: u64,
    /// Loop iterations (polls, including timeouts).
    pub iterations: u64,
    /// Connections closed by a deadline (idle, linger, flush).
    pub timeouts: u64,
    /// Chat members dropped for not reading (output caps).
    pub slow_dropped: u64,
    /// UDP datagrams received.
    pub udp_in: u64,
    /// UDP datagrams sent back.
    pub udp_out: u64,
    /// UDP replies dropped because the send queue was full.
    pub udp_dropped: u64,
    /// Accept errors for lack of fds (EMFILE/ENFILE), each retried later.
    pub accept_errors: u64,
    /// HTTP responses sent.
    pub http_requests: u64,
    /// HTTP connections upgraded to WebSocket.
    pub ws_upgrades: u64,
    /// WebSocket messages received (whole, reassembled).
    pub ws_messages: u64,
    /// Connections evicted because all of them together held more than
    /// `--max-client-memory`.
    pub evicted: u64,
    /// Times the connections together went over `--max-client-memory`.
    pub memory_episodes: u64,
    /// Bytes of buffer storage the connections hold now (gauge).
    pub client_memory: u64,
    /// Connections open now, by the service they speak (gauges).
    pub open_by: OpenBy,
    /// The Redis bus (`--bus`), if there is one.
    pub bus: BusFigures,
    /// The game (`--game`, `/game/ws`), once it has an arena.
    pub game: crate::service::game::GameStats,
}

/// The chat bus's figures (all zero without `--bus`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BusFigures {
    /// 0: no bus; 1: down; 2: connecting; 3: up. Over several loops, the
    /// worst of them.
    pub state: u64,
    /// Lines published to Redis (acknowledged).
    pub published: u64,
    /// Lines from other servers delivered here.
    pub received: u64,
    /// Lines not sent: the queue to Redis was full.
    pub dropped: u64,
    /// Lines from other servers that never arrived (gaps in their numbers).
    pub lost: u64,
    /// The last ping's round trip, in microseconds (the largest over loops).
    pub rtt_us: u64,
    /// Connections to Redis made again after one was lost.
    pub reconnects: u64,
    /// Bytes waiting for Redis now.
    pub queued: u64,
}

impl Stats {
    /// These counters with `bus`'s figures, if there is a bus.
    pub fn with_bus(mut self, bus: Option<&crate::service::bus::Bus>) -> Stats {
        if let Some(bus) = bus {
            self.bus = BusFigures::of(bus);
        }
        self
    }
}

impl Stats {
    /// These counters with the game's, if it has an arena.
    pub fn with_game(mut self, game: Option<crate::service::game::GameStats>) -> Stats {
        if let Some(game) = game {
            self.game = game;
        }
        self
    }
}

impl BusFigures {
    /// The figures of one loop's bus.
    pub fn of(bus: &crate::service::bus::Bus) -> BusFigures {
        let s = bus.stats();
        BusFigures {
            state: bus.state() as u64,
            published: s.published,
            received: s.received,
            dropped: s.dropped,
            lost: s.lost,
            rtt_us: s.rtt_us,
            reconnects: s.reconnects,
            queued: s.queued,
        }
    }
}

impl std::ops::AddAssign for BusFigures {
    fn add_assign(&mut self, o: BusFigures) {
        let BusFigures {
            state,
            published,
            received,
            dropped,
            lost,
            rtt_us,
            reconnects,
            queued,
        } = o;
        self.state = match (self.state, state) {
            (0, s) | (s, 0) => s,
            (a, b) => a.min(b),
        };
        self.published += published;
        self.received += received;
        self.dropped += dropped;
        self.lost += lost;
        self.rtt_us = self.rtt_us.max(rtt_us);
        self.reconnects += reconnects;
        self.queued += queued;
    }
}

impl Stats {
    /// The loop's `counters` with the protocols' figures in `self`, and
    /// the gauges `open` and `client_memory` as of now.
    pub fn with_core(mut self, counters: &Counters, open: usize, client_memory: usize) -> Stats {
        let Counters {
            accepted,
            refused,
            closed,
            bytes_in,
            bytes_out,
            events,
            wakeups,
            iterations,
            timeouts,
            accept_errors,
            evicted,
            memory_episodes,
        } = *counters;
        self.accepted = accepted;
        self.refused = refused;
        self.closed = closed;
        self.bytes_in += bytes_in;
        self.bytes_out += bytes_out;
        self.events = events;
        self.wakeups = wakeups;
        self.iterations = iterations;
        self.timeouts = timeouts;
        self.accept_errors = accept_errors;
        self.evicted = evicted;
        self.memory_episodes = memory_episodes;
        self.open = open as u64;
        self.client_memory = client_memory as u64;
        self
    }
}

/// Open connections by service (gauges). TLS connections count under the
/// service they carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenBy {
    /// Greet connections (only while the greeting goes out).
    pub greet: u64,
    /// TCP echo, plain or TLS.
    pub echo: u64,
    /// Line chat members.
    pub chat: u64,
    /// Unix-socket echo.
    pub unix: u64,
    /// HTTP, plain or TLS.
    pub http: u64,
    /// WebSocket chat members.
    pub ws: u64,
}

impl std::ops::AddAssign for OpenBy {
    fn add_assign(&mut self, o: OpenBy) {
        let OpenBy {
            greet,
            echo,
            chat,
            unix,
            http,
            ws,
        } = o;
        self.greet += greet;
        self.echo += echo;
        self.chat += chat;
        self.unix += unix;
        self.http += http;
        self.ws += ws;
    }
}

impl std::ops::AddAssign for Stats {
    /// Sums another loop's counters into these (gauges add up too).
    fn add_assign(&mut self, o: Stats) {
        let Stats {
            accepted,
            refused,
            open,
            closed,
            bytes_in,
            bytes_out,
            events,
            wakeups,
            iterations,
            timeouts,
            slow_dropped,
            udp_in,
            udp_out,
            udp_dropped,
            accept_errors,
            http_requests,
            ws_upgrades,
            ws_messages,
            evicted,
            memory_episodes,
            client_memory,
            open_by,
            bus,
            game,
        } = o;
        self.accepted += accepted;
        self.refused += refused;
        self.open += open;
        self.closed += closed;
        self.bytes_in += bytes_in;
        self.bytes_out += bytes_out;
        self.events += events;
        self.wakeups += wakeups;
        self.iterations += iterations;
        self.timeouts += timeouts;
        self.slow_dropped += slow_dropped;
        self.udp_in += udp_in;
        self.udp_out += udp_out;
        self.udp_dropped += udp_dropped;
        self.accept_errors += accept_errors;
        self.http_requests += http_requests;
        self.ws_upgrades += ws_upgrades;
        self.ws_messages += ws_messages;
        self.evicted += evicted;
        self.memory_episodes += memory_episodes;
        self.client_memory += client_memory;
        self.open_by += open_by;
        self.bus += bus;
        self.game += game;
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accepted={} refused={} open={} closed={} timeouts={} slow_dropped={} \
             bytes_in={} bytes_out={} udp_in={} udp_out={} udp_dropped={} \
             http_requests={} events={} wakeups={} iterations={} accept_errors={} evicted={}",
            self.accepted,
            self.refused,
            self.open,
            self.closed,
            self.timeouts,
            self.slow_dropped,
            self.bytes_in,
            self.bytes_out,
            self.udp_in,
            self.udp_out,
            self.udp_dropped,
            self.http_requests,
            self.events,
            self.wakeups,
            self.iterations,
            self.accept_errors,
            self.evicted
        )
    }
}

/// What `/stats` and `/metrics` show: the loop's counters and gauges.
pub struct Figures<'a> {
    /// The counters, with the gauges as of now.
    pub stats: &'a Stats,
    /// Chat members now.
    pub members: usize,
    /// Chat rooms now.
    pub rooms: usize,
    /// Milliseconds since the loop started (the dashboard's clock).
    pub uptime_ms: u64,
}

impl Figures<'_> {
    /// Every figure as (name, kind, help, value): one list for both formats.
    fn figures(&self) -> [(&'static str, &'static str, &'static str, u64); 40] {
        let s = self.stats;
        let by = s.open_by;
        let bus = s.bus;
        [
            ("accepted", "counter", "Connections accepted.", s.accepted),
            (
                "refused",
                "counter",
                "Connections refused at max-conns.",
                s.refused,
            ),
            ("open", "gauge", "Connections open.", s.open),
            ("open_greet", "gauge", "Greet connections open.", by.greet),
            (
                "open_echo",
                "gauge",
                "Echo connections open (TCP and TLS).",
                by.echo,
            ),
            (
                "open_chat",
                "gauge",
                "Line chat members connected.",
                by.chat,
            ),
            (
                "open_unix",
                "gauge",
                "Unix-socket echo connections open.",
                by.unix,
            ),
            (
                "open_http",
                "gauge",
                "HTTP connections open (plain and TLS).",
                by.http,
            ),
            (
                "open_ws",
                "gauge",
                "WebSocket chat members connected.",
                by.ws,
            ),
            ("closed", "counter", "Connections closed.", s.closed),
            (
                "timeouts",
                "counter",
                "Connections closed by a deadline.",
                s.timeouts,
            ),
            (
                "slow_dropped",
                "counter",
                "Chat members dropped for not reading.",
                s.slow_dropped,
            ),
            (
                "bytes_in",
                "counter",
                "Bytes read from clients.",
                s.bytes_in,
            ),
            (
                "bytes_out",
                "counter",
                "Bytes written to clients.",
                s.bytes_out,
            ),
            (
                "http_requests",
                "counter",
                "HTTP responses sent.",
                s.http_requests,
            ),
            (
                "ws_upgrades",
                "counter",
                "HTTP connections upgraded to WebSocket.",
                s.ws_upgrades,
            ),
            (
                "ws_messages",
                "counter",
                "WebSocket messages received.",
                s.ws_messages,
            ),
            ("udp_in", "counter", "UDP datagrams received.", s.udp_in),
            ("udp_out", "counter", "UDP datagrams sent.", s.udp_out),
            (
                "udp_dropped",
                "counter",
                "UDP replies dropped (queue full).",
                s.udp_dropped,
            ),
            ("events", "counter", "Readiness events handled.", s.events),
            (
                "wakeups",
                "counter",
                "Polls that returned events.",
                s.wakeups,
            ),
            ("iterations", "counter", "Loop iterations.", s.iterations),
            (
                "accept_errors",
                "counter",
                "Accept errors for lack of fds.",
                s.accept_errors,
            ),
            (
                "client_memory",
                "gauge",
                "Bytes of buffers the connections hold.",
                s.client_memory,
            ),
            (
                "evicted",
                "counter",
                "Connections evicted at --max-client-memory.",
                s.evicted,
            ),
            (
                "memory_episodes",
                "counter",
                "Times the connections went over --max-client-memory.",
                s.memory_episodes,
            ),
            (
                "chat_members",
                "gauge",
                "Chat members now (TCP and WebSocket).",
                self.members as u64,
            ),
            ("chat_rooms", "gauge", "Chat rooms now.", self.rooms as u64),
            (
                "bus_state",
                "gauge",
                "Redis bus: 0 none, 1 down, 2 connecting, 3 up.",
                bus.state,
            ),
            (
                "bus_published",
                "counter",
                "Chat lines published to the bus.",
                bus.published,
            ),
            (
                "bus_received",
                "counter",
                "Chat lines from other servers delivered here.",
                bus.received,
            ),
            (
                "bus_dropped",
                "counter",
                "Chat lines not sent: the queue to Redis was full.",
                bus.dropped,
            ),
            (
                "bus_lost",
                "counter",
                "Chat lines from other servers that never arrived.",
                bus.lost,
            ),
            (
                "bus_rtt_us",
                "gauge",
                "Round trip of the last ping to Redis, microseconds.",
                bus.rtt_us,
            ),
            (
                "bus_reconnects",
                "counter",
                "Connections to Redis made again after one was lost.",
                bus.reconnects,
            ),
            (
                "bus_queued",
                "gauge",
                "Bytes waiting to be sent to Redis.",
                bus.queued,
            ),
            (
                "rss_kib",
                "gauge",
                "Resident memory of this process, KiB.",
                rss_kib(),
            ),
            (
                "pid",
                "gauge",
                "Process id of this server.",
                std::process::id() as u64,
            ),
            (
                "uptime_ms",
                "counter",
                "Milliseconds since this loop started.",
                self.uptime_ms,
            ),
        ]
    }
}

/// This process's resident memory in KiB (`VmRSS` of `/proc/self/status`;
/// 0 where there is no `/proc`).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

impl Site for Figures<'_> {
    fn stats_json(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        let game = self.stats.game.figures();
        for (i, (name, _, _, value)) in self.figures().iter().chain(&game).enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(out, "{sep}\"{name}\":{value}");
        }
        out.extend_from_slice(b"}\n");
    }

    fn metrics_text(&self, out: &mut Vec<u8>) {
        for (name, kind, help, value) in self.figures().into_iter().chain(self.stats.game.figures())
        {
            let _ = write!(
                out,
                "# HELP reactor_{name} {help}\n# TYPE reactor_{name} {kind}\nreactor_{name} {value}\n"
            );
        }
    }
}
