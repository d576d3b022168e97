//! What the loop stores on an app's behalf: the three kinds of thing in
//! its slab besides its own. Apart from `App` (the hooks), so the loop's
//! state can name them without naming the hooks.

/// The types an app gives the loop to keep for it.
pub trait Kinds {
    /// A connection's protocol state: one enum variant per protocol.
    type State: std::fmt::Debug;
    /// What a listener's clients speak: a small tag the app defines.
    type Listen: Copy + std::fmt::Display;
    /// Sockets the app owns and the loop only polls for it (a datagram
    /// socket, a timer fd): registered once for both directions.
    type Source: mio::event::Source + std::fmt::Debug;
}
