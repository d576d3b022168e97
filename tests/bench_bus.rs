//! `reactor bench chat` and `ws` with members spread over two real server
//! processes that share rooms over one real Redis (`--bus`): every
//! delivery is counted, owed and timed as local (its sender on the
//! receiver's server) or remote (on the other), and nothing is lost.

mod util;

use std::io::Read;
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use clap::Parser;
use reactor::bench::chat;
use reactor::bench::cli::BenchCommand;
use reactor::bench::report::{self, Report};
use reactor::cli::{Cli, Command};
use util::redis::Redis;
use util::server::Server;
use util::{TIMEOUT, wait_until};

/// Runs `reactor bench ARGS...` (chat or ws) in this process.
fn bench(args: &[&str]) -> Report {
    let mut v = vec!["reactor", "bench"];
    v.extend_from_slice(args);
    let r = match Cli::try_parse_from(v).expect("valid flags").command {
        Command::Bench(b) => match b.command {
            BenchCommand::Chat(a) => chat::bench(&a),
            BenchCommand::Ws(a) => chat::bench_ws(&a),
            _ => unreachable!("chat or ws"),
        },
        _ => unreachable!("bench"),
    };
    r.expect("the run itself works")
}

/// Two servers on one Redis, each with a member of its own in the lobby
/// (read and discarded), started once both have subscribed the lobby's
/// channel: a line said on one now reaches the other.
struct Pair {
    redis: Redis,
    servers: [Server; 2],
    _anchors: Vec<TcpStream>,
}

impl Pair {
    fn start() -> Pair {
        let redis = Redis::start();
        let url = redis.url();
        let args = ["--chat", "127.0.0.1:0", "--bus", &url];
        let servers = [Server::start(&args), Server::start(&args)];
        let mut anchors = Vec::new();
        for s in &servers {
            let up = wait_until(TIMEOUT, || s.stats().get("bus_state") == Some(&3));
            assert!(up, "bus never up: {:?}\n{}", s.stats(), s.log());
            let member = util::connect(s.addr("chat"));
            let mut reader = member.try_clone().unwrap();
            thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                while let Ok(1..) = reader.read(&mut buf) {}
            });
            anchors.push(member);
        }
        let mut last = String::new();
        let both = wait_until(TIMEOUT, || {
            last = redis.cmd(&["PUBSUB", "NUMSUB", "reactor:room:lobby"]);
            last == "reactor:room:lobby,2"
        });
        assert!(both, "the lobby never had both servers subscribed: {last}");
        Pair {
            redis,
            servers,
            _anchors: anchors,
        }
    }

    /// Neither server lost or dropped a line on the bus; both stop cleanly.
    fn finish(self) {
        for (i, mut s) in self.servers.into_iter().enumerate() {
            let st = s.stats();
            assert_eq!(st["bus_lost"], 0, "server {i}: {st:?}");
            assert_eq!(st["bus_dropped"], 0, "server {i}: {st:?}");
            assert!(st["bus_published"] > 0, "server {i} had senders: {st:?}");
            assert!(st["bus_received"] > 0, "server {i}: {st:?}");
            s.stop_only(&format!("server {i}"), Duration::from_secs(5));
        }
        drop(self.redis);
    }
}

