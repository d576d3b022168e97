//! The event loop, and nothing but the event loop: one thread, one
//! `mio::Poll`, every socket in one `Slab`. It knows sockets, buffers,
//! readiness, deadlines and the order of a close. It knows no protocol:
//! what the bytes mean is the business of an [`App`], which the loop calls
//! at fixed moments of a connection's life (its hooks) and obeys through
//! what each hook returns ([`Act`]).
//!
//! Read it in this order:
//!
//! 1. `app.rs`: [`App`] and [`Act`], the one extension point (and
//!    `kinds.rs`, the types it has the loop keep).
//! 2. `reactor.rs`: the loop's phases, as in Redis's `aeProcessEvents`:
//!    before sleep, poll, dispatch, deferred list, timers.
//! 3. `drive.rs`: one connection's turn: write, use input, read, write,
//!    refill, then the staged close. Every pitfall of edge-triggered I/O
//!    on a stream is handled there, where it happens.
//! 4. `link.rs`: what a connection is to the loop.
//! 5. `io.rs`: what a hook may do (queue bytes, reach other connections).
//! 6. `state.rs`: what the loop owns besides the app (the slab, the
//!    buffer pool, the clock, the lists of connections with work).
//! 7. `listener.rs` and `accept.rs`, `timer.rs`, `memory.rs`: listeners
//!    and accepting, deadlines, and the bound on what peers can make the
//!    loop hold.
//!
//! Why methods over a slab key, not functions over a socket: a connection
//! is a slab slot, and its key is its token in the poll set, so an event
//! leads straight to its state. The connection being driven is taken out
//! of its slot for the length of its turn (`Slot::InHand`), so a hook owns
//! its connection outright and can still reach every other one through
//! the slab (fan-out), with no second lookup and no aliasing.

mod accept;
mod app;
mod drive;
mod io;
mod kinds;
mod link;
mod listener;
mod memory;
mod reactor;
mod state;
pub mod timer;

pub use app::{Act, App, Moved, Why};
pub use io::{Input, Io};
pub use kinds::Kinds;
pub use link::{Link, Phase, is_disconnect};
pub use listener::{ListenSocket, Listener};
pub use memory::{bound_default, held_by_connections};
pub use reactor::{Ended, Reactor, Stopper};
pub use state::{Conn, Core, CoreLimits, Counters, Order, Peer, Ready, Slot};
pub use timer::Millis;
