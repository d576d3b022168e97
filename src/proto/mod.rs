//! The protocols on the loop: what each connection's bytes mean, one file
//! per protocol, beside the protocol-blind core (`src/core/`).
//!
//! Each protocol is a type holding one connection's state and
//! implementing [`Protocol`], the narrow interface: the loop's lifecycle
//! hooks (opened, input, peer closed, drained, progress, deadline,
//! shutdown, evict, closed), each with a default. [`State`] is the one
//! enum of them, and [`Protocols`] is the app the core drives: its hooks
//! are dispatched to the connection's protocol in one place, the match in
//! `State::protocol`. What protocols share on a loop (the chat hub, HTTP's
//! configuration, the counters) is in `Protocols`, which every hook gets.
//!
//! Adding a protocol is one file with its state type and its `Protocol`
//! implementation, and one line in the `protocols!` list below (a variant
//! of `State`); whatever creates its connections (a listener's tag in
//! `accepted`, an upgrade answering `Act::Become`) names the variant.
//!
//! The state machines that parse and answer (chat lines, HTTP requests,
//! WebSocket frames) are sans-I/O in `src/service/`; the files here move
//! their bytes between them and the loop.

pub mod access;
mod bus;
mod chat;
mod echo;
mod frames;
pub mod game;
mod greet;
mod http;
pub mod loops;
mod reload;
mod udp;
mod ws;
mod ws_echo;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::config::{Config, Limits};
use crate::core::{self, Core, Millis, Moved, Ready, Why};
use crate::service::Service;
use crate::service::bus::Bus;
use crate::service::chat::ChatHub;
use crate::stats::{OpenBy, Stats};

pub use udp::UdpEcho;

/// The core's view of a connection, for these protocols.
pub type Io<'a> = core::Io<'a, Protocols>;
/// A hook's answer, for these protocols.
pub type Act = core::Act<State>;
/// A connection's input, lent to a hook.
pub use crate::core::Input;

/// A protocol's hooks: what it does at each moment of a connection's life.
/// Each gets the connection's `Io` and what the protocols share; each has
/// a default, so a protocol writes only the ones it needs.
pub trait Protocol {
    /// The connection is open: first words, room joins.
    fn opened(&mut self, _io: &mut Io<'_>, _app: &mut Protocols) -> Act {
        Act::Continue
    }
    /// Input arrived: use it (see `core::App::input` for the contract:
    /// stop between messages when `io.full()`, answer `Again` if usable
    /// input is left).
    fn input(&mut self, input: &mut Input<'_>, io: &mut Io<'_>, app: &mut Protocols) -> Act;
    /// The peer sent FIN after what is in `input`.
    fn peer_closed(
        &mut self,
        _input: &mut Input<'_>,
        _io: &mut Io<'_>,
        _app: &mut Protocols,
    ) -> Act {
        Act::Close
    }
    /// The output is below its cap: queue more if there is more to send.
    fn drained(&mut self, _io: &mut Io<'_>, _app: &mut Protocols) -> Act {
        Act::Continue
    }
    /// Bytes moved: the connection's next deadline (the idle timeout).
    fn progress(&mut self, io: &Io<'_>, app: &Protocols, _moved: Moved) -> Millis {
        io.timeout(app.limits.idle_timeout)
    }
    /// The deadline passed while serving: close (idle too long).
    fn deadline(&mut self, _io: &mut Io<'_>, _app: &mut Protocols) -> Act {
        Act::Abort
    }
    /// The server is shutting down: close once what is queued is sent.
    fn shutdown(&mut self, _io: &mut Io<'_>, _app: &mut Protocols) -> Act {
        Act::Close
    }
    /// Evicted at the memory cap: close now.
    fn evict(&mut self, _io: &mut Io<'_>, _app: &mut Protocols) -> Act {
        Act::Abort
    }
    /// The connection is gone.
    fn closed(&mut self, _io: &mut Io<'_>, _app: &mut Protocols, _why: Why) {}
    /// The `/stats` gauge of open connections this protocol counts in.
    fn gauge<'a>(&self, _open: &'a mut OpenBy) -> Option<&'a mut u64> {
        None
    }
}

