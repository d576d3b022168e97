//! Fault tests against the real `reactor` binary (issue 6): resets, half
//! closes, fd exhaustion, connection floods, slow consumers, SIGTERM under
//! load, and UDP bursts.
//!
//! Every test starts its own server process (`reactor serve ... --log-level
//! info`, ports from the OS, HTTP on too so `/stats` can be read) and ends
//! the way nginx-tests do: the server's fd count is back to its baseline,
//! `/stats` says only the asking connection is open, SIGTERM stops it with
//! exit 0 and `open=0` in its summary, and its log has no `ERROR` line and
//! no panic. The tests run one at a time (`SERIAL`): several of them
//! measure the server's CPU time, memory or latency.

mod util;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use util::server::*;
use util::*;

/// Close with an RST: SO_LINGER {on, 0}, then drop.
fn reset(s: TcpStream) {
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(s);
}

/// A deterministic pattern: byte `i` of the stream is `pattern(i)`.
fn pattern_at(i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ (i >> 20) as u8
}

fn pattern(from: u64, n: usize) -> Vec<u8> {
    (from..from + n as u64).map(pattern_at).collect()
}

fn new_greeting_ok(addr: SocketAddr) {
    let mut s = connect(addr);
    let got = read_until_eof(&mut s, "greet client");
    assert_bytes_eq(&got, b"Thank you for connecting", "greeting");
}

// ---------------------------------------------------------------- resets

/// Promise: a client that resets (SO_LINGER 0) in the middle of a large
/// file response costs one connection only: the file fd and the socket
/// are closed, and the next client gets the whole file.
#[test]
fn reset_mid_http_response() {
    let _g = serial();
    let dir = TempDir::new("faults-rst-http");
    let size = 8 << 20;
    let body = pattern(0, size);
    dir.write("big.bin", &body);
    let srv = Server::start(&[
        "--http",
        "127.0.0.1:0",
        "--root",
        dir.path().to_str().unwrap(),
    ]);
    let http = srv.addr("http");
    let req = b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n";
    for i in 0..20 {
        let mut c = HttpClient::connect(http, format!("resetting client {i}"));
        // Some pipeline a second request behind the first.
        if i % 2 == 0 {
            c.send(req);
        } else {
            c.send(&[&req[..], &req[..]].concat());
        }
        let r = c.read_head();
        assert_eq!(r.status, 200, "client {i}: {}", r.status_line);
        let _ = c.read_body(1024 * (i + 1));
        reset(c.s);
    }
    let mut c = HttpClient::connect(http, "client after the resets");
    let r = c.roundtrip(req);
    assert_eq!(r.status, 200);
    assert_bytes_eq(&r.body, &body, "file after resets");
    drop(c);
    srv.stop("reset_mid_http_response");
}

/// Promise: clients that reset before reading their greeting (some before
/// the server even accepts them) do not disturb the server; the next
/// client gets the greeting and EOF.
#[test]
fn reset_before_greeting() {
    let _g = serial();
    let srv = Server::start(&["--greet", "127.0.0.1:0"]);
    let greet = srv.addr("greet");
    for _ in 0..200 {
        reset(connect(greet));
    }
    new_greeting_ok(greet);
    // A batch held open at once, then reset together.
    let held: Vec<TcpStream> = (0..100).map(|_| connect(greet)).collect();
    held.into_iter().for_each(reset);
    new_greeting_ok(greet);
    let sum = srv.stop("reset_before_greeting");
    assert_eq!(sum["refused"], 0, "{sum:?}");
}

/// Promise: an echo client that resets while 10 MB are in flight (the
/// server holding unsent output for it) is dropped cleanly; others are
/// served.
#[test]
fn reset_during_10mb_echo() {
    let _g = serial();
    let srv = Server::start(&["--echo", "127.0.0.1:0"]);
    let echo = srv.addr("echo");
    let mut other = connect(echo);
    for round in 0..3u64 {
        let mut s = connect(echo);
        let mut w = s.try_clone().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_w = stop.clone();
        let writer = thread::spawn(move || {
            let data = pattern(0, 10 << 20);
            // Short waits, so the writer sees `stop` even when the server
            // has stopped reading (this client no longer reads its echo).
            w.set_write_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let mut at = 0;
            while at < data.len() && !stop_w.load(Ordering::Relaxed) {
                match w.write(&data[at..(at + 64 * 1024).min(data.len())]) {
                    Ok(n) => at += n,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => break,
                }
            }
        });
        let head = (1 << 20) * (round as usize + 1);
        let got = read_n(&mut s, head, "echo before reset");
        assert_bytes_eq(&got, &pattern(0, head), "echo before reset");
        // The reset needs the last fd of the socket: the writer lets go
        // of its copy first, with megabytes still in flight.
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        reset(s);
        echo_roundtrip(&mut other, b"still here\n", "other echo client");
    }
    drop(other);
    srv.stop("reset_during_10mb_echo");
}

