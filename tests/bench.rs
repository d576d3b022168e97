//! `reactor bench` against small misbehaving servers (each reports what
//! it should: verify errors, the right latency, connect and read errors)
//! and against our own services in-process. Ports come from the OS; each
//! run lasts a second or less.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use clap::Parser;
use reactor::bench::cli::BenchCommand;
use reactor::bench::report::Report;
use reactor::bench::{Kind, Outcome};
use reactor::cli::{Cli, Command};
use reactor::{Config, Server, Service};

/// Parses `reactor bench ARGS...`.
fn parse(args: &[&str]) -> BenchCommand {
    let mut v = vec!["reactor", "bench"];
    v.extend_from_slice(args);
    match Cli::try_parse_from(v).expect("valid flags").command {
        Command::Bench(b) => b.command,
        _ => unreachable!("bench"),
    }
}

/// Runs a workload and returns its report.
fn bench(args: &[&str]) -> Report {
    use reactor::bench::{chat, connect, echo, http, idle, udp};
    let r = match parse(args) {
        BenchCommand::Echo(a) => echo::bench(&a),
        BenchCommand::Tcp(a) => echo::bench_tcp(&a),
        BenchCommand::Http(a) => http::bench(&a),
        BenchCommand::Udp(a) => udp::bench(&a),
        BenchCommand::Chat(a) => chat::bench(&a),
        BenchCommand::Ws(a) => chat::bench_ws(&a),
        BenchCommand::Connect(a) => connect::bench(&a),
        BenchCommand::Idle(a) => idle::bench(&a),
        BenchCommand::Game(a) => reactor::bench::game::bench(&a),
        BenchCommand::Compare(_) | BenchCommand::Merge(_) => unreachable!("not a workload"),
    };
    r.expect("the run itself works")
}

/// A TCP server on port 0 whose connections are served by `each`, one
/// thread per connection.
fn serve(each: fn(TcpStream)) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            thread::spawn(move || each(s));
        }
    });
    addr
}

