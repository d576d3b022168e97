//! The game on the loop (`service::game`): its UDP socket (`--game`), its
//! WebSocket players (`GET /game/ws`), and its tick.
//!
//! - The UDP socket is one of the app's sources, like the UDP echo's:
//!   `turn` reads what is waiting (at most `DATAGRAMS_PER_TICK` a turn),
//!   hands each datagram to the arena and sends the answer, if any, at
//!   once. A reply that would block is dropped: every message of the game
//!   is either answered again (a HELLO) or replaced a tick later (a
//!   snapshot), so nothing is queued.
//! - A WebSocket player is a connection that asked for `/game/ws` (HTTP's
//!   hook answers `Act::Become`): it joins on `opened`, its binary frames
//!   are the same messages as the datagrams, and it leaves on `closed`.
//! - The tick is the loop's app timer (`Core::every`), running only while
//!   someone plays. Each tick steps the arena and sends every player its
//!   snapshot: a datagram, or a binary frame queued on the connection
//!   (skipped when more than two are still unsent: a stale snapshot is
//!   worth less than the next one).

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use log::{debug, info, trace};
use mio::net::UdpSocket;

use crate::core::{Core, Moved, Ready, Why};
use crate::service::game::{Game, GameConfig, Via, cookie::Secret, wire};
use crate::service::ws::{self, Accept, Decoder, Event, code};

use super::udp::DATAGRAMS_PER_TICK;
use super::ws::KeepAlive;
use super::{Act, Input, Io, Protocol, Protocols, Socket, State};

/// The game's UDP socket.
#[derive(Debug)]
pub struct GameUdp {
    /// The bound socket, registered for both directions.
    pub socket: UdpSocket,
    /// Datagrams may be waiting.
    readable: bool,
}

impl GameUdp {
    /// Wraps a bound socket.
    pub fn new(socket: UdpSocket) -> GameUdp {
        GameUdp {
            socket,
            readable: true,
        }
    }
}

/// The arena of one loop and what serving it needs.
pub struct Arena {
    /// The game itself.
    pub game: Game,
    /// The UDP socket's key among the loop's sources, if `--game` is on.
    pub udp: Option<usize>,
    /// The answer to the datagram being handled.
    reply: Vec<u8>,
    /// The tick timer runs.
    ticking: bool,
    /// When the last tick began (None: the timer has just started), for
    /// the tick's jitter.
    last_tick: Option<Instant>,
}

impl Arena {
    /// An empty arena.
    pub fn new(cfg: GameConfig) -> Arena {
        Arena {
            game: Game::new(cfg, Secret::random()),
            udp: None,
            reply: Vec::new(),
            ticking: false,
            last_tick: None,
        }
    }

    /// Starts the tick when someone plays, stops it when no one does.
    fn tick_if_played<A: crate::core::Kinds>(&mut self, core: &mut Core<A>) {
        let playing = !self.game.is_empty();
        if playing != self.ticking {
            self.ticking = playing;
            self.last_tick = None;
            let hz = self.game.config().hz;
            let period = if playing {
                Duration::from_micros(1_000_000 / u64::from(hz))
            } else {
                Duration::ZERO
            };
            core.every(period);
            debug!("game: tick {}", if playing { "started" } else { "stopped" });
        }
    }
}

/// Serves the game's UDP `socket` on loop `r`.
pub fn open(r: &mut crate::core::Reactor<Protocols>, socket: UdpSocket) -> crate::Result<()> {
    let key = r.add_source(Socket::Game(Box::new(GameUdp::new(socket))))?;
    arena(&mut r.app).udp = Some(key);
    Ok(())
}

/// The arena of `app`, made on first use.
fn arena(app: &mut Protocols) -> &mut Arena {
    let cfg = app.game_config;
    app.game.get_or_insert_with(|| Box::new(Arena::new(cfg)))
}

