//! What a service answers with ([`Verdict`]) and where it puts bytes for
//! connections other than the one it is answering ([`Outbox`]), and, for
//! the chat, what it tells and asks the other servers sharing its rooms
//! ([`Ask`], [`Asked`]).

/// What a service tells the loop after it handled some input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Keep the connection open and keep reading.
    Continue,
    /// Stop reading, send what is queued, then close (a lingering close:
    /// FIN first, so the client reads our last bytes before any reset).
    Close,
}

/// Where a service puts bytes for a connection. The reactor implements it
/// over its connections (enforcing each one's output cap); tests implement
/// it over a map of `Vec<u8>`.
pub trait Outbox {
    /// Queue `bytes` for connection `to` (a slab key). Never blocks.
    fn send(&mut self, to: usize, bytes: &[u8]);

    /// With several loops: hand a line sent to room `room` to the other
    /// loops, whose members of that room get it too. One loop: nothing.
    fn publish(&mut self, _room: &str, _line: &[u8]) {}

    /// True if other loops may have members (so a room empty here is not
    /// necessarily empty).
    fn has_peers(&self) -> bool {
        false
    }

    /// True if connection `id`'s output is at its cap: a service stops
    /// taking that connection's input until it drains (its replies are
    /// what fill it).
    fn full(&self, _id: usize) -> bool {
        false
    }

    /// True if other servers share the rooms (a bus): the hub then tells
    /// the hooks below who is where, and asks before it answers `/who`,
    /// `/rooms` and `/nick`. Without one (the default) they are never
    /// called.
    fn shared(&self) -> bool {
        false
    }

    /// The first member of `room` here arrived.
    fn subscribe(&mut self, _room: &str) {}

    /// The last member of `room` here left (after its `absent`).
    fn unsubscribe(&mut self, _room: &str) {}

    /// Member `nick` is in `room` now.
    fn present(&mut self, _room: &str, _nick: &str) {}

    /// Member `nick` left `room`.
    fn absent(&mut self, _room: &str, _nick: &str) {}

    /// A member of `room` changed its nick from `old` to `new`.
    fn renamed(&mut self, _room: &str, _old: &str, _new: &str) {}

    /// A member let its custom nick `nick` go.
    fn release(&mut self, _nick: &str) {}

    /// Member `id` disconnected.
    fn gone(&mut self, _id: usize) {}

    /// Member `id` asks what the other servers know.
    fn ask(&mut self, _id: usize, _ask: Ask<'_>) -> Asked {
        Asked::Local
    }
}

/// A question the chat asks the servers sharing its rooms.
#[derive(Clone, Copy, Debug)]
pub enum Ask<'a> {
    /// `/who` in room `room`.
    Who(&'a str),
    /// `/rooms`.
    Rooms,
    /// `/nick NAME`: may this member take it?
    Nick(&'a str),
}

/// What became of a question.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asked {
    /// No other servers: answer from what is here.
    Local,
    /// Sent; the answer comes later.
    Sent,
    /// The other servers cannot be reached now.
    Unreachable,
}
