//! The chat bus on the loop: the two Redis connections of `service::bus`
//! are connections of this loop like any member's, registered once in the
//! same poll, read and written by the same turn; no thread, no runtime.
//! This file moves their bytes and the clock into the bus, and what the
//! bus brings (lines from other servers, notices, answers) to the hub.
//!
//! The subscriber is always read dry: lines it brings are queued to the
//! members at once, and a member that cannot keep up meets its own caps
//! (dropped after the delivery), never the subscriber's pace. What the
//! bus has to send is handed to the sockets once per loop turn, before the
//! loop sleeps, so the lines of one turn leave in one write.

use log::debug;

use crate::core::{Core, Moved, Order, Phase, Why};
use crate::service::bus::{Event, ROLES, Role};

use super::chat::{self, drop_slow, hub_here};
use super::{Act, Input, Io, Protocol, Protocols, State};

/// One of the loop's two Redis connections.
#[derive(Debug)]
pub struct BusLink {
    /// Which one.
    pub role: Role,
}

impl Protocol for BusLink {
    fn opened(&mut self, io: &mut Io<'_>, app: &mut Protocols) -> Act {
        let Some(bus) = app.bus.as_deref_mut() else {
            return Act::Abort;
        };
        debug!("bus: {} connected to {}", self.role.name(), bus.addr());
        bus.connected(self.role, io.now());
        events(app, io.core);
        Act::Continue
    }

    fn input(&mut self, input: &mut Input<'_>, io: &mut Io<'_>, app: &mut Protocols) -> Act {
        let now = io.now();
        let Protocols {
            bus,
            chat,
            limits,
            too_slow,
            ..
        } = app;
        let Some(bus) = bus.as_deref_mut() else {
            return Act::Abort;
        };
        let core = &mut *io.core;
        let got = bus.input(self.role, input.data(), now, &mut |room, line| {
            chat::deliver_here(chat, core, limits, too_slow, room, line);
        });
        drop_slow(app, io.core);
        let act = match got {
            Ok(used) => {
                input.consume(used);
                Act::Continue
            }
            Err(why) => {
                debug!("bus: {} dropped: {why}", self.role.name());
                // The bus is down on it already: forget it, and retry.
                app.bus_keys[self.role.at()] = None;
                Act::Abort
            }
        };
        events(app, io.core);
        act
    }

    fn peer_closed(
        &mut self,
        _input: &mut Input<'_>,
        _io: &mut Io<'_>,
        _app: &mut Protocols,
    ) -> Act {
        Act::Abort
    }

    /// The bus keeps its own deadlines (pings, replies, retries).
    fn progress(&mut self, _io: &Io<'_>, _app: &Protocols, _moved: Moved) -> u64 {
        0
    }

    fn shutdown(&mut self, io: &mut Io<'_>, app: &mut Protocols) -> Act {
        if let Some(bus) = app.bus.as_deref_mut() {
            bus.goodbye();
            let now = io.now();
            let (link, pool) = (&mut *io.link, &mut io.core.pool);
            let unsent = link.unsent();
            bus.take_output(self.role, now, unsent, |bytes| link.queue(bytes, pool));
        }
        Act::Close
    }

    fn closed(&mut self, io: &mut Io<'_>, app: &mut Protocols, _why: Why) {
        let at = self.role.at();
        if app.bus_keys[at] != Some(io.key) {
            return; // given up already
        }
        app.bus_keys[at] = None;
        if let Some(bus) = app.bus.as_deref_mut() {
            bus.closed(self.role, io.now());
        }
        events(app, io.core);
    }
}