/// Echo that flips one bit of every read.
fn corrupting(mut s: TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = s.read(&mut buf) {
        buf[n / 2] ^= 1;
        if s.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// Echo of 64-byte messages, each after 50 ms.
fn slow(mut s: TcpStream) {
    let mut buf = [0u8; 64];
    while s.read_exact(&mut buf).is_ok() {
        thread::sleep(Duration::from_millis(50));
        if s.write_all(&buf).is_err() {
            return;
        }
    }
}

/// Reads a little, then hangs up without answering.
fn dropping(mut s: TcpStream) {
    let mut buf = [0u8; 16];
    let _ = s.read(&mut buf);
}

/// A redis-like PING server: `+PONG\r\n` for every `\n` read (so
/// pipelined requests get one answer each); `+PANG` for every tenth when
/// `wrong`.
fn pong(mut s: TcpStream, wrong: bool) {
    let (mut buf, mut n) = ([0u8; 4096], 0u64);
    while let Ok(k @ 1..) = s.read(&mut buf) {
        let mut out = Vec::new();
        for _ in buf[..k].iter().filter(|&&b| b == b'\n') {
            n += 1;
            out.extend_from_slice(if wrong && n % 10 == 0 {
                b"+PANG\r\n"
            } else {
                b"+PONG\r\n"
            });
        }
        if s.write_all(&out).is_err() {
            return;
        }
    }
}

/// Starts our own server with `cfg`; returns it running and its handle.
fn own(cfg: Config) -> (reactor::Handle, Server) {
    let server = Server::bind(cfg).expect("bind");
    (server.handle(), server)
}

#[test]
fn corrupted_bytes_are_verify_errors() {
    let addr = serve(corrupting).to_string();
    let r = bench(&["echo", &addr, "-c", "4", "-d", "0.5", "-q"]);
    assert!(r.m.rec.errors.get(Kind::Verify) > 0, "{:?}", r.m.rec.errors);
}

#[test]
fn tcp_fixed_request_and_answer() {
    let good = serve(|s| pong(s, false)).to_string();
    let flags = [
        "--send",
        "PING\\r\\n",
        "--expect",
        "+PONG\\r\\n",
        "-c",
        "3",
        "-n",
        "600",
        "-q",
    ];
    for depth in ["1", "8"] {
        let mut args = vec!["tcp", &good, "--depth", depth];
        args.extend_from_slice(&flags);
        let r = bench(&args);
        assert_eq!(r.m.rec.requests, 600, "depth {depth}");
        assert_eq!(r.m.rec.errors.total(), 0, "depth {depth}");
        // Each request's bytes went out whole: 600 of PING\r\n.
        assert_eq!(r.m.rec.bytes_out, 600 * 6, "depth {depth}");
    }
    let bad = serve(|s| pong(s, true)).to_string();
    let mut args = vec!["tcp", &bad];
    args.extend_from_slice(&flags);
    let r = bench(&args);
    let verify = r.m.rec.errors.get(Kind::Verify);
    assert!(
        (50..=70).contains(&verify),
        "one answer in ten is wrong: {verify} of 600"
    );
}

#[test]
fn a_slow_server_shows_in_latency() {
    let addr = serve(slow).to_string();
    let r = bench(&["echo", &addr, "-c", "4", "-d", "1", "-q"]);
    assert!(r.m.rec.requests >= 4);
    let p50 = r.m.rec.latency.value_at_quantile(0.5);
    assert!(p50 >= 50_000_000, "p50 {p50} ns");
    assert_eq!(r.m.rec.errors.total(), 0);
}

#[test]
fn open_loop_counts_from_the_intended_time() {
    // 40 req/s on one connection to a server that takes 50 ms: the queue
    // grows, and latency from the schedule must exceed the service time.
    let addr = serve(slow).to_string();
    let r = bench(&["echo", &addr, "-c", "1", "-d", "1", "--rate", "40", "-q"]);
    let lat = r.m.rec.latency.value_at_quantile(0.99);
    let svc = r.m.rec.service.value_at_quantile(0.99);
    assert!(svc >= 50_000_000, "service {svc}");
    assert!(lat > svc + 100_000_000, "latency {lat} vs service {svc}");
}

#[test]
fn dropped_connections_are_read_errors() {
    let addr = serve(dropping).to_string();
    let r = bench(&["echo", &addr, "-c", "4", "-d", "0.3", "-q"]);
    assert_eq!(r.m.rec.requests, 0);
    assert!(r.m.rec.errors.get(Kind::Read) > 0, "{:?}", r.m.rec.errors);
    assert!(!r.valid());
}

#[test]
fn a_refusing_port_is_connect_errors() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let r = bench(&["echo", &addr, "-c", "2", "-d", "0.3", "-q"]);
    assert!(r.m.rec.errors.get(Kind::Connect) > 0);
    assert_eq!(r.m.rec.requests, 0);
    assert!(!r.valid());
}

/// Promise: a connect that never completes within the run is an error,
/// not forgotten: a listener with a full backlog that never accepts.
#[test]
fn connects_that_never_complete_are_errors() {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    sock.listen(1).unwrap(); // never accepted: the queue fills, later SYNs wait
    let addr = sock.local_addr().unwrap().as_socket().unwrap().to_string();
    let r = bench(&[
        "echo",
        &addr,
        "-c",
        "20",
        "-d",
        "0.3",
        "--timeout",
        "1s",
        "-q",
    ]);
    assert_eq!(r.m.rec.requests, 0);
    assert!(
        r.m.rec.errors.total() >= 20,
        "every connection must fail somehow: {:?}",
        r.m.rec.errors
    );
    assert!(!r.valid());
    drop(sock);
}

#[test]
fn timeouts_are_counted_not_dropped() {
    // Accepts and reads, never answers.
    fn mute(mut s: TcpStream) {
        let mut buf = [0u8; 64];
        while let Ok(1..) = s.read(&mut buf) {}
    }
    let addr = serve(mute).to_string();
    let r = bench(&[
        "echo",
        &addr,
        "-c",
        "2",
        "-d",
        "0.2",
        "--timeout",
        "100ms",
        "-q",
    ]);
    assert!(
        r.m.rec.errors.get(Kind::Timeout) >= 2,
        "{:?}",
        r.m.rec.errors
    );
}

#[test]
fn own_echo_clean_and_json_parses_back() {
    let mut cfg = Config::empty();
    cfg.echo = Some("127.0.0.1:0".parse().unwrap());
    let (handle, server) = own(cfg);
    let addr = server.local_addr(Service::Echo).unwrap().to_string();
    let t = thread::spawn(move || server.run());
    let dir = std::env::temp_dir().join(format!("reactor-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("a.json");
    let svg = dir.join("a.svg");
    let pid = std::process::id().to_string();
    let args = [
        "echo",
        &addr,
        "-c",
        "8",
        "--depth",
        "4",
        "--size",
        "100",
        "-d",
        "1",
        "--warmup",
        "0.2",
        "--pid",
        &pid,
        "-q",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ];
    let BenchCommand::Echo(a) = parse(&args) else {
        unreachable!()
    };
    let r = reactor::bench::echo::bench(&a).unwrap();
    assert_eq!(r.m.rec.errors.total(), 0);
    assert!(r.m.rec.requests > 100);
    assert_eq!(
        reactor::bench::run(reactor::bench::cli::BenchArgs {
            command: parse(&args)
        })
        .unwrap(),
        Outcome::Done
    );
    handle.shutdown();
    t.join().unwrap().unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(v["requests_per_sec"].as_f64().unwrap() > 0.0);
    assert_eq!(v["errors"], 0);
    for k in ["p50", "p90", "p99", "p999", "p9999", "max"] {
        assert!(v["latency_us"][k].as_f64().is_some(), "{k}");
    }
    assert!(v["environment"]["cores"].as_u64().unwrap() >= 1);
    assert!(!v["series"].as_array().unwrap().is_empty());
    assert!(v["server"]["cpu_s"].as_f64().is_some());
    assert!(v["valid"].is_boolean());
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));

    // compare: the same file is no regression; a worse copy is.
    let worse = dir.join("b.json");
    let mut w = v.clone();
    w["requests_per_sec"] = serde_json::json!(v["requests_per_sec"].as_f64().unwrap() * 0.5);
    std::fs::write(&worse, w.to_string()).unwrap();
    let cmp = |b: &std::path::Path| {
        let args = [
            "compare",
            json.to_str().unwrap(),
            b.to_str().unwrap(),
            "--max-regression",
            "5%",
        ];
        let BenchCommand::Compare(c) = parse(&args) else {
            unreachable!()
        };
        reactor::bench::report::compare(&c).unwrap()
    };
    assert_eq!(cmp(&json), Outcome::Done);
    assert_eq!(cmp(&worse), Outcome::Regression);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An open loop sleeps on a timer in the same poll set (for precise
/// sends) and `--busy-poll` never sleeps: both complete every request,
/// and the spin is reported apart from work.
///
/// Nothing here depends on timing. A busy poller that finds an event
/// ready at every poll never spins: against a server that answers at
/// once, on a core it shares with that server, every write lets the
/// server run and answer before the next poll. So the closed loop
/// drives a server that waits 50 ms before each answer: after each
/// write there is nothing to read for 50 ms, and a busy poller's polls
/// in that time find nothing. The open loop has idle gaps by its
/// schedule. Whether a loop slept is counted, not inferred from times.
#[test]
fn open_loop_timer_and_busy_poll() {
    let mut cfg = Config::empty();
    cfg.echo = Some("127.0.0.1:0".parse().unwrap());
    let (handle, server) = own(cfg);
    let addr = server.local_addr(Service::Echo).unwrap().to_string();
    let t = thread::spawn(move || server.run());
    let timed = bench(&[
        "echo", &addr, "-c", "4", "-n", "400", "--rate", "2000", "-q",
    ]);
    assert_eq!(timed.m.rec.requests, 400);
    assert_eq!(timed.m.rec.errors.total(), 0);
    assert_eq!(
        timed.m.rec.lag.len(),
        400,
        "every arrival's lateness is recorded"
    );
    // 400 arrivals 500 us apart, each answered in far less: the timer's
    // loop goes to sleep between them.
    assert!(timed.m.thread_sleeps[0] > 0, "the timer loop never slept");
    let slow_addr = serve(slow).to_string();
    for (target, extra, n) in [
        (&addr, &["--rate", "2000"][..], "400"),
        (&slow_addr, &[], "10"),
    ] {
        let mut args = vec!["echo", target, "-c", "2", "-n", n, "--busy-poll", "-q"];
        args.extend_from_slice(extra);
        let r = bench(&args);
        assert_eq!(r.m.rec.requests, n.parse::<u64>().unwrap(), "{extra:?}");
        assert_eq!(r.m.rec.errors.total(), 0, "{extra:?}");
        let (busy, spin) = (r.m.thread_busy[0], r.m.thread_spin[0]);
        assert!(spin > 0.0, "{extra:?}: a busy poller spins");
        assert!(busy + spin <= 1.05, "{extra:?}: busy {busy} + spin {spin}");
        assert_eq!(
            r.m.thread_sleeps[0], 0,
            "{extra:?}: a busy poller never sleeps"
        );
        let json = reactor::bench::report::to_json(&r);
        assert_eq!(json["config"]["busy_poll"], true);
        assert!(json["generator"]["thread_cpu_spin"][0].as_f64().unwrap() > 0.0);
        assert_eq!(json["generator"]["thread_sleeps"][0], 0);
    }
    handle.shutdown();
    t.join().unwrap().unwrap();
}

#[test]
fn own_greet_connect_cycles() {
    let mut cfg = Config::empty();
    cfg.greet = Some("127.0.0.1:0".parse().unwrap());
    let (handle, server) = own(cfg);
    let addr = server.local_addr(Service::Greet).unwrap().to_string();
    let t = thread::spawn(move || server.run());
    let r = bench(&["connect", &addr, "-c", "4", "-d", "0.5", "-q"]);
    handle.shutdown();
    t.join().unwrap().unwrap();
    assert!(r.m.rec.requests > 10);
    assert_eq!(r.m.rec.errors.total(), 0, "{:?}", r.m.rec.errors);
}

#[test]
fn count_mode_stops_at_n() {
    let mut cfg = Config::empty();
    cfg.echo = Some("127.0.0.1:0".parse().unwrap());
    let (handle, server) = own(cfg);
    let addr = server.local_addr(Service::Echo).unwrap().to_string();
    let t = thread::spawn(move || server.run());
    let r = bench(&[
        "echo",
        &addr,
        "-c",
        "3",
        "-n",
        "1000",
        "--threads",
        "2",
        "-q",
    ]);
    handle.shutdown();
    t.join().unwrap().unwrap();
    assert_eq!(r.m.rec.requests, 1000);
    assert_eq!(r.m.rec.errors.total(), 0);
}

#[test]
fn own_udp_no_loss() {
    let mut cfg = Config::empty();
    cfg.udp = Some("127.0.0.1:0".parse().unwrap());
    let (handle, server) = own(cfg);
    let addr = server.local_addr(Service::Udp).unwrap().to_string();
    let t = thread::spawn(move || server.run());
    let r = bench(&["udp", &addr, "-c", "2", "--rate", "2000", "-d", "0.5", "-q"]);
    handle.shutdown();
    t.join().unwrap().unwrap();
    assert!(r.m.rec.requests >= 900, "{}", r.m.rec.requests);
    assert_eq!(r.m.rec.extra.get("lost"), Some(&0));
    assert_eq!(r.m.rec.errors.total(), 0, "{:?}", r.m.rec.errors);
}

/// A fan-out run of 10 members at 500 lines/s for 0.5 s: every line to
/// the other 9, nothing lost, nothing out of order, no error.
fn assert_fan_out_complete(r: &Report) {
    let x = &r.m.rec.extra;
    assert!(x["lines_sent"] >= 200, "{x:?}");
    assert_eq!(x["deliveries_owed"], x["lines_sent"] * 9);
    assert_eq!(x["lost"], 0);
    assert_eq!(x.get("out_of_order"), None);
    assert_eq!(r.m.rec.errors.total(), 0, "{:?}", r.m.rec.errors);
}

#[test]
fn own_chat_fan_out_complete_and_in_order() {
    let mut cfg = Config::empty();
    cfg.chat = Some("127.0.0.1:0".parse().unwrap());
    let (handle, server) = own(cfg);
    let addr = server.local_addr(Service::Chat).unwrap().to_string();
    let t = thread::spawn(move || server.run());
    let r = bench(&[
        "chat",
        &addr,
        "-c",
        "10",
        "--senders",
        "3",
        "--rate",
        "500",
        "-d",
        "0.5",
        "-q",
    ]);
    handle.shutdown();
    t.join().unwrap().unwrap();
    assert_fan_out_complete(&r);
}

/// Promise: `bench ws` upgrades every member, and browser-like members
/// miss nothing and see each sender's lines in order.
#[test]
fn own_ws_fan_out_complete_and_in_order() {
    let mut cfg = Config::empty();
    cfg.http = Some("127.0.0.1:0".parse().unwrap());
    let (handle, server) = own(cfg);
    let url = format!("ws://{}/ws", server.local_addr(Service::Http).unwrap());
    let t = thread::spawn(move || server.run());
    let r = bench(&[
        "ws",
        &url,
        "-c",
        "10",
        "--senders",
        "3",
        "--rate",
        "500",
        "-d",
        "0.5",
        "-q",
    ]);
    let stats = handle.stats();
    handle.shutdown();
    t.join().unwrap().unwrap();
    assert_eq!(stats.ws_upgrades, 10, "{stats:?}");
    assert_fan_out_complete(&r);
}

/// Promise: `bench ws` against something that is not a WebSocket endpoint
/// reports status errors instead of hanging.
#[test]
fn ws_against_a_plain_page_is_a_status_error() {
    let mut cfg = Config::empty();
    cfg.http = Some("127.0.0.1:0".parse().unwrap());
    let (handle, server) = own(cfg);
    let url = format!("ws://{}/", server.local_addr(Service::Http).unwrap());
    let t = thread::spawn(move || server.run());
    let r = bench(&["ws", &url, "-c", "2", "-d", "0.3", "--timeout", "1s", "-q"]);
    handle.shutdown();
    t.join().unwrap().unwrap();
    assert_eq!(r.m.rec.errors.get(Kind::Status), 2, "{:?}", r.m.rec.errors);
}

/// Promise: `bench ws --echo` upgrades every connection, pipelines
/// messages of the given size and kind, and every answer is checked:
/// against our own `/ws/echo` nothing fails, and every message it counted
/// was one we sent.
#[test]
fn own_ws_echo_text_and_binary_every_answer_checked() {
    let mut cfg = Config::empty();
    cfg.http = Some("127.0.0.1:0".parse().unwrap());
    let (handle, server) = own(cfg);
    let url = format!("ws://{}/ws/echo", server.local_addr(Service::Http).unwrap());
    let t = thread::spawn(move || server.run());
    let mut answered = 0;
    for extra in [&["--size", "64"][..], &["--size", "70000", "--binary"]] {
        let mut args = vec![
            "ws", &url, "--echo", "-c", "4", "--depth", "4", "-d", "0.3", "-q",
        ];
        args.extend_from_slice(extra);
        let r = bench(&args);
        assert_eq!(r.m.rec.errors.total(), 0, "{extra:?}: {:?}", r.m.rec.errors);
        assert!(r.m.rec.requests > 10, "{extra:?}: {}", r.m.rec.requests);
        answered += r.m.rec.requests;
    }
    // The counters are published ten times a second: wait (bounded).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut stats = handle.stats();
    while stats.ws_messages < answered && std::time::Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
        stats = handle.stats();
    }
    handle.shutdown();
    t.join().unwrap().unwrap();
    assert_eq!(stats.ws_upgrades, 8, "{stats:?}");
    assert!(
        stats.ws_messages >= answered,
        "{stats:?} for {answered} answers"
    );
}

/// A WebSocket "echo" on `s` that answers the upgrade with 101, then
/// sends each 64-byte text message back with its last byte changed.
fn corrupting_ws_echo(mut s: TcpStream) {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read_exact(&mut b).is_err() {
            return;
        }
        head.push(b[0]);
    }
    let _ = s.write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n");
    // A client text frame of 64 bytes: 2 header bytes, a 4-byte mask.
    let mut frame = [0u8; 70];
    while s.read_exact(&mut frame).is_ok() {
        assert_eq!(frame[..2], [0x81, 0x80 | 64], "a masked 64-byte text frame");
        let mut out = vec![0x81, 64];
        out.extend((0..64).map(|i| frame[6 + i] ^ frame[2 + i % 4]));
        out[65] ^= 1;
        if s.write_all(&out).is_err() {
            return;
        }
    }
}

/// Promise: `bench ws --echo` checks every byte: a server that changes one
/// byte of each echo gets nothing but verify errors.
#[test]
fn ws_echo_corruption_is_verify_errors() {
    let url = format!("ws://{}/ws/echo", serve(corrupting_ws_echo));
    let r = bench(&["ws", &url, "--echo", "-c", "2", "-d", "0.3", "-q"]);
    assert!(r.m.rec.errors.get(Kind::Verify) > 0, "{:?}", r.m.rec.errors);
    assert_eq!(r.m.rec.requests, 0, "a corrupted echo counted as answered");
}

/// The sibling modules `src` (one file of `src/bench/`, its tests cut
/// off) names through `super::`: `use super::{a, b::c}`, `super::a::f()`.
/// A name that is not a module of `mods` (an item of `mod.rs`) counts as
/// `mod`.
fn sibling_uses(src: &str, mods: &[String]) -> std::collections::BTreeSet<String> {
    let src = src.split("#[cfg(test)]").next().unwrap_or(src);
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = std::collections::BTreeSet::new();
    let mut add = |name: String| {
        if name.is_empty() || name == "self" {
            return;
        }
        out.insert(if mods.contains(&name) {
            name
        } else {
            "mod".into()
        });
    };
    for (i, _) in src.match_indices("super::") {
        let rest = &src[i + "super::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group: the first name of each.
            let (mut depth, mut item_start) = (0, true);
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_ascii_alphanumeric() || c == '_') => {
                        add(ident(&group[j..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            add(ident(rest));
        }
    }
    out
}

/// Promise: inside `src/bench/` imports run one way (no module cycle, and
/// `mod.rs` only dispatches: no child imports from it), and `bench` never
/// imports `crate::cli`, which imports `bench`.
#[test]
fn bench_modules_import_one_way() {
    use std::collections::BTreeMap;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bench");
    let mut files = BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "rs") {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            files.insert(name, std::fs::read_to_string(&p).unwrap());
        }
    }
    let mods: Vec<String> = files.keys().filter(|n| *n != "mod").cloned().collect();
    assert!(mods.len() > 10, "found the modules: {mods:?}");
    let mut graph = BTreeMap::new();
    for (name, src) in &files {
        assert!(
            !src.contains("crate::cli"),
            "bench/{name}.rs imports crate::cli"
        );
        if name != "mod" {
            let uses = sibling_uses(src, &mods);
            assert!(!uses.contains("mod"), "bench/{name}.rs imports from mod.rs");
            graph.insert(name.clone(), uses);
        }
    }
    // Depth-first search; a module met again on the current path closes
    // a cycle.
    fn visit<'a>(
        n: &'a str,
        g: &'a BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut std::collections::BTreeSet<&'a str>,
    ) {
        if done.contains(n) {
            return;
        }
        if let Some(at) = path.iter().position(|p| *p == n) {
            panic!("an import cycle: {} -> {n}", path[at..].join(" -> "));
        }
        path.push(n);
        for m in g.get(n).into_iter().flatten() {
            visit(m, g, path, done);
        }
        path.pop();
        done.insert(n);
    }
    let mut done = std::collections::BTreeSet::new();
    for n in graph.keys() {
        visit(n, &graph, &mut Vec::new(), &mut done);
    }
    // The scanner itself: it sees a group, a path and a cycle.
    let m = vec!["a".to_string(), "b".to_string()];
    let seen = sibling_uses("use super::{a::X, b};\nfn f() { super::Kind::A; }", &m);
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["a", "b", "mod"]);
}