/// Declares `State`, one variant per protocol, and its one dispatch: each
/// hook of `State` calls the same hook of the variant's protocol (a match,
/// resolved statically, so a protocol's hooks inline into the loop).
macro_rules! protocols {
    ($($(#[$doc:meta])* $name:ident($ty:ty),)*) => {
        /// A connection's protocol state: one variant per protocol, each
        /// holding only its own protocol's state.
        #[derive(Debug)]
        pub enum State {
            $($(#[$doc])* $name($ty),)*
        }

        /// The one place the loop's hooks meet the protocols.
        impl Protocol for State {
            #[inline]
            fn opened(&mut self, io: &mut Io<'_>, app: &mut Protocols) -> Act {
                match self { $(State::$name(p) => p.opened(io, app),)* }
            }
            #[inline]
            fn input(&mut self, input: &mut Input<'_>, io: &mut Io<'_>, app: &mut Protocols) -> Act {
                match self { $(State::$name(p) => p.input(input, io, app),)* }
            }
            #[inline]
            fn peer_closed(&mut self, input: &mut Input<'_>, io: &mut Io<'_>, app: &mut Protocols) -> Act {
                match self { $(State::$name(p) => p.peer_closed(input, io, app),)* }
            }
            #[inline]
            fn drained(&mut self, io: &mut Io<'_>, app: &mut Protocols) -> Act {
                match self { $(State::$name(p) => p.drained(io, app),)* }
            }
            #[inline]
            fn progress(&mut self, io: &Io<'_>, app: &Protocols, moved: Moved) -> Millis {
                match self { $(State::$name(p) => p.progress(io, app, moved),)* }
            }
            #[inline]
            fn deadline(&mut self, io: &mut Io<'_>, app: &mut Protocols) -> Act {
                match self { $(State::$name(p) => p.deadline(io, app),)* }
            }
            #[inline]
            fn shutdown(&mut self, io: &mut Io<'_>, app: &mut Protocols) -> Act {
                match self { $(State::$name(p) => p.shutdown(io, app),)* }
            }
            #[inline]
            fn evict(&mut self, io: &mut Io<'_>, app: &mut Protocols) -> Act {
                match self { $(State::$name(p) => p.evict(io, app),)* }
            }
            #[inline]
            fn closed(&mut self, io: &mut Io<'_>, app: &mut Protocols, why: Why) {
                match self { $(State::$name(p) => p.closed(io, app, why),)* }
            }
            #[inline]
            fn gauge<'a>(&self, open: &'a mut OpenBy) -> Option<&'a mut u64> {
                match self { $(State::$name(p) => p.gauge(open),)* }
            }
        }
    };
}

protocols! {
    /// Seed 000's greeting.
    Greet(greet::Greet),
    /// Every byte back (over TCP, TLS or a Unix socket).
    Echo(echo::Echo),
    /// A line chat member.
    Chat(chat::Member),
    /// HTTP/1.1.
    Http(http::Http),
    /// A chat member speaking WebSocket frames (after `GET /ws`).
    Ws(ws::Ws),
    /// One of the loop's two connections to the Redis bus (`--bus`).
    Bus(bus::BusLink),
    /// Every WebSocket message back (after `GET /ws/echo`).
    WsEcho(ws_echo::WsEcho),
    /// A player of the game (after `GET /game/ws`).
    GameWs(game::GameWs),
}

impl State {
    /// True for a chat member whose lines go out as WebSocket frames.
    fn frames_lines(&self) -> bool {
        matches!(self, State::Ws(_))
    }
}

/// Sockets the protocols own and the loop polls for them.
#[derive(Debug)]
pub enum Socket {
    /// The UDP echo socket.
    UdpEcho(Box<UdpEcho>),
    /// The game's UDP socket (`--game`).
    Game(Box<game::GameUdp>),
}

impl mio::event::Source for Socket {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> std::io::Result<()> {
        match self {
            Socket::UdpEcho(u) => u.socket.register(registry, token, interests),
            Socket::Game(g) => g.socket.register(registry, token, interests),
        }
    }

    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> std::io::Result<()> {
        match self {
            Socket::UdpEcho(u) => u.socket.reregister(registry, token, interests),
            Socket::Game(g) => g.socket.reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &mio::Registry) -> std::io::Result<()> {
        match self {
            Socket::UdpEcho(u) => u.socket.deregister(registry),
            Socket::Game(g) => g.socket.deregister(registry),
        }
    }
}

/// Everything the protocols of one loop share: the app the core drives.
pub struct Protocols {
    /// The limits the protocols enforce (timeouts, sizes, chat caps).
    pub limits: Limits,
    /// Chat rooms and members, TCP and WebSocket alike.
    pub chat: ChatHub,
    /// Chat lines to and from this process's other loops (`--threads`).
    pub loops: Option<loops::Mesh>,
    /// Chat rooms shared with other servers over Redis (`--bus`).
    pub bus: Option<Box<Bus>>,
    /// Where Redis is.
    pub bus_addr: Option<SocketAddr>,
    /// The keys of the bus's connections (subscriber, commands), while
    /// they exist.
    bus_keys: [Option<usize>; 2],
    /// HTTP's configuration and its per-loop scratch.
    pub http: http::Shared,
    /// The access log (`--access-log`), if on.
    pub access: Option<Box<access::AccessLog>>,
    /// The configuration this loop runs under (what `SIGHUP` compares
    /// the reloaded one with).
    pub running: Box<Config>,
    /// The first loop: it alone logs what a reload changed and tells
    /// systemd.
    pub lead: bool,
    /// The SHA-1 fingerprint of the certificate new handshakes use.
    pub tls_print: String,
    /// The protocols' counters; the loop's own are added when published.
    pub stats: Stats,
    /// The latest snapshot of every counter, for `Handle::stats`.
    pub published: Arc<Mutex<Stats>>,
    /// Chat members that went over their output caps during a fan-out,
    /// dropped once the hub call returns (kept to reuse its allocation).
    too_slow: Vec<usize>,
    /// The UDP receive buffer (64 KiB), allocated on first use.
    udp_buf: Vec<u8>,
    /// The game's arena, made on first use (`--game`, `/game/ws`).
    pub game: Option<Box<game::Arena>>,
    /// The arena's settings.
    pub game_config: crate::service::game::GameConfig,
}

impl Protocols {
    /// The protocols for one loop serving `config`.
    pub fn new(config: &Config) -> Protocols {
        Protocols {
            limits: config.limits.clone(),
            chat: ChatHub::new(config.limits.max_line),
            loops: None,
            bus: None,
            bus_addr: None,
            bus_keys: [None, None],
            http: http::Shared::new(config.http_config.clone()),
            access: None,
            running: Box::new(config.clone()),
            lead: true,
            tls_print: String::new(),
            stats: Stats::default(),
            published: Arc::new(Mutex::new(Stats::default())),
            too_slow: Vec::new(),
            udp_buf: Vec::new(),
            game: None,
            game_config: config.game_config,
        }
    }

    /// Every counter, the loop's own included, as of now.
    fn snapshot(&self, core: &Core<Protocols>) -> Stats {
        let held = core::held_by_connections(&core.pool);
        self.stats
            .with_core(&core.counters, core.open(), held)
            .with_bus(self.bus.as_deref())
            .with_game(self.game.as_deref().map(|a| a.game.stats))
    }

    /// Copies the counters where `Handle::stats` reads them.
    pub fn publish(&self, core: &Core<Protocols>) {
        let snapshot = self.snapshot(core);
        *self.published.lock().unwrap_or_else(|e| e.into_inner()) = snapshot;
    }

    /// Moves `state`'s gauge by `delta` (+1 opened, -1 gone).
    #[inline]
    fn count_open(&mut self, state: &State, delta: i64) {
        if let Some(n) = state.gauge(&mut self.stats.open_by) {
            *n = n.saturating_add_signed(delta);
        }
    }

    /// A hook's answer, with the gauges moved if it switches protocols.
    #[inline]
    fn answered(&mut self, state: &State, act: Act) -> Act {
        if matches!(act, Act::Become(_)) {
            self.count_open(state, -1);
        }
        act
    }
}

impl core::Kinds for Protocols {
    type State = State;
    type Listen = Service;
    type Source = Socket;
}

impl core::App for Protocols {
    #[inline]
    fn accepted(&mut self, listen: Service) -> State {
        match listen.base() {
            Service::Greet => State::Greet(greet::Greet),
            Service::Chat => State::Chat(chat::Member::default()),
            Service::Http => State::Http(http::Http::default()),
            Service::Unix => State::Echo(echo::Echo { unix: true }),
            _ => State::Echo(echo::Echo { unix: false }),
        }
    }

    #[inline]
    fn refusal(&mut self, listen: Service) -> Vec<u8> {
        match listen.base() {
            Service::Http => self.http.canned(503, false),
            _ => b"ERROR too many connections\n".to_vec(),
        }
    }

    #[inline]
    fn opened(&mut self, state: &mut State, io: &mut Io<'_>) -> Act {
        self.count_open(state, 1);
        let act = state.opened(io, self);
        self.answered(state, act)
    }

    #[inline]
    fn input(&mut self, state: &mut State, input: &mut Input<'_>, io: &mut Io<'_>) -> Act {
        let act = state.input(input, io, self);
        self.answered(state, act)
    }

    #[inline]
    fn peer_closed(&mut self, state: &mut State, input: &mut Input<'_>, io: &mut Io<'_>) -> Act {
        let act = state.peer_closed(input, io, self);
        self.answered(state, act)
    }

    #[inline]
    fn drained(&mut self, state: &mut State, io: &mut Io<'_>) -> Act {
        let act = state.drained(io, self);
        self.answered(state, act)
    }

    #[inline]
    fn progress(&mut self, state: &mut State, io: &Io<'_>, moved: Moved) -> Millis {
        state.progress(io, self, moved)
    }

    #[inline]
    fn deadline(&mut self, state: &mut State, io: &mut Io<'_>) -> Act {
        let act = state.deadline(io, self);
        self.answered(state, act)
    }

    #[inline]
    fn shutdown(&mut self, state: &mut State, io: &mut Io<'_>) -> Act {
        let act = state.shutdown(io, self);
        self.answered(state, act)
    }

    #[inline]
    fn evict(&mut self, state: &mut State, io: &mut Io<'_>) -> Act {
        let act = state.evict(io, self);
        self.answered(state, act)
    }

    #[inline]
    fn closed(&mut self, state: &mut State, io: &mut Io<'_>, why: Why) {
        self.count_open(state, -1);
        state.closed(io, self, why);
    }

    #[inline]
    fn source_ready(
        &mut self,
        _key: usize,
        source: &mut Socket,
        ready: Ready,
        core: &mut Core<Protocols>,
    ) -> bool {
        match source {
            Socket::UdpEcho(u) => u.turn(ready, &mut self.udp_buf, &mut self.stats),
            Socket::Game(g) => game::udp_turn(self, g, ready, core),
        }
    }

    #[inline]
    fn before_sleep(&mut self, core: &mut Core<Protocols>) {
        if self.bus.is_some() {
            bus::flush(self, core);
        }
        // The turn's access-log lines, in one write.
        if let Some(log) = self.access.as_deref_mut() {
            log.write_once();
        }
    }

    #[inline]
    fn cron(&mut self, core: &mut Core<Protocols>) {
        bus::tick(self, core);
        self.publish(core);
    }

    #[inline]
    fn timer(&mut self, core: &mut Core<Protocols>, missed: u64) {
        game::tick(self, core, missed);
    }

    #[inline]
    fn woken(&mut self, core: &mut Core<Protocols>) {
        chat::take_from_loops(self, core);
    }

    fn signal(&mut self, signal: i32, core: &mut Core<Protocols>) {
        reload::signal(self, core, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_connection_stays_small() {
        // What the loop knows of a connection (56 bytes) beside its
        // protocol's state (24: the largest protocol state is 16 bytes,
        // and the enum's tag shares a word with it), plus one 16-byte
        // timer entry and no buffers. The memory goal is 128 bytes per
        // idle connection, all counted.
        assert!(std::mem::size_of::<crate::core::Link>() <= 56);
        assert!(std::mem::size_of::<State>() <= 24);
        assert!(std::mem::size_of::<crate::core::Conn<State>>() <= 80);
        assert!(std::mem::size_of::<crate::core::Slot<Protocols>>() <= 80);
    }
}
