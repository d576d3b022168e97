//! WebSocket on the loop: an HTTP connection that asked for `/ws` becomes
//! a chat member speaking frames. The codec is `service::ws`; the hub is
//! the same `ChatHub` the TCP members are in, so a browser and an `nc`
//! user share rooms. Lines the hub sends are framed on their way into the
//! member's output (`frame_lines`, called by the outbox), so the hub never
//! knows which members are browsers.

use std::borrow::Cow;

use log::debug;

use crate::buf::{Buffer, Pool};
use crate::service::chat::Leave;
use crate::service::ws::{self, Decoder, Event, code};
use crate::service::{Service, Verdict};

use super::conn::{Conn, Extra};
use super::outbox::ConnOutbox;
use super::{Reactor, Slot};

/// How a member's frames ended the conversation.
enum End {
    /// The client sent close (with this code, if any): answer in kind.
    Closed(Option<u16>),
    /// `/quit` or an over-long line: close normally.
    Quit,
    /// A frame broke the rules: close with this code.
    Failed(u16),
}

/// Queues the hub's `bytes` (whole lines, each ending in `\n`) for member
/// `conn` as one text frame per line. A TCP member may have sent bytes that
/// are not UTF-8; a browser would fail the whole connection on them, so such
/// a line goes out with U+FFFD in their place.
pub fn frame_lines(conn: &mut Conn, bytes: &[u8], pool: &mut Pool) {
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let text = match String::from_utf8_lossy(line) {
            Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        };
        let (head, n) = ws::text_header(text.len());
        conn.queue(&head[..n], pool);
        conn.queue(&text, pool);
    }
}

impl Reactor {
    /// Connection `key` was just answered 101: it is a chat member now.
    /// Frames that came right behind the request are handled at once.
    pub(super) fn ws_open(&mut self, key: usize) {
        let Some(Slot::Conn(c)) = self.slab.get_mut(key) else {
            return;
        };
        c.service = Service::Ws;
        c.extra = None;
        c.mark = 0; // the header deadline is HTTP's; `mark` is chat's now
        self.stats.ws_upgrades += 1;
        self.stats.open_by.add(Service::Http, -1);
        self.stats.open_by.add(Service::Ws, 1);
        debug!("conn {}: upgraded to WebSocket", c.id);
        let early = c.input.take();
        self.chat.connect(key, &mut outbox!(self));
        self.drop_too_slow();
        match early {
            Some(buf) if !buf.is_empty() => self.ws_input(key, buf),
            Some(buf) => self.pool.put(buf),
            None => {}
        }
        self.moved = true;
    }

    /// Decodes the frames in `buf` (the member's kept bytes plus what was
    /// just read) and acts on each: lines to the hub, pongs to pings, the
    /// close handshake. Keeps a partial frame or message for next time.
    pub(super) fn ws_input(&mut self, key: usize, mut buf: Box<Buffer>) {
        let Some(Slot::Conn(c)) = self.slab.get_mut(key) else {
            return self.pool.put(buf);
        };
        let mut decoder = c.extra.as_ref().map_or_else(Decoder::default, |x| x.ws);
        let max = self.limits.max_line;
        let mut end = None;
        let fed = decoder.feed(buf.data_mut(), max, |event| {
            end = self.ws_event(key, event);
            end.is_none()
        });
        match fed {
            Ok(keep) => buf.truncate_back(buf.len() - keep),
            Err(status) => end = Some(End::Failed(status)),
        }
        let Some(Slot::Conn(c)) = self.slab.get_mut(key) else {
            return self.pool.put(buf);
        };
        // Keep the decoder's state only while a message is in flight.
        c.extra = match c.extra.take() {
            _ if decoder.is_idle() => None,
            Some(mut x) => {
                x.ws = decoder;
                Some(x)
            }
            None => Some(Box::new(Extra {
                ws: decoder,
                ..Extra::new(Default::default())
            })),
        };
        c.input = Some(buf);
        self.pool.release_if_empty(&mut c.input);
        match end {
            None => {}
            Some(End::Closed(status)) => {
                // The client hung up: leave the room now, answer its close.
                self.chat.disconnect(key, Leave::Closed, &mut outbox!(self));
                self.drop_too_slow();
                match status {
                    Some(s) => self.ws_end(key, &ws::close_frame(s)),
                    None => self.ws_end(key, &ws::CLOSE_EMPTY),
                }
            }
            Some(End::Quit) => self.ws_end(key, &ws::close_frame(code::NORMAL)),
            Some(End::Failed(status)) => {
                debug!("ws conn {key}: closing with {status}");
                self.ws_end(key, &ws::close_frame(status));
            }
        }
    }

    /// Acts on one event from member `key`; `Some` when it ends the member.
    fn ws_event(&mut self, key: usize, event: Event<'_>) -> Option<End> {
        match event {
            Event::Text(msg) => {
                self.stats.ws_messages += 1;
                let verdict = self.chat.message(key, msg, &mut outbox!(self));
                self.drop_too_slow();
                (verdict == Verdict::Close).then_some(End::Quit)
            }
            Event::Ping(payload) => {
                let mut pong = Vec::with_capacity(2 + payload.len());
                ws::pong(payload, &mut pong);
                if let Some(Slot::Conn(c)) = self.slab.get_mut(key)
                    && c.is_serving()
                {
                    c.queue(&pong, &mut self.pool);
                }
                None
            }
            Event::Pong => None, // a sign of life: the read already counted
            Event::Close(status) => Some(End::Closed(status)),
        }
    }

    /// Sends `frame` (a close frame, after anything queued) and closes
    /// member `key` in stages: flush, FIN, wait for the client's FIN.
    pub(super) fn ws_end(&mut self, key: usize, frame: &[u8]) {
        if let Some(Slot::Conn(c)) = self.slab.get_mut(key)
            && c.is_serving()
        {
            c.queue(frame, &mut self.pool);
            self.begin_close(key);
        }
    }

    /// Member `key`'s keep-alive deadline passed. Silent since the last
    /// ping too: gone, close it. Else ping it and wait as long again.
    /// Returns `false` when the member is to be closed as timed out.
    pub(super) fn ws_keepalive(&mut self, key: usize) -> bool {
        let Some(Slot::Conn(c)) = self.slab.get_mut(key) else {
            return true;
        };
        if c.pinged || !c.is_serving() {
            return false;
        }
        c.queue(&ws::PING, &mut self.pool);
        // The write refreshes the deadline (and clears `pinged`) if the
        // socket takes it; either way the ping is out or queued now.
        self.drive(key);
        if let Some(Slot::Conn(c)) = self.slab.get_mut(key)
            && c.is_serving()
        {
            c.pinged = true;
            let when = self.clock.after(self.limits.ws_ping);
            super::drive::rearm(&mut self.timers, key, c, when);
        }
        true
    }
}
