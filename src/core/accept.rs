//! Listeners and the accept loop.
//!
//! Three pitfalls live here:
//! - one readable event on a listener can stand for many queued clients,
//!   so accept until `WouldBlock` (but at most `accepts_per_tick` per turn,
//!   keeping the listener on the deferred list if it is cut short);
//! - past `max_conns`, a client is still accepted, told so (the app's
//!   refusal line) and closed, so the backlog drains and accepting resumes
//!   below the cap;
//! - EMFILE/ENFILE leave the client queued in the kernel. Under edge
//!   triggering no new event will come for it, so the loop would stall
//!   silently; under level triggering it would spin. We keep the listener
//!   marked ready and retry on a short timer, logging at most once a second.

use std::io::{self, ErrorKind};

use log::{debug, info, warn};

use crate::transport::Transport;

use super::app::App;
use super::drive;
use super::link::{Link, Phase};
use super::state::{Core, Slot};
use super::timer::Millis;

/// How long to wait before retrying accept after EMFILE/ENFILE.
pub const ACCEPT_RETRY_MS: Millis = 100;

/// What the accept loop does with an accept error.
#[derive(Debug, PartialEq, Eq)]
pub enum AcceptError {
    /// No more clients queued: wait for the next event.
    Drained,
    /// This client went away before we took it, or a signal interrupted
    /// us: go on with the next (nginx and accept(2) treat these as EAGAIN).
    Retry,
    /// Out of fds (or memory): retry on a timer.
    Exhausted,
}

/// Sorts an accept error into what to do about it.
pub fn classify(e: &io::Error) -> AcceptError {
    match e.kind() {
        ErrorKind::WouldBlock => AcceptError::Drained,
        ErrorKind::Interrupted | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset => {
            AcceptError::Retry
        }
        _ => match e.raw_os_error() {
            Some(libc::EPROTO) | Some(libc::ENETDOWN) | Some(libc::EHOSTUNREACH) => {
                AcceptError::Retry
            }
            // EMFILE, ENFILE, ENOBUFS, ENOMEM and anything unknown: back off.
            _ => AcceptError::Exhausted,
        },
    }
}

/// Logs `msg` at warn level unless it was logged within the last second;
/// returns the new "last logged" time.
fn warn_throttled(last: Millis, now: Millis, msg: std::fmt::Arguments<'_>) -> Millis {
    if last == 0 || now.saturating_sub(last) >= 1000 {
        warn!("{msg}");
        now
    } else {
        last
    }
}

/// Accepts clients on listener `key` until `WouldBlock`, EMFILE or the
/// per-turn cap; each new connection is opened and driven at once.
pub(super) fn accept_ready<A: App>(app: &mut A, core: &mut Core<A>, key: usize) {
    if core.shutting_down() {
        return;
    }
    for _ in 0..core.limits.accepts_per_tick {
        let now = core.now();
        let Some(Slot::Listener(l)) = core.slab.get_mut(key) else {
            return;
        };
        if !l.ready || l.retry_at != 0 {
            return;
        }
        match l.accept() {
            Ok((transport, peer)) => admit(app, core, key, transport, peer),
            Err(e) => match classify(&e) {
                AcceptError::Drained => {
                    l.ready = false;
                    return;
                }
                AcceptError::Retry => continue,
                AcceptError::Exhausted => {
                    // Out of fds: the client stays queued and no new edge
                    // will announce it. Keep `ready` and try again soon.
                    l.retry_at = now + ACCEPT_RETRY_MS;
                    l.warned_error = warn_throttled(
                        l.warned_error,
                        now,
                        format_args!("{}: accept failed: {e} (retrying)", l.listen),
                    );
                    core.counters.accept_errors += 1;
                    return;
                }
            },
        }
    }
    // Cut short by the per-turn cap: more clients may be queued.
    core.defer(key);
}

/// Takes a client accepted on listener `key` into the slab (over TLS if
/// the listener says so), or turns it away when the loop is full.
fn admit<A: App>(app: &mut A, core: &mut Core<A>, key: usize, transport: Transport, peer: String) {
    let now = core.now();
    let Some(Slot::Listener(l)) = core.slab.get_mut(key) else {
        return;
    };
    let (listen, tls) = (l.listen, l.tls.clone());
    if core.open >= core.limits.max_conns {
        l.warned_full = warn_throttled(
            l.warned_full,
            now,
            format_args!(
                "{listen}: at --max-conns ({}), turning clients away",
                core.limits.max_conns
            ),
        );
        core.counters.refused += 1;
        let line = if tls.is_some() {
            Vec::new() // a TLS client could not read a plaintext line
        } else {
            app.refusal(listen)
        };
        return refuse(transport, &peer, &line);
    }
    let transport = match tls {
        None => transport,
        Some(config) => match transport.start_tls(config) {
            Ok(t) => t,
            Err(e) => return info!("{listen}: cannot start TLS for {peer}: {e}"),
        },
    };
    let id = core.next_id();
    let link = Link::new(transport, id, Phase::Open);
    let state = app.accepted(listen);
    match core.insert(link, state) {
        Ok(conn) => {
            debug!("{listen} connection from {peer} (conn {id}, token {conn})");
            drive::open(app, core, conn);
        }
        Err(e) => info!("{listen}: cannot register {peer}: {e}"),
    }
}

/// Turns a client away: `line` (best effort: a non-blocking write into a
/// fresh socket's empty send buffer), then FIN, then read and discard what
/// the client already sent (up to 64 KiB), since closing a socket with
/// unread input sends RST, which can wipe our line from the client's
/// buffer before it reads it. Never blocks.
fn refuse(mut transport: Transport, peer: &str, line: &[u8]) {
    debug!("refused {peer}: server full");
    if !line.is_empty()
        && let Err(e) = transport.write_plain(line)
    {
        debug!("refusal line to {peer} not sent: {e}");
    }
    transport.discard_input();
}
