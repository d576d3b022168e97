//! Greet and TCP echo over real sockets against an in-process server.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use reactor::Config;
use util::*;

const GREETING: &[u8] = b"Thank you for connecting";

fn greet_server() -> Running {
    let mut cfg = Config::empty();
    cfg.greet = Some(loopback0());
    start(cfg)
}

/// Promise: greet sends exactly the greeting, no newline, then EOF.
#[test]
fn greet_sends_exact_bytes_then_eof() {
    let srv = greet_server();
    let mut s = connect(srv.greet.unwrap());
    let got = read_until_eof(&mut s, "greet client");
    assert_bytes_eq(&got, GREETING, "greeting");
}

/// Promise: 50 clients connected at once each get the exact greeting then EOF.
#[test]
fn greet_50_concurrent_clients() {
    let srv = greet_server();
    let addr = srv.greet.unwrap();
    let mut clients: Vec<TcpStream> = (0..50).map(|_| connect(addr)).collect();
    for (i, s) in clients.iter_mut().enumerate() {
        let got = read_until_eof(s, &format!("greet client {i}"));
        assert_bytes_eq(&got, GREETING, &format!("greeting to client {i}"));
    }
    srv.wait_stats("accepted >= 50", TIMEOUT, |s| s.accepted >= 50);
}

/// Drive one echo connection: interleave random-size writes and reads of
/// `payload` (keeping at most `window` bytes in flight) and check that what
/// comes back is byte-identical, in order.
fn fragmented_echo(s: &mut TcpStream, payload: &[u8], rng: &mut Rng, what: &str) {
    let window = 96 * 1024;
    let mut sent = 0;
    let mut recvd = 0;
    let mut buf = vec![0u8; 32 * 1024];
    while recvd < payload.len() {
        let in_flight = sent - recvd;
        let can_write = sent < payload.len() && in_flight < window;
        let do_write = can_write && (in_flight == 0 || rng.chance(2));
        if do_write {
            let n = rng.chunk(16 * 1024).min(payload.len() - sent);
            let n = n.min(window - in_flight).max(1);
            s.write_all(&payload[sent..sent + n])
                .unwrap_or_else(|e| panic!("{what}: write at offset {sent} failed: {e}"));
            sent += n;
        } else {
            let max = rng.chunk(buf.len()).min(in_flight);
            let k = match s.read(&mut buf[..max]) {
                Ok(0) => panic!("{what}: EOF after {recvd} of {} bytes", payload.len()),
                Ok(k) => k,
                Err(e) => panic!("{what}: read error after {recvd} bytes: {e}"),
            };
            if buf[..k] != payload[recvd..recvd + k] {
                assert_bytes_eq(&buf[..k], &payload[recvd..recvd + k], what);
            }
            recvd += k;
        }
    }
}

