//! HTTP on the loop: buffered requests fed to the sans-I/O `HttpConn`,
//! file bodies streamed in bounded windows as the output drains, and the
//! deadlines HTTP needs (a header deadline that trickling bytes do not
//! extend, the keep-alive timeout between requests, a send timeout while
//! a response goes out; 408 for a head that came too slowly).
//!
//! A client that pipelines requests and reads nothing is answered only
//! while its output has room (`HttpConn::input_within`): past the cap the
//! rest waits unparsed, the loop stops reading, and TCP stops the client.
//! So it holds at most the output cap plus one response, however many
//! requests it sent.

use std::os::unix::fs::FileExt;
use std::time::SystemTime;

use log::info;

use crate::buf::CHUNK;
use crate::core::{Counters, Millis, Moved};
use crate::service::Verdict;
use crate::service::http::access::AccessSink;
use crate::service::http::{
    DateCache, FIXED_MAX, FileBody, HttpConfig, HttpConn, Site, WsEndpoint, canned,
    fixed_after_date,
};
use crate::stats::{Figures, OpenBy, Stats};

use super::ws::Ws;
use super::ws_echo::WsEcho;
use super::{Act, Input, Io, Protocol, Protocols, State};

/// File bytes queued per connection per turn before it yields to the
/// others (the rest goes on the deferred list): many readers of large files
/// cannot hold the loop.
const FILE_TURN_BUDGET: usize = CHUNK;
/// Rounds of `HttpConn::input` per connection per turn (each answers up
/// to `max_pipeline` requests) before it yields to the others.
const HTTP_ROUNDS: usize = 4;

/// What HTTP connections on one loop share.
#[derive(Debug)]
pub struct Shared {
    /// What HTTP serves and its request limits.
    pub cfg: HttpConfig,
    /// The `Date` header value, formatted at most once a second.
    date: DateCache,
    /// The loop turn (its clock reading) `date` was last brought up to.
    date_turn: Millis,
    /// Where responses are written before they are queued (reused).
    out: Vec<u8>,
}

impl Shared {
    /// HTTP serving `cfg`.
    pub fn new(cfg: HttpConfig) -> Shared {
        Shared {
            cfg,
            date: DateCache::new(),
            date_turn: 0,
            out: Vec::new(),
        }
    }

    /// Brings `date` up to the loop turn `now`: the wall clock is read at
    /// most once per turn and formatted at most once per second.
    fn refresh_date(&mut self, now: Millis) {
        if self.date_turn != now || now == 0 {
            self.date_turn = now;
            self.date.get(SystemTime::now());
        }
    }

    /// The `Date` value as of the loop turn `now`.
    pub(super) fn date_at(&mut self, now: Millis) -> &[u8] {
        self.refresh_date(now);
        self.date.text()
    }

    /// A canned `status` response (408, 503) as bytes; `hsts` for HTTPS.
    pub fn canned(&mut self, status: u16, hsts: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        let mut room = [0; FIXED_MAX];
        self.date.get(SystemTime::now());
        let date = fixed_after_date(self.date.text(), hsts, &mut room);
        canned(status, date, &mut out);
        out
    }
}

/// One HTTP connection (16 bytes).
#[derive(Debug, Default)]
pub struct Http {
    /// When the head now arriving is due: set at accept for the first
    /// request and at the first byte of each later one, never moved while
    /// it arrives (slowloris); 0 while no head is arriving.
    head_due: Millis,
    /// What an idle connection does not need: a body being discarded, a
    /// file being sent. `None` between requests.
    more: Option<Box<More>>,
}

/// The boxed part of an HTTP connection's state.
#[derive(Debug)]
struct More {
    /// Where the request stream is (inside a body being discarded).
    proto: HttpConn,
    /// A file body being streamed, after the head already queued.
    file: Option<FileBody>,
}

/// What `/stats` and `/metrics` render, gathered only when asked.
struct Live<'a> {
    /// The protocols' counters.
    stats: &'a Stats,
    /// The loop's counters.
    counters: &'a Counters,
    /// Connections open.
    open: usize,
    /// Buffer bytes the connections hold.
    held: usize,
    /// Chat members and rooms.
    chat: (usize, usize),
    /// The loop's clock (ms since it started).
    uptime_ms: u64,
    /// The Redis bus, if there is one.
    bus: Option<&'a crate::service::bus::Bus>,
    /// The game's figures, if it has an arena.
    game: Option<crate::service::game::GameStats>,
}

