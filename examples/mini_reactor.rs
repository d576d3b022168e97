//! The whole pattern in one file, and the first file to read: a single-threaded echo server on
//! one `mio::Poll`, connections in a `slab::Slab`, correct at every edge of edge-triggered
//! non-blocking I/O. Each pitfall is handled where it happens, under a comment that names it.
//! Run: `cargo run --example mini_reactor [ADDR]` (default `127.0.0.1:8080`).
//!
//! The real loop (`src/core/`) is this grown up: timers, a staged close, a buffer pool, memory
//! caps, and protocols behind hooks instead of one `drive`. The names carry over:
//!
//! | here | in `src/core/` |
//! | --- | --- |
//! | `Conn { output, readable, writable, peer_closed, read_eof, deferred }` | `Link`'s fields of the same names |
//! | `closed: bool` | `Phase::Closed` (and the `closed` list, freed before the next poll) |
//! | `READ_BUDGET`, the `deferred` list | `CoreLimits::read_budget`, `Core::deferred` (phase 4) |
//! | `OUTPUT_CAP` | `CoreLimits::output_cap` (`Io::full`) |
//! | `drive` | `drive::drive` and its turn: write, read and use, write |
//!
//! The deferred list is `select`'s level-triggered re-report rebuilt in user space: `select`
//! reports a socket with bytes still waiting on every call, epoll in edge mode says it once, so
//! the loop keeps its own list of connections it owes another look (cut short by the fairness
//! budget) and does not sleep while it holds any.

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token};
use slab::Slab;
use std::io::ErrorKind::{BrokenPipe, ConnectionReset, Interrupted, WouldBlock, WriteZero};
use std::io::{self, Read, Write};
use std::time::Duration;

const LISTENER: Token = Token(usize::MAX); // slab keys never get this high
const OUTPUT_CAP: usize = 64 * 1024; // backpressure: stop reading a peer with this much unsent
const READ_BUDGET: usize = 64 * 1024; // fairness: bytes read from one connection per turn
const BOTH: Interest = Interest::READABLE.add(Interest::WRITABLE);

#[derive(Default)]
struct Conn {
    output: Vec<u8>,   // echoed bytes the kernel has not taken yet
    readable: bool,    // edge-triggered: readiness is remembered here until WouldBlock
    writable: bool,    //   (or a short count), never asked for again
    peer_closed: bool, // an event said the peer's FIN is queued: a short read no longer drains
    read_eof: bool,    // we have read the peer's FIN (Ok(0)): no more input
    deferred: bool,    // on the deferred list: its budget ran out with input still waiting
    closed: bool,      // closed in this batch; removed from the slab after it
}

fn main() -> io::Result<()> {
    let arg = std::env::args().nth(1);
    let addr = arg.as_deref().unwrap_or("127.0.0.1:8080").parse();
    let listener = TcpListener::bind(addr.expect("ADDR must be IP:PORT"))?;
    println!("listening on {}", listener.local_addr()?);
    run(listener)
}

/// Runs the event loop forever; only a failure of `poll` itself ends it.
fn run(mut listener: TcpListener) -> io::Result<()> {
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut conns = Slab::new(); // (socket, Conn): kept apart so that Conn can derive Default
    let mut deferred: Vec<usize> = Vec::new(); // keys owed another turn (no event will come)
    let mut backlog = false; // accept gave up on an error; connections may still be queued
    loop {
        // Pitfall: a signal interrupts the wait (EINTR). Not an error: wait again. With work
        // deferred, do not sleep at all: just take whatever else is ready.
        let timeout = (!deferred.is_empty()).then_some(Duration::ZERO);
        match poll.poll(&mut events, timeout) {
            Err(e) if e.kind() == Interrupted => continue,
            r => r?,
        }
        let mut closed = Vec::new();
        for ev in events.iter() {
            if ev.token() == LISTENER {
                backlog = accept_all(&listener, poll.registry(), &mut conns);
                continue;
            }
            // Pitfall: spurious events, and events for a connection closed earlier in this batch.
            let key = ev.token().0;
            let Some((sock, c)) = conns.get_mut(key).filter(|(_, c)| !c.closed) else {
                continue;
            };
            // HUP and ERR count as ready: the next read or write reports what happened.
            c.readable |= ev.is_readable() || ev.is_read_closed() || ev.is_error();
            c.writable |= ev.is_writable() || ev.is_write_closed() || ev.is_error();
            c.peer_closed |= ev.is_read_closed();
            turn(key, sock, c, &mut deferred, &mut closed);
        }
        // The deferred list: each connection cut short gets its next slice, after everyone
        // else had this turn's events.
        for key in std::mem::take(&mut deferred) {
            if let Some((sock, c)) = conns.get_mut(key).filter(|(_, c)| !c.closed) {
                c.deferred = false;
                turn(key, sock, c, &mut deferred, &mut closed);
            }
        }
        // Pitfall: keys are reused, so remove only after the batch: no stale event hits a newcomer.
        closed.iter().for_each(|&key| drop(conns.remove(key)));
        if backlog && !closed.is_empty() {
            backlog = accept_all(&listener, poll.registry(), &mut conns); // an fd was freed
        }
    }
}

