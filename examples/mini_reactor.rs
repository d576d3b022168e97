//! The whole pattern in one file: a single-threaded echo server on one `mio::Poll`, with
//! connections in a `slab::Slab`, correct at every edge of edge-triggered non-blocking I/O.
//! Each pitfall is handled where it happens, under a comment that names it.
//! Run: `cargo run --example mini_reactor [ADDR]` (default `127.0.0.1:8080`).
//! The full project (`src/reactor/` in this repository) adds timers, limits, pools and services.

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token};
use slab::Slab;
use std::io::ErrorKind::{BrokenPipe, ConnectionReset, Interrupted, WouldBlock, WriteZero};
use std::io::{self, Read, Write};

const LISTENER: Token = Token(usize::MAX); // slab keys never get this high
const CAP: usize = 64 * 1024; // backpressure: stop reading a client with this much unsent output
const BOTH: Interest = Interest::READABLE.add(Interest::WRITABLE);

#[derive(Default)]
struct Conn {
    pending: Vec<u8>, // echoed bytes the kernel has not taken yet
    readable: bool,   // edge-triggered: readiness is remembered here until WouldBlock
    writable: bool,
    hup: bool, // an event said the peer's FIN is queued: a short read no longer means drained
    fin: bool, // we have read the peer's FIN (Ok(0)): no more input
    dead: bool, // closed in this batch; removed from the slab after it
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
    let mut backlog = false; // accept gave up on an error; connections may still be queued
    loop {
        // Pitfall: a signal interrupts the wait (EINTR). Not an error: wait again.
        match poll.poll(&mut events, None) {
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
            let Some((sock, c)) = conns.get_mut(ev.token().0).filter(|(_, c)| !c.dead) else {
                continue;
            };
            // HUP and ERR count as ready: the next read or write reports what happened.
            c.readable |= ev.is_readable() || ev.is_read_closed() || ev.is_error();
            c.writable |= ev.is_writable() || ev.is_write_closed() || ev.is_error();
            c.hup |= ev.is_read_closed();
            match drive(sock, c) {
                Ok(true) => continue,
                Ok(false) => {}
                // A connection's error closes that one connection; reset and broken pipe quietly.
                Err(e) if matches!(e.kind(), ConnectionReset | BrokenPipe) => {}
                Err(e) => eprintln!("connection: {e}"),
            }
            c.dead = true;
            closed.push(ev.token().0);
        }
        // Pitfall: keys are reused, so remove only after the batch: no stale event hits a newcomer.
        closed.iter().for_each(|&key| drop(conns.remove(key)));
        if backlog && !closed.is_empty() {
            backlog = accept_all(&listener, poll.registry(), &mut conns); // an fd was freed
        }
    }
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

/// Echoes as far as the remembered readiness allows; Ok(false) once the connection is done.
fn drive(sock: &mut TcpStream, c: &mut Conn) -> io::Result<bool> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        flush(sock, c)?;
        // Half-close: once the peer's FIN is read, live on only until `pending` is sent.
        // Backpressure: stop reading at CAP; `readable` stays set, so a drain resumes reading.
        if c.fin || !c.readable || c.pending.len() >= CAP {
            return Ok(!c.fin || !c.pending.is_empty());
        }
        match sock.read(&mut buf) {
            Ok(0) => c.fin = true, // the peer's FIN
            Ok(n) => {
                c.pending.extend_from_slice(&buf[..n]);
                // epoll(7): a short read means drained, unless a FIN (event spent) waits behind it.
                c.readable = n == buf.len() || c.hup;
            }
            Err(e) if e.kind() == WouldBlock => c.readable = false,
            Err(e) if e.kind() == Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Writes `pending` until it is empty or WouldBlock; the rest waits for a writable event.
fn flush(sock: &mut TcpStream, c: &mut Conn) -> io::Result<()> {
    // Never `write_all`: at WouldBlock it fails and loses track of what was written.
    while c.writable && !c.pending.is_empty() {
        match sock.write(&c.pending) {
            Ok(0) => return Err(WriteZero.into()),
            Ok(n) => drop(c.pending.drain(..n)),
            Err(e) if e.kind() == WouldBlock => c.writable = false,
            Err(e) if e.kind() == Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