/// Promise: a Unix client that closes while the server writes a large echo
/// to it does not kill the server (no SIGPIPE death); the next Unix client
/// is served.
#[test]
fn unix_close_during_large_write() {
    let _g = serial();
    let dir = TempDir::new("faults-unix");
    let path = dir.path().join("echo.sock");
    let path_s = path.to_str().unwrap().to_string();
    let mut srv = Server::start(&["--unix", &path_s]);
    assert_eq!(srv.unix_path(), path_s);
    for round in 0..5 {
        let mut s = UnixStream::connect(&path).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.set_write_timeout(Some(TIMEOUT)).unwrap();
        let mut w = s.try_clone().unwrap();
        let writer = thread::spawn(move || {
            let _ = w.write_all(&pattern(0, 10 << 20));
        });
        let head = 256 * 1024 * (round + 1);
        let got = read_n(&mut s, head, "unix echo before close");
        assert_bytes_eq(&got, &pattern(0, head), "unix echo before close");
        let _ = s.shutdown(std::net::Shutdown::Both);
        drop(s);
        writer.join().unwrap();
        assert!(
            srv.alive(),
            "server died after a Unix client closed:\n{}",
            srv.log()
        );
    }
    let mut s = UnixStream::connect(&path).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    write_all(&mut s, b"after\n", "unix client");
    assert_bytes_eq(&read_n(&mut s, 6, "unix client"), b"after\n", "unix echo");
    drop(s);
    srv.stop("unix_close_during_large_write");
}

// ---------------------------------------------------------------- half-close

/// Promise: echo after our FIN (SHUT_WR) still sends back every byte, then
/// EOF.
#[test]
fn half_close_echo() {
    let _g = serial();
    let srv = Server::start(&["--echo", "127.0.0.1:0"]);
    let mut s = connect(srv.addr("echo"));
    let size = 3 << 20;
    let mut w = s.try_clone().unwrap();
    let writer = thread::spawn(move || {
        write_all(&mut w, &pattern(0, size), "half-close writer");
        shutdown_write(&w);
    });
    let got = read_until_eof(&mut s, "half-closed echo client");
    writer.join().unwrap();
    assert_bytes_eq(&got, &pattern(0, size), "echo after SHUT_WR");
    drop(s);
    srv.stop("half_close_echo");
}

/// Promise: HTTP requests followed by SHUT_WR all get their full responses
/// (a 1 MiB file, pipelined behind `/`), then EOF.
#[test]
fn half_close_http() {
    let _g = serial();
    let dir = TempDir::new("faults-half-http");
    let body = pattern(7, 1 << 20);
    dir.write("f.bin", &body);
    let srv = Server::start(&[
        "--http",
        "127.0.0.1:0",
        "--root",
        dir.path().to_str().unwrap(),
    ]);
    let http = srv.addr("http");

    let mut c = HttpClient::connect(http, "half-closed GET");
    c.send(b"GET /f.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    shutdown_write(&c.s);
    let r = c.response();
    assert_eq!(r.status, 200, "{}", r.status_line);
    assert_bytes_eq(&r.body, &body, "file after SHUT_WR");
    c.expect_eof();

    let mut c = HttpClient::connect(http, "half-closed pipeline");
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET /f.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    shutdown_write(&c.s);
    let r = c.response();
    // With a root, `/` is its listing.
    assert_eq!(r.status, 200, "{}", r.status_line);
    assert!(r.text().contains("f.bin"), "the listing: {}", r.text());
    let r = c.response();
    assert_eq!(r.status, 200, "{}", r.status_line);
    assert_bytes_eq(&r.body, &body, "pipelined file after SHUT_WR");
    c.expect_eof();
    srv.stop("half_close_http");
}

// ---------------------------------------------------------------- fds

/// CPU time the server uses over `wall`, as a fraction of it.
fn cpu_share(srv: &Server, wall: Duration) -> f64 {
    let t0 = srv.cpu_ticks();
    let start = Instant::now();
    thread::sleep(wall);
    let used = srv.cpu_ticks() - t0;
    used as f64 / clock_ticks_per_sec() as f64 / start.elapsed().as_secs_f64()
}

/// Promise: under a low open-files limit (`prlimit --nofile=64:64`), the
/// server lowers `--max-conns` to fit (warning in the log) and so never
/// meets EMFILE through connections: with 200 clients, the first ones are
/// served, the rest get `ERROR too many connections` and EOF, the server
/// idles, and after the clients close a new one is served at once.
#[test]
fn low_fd_limit_clamps_and_refuses() {
    let _g = serial();
    let srv = Server::start_under(
        &["prlimit", "--nofile=64:64", "--"],
        &["--echo", "127.0.0.1:0", "--max-conns", "1000"],
    );
    let echo = srv.addr("echo");
    let log = srv.log();
    let line = log
        .lines()
        .find(|l| {
            l.contains("max-conns") && l.contains("1000") && l.contains("open-files limit 64")
        })
        .unwrap_or_else(|| panic!("no clamp warning; log:\n{log}"));
    let cap: usize = line
        .rsplit("using ")
        .next()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("cannot parse the clamp from {line:?}"));
    assert!((1..64).contains(&cap), "clamped to {cap}");

    let mut clients: Vec<TcpStream> = (0..200).map(|_| connect(echo)).collect();
    for (i, s) in clients.iter_mut().enumerate() {
        if i < cap {
            echo_roundtrip(s, format!("client {i}\n").as_bytes(), "served client");
        } else {
            let got = read_until_eof(s, &format!("client {i} past the cap"));
            assert_bytes_eq(&got, b"ERROR too many connections\n", "refused client");
        }
    }
    let share = cpu_share(&srv, Duration::from_secs(2));
    assert!(share < 0.05, "server CPU {:.1}% while full", share * 100.0);
    echo_roundtrip(&mut clients[0], b"still served\n", "client 0 while full");
    drop(clients);
    let t = Instant::now();
    let mut s = connect(echo);
    echo_roundtrip(&mut s, b"new\n", "client after the others closed");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    drop(s);
    let sum = srv.stop("low_fd_limit_clamps_and_refuses");
    assert_eq!(sum["refused"], 200 - cap as u64, "{sum:?}");
}