/// One connection's turn: echo as far as its readiness and budget allow, then defer it if
/// input still waits, or mark it closed once it is done.
fn turn(
    key: usize,
    sock: &mut TcpStream,
    c: &mut Conn,
    deferred: &mut Vec<usize>,
    closed: &mut Vec<usize>,
) {
    match drive(sock, c) {
        Ok(true) if c.readable && !c.read_eof && c.output.len() < OUTPUT_CAP => {
            if !c.deferred {
                c.deferred = true; // fairness: the budget ran out, input is still waiting
                deferred.push(key);
            }
            return;
        }
        Ok(true) => return,
        Ok(false) => {}
        // A connection's error closes that one connection; reset and broken pipe quietly.
        Err(e) if matches!(e.kind(), ConnectionReset | BrokenPipe) => {}
        Err(e) => eprintln!("connection: {e}"),
    }
    c.closed = true;
    closed.push(key);
}

/// Accepts every queued connection; returns true if an error stopped it with some maybe left.
fn accept_all(listener: &TcpListener, reg: &Registry, conns: &mut Slab<(TcpStream, Conn)>) -> bool {
    loop {
        // Pitfall: one readable event can stand for many queued connections: accept to WouldBlock.
        let mut sock = match listener.accept() {
            Ok((sock, _)) => sock,
            Err(e) if e.kind() == WouldBlock => return false,
            Err(e) if e.kind() == Interrupted => continue,
            // Pitfall: EMFILE and such. Retrying now would spin: log, and retry when an fd frees.
            Err(e) => {
                eprintln!("accept: {e}");
                return true;
            }
        };
        let entry = conns.vacant_entry();
        // Register once for both directions; readiness is kept in `Conn`, so never reregister.
        match reg.register(&mut sock, Token(entry.key()), BOTH) {
            Ok(()) => _ = entry.insert((sock, Conn::default())),
            Err(e) => eprintln!("register: {e}"),
        }
    }
}

/// Echoes as far as the remembered readiness and the read budget allow; Ok(false) once the
/// connection is done.
fn drive(sock: &mut TcpStream, c: &mut Conn) -> io::Result<bool> {
    let mut buf = [0u8; 16 * 1024];
    let mut budget = READ_BUDGET;
    loop {
        flush(sock, c)?;
        // Half-close: once the peer's FIN is read, live on only until `output` is sent.
        // Backpressure: stop reading at OUTPUT_CAP; `readable` stays set, so a drain resumes it.
        if c.read_eof || !c.readable || c.output.len() >= OUTPUT_CAP || budget == 0 {
            return Ok(!c.read_eof || !c.output.is_empty());
        }
        match sock.read(&mut buf) {
            Ok(0) => c.read_eof = true, // the peer's FIN
            Ok(n) => {
                c.output.extend_from_slice(&buf[..n]);
                budget = budget.saturating_sub(n);
                // epoll(7): a short read means drained, unless a FIN (event spent) waits behind it.
                c.readable = n == buf.len() || c.peer_closed;
            }
            Err(e) if e.kind() == WouldBlock => c.readable = false,
            Err(e) if e.kind() == Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Writes `output` until it is empty or WouldBlock; the rest waits for a writable event.
fn flush(sock: &mut TcpStream, c: &mut Conn) -> io::Result<()> {
    // Never `write_all`: at WouldBlock it fails and loses track of what was written.
    while c.writable && !c.output.is_empty() {
        match sock.write(&c.output) {
            Ok(0) => return Err(WriteZero.into()),
            Ok(n) => drop(c.output.drain(..n)),
            Err(e) if e.kind() == WouldBlock => c.writable = false,
            Err(e) if e.kind() == Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