/// The UDP socket is ready: read and answer datagrams. True if more may
/// be waiting (the loop comes back next turn).
pub(super) fn udp_turn(
    app: &mut Protocols,
    udp: &mut GameUdp,
    ready: Ready,
    core: &mut Core<Protocols>,
) -> bool {
    if app.udp_buf.is_empty() {
        app.udp_buf.resize(super::udp::RECV_BUF, 0);
    }
    let now = core.now();
    let mut buf = std::mem::take(&mut app.udp_buf);
    let cfg = app.game_config;
    udp.readable |= ready.readable;
    let a = app.game.get_or_insert_with(|| Box::new(Arena::new(cfg)));
    let mut more = false;
    for i in 0..=DATAGRAMS_PER_TICK {
        if !udp.readable {
            break;
        }
        if i == DATAGRAMS_PER_TICK {
            more = true;
            break;
        }
        match udp.socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                trace!("game: {n} bytes from {from}");
                app.stats.udp_in += 1;
                app.stats.bytes_in += n as u64;
                a.game.datagram(from, &buf[..n], now, &mut a.reply);
                if !a.reply.is_empty() {
                    match udp.socket.send_to(&a.reply, from) {
                        Ok(k) => {
                            app.stats.udp_out += 1;
                            app.stats.bytes_out += k as u64;
                        }
                        Err(e) => debug!("game: reply to {from} dropped: {e}"),
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => udp.readable = false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => debug!("game: receive error: {e}"),
        }
    }
    app.udp_buf = buf;
    a.tick_if_played(core);
    more
}

/// The tick: step the arena, send each player its snapshot.
pub(super) fn tick(app: &mut Protocols, core: &mut Core<Protocols>, missed: u64) {
    let Some(a) = app.game.as_deref_mut() else {
        return;
    };
    // The tick's own timing, by the OS clock (the loop's is in ms): its
    // start against the last one's (the jitter), and its work.
    let started = Instant::now();
    let period_us = 1_000_000 / u64::from(a.game.config().hz);
    if let Some(last) = a.last_tick {
        let interval = started.duration_since(last).as_micros() as u64;
        a.game.stats.tick_began(interval, (missed + 1) * period_us);
    }
    a.last_tick = Some(started);
    a.game.step(core.now(), missed);
    let udp = a.udp;
    let stats = &mut app.stats;
    a.game.snapshots(|via, bytes| match *via {
        Via::Udp(addr) => {
            let Some(Socket::Game(u)) = udp.and_then(|k| core.source(k)) else {
                return false;
            };
            match u.socket.send_to(bytes, addr) {
                Ok(n) => {
                    stats.udp_out += 1;
                    stats.bytes_out += n as u64;
                    true
                }
                Err(e) => {
                    trace!("game: snapshot to {addr} dropped: {e}");
                    false
                }
            }
        }
        Via::Ws(key) => {
            let Some(peer) = core.peer(key) else {
                return false;
            };
            if !matches!(peer.state, State::GameWs(_)) || peer.link.unsent() > 2 * wire::MTU_BUDGET
            {
                return false;
            }
            let (h, n) = ws::binary_header(bytes.len());
            peer.link.queue(&h[..n], peer.pool);
            peer.link.queue(bytes, peer.pool);
            core.flush_soon(key);
            true
        }
    });
    let work = started.elapsed().as_micros() as u64;
    a.game.stats.tick_done(work, period_us);
    a.tick_if_played(core);
}

/// A WebSocket player (16 bytes).
#[derive(Debug, Default)]
pub struct GameWs {
    /// A fragmented message being reassembled; boxed, only while one is.
    decoder: Option<Box<Decoder>>,
    /// The keep-alive ping's state.
    alive: KeepAlive,
    /// Its player id (0: not in the arena).
    id: u16,
}

/// Largest message a player may send (an INPUT is at most 22 bytes).
const MAX_MESSAGE: usize = 256;

impl Protocol for GameWs {
    fn opened(&mut self, io: &mut Io<'_>, app: &mut Protocols) -> Act {
        app.stats.ws_upgrades += 1;
        let now = io.now();
        let mut out = Vec::with_capacity(wire::WELCOME_LEN);
        let a = arena(app);
        let joined = a.game.ws_join(io.key, now, &mut out);
        a.tick_if_played(io.core);
        let (h, n) = ws::binary_header(out.len());
        io.send(&h[..n]);
        io.send(&out);
        match joined {
            Some(id) => {
                self.id = id;
                info!(
                    "game: player {id} joined over WebSocket (conn {})",
                    io.link.id
                );
                Act::Continue
            }
            None => {
                io.send(&ws::close_frame(code::GOING_AWAY));
                Act::Close
            }
        }
    }

    fn input(&mut self, input: &mut Input<'_>, io: &mut Io<'_>, app: &mut Protocols) -> Act {
        let mut decoder = self.decoder.take().map_or_else(Decoder::default, |d| *d);
        let accept = Accept {
            max: MAX_MESSAGE,
            binary: true,
        };
        let now = io.now();
        let id = self.id;
        let mut end = None;
        let a = arena(app);
        let fed = decoder.feed(input.data_mut(), accept, |event| {
            match event {
                Event::Binary(msg) => {
                    if !a.game.ws_message(id, msg, now) {
                        end = Some(code::NORMAL);
                    }
                }
                Event::Text(_) => a.game.stats.malformed += 1,
                Event::Ping(payload) => {
                    let mut pong = Vec::with_capacity(2 + payload.len());
                    ws::pong(payload, &mut pong);
                    io.send(&pong);
                }
                Event::Pong => {}
                Event::Close(status) => end = Some(status.unwrap_or(code::NORMAL)),
            }
            end.is_none()
        });
        match fed {
            Ok(keep) => input.keep_front(keep),
            Err(status) => end = Some(status),
        }
        self.decoder = (!decoder.is_idle()).then(|| Box::new(decoder));
        match end {
            None => Act::Continue,
            Some(status) => {
                self.leave(io, app);
                io.send(&ws::close_frame(status));
                Act::Close
            }
        }
    }

    fn peer_closed(&mut self, _input: &mut Input<'_>, io: &mut Io<'_>, app: &mut Protocols) -> Act {
        self.leave(io, app);
        Act::Close
    }

    fn progress(&mut self, io: &Io<'_>, app: &Protocols, moved: Moved) -> u64 {
        self.alive.progress(io, app, moved)
    }

    fn deadline(&mut self, io: &mut Io<'_>, app: &mut Protocols) -> Act {
        if self.alive.deadline(io, app) {
            Act::Continue
        } else {
            self.leave(io, app);
            Act::Abort
        }
    }

    fn shutdown(&mut self, io: &mut Io<'_>, app: &mut Protocols) -> Act {
        self.leave(io, app);
        io.send(&ws::close_frame(code::GOING_AWAY));
        Act::Close
    }

    fn evict(&mut self, io: &mut Io<'_>, app: &mut Protocols) -> Act {
        self.leave(io, app);
        Act::Abort
    }

    fn closed(&mut self, io: &mut Io<'_>, app: &mut Protocols, _why: Why) {
        self.leave(io, app);
        super::access::ws_closed(io, app);
    }
}

impl GameWs {
    /// Leaves the arena (once).
    fn leave(&mut self, io: &mut Io<'_>, app: &mut Protocols) {
        if self.id != 0 {
            debug!("game: player {} left (conn {})", self.id, io.link.id);
            let a = arena(app);
            a.game.leave(self.id);
            a.tick_if_played(io.core);
            self.id = 0;
        }
    }
}