/// What [`emfile_scenario`] measured.
struct Emfile {
    /// Server CPU over 2 s at EMFILE, as a share of wall time.
    cpu: f64,
    /// From closing the queued clients to a new client's echo.
    recovery: Duration,
    summary: HashMap<String, u64>,
}

/// The server at EMFILE on accept: started under `prlimit --nofile=64:64`,
/// then its soft limit lowered with `prlimit --pid` below what its
/// `--max-conns` clamp assumed (only the soft limit moves: raising a hard
/// limit again needs CAP_SYS_RESOURCE), so that about 8 clients fit and
/// 200 more wait in the kernel's backlog. Checks that the first client is
/// served throughout and that the server warns; measures its CPU over 2 s
/// and, after the 200 close, how long a new client waits for its echo.
fn emfile_scenario(what: &str) -> Emfile {
    let srv = Server::start_under(
        &["prlimit", "--nofile=64:64", "--"],
        &["--echo", "127.0.0.1:0"],
    );
    let echo = srv.addr("echo");
    let pid = srv.pid.to_string();
    let set_soft_limit = |n: usize| {
        let st = Command::new("prlimit")
            .args(["--pid", &pid, &format!("--nofile={n}:64")])
            .status()
            .expect("run prlimit");
        assert!(st.success(), "prlimit --pid failed");
    };
    let limit = srv.base_fds + 8;
    set_soft_limit(limit);
    let mut first = connect(echo);
    echo_roundtrip(&mut first, b"first\n", "first client");
    let clients: Vec<TcpStream> = (0..200).map(|_| connect(echo)).collect();
    let ok = wait_until(Duration::from_secs(5), || {
        srv.log().contains("accept failed")
    });
    assert!(ok, "no `accept failed` warning; log:\n{}", srv.log());
    echo_roundtrip(&mut first, b"still served\n", "first client at EMFILE");
    let cpu = cpu_share(&srv, Duration::from_secs(2));
    echo_roundtrip(&mut first, b"and now\n", "first client after 2 s at EMFILE");

    drop(clients);
    let t = Instant::now();
    let mut s = connect(echo);
    echo_roundtrip(&mut s, b"new\n", "client after the others closed");
    let recovery = t.elapsed();
    drop(s);
    drop(first);
    set_soft_limit(64);
    let summary = srv.stop(what);
    assert!(summary["accept_errors"] > 0, "{summary:?}");
    eprintln!(
        "{what}: soft limit {limit}; CPU {:.2}% over 2 s at EMFILE; new client served {recovery:?} \
         after 200 queued clients closed; accept_errors {}",
        cpu * 100.0,
        summary["accept_errors"]
    );
    Emfile {
        cpu,
        recovery,
        summary,
    }
}

/// Promise: when accept fails with EMFILE, existing clients are still
/// served, the server does not spin (CPU < 5% of wall time over 2 s with
/// 200 clients queued), and once fds are free it accepts again: every
/// queued client is taken and a new client is served (here within 5 s).
#[test]
fn emfile_on_accept() {
    let _g = serial();
    let m = emfile_scenario("emfile_on_accept");
    assert!(m.cpu < 0.05, "server CPU {:.1}% at EMFILE", m.cpu * 100.0);
    assert!(
        m.recovery < Duration::from_secs(5),
        "new client served {:?} after the queued clients closed; {:?}",
        m.recovery,
        m.summary
    );
}

/// The bar: a new client is accepted within 1 s once fds are free.
/// Fails: the server retries accept every 100 ms (`ACCEPT_RETRY_MS`) and
/// each retry takes only as many queued clients as there are free fds
/// before EMFILE again, so a backlog of 200 closed clients ahead of the new
/// one drains at ~8 per 100 ms: about 2.5 s.
#[test]
fn emfile_new_client_within_1s() {
    let _g = serial();
    let m = emfile_scenario("emfile_new_client_within_1s");
    assert!(
        m.recovery < Duration::from_secs(1),
        "new client served {:?} after the queued clients closed; {:?}",
        m.recovery,
        m.summary
    );
}