/// Promise: echo returns every byte in order, whatever the fragmentation
/// (50 clients x 256 KiB, random chunk sizes, writes and reads interleaved).
#[test]
fn echo_byte_exact_under_random_fragmentation() {
    let srv = start(echo_config());
    let addr = srv.echo.unwrap();
    let threads: Vec<_> = (0..50u64)
        .map(|i| {
            thread::spawn(move || {
                let mut rng = Rng::new(1000 + i);
                let payload = rng.bytes(256 * 1024);
                let mut s = connect(addr);
                fragmented_echo(&mut s, &payload, &mut rng, &format!("client {i}"));
                shutdown_write(&s);
                let rest = read_until_eof(&mut s, &format!("client {i} after half-close"));
                assert!(rest.is_empty(), "client {i}: {} extra bytes", rest.len());
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a fragmentation client failed");
    }
}

/// Promise: one client writing 1 MiB before reading anything back does not
/// deadlock the server; all bytes come back exactly.
#[test]
fn echo_one_mib_single_client() {
    let srv = start(echo_config());
    let payload = Rng::new(7).bytes(1 << 20);
    let mut s = connect(srv.echo.unwrap());
    let mut w = s.try_clone().unwrap();
    let data = payload.clone();
    let writer = thread::spawn(move || {
        write_all(&mut w, &data, "1 MiB writer");
        shutdown_write(&w);
    });
    let got = read_until_eof(&mut s, "1 MiB reader");
    writer.join().expect("writer failed");
    assert_bytes_eq(&got, &payload, "1 MiB echo");
}

/// Promise: after the client's shutdown(Write) the server sends everything
/// still pending, then closes with EOF (small and large pending output).
#[test]
fn echo_half_close_flushes_then_eof() {
    let srv = start(echo_config());
    let addr = srv.echo.unwrap();

    // Small: the whole message is pending when the FIN arrives.
    let mut s = connect(addr);
    write_all(&mut s, b"hello, half-close", "small");
    shutdown_write(&s);
    let got = read_until_eof(&mut s, "small half-close");
    assert_bytes_eq(&got, b"hello, half-close", "small half-close");

    // Large: 512 KiB written and FIN sent before reading a single byte.
    let payload = Rng::new(11).bytes(512 * 1024);
    let mut s = connect(addr);
    let mut w = s.try_clone().unwrap();
    let data = payload.clone();
    let writer = thread::spawn(move || {
        write_all(&mut w, &data, "large half-close writer");
        shutdown_write(&w);
    });
    let got = read_until_eof(&mut s, "large half-close");
    writer.join().expect("writer failed");
    assert_bytes_eq(&got, &payload, "large half-close");
}

/// Promise: 1,000 simultaneous clients are all served, each gets back its
/// own unique payload (all connected first, then all send, then verify).
#[test]
fn echo_1000_clients_at_once() {
    let srv = start(echo_config());
    let addr = srv.echo.unwrap();
    let n = 1000;
    let mut clients: Vec<TcpStream> = (0..n).map(|_| connect(addr)).collect();
    srv.wait_stats("1000 open", TIMEOUT, |s| s.open >= n as u64);
    let mut rng = Rng::new(99);
    let payloads: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut p = format!("client {i}:").into_bytes();
            let extra = rng.range(1, 2048);
            p.extend(rng.bytes(extra));
            p
        })
        .collect();
    for (i, s) in clients.iter_mut().enumerate() {
        write_all(s, &payloads[i], &format!("client {i}"));
    }
    for (i, s) in clients.iter_mut().enumerate() {
        let what = format!("client {i}");
        let got = read_n(s, payloads[i].len(), &what);
        assert_bytes_eq(&got, &payloads[i], &what);
    }
    drop(clients);
    srv.wait_stats("open back to 0", TIMEOUT, |s| s.open == 0);
}

/// Promise: a client sending 20 MiB without reading is throttled (the server
/// stops reading it at output_cap instead of buffering), another client
/// is still served meanwhile, and reading back returns the exact 20 MiB.
#[test]
fn echo_backpressure_20_mib_without_reading() {
    let mut cfg = echo_config();
    cfg.limits.output_cap = 64 * 1024;
    let cap = cfg.limits.output_cap as u64;
    let srv = start(cfg);
    let addr = srv.echo.unwrap();
    let total = 20 << 20;
    let payload = std::sync::Arc::new(Rng::new(2024).bytes(total));

    let mut a = connect(addr);
    let mut w = a.try_clone().unwrap();
    w.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    let data = payload.clone();
    // Phase 1: write until a write has been blocked for more than 1 s.
    let phase1 = thread::spawn(move || {
        let mut sent = 0;
        while sent < data.len() {
            let end = (sent + 256 * 1024).min(data.len());
            match w.write(&data[sent..end]) {
                Ok(k) => sent += k,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(e) => panic!("writer: error after {sent} bytes: {e}"),
            }
        }
        (w, sent)
    });
    let (mut w, sent) = phase1.join().expect("phase 1 writer failed");
    assert!(
        sent < total,
        "20 MiB were accepted without the client reading: no backpressure"
    );

    // The server must hold only about output_cap for this client. The
    // writer has been blocked for a second, so the ~100 ms stats are fresh.
    let st = srv.stats();
    let pending = st.bytes_in.saturating_sub(st.bytes_out);
    assert!(
        pending <= cap + 128 * 1024,
        "server buffered {pending} bytes for a non-reading client (cap {cap}); stats {st:?}"
    );

    // Another client is served promptly meanwhile.
    let mut b = connect(addr);
    b.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let t = Instant::now();
    echo_roundtrip(
        &mut b,
        b"are you there?",
        "second client while A is blocked",
    );
    assert!(t.elapsed() < Duration::from_secs(2));

    // Phase 2: finish writing while reading everything back.
    w.set_write_timeout(Some(TIMEOUT)).unwrap();
    let data = payload.clone();
    let phase2 = thread::spawn(move || {
        write_all(&mut w, &data[sent..], "phase 2 writer");
        shutdown_write(&w);
    });
    let got = read_until_eof(&mut a, "backpressure reader");
    phase2.join().expect("phase 2 writer failed");
    assert_bytes_eq(&got, &payload, "20 MiB echo");
}

/// Promise: stats count connections, and `open` returns to 0 once every
/// client has closed.
#[test]
fn stats_open_returns_to_zero() {
    let srv = start(echo_config());
    let addr = srv.echo.unwrap();
    let mut clients: Vec<TcpStream> = (0..20).map(|_| connect(addr)).collect();
    let mut total = 0;
    for (i, s) in clients.iter_mut().enumerate() {
        let msg = format!("ping {i}");
        echo_roundtrip(s, msg.as_bytes(), "stats client");
        total += msg.len() as u64;
    }
    srv.wait_stats("open == 20, accepted == 20", TIMEOUT, |s| {
        s.open == 20 && s.accepted == 20
    });
    drop(clients);
    srv.wait_stats("open == 0 after all closed", TIMEOUT, |s| {
        s.open == 0 && s.closed == 20 && s.bytes_in == total && s.bytes_out == total
    });
    let fin = srv.stop(TIMEOUT);
    assert_eq!(fin.open, 0, "final stats {fin:?}");
    assert_eq!(fin.accepted, 20, "final stats {fin:?}");
}
