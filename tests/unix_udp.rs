//! UDP echo and echo over a Unix stream socket.

mod util;

use std::net::UdpSocket;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use reactor::{Config, Server};
use util::*;

fn udp_server() -> Running {
    let mut cfg = Config::empty();
    cfg.udp = Some(loopback0());
    start(cfg)
}

/// Send `payload` and expect the identical datagram back from the server
/// (up to 3 tries: UDP may drop, but not on an idle loopback every time).
fn udp_roundtrip(sock: &UdpSocket, server: std::net::SocketAddr, payload: &[u8]) {
    let mut buf = vec![0u8; 70_000];
    for attempt in 0..3 {
        let n = sock.send_to(payload, server).expect("send_to");
        assert_eq!(n, payload.len(), "short UDP send");
        match sock.recv_from(&mut buf) {
            Ok((k, from)) => {
                assert_eq!(from, server, "reply came from another address");
                assert_bytes_eq(&buf[..k], payload, &format!("UDP {} bytes", payload.len()));
                return;
            }
            Err(e) => eprintln!("UDP {} bytes, try {attempt}: {e}", payload.len()),
        }
    }
    panic!("no UDP echo of {} bytes after 3 tries", payload.len());
}

/// Promise: each datagram (0, 1, 1400 and 65,507 bytes) comes back whole to
/// its sender.
#[test]
fn udp_echo_sizes() {
    let srv = udp_server();
    let addr = srv.udp.unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut rng = Rng::new(3);
    for size in [0usize, 1, 1400, 65_507] {
        udp_roundtrip(&sock, addr, &rng.bytes(size));
    }
    srv.wait_stats("udp_in/out >= 4", TIMEOUT, |s| {
        s.udp_in >= 4 && s.udp_out >= 4
    });
}

/// Promise: replies go to each datagram's own sender (four clients at once).
#[test]
fn udp_replies_to_each_sender() {
    let srv = udp_server();
    let addr = srv.udp.unwrap();
    let threads: Vec<_> = (0..4u64)
        .map(|i| {
            thread::spawn(move || {
                let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
                sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut rng = Rng::new(40 + i);
                for n in 0..50 {
                    let mut p = format!("sender {i} datagram {n} ").into_bytes();
                    let extra = rng.range(0, 1000);
                    p.extend(rng.bytes(extra));
                    udp_roundtrip(&sock, addr, &p);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a UDP sender failed");
    }
}

fn sock_path(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("reactor-t{}-{name}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

fn unix_connect(path: &PathBuf) -> UnixStream {
    let s =
        UnixStream::connect(path).unwrap_or_else(|e| panic!("connect to {}: {e}", path.display()));
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// Echo 256 KiB over the Unix socket (written from a thread), half-close, EOF.
fn unix_echo_check(path: &PathBuf, seed: u64) {
    let payload = Rng::new(seed).bytes(256 * 1024);
    let mut s = unix_connect(path);
    let mut w = s.try_clone().unwrap();
    let data = payload.clone();
    let writer = thread::spawn(move || {
        write_all(&mut w, &data, "unix writer");
        let _ = w.shutdown(std::net::Shutdown::Write);
    });
    let got = read_until_eof(&mut s, "unix reader");
    writer.join().expect("unix writer failed");
    assert_bytes_eq(&got, &payload, "unix echo");
}

/// Promise: echo works over the Unix socket and its file is removed at exit.
#[test]
fn unix_echo_and_file_removed_at_exit() {
    let path = sock_path("echo");
    let mut cfg = Config::empty();
    cfg.unix = Some(path.clone());
    let srv = start(cfg);
    assert!(path.exists(), "socket file not created");
    unix_echo_check(&path, 1);
    unix_echo_check(&path, 2);
    srv.stop(TIMEOUT);
    assert!(
        !path.exists(),
        "socket file {} left after exit",
        path.display()
    );
}

/// Promise: a stale socket file (nothing listening) is replaced, not an error.
#[test]
fn unix_stale_socket_file_replaced() {
    let path = sock_path("stale");
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists(), "test setup: stale file missing");
    assert!(UnixStream::connect(&path).is_err(), "test setup: not stale");

    let mut cfg = Config::empty();
    cfg.unix = Some(path.clone());
    let srv = start(cfg);
    unix_echo_check(&path, 3);
    srv.stop(TIMEOUT);
    assert!(
        !path.exists(),
        "socket file {} left after exit",
        path.display()
    );
}

/// Promise: a Unix path over 107 bytes is a clear one-line bind error.
#[test]
fn unix_path_too_long_is_bind_error() {
    let path = std::env::temp_dir().join(format!("{}.sock", "a".repeat(120)));
    assert!(path.as_os_str().len() > 107);
    let mut cfg = Config::empty();
    cfg.unix = Some(path.clone());
    match Server::bind(cfg) {
        Ok(_) => panic!("bind accepted a {}-byte Unix path", path.as_os_str().len()),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                !msg.is_empty() && !msg.contains('\n'),
                "not one line: {msg:?}"
            );
            let lower = msg.to_lowercase();
            assert!(
                lower.contains("unix") || lower.contains("path") || lower.contains("long"),
                "error does not say what is wrong: {msg:?}"
            );
        }
    }
    assert!(!path.exists());
}