/// Promise: past `--max-conns 50`, each new client gets `ERROR too many
/// connections` (echo, chat, greet) or a 503 (HTTP), then EOF; once the
/// flood ends, every service serves new clients again.
#[test]
fn flood_past_max_conns() {
    let _g = serial();
    let srv = Server::start(&[
        "--echo",
        "127.0.0.1:0",
        "--chat",
        "127.0.0.1:0",
        "--greet",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--max-conns",
        "50",
    ]);
    let (echo, chat, greet, http) = (
        srv.addr("echo"),
        srv.addr("chat"),
        srv.addr("greet"),
        srv.addr("http"),
    );
    let mut held: Vec<TcpStream> = (0..50).map(|_| connect(echo)).collect();
    for (i, s) in held.iter_mut().enumerate() {
        echo_roundtrip(s, format!("held {i}\n").as_bytes(), "held client");
    }
    let per = 25;
    let mut http_resets = 0;
    for round in 0..per {
        for (name, addr) in [("echo", echo), ("chat", chat), ("greet", greet)] {
            let mut s = connect(addr);
            let got = read_until_eof(&mut s, &format!("{name} flood client {round}"));
            assert_bytes_eq(&got, b"ERROR too many connections\n", name);
        }
        let mut c = HttpClient::connect(http, format!("http flood client {round}"));
        let r = c.roundtrip(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(r.status, 503, "{}", r.status_line);
        assert!(r.closes(), "503 without Connection: close: {:?}", r.headers);
        // The refusal is one write and a close, with the request unread:
        // Linux then sends RST, not FIN (see docs/RELIABILITY.md).
        let (rest, end) = c.rest();
        assert!(rest.is_empty(), "bytes after the 503: {rest:?}");
        http_resets += usize::from(end == End::Reset);
    }
    eprintln!("flood: {http_resets} of {per} refused HTTP clients saw RST after the 503");
    // The held clients were never disturbed.
    echo_roundtrip(&mut held[49], b"still\n", "held client 49");
    drop(held);
    // Recovery: every service serves again.
    let ok = wait_until(Duration::from_secs(5), || srv.stats()["open"] == 1);
    assert!(ok, "open never dropped back to 1: {:?}", srv.stats());
    let mut s = connect(echo);
    echo_roundtrip(&mut s, b"back\n", "echo after flood");
    let mut c = Lines::new(connect(chat), "chat after flood");
    assert!(c.line().starts_with("* welcome"), "chat after flood");
    new_greeting_ok(greet);
    assert_eq!(http_get(http, "/").status, 200);
    drop((s, c));
    let sum = srv.stop("flood_past_max_conns");
    // 4 services x `per` clients, plus any `/stats` refused while full (none).
    assert_eq!(sum["refused"], 4 * per as u64, "{sum:?}");
}

// ---------------------------------------------------------------- slow consumers

/// Promise: an echo client that sends 100 MB and does not read is paused
/// (TCP flow control), not buffered: the server's RSS stays flat (< 4 MiB
/// growth) while another client is served; when it reads again, all
/// 100 MB come back intact.
#[test]
fn slow_echo_consumer_memory_flat() {
    let _g = serial();
    let srv = Server::start(&["--echo", "127.0.0.1:0"]);
    let echo = srv.addr("echo");
    let mut other = connect(echo);
    echo_roundtrip(&mut other, &pattern(0, 256 * 1024), "warm-up");
    let base = srv.rss_kib();
    let total: u64 = 100 << 20;
    let chunk = 1 << 20;

    let mut s = connect(echo);
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = s.try_clone().unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let sent2 = sent.clone();
    let writer = thread::spawn(move || {
        let mut off = 0;
        while off < total {
            let n = chunk.min((total - off) as usize);
            w.write_all(&pattern(off, n)).expect("slow client write");
            off += n as u64;
            sent2.store(off, Ordering::Relaxed);
        }
    });
    // Wait until the writer is stuck: no progress for 300 ms.
    let mut last = (0, Instant::now());
    let stuck = wait_until(Duration::from_secs(10), || {
        let now = sent.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        }
        last.1.elapsed() > Duration::from_millis(300)
    });
    assert!(stuck, "the writer never blocked");
    let stuck_at = sent.load(Ordering::Relaxed);
    assert!(
        stuck_at < total,
        "server took all 100 MB without reading back"
    );
    let mut peak = srv.rss_kib();
    for i in 0..20 {
        echo_roundtrip(
            &mut other,
            format!("other {i}\n").as_bytes(),
            "other client",
        );
        peak = peak.max(srv.rss_kib());
    }
    // Now read everything back while sampling RSS.
    let mut off = 0u64;
    let mut buf = vec![0u8; chunk];
    while off < total {
        let n = s.read(&mut buf).expect("slow client read");
        assert!(n > 0, "EOF after {off} of {total} bytes");
        if buf[..n] != pattern(off, n)[..] {
            panic!("echo differs in the {n} bytes at offset {off}");
        }
        off += n as u64;
        if off % (8 << 20) < n as u64 {
            peak = peak.max(srv.rss_kib());
        }
    }
    writer.join().unwrap();
    let growth = peak.saturating_sub(base);
    eprintln!(
        "slow echo consumer: writer stalled at {stuck_at} bytes; RSS {base} KiB -> peak {peak} KiB"
    );
    assert!(
        growth < 4096,
        "RSS grew {growth} KiB (base {base}, peak {peak})"
    );
    drop((s, other));
    srv.stop("slow_echo_consumer_memory_flat");
}