/// A UDP port nobody listens on (bound, then closed).
fn closed_udp_port() -> String {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().to_string()
}

/// Bug: against a closed port, each datagram's failure was counted more
/// than once (a refusal as a read error, then the same datagram as lost),
/// and one whose send failed was lost too. One datagram, one outcome:
/// refused (a `connect` error, from the ICMP port unreachable), not sent
/// (`write`), or lost (`timeout`), and together exactly what was sent.
#[test]
fn udp_each_datagram_has_one_outcome() {
    let addr = closed_udp_port();
    let r = bench(&[
        "udp",
        &addr,
        "-c",
        "2",
        "--rate",
        "1000",
        "-d",
        "0.5",
        "--timeout",
        "200ms",
        "-q",
    ]);
    let (e, x) = (&r.m.rec.errors, &r.m.rec.extra);
    let sent = x["sent"];
    assert!(sent >= 400, "{x:?}");
    assert_eq!(r.m.rec.requests, 0);
    assert_eq!(e.total(), sent + e.get(Kind::Write), "{e:?} for {x:?}");
    assert!(e.get(Kind::Connect) > 0, "the port refused them: {e:?}");
    assert_eq!(e.get(Kind::Connect), x["refused"], "{e:?} {x:?}");
    assert_eq!(e.get(Kind::Timeout), x["lost"], "{e:?} {x:?}");
    assert_eq!(e.get(Kind::Read), 0, "{e:?}");
}

