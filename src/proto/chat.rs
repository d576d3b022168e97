//! Chat on the loop: a TCP member's lines into the hub (`service::chat`),
//! and the hub's way out, [`ChatOut`], shared with WebSocket members.
//!
//! Fan-out appends a line to each receiver's output and puts it on the
//! loop's flush list; the writes happen once, before the loop sleeps, so
//! ten lines to one member become one `write`. This is also where the
//! chat's output caps are enforced (Redis's `client-output-buffer-limit`
//! for pub/sub): a member over the hard cap, or over the soft cap for
//! longer than allowed, is dropped after the hub call returns, never in
//! the middle of a fan-out.
//!
//! A member is judged on what the kernel would not take, not on what one
//! burst queued: once a member has a chunk's worth queued, it is written
//! out right away, and only what is left counts against the caps. The
//! kernel's own share is bounded too (`TCP_NOTSENT_LOWAT` on the
//! listeners, `listen.rs`), so the caps mean what the flags say.

use log::info;

use crate::buf::{CHUNK, Pool};
use crate::config::Limits;
use crate::core::{Core, Link, Millis, Why};
use crate::service::bus::Bus;
use crate::service::chat::{ChatHub, Leave};
use crate::service::{Ask, Asked, Outbox, Verdict};
use crate::stats::{OpenBy, Stats};

use super::frames::{close_policy, frame_lines};
use super::{Act, Input, Io, Protocol, Protocols, State, loops};

/// The line a chat member gets when it is dropped for not reading.
const TOO_SLOW_LINE: &[u8] = b"ERROR too slow: output limit reached, disconnecting\n";

/// What all members get when the server shuts down.
const SHUTDOWN_LINE: &[u8] = b"* server shutting down\n";

/// A TCP chat member. Its room and nick are in the hub.
#[derive(Debug, Default)]
pub struct Member {
    /// Since when its unsent output has stayed above the soft cap (0: not).
    pub soft_since: Millis,
}

impl Protocol for Member {
    fn opened(&mut self, io: &mut Io<'_>, app: &mut Protocols) -> Act {
        let me = Me::lines(&mut self.soft_since);
        match hub(app, io, me, |hub, out| hub.connect(out.io.key, out)) {
            Ok(()) => Act::Continue,
            Err(Dropped) => Act::Close,
        }
    }

    fn input(&mut self, input: &mut Input<'_>, io: &mut Io<'_>, app: &mut Protocols) -> Act {
        let me = Me::lines(&mut self.soft_since);
        let verdict = hub(app, io, me, |hub, out| {
            let (used, verdict) = hub.input(out.io.key, input.data(), out);
            input.consume(used);
            verdict
        });
        match verdict {
            Ok(Verdict::Close) | Err(Dropped) => Act::Close,
            // Stopped at the output cap with lines left: after it drains.
            Ok(Verdict::Continue) if io.full() && !input.is_empty() => Act::Again,
            Ok(Verdict::Continue) => Act::Continue,
        }
    }

    fn peer_closed(&mut self, _input: &mut Input<'_>, io: &mut Io<'_>, app: &mut Protocols) -> Act {
        let me = Me::lines(&mut self.soft_since);
        leave(app, io, me, Leave::Closed);
        Act::Close
    }

    fn deadline(&mut self, io: &mut Io<'_>, app: &mut Protocols) -> Act {
        let me = Me::lines(&mut self.soft_since);
        leave(app, io, me, Leave::TimedOut);
        Act::Abort
    }

    fn shutdown(&mut self, io: &mut Io<'_>, _app: &mut Protocols) -> Act {
        io.send(SHUTDOWN_LINE);
        Act::Close
    }

    fn evict(&mut self, io: &mut Io<'_>, app: &mut Protocols) -> Act {
        let me = Me::lines(&mut self.soft_since);
        drop_me(app, io, me)
    }

    fn closed(&mut self, io: &mut Io<'_>, app: &mut Protocols, why: Why) {
        let me = Me::lines(&mut self.soft_since);
        leave(app, io, me, leave_for(why));
    }

    fn gauge<'a>(&self, open: &'a mut OpenBy) -> Option<&'a mut u64> {
        Some(&mut open.chat)
    }
}

/// The room notice a close gets (none if the member already left).
pub(super) fn leave_for(why: Why) -> Leave {
    match why {
        Why::Expired => Leave::TimedOut,
        Why::Shutdown => Leave::Shutdown,
        Why::Done | Why::Failed => Leave::Closed,
    }
}