const SENDERS: usize = 50;
const LINES_PER_SENDER: u64 = 10_000;

/// The nick from a chat welcome line.
fn welcome_nick(l: &mut Lines<TcpStream>) -> String {
    let welcome = l.line();
    welcome
        .split("you are ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("{}: welcome {welcome:?}", l.what))
        .to_string()
}

/// Promise: while 50 members each send 10,000 lines of about 100 bytes, a
/// member that does not read is dropped at its output limit (its room sees
/// `* nick left lobby (too slow)` once), and every other member receives
/// every line from every sender, in order. A dropped member that starts
/// reading within `--linger` gets whole lines, then `ERROR too slow: ...`,
/// then EOF; one that never reads is closed at the linger deadline.
#[test]
fn chat_slow_member_dropped_others_get_everything() {
    let _g = serial();
    let srv = Server::start(&["--chat", "127.0.0.1:0"]);
    let chat = srv.addr("chat");
    // Two non-readers join first and read only their welcome: `never`
    // never reads again, `late` reads once it has been dropped.
    let mut never = Lines::new(connect(chat), "never-reading member");
    let never_nick = welcome_nick(&mut never);
    let mut late = Lines::new(connect(chat), "late-reading member");
    let late_nick = welcome_nick(&mut late);
    let mut members = Vec::new();
    for i in 0..SENDERS {
        let mut l = Lines::new(connect(chat), format!("member {i}"));
        assert!(l.line().starts_with("* welcome"));
        members.push(l);
    }
    let late_dropped = Arc::new(AtomicBool::new(false));
    let late_flag = late_dropped.clone();
    let late_reader = thread::spawn(move || {
        assert!(
            wait_until(Duration::from_secs(30), || late_flag
                .load(Ordering::Relaxed)),
            "late member never dropped"
        );
        let dropped_at = Instant::now();
        let (rest, end) = late.rest();
        (rest, end, dropped_at.elapsed())
    });
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..SENDERS).map(|_| AtomicU64::new(0)).collect());
    let recv: Arc<Vec<AtomicU64>> = Arc::new((0..SENDERS).map(|_| AtomicU64::new(0)).collect());
    let failed = Arc::new(AtomicBool::new(false));
    let want_each = (SENDERS as u64 - 1) * LINES_PER_SENDER;
    // A reader's backlog: lines sent by the others that it has not read.
    let window: u64 = 1500;
    let batch: u64 = 25;
    let started = Instant::now();
    let mut senders = Vec::new();
    let mut readers = Vec::new();
    for (i, mut m) in members.into_iter().enumerate() {
        let mut w = m.get_mut().try_clone().unwrap();
        let (sent_w, recv_w, failed_w) = (sent.clone(), recv.clone(), failed.clone());
        senders.push(thread::spawn(move || {
            let pad = "x".repeat(80);
            let mut out = Vec::with_capacity(8 * 1024);
            let mut seq = 0;
            while seq < LINES_PER_SENDER {
                // Pace: no reader more than `window` lines behind.
                let t = Instant::now();
                loop {
                    let total: u64 = sent_w.iter().map(|a| a.load(Ordering::Relaxed)).sum();
                    let worst = (0..SENDERS)
                        .map(|r| {
                            (total - sent_w[r].load(Ordering::Relaxed))
                                .saturating_sub(recv_w[r].load(Ordering::Relaxed))
                        })
                        .max()
                        .unwrap();
                    if worst <= window || failed_w.load(Ordering::Relaxed) {
                        break;
                    }
                    assert!(t.elapsed() < TIMEOUT, "sender {i}: readers stuck");
                    thread::sleep(Duration::from_micros(200));
                }
                out.clear();
                for _ in 0..batch.min(LINES_PER_SENDER - seq) {
                    writeln!(out, "m {i} {seq} {pad}").unwrap();
                    seq += 1;
                }
                w.write_all(&out).expect("sender write");
                sent_w[i].fetch_add(
                    out.iter().filter(|&&b| b == b'\n').count() as u64,
                    Ordering::Relaxed,
                );
            }
        }));
        let (recv_r, failed_r, late_r) = (recv.clone(), failed.clone(), late_dropped.clone());
        let never_slow = format!("* {never_nick} left lobby (too slow)\n");
        let late_slow = format!("* {late_nick} left lobby (too slow)\n");
        readers.push(thread::spawn(move || {
            let mut next = vec![0u64; SENDERS];
            let mut got = 0;
            let mut too_slow_notices = (0, 0);
            while got < want_each {
                let line = match m.try_line() {
                    Ok(l) => l,
                    Err(e) => {
                        failed_r.store(true, Ordering::Relaxed);
                        panic!("member {i}: after {got} lines: {e}");
                    }
                };
                if line.starts_with("* ") {
                    if line == never_slow {
                        too_slow_notices.0 += 1;
                    } else if line == late_slow {
                        too_slow_notices.1 += 1;
                        late_r.store(true, Ordering::Relaxed);
                    }
                    continue;
                }
                let text = line.split_once(": ").map(|(_, t)| t).unwrap_or("");
                let mut f = text.split(' ');
                let (Some("m"), Some(s), Some(q)) = (f.next(), f.next(), f.next()) else {
                    failed_r.store(true, Ordering::Relaxed);
                    panic!("member {i}: unexpected line {line:?}");
                };
                let (s, q): (usize, u64) = (s.parse().unwrap(), q.parse().unwrap());
                if s == i || q != next[s] {
                    failed_r.store(true, Ordering::Relaxed);
                    panic!("member {i}: line {q} from {s}, want {}: {line:?}", next[s]);
                }
                next[s] += 1;
                got += 1;
                recv_r[i].store(got, Ordering::Relaxed);
            }
            too_slow_notices
        }));
    }
    for (k, t) in senders.into_iter().enumerate() {
        if t.join().is_err() {
            panic!("sender {k} failed; log:\n{}", srv.log());
        }
    }
    let notices: Vec<(usize, usize)> = readers
        .into_iter()
        .enumerate()
        .map(|(k, t)| {
            t.join()
                .unwrap_or_else(|_| panic!("reader {k} failed; log:\n{}", srv.log()))
        })
        .collect();
    let took = started.elapsed();
    eprintln!(
        "chat: {SENDERS} senders x {LINES_PER_SENDER} lines to {SENDERS} readers in {took:?}"
    );
    // Each member saw each drop notice exactly once.
    assert!(
        notices.iter().all(|&n| n == (1, 1)),
        "too-slow notices (never, late) per member: {notices:?}"
    );
    // The late reader: whole lines, then the error line, then EOF.
    let (rest, end, read_in) = late_reader.join().expect("late reader");
    let tail = String::from_utf8_lossy(&rest[rest.len().saturating_sub(300)..]).into_owned();
    eprintln!(
        "chat: late member read {} bytes ({end:?}) in {read_in:?} after its drop notice",
        rest.len()
    );
    assert_eq!(end, End::Eof, "late member: reset; tail {tail:?}");
    assert!(
        tail.ends_with("\nERROR too slow: output limit reached, disconnecting\n"),
        "late member got {} bytes ending {tail:?}",
        rest.len()
    );
    for l in rest.split_inclusive(|&b| b == b'\n') {
        let l = String::from_utf8_lossy(l);
        assert!(
            l.starts_with("[lobby] ") || l.starts_with("* ") || l.starts_with("ERROR too slow"),
            "late member: torn or foreign line {l:?}"
        );
    }
    // The never-reader: the server closed it (its stream ends; what it
    // holds may stop mid-line, the rest having been discarded).
    let (rest, end) = never.rest();
    eprintln!(
        "chat: never-reading member's stream ended ({end:?}) after {} bytes",
        rest.len()
    );
    let sum = srv.stop("chat_slow_member");
    assert_eq!(sum["slow_dropped"], 2, "{sum:?}");
}