/// A request as the test HTTP peer read it.
#[derive(Clone, Debug, Default)]
struct Seen {
    /// The method.
    method: String,
    /// The request target.
    path: String,
    /// Header names (lower case) and values, in order.
    headers: Vec<(String, String)>,
    /// The body (Content-Length bytes).
    body: Vec<u8>,
}

/// What the peer has read so far, shared with the test.
type Log = std::sync::Arc<std::sync::Mutex<Vec<Seen>>>;

/// An HTTP/1.1 peer on port 0, one thread per connection: each request is
/// read whole (its head, then Content-Length body bytes), logged, and
/// answered with the bytes `answer` makes of it; pipelined requests are
/// answered in order. A request it cannot parse closes the connection.
fn http_peer(answer: fn(&Seen) -> Vec<u8>) -> (SocketAddr, Log) {
    let log = Log::default();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let shared = log.clone();
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            let log = shared.clone();
            thread::spawn(move || http_conn(s, answer, &log));
        }
    });
    (addr, log)
}

/// One connection of [`http_peer`].
fn http_conn(mut s: TcpStream, answer: fn(&Seen) -> Vec<u8>, log: &Log) {
    let (mut buf, mut got) = (Vec::new(), [0u8; 65536]);
    loop {
        // Every whole request in the buffer, then read more.
        loop {
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut hs);
            let n = match req.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) => break,
                Err(_) => return,
            };
            let headers: Vec<(String, String)> = req
                .headers
                .iter()
                .map(|h| {
                    let v = String::from_utf8_lossy(h.value).into_owned();
                    (h.name.to_ascii_lowercase(), v)
                })
                .collect();
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .map_or(0, |(_, v)| v.trim().parse().unwrap());
            if buf.len() < n + len {
                break;
            }
            let seen = Seen {
                method: req.method.unwrap().to_string(),
                path: req.path.unwrap().to_string(),
                headers,
                body: buf[n..n + len].to_vec(),
            };
            buf.drain(..n + len);
            let out = answer(&seen);
            log.lock().unwrap().push(seen);
            if s.write_all(&out).is_err() {
                return;
            }
        }
        match s.read(&mut got) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&got[..n]),
        }
    }
}

/// Bug: a `304` carrying `Content-Length` (the length the resource would
/// have, RFC 9110 8.6) made the parser take the next response as its
/// body. No body follows a 304, a 204 or a 1xx.
#[test]
fn a_304_with_content_length_has_no_body() {
    fn not_modified(_: &Seen) -> Vec<u8> {
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nETag: \"x\"\r\n\r\n".to_vec()
    }
    let (addr, log) = http_peer(not_modified);
    let url = format!("http://{addr}/cached");
    for depth in ["1", "4"] {
        let r = bench(&[
            "http",
            &url,
            "-c",
            "2",
            "--depth",
            depth,
            "-n",
            "200",
            "--timeout",
            "100ms",
            "-q",
        ]);
        assert_eq!(r.m.rec.requests, 200, "depth {depth}: {:?}", r.m.rec.errors);
        assert_eq!(r.m.rec.errors.total(), 0, "depth {depth}");
    }
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 400);
    let host = format!("{addr}");
    for r in log.iter() {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/cached"));
        assert_eq!(r.headers, [("host".to_string(), host.clone())]);
        assert!(r.body.is_empty());
    }
}