/// The member a hook runs for, as its fan-out needs it: how its lines go
/// out, and its soft-cap clock.
pub(super) struct Me<'a> {
    /// Lines go out as WebSocket text frames.
    pub frames: bool,
    /// Since when its output has stayed above the soft cap.
    pub soft_since: &'a mut Millis,
}

impl<'a> Me<'a> {
    /// A member speaking lines (TCP).
    pub fn lines(soft_since: &'a mut Millis) -> Me<'a> {
        Me {
            frames: false,
            soft_since,
        }
    }
}

/// The hub's `Outbox` over the loop's connections.
pub(super) struct ChatOut<'a, 'io> {
    /// The member in hand, and through it every other connection.
    pub io: &'a mut Io<'io>,
    /// The member in hand as fan-out sees it.
    me: Me<'a>,
    /// The caps.
    limits: &'a Limits,
    /// Members over their caps, dropped after the hub call.
    too_slow: &'a mut Vec<usize>,
    /// Who else shares the rooms.
    peers: Peers<'a>,
}

/// Who shares this loop's rooms: the process's other loops (`--threads`)
/// and the other servers (`--bus`).
pub(super) struct Peers<'a> {
    /// The other loops of this process, when there are several.
    loops: Option<&'a loops::Mesh>,
    /// The Redis bus to the other servers, if there is one.
    bus: Option<&'a mut Bus>,
}

impl<'a> Peers<'a> {
    /// Everyone `app` shares its rooms with.
    pub fn of(loops: &'a Option<loops::Mesh>, bus: &'a mut Option<Box<Bus>>) -> Peers<'a> {
        Peers {
            loops: loops.as_ref(),
            bus: bus.as_deref_mut(),
        }
    }

    /// No one: for lines that came from elsewhere and stop here.
    pub fn none() -> Peers<'a> {
        Peers {
            loops: None,
            bus: None,
        }
    }
}

/// The `Outbox` hooks that reach the loops and servers sharing the rooms,
/// the same for every outbox here (each has a `peers` field).
macro_rules! peer_hooks {
    () => {
        fn publish(&mut self, room: &str, line: &[u8]) {
            if let Some(loops) = self.peers.loops {
                loops.publish(room, line);
            }
            if let Some(bus) = self.peers.bus.as_deref_mut() {
                bus.publish(room, line);
            }
        }

        fn has_peers(&self) -> bool {
            self.peers.loops.is_some() || self.peers.bus.is_some()
        }

        fn shared(&self) -> bool {
            self.peers.bus.is_some()
        }

        fn subscribe(&mut self, room: &str) {
            if let Some(bus) = self.peers.bus.as_deref_mut() {
                bus.subscribe(room);
            }
        }

        fn unsubscribe(&mut self, room: &str) {
            if let Some(bus) = self.peers.bus.as_deref_mut() {
                bus.unsubscribe(room);
            }
        }

        fn present(&mut self, room: &str, nick: &str) {
            if let Some(bus) = self.peers.bus.as_deref_mut() {
                bus.present(room, nick, true);
            }
        }

        fn absent(&mut self, room: &str, nick: &str) {
            if let Some(bus) = self.peers.bus.as_deref_mut() {
                bus.absent(room, nick);
            }
        }

        fn renamed(&mut self, room: &str, old: &str, new: &str) {
            if let Some(bus) = self.peers.bus.as_deref_mut() {
                bus.renamed(room, old, new);
            }
        }

        fn release(&mut self, nick: &str) {
            if let Some(bus) = self.peers.bus.as_deref_mut() {
                bus.release(nick);
            }
        }

        fn gone(&mut self, id: usize) {
            if let Some(bus) = self.peers.bus.as_deref_mut() {
                bus.gone(id);
            }
        }

        fn ask(&mut self, id: usize, ask: Ask<'_>) -> Asked {
            match self.peers.bus.as_deref_mut() {
                Some(bus) => bus.ask(id, ask),
                None => Asked::Local,
            }
        }
    };
}

impl Outbox for ChatOut<'_, '_> {
    fn send(&mut self, to: usize, bytes: &[u8]) {
        let limits = self.limits;
        let slow = if to == self.io.key {
            let now = self.io.now();
            let core = &mut *self.io.core;
            let (pool, out) = (&mut core.pool, &mut core.counters.bytes_out);
            let me = &mut self.me;
            deliver(
                self.io.link,
                me.frames,
                me.soft_since,
                bytes,
                pool,
                out,
                now,
                limits,
            )
        } else {
            deliver_to(self.io.core, to, bytes, limits)
        };
        if slow {
            self.too_slow.push(to);
        }
    }

    fn full(&self, id: usize) -> bool {
        id == self.io.key && self.io.full()
    }

    peer_hooks!();
}