// ---------------------------------------------------------------- SIGTERM

/// Promise: SIGTERM with 1,000 open echo connections, each with 16 KiB
/// sent before the signal: every byte is echoed, then EOF, and the server
/// exits 0 within the grace (5 s).
#[test]
fn sigterm_with_1000_connections() {
    let _g = serial();
    let mut srv = Server::start(&["--echo", "127.0.0.1:0", "--grace", "5s"]);
    let echo = srv.addr("echo");
    let n = 1000;
    let size = 16 * 1024;
    let head = 512;
    let mut clients: Vec<TcpStream> = (0..n).map(|_| connect(echo)).collect();
    for (i, s) in clients.iter_mut().enumerate() {
        write_all(s, &pattern(i as u64 * 7919, size), &format!("client {i}"));
    }
    for (i, s) in clients.iter_mut().enumerate() {
        let what = format!("client {i} before SIGTERM");
        assert_bytes_eq(
            &read_n(s, head, &what),
            &pattern(i as u64 * 7919, head),
            &what,
        );
    }
    let open = srv.stats()["open"];
    assert_eq!(open, n as u64 + 1, "connections open before SIGTERM");
    let t = Instant::now();
    srv.bin.signal("TERM");
    for (i, s) in clients.iter_mut().enumerate() {
        let what = format!("client {i} after SIGTERM");
        let got = read_until_eof(s, &what);
        assert_bytes_eq(
            &got,
            &pattern(i as u64 * 7919 + head as u64, size - head),
            &what,
        );
    }
    let st = srv.bin.wait_exit(Duration::from_secs(6));
    let log = srv.bin.final_log();
    let st = st.unwrap_or_else(|| panic!("no exit {:?} after SIGTERM:\n{log}", t.elapsed()));
    assert_eq!(st.code(), Some(0), "exit after SIGTERM; log:\n{log}");
    let took = t.elapsed();
    assert!(took < Duration::from_secs(5), "exit took {took:?}");
    let bad = bad_log_lines(&log);
    assert!(bad.is_empty(), "bad log lines: {bad:#?}");
    let sum = log
        .lines()
        .find_map(|l| l.split_once("stopped: ").map(|(_, r)| parse_kv(r)))
        .expect("stopped: line");
    assert_eq!(sum["open"], 0, "{sum:?}");
    eprintln!("SIGTERM with {n} connections: exit 0 after {took:?}");
}

