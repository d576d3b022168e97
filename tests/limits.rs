//! Connection limit and idle timeout.

mod util;

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use util::*;

/// Promise: past max_conns a new client gets one `ERROR...` line and is
/// closed (counted in `refused`); once others disconnect, new clients are
/// served again.
#[test]
fn max_conns_refuses_then_recovers() {
    let mut cfg = echo_config();
    cfg.limits.max_conns = 10;
    let srv = start(cfg);
    let addr = srv.echo.unwrap();

    let mut clients: Vec<TcpStream> = (0..10).map(|_| connect(addr)).collect();
    for (i, s) in clients.iter_mut().enumerate() {
        echo_roundtrip(s, format!("client {i}").as_bytes(), "client within limit");
    }

    let mut lines = Lines::new(connect(addr), "11th client");
    let l = lines.line();
    assert!(
        l.starts_with("ERROR"),
        "11th client got {l:?}, want ERROR..."
    );
    let (rest, _end) = lines.rest();
    assert!(
        rest.is_empty(),
        "11th client: bytes after the ERROR line: {:?}",
        String::from_utf8_lossy(&rest)
    );
    drop(lines);
    srv.wait_stats("refused >= 1", TIMEOUT, |s| s.refused >= 1);

    // The 10 admitted clients are unaffected.
    echo_roundtrip(&mut clients[0], b"still served", "client 0 after refusal");

    // Free two slots; new clients are served again.
    clients.truncate(8);
    srv.wait_stats("open <= 8", TIMEOUT, |s| s.open <= 8);
    let mut again: Vec<TcpStream> = (0..2).map(|_| connect(addr)).collect();
    for s in again.iter_mut() {
        echo_roundtrip(s, b"served again", "client after recovery");
    }
    srv.wait_stats("open == 10", TIMEOUT, |s| s.open == 10);
}

/// Promise: a connection that moves no bytes for idle_timeout is closed by
/// the server and counted in `timeouts`; one that keeps talking is not.
#[test]
fn idle_timeout_closes_idle_not_active() {
    let mut cfg = echo_config();
    let idle = Duration::from_millis(300);
    cfg.limits.idle_timeout = idle;
    let srv = start(cfg);
    let addr = srv.echo.unwrap();

    // A client that talks every 100 ms for 1.5 s must survive.
    let active = thread::spawn(move || {
        let mut s = connect(addr);
        let t = Instant::now();
        let mut n = 0;
        while t.elapsed() < Duration::from_millis(1500) {
            echo_roundtrip(&mut s, format!("tick {n}").as_bytes(), "active client");
            n += 1;
            thread::sleep(Duration::from_millis(100)); // pacing, not synchronisation
        }
        n
    });

    let mut s = connect(addr);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    echo_roundtrip(&mut s, b"hi", "idle client");
    let t = Instant::now();
    let mut buf = [0u8; 16];
    let r = s.read(&mut buf);
    let waited = t.elapsed();
    match r {
        Ok(0) => {}
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
            ) => {}
        Ok(k) => panic!("idle client received {k} unexpected bytes"),
        Err(e) => panic!("idle client not closed within 5 s (idle_timeout {idle:?}): {e}"),
    }
    assert!(
        waited >= idle / 2,
        "idle client closed after only {waited:?} (idle_timeout {idle:?})"
    );
    srv.wait_stats("timeouts >= 1", TIMEOUT, |s| s.timeouts >= 1);

    let ticks = active.join().expect("active client was cut off");
    assert!(ticks >= 10, "active client only did {ticks} round trips");
}