/// 10 members over 2 servers (5 each), senders 0 and 2 on the first and
/// 1 on the second: each line owes 4 local and 5 remote deliveries, and
/// every one arrives, in order, counted and timed on its side.
fn assert_split_complete(r: &Report) {
    let x = &r.m.rec.extra;
    let lines = x["lines_sent"];
    assert!(lines >= 100, "{x:?}");
    assert_eq!(x["deliveries_owed"], lines * 9, "{x:?}");
    assert_eq!(x["deliveries_owed_local"], lines * 4, "{x:?}");
    assert_eq!(x["deliveries_owed_remote"], lines * 5, "{x:?}");
    assert_eq!(x["deliveries_local"], lines * 4, "{x:?}");
    assert_eq!(x["deliveries_remote"], lines * 5, "{x:?}");
    for k in ["lost", "lost_local", "lost_remote"] {
        assert_eq!(x[k], 0, "{k}: {x:?}");
    }
    assert_eq!(x.get("gaps"), None, "{x:?}");
    assert_eq!(x.get("out_of_order"), None, "{x:?}");
    assert_eq!(r.m.rec.errors.total(), 0, "{:?}", r.m.rec.errors);
    // The split's histograms hold each delivery once, on its side.
    let split: Vec<(&str, u64)> = r.m.rec.split.iter().map(|(n, h)| (*n, h.len())).collect();
    assert_eq!(
        split,
        [("local", lines * 4), ("remote", lines * 5)],
        "{split:?}"
    );
    assert_eq!(r.m.rec.latency.len(), lines * 9);
    // And the JSON says the same.
    let v = report::to_json(r);
    assert_eq!(v["latency_split_us"]["remote"]["count"], lines * 5);
    assert_eq!(v["latency_split_us"]["local"]["count"], lines * 4);
    assert!(
        v["histograms"]["split"]["remote"]
            .as_str()
            .unwrap()
            .starts_with("HISTF")
    );
    assert_eq!(
        v["config"]["workload"]["members_per_server"],
        serde_json::json!([5, 5])
    );
    assert!(r.target.contains(','), "both servers named: {}", r.target);
}

/// Promise: `bench chat ADDR --server ADDR` spreads TCP members over two
/// servers on one bus and reports the deliveries that crossed apart.
#[test]
fn chat_members_spread_over_two_servers_on_one_bus() {
    let pair = Pair::start();
    let a = pair.servers[0].addr("chat").to_string();
    let b = pair.servers[1].addr("chat").to_string();
    let r = bench(&[
        "chat",
        &a,
        "--server",
        &b,
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
    assert_split_complete(&r);
    let summary = report::summary(&r);
    assert!(summary.contains("  remote "), "{summary}");
    assert!(summary.contains("deliveries_remote: "), "{summary}");
    pair.finish();
}

/// Promise: `bench ws --server URL --server URL` does the same with
/// WebSocket members (the positional URL left out).
#[test]
fn ws_members_spread_over_two_servers_on_one_bus() {
    let pair = Pair::start();
    let url = |s: &Server| format!("ws://{}/ws", s.addr("http"));
    let (a, b) = (url(&pair.servers[0]), url(&pair.servers[1]));
    let r = bench(&[
        "ws",
        "--server",
        &a,
        "--server",
        &b,
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
    assert_split_complete(&r);
    pair.finish();
}

/// Promise: one server keeps the report as it was (no split), and a
/// server given twice is refused rather than counted as two.
#[test]
fn one_server_has_no_split_and_twice_is_refused() {
    let pair = Pair::start();
    let a = pair.servers[0].addr("chat").to_string();
    let r = bench(&["chat", &a, "-c", "4", "--rate", "200", "-d", "0.2", "-q"]);
    assert!(r.m.rec.split.is_empty());
    assert_eq!(r.m.rec.extra.get("deliveries_remote"), None);
    assert_eq!(
        report::to_json(&r)["latency_split_us"],
        serde_json::Value::Null
    );
    let v = vec!["reactor", "bench", "chat", &a, "--server", &a, "-c", "4"];
    let Command::Bench(b) = Cli::try_parse_from(v).unwrap().command else {
        unreachable!()
    };
    let BenchCommand::Chat(args) = b.command else {
        unreachable!()
    };
    let err = chat::bench(&args).unwrap_err().to_string();
    assert!(err.contains("given twice"), "{err}");
    let v = ["reactor", "bench", "chat", "-c", "4"];
    assert!(Cli::try_parse_from(v).is_err(), "no server at all");
    drop(pair);
}