/// Bytes `s` has written that its kernel has not yet delivered (loopback:
/// unacknowledged by the server's kernel), from `SIOCOUTQ`.
fn unsent(s: &TcpStream) -> u64 {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: `n` is a writable c_int that lives across the call, and the
    // fd is open for the call's length (`s` is borrowed).
    let rc = unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    assert_eq!(rc, 0, "SIOCOUTQ: {}", std::io::Error::last_os_error());
    n as u64
}

/// Promise: SIGTERM while clients are busy sending: every byte that
/// reached the server before the signal is echoed, then EOF. Input whose
/// readable event comes after the signal's in the batch (bytes that landed
/// during the turn the signal came in), or in the next poll, included: the
/// shutdown reads each connection until it is drained before closing it.
/// 200 clients send without pause, their echo read on other threads; just
/// before the signal, what each client's kernel had delivered (written less
/// `SIOCOUTQ`) is noted, and must come back, in order; each stops sending
/// when it sees the signal go, and half-closes.
#[test]
fn sigterm_echoes_every_byte_that_arrived_before_it() {
    let _g = serial();
    let mut srv = Server::start(&["--echo", "127.0.0.1:0", "--grace", "5s"]);
    let echo = srv.addr("echo");
    let n = 200;
    let stop = Arc::new(AtomicBool::new(false));
    let mut probes = Vec::new();
    let clients: Vec<_> = (0..n)
        .map(|i| {
            let s = connect(echo);
            let r = s.try_clone().unwrap();
            let written = Arc::new(AtomicU64::new(0));
            probes.push((s.try_clone().unwrap(), written.clone()));
            let stop = stop.clone();
            let seed = i as u64 * 104_729;
            let writer = thread::spawn(move || {
                let mut s = s;
                let mut at = 0u64;
                while !stop.load(Ordering::Acquire) && at < (64 << 20) {
                    let chunk = pattern(seed + at, 4096);
                    write_all(&mut s, &chunk, "busy client");
                    at += chunk.len() as u64;
                    written.store(at, Ordering::Release);
                }
                shutdown_write(&s);
            });
            let reader = thread::spawn(move || {
                let mut r = r;
                read_until_eof(&mut r, "busy client's echo")
            });
            (writer, reader, seed)
        })
        .collect();
    // Connections still in the listen backlog at the signal are reset by
    // the kernel when the listener closes (nginx's shutdown does the same):
    // every client is accepted before the signal.
    let accepted = wait_until(TIMEOUT, || srv.stats()["open"] == n as u64 + 1);
    assert!(accepted, "not all {n} clients accepted: {:?}", srv.stats());
    thread::sleep(Duration::from_millis(300));
    // Written before the look, less what the kernel still holds after it:
    // at most what had reached the server when the signal went.
    let arrived: Vec<u64> = probes
        .iter()
        .map(|(s, written)| {
            let before = written.load(Ordering::Acquire);
            before.saturating_sub(unsent(s))
        })
        .collect();
    srv.bin.signal("TERM");
    stop.store(true, Ordering::Release);
    let mut total = 0;
    for (i, ((writer, reader, seed), arrived)) in clients.into_iter().zip(arrived).enumerate() {
        writer.join().expect("writer");
        let got = reader
            .join()
            .unwrap_or_else(|_| panic!("client {i}: its echo broke off"));
        total += arrived;
        assert!(
            got.len() as u64 >= arrived,
            "client {i}: {} bytes echoed, {arrived} had reached the server before the signal",
            got.len()
        );
        assert_bytes_eq(&got, &pattern(seed, got.len()), &format!("client {i}"));
    }
    let st = srv.bin.wait_exit(Duration::from_secs(6));
    assert_eq!(st.and_then(|s| s.code()), Some(0), "exit after SIGTERM");
    eprintln!(
        "SIGTERM with {n} busy clients: {} MB had reached the server before it, all echoed",
        total >> 20
    );
}

/// Sends `sig` to `pid` at once (no `kill` process in between).
fn send_signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill has no memory preconditions; the pid is our child's.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
}

/// Promise: input that arrived before the loop acted on SIGTERM is echoed,
/// even when its readable event comes after the signal's: the shutdown
/// reads every connection until it is drained before closing it, instead
/// of closing the ones no event has said readable yet. Made to happen:
/// the server is stopped while 1,000 clients queue 64 KiB each, resumed
/// into a turn that reads all of it, and signalled during that turn; then
/// 50 idle clients send a line each, which lands after the signal's event
/// and before the loop's next poll.
#[test]
fn sigterm_answers_input_that_came_behind_the_signal() {
    let _g = serial();
    let mut srv = Server::start(&["--echo", "127.0.0.1:0", "--grace", "5s"]);
    let echo = srv.addr("echo");
    let load: Vec<TcpStream> = (0..1000).map(|_| connect(echo)).collect();
    let mut late: Vec<TcpStream> = (0..50).map(|_| connect(echo)).collect();
    let accepted = wait_until(TIMEOUT, || srv.stats()["open"] == 1051);
    assert!(accepted, "clients not accepted: {:?}", srv.stats());
    send_signal(srv.pid, libc::SIGSTOP);
    let block = vec![b'l'; 64 * 1024];
    for (i, mut s) in load.iter().enumerate() {
        write_all(&mut s, &block, &format!("load client {i}"));
    }
    send_signal(srv.pid, libc::SIGCONT);
    thread::sleep(Duration::from_millis(2));
    send_signal(srv.pid, libc::SIGTERM);
    for (i, s) in late.iter_mut().enumerate() {
        write_all(s, format!("late line {i}\n").as_bytes(), "late client");
        shutdown_write(s);
    }
    for (i, s) in late.iter_mut().enumerate() {
        let got = read_until_eof(s, &format!("late client {i}"));
        assert_bytes_eq(
            &got,
            format!("late line {i}\n").as_bytes(),
            "late client's echo",
        );
    }
    drop(load);
    let st = srv.bin.wait_exit(Duration::from_secs(8));
    assert_eq!(st.and_then(|s| s.code()), Some(0), "exit after SIGTERM");
}

