//! The one extension point: what the loop calls ([`App`]'s hooks) and
//! what a hook answers ([`Act`]).

use super::io::{Input, Io};
use super::kinds::Kinds;
use super::state::{Core, Ready};
use super::timer::Millis;

/// What a hook wants the loop to do next with its connection.
#[derive(Debug)]
pub enum Act<S> {
    /// Carry on: use more input when it comes.
    Continue,
    /// Work is left that no event will announce (a budget ran out, or the
    /// output was full with input left to use): come back to it as soon
    /// as it can make progress (next turn, or once the output drains).
    Again,
    /// Finish the input that has already arrived, then close (shutdown).
    Drain,
    /// Use no more input; send what is queued and what the protocol still
    /// has to send (it says so by answering `drained` with `Again`), then
    /// close in stages: FIN, linger, close.
    Close,
    /// Close now, without sending what is queued.
    Abort,
    /// Speak another protocol from here on: the loop replaces the state,
    /// calls `opened` on the new one, then gives it the input left over.
    /// (Boxed, so that every hook's answer stays two words: returned in
    /// registers on the hot path, not written out through memory.)
    Become(Box<S>),
}

/// Which way bytes moved on a connection during a turn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Moved {
    /// Bytes were read from the peer.
    pub read: bool,
    /// The socket took bytes of our output.
    pub written: bool,
}

/// Why a connection closed, as `App::closed` is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// The staged close finished, or the peer closed its side.
    Done,
    /// A read or write failed (a reset, a broken pipe, a TLS error).
    Failed,
    /// Its deadline passed in a phase with nothing left to wait for.
    Expired,
    /// The server stopped before the connection finished.
    Shutdown,
}

/// What runs on the loop. The loop calls these hooks and does what they
/// return; it knows nothing else about what they do. Every connection hook
/// gets the connection's protocol state and an [`Io`]: the connection's
/// own I/O state and the rest of the loop.
pub trait App: Kinds + Sized {
    /// A client was accepted on a listener of kind `listen`: its state.
    fn accepted(&mut self, listen: Self::Listen) -> Self::State;
    /// What a client of `listen` is sent when the server is full, just
    /// before it is closed (empty: nothing).
    fn refusal(&mut self, listen: Self::Listen) -> Vec<u8>;

    /// The connection is open (accepted, connected, or switched to this
    /// protocol by `Act::Become`): its first words, whatever it registers.
    fn opened(&mut self, state: &mut Self::State, io: &mut Io<'_, Self>) -> Act<Self::State>;
    /// Bytes arrived (or are left over) in `input`. Use what can be used
    /// and consume it; stop between messages once `io.full()` says the
    /// output is at its cap, and answer `Again` if usable input is left.
    fn input(
        &mut self,
        state: &mut Self::State,
        input: &mut Input<'_>,
        io: &mut Io<'_, Self>,
    ) -> Act<Self::State>;
    /// The peer sent FIN: no more input will come after what is in
    /// `input` (which may still hold whole messages).
    fn peer_closed(
        &mut self,
        state: &mut Self::State,
        input: &mut Input<'_>,
        io: &mut Io<'_, Self>,
    ) -> Act<Self::State>;
    /// The output is below its cap, and the protocol asked to be told
    /// (`Io::refill`): queue more (a file being streamed) and answer
    /// `Again` while some is left.
    fn drained(&mut self, state: &mut Self::State, io: &mut Io<'_, Self>) -> Act<Self::State>;
    /// Bytes moved on the connection (`moved` says which way): where its
    /// deadline goes now (0: none). Called once per turn with progress,
    /// not once per byte, and once when it opens (with nothing moved).
    fn progress(&mut self, state: &mut Self::State, io: &Io<'_, Self>, moved: Moved) -> Millis;
    /// The connection's deadline passed while it was serving.
    fn deadline(&mut self, state: &mut Self::State, io: &mut Io<'_, Self>) -> Act<Self::State>;
    /// The server is shutting down gracefully.
    fn shutdown(&mut self, state: &mut Self::State, io: &mut Io<'_, Self>) -> Act<Self::State>;
    /// The server holds more memory for its connections than it may, and
    /// this one holds the most: say goodbye if it can be said cheaply, and
    /// answer `Close` or `Abort`.
    fn evict(&mut self, state: &mut Self::State, io: &mut Io<'_, Self>) -> Act<Self::State>;
    /// The connection is gone (its buffers already returned): let go of
    /// whatever else it held.
    fn closed(&mut self, state: &mut Self::State, io: &mut Io<'_, Self>, why: Why);

    /// A source the app registered is ready; answer `true` if work is left
    /// that no event will announce (the loop comes back next turn).
    fn source_ready(
        &mut self,
        key: usize,
        source: &mut Self::Source,
        ready: Ready,
        core: &mut Core<Self>,
    ) -> bool;
    /// Before the loop sleeps, after it wrote what fan-out queued.
    fn before_sleep(&mut self, _core: &mut Core<Self>) {}
    /// Housekeeping, ten times a second.
    fn cron(&mut self, _core: &mut Core<Self>) {}
    /// The app's own periodic timer (`Core::every`) came due, in the timer
    /// phase. `missed` periods went by without a call (the loop was busy
    /// for longer than a period): they are skipped, not replayed, so the
    /// schedule keeps its phase.
    fn timer(&mut self, _core: &mut Core<Self>, _missed: u64) {}
    /// The loop's waker rang (another thread has something for it).
    fn woken(&mut self, _core: &mut Core<Self>) {}
    /// A signal the loop passes on arrived: `SIGHUP` (reload) or
    /// `SIGUSR1` (reopen log files), by number.
    fn signal(&mut self, _signal: i32, _core: &mut Core<Self>) {}
}