/// A listener with a full backlog that never accepts: the first two
/// connects complete (its accept queue), later ones stay pending.
fn never_accepting() -> (socket2::Socket, String) {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    sock.bind(&any.into()).unwrap();
    sock.listen(1).unwrap();
    let addr = sock.local_addr().unwrap().as_socket().unwrap().to_string();
    (sock, addr)
}

/// Bug: in `--close` and `connect` modes, a cycle still connecting at the
/// end was counted twice, as a timeout and as a connect error. Five
/// cycles (`-n 5`), none answered: five errors, the pending connects as
/// `connect`, the connected but unanswered as `timeout`.
#[test]
fn a_cycle_still_connecting_at_the_end_fails_once() {
    let (sock, addr) = never_accepting();
    let url = format!("http://{addr}/");
    let runs = [vec!["connect", &addr], vec!["http", &url, "--close"]];
    for mut args in runs {
        args.extend_from_slice(&["-c", "5", "-n", "5", "--timeout", "300ms", "-q"]);
        let r = bench(&args);
        let e = &r.m.rec.errors;
        assert_eq!(r.m.rec.requests, 0, "{args:?}");
        assert_eq!(e.total(), 5, "{args:?}: {e:?}");
        assert!(e.get(Kind::Connect) >= 1, "{args:?}: {e:?}");
    }
    drop(sock);
}

/// Members of [`slow_welcome_chat`]: each one's socket, for the relay.
type Members = std::sync::Arc<std::sync::Mutex<Vec<(usize, TcpStream)>>>;

/// How long [`slow_welcome_chat`] keeps a new member waiting for its
/// welcome.
const WELCOME_DELAY: Duration = Duration::from_secs(1);

/// A chat server on port 0 that welcomes each member `WELCOME_DELAY`
/// after it connects, then relays every line a member sends to all the
/// others as `[lobby] guestN: LINE`. With `ws`, members upgrade first
/// (`GET ... Upgrade: websocket`, answered 101) and lines travel as
/// text frames (masked from the client, plain from the server).
fn slow_welcome_chat(ws: bool) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let members = Members::default();
    thread::spawn(move || {
        for (id, s) in l.incoming().flatten().enumerate() {
            let members = members.clone();
            thread::spawn(move || chat_member(id, s, ws, &members));
        }
    });
    addr
}

/// A server text frame carrying `text` (under 126 bytes).
fn text_frame(text: &[u8]) -> Vec<u8> {
    let mut f = vec![0x81, text.len() as u8];
    f.extend_from_slice(text);
    f
}

/// One member of [`slow_welcome_chat`]: upgrade (with `ws`), wait, then
/// welcome and relay.
fn chat_member(id: usize, mut s: TcpStream, ws: bool, members: &Members) {
    let mut buf = Vec::new();
    let mut got = [0u8; 4096];
    let mut read_more = |s: &mut TcpStream, buf: &mut Vec<u8>| match s.read(&mut got) {
        Ok(n @ 1..) => {
            buf.extend_from_slice(&got[..n]);
            true
        }
        _ => false,
    };
    if ws {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            if !read_more(&mut s, &mut buf) {
                return;
            }
        }
        buf.clear();
        let head =
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        s.write_all(head.as_bytes()).unwrap();
    }
    thread::sleep(WELCOME_DELAY);
    let welcome = format!("* guest{id} joined lobby");
    let out = if ws {
        text_frame(welcome.as_bytes())
    } else {
        format!("{welcome}\n").into_bytes()
    };
    // In the room before its welcome: a line relayed once the member
    // has seen its welcome reaches it.
    members.lock().unwrap().push((id, s.try_clone().unwrap()));
    s.write_all(&out).unwrap();
    loop {
        // Every whole line (or masked frame) in `buf`, relayed.
        loop {
            let line = if ws {
                // FIN+text, MASK+len (< 126), 4 mask bytes, payload.
                let Some(&[_, b1]) = buf.get(..2).map(|b| <&[u8; 2]>::try_from(b).unwrap()) else {
                    break;
                };
                let len = usize::from(b1 & 0x7F);
                if buf.len() < 6 + len {
                    break;
                }
                let mask = [buf[2], buf[3], buf[4], buf[5]];
                let p: Vec<u8> = (0..len).map(|i| buf[6 + i] ^ mask[i % 4]).collect();
                buf.drain(..6 + len);
                p
            } else {
                let Some(end) = buf.iter().position(|&b| b == b'\n') else {
                    break;
                };
                let p = buf[..end].to_vec();
                buf.drain(..=end);
                p
            };
            let text = format!("[lobby] guest{id}: {}", String::from_utf8_lossy(&line));
            let out = if ws {
                text_frame(text.as_bytes())
            } else {
                format!("{text}\n").into_bytes()
            };
            for (other, m) in members.lock().unwrap().iter_mut() {
                if *other != id {
                    let _ = m.write_all(&out);
                }
            }
        }
        if !read_more(&mut s, &mut buf) {
            return;
        }
    }
}

/// Bug: in `bench chat` and `ws` the send schedule started before the
/// members were ready, so the first lines waited for every member's
/// welcome and that wait was their latency (and a window shorter than the
/// wait measured nothing). The run's clock now starts when all members
/// are welcomed: against a server that keeps each member waiting 1 s for
/// its welcome, a 0.5 s run sends its lines, and none waited that second.
#[test]
fn chat_and_ws_schedules_start_when_every_member_is_ready() {
    for ws in [false, true] {
        let addr = slow_welcome_chat(ws);
        let target = if ws {
            format!("ws://{addr}/ws")
        } else {
            addr.to_string()
        };
        let workload = if ws { "ws" } else { "chat" };
        let r = bench(&[
            workload, &target, "-c", "3", "--rate", "100", "-d", "0.5", "-q",
        ]);
        let x = &r.m.rec.extra;
        assert!(x["lines_sent"] >= 10, "{workload}: {x:?}");
        assert_eq!(x["lost"], 0, "{workload}: {x:?}");
        assert_eq!(
            r.m.rec.errors.total(),
            0,
            "{workload}: {:?}",
            r.m.rec.errors
        );
        let max = r.m.rec.latency.max();
        assert!(
            max < WELCOME_DELAY.as_nanos() as u64,
            "{workload}: a line's latency {max} ns includes the wait for the welcomes"
        );
    }
}

/// Our own server with HTTPS and TLS echo (and plain HTTP) on ports of
/// its own, a certificate made for it (localhost, 127.0.0.1).
struct TlsServer {
    /// Stops it (also on drop).
    handle: reactor::Handle,
    /// Its thread.
    thread: Option<thread::JoinHandle<reactor::Result<reactor::Stats>>>,
    /// HTTPS.
    https: SocketAddr,
    /// TLS echo.
    echo: SocketAddr,
    /// Plain HTTP.
    http: SocketAddr,
    /// The certificate (and key) directory.
    dir: std::path::PathBuf,
}

