//! One connection's turn: do everything its readiness allows, in a fixed
//! order, then move its close and its deadline along. Every pitfall of
//! edge-triggered I/O on a stream is handled here, where it happens.
//!
//! A turn takes the connection out of its slot (`Core::take`), so its
//! hooks own it while they reach any other connection, and puts it back
//! at the end. The entry points are the moments a turn starts: an event
//! or the deferred list (`drive`), a new connection (`open`), its deadline
//! (`expire`), the shutdown (`shut_down`) and the memory cap (`evict`).

use std::io::{self, ErrorKind};

use log::{debug, info, trace};

use super::app::{Act, App, Moved, Why};
use super::io::{Input, Io};
use super::link::{Link, Phase, is_disconnect};
use super::state::{Conn, Core, Order};

/// What a turn did so far, for its last steps.
#[derive(Debug, Default)]
struct Turn {
    /// Bytes moved: the deadline moves, once, at the end.
    moved: Moved,
    /// A hook asked to be called again without a new event.
    again: bool,
    /// The protocol still has output to produce (`drained` said `Again`):
    /// a close must wait for it.
    sending: bool,
}

/// Whether the connection is still there after a step.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    /// Go on with the turn.
    Go,
    /// It was closed: the turn ends here.
    Closed,
}

/// Drives connection `key` after an event, from the deferred list, or before
/// sleep: a whole turn.
pub(super) fn drive<A: App>(app: &mut A, core: &mut Core<A>, key: usize) {
    let Some(mut conn) = core.take(key) else {
        return;
    };
    if conn.link.phase == Phase::Connecting {
        connected(app, core, key, &mut conn);
    } else {
        turn(app, core, key, &mut conn, Turn::default());
    }
    core.put(key, conn);
    run_orders(app, core);
}

/// A new connection `key` (just accepted): its protocol's first words and
/// first deadline, then a turn.
pub(super) fn open<A: App>(app: &mut A, core: &mut Core<A>, key: usize) {
    let Some(mut conn) = core.take(key) else {
        return;
    };
    let mut t = Turn::default();
    if opened(app, core, key, &mut conn, &mut t) == Flow::Go {
        turn(app, core, key, &mut conn, t);
    }
    core.put(key, conn);
    run_orders(app, core);
}

/// Connection `key`'s deadline passed: the protocol decides while it is
/// serving; a close that is still waiting (flush, linger) ends now.
pub(super) fn expire<A: App>(app: &mut A, core: &mut Core<A>, key: usize) {
    let Some(mut conn) = core.take(key) else {
        return;
    };
    trace!(
        "conn {}: deadline passed ({:?})",
        conn.link.id, conn.link.phase
    );
    let mut t = Turn::default();
    let flow = if conn.link.is_serving() {
        let act = call(app, core, key, &mut conn, |app, state, io| {
            app.deadline(state, io)
        });
        if matches!(act, Act::Close | Act::Abort) {
            core.counters.timeouts += 1;
        }
        apply(app, core, key, &mut conn, act, &mut t)
    } else {
        core.counters.timeouts += 1;
        let why = match conn.link.phase {
            Phase::Connecting => Why::Failed,
            _ => Why::Expired,
        };
        close(app, core, key, &mut conn, why);
        Flow::Closed
    };
    if flow == Flow::Go {
        turn(app, core, key, &mut conn, t);
    }
    core.put(key, conn);
    run_orders(app, core);
}

/// The server is shutting down: connection `key` is told, and does what
/// its protocol answers (finish what arrived, say goodbye, close).
pub(super) fn shut_down<A: App>(app: &mut A, core: &mut Core<A>, key: usize) {
    let Some(mut conn) = core.take(key) else {
        return;
    };
    let mut t = Turn::default();
    let flow = if conn.link.is_serving() {
        let act = call(app, core, key, &mut conn, |app, state, io| {
            app.shutdown(state, io)
        });
        apply(app, core, key, &mut conn, act, &mut t)
    } else {
        Flow::Go
    };
    if flow == Flow::Go {
        turn(app, core, key, &mut conn, t);
    }
    core.put(key, conn);
    run_orders(app, core);
}

