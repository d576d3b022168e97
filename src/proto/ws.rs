//! WebSocket chat on the loop: an HTTP connection that asked for `/ws`
//! becomes a chat member speaking frames (HTTP's hook answers
//! `Act::Become`, and the loop hands this protocol the bytes that came
//! right behind the handshake). The codec is `service::ws`; the hub is the
//! same `ChatHub` the TCP members are in, so a browser and an `nc` user
//! share rooms. Lines the hub sends are framed on their way into the
//! member's output (`frame_lines`, called by the chat's outbox), so the
//! hub never knows which members are browsers.

use log::debug;

use crate::core::{Moved, Why};
use crate::service::Verdict;
use crate::service::chat::Leave;
use crate::service::ws::{self, Accept, Decoder, Event, code};
use crate::stats::OpenBy;

use super::chat::{self, Me};
use super::frames::frame_lines;
use super::{Act, Input, Io, Protocol, Protocols};

/// A WebSocket chat member (16 bytes).
#[derive(Debug, Default)]
pub struct Ws {
    /// The fragmented message being reassembled in the input buffer;
    /// boxed, and only while one is in flight.
    decoder: Option<Box<Decoder>>,
    /// Since when its unsent output has stayed above the chat's soft cap
    /// (ms on the loop's clock; 0: it is not).
    pub soft_since: u64,
    /// The keep-alive ping's state.
    alive: KeepAlive,
}

/// The keep-alive every WebSocket endpoint shares (chat and echo): a peer
/// silent for `--ws-ping` is pinged; silent as long again, it is gone.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct KeepAlive {
    /// A ping went out and no input has come since.
    pinged: bool,
}

impl KeepAlive {
    /// The `progress` hook: input is a sign of life, so no ping is owed
    /// and the next is due later. Our own output taken by the socket (the
    /// ping itself) answers nothing while a ping is owed.
    pub(super) fn progress(&mut self, io: &Io<'_>, app: &Protocols, moved: Moved) -> u64 {
        if moved.read {
            self.pinged = false;
        }
        if self.pinged {
            io.link.deadline
        } else {
            io.timeout(app.limits.ws_ping)
        }
    }

    /// The `deadline` hook: pings and answers `true`, or answers `false`
    /// when the last ping went unanswered (the peer is gone).
    pub(super) fn deadline(&mut self, io: &mut Io<'_>, app: &Protocols) -> bool {
        if self.pinged {
            return false;
        }
        io.send(&ws::PING);
        self.pinged = true;
        let when = io.timeout(app.limits.ws_ping);
        io.set_deadline(when);
        true
    }
}

/// How a member's frames ended the conversation.
enum End {
    /// The client sent close (with this code, if any): answer in kind.
    Closed(Option<u16>),
    /// `/quit` or an over-long line: close normally.
    Quit,
    /// A frame broke the rules: close with this code.
    Failed(u16),
    /// Dropped for not reading its output: the error and 1008 are queued.
    Dropped,
}

impl Ws {
    /// The member as the chat's fan-out sees it.
    fn me(&mut self) -> Me<'_> {
        Me {
            frames: true,
            soft_since: &mut self.soft_since,
        }
    }

    /// Acts on one event from the member; `Some` when it ends the member.
    fn event(&mut self, event: Event<'_>, io: &mut Io<'_>, app: &mut Protocols) -> Option<End> {
        match event {
            Event::Text(msg) => {
                app.stats.ws_messages += 1;
                let verdict = chat::hub(app, io, self.me(), |hub, out| {
                    hub.message(out.io.key, msg, out)
                });
                match verdict {
                    Ok(Verdict::Continue) => None,
                    // `/quit`, or a line over the limit.
                    Ok(Verdict::Close) => Some(End::Quit),
                    Err(chat::Dropped) => Some(End::Dropped),
                }
            }
            // The decoder refuses binary here (`Accept::text`): chat lines
            // are text.
            Event::Binary(_) => Some(End::Failed(code::UNSUPPORTED)),
            Event::Ping(payload) => {
                let mut pong = Vec::with_capacity(2 + payload.len());
                ws::pong(payload, &mut pong);
                io.send(&pong);
                None
            }
            Event::Pong => None, // a sign of life: the read already counted
            Event::Close(status) => Some(End::Closed(status)),
        }
    }
}

