//! Chat rooms shared by several server processes over a real Redis:
//! delivery and order across processes, `/who`, `/rooms` and nicks across
//! them, and the bus's faults (Redis killed, frozen, late, absent, a
//! server killed, a subscription lost behind a proxy). Each test starts
//! its own `redis-server` on a free port and its own servers.

mod util;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use util::redis::{Redis, Switch, free_port};
use util::server::{Server, bad_log_lines, serial};
use util::ws::{Ws, text};
use util::*;

/// `bus_state` in `/stats` when every loop's bus is up.
const UP: u64 = 3;

/// A server with a chat port and a WebSocket endpoint on the bus `url`,
/// with a 2 s lease (so a killed server is forgotten soon).
fn node(url: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--chat", "127.0.0.1:0", "--bus", url, "--bus-lease", "2s"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// Waits until every loop of `srv` has its bus up.
fn wait_up(srv: &Server, within: Duration) {
    let mut last = HashMap::new();
    let up = wait_until(within, || {
        last = srv.stats();
        last.get("bus_state") == Some(&UP)
    });
    assert!(up, "bus never up within {within:?}: {last:?}");
}

/// How many subscribers Redis counts on `room`'s channel.
fn subscribers(redis: &Redis, room: &str) -> usize {
    let r = redis.cmd(&["PUBSUB", "NUMSUB", &format!("reactor:room:{room}")]);
    r.rsplit(',')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Waits until `n` loops are subscribed to `room`.
fn wait_subscribed(redis: &Redis, room: &str, n: usize) {
    let ok = wait_until(TIMEOUT, || subscribers(redis, room) == n);
    assert!(
        ok,
        "{room}: {} subscribers, want {n}",
        subscribers(redis, room)
    );
}

/// A chat member over TCP (`--chat`) or WebSocket (`/ws`).
enum Link {
    Tcp(TcpStream, Lines<TcpStream>),
    Ws(Ws),
}

/// A member whose welcome has been read.
struct Member {
    nick: String,
    link: Link,
}

/// The nick in a welcome line.
fn welcomed(line: &str) -> String {
    line.strip_prefix("* welcome to reactor chat, you are ")
        .and_then(|r| r.split(" in lobby").next())
        .unwrap_or_else(|| panic!("welcome {line:?}"))
        .to_string()
}

impl Member {
    /// Joins over TCP at `srv`'s chat port.
    fn tcp(srv: &Server) -> Member {
        let s = connect(srv.addr("chat"));
        let mut r = Lines::new(s.try_clone().unwrap(), "tcp member");
        let nick = welcomed(&r.line());
        r.what = format!("tcp member {nick}");
        Member {
            nick,
            link: Link::Tcp(s, r),
        }
    }

    /// Joins over WebSocket at `srv`'s `/ws`.
    fn ws(srv: &Server) -> Member {
        let (ws, nick) = Ws::join(srv.addr("http"));
        Member {
            nick,
            link: Link::Ws(ws),
        }
    }

    /// Sends one line (`\n` added).
    fn say(&mut self, line: &str) {
        match &mut self.link {
            Link::Tcp(w, _) => write_all(w, format!("{line}\n").as_bytes(), "tcp member"),
            Link::Ws(ws) => ws.send(&text(line)),
        }
    }

    /// The next line, without its `\n`.
    fn hear(&mut self) -> String {
        match &mut self.link {
            Link::Tcp(_, r) => r.line().trim_end_matches('\n').to_string(),
            Link::Ws(ws) => ws.until(|_| true),
        }
    }

    /// Skips lines until one satisfies `pred`; returns it and the skipped.
    fn hear_until(&mut self, pred: impl Fn(&str) -> bool) -> (String, Vec<String>) {
        let mut skipped = Vec::new();
        loop {
            let l = self.hear();
            if pred(&l) {
                return (l, skipped);
            }
            skipped.push(l);
        }
    }

    /// Waits for a message (not a notice) and returns it.
    fn message(&mut self) -> String {
        self.hear_until(|l| !l.starts_with("* ")).0
    }
}

/// `from` says `line`; each of `to` hears it as the next message (the
/// notices before it are skipped, and must be notices).
fn say_heard(from: &mut Member, to: &mut [&mut Member], room: &str, line: &str) {
    from.say(line);
    let want = format!("[{room}] {}: {line}", from.nick);
    for m in to.iter_mut() {
        let got = m.message();
        assert_eq!(got, want, "{}: the line from {}", m.nick, from.nick);
    }
}

/// The nginx-tests ending for a server on the bus: once its members are
/// gone only the asker and the bus's two connections are open; SIGTERM
/// gives exit 0 and a clean log.
fn finish(mut srv: Server, what: &str) {
    let mut last = HashMap::new();
    let quiet = wait_until(TIMEOUT, || {
        last = srv.stats();
        last["open"] == 1 + 2
    });
    assert!(quiet, "{what}: members still open: {last:?}");
    srv.stop_only(what, Duration::from_secs(5));
    // Its own goodbye is not an outage: nothing said of one, no retry.
    let log = srv.log();
    let after = &log[log.find("shutting down").expect("shutdown logged")..];
    assert!(
        !after.contains("bus: lost"),
        "{what}: shutdown told as an outage:\n{log}"
    );
}

/// Log lines that contain `needle`.
fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// Promise: three servers on one bus serve one room; a line from a TCP
/// or a WebSocket member on any of them reaches every other member on
/// every server, once; rooms made on two servers span both, and their
/// lines stay in them.
#[test]
fn three_servers_share_rooms_over_tcp_and_websocket() {
    let _g = serial();
    let redis = Redis::start();
    let servers: Vec<Server> = (0..3).map(|_| node(&redis.url(), &[])).collect();
    for s in &servers {
        wait_up(s, TIMEOUT);
    }
    let mut members = vec![
        Member::tcp(&servers[0]),
        Member::ws(&servers[1]),
        Member::tcp(&servers[2]),
        Member::ws(&servers[2]),
    ];
    wait_subscribed(&redis, "lobby", 3);
    for i in 0..members.len() {
        let (mut from, mut rest) = (members.remove(i), Vec::new());
        for m in &mut members {
            rest.push(m);
        }
        say_heard(&mut from, &mut rest, "lobby", &format!("hello from {i}"));
        members.insert(i, from);
    }

    // A room made on servers 1 and 2 spans them; server 0's member, still
    // in the lobby, hears none of it.
    for m in &mut members[1..3] {
        m.say("/join games");
        m.hear_until(|l| l.starts_with("* you joined games"));
    }
    wait_subscribed(&redis, "games", 2);
    let (left, right) = members.split_at_mut(2);
    say_heard(&mut left[1], &mut [&mut right[0]], "games", "in games");
    say_heard(&mut right[0], &mut [&mut left[1]], "games", "back in games");
    let (first, others) = members.split_at_mut(1);
    say_heard(&mut others[2], &mut [&mut first[0]], "lobby", "lobby only");

    drop(members);
    for (i, s) in servers.into_iter().enumerate() {
        let stats = s.stats();
        assert_eq!(stats["bus_lost"], 0, "server {i}: {stats:?}");
        assert_eq!(stats["bus_dropped"], 0, "server {i}: {stats:?}");
        finish(s, &format!("server {i}"));
    }
}

/// Promise: 10,000 lines from one sender reach members on two other
/// servers complete and in the sender's order, and no gap is counted.
#[test]
fn ten_thousand_lines_arrive_in_order_on_other_servers() {
    let _g = serial();
    let redis = Redis::start();
    let servers: Vec<Server> = (0..3).map(|_| node(&redis.url(), &[])).collect();
    for s in &servers {
        wait_up(s, TIMEOUT);
    }
    let mut sender = Member::tcp(&servers[0]);
    let receivers = vec![Member::tcp(&servers[1]), Member::ws(&servers[2])];
    wait_subscribed(&redis, "lobby", 3);
    const LINES: usize = 10_000;
    let nick = sender.nick.clone();
    let readers: Vec<_> = receivers
        .into_iter()
        .map(|mut m| {
            let nick = nick.clone();
            thread::spawn(move || {
                for i in 0..LINES {
                    let got = m.message();
                    assert_eq!(got, format!("[lobby] {nick}: line {i:05}"), "{}", m.nick);
                }
                m
            })
        })
        .collect();
    let mut batch = String::new();
    for i in 0..LINES {
        batch.push_str(&format!("line {i:05}\n"));
        if i % 500 == 499 {
            let Link::Tcp(w, _) = &mut sender.link else {
                unreachable!()
            };
            write_all(w, batch.as_bytes(), "sender");
            batch.clear();
        }
    }
    let receivers: Vec<Member> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    let sent = servers[0].stats();
    assert!(sent["bus_published"] >= LINES as u64, "{sent:?}");
    assert_eq!(sent["bus_dropped"], 0, "{sent:?}");
    for s in &servers[1..] {
        let stats = s.stats();
        assert!(stats["bus_received"] >= LINES as u64, "{stats:?}");
        assert_eq!(stats["bus_lost"], 0, "{stats:?}");
    }
    drop((sender, receivers));
    for (i, s) in servers.into_iter().enumerate() {
        finish(s, &format!("server {i}"));
    }
}

/// Promise: `/who` and `/rooms` count every server's members; a nick held
/// on another server is refused as a local one is; of two members on two
/// servers taking one nick at once, exactly one gets it.
#[test]
fn who_rooms_and_nicks_span_servers() {
    let _g = serial();
    let redis = Redis::start();
    let servers: Vec<Server> = (0..2).map(|_| node(&redis.url(), &[])).collect();
    for s in &servers {
        wait_up(s, TIMEOUT);
    }
    let mut a = Member::tcp(&servers[0]);
    let mut b = Member::ws(&servers[1]);
    a.say("/nick ann");
    assert_eq!(
        a.hear_until(|l| !l.contains("joined")).0,
        "* you are now ann"
    );
    a.nick = "ann".into();
    b.say("/nick ann");
    let (refused, _) = b.hear_until(|l| l.starts_with("ERROR") || l.starts_with("* you"));
    assert_eq!(refused, "ERROR nick ann is taken");
    b.say("/nick bob");
    assert_eq!(
        b.hear_until(|l| l.starts_with("* you")).0,
        "* you are now bob"
    );
    b.nick = "bob".into();

    for m in [&mut a, &mut b] {
        m.say("/who");
        let (who, _) = m.hear_until(|l| l.starts_with("* lobby: "));
        let mut names: Vec<&str> = who["* lobby: ".len()..].split(", ").collect();
        names.sort();
        assert_eq!(names, ["ann", "bob"], "{}: {who}", m.nick);
        m.say("/rooms");
        let (rooms, _) = m.hear_until(|l| l.starts_with("* rooms: "));
        assert_eq!(rooms, "* rooms: lobby (2)", "{}", m.nick);
    }
    b.say("/join games");
    b.hear_until(|l| l.starts_with("* you joined games"));
    let ok = wait_until(TIMEOUT, || {
        a.say("/rooms");
        a.hear_until(|l| l.starts_with("* rooms: ")).0 == "* rooms: games (1), lobby (1)"
    });
    assert!(ok, "/rooms on server 0 never showed games");

    // Races: both ask for the same new nick at once, from two servers.
    for trial in 0..10 {
        let name = format!("racer{trial}");
        a.say(&format!("/nick {name}"));
        b.say(&format!("/nick {name}"));
        let answer = |m: &mut Member| {
            m.hear_until(|l| l.starts_with("* you are now") || l.starts_with("ERROR nick"))
                .0
        };
        let (x, y) = (answer(&mut a), answer(&mut b));
        let won = format!("* you are now {name}");
        let lost = format!("ERROR nick {name} is taken");
        assert!(
            (x == won && y == lost) || (x == lost && y == won),
            "trial {trial}: {x:?} and {y:?}"
        );
        // The winner gives it back for the next trial.
        let winner = if x == won { &mut a } else { &mut b };
        winner.say(&format!("/nick w{trial}"));
        winner.hear_until(|l| l.starts_with("* you are now"));
    }
    drop((a, b));
    for (i, s) in servers.into_iter().enumerate() {
        finish(s, &format!("server {i}"));
    }
}

/// Two servers whose lobby is known to span them (a line each way went
/// through), each with one member, and a second member on server 0.
struct Split {
    servers: Vec<Server>,
    a: Member,
    a2: Member,
    b: Member,
}

/// Starts two servers on `url` with `extra` flags and spans their lobby.
fn split(redis: &Redis, url: &str, extra: &[&str]) -> Split {
    let servers: Vec<Server> = (0..2).map(|_| node(url, extra)).collect();
    for s in &servers {
        wait_up(s, TIMEOUT);
    }
    let mut a = Member::tcp(&servers[0]);
    let mut a2 = Member::tcp(&servers[0]);
    let mut b = Member::tcp(&servers[1]);
    wait_subscribed(redis, "lobby", 2);
    say_heard(&mut a, &mut [&mut a2, &mut b], "lobby", "spanning");
    say_heard(&mut b, &mut [&mut a, &mut a2], "lobby", "spanned");
    Split { servers, a, a2, b }
}

const NETSPLIT: &str = "* netsplit: lobby is cut off from the other servers; lines said here are held for them, as many as fit";
const NETJOIN: &str = "* netjoin: lobby reaches the other servers again";

/// Promise: Redis killed, every member of a room that spans servers is
/// told once, in one line; chat goes on on each server; Redis back, each
/// member is told once that the room is whole, lines cross again within
/// 5 s, and each server logged one line for each change.
#[test]
fn redis_killed_and_restarted() {
    let _g = serial();
    let mut redis = Redis::start();
    let Split {
        servers,
        mut a,
        mut a2,
        mut b,
    } = split(&redis, &redis.url(), &[]);
    redis.kill();
    for m in [&mut a, &mut a2, &mut b] {
        assert_eq!(m.hear(), NETSPLIT, "{}", m.nick);
    }
    say_heard(&mut a, &mut [&mut a2], "lobby", "said while apart");

    let t0 = Instant::now();
    redis.restart();
    // The line said while apart was held for the other server: it may
    // reach b as soon as b's subscriber is back, before b's server has its
    // command connection too and says the room is whole; or after; or it
    // went out before b's server had subscribed again, and is counted as
    // lost there.
    let held = format!("[lobby] {}: said while apart", a.nick);
    let mut heard_held = false;
    let b_nick = b.nick.clone();
    for m in [&mut a, &mut a2, &mut b] {
        let (line, skipped) = m.hear_until(|l| l == NETJOIN);
        assert_eq!(line, NETJOIN);
        if m.nick == b_nick && skipped == [held.clone()] {
            heard_held = true;
            continue;
        }
        assert!(skipped.is_empty(), "{}: before netjoin {skipped:?}", m.nick);
    }
    wait_subscribed(&redis, "lobby", 2);
    a.say("whole again");
    let want = format!("[lobby] {}: whole again", a.nick);
    assert_eq!(a2.message(), want);
    let (_, before) = b.hear_until(|l| l == want);
    if !heard_held {
        assert!(before.is_empty() || before == [held.clone()], "{before:?}");
        heard_held = before == [held.clone()];
    } else {
        assert!(before.is_empty(), "{before:?}");
    }
    let lost = servers[1].stats()["bus_lost"];
    assert_eq!(
        lost,
        u64::from(!heard_held),
        "held line neither heard nor counted"
    );
    let back = t0.elapsed();
    eprintln!("lines cross again {back:?} after redis was restarted");
    assert!(
        back < Duration::from_secs(5) + Duration::from_secs(1),
        "{back:?}"
    );
    say_heard(&mut b, &mut [&mut a, &mut a2], "lobby", "both ways");

    drop((a, a2, b));
    for (i, s) in servers.into_iter().enumerate() {
        let log = s.log();
        assert_eq!(count(&log, "bus: lost redis"), 1, "server {i}:\n{log}");
        assert_eq!(count(&log, "is back after"), 1, "server {i}:\n{log}");
        assert_eq!(count(&log, "cannot reach redis"), 0, "server {i}:\n{log}");
        assert!(s.stats()["bus_reconnects"] >= 2, "server {i}");
        finish(s, &format!("server {i}"));
    }
}

/// An echo round trip on a new connection to `addr`; its time.
fn echo_time(addr: SocketAddr) -> Duration {
    let t0 = Instant::now();
    let mut s = connect(addr);
    echo_roundtrip(&mut s, b"still here\n", "echo while redis is frozen");
    t0.elapsed()
}

/// Promise: Redis frozen (SIGSTOP), the loop's other work goes on (echo
/// and HTTP answer, local members hear every line); what waits for Redis
/// is held up to `--bus-queue` and the rest dropped and counted; Redis
/// thawed, lines cross again.
#[test]
fn redis_frozen_and_thawed() {
    let _g = serial();
    let redis = Redis::start();
    let cap = 64 * 1024;
    let Split {
        servers,
        mut a,
        mut a2,
        mut b,
    } = split(
        &redis,
        &redis.url(),
        &["--echo", "127.0.0.1:0", "--bus-queue", "64k"],
    );
    redis.signal("STOP");
    // 3,000 lines of 100 bytes: several times the queue's cap.
    const LINES: usize = 3_000;
    let pad = "x".repeat(89);
    let mut batch = String::new();
    for i in 0..LINES {
        batch.push_str(&format!("{i:05} {pad}\n"));
    }
    let Link::Tcp(w, _) = &mut a.link else {
        unreachable!()
    };
    write_all(w, batch.as_bytes(), "sender");
    for i in 0..LINES {
        assert_eq!(a2.message(), format!("[lobby] {}: {i:05} {pad}", a.nick));
    }
    let s0 = &servers[0];
    let mut last = HashMap::new();
    let dropped = wait_until(TIMEOUT, || {
        last = s0.stats();
        last["bus_dropped"] > 0
    });
    assert!(dropped, "nothing dropped with redis frozen: {last:?}");
    assert!(last["bus_queued"] <= cap, "queue over its cap: {last:?}");
    for _ in 0..5 {
        let t = echo_time(s0.addr("echo"));
        eprintln!("echo round trip with redis frozen: {t:?}");
        let r = http_get(s0.addr("http"), "/stats");
        assert_eq!(r.status, 200);
    }
    // The freeze is noticed (no pong within 3 s): members are told.
    for m in [&mut a, &mut a2, &mut b] {
        m.hear_until(|l| l == NETSPLIT);
    }
    redis.signal("CONT");
    for m in [&mut a, &mut a2, &mut b] {
        m.hear_until(|l| l == NETJOIN);
    }
    wait_up(&servers[0], TIMEOUT);
    wait_up(&servers[1], TIMEOUT);
    wait_subscribed(&redis, "lobby", 2);
    // Lines queued before the freeze was noticed may arrive first.
    a.say("thawed");
    let want = format!("[lobby] {}: thawed", a.nick);
    let (_, skipped) = b.hear_until(|l| l == want);
    assert!(
        skipped
            .iter()
            .all(|l| l.starts_with(&format!("[lobby] {}: ", a.nick))),
        "{skipped:?}"
    );
    assert_eq!(a2.message(), want);
    drop((a, a2, b));
    for (i, s) in servers.into_iter().enumerate() {
        finish(s, &format!("server {i}"));
    }
}

/// Promise: servers started before their Redis serve at once, locally,
/// say so once in the log and in answers that need the others; when Redis
/// comes, rooms span the servers within the retry's 5 s.
#[test]
fn redis_started_after_the_servers() {
    let _g = serial();
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let servers: Vec<Server> = (0..2).map(|_| node(&url, &[])).collect();
    let mut a = Member::tcp(&servers[0]);
    let mut a2 = Member::tcp(&servers[0]);
    for s in &servers {
        let told = wait_until(TIMEOUT, || s.log().contains("cannot reach redis"));
        assert!(told, "no warning without redis:\n{}", s.log());
    }
    say_heard(&mut a, &mut [&mut a2], "lobby", "alone here");
    a.say("/who");
    let (who, _) = a.hear_until(|l| l.starts_with("* lobby: "));
    assert!(
        who.ends_with(" (this server only: the other servers are out of reach)"),
        "{who}"
    );
    let redis = Redis::start_on(port);
    let t0 = Instant::now();
    for s in &servers {
        wait_up(s, TIMEOUT);
    }
    let mut b = Member::tcp(&servers[1]);
    wait_subscribed(&redis, "lobby", 2);
    eprintln!(
        "both servers on the bus {:?} after redis started",
        t0.elapsed()
    );
    say_heard(&mut b, &mut [&mut a, &mut a2], "lobby", "now we meet");
    assert!(t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());
    drop((a, a2, b));
    for (i, s) in servers.into_iter().enumerate() {
        let log = s.log();
        assert_eq!(count(&log, "cannot reach redis"), 1, "server {i}:\n{log}");
        assert_eq!(
            count(&log, "bus: connected to redis"),
            1,
            "server {i}:\n{log}"
        );
        finish(s, &format!("server {i}"));
    }
}

/// Promise: a server whose Redis never comes serves its own members,
/// retries for as long as it runs, logs the failure once, and stops
/// cleanly.
#[test]
fn redis_never_started() {
    let _g = serial();
    let url = format!("redis://127.0.0.1:{}", free_port());
    let mut srv = node(&url, &["--echo", "127.0.0.1:0"]);
    let mut a = Member::tcp(&srv);
    let mut a2 = Member::ws(&srv);
    say_heard(&mut a, &mut [&mut a2], "lobby", "nobody else");
    echo_time(srv.addr("echo"));
    // Still trying after several seconds of refusals: a listener put on
    // the port now is called on within the longest backoff (4 s).
    let mut last = HashMap::new();
    let later = wait_until(Duration::from_secs(20), || {
        last = srv.stats();
        last["uptime_ms"] >= 5_000
    });
    assert!(later, "{last:?}");
    assert_eq!(last["bus_state"], 1, "down: {last:?}");
    let stand_in = std::net::TcpListener::bind(url.trim_start_matches("redis://")).unwrap();
    stand_in.set_nonblocking(true).unwrap();
    let called = wait_until(Duration::from_secs(5), || stand_in.accept().is_ok());
    assert!(called, "no retry reached the port within 5 s");
    drop(stand_in);
    a.say("/rooms");
    let (rooms, _) = a.hear_until(|l| l.starts_with("* rooms: "));
    assert_eq!(
        rooms,
        "* rooms: lobby (2) (this server only: the other servers are out of reach)"
    );
    drop((a, a2));
    let log = srv.log();
    assert_eq!(count(&log, "cannot reach redis"), 1, "{log}");
    assert!(bad_log_lines(&log).is_empty(), "{log}");
    let open = wait_until(TIMEOUT, || srv.stats()["open"] <= 3);
    assert!(open);
    srv.stop_only("server", Duration::from_secs(5));
}

/// Promise: a server killed with SIGKILL (no goodbye) vanishes from the
/// others' `/who` within its lease (`--bus-lease 2s` here) and its nicks
/// are free again.
#[test]
fn a_killed_server_vanishes_within_its_lease() {
    let _g = serial();
    let redis = Redis::start();
    let mut servers: Vec<Server> = (0..2).map(|_| node(&redis.url(), &[])).collect();
    for s in &servers {
        wait_up(s, TIMEOUT);
    }
    let mut a = Member::tcp(&servers[0]);
    let mut b = Member::tcp(&servers[1]);
    b.say("/nick bob");
    b.hear_until(|l| l == "* you are now bob");
    let who = |a: &mut Member| {
        a.say("/who");
        a.hear_until(|l| l.starts_with("* lobby: ")).0
    };
    assert!(wait_until(TIMEOUT, || who(&mut a).contains("bob")));
    let gone = servers.pop().unwrap();
    gone.bin.signal("KILL");
    let t0 = Instant::now();
    let vanished = wait_until(TIMEOUT, || !who(&mut a).contains("bob"));
    let took = t0.elapsed();
    eprintln!("a killed server's member left /who after {took:?}");
    assert!(vanished, "bob still listed: {}", who(&mut a));
    assert!(
        took < Duration::from_secs(2) + Duration::from_secs(2),
        "{took:?}"
    );
    a.say("/nick bob");
    let (answer, _) = a.hear_until(|l| l.starts_with("* you are now") || l.starts_with("ERROR "));
    assert_eq!(answer, "* you are now bob");
    drop((a, b, gone));
    finish(servers.pop().unwrap(), "server 0");
}

/// Promise: a subscription that stops delivering without any error (a
/// proxy in front of Redis hands the connections to fresh ones, as a
/// failover behind a proxy does) is detected and repaired within 10 s.
#[test]
fn a_silently_lost_subscription_is_repaired() {
    let _g = serial();
    let redis = Redis::start();
    let switch = Switch::new(redis.addr());
    let Split {
        servers,
        mut a,
        mut a2,
        mut b,
    } = split(&redis, &switch.url(), &[]);
    switch.switch();
    let t0 = Instant::now();
    let cut = wait_until(TIMEOUT, || subscribers(&redis, "lobby") == 0);
    assert!(cut, "the switch left the subscriptions in place");
    wait_subscribed(&redis, "lobby", 2);
    let repaired = t0.elapsed();
    eprintln!("subscriptions back {repaired:?} after the switch");
    assert!(repaired < Duration::from_secs(10), "{repaired:?}");
    // The members may have been told of the split and the join: skip.
    a.say("repaired");
    let want = format!("[lobby] {}: repaired", a.nick);
    for m in [&mut a2, &mut b] {
        let (_, skipped) = m.hear_until(|l| l == want);
        assert!(
            skipped.iter().all(|l| l.starts_with("* ")),
            "{}: {skipped:?}",
            m.nick
        );
    }
    drop((a, a2, b));
    for (i, s) in servers.into_iter().enumerate() {
        finish(s, &format!("server {i}"));
    }
}

/// Promise: the subscriber is read dry whatever the members do: with
/// Redis's output limit for subscribers set low (256 KiB), a member that
/// never reads does not slow the server's subscriber down to that limit;
/// the slow member meets its own cap, and a member beside it hears every
/// line of a 2 MB burst.
#[test]
fn a_member_that_never_reads_does_not_stall_the_subscriber() {
    let _g = serial();
    let redis = Redis::start();
    let limit = redis.cmd(&[
        "CONFIG",
        "SET",
        "client-output-buffer-limit",
        "pubsub 256kb 128kb 5",
    ]);
    assert_eq!(limit, "OK");
    let a_srv = node(&redis.url(), &[]);
    let b_srv = node(&redis.url(), &["--chat-output-hard", "64k"]);
    wait_up(&a_srv, TIMEOUT);
    wait_up(&b_srv, TIMEOUT);
    let mut sender = Member::tcp(&a_srv);
    let mut reader = Member::tcp(&b_srv);
    // The member that never reads: a small receive window, never read.
    let stuck = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    stuck.set_recv_buffer_size(4096).unwrap();
    stuck.connect(&b_srv.addr("chat").into()).unwrap();
    wait_subscribed(&redis, "lobby", 2);
    let mut last = HashMap::new();
    let both = wait_until(TIMEOUT, || {
        last = b_srv.stats();
        last["chat_members"] == 2
    });
    assert!(both, "{last:?}");

    // The sender keeps at most two batches ahead of the reader, so the
    // reader stays under the cap while the stuck member fills to it.
    const LINES: usize = 10_000;
    const BATCH: usize = 50;
    let pad = "y".repeat(190);
    let nick = sender.nick.clone();
    let (done, progress) = std::sync::mpsc::channel();
    let reading = thread::spawn(move || {
        for i in 0..LINES {
            let got = reader.message();
            assert_eq!(got, format!("[lobby] {nick}: {i:05} {pad}"));
            if i % BATCH == BATCH - 1 {
                let _ = done.send(i + 1);
            }
        }
        reader
    });
    let pad = "y".repeat(190);
    let Link::Tcp(w, _) = &mut sender.link else {
        unreachable!()
    };
    let mut heard = 0;
    for start in (0..LINES).step_by(BATCH) {
        while start > heard + 2 * BATCH {
            heard = progress.recv_timeout(TIMEOUT).expect("the reader stalled");
        }
        let batch: String = (start..start + BATCH)
            .map(|i| format!("{i:05} {pad}\n"))
            .collect();
        write_all(w, batch.as_bytes(), "sender");
    }
    let reader = reading.join().unwrap();
    let stats = b_srv.stats();
    assert_eq!(
        stats["bus_reconnects"], 0,
        "the subscriber was cut off: {stats:?}"
    );
    assert_eq!(stats["bus_lost"], 0, "{stats:?}");
    assert_eq!(stats["slow_dropped"], 1, "the stuck member: {stats:?}");
    drop((sender, reader, stuck));
    finish(a_srv, "server a");
    finish(b_srv, "server b");
}