/// Connection `key` holds the most memory while the whole is over its
/// cap: its protocol says goodbye (or not), and it closes.
pub(super) fn evict<A: App>(app: &mut A, core: &mut Core<A>, key: usize) {
    let Some(mut conn) = core.take(key) else {
        return;
    };
    core.counters.evicted += 1;
    info!(
        "conn {}: evicted, holding {} bytes while all connections hold more than the memory cap",
        conn.link.id,
        conn.link.held()
    );
    let mut t = Turn::default();
    let act = call(app, core, key, &mut conn, |app, state, io| {
        app.evict(state, io)
    });
    if apply(app, core, key, &mut conn, act, &mut t) == Flow::Go {
        turn(app, core, key, &mut conn, t);
    }
    core.put(key, conn);
    run_orders(app, core);
}

/// Closes connection `key` now, whatever its phase (the grace period is
/// over, or a second signal came).
pub(super) fn close_now<A: App>(app: &mut A, core: &mut Core<A>, key: usize, why: Why) {
    if let Some(mut conn) = core.take(key) {
        close(app, core, key, &mut conn, why);
        core.put(key, conn);
    }
    run_orders(app, core);
}

/// The turn itself: write, use input left over, read and use, write,
/// refill, then the close and the deadline.
#[inline]
fn turn<A: App>(
    app: &mut A,
    core: &mut Core<A>,
    key: usize,
    conn: &mut Conn<A::State>,
    mut t: Turn,
) {
    match steps(app, core, key, conn, &mut t) {
        Ok(Flow::Go) => {}
        Ok(Flow::Closed) => return,
        Err(e) => return fail(app, core, key, conn, e),
    }
    if conn.link.phase != Phase::Open && advance_close(app, core, key, conn, &t) == Flow::Closed {
        return;
    }
    if t.moved != Moved::default() && conn.link.transport.can_send() {
        let when = match conn.link.phase {
            Phase::Open | Phase::Draining => {
                let io = Io {
                    key,
                    link: &mut conn.link,
                    core,
                };
                app.progress(&mut conn.state, &io, t.moved)
            }
            // A close that still makes progress gets its linger anew.
            Phase::Flushing => core.due_in(core.limits.linger),
            Phase::Connecting | Phase::Lingering | Phase::Closed => conn.link.deadline,
        };
        core.rearm(key, &mut conn.link, when);
    }
    // Work left that no edge will announce: input the connection can take
    // now, or a hook that stopped early with room to go on.
    let link = &conn.link;
    let waiting = (link.readable && may_read(link, core))
        || ((t.again || link.held_input) && !full(link, core));
    if waiting {
        core.defer_link(key, &mut conn.link);
    }
}

/// The I/O steps of a turn, in order.
fn steps<A: App>(
    app: &mut A,
    core: &mut Core<A>,
    key: usize,
    conn: &mut Conn<A::State>,
    t: &mut Turn,
) -> io::Result<Flow> {
    t.moved.written |= write(core, &mut conn.link)? > 0;
    // Input a hook left while the output was full (or a budget ran out)
    // is used before more is read.
    if conn.link.held_input && conn.link.is_serving() && !full(&conn.link, core) {
        if use_input(app, core, key, conn, t) == Flow::Closed {
            return Ok(Flow::Closed);
        }
        t.moved.written |= write(core, &mut conn.link)? > 0;
    }
    if read(app, core, key, conn, t)? == Flow::Closed {
        return Ok(Flow::Closed);
    }
    // Output the read itself made sendable (a TLS handshake that finished
    // after the first application bytes were decrypted).
    t.moved.written |= write(core, &mut conn.link)? > 0;
    // Room in the output, and the protocol has more to send (a file).
    let link = &conn.link;
    if link.refill
        && matches!(link.phase, Phase::Open | Phase::Draining | Phase::Flushing)
        && !full(link, core)
    {
        let act = call(app, core, key, conn, |app, state, io| {
            app.drained(state, io)
        });
        t.sending = matches!(act, Act::Again);
        conn.link.refill = t.sending;
        if apply(app, core, key, conn, act, t) == Flow::Closed {
            return Ok(Flow::Closed);
        }
        t.moved.written |= write(core, &mut conn.link)? > 0;
    }
    // A close waits for what the protocol still has to send.
    t.sending |= conn.link.refill;
    Ok(Flow::Go)
}

/// True when the connection's output is at its cap: no new input is used.
#[inline]
fn full<A: App>(link: &Link, core: &Core<A>) -> bool {
    link.unsent() >= core.limits.output_cap
}