/// Queues `bytes` (whole lines) for a member, framed if it speaks frames;
/// writes once a chunk is queued; true if it is now over its caps.
#[allow(clippy::too_many_arguments)]
fn deliver(
    link: &mut Link,
    frames: bool,
    soft_since: &mut Millis,
    bytes: &[u8],
    pool: &mut Pool,
    bytes_out: &mut u64,
    now: Millis,
    limits: &Limits,
) -> bool {
    // A member on its way out gets nothing more.
    if !link.is_serving() {
        return false;
    }
    if frames {
        frame_lines(link, bytes, pool);
    } else {
        link.queue(bytes, pool);
    }
    if link.unsent() >= CHUNK {
        // A write error here is met again by its next turn, which closes
        // the connection; nothing to do about it now.
        if let Ok(n) = link.flush(pool) {
            *bytes_out += n as u64;
        }
    }
    let unsent = link.unsent();
    if unsent > limits.chat_output_hard {
        return true;
    }
    if unsent <= limits.chat_output_soft {
        *soft_since = 0;
        return false;
    }
    if *soft_since == 0 {
        *soft_since = now;
        return false;
    }
    now - *soft_since >= limits.chat_soft_time.as_millis() as Millis
}

/// Delivers `bytes` to member `to` (not the one in hand) and puts it on
/// the flush list; true if it is now over its caps.
fn deliver_to(core: &mut Core<Protocols>, to: usize, bytes: &[u8], limits: &Limits) -> bool {
    let now = core.now();
    let Some(peer) = core.peer(to) else {
        return false;
    };
    let frames = peer.state.frames_lines();
    let soft_since = match peer.state {
        State::Chat(m) => &mut m.soft_since,
        State::Ws(w) => &mut w.soft_since,
        _ => return false, // not a chat member
    };
    let slow = deliver(
        peer.link,
        frames,
        soft_since,
        bytes,
        peer.pool,
        peer.bytes_out,
        now,
        limits,
    );
    core.flush_soon(to);
    slow
}

/// The member in hand went over its own output caps during a hub call:
/// it was dropped (its error queued); the hook answers `Close`.
#[derive(Debug)]
pub(super) struct Dropped;

/// Runs `f` on the hub with an outbox for member `io` (described by `me`),
/// then drops the members that went over their caps meanwhile; `Dropped`
/// if the member in hand was one of them.
pub(super) fn hub<R>(
    app: &mut Protocols,
    io: &mut Io<'_>,
    me: Me<'_>,
    f: impl FnOnce(&mut ChatHub, &mut ChatOut<'_, '_>) -> R,
) -> Result<R, Dropped> {
    let mut out = ChatOut {
        io,
        me,
        limits: &app.limits,
        too_slow: &mut app.too_slow,
        peers: Peers::of(&app.loops, &mut app.bus),
    };
    let r = f(&mut app.chat, &mut out);
    if drop_too_slow(&mut app.chat, &mut out, &mut app.stats) {
        return Err(Dropped);
    }
    Ok(r)
}

/// Removes member `io` from the hub, telling its room why.
pub(super) fn leave(app: &mut Protocols, io: &mut Io<'_>, me: Me<'_>, why: Leave) {
    let _ = hub(app, io, me, |hub, out| hub.disconnect(out.io.key, why, out));
}

/// Drops member `io` for not reading (or at the memory cap): its backlog
/// cut, the error line, the room told, then a close.
pub(super) fn drop_me(app: &mut Protocols, io: &mut Io<'_>, me: Me<'_>) -> Act {
    let key = io.key;
    let _ = hub(app, io, me, |_, out| out.too_slow.push(key));
    Act::Close
}

/// Drops the members that went over their output caps during the last hub
/// call: pending output cut, one error line, the room told, then closed
/// (after the turn). Returns true if the member in hand was one of them.
fn drop_too_slow(chat: &mut ChatHub, out: &mut ChatOut<'_, '_>, stats: &mut Stats) -> bool {
    let mut me_dropped = false;
    while let Some(key) = out.too_slow.pop() {
        if key == out.io.key {
            if me_dropped || !out.io.link.is_serving() {
                continue;
            }
            me_dropped = true;
            cut_backlog(out.io.link, out.me.frames, &mut out.io.core.pool);
        } else if !drop_peer(out.io.core, key) {
            continue;
        }
        stats.slow_dropped += 1;
        info!("chat: dropping member (token {key}): over its output limit");
        chat.disconnect(key, Leave::TooSlow, out);
    }
    me_dropped
}