impl TlsServer {
    /// Starts one; `tag` names its certificate directory.
    fn start(tag: &str) -> TlsServer {
        let dir = std::env::temp_dir().join(format!("reactor-bench-{tag}-{}", std::process::id()));
        let (cert, key) = reactor::tls::write_self_signed(&dir).unwrap();
        let mut cfg = Config::empty();
        cfg.https = Some("127.0.0.1:0".parse().unwrap());
        cfg.tls_echo = Some("127.0.0.1:0".parse().unwrap());
        cfg.http = Some("127.0.0.1:0".parse().unwrap());
        cfg.tls_cert = Some(cert);
        cfg.tls_key = Some(key);
        let (handle, server) = own(cfg);
        let https = server.local_addr(Service::Https).unwrap();
        let echo = server.local_addr(Service::TlsEcho).unwrap();
        let http = server.local_addr(Service::Http).unwrap();
        let thread = Some(thread::spawn(move || server.run()));
        TlsServer {
            handle,
            thread,
            https,
            echo,
            http,
            dir,
        }
    }

    /// The certificate, for --cacert.
    fn cert(&self) -> String {
        self.dir.join("cert.pem").to_str().unwrap().to_string()
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Promise: `bench http https://` speaks TLS to our own server, keep-alive
/// and one request per connection: each connection's handshake is timed
/// apart from its requests, sessions are resumed unless --no-resume, and
/// a certificate nobody vouches for fails as `tls` unless -k.
#[test]
fn https_against_our_own_server() {
    let s = TlsServer::start("https");
    let cert = s.cert();
    let url = format!("https://localhost:{}/", s.https.port());
    let r = bench(&[
        "http", &url, "--cacert", &cert, "-c", "4", "--depth", "2", "-n", "400", "-q",
    ]);
    let rec = &r.m.rec;
    assert_eq!(rec.requests, 400, "{:?}", rec.errors);
    assert_eq!(rec.errors.total(), 0);
    assert_eq!(rec.statuses[200], 400);
    assert_eq!((rec.connect.len(), rec.handshake.len()), (4, 4));
    assert!(
        rec.tls_params.as_deref().unwrap().starts_with("TLSv1_3"),
        "{:?}",
        rec.tls_params
    );
    let v = reactor::bench::report::to_json(&r);
    assert_eq!(v["handshake_us"]["count"], 4);
    assert_eq!(v["status_codes"]["200"], 400);

    // One request per connection: 40 handshakes, resumed after the first.
    let close = [
        "http", &url, "--cacert", &cert, "--close", "-c", "2", "-n", "40", "-q",
    ];
    let r = bench(&close);
    let x = &r.m.rec.extra;
    assert_eq!(r.m.rec.requests, 40, "{:?}", r.m.rec.errors);
    let (full, resumed) = (x.get("handshakes_full"), x.get("handshakes_resumed"));
    assert_eq!(full.unwrap_or(&0) + resumed.unwrap_or(&0), 40, "{x:?}");
    assert!(resumed.is_some_and(|&n| n > 0), "no session resumed: {x:?}");
    let mut no_resume = close.to_vec();
    no_resume.push("--no-resume");
    let r = bench(&no_resume);
    let x = &r.m.rec.extra;
    assert_eq!(
        (x.get("handshakes_full"), x.get("handshakes_resumed")),
        (Some(&40), None)
    );

    // The system's roots do not know our certificate; -k accepts it.
    let strict = bench(&[
        "http",
        &url,
        "-c",
        "1",
        "-d",
        "0.2",
        "--timeout",
        "1s",
        "-q",
    ]);
    assert_eq!(strict.m.rec.requests, 0);
    assert!(
        strict.m.rec.errors.get(Kind::Tls) > 0,
        "{:?}",
        strict.m.rec.errors
    );
    let any = bench(&["http", &url, "-k", "-c", "1", "-n", "20", "-q"]);
    assert_eq!(any.m.rec.requests, 20, "{:?}", any.m.rec.errors);
}

/// Promise: echo, tcp and connect speak TLS too (`--tls`), and `connect
/// --tls` counts handshakes: every cycle one, full or resumed.
#[test]
fn echo_tcp_and_connect_over_tls() {
    let s = TlsServer::start("tls-echo");
    let (cert, addr) = (s.cert(), s.echo.to_string());
    let tls = ["--tls", "--cacert", cert.as_str(), "-q"];
    let mut echo = vec![
        "echo", &addr, "-c", "3", "--depth", "4", "--size", "100", "-n", "300",
    ];
    echo.extend_from_slice(&tls);
    let r = bench(&echo);
    assert_eq!(
        (r.m.rec.requests, r.m.rec.errors.total()),
        (300, 0),
        "{:?}",
        r.m.rec.errors
    );
    assert_eq!(r.m.rec.handshake.len(), 3);
    let mut tcp = vec![
        "tcp", &addr, "--send", "ping\\n", "--expect", "ping\\n", "-c", "2", "-n", "100",
    ];
    tcp.extend_from_slice(&tls);
    let r = bench(&tcp);
    assert_eq!(
        (r.m.rec.requests, r.m.rec.errors.total()),
        (100, 0),
        "{:?}",
        r.m.rec.errors
    );
    let mut connect = vec!["connect", &addr, "-c", "3", "-n", "30"];
    connect.extend_from_slice(&tls);
    let r = bench(&connect);
    let x = &r.m.rec.extra;
    assert_eq!(
        (r.m.rec.requests, r.m.rec.errors.total()),
        (30, 0),
        "{:?}",
        r.m.rec.errors
    );
    assert_eq!(
        x.get("handshakes_full").unwrap_or(&0) + x.get("handshakes_resumed").unwrap_or(&0),
        30
    );
    assert!(x.get("handshakes_resumed").is_some_and(|&n| n > 0), "{x:?}");
    assert_eq!(r.m.rec.handshake.len(), 30);
}

/// Promise: `bench ws wss://` runs the fan-out over TLS.
#[test]
fn wss_fan_out_against_our_own_server() {
    let s = TlsServer::start("wss");
    let cert = s.cert();
    let url = format!("wss://localhost:{}/ws", s.https.port());
    let r = bench(&[
        "ws",
        &url,
        "--cacert",
        &cert,
        "-c",
        "10",
        "--senders",
        "3",
        "--rate",
        "500",
        "-d",
        "0.5",
        "-q",
    ]);
    assert_fan_out_complete(&r);
    assert_eq!(r.m.rec.handshake.len(), 10);
}

/// Promise: `bench ws --echo` runs over TLS (`wss://`) against our own
/// HTTPS port.
#[test]
fn wss_echo_against_our_own_server() {
    let s = TlsServer::start("wss-echo");
    let cert = s.cert();
    let url = format!("wss://localhost:{}/ws/echo", s.https.port());
    let r = bench(&[
        "ws", &url, "--echo", "--cacert", &cert, "-c", "4", "--depth", "2", "--size", "20k", "-d",
        "0.3", "-q",
    ]);
    assert_eq!(r.m.rec.errors.total(), 0, "{:?}", r.m.rec.errors);
    assert!(r.m.rec.requests > 10);
    assert_eq!(r.m.rec.handshake.len(), 4);
}

/// Promise: bodies reach the server whole: `--body`, `--body-file` (a
/// large one, pipelined, and over TLS), and a POST without one says
/// Content-Length: 0.
#[test]
fn request_bodies_reach_the_server_whole() {
    fn ok(_: &Seen) -> Vec<u8> {
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()
    }
    let (addr, log) = http_peer(ok);
    let url = format!("http://{addr}/up");
    let r = bench(&[
        "http", &url, "-m", "POST", "--body", "hello", "-c", "2", "--depth", "3", "-n", "60", "-q",
    ]);
    assert_eq!(
        (r.m.rec.requests, r.m.rec.errors.total()),
        (60, 0),
        "{:?}",
        r.m.rec.errors
    );
    let dir = std::env::temp_dir().join(format!("reactor-bench-body-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("big.bin");
    let big: Vec<u8> = (0..1_000_003u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(&file, &big).unwrap();
    let f = file.to_str().unwrap();
    let r = bench(&[
        "http",
        &url,
        "-m",
        "PUT",
        "--body-file",
        f,
        "-c",
        "2",
        "--depth",
        "2",
        "-n",
        "8",
        "-q",
    ]);
    assert_eq!(
        (r.m.rec.requests, r.m.rec.errors.total()),
        (8, 0),
        "{:?}",
        r.m.rec.errors
    );
    assert!(r.m.rec.bytes_out >= 8 * big.len() as u64);
    let r = bench(&["http", &url, "-m", "POST", "-c", "1", "-n", "5", "-q"]);
    assert_eq!(r.m.rec.requests, 5);
    let log = log.lock().unwrap();
    let (posts, rest) = log.split_at(60);
    let (puts, empty) = rest.split_at(8);
    for p in posts {
        assert_eq!((p.method.as_str(), &p.body[..]), ("POST", &b"hello"[..]));
        assert!(
            p.headers.contains(&("content-length".into(), "5".into())),
            "{:?}",
            p.headers
        );
    }
    for p in puts {
        assert_eq!(p.method, "PUT");
        assert!(
            p.body == big,
            "a {}-byte body arrived as {} bytes",
            big.len(),
            p.body.len()
        );
    }
    assert_eq!(empty.len(), 5);
    for p in empty {
        assert!(p.body.is_empty() && p.headers.contains(&("content-length".into(), "0".into())));
    }
    // Our own server reads a POST's body (up to its --max-body, 1 MiB)
    // and answers 405: over TLS, a large body goes out whole each time
    // and every answer comes back.
    let s = TlsServer::start("post");
    let tls_url = format!("https://127.0.0.1:{}/", s.https.port());
    let cert = s.cert();
    let r = bench(&[
        "http",
        &tls_url,
        "--cacert",
        &cert,
        "-m",
        "POST",
        "--body-file",
        f,
        "--expect-status",
        "405",
        "-c",
        "2",
        "-n",
        "10",
        "-q",
    ]);
    assert_eq!(
        (r.m.rec.requests, r.m.rec.errors.total()),
        (10, 0),
        "{:?}",
        r.m.rec.errors
    );
    assert_eq!(r.m.rec.statuses[405], 10);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Promise: a request list is taken in turn, each line's method, path,
/// headers and body as written; the answer to its HEAD has no body.
#[test]
fn a_request_list_is_taken_in_turn() {
    fn answer(r: &Seen) -> Vec<u8> {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n".to_vec();
        if r.method == "HEAD" {
            head
        } else {
            [head, b"hello".to_vec()].concat()
        }
    }
    let (addr, log) = http_peer(answer);
    let dir = std::env::temp_dir().join(format!("reactor-bench-list-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("item.json"), br#"{"n":1}"#).unwrap();
    let list = dir.join("requests.txt");
    std::fs::write(
        &list,
        "# three requests\nGET /a\nPOST /b Content-Type:application/json \"X-Note: two words\" @item.json\nHEAD /c\n",
    )
    .unwrap();
    let url = format!("http://{addr}/ignored");
    let r = bench(&[
        "http",
        &url,
        "--requests",
        list.to_str().unwrap(),
        "-H",
        "X-All: 1",
        "-c",
        "1",
        "--depth",
        "3",
        "-n",
        "30",
        "-q",
    ]);
    assert_eq!(
        (r.m.rec.requests, r.m.rec.errors.total()),
        (30, 0),
        "{:?}",
        r.m.rec.errors
    );
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 30);
    for (i, q) in log.iter().enumerate() {
        let want = ["GET /a", "POST /b", "HEAD /c"][i % 3];
        assert_eq!(format!("{} {}", q.method, q.path), want, "request {i}");
        assert!(q.headers.contains(&("x-all".into(), "1".into())));
        if q.method == "POST" {
            assert_eq!(q.body, br#"{"n":1}"#);
            assert!(q.headers.contains(&("x-note".into(), "two words".into())));
            assert!(
                q.headers
                    .contains(&("content-type".into(), "application/json".into()))
            );
        } else {
            assert!(q.body.is_empty());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Promise: statuses other than 2xx and 3xx are errors, counted by code;
/// `--expect-status` says which are fine instead. Our own server answers
/// POST with 405.
#[test]
fn statuses_count_by_code_and_expect_status_decides() {
    let s = TlsServer::start("status");
    let url = format!("http://localhost:{}/", s.http.port());
    let r = bench(&[
        "http", &url, "-m", "POST", "--body", "x", "-c", "2", "-n", "50", "-q",
    ]);
    let rec = &r.m.rec;
    assert_eq!(rec.errors.get(Kind::Status), 50, "{:?}", rec.errors);
    assert_eq!((rec.statuses[405], rec.status_errors[405]), (50, 50));
    let v = reactor::bench::report::to_json(&r);
    assert_eq!(v["errors_by_status"]["405"], 50);
    let ok = bench(&[
        "http",
        &url,
        "-m",
        "POST",
        "--body",
        "x",
        "--expect-status",
        "405",
        "-c",
        "2",
        "-n",
        "50",
        "-q",
    ]);
    assert_eq!((ok.m.rec.requests, ok.m.rec.errors.total()), (50, 0));
    assert_eq!(ok.m.rec.status_errors[405], 0);
    // And a GET expecting 201 gets 200: an error by status.
    let no = bench(&[
        "http",
        &url,
        "--expect-status",
        "201,204",
        "-c",
        "1",
        "-n",
        "10",
        "-q",
    ]);
    assert_eq!(no.m.rec.status_errors[200], 10);
}

/// How long [`slow_handshake_echo`] waits before each TLS handshake.
const HANDSHAKE_DELAY: Duration = Duration::from_secs(1);

/// A TLS echo server on port 0 (rustls, a thread per connection) that
/// waits `HANDSHAKE_DELAY` after accepting before it handshakes.
fn slow_handshake_echo(dir: &std::path::Path) -> SocketAddr {
    let (cert, key) = reactor::tls::write_self_signed(dir).unwrap();
    let config = reactor::tls::server_config(&cert, &key, &[]).unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            let config = config.clone();
            thread::spawn(move || {
                thread::sleep(HANDSHAKE_DELAY);
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, s);
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = tls.read(&mut buf) {
                    if tls.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Promise: keep-alive connections are up, TLS handshakes done, before a
/// run's clock starts, so an open loop's arrivals do not wait for them:
/// against a server that takes a second to handshake, the handshake took
/// that second and no request's latency did.
#[test]
fn keep_alive_handshakes_finish_before_the_schedule_starts() {
    let dir = std::env::temp_dir().join(format!("reactor-bench-slowtls-{}", std::process::id()));
    let addr = slow_handshake_echo(&dir).to_string();
    let r = bench(&[
        "echo", &addr, "--tls", "-k", "-c", "1", "--rate", "100", "-d", "0.5", "-q",
    ]);
    let rec = &r.m.rec;
    assert!(
        rec.requests >= 10,
        "{} requests, {:?}",
        rec.requests,
        rec.errors
    );
    assert_eq!(rec.errors.total(), 0, "{:?}", rec.errors);
    let delay = HANDSHAKE_DELAY.as_nanos() as u64;
    // One connection: from its connect call to its handshake's end is
    // at least the server's wait (which starts at its accept, after the
    // connect began); the split between the two depends on when the loop
    // noticed the connect.
    assert_eq!((rec.connect.len(), rec.handshake.len()), (1, 1));
    let setup = rec.connect.max() + rec.handshake.max();
    assert!(setup >= delay, "connect and handshake took {setup} ns");
    assert!(
        rec.latency.max() < delay,
        "a request's latency {} ns includes the handshakes",
        rec.latency.max()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Promise: a host name is resolved once at start (`localhost` here).
#[test]
fn host_names_resolve() {
    let mut cfg = Config::empty();
    cfg.echo = Some("127.0.0.1:0".parse().unwrap());
    cfg.http = Some("127.0.0.1:0".parse().unwrap());
    let (handle, server) = own(cfg);
    let echo = server.local_addr(Service::Echo).unwrap().port();
    let http = server.local_addr(Service::Http).unwrap().port();
    let t = thread::spawn(move || server.run());
    let e = bench(&[
        "echo",
        &format!("localhost:{echo}"),
        "-c",
        "2",
        "-n",
        "100",
        "-q",
    ]);
    let h = bench(&[
        "http",
        &format!("http://localhost:{http}/"),
        "-c",
        "2",
        "-n",
        "100",
        "-q",
    ]);
    handle.shutdown();
    t.join().unwrap().unwrap();
    assert_eq!((e.m.rec.requests, e.m.rec.errors.total()), (100, 0));
    assert_eq!((h.m.rec.requests, h.m.rec.errors.total()), (100, 0));
}

/// Promise: the JSON's histograms and the `--hdr-log` interval log are
/// lossless and in HdrHistogram's own encoding (read back here with the
/// hdrhistogram crate's decoder and interval log parser): they hold
/// every request; and `merge` adds runs up, histograms merged, warning
/// when their windows do not line up.
#[test]
fn histograms_are_lossless_and_runs_merge() {
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    let mut cfg = Config::empty();
    cfg.echo = Some("127.0.0.1:0".parse().unwrap());
    let (handle, server) = own(cfg);
    let addr = server.local_addr(Service::Echo).unwrap().to_string();
    let t = thread::spawn(move || server.run());
    let dir = std::env::temp_dir().join(format!("reactor-bench-hdr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (json, log) = (dir.join("a.json"), dir.join("a.hlog"));
    let args = [
        "echo",
        &addr,
        "-c",
        "2",
        "-t",
        "2",
        "-d",
        "1.3",
        "--json",
        json.to_str().unwrap(),
        "--hdr-log",
        log.to_str().unwrap(),
        "-q",
    ];
    let r = reactor::bench::run(reactor::bench::cli::BenchArgs {
        command: parse(&args),
    });
    assert_eq!(r.unwrap(), Outcome::Done);
    handle.shutdown();
    t.join().unwrap().unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let requests = v["requests"].as_u64().unwrap();
    assert!(requests > 100);
    let decode = |text: &str| -> hdrhistogram::Histogram<u64> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap();
        Deserializer::new().deserialize(&mut &bytes[..]).unwrap()
    };
    let lat = decode(v["histograms"]["latency"].as_str().unwrap());
    assert_eq!(lat.len(), requests);
    assert_eq!(
        lat.value_at_quantile(0.99) as f64 / 1e3,
        v["latency_us"]["p99"].as_f64().unwrap()
    );
    assert_eq!(
        lat.max() as f64 / 1e3,
        v["latency_us"]["max"].as_f64().unwrap()
    );
    let series = v["series"].as_array().unwrap();
    let per_second: u64 = series
        .iter()
        .map(|s| decode(s["latency_hdr"].as_str().unwrap()).len())
        .sum();
    assert_eq!(per_second, requests, "the series holds every request");
    // The interval log: a StartTime, one interval per second, every request.
    let text = std::fs::read(&log).unwrap();
    let (mut start, mut intervals, mut logged) = (None, 0, 0);
    for e in IntervalLogIterator::new(&text) {
        match e.unwrap() {
            LogEntry::StartTime(s) => start = Some(s),
            LogEntry::Interval(i) => {
                intervals += 1;
                logged += decode(i.encoded_histogram()).len();
                assert!(i.duration().as_secs_f64() <= 1.0);
            }
            LogEntry::BaseTime(_) => {}
        }
    }
    let zero = v["time"]["zero_unix_s"].as_f64().unwrap();
    assert!((start.unwrap().as_secs_f64() - zero).abs() < 0.001);
    assert_eq!((intervals, logged), (series.len(), requests));

    // Merge the run with a copy of itself: twice everything. A copy moved
    // 100 s later was not measured at the same time: a warning says so.
    let later = dir.join("later.json");
    let mut moved = v.clone();
    for k in ["zero_unix_s", "start_unix_s", "end_unix_s"] {
        moved["time"][k] = serde_json::json!(v["time"][k].as_f64().unwrap() + 100.0);
    }
    std::fs::write(&later, moved.to_string()).unwrap();
    let merged = dir.join("merged.json");
    let merge = |b: &std::path::Path| {
        let (a, b, out) = (
            json.to_str().unwrap(),
            b.to_str().unwrap(),
            merged.to_str().unwrap(),
        );
        let BenchCommand::Merge(m) = parse(&["merge", a, b, "--json", out]) else {
            unreachable!()
        };
        reactor::bench::merge::merge(&m).unwrap();
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&merged).unwrap()).unwrap();
        m
    };
    let m = merge(&json);
    assert_eq!(m["requests"], 2 * requests);
    assert_eq!(m["latency_us"]["count"], 2 * requests);
    assert_eq!(
        decode(m["histograms"]["latency"].as_str().unwrap()).len(),
        2 * requests
    );
    assert_eq!(
        m["latency_us"]["p99"], v["latency_us"]["p99"],
        "same distribution"
    );
    let rps = v["requests_per_sec"].as_f64().unwrap();
    assert!((m["requests_per_sec"].as_f64().unwrap() - 2.0 * rps).abs() < 1e-6);
    assert_eq!(m["merged_from"].as_array().unwrap().len(), 2);
    assert!(
        m["notes"].as_array().unwrap().is_empty(),
        "{:?}",
        m["notes"]
    );
    let m = merge(&later);
    let notes = m["notes"].as_array().unwrap();
    assert!(
        notes
            .iter()
            .any(|n| n.as_str().unwrap().contains("100.00 s apart")),
        "{notes:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
