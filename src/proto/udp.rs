//! UDP echo: each datagram back to its sender.
//!
//! A UDP socket has no connections, so it is one of the app's sources: the
//! loop polls it, and calls `turn` when it is ready.
//! Reads drain until `WouldBlock` (edge triggering gives no second event
//! for datagrams already queued), at most `DATAGRAMS_PER_TICK` per turn.
//! A reply that would block waits in a bounded queue; past its bound the
//! reply is dropped and counted: UDP promises no delivery, and a server
//! must never block or grow without bound for it.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::SocketAddr;

use log::{debug, trace};
use mio::net::UdpSocket;

use crate::core::Ready;
use crate::stats::Stats;

/// Datagrams read per loop iteration before yielding to other work.
pub const DATAGRAMS_PER_TICK: usize = 256;

/// Receive buffer size: every UDP payload fits (the largest over IPv4 is
/// 65,535 - 8 UDP - 20 IP header bytes = 65,507).
pub const RECV_BUF: usize = 1 << 16;

/// The UDP echo socket and its replies waiting for send room.
#[derive(Debug)]
pub struct UdpEcho {
    /// The bound socket, registered for both directions.
    pub socket: UdpSocket,
    /// Replies that could not be sent yet, oldest first.
    queue: VecDeque<(SocketAddr, Box<[u8]>)>,
    /// Most replies kept in `queue`.
    queue_cap: usize,
    /// Datagrams may be waiting.
    pub readable: bool,
    /// The socket can send, as far as we know.
    pub writable: bool,
}

impl UdpEcho {
    /// Wraps a bound socket; `queue_cap` replies may wait for send room.
    pub fn new(socket: UdpSocket, queue_cap: usize) -> UdpEcho {
        UdpEcho {
            socket,
            queue: VecDeque::new(),
            queue_cap,
            readable: true,
            writable: true,
        }
    }

    /// Sends queued replies until the queue is empty or the socket is full.
    fn flush(&mut self, stats: &mut Stats) {
        while self.writable {
            let Some((to, data)) = self.queue.front() else {
                break;
            };
            match self.socket.send_to(data, *to) {
                Ok(n) => {
                    stats.udp_out += 1;
                    stats.bytes_out += n as u64;
                    self.queue.pop_front();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    // Per-datagram errors (e.g. an ICMP unreachable surfacing
                    // here) concern one peer only: drop that reply.
                    debug!("udp reply to {to} dropped: {e}");
                    self.queue.pop_front();
                }
            }
        }
        if self.queue.is_empty() && self.queue.capacity() > 64 {
            self.queue.shrink_to(64);
        }
    }

    /// Sends one reply now, or queues it, or drops it when the queue is full.
    fn reply(&mut self, to: SocketAddr, data: &[u8], stats: &mut Stats) {
        if self.writable && self.queue.is_empty() {
            match self.socket.send_to(data, to) {
                Ok(n) => {
                    stats.udp_out += 1;
                    stats.bytes_out += n as u64;
                    return;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.writable = false,
                Err(e) => {
                    debug!("udp reply to {to} dropped: {e}");
                    return;
                }
            }
        }
        if self.queue.len() < self.queue_cap {
            self.queue.push_back((to, data.into()));
        } else {
            stats.udp_dropped += 1;
        }
    }

    /// Does what readiness allows (`ready`, and what earlier events said):
    /// flush queued replies, then read and echo up to `DATAGRAMS_PER_TICK`
    /// datagrams into `buf` (64 KiB, allocated on first use). True if
    /// more may be waiting (the loop comes back next turn).
    pub fn turn(&mut self, ready: Ready, buf: &mut Vec<u8>, stats: &mut Stats) -> bool {
        self.readable |= ready.readable;
        self.writable |= ready.writable;
        if buf.is_empty() {
            buf.resize(RECV_BUF, 0);
        }
        self.flush(stats);
        for _ in 0..DATAGRAMS_PER_TICK {
            if !self.readable {
                return false;
            }
            match self.socket.recv_from(buf) {
                Ok((n, from)) => {
                    trace!("udp: {n} bytes from {from}");
                    stats.udp_in += 1;
                    stats.bytes_in += n as u64;
                    self.reply(from, &buf[..n], stats);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.readable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // ECONNREFUSED and the like report an earlier send's ICMP
                // error; they say nothing about the next datagram.
                Err(e) => debug!("udp receive error: {e}"),
            }
        }
        self.readable
    }
}
