//! Several event loops (`--threads N`): the ports are shared through
//! SO_REUSEPORT, every connection is served whichever loop takes it, and
//! chat rooms span the loops with each sender's order kept.

mod util;

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use util::*;

/// Promise: with 2 loops, 200 echo clients are all served byte-exact, and
/// the stats summed over the loops account for every one of them.
#[test]
fn two_loops_serve_echo() {
    let mut cfg = echo_config();
    cfg.threads = 2;
    let srv = start(cfg);
    let addr = srv.echo.unwrap();
    let mut clients: Vec<_> = (0..200).map(|_| connect(addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        echo_roundtrip(c, format!("client {i} says hello\n").as_bytes(), "echo");
    }
    drop(clients);
    srv.wait_stats(
        "all 200 accepted and closed",
        Duration::from_secs(10),
        |s| s.accepted == 200 && s.open == 0,
    );
    srv.stop(Duration::from_secs(10));
}

/// Promise: chat members on different loops share rooms: every member
/// receives every other member's lines, each sender's in order; default
/// nicks are unique across loops.
#[test]
fn chat_rooms_span_loops() {
    let mut cfg = reactor::Config::empty();
    cfg.chat = Some(loopback0());
    cfg.threads = 2;
    let srv = start(cfg);
    let addr = srv.chat.unwrap();
    let mut members: Vec<Lines<_>> = (0..16)
        .map(|i| Lines::new(connect(addr), format!("member {i}")))
        .collect();
    let mut nicks = Vec::new();
    for m in &mut members {
        let welcome = m.line();
        let nick = welcome
            .split_whitespace()
            .find(|w| w.starts_with("guest"))
            .expect("welcome names the nick")
            .to_string();
        nicks.push(nick);
    }
    let unique: BTreeSet<&String> = nicks.iter().collect();
    assert_eq!(
        unique.len(),
        nicks.len(),
        "default nicks collide: {nicks:?}"
    );
    // Loop t numbers its members id * 2 + t: both parities mean both loops.
    let parities: BTreeSet<u64> = nicks
        .iter()
        .map(|n| n.trim_start_matches("guest").parse::<u64>().unwrap() % 2)
        .collect();
    assert_eq!(
        parities.len(),
        2,
        "all 16 members landed on one loop: {nicks:?}"
    );

    // Four senders, 50 numbered lines each; everyone else must see all 200.
    let senders = 4;
    let per = 50;
    for (s, m) in members.iter_mut().take(senders).enumerate() {
        let batch: String = (0..per).map(|k| format!("s{s} n{k}\n")).collect();
        m.get_mut().write_all(batch.as_bytes()).unwrap();
    }
    for (i, m) in members.iter_mut().enumerate() {
        let mut next = vec![0usize; senders];
        let expect = if i < senders {
            (senders - 1) * per
        } else {
            senders * per
        };
        let mut got = 0;
        while got < expect {
            let line = m.line();
            let Some(text) = line.split(": ").nth(1) else {
                continue; // join notices
            };
            let mut words = text.split_whitespace();
            let s: usize = words.next().unwrap()[1..].parse().unwrap();
            let k: usize = words.next().unwrap()[1..].parse().unwrap();
            assert_eq!(k, next[s], "member {i}: sender {s} out of order");
            next[s] += 1;
            got += 1;
        }
    }
    drop(members);
    srv.stop(Duration::from_secs(10));
}

/// Listening sockets on `port` (state LISTEN in `/proc/net/tcp`).
fn listeners_on(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local = f.get(1).and_then(|a| a.rsplit(':').next());
            let p = local.and_then(|p| u16::from_str_radix(p, 16).ok());
            p == Some(port) && f.get(3) == Some(&"0A")
        })
        .count()
}

/// Promise: with `--threads 2`, every service asked for on port 0 gets one
/// port, which both loops listen on: the TLS ones too (each loop once
/// bound a port of its own for HTTPS and TLS echo).
#[test]
fn two_loops_share_every_port_tls_included() {
    let dir = TempDir::new("threads-tls");
    let (cert, key) = reactor::tls::write_self_signed(dir.path()).unwrap();
    let mut bin = Bin::spawn(&[
        "serve",
        "--threads",
        "2",
        "--echo",
        "127.0.0.1:0",
        "--https",
        "127.0.0.1:0",
        "--tls-echo",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let addrs: Vec<(&str, std::net::SocketAddr)> = ["echo", "https", "tls-echo"]
        .into_iter()
        .map(|service| (service, bin.listening(service, TIMEOUT).parse().unwrap()))
        .collect();
    // Every loop has bound its sockets once the server says it is ready.
    assert!(wait_until(TIMEOUT, || bin.log_text().contains(": ready")));
    for (service, addr) in addrs {
        assert_eq!(
            listeners_on(addr.port()),
            2,
            "{service} on {addr}: want both loops listening there; log:\n{}",
            bin.log_text()
        );
    }
    bin.signal("TERM");
    assert!(bin.wait_exit(TIMEOUT).is_some_and(|s| s.success()));
}