impl Protocol for Ws {
    fn opened(&mut self, io: &mut Io<'_>, app: &mut Protocols) -> Act {
        app.stats.ws_upgrades += 1;
        debug!("conn {}: upgraded to WebSocket", io.link.id);
        match chat::hub(app, io, self.me(), |hub, out| hub.connect(out.io.key, out)) {
            Ok(()) => Act::Continue,
            Err(chat::Dropped) => Act::Close,
        }
    }

    /// Decodes the frames in `input` (the bytes kept last time, then the
    /// new ones) and acts on each: lines to the hub, pongs to pings, the
    /// close handshake. Stops between frames once the output is full.
    fn input(&mut self, input: &mut Input<'_>, io: &mut Io<'_>, app: &mut Protocols) -> Act {
        let mut decoder = self.decoder.take().map_or_else(Decoder::default, |d| *d);
        let accept = Accept::text(app.limits.max_line);
        let mut end = None;
        let fed = decoder.feed(input.data_mut(), accept, |event| {
            end = self.event(event, io, app);
            end.is_none() && !io.full()
        });
        match fed {
            Ok(keep) => input.keep_front(keep),
            Err(status) => end = Some(End::Failed(status)),
        }
        // Keep the decoder's state only while a message is in flight.
        self.decoder = (!decoder.is_idle()).then(|| Box::new(decoder));
        match end {
            None if io.full() && !input.is_empty() => Act::Again,
            None => Act::Continue,
            Some(End::Closed(status)) => {
                // The client hung up: leave the room now, answer its close.
                chat::leave(app, io, self.me(), Leave::Closed);
                match status {
                    Some(s) => io.send(&ws::close_frame(s)),
                    None => io.send(&ws::CLOSE_EMPTY),
                }
                Act::Close
            }
            Some(End::Quit) => {
                io.send(&ws::close_frame(code::NORMAL));
                Act::Close
            }
            Some(End::Failed(status)) => {
                debug!("conn {}: closing with {status}", io.link.id);
                io.send(&ws::close_frame(status));
                Act::Close
            }
            Some(End::Dropped) => Act::Close,
        }
    }

    fn peer_closed(&mut self, _input: &mut Input<'_>, io: &mut Io<'_>, app: &mut Protocols) -> Act {
        chat::leave(app, io, self.me(), Leave::Closed);
        Act::Close
    }

    fn progress(&mut self, io: &Io<'_>, app: &Protocols, moved: Moved) -> u64 {
        self.alive.progress(io, app, moved)
    }

    /// Silent for `--ws-ping`: pinged. Silent as long again: gone.
    fn deadline(&mut self, io: &mut Io<'_>, app: &mut Protocols) -> Act {
        if self.alive.deadline(io, app) {
            return Act::Continue;
        }
        chat::leave(app, io, self.me(), Leave::TimedOut);
        Act::Abort
    }

    fn shutdown(&mut self, io: &mut Io<'_>, _app: &mut Protocols) -> Act {
        let pool = &mut io.core.pool;
        frame_lines(io.link, b"* server shutting down\n", pool);
        io.send(&ws::close_frame(code::GOING_AWAY));
        Act::Close
    }

    fn evict(&mut self, io: &mut Io<'_>, app: &mut Protocols) -> Act {
        chat::leave(app, io, self.me(), Leave::TooSlow);
        Act::Abort
    }

    fn closed(&mut self, io: &mut Io<'_>, app: &mut Protocols, why: Why) {
        super::access::ws_closed(io, app);
        chat::leave(app, io, self.me(), chat::leave_for(why));
    }

    fn gauge<'a>(&self, open: &'a mut OpenBy) -> Option<&'a mut u64> {
        Some(&mut open.ws)
    }
}
