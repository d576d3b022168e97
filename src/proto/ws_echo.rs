//! WebSocket echo on the loop (`GET /ws/echo`): every text and binary
//! message goes back unchanged, as one unfragmented frame of the same
//! kind, in the order they came. HTTP's hook answers `Act::Become` after
//! the 101, as for the chat's `/ws`, so the handshake, its origin check and
//! the codec (`service::ws`) are the same; so are the keep-alive ping and
//! the close handshake. What differs: binary is taken, and a message may
//! be as large as `--ws-max-message` (1 MiB by default) instead of
//! `--max-line`. This is the endpoint the Autobahn|Testsuite is run
//! against (`docs/WEBSOCKET.md`).
//!
//! Memory: a message is reassembled in place in the connection's input
//! buffer (the decoder's doing), then copied into the output. No new
//! message is started while the output is at its cap (`io.full()`): a peer
//! that sends and never reads makes us hold the cap plus one message in
//! the output, and one message being reassembled in the input (each in
//! storage that doubles as it grows), and the loop stops reading it.

use log::debug;

use crate::core::Moved;
use crate::service::ws::{self, Accept, Decoder, Event, code};

use super::ws::KeepAlive;
use super::{Act, Input, Io, Protocol, Protocols};

/// One echo connection (16 bytes).
#[derive(Debug, Default)]
pub struct WsEcho {
    /// The fragmented message being reassembled in the input buffer;
    /// boxed, and only while one is in flight.
    decoder: Option<Box<Decoder>>,
    /// The keep-alive ping's state.
    alive: KeepAlive,
}

/// How the client's frames ended the conversation.
enum End {
    /// The client sent close (with this code, if any): answer in kind.
    Closed(Option<u16>),
    /// A frame broke the rules, or a message was too big: close with this
    /// code.
    Failed(u16),
}

/// Queues `msg` back as one final frame, its header made by `header`.
fn echo(io: &mut Io<'_>, header: fn(usize) -> ([u8; 10], usize), msg: &[u8]) {
    let (h, n) = header(msg.len());
    io.send(&h[..n]);
    io.send(msg);
}

impl WsEcho {
    /// Decodes the frames in `input` and answers each (an echo, a pong),
    /// stopping between frames once the output is full; what ended the
    /// conversation, if anything did.
    fn decode(
        &mut self,
        input: &mut Input<'_>,
        io: &mut Io<'_>,
        app: &mut Protocols,
    ) -> Option<End> {
        let mut decoder = self.decoder.take().map_or_else(Decoder::default, |d| *d);
        let accept = Accept {
            max: app.limits.ws_max_message,
            binary: true,
        };
        let mut end = None;
        let fed = decoder.feed(input.data_mut(), accept, |event| {
            match event {
                Event::Text(msg) => {
                    app.stats.ws_messages += 1;
                    echo(io, ws::text_header, msg);
                }
                Event::Binary(msg) => {
                    app.stats.ws_messages += 1;
                    echo(io, ws::binary_header, msg);
                }
                Event::Ping(payload) => {
                    let mut pong = Vec::with_capacity(2 + payload.len());
                    ws::pong(payload, &mut pong);
                    io.send(&pong);
                }
                Event::Pong => {} // a sign of life: the read already counted
                Event::Close(status) => end = Some(End::Closed(status)),
            }
            end.is_none() && !io.full()
        });
        match fed {
            Ok(keep) => input.keep_front(keep),
            Err(status) => end = Some(End::Failed(status)),
        }
        // Keep the decoder's state only while a message is in flight.
        self.decoder = (!decoder.is_idle()).then(|| Box::new(decoder));
        end
    }
}

impl Protocol for WsEcho {
    fn closed(&mut self, io: &mut Io<'_>, app: &mut Protocols, _why: crate::core::Why) {
        super::access::ws_closed(io, app);
    }

    fn opened(&mut self, io: &mut Io<'_>, app: &mut Protocols) -> Act {
        app.stats.ws_upgrades += 1;
        debug!("conn {}: upgraded to WebSocket echo", io.link.id);
        Act::Continue
    }

    fn input(&mut self, input: &mut Input<'_>, io: &mut Io<'_>, app: &mut Protocols) -> Act {
        match self.decode(input, io, app) {
            // Full with frames left: the rest once the output drains.
            None if io.full() && !input.is_empty() => Act::Again,
            None => Act::Continue,
            Some(End::Closed(status)) => {
                match status {
                    Some(s) => io.send(&ws::close_frame(s)),
                    None => io.send(&ws::CLOSE_EMPTY),
                }
                Act::Close
            }
            Some(End::Failed(status)) => {
                debug!("conn {}: closing with {status}", io.link.id);
                io.send(&ws::close_frame(status));
                Act::Close
            }
        }
    }

    /// FIN without a close frame: the whole messages that came before it
    /// (as far as the output has room) are echoed, then the connection
    /// closes.
    fn peer_closed(&mut self, input: &mut Input<'_>, io: &mut Io<'_>, app: &mut Protocols) -> Act {
        match self.input(input, io, app) {
            Act::Again | Act::Continue => Act::Close,
            act => act,
        }
    }

    fn progress(&mut self, io: &Io<'_>, app: &Protocols, moved: Moved) -> u64 {
        self.alive.progress(io, app, moved)
    }

    /// Silent for `--ws-ping`: pinged. Silent as long again: gone.
    fn deadline(&mut self, io: &mut Io<'_>, app: &mut Protocols) -> Act {
        if self.alive.deadline(io, app) {
            Act::Continue
        } else {
            Act::Abort
        }
    }

    /// Going away (1001) once what is queued is sent.
    fn shutdown(&mut self, io: &mut Io<'_>, _app: &mut Protocols) -> Act {
        io.send(&ws::close_frame(code::GOING_AWAY));
        Act::Close
    }
}
