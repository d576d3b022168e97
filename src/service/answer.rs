//! What a service answers with ([`Verdict`]) and where it puts bytes for
//! connections other than the one it is answering ([`Outbox`]).

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
}