/// True if the connection should take more input from its socket now.
#[inline]
fn may_read<A: App>(link: &Link, core: &Core<A>) -> bool {
    match link.phase {
        // Backpressure: a peer whose output is not read, or whose input
        // waits unused, stops being read; its window then closes, and TCP
        // stops it.
        Phase::Open | Phase::Draining => !full(link, core) && !link.held_input,
        // Lingering reads only to discard, so the close sends FIN, not RST.
        Phase::Lingering => true,
        Phase::Connecting | Phase::Flushing | Phase::Closed => false,
    }
}

/// Writes queued output while the socket takes it; counts the bytes.
#[inline]
fn write<A: App>(core: &mut Core<A>, link: &mut Link) -> io::Result<usize> {
    if link.phase == Phase::Closed || link.unsent() == 0 {
        return Ok(0);
    }
    let n = link.flush(&mut core.pool)?;
    if n > 0 {
        trace!(
            "conn {}: wrote {n} bytes, {} unsent",
            link.id,
            link.unsent()
        );
        core.counters.bytes_out += n as u64;
    }
    Ok(n)
}

/// Reads until `WouldBlock`, a short read, EOF, backpressure or the
/// per-turn budget, handing what arrives to the protocol after each read
/// (and writing what it answers at once).
fn read<A: App>(
    app: &mut A,
    core: &mut Core<A>,
    key: usize,
    conn: &mut Conn<A::State>,
    t: &mut Turn,
) -> io::Result<Flow> {
    let mut budget = core.limits.read_budget;
    while conn.link.readable && may_read(&conn.link, core) {
        if budget == 0 {
            // One busy peer must not starve the others: the deferred list
            // brings it back after everyone else has had this turn.
            core.defer_link(key, &mut conn.link);
            break;
        }
        let link = &mut conn.link;
        let mut buf = link.input.take().unwrap_or_else(|| core.pool.get());
        let was_sending = link.transport.can_send();
        let got = link
            .transport
            .read_into(&mut buf, &mut core.pool, link.peer_closed);
        link.input = Some(buf);
        if !was_sending && link.transport.can_send() {
            // TLS handshake done: the handshake's deadline gives way to
            // the protocol's own.
            trace!("conn {}: TLS established", link.id);
            t.moved.read = true;
        }
        match got {
            Ok(g) if g.n == 0 => {
                // FIN (or TLS close_notify): the peer will send no more
                // (it may still read).
                link.readable = false;
                link.read_eof = true;
                core.pool.release_if_empty(&mut link.input);
                trace!("conn {}: end of input", link.id);
                return Ok(on_eof(app, core, key, conn, t));
            }
            Ok(g) => {
                // Drained: a plain read that did not fill the room
                // (epoll(7)), unless the event also said the peer closed
                // (data and FIN in one event: no new edge would announce
                // the FIN); or TLS with nothing left in user space. Skip
                // the read that would only say WouldBlock.
                if g.drained {
                    link.readable = false;
                }
                trace!("conn {}: read {} bytes", link.id, g.n);
                core.counters.bytes_in += g.n as u64;
                budget = budget.saturating_sub(g.n);
                t.moved.read = true;
                if link.phase == Phase::Lingering {
                    // Read only to be discarded.
                    if let Some(b) = link.input.as_mut() {
                        b.consume(b.len());
                    }
                    core.pool.release_if_empty(&mut link.input);
                    continue;
                }
                if use_input(app, core, key, conn, t) == Flow::Closed {
                    return Ok(Flow::Closed);
                }
                t.moved.written |= write(core, &mut conn.link)? > 0;
                if conn.link.held_input {
                    // The protocol stopped with input left: it is used
                    // before more is read (next turn, or once the output
                    // drains), so the buffer stays bounded.
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                link.readable = false;
                core.pool.release_if_empty(&mut link.input);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                core.pool.release_if_empty(&mut link.input);
                return Err(e);
            }
        }
    }
    Ok(Flow::Go)
}

/// The peer's FIN: a lingering close was waiting only for it; a serving
/// connection's protocol decides (a half-close may still be answered).
fn on_eof<A: App>(
    app: &mut A,
    core: &mut Core<A>,
    key: usize,
    conn: &mut Conn<A::State>,
    t: &mut Turn,
) -> Flow {
    if !conn.link.is_serving() {
        if conn.link.phase == Phase::Lingering {
            close(app, core, key, conn, Why::Done);
            return Flow::Closed;
        }
        return Flow::Go;
    }
    let Conn { link, state } = conn;
    let mut buf = link.input.take();
    let act = {
        let mut input = Input::new(&mut buf);
        let mut io = Io { key, link, core };
        app.peer_closed(state, &mut input, &mut io)
    };
    put_input(core, &mut conn.link, buf, &act);
    apply(app, core, key, conn, act, t)
}

/// Lends the connection's input to its protocol's `input` hook and acts
/// on the answer.
#[inline]
fn use_input<A: App>(
    app: &mut A,
    core: &mut Core<A>,
    key: usize,
    conn: &mut Conn<A::State>,
    t: &mut Turn,
) -> Flow {
    let Conn { link, state } = conn;
    let mut buf = link.input.take();
    let act = {
        let mut input = Input::new(&mut buf);
        let mut io = Io { key, link, core };
        app.input(state, &mut input, &mut io)
    };
    put_input(core, &mut conn.link, buf, &act);
    apply(app, core, key, conn, act, t)
}

/// Puts back what a hook left of the input; remembers whether usable
/// input was left (`Again`), so it is used before more is read.
#[inline]
fn put_input<A: App, S>(
    core: &mut Core<A>,
    link: &mut Link,
    buf: Option<Box<crate::buf::Buffer>>,
    act: &Act<S>,
) {
    link.input = buf;
    core.pool.release_if_empty(&mut link.input);
    link.held_input = matches!(act, Act::Again) && link.input.is_some();
}

/// Calls `hook` with the connection's state and an `Io` for it.
fn call<A: App>(
    app: &mut A,
    core: &mut Core<A>,
    key: usize,
    conn: &mut Conn<A::State>,
    hook: impl FnOnce(&mut A, &mut A::State, &mut Io<'_, A>) -> Act<A::State>,
) -> Act<A::State> {
    let Conn { link, state } = conn;
    let mut io = Io { key, link, core };
    hook(app, state, &mut io)
}

/// Does what a hook answered.
#[inline]
fn apply<A: App>(
    app: &mut A,
    core: &mut Core<A>,
    key: usize,
    conn: &mut Conn<A::State>,
    act: Act<A::State>,
    t: &mut Turn,
) -> Flow {
    match act {
        Act::Continue => Flow::Go,
        act => apply_rest(app, core, key, conn, act, t),
    }
}

/// `apply` for everything but `Continue`.
fn apply_rest<A: App>(
    app: &mut A,
    core: &mut Core<A>,
    key: usize,
    conn: &mut Conn<A::State>,
    act: Act<A::State>,
    t: &mut Turn,
) -> Flow {
    let flow = match act {
        Act::Continue => Flow::Go,
        Act::Again => {
            t.again = true;
            Flow::Go
        }
        Act::Drain => {
            if conn.link.phase == Phase::Open {
                conn.link.phase = Phase::Draining;
                // Input may have arrived whose event is later in this
                // batch, or in the next poll: a read says for sure.
                conn.link.readable = true;
            }
            Flow::Go
        }
        Act::Close => {
            core.begin_close(key, &mut conn.link);
            Flow::Go
        }
        Act::Abort => {
            close(app, core, key, conn, Why::Done);
            Flow::Closed
        }
        Act::Become(state) => {
            conn.state = *state;
            debug!("conn {}: now {:?}", conn.link.id, conn.state);
            let flow = opened(app, core, key, conn, t);
            if flow == Flow::Go && conn.link.input.is_some() && conn.link.is_serving() {
                use_input(app, core, key, conn, t)
            } else {
                flow
            }
        }
    };
    if conn.link.phase == Phase::Closed {
        Flow::Closed
    } else {
        flow
    }
}

/// Calls `opened` and gives the connection its first deadline: what its
/// protocol says, or the handshake's if that comes first.
fn opened<A: App>(
    app: &mut A,
    core: &mut Core<A>,
    key: usize,
    conn: &mut Conn<A::State>,
    t: &mut Turn,
) -> Flow {
    let act = call(app, core, key, conn, |app, state, io| app.opened(state, io));
    let mut when = {
        let io = Io {
            key,
            link: &mut conn.link,
            core,
        };
        app.progress(&mut conn.state, &io, Moved::default())
    };
    if !conn.link.transport.can_send() {
        let handshake = core.due_in(core.limits.handshake_timeout);
        when = if when == 0 {
            handshake
        } else {
            when.min(handshake)
        };
    }
    if conn.link.is_serving() {
        core.rearm(key, &mut conn.link, when);
    }
    apply(app, core, key, conn, act, t)
}

/// An outbound connection's socket became writable (or failed): the
/// connect finished one way or the other.
fn connected<A: App>(app: &mut A, core: &mut Core<A>, key: usize, conn: &mut Conn<A::State>) {
    match conn.link.transport.connect_result() {
        Ok(false) => {} // still on its way: the next event tells
        Ok(true) => {
            conn.link.phase = Phase::Open;
            conn.link.writable = true;
            let mut t = Turn::default();
            if opened(app, core, key, conn, &mut t) == Flow::Go {
                turn(app, core, key, conn, t);
            }
        }
        Err(e) => {
            debug!("conn {}: connect failed: {e}", conn.link.id);
            close(app, core, key, conn, Why::Failed);
        }
    }
}

/// Carries out what hooks ordered for other connections during a turn,
/// once that turn is over and its connection is back in its slot.
/// Closing one may order more (what it tells others): the loop takes those
/// too, one after another, never nested.
#[inline]
pub(super) fn run_orders<A: App>(app: &mut A, core: &mut Core<A>) {
    if !core.orders.is_empty() {
        run_orders_now(app, core);
    }
}

/// `run_orders` once there are some.
fn run_orders_now<A: App>(app: &mut A, core: &mut Core<A>) {
    while let Some((key, order)) = core.orders.pop() {
        let Some(mut conn) = core.take(key) else {
            continue;
        };
        match order {
            Order::Abort => close(app, core, key, &mut conn, Why::Done),
        }
        core.put(key, conn);
    }
}

/// Advances a closing connection as far as it can go now.
#[inline(never)]
fn advance_close<A: App>(
    app: &mut A,
    core: &mut Core<A>,
    key: usize,
    conn: &mut Conn<A::State>,
    t: &Turn,
) -> Flow {
    loop {
        let link = &mut conn.link;
        match link.phase {
            // Shutting down, and nothing more has arrived: close.
            Phase::Draining if !link.readable && !link.held_input && !t.again => {
                core.begin_close(key, link);
            }
            Phase::Flushing if link.unsent() == 0 && !t.sending => {
                // All sent: FIN (TLS: close_notify first, and FIN once it
                // is out), then wait for the peer's FIN.
                match link.transport.shutdown_write(&mut core.pool) {
                    Ok(true) => {}
                    Ok(false) => {
                        link.writable = false; // the alert waits for room
                        return Flow::Go;
                    }
                    Err(e) => trace!("conn {}: shutdown: {e}", link.id),
                }
                if link.read_eof {
                    close(app, core, key, conn, Why::Done);
                    return Flow::Closed;
                }
                link.phase = Phase::Lingering;
                if link.readable {
                    // Input is already waiting: discard it now.
                    let mut t = Turn::default();
                    return match read(app, core, key, conn, &mut t) {
                        Ok(flow) => flow,
                        Err(e) => {
                            fail(app, core, key, conn, e);
                            Flow::Closed
                        }
                    };
                }
            }
            _ => return Flow::Go,
        }
    }
}

/// A read or write failed: close this connection, and only it.
fn fail<A: App>(
    app: &mut A,
    core: &mut Core<A>,
    key: usize,
    conn: &mut Conn<A::State>,
    e: io::Error,
) {
    if is_disconnect(&e) {
        debug!("conn {}: {e}", conn.link.id);
    } else {
        info!("conn {}: closing after error: {e}", conn.link.id);
    }
    close(app, core, key, conn, Why::Failed);
}

/// Closes connection `key` now: its buffers go back to the pool, its
/// protocol is told, and its slot stays (as `Closed`) until the batch is
/// over, so later events for its token are recognisably stale.
fn close<A: App>(app: &mut A, core: &mut Core<A>, key: usize, conn: &mut Conn<A::State>, why: Why) {
    let link = &mut conn.link;
    if link.phase == Phase::Closed {
        return;
    }
    let was = link.phase;
    link.phase = Phase::Closed;
    link.readable = false;
    link.writable = false;
    link.release(&mut core.pool);
    core.open -= 1;
    core.counters.closed += 1;
    core.closed.push(key);
    debug!("conn {} closed ({why:?}, was {was:?})", link.id);
    let Conn { link, state } = conn;
    let mut io = Io { key, link, core };
    app.closed(state, &mut io, why);
}