impl Live<'_> {
    /// Renders through the one list of figures.
    fn with(&self, render: impl FnOnce(&Figures<'_>)) {
        let stats = self
            .stats
            .with_core(self.counters, self.open, self.held)
            .with_bus(self.bus)
            .with_game(self.game);
        render(&Figures {
            stats: &stats,
            members: self.chat.0,
            rooms: self.chat.1,
            uptime_ms: self.uptime_ms,
        });
    }
}

impl Site for Live<'_> {
    fn stats_json(&self, out: &mut Vec<u8>) {
        self.with(|f| f.stats_json(out));
    }

    fn metrics_text(&self, out: &mut Vec<u8>) {
        self.with(|f| f.metrics_text(out));
    }
}

impl Http {
    /// The request stream's state (a fresh one between requests).
    fn proto(&self) -> HttpConn {
        self.more.as_ref().map_or_else(HttpConn::new, |m| m.proto)
    }

    /// True while a file body is being sent.
    fn sending_file(&self) -> bool {
        self.more.as_ref().is_some_and(|m| m.file.is_some())
    }

    /// Answers the requests in `input`, in order, while the output has
    /// room and this turn's share lasts; what the answers ask next.
    fn answer(&mut self, input: &mut Input<'_>, io: &mut Io<'_>, app: &mut Protocols) -> Act {
        if self.sending_file() {
            // The file goes out first; the requests behind it wait.
            return if input.is_empty() {
                Act::Continue
            } else {
                Act::Again
            };
        }
        let http = &mut app.http;
        http.refresh_date(io.now());
        // The access log, if on: the peer's address (asked once a
        // connection).
        let peer = match app.access.as_deref_mut() {
            Some(log) => {
                log.set_time(http.date.text());
                let transport = &io.link.transport;
                log.peer_of(io.link.id, || transport.peer_addr())
            }
            None => None,
        };
        for _ in 0..HTTP_ROUNDS {
            if input.is_empty() {
                break;
            }
            if io.full() {
                return Act::Again; // the rest once the output drains
            }
            let mut proto = self.proto();
            let live = Live {
                stats: &app.stats,
                counters: &io.core.counters,
                open: io.core.open(),
                held: crate::core::held_by_connections(&io.core.pool),
                chat: (app.chat.members(), app.chat.rooms()),
                uptime_ms: io.now(),
                bus: app.bus.as_deref(),
                game: app.game.as_deref().map(|a| a.game.stats),
            };
            // HTTPS responses carry HSTS: a fixed line after `Date`.
            let mut room = [0; FIXED_MAX];
            let date = fixed_after_date(http.date.text(), io.link.transport.is_tls(), &mut room);
            http.out.clear();
            let mut sink = app.access.as_deref_mut().map(|log| log.sink(peer));
            let p = proto.input_logged(
                input.data(),
                &mut http.out,
                io.room(),
                &http.cfg,
                date,
                &live,
                sink.as_mut().map(|s| s as &mut dyn AccessSink),
            );

            input.consume(p.consumed);
            app.stats.http_requests += u64::from(p.responses);
            if !http.out.is_empty() {
                io.send(&http.out);
            }
            // Keep the boxed state only while it says something.
            self.more = (!proto.idle() || p.file.is_some()).then(|| {
                Box::new(More {
                    proto,
                    file: p.file,
                })
            });
            // The header deadline: set when a head starts arriving (the
            // first bytes after an answered request), never moved while it
            // arrives, cleared once nothing is pending.
            if input.is_empty() || !proto.idle() {
                self.head_due = 0;
            } else if self.head_due == 0 || p.responses > 0 {
                self.head_due = io.due_in(app.limits.header_timeout);
            }
            if let Some(endpoint) = p.upgrade {
                if let Some(log) = app.access.as_deref_mut() {
                    let path = match endpoint {
                        WsEndpoint::Chat => "/ws",
                        WsEndpoint::Echo => "/ws/echo",
                        WsEndpoint::Game => "/game/ws",
                    };
                    log.ws_opened(io.link.id, path);
                }
                // Nothing after the head is HTTP: the loop hands the rest
                // to the new protocol.
                return Act::Become(Box::new(match endpoint {
                    WsEndpoint::Chat => State::Ws(Ws::default()),
                    WsEndpoint::Echo => State::WsEcho(WsEcho::default()),
                    WsEndpoint::Game => State::GameWs(Default::default()),
                }));
            }
            if p.verdict == Verdict::Close {
                return Act::Close;
            }
            if self.sending_file() {
                io.refill(); // the loop asks for the body as the output drains
                return if input.is_empty() {
                    Act::Continue
                } else {
                    Act::Again
                };
            }
            if !p.again {
                return self.after_input(input, io, &http.cfg);
            }
        }
        if input.is_empty() {
            self.after_input(input, io, &http.cfg)
        } else {
            Act::Again // this turn's share is used: the rest next turn
        }
    }