/// The housekeeping tick: connections to make, checks, and, once the
/// server is shutting down, no more of either.
pub(super) fn tick(app: &mut Protocols, core: &mut Core<Protocols>) {
    let Some(bus) = app.bus.as_deref_mut() else {
        return;
    };
    if core.shutting_down() {
        bus.goodbye();
        // A connection still being made has nothing to finish (an open
        // one was told by its own shutdown hook).
        for slot in &mut app.bus_keys {
            if let Some(key) = *slot
                && core
                    .peer(key)
                    .is_some_and(|p| p.link.phase == Phase::Connecting)
            {
                *slot = None;
                core.order(key, Order::Abort);
            }
        }
        return;
    }
    bus.tick(core.now());
    events(app, core);
}

/// Hands what the bus has to send to its sockets (before the loop sleeps).
pub(super) fn flush(app: &mut Protocols, core: &mut Core<Protocols>) {
    let Some(bus) = app.bus.as_deref_mut() else {
        return;
    };
    let now = core.now();
    for role in ROLES {
        let Some(key) = app.bus_keys[role.at()] else {
            continue;
        };
        let Some(peer) = core.peer(key) else {
            continue;
        };
        let mut moved = false;
        let unsent = peer.link.unsent();
        bus.take_output(role, now, unsent, |bytes| {
            peer.link.queue(bytes, peer.pool);
            moved = true;
        });
        if moved {
            core.flush_peer(key);
        }
    }
}

/// Does what the bus asked: connections to make or give up, the roster
/// after a greeting, notices and answers for the hub.
fn events(app: &mut Protocols, core: &mut Core<Protocols>) {
    loop {
        let Some(bus) = app.bus.as_deref_mut() else {
            return;
        };
        if !bus.has_events() {
            return;
        }
        for event in bus.events() {
            on_event(app, core, event);
        }
    }
}

/// One thing the bus asked for.
fn on_event(app: &mut Protocols, core: &mut Core<Protocols>, event: Event) {
    match event {
        Event::Connect(role) => connect(app, core, role),
        Event::Drop(role) => {
            if let Some(key) = app.bus_keys[role.at()].take() {
                core.order(key, Order::Abort);
            }
        }
        Event::Look(role) => {
            if let Some(key) = app.bus_keys[role.at()] {
                core.look(key);
            }
        }
        Event::Roster => {
            let Protocols { chat, bus, .. } = app;
            if let Some(bus) = bus.as_deref_mut() {
                chat.roster(|id, room, nick, custom| {
                    bus.present(room, nick, false);
                    if custom {
                        bus.reclaim(id, nick);
                    }
                });
            }
        }
        Event::Notice { room, line } => {
            let Protocols {
                chat,
                limits,
                too_slow,
                ..
            } = app;
            chat::deliver_here(chat, core, limits, too_slow, &room, line.as_bytes());
            drop_slow(app, core);
        }
        Event::Who {
            member,
            room,
            names,
            total,
        } => hub_here(app, core, |hub, out| {
            hub.who_answer(member, &room, &names, total, out)
        }),
        Event::Rooms {
            member,
            rooms,
            total,
        } => hub_here(app, core, |hub, out| {
            hub.rooms_answer(member, &rooms, total, out)
        }),
        Event::Nick { member, nick, ok } => hub_here(app, core, |hub, out| {
            hub.nick_answer(member, &nick, ok, out)
        }),
        Event::NickLost { member, nick } => {
            hub_here(app, core, |hub, out| hub.nick_lost(member, &nick, out))
        }
        Event::NoAnswer { member } => hub_here(app, core, |hub, out| hub.no_answer(member, out)),
    }
}

/// Opens connection `role` to Redis (a failure to even start is a failed
/// attempt, retried after the backoff).
fn connect(app: &mut Protocols, core: &mut Core<Protocols>, role: Role) {
    let Some(addr) = app.bus_addr else {
        return;
    };
    match core.connect(addr, State::Bus(BusLink { role })) {
        Ok(key) => app.bus_keys[role.at()] = Some(key),
        Err(e) => {
            debug!("bus: {} cannot connect to {addr}: {e}", role.name());
            if let Some(bus) = app.bus.as_deref_mut() {
                bus.closed(role, core.now());
            }
        }
    }
}