// ---------------------------------------------------------------- UDP

/// One echo for `probe`, within `within`, resending every 100 ms.
fn udp_probe(probe: &UdpSocket, to: SocketAddr, tag: u64, within: Duration) -> Option<Duration> {
    let t = Instant::now();
    let msg = format!("probe {tag}");
    let mut buf = [0u8; 256];
    probe
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while t.elapsed() < within {
        probe.send_to(msg.as_bytes(), to).unwrap();
        let until = Instant::now() + Duration::from_millis(100);
        while Instant::now() < until {
            match probe.recv_from(&mut buf) {
                Ok((n, _)) if &buf[..n] == msg.as_bytes() => return Some(t.elapsed()),
                Ok(_) => {} // an answer to an earlier resend
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break;
                }
                Err(e) => panic!("probe: {e}"),
            }
        }
    }
    None
}

/// Promise: UDP datagrams of 0 and 65,507 bytes come back intact; a burst
/// of 100,000 datagrams from a client that does not read never blocks the
/// server (a second client gets its echo within 1 s during and after the
/// burst), and the counters add up: udp_in <= sent, and every datagram
/// taken in was either sent back or counted in udp_dropped.
#[test]
fn udp_sizes_and_burst() {
    let _g = serial();
    let srv = Server::start(&["--udp", "127.0.0.1:0"]);
    let udp = srv.addr("udp");
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = vec![0u8; 70_000];
    for size in [0usize, 1, 65_507] {
        let msg = pattern(size as u64, size);
        let mut ok = false;
        for _ in 0..5 {
            c.send_to(&msg, udp).unwrap();
            if let Ok((n, from)) = c.recv_from(&mut buf) {
                assert_eq!(from, udp);
                assert_bytes_eq(&buf[..n], &msg, &format!("{size}-byte datagram"));
                ok = true;
                break;
            }
        }
        assert!(ok, "no echo of a {size}-byte datagram in 5 tries");
    }

    let burst = UdpSocket::bind("127.0.0.1:0").unwrap();
    let n_burst: u64 = 100_000;
    let done = Arc::new(AtomicBool::new(false));
    let done2 = done.clone();
    let prober = thread::spawn(move || {
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut worst = Duration::ZERO;
        let mut tag = 0;
        // During the burst, and 10 probes after it.
        let mut after = 0;
        while after < 10 {
            if done2.load(Ordering::Relaxed) {
                after += 1;
            }
            tag += 1;
            let took = udp_probe(&probe, udp, tag, Duration::from_secs(1))
                .unwrap_or_else(|| panic!("probe {tag}: no echo within 1 s"));
            worst = worst.max(took);
            thread::sleep(Duration::from_millis(20));
        }
        (tag, worst)
    });
    let t = Instant::now();
    let payload = [0x5au8; 64];
    let mut sent = 0u64;
    while sent < n_burst {
        match burst.send_to(&payload, udp) {
            Ok(_) => sent += 1,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("burst send {sent}: {e}"),
        }
    }
    let burst_time = t.elapsed();
    done.store(true, Ordering::Relaxed);
    let (probes, worst) = prober.join().expect("prober");
    // What came back to the burst socket (its buffer overflowed long ago).
    burst.set_nonblocking(true).unwrap();
    let mut back = 0u64;
    while burst.recv_from(&mut buf).is_ok() {
        back += 1;
    }
    let mut st = srv.stats();
    // Quiescent: every datagram taken in has been answered or dropped.
    let ok = wait_until(Duration::from_secs(5), || {
        st = srv.stats();
        st["udp_out"] + st["udp_dropped"] == st["udp_in"]
    });
    let msg =
        format!("sent {sent} (+{probes} probes) in {burst_time:?}; read back {back}; stats {st:?}");
    eprintln!("udp burst: {msg}; worst probe {worst:?}");
    assert!(ok, "udp_out + udp_dropped != udp_in: {msg}");
    assert!(
        st["udp_in"] <= sent + 3 * 5 + probes * 10 + 5,
        "udp_in > sent: {msg}"
    );
    assert!(back <= st["udp_out"], "{msg}");
    srv.stop("udp_sizes_and_burst");
}