/// What a member dropped for not reading is left with: TCP, the line it
/// may be in the middle of, then the error; WebSocket (frames cannot be
/// cut where a write stopped without knowing where each began), the
/// backlog as it is, the error as a text frame, then close 1008.
fn cut_backlog(link: &mut Link, frames: bool, pool: &mut Pool) {
    if frames {
        frame_lines(link, TOO_SLOW_LINE, pool);
        link.queue(&close_policy(), pool);
        return;
    }
    // The line in flight moves to a buffer of its size and the backlog's
    // storage goes back at once, not when the close ends: the memory cap
    // counts storage, and evicting this member must bring the count down.
    if let Some(buf) = link.output.take() {
        let keep = buf
            .data()
            .iter()
            .position(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let mut line = pool.get_for(keep + TOO_SLOW_LINE.len());
        line.extend(&buf.data()[..keep]);
        pool.put(buf);
        link.output = Some(line);
    }
    link.queue(TOO_SLOW_LINE, pool);
}

/// Cuts member `key`'s backlog, queues the error and begins its close;
/// false if it is not a member still serving.
fn drop_peer(core: &mut Core<Protocols>, key: usize) -> bool {
    let Some(peer) = core.peer(key) else {
        return false;
    };
    if !peer.link.is_serving() {
        return false;
    }
    let frames = peer.state.frames_lines();
    cut_backlog(peer.link, frames, peer.pool);
    core.close_peer(key);
    true
}

/// Delivers the chat lines this process's other loops published to this
/// loop's members.
pub(super) fn take_from_loops(app: &mut Protocols, core: &mut Core<Protocols>) {
    let Some(mesh) = app.loops.take() else {
        return;
    };
    for msg in mesh.take() {
        deliver_here(
            &app.chat,
            core,
            &app.limits,
            &mut app.too_slow,
            &msg.room,
            &msg.line,
        );
    }
    app.loops = Some(mesh);
    drop_slow(app, core);
}

/// Delivers `line`, said in `room` elsewhere (another loop, another
/// server), to this loop's members of the room. Members it takes over
/// their caps are left in `too_slow` for [`drop_slow`].
pub(super) fn deliver_here(
    chat: &ChatHub,
    core: &mut Core<Protocols>,
    limits: &Limits,
    too_slow: &mut Vec<usize>,
    room: &str,
    line: &[u8],
) {
    let mut out = CoreOut {
        core,
        limits,
        too_slow,
        peers: Peers::none(),
    };
    chat.deliver(room, line, &mut out);
}

/// Drops the members a delivery took over their caps, telling their rooms
/// (and whoever shares them).
pub(super) fn drop_slow(app: &mut Protocols, core: &mut Core<Protocols>) {
    if app.too_slow.is_empty() {
        return;
    }
    let mut slow = std::mem::take(&mut app.too_slow);
    let mut out = CoreOut {
        core,
        limits: &app.limits,
        too_slow: &mut app.too_slow,
        peers: Peers::of(&app.loops, &mut app.bus),
    };
    while let Some(key) = slow.pop() {
        if drop_peer(out.core, key) {
            app.stats.slow_dropped += 1;
            info!("chat: dropping member (token {key}): over its output limit");
            app.chat.disconnect(key, Leave::TooSlow, &mut out);
        }
        // Notices of the drop may take others over their caps in turn.
        slow.append(out.too_slow);
    }
    app.too_slow = slow;
}

/// Runs `f` on the hub with an outbox for no member in particular (an
/// answer from the other servers, a notice to a room), then drops the
/// members it took over their caps.
pub(super) fn hub_here<R>(
    app: &mut Protocols,
    core: &mut Core<Protocols>,
    f: impl FnOnce(&mut ChatHub, &mut CoreOut<'_>) -> R,
) -> R {
    let mut out = CoreOut {
        core,
        limits: &app.limits,
        too_slow: &mut app.too_slow,
        peers: Peers::of(&app.loops, &mut app.bus),
    };
    let r = f(&mut app.chat, &mut out);
    drop_slow(app, core);
    r
}

/// The hub's `Outbox` when no member is in hand (lines from elsewhere,
/// answers from the other servers).
pub(super) struct CoreOut<'a> {
    /// The loop's connections.
    core: &'a mut Core<Protocols>,
    /// The caps.
    limits: &'a Limits,
    /// Members over their caps.
    too_slow: &'a mut Vec<usize>,
    /// Who else shares the rooms.
    peers: Peers<'a>,
}

impl Outbox for CoreOut<'_> {
    fn send(&mut self, to: usize, bytes: &[u8]) {
        if deliver_to(self.core, to, bytes, self.limits) {
            self.too_slow.push(to);
        }
    }

    peer_hooks!();
}
