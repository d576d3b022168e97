//! Lines between the event loops of one process, for chat rooms that
//! span them.
//!
//! With `--threads N` every loop has its own chat hub holding its own
//! members. A line said in a room is delivered at once to the room's
//! members on the same loop, and published here to every other loop: one
//! channel per loop, then that loop's `mio::Waker`. A channel is FIFO, so
//! the lines of one sender (one loop) arrive everywhere in the order they
//! were said. Wakes are coalesced: a loop is woken only when its inbox goes
//! from empty to non-empty, not once per line.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryIter, channel};

use mio::Waker;

/// One line said in a room on another loop.
#[derive(Debug)]
pub struct RoomLine {
    /// The room's name.
    pub room: Box<str>,
    /// The whole line, formatted and ending in `\n`.
    pub line: Box<[u8]>,
}

/// Another loop's inbox, as seen by a sender.
#[derive(Debug)]
struct Peer {
    /// Where its lines go.
    tx: Sender<RoomLine>,
    /// Rung when its inbox was empty.
    waker: Arc<Waker>,
    /// Set while its inbox may hold lines it has not taken.
    unread: Arc<AtomicBool>,
}

/// One loop's end of the mesh: the other loops' inboxes and its own.
#[derive(Debug)]
pub struct Mesh {
    /// Every other loop.
    peers: Vec<Peer>,
    /// Lines from the other loops.
    rx: Receiver<RoomLine>,
    /// Set by senders when they put lines in `rx` (see `Peer::unread`).
    unread: Arc<AtomicBool>,
}

impl Mesh {
    /// Sends `line` for room `room` to every other loop.
    pub fn publish(&self, room: &str, line: &[u8]) {
        for peer in &self.peers {
            let msg = RoomLine {
                room: room.into(),
                line: line.into(),
            };
            if peer.tx.send(msg).is_ok()
                && !peer.unread.swap(true, Ordering::AcqRel)
                && let Err(e) = peer.waker.wake()
            {
                log::warn!("cannot wake another loop: {e}");
            }
        }
    }

    /// The lines waiting here. Clears the unread flag first, so a line
    /// sent while these are taken either is among them or wakes us again.
    pub fn take(&self) -> TryIter<'_, RoomLine> {
        self.unread.store(false, Ordering::Release);
        self.rx.try_iter()
    }
}

/// Connects loops whose wakers are `wakers` (index = loop): one `Mesh` each.
pub fn mesh(wakers: &[Arc<Waker>]) -> Vec<Mesh> {
    let ends: Vec<(Sender<RoomLine>, Receiver<RoomLine>, Arc<AtomicBool>)> = wakers
        .iter()
        .map(|_| {
            let (tx, rx) = channel();
            (tx, rx, Arc::new(AtomicBool::new(false)))
        })
        .collect();
    let senders: Vec<(Sender<RoomLine>, Arc<AtomicBool>)> = ends
        .iter()
        .map(|(tx, _, unread)| (tx.clone(), unread.clone()))
        .collect();
    ends.into_iter()
        .enumerate()
        .map(|(me, (_, rx, unread))| Mesh {
            peers: senders
                .iter()
                .zip(wakers)
                .enumerate()
                .filter(|(i, _)| *i != me)
                .map(|(_, ((tx, unread), waker))| Peer {
                    tx: tx.clone(),
                    waker: waker.clone(),
                    unread: unread.clone(),
                })
                .collect(),
            rx,
            unread,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Poll, Token};

    #[test]
    fn lines_reach_every_other_loop_in_order() {
        let polls: Vec<Poll> = (0..3).map(|_| Poll::new().unwrap()).collect();
        let wakers: Vec<Arc<Waker>> = polls
            .iter()
            .map(|p| Arc::new(Waker::new(p.registry(), Token(0)).unwrap()))
            .collect();
        let buses = mesh(&wakers);
        for i in 0..5u8 {
            buses[0].publish("lobby", &[i]);
        }
        assert_eq!(buses[0].take().count(), 0, "no echo to the sender's loop");
        for bus in &buses[1..] {
            let got: Vec<u8> = bus.take().map(|m| m.line[0]).collect();
            assert_eq!(got, vec![0, 1, 2, 3, 4]);
        }
    }
}