    /// What is left once the buffered requests are answered: after the
    /// peer's FIN, close when nothing more can be answered.
    fn after_input(&self, input: &Input<'_>, io: &Io<'_>, cfg: &HttpConfig) -> Act {
        if io.peer_done() && self.proto().at_eof(input.data(), cfg) == Verdict::Close {
            Act::Close
        } else {
            Act::Continue
        }
    }
}

impl Protocol for Http {
    fn opened(&mut self, io: &mut Io<'_>, app: &mut Protocols) -> Act {
        // Slowloris: the first request's head is due within the header
        // timeout of accept, however slowly its bytes trickle in.
        self.head_due = io.due_in(app.limits.header_timeout);
        Act::Continue
    }

    fn input(&mut self, input: &mut Input<'_>, io: &mut Io<'_>, app: &mut Protocols) -> Act {
        self.answer(input, io, app)
    }

    /// A half-close: the whole requests already buffered are answered,
    /// then the connection closes.
    fn peer_closed(&mut self, input: &mut Input<'_>, io: &mut Io<'_>, app: &mut Protocols) -> Act {
        self.answer(input, io, app)
    }

    /// Streams the file body into the output while it has room, at most
    /// `FILE_TURN_BUDGET` a turn; `Again` while some is left.
    fn drained(&mut self, io: &mut Io<'_>, _app: &mut Protocols) -> Act {
        let Some(more) = self.more.as_mut() else {
            return Act::Continue;
        };
        let Some(body) = more.file.as_mut() else {
            return Act::Continue;
        };
        let want = (body.len.min(FILE_TURN_BUDGET as u64) as usize).min(io.room());
        if want > 0 {
            let out = io
                .link
                .output
                .get_or_insert_with(|| io.core.pool.get_for(want));
            match out.fill_with(want, |room| body.file.read_at(room, body.offset)) {
                Ok(n) if n > 0 => {
                    body.offset += n as u64;
                    body.len -= n as u64;
                }
                // The file shrank or failed under us: the promised length
                // cannot be kept, so the connection must end.
                Ok(_) => {
                    info!("conn {}: file shrank while sent", io.link.id);
                    return Act::Abort;
                }
                Err(e) => {
                    info!("conn {}: file read failed: {e}", io.link.id);
                    return Act::Abort;
                }
            }
        }
        if body.len > 0 {
            return Act::Again;
        }
        more.file = None;
        if more.proto.idle() {
            self.more = None;
        }
        // The file is out. Requests pipelined behind it are held input
        // (used next turn); after the peer's FIN with none, close.
        let rest = io.link.input.as_ref().is_some_and(|b| !b.is_empty());
        if io.peer_done() && !rest {
            Act::Close
        } else {
            Act::Continue
        }
    }

    /// While a response is being sent, the idle timeout (a send timeout);
    /// while a head arrives, its header deadline, which nothing extends;
    /// while a body is discarded, the idle timeout; between requests, the
    /// keep-alive timeout.
    fn progress(&mut self, io: &Io<'_>, app: &Protocols, _moved: Moved) -> Millis {
        let idle = self.proto().idle();
        let head_due = if idle { self.head_due } else { 0 };
        let busy = if io.link.unsent() > 0 || self.sending_file() || !idle {
            io.timeout(app.limits.idle_timeout)
        } else {
            0
        };
        match (head_due, busy) {
            (0, 0) => io.timeout(app.limits.keepalive_timeout),
            (0, t) | (t, 0) => t,
            (a, b) => a.min(b),
        }
    }

    /// 408 for a request that did not arrive in time (then a staged close
    /// so the client reads it); silence for an idle or stuck connection.
    fn deadline(&mut self, io: &mut Io<'_>, app: &mut Protocols) -> Act {
        let arriving = io.link.input.as_ref().is_some_and(|b| !b.is_empty()) && self.proto().idle();
        if arriving && io.link.unsent() == 0 && !self.sending_file() {
            let reply = app.http.canned(408, io.link.transport.is_tls());
            io.send(&reply);
            return Act::Close;
        }
        Act::Abort
    }

    fn shutdown(&mut self, _io: &mut Io<'_>, _app: &mut Protocols) -> Act {
        Act::Drain // answer what already arrived, then close
    }

    fn closed(&mut self, io: &mut Io<'_>, app: &mut Protocols, _why: crate::core::Why) {
        if let Some(log) = app.access.as_deref_mut() {
            log.forget(io.link.id);
        }
    }

    fn gauge<'a>(&self, open: &'a mut OpenBy) -> Option<&'a mut u64> {
        Some(&mut open.http)
    }
}
