//! The bus across a real network: Redis and two servers on three hosts of
//! their own (network namespaces, each with its own stack and addresses,
//! joined by veth links), a chat member on each server's host. Needs root
//! and `ip` (iproute2), as `.ci/run` has.
//!
//! ```text
//!   host a  10.201.1.2 ----- 10.201.1.1  host redis  10.201.2.1 ----- 10.201.2.2  host b
//!   reactor (chat, http on ports of    redis-server :6379     reactor (likewise)
//!   the OS's pick)
//! ```

mod util;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use util::redis::command;
use util::server::bad_log_lines;
use util::*;

/// Three namespaces and their links, removed when dropped.
struct Hosts {
    /// The namespaces' names: redis, a, b.
    names: [String; 3],
    /// Veth ends on hosts a and b (towards redis).
    ends: [String; 2],
}

/// Runs `ip ARGS`; it must succeed.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ip {args:?}: {e} (iproute2 is needed)"));
    assert!(
        out.status.success(),
        "ip {args:?}: {} (root is needed for network namespaces)",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Hosts {
    /// Makes the three hosts and their two links.
    fn new() -> Hosts {
        let tag = format!("rb{}", std::process::id());
        let names = ["redis", "a", "b"].map(|h| format!("{tag}-{h}"));
        let hosts = Hosts {
            names: names.clone(),
            ends: [format!("{tag}a"), format!("{tag}b")],
        };
        for n in &names {
            ip(&["netns", "add", n]);
            ip(&["-n", n, "link", "set", "lo", "up"]);
        }
        for (i, host) in names[1..].iter().enumerate() {
            let (near, far) = (format!("{tag}r{i}"), &hosts.ends[i]);
            let net = i + 1;
            ip(&["link", "add", &near, "type", "veth", "peer", "name", far]);
            ip(&["link", "set", &near, "netns", &names[0]]);
            ip(&["link", "set", far, "netns", host]);
            ip(&[
                "-n",
                &names[0],
                "addr",
                "add",
                &format!("10.201.{net}.1/24"),
                "dev",
                &near,
            ]);
            ip(&[
                "-n",
                host,
                "addr",
                "add",
                &format!("10.201.{net}.2/24"),
                "dev",
                far,
            ]);
            ip(&["-n", &names[0], "link", "set", &near, "up"]);
            ip(&["-n", host, "link", "set", far, "up"]);
        }
        hosts
    }

    /// Host `i`'s (1: a, 2: b) link to Redis up or down.
    fn link(&self, i: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&[
            "-n",
            &self.names[i],
            "link",
            "set",
            &self.ends[i - 1],
            state,
        ]);
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// A TCP connection made from inside namespace `ns`: a thread joins it
/// with setns(2) and connects; the socket stays in that namespace.
fn connect_in(ns: &str, addr: SocketAddr) -> TcpStream {
    let path = format!("/var/run/netns/{ns}");
    thread::spawn(move || {
        let f = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: `f` is an open namespace file; setns changes only the
        // calling thread's network namespace, and the thread ends here.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        connect(addr)
    })
    .join()
    .unwrap()
}

/// `/stats` of the server at `addr` in `ns`, parsed.
fn stats_in(ns: &str, addr: SocketAddr) -> serde_json::Value {
    let mut s = connect_in(ns, addr);
    s.write_all(b"GET /stats HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let text = String::from_utf8_lossy(&all);
    let body = text.split_once("\r\n\r\n").expect("a response").1;
    serde_json::from_str(body).expect("/stats is JSON")
}

/// A chat member on a host.
struct Member {
    nick: String,
    w: TcpStream,
    r: Lines<TcpStream>,
}

impl Member {
    fn join(ns: &str, addr: SocketAddr) -> Member {
        let s = connect_in(ns, addr);
        let mut r = Lines::new(s.try_clone().unwrap(), format!("member in {ns}"));
        let welcome = r.line();
        let nick = welcome
            .strip_prefix("* welcome to reactor chat, you are ")
            .and_then(|x| x.split(" in lobby").next())
            .unwrap_or_else(|| panic!("welcome {welcome:?}"))
            .to_string();
        Member { nick, w: s, r }
    }

    fn say(&mut self, line: &str) {
        write_all(&mut self.w, format!("{line}\n").as_bytes(), "member");
    }

    /// The next line that satisfies `pred` (others skipped).
    fn until(&mut self, pred: impl Fn(&str) -> bool) -> String {
        self.r
            .until(|l| pred(l.trim_end()))
            .0
            .trim_end()
            .to_string()
    }
}

/// Kills a child when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Promise: with Redis on a host of its own, a member on each of two
/// other hosts hears the other; the link to one host cut, its member is
/// told the room is cut off and local chat goes on; the link back, the
/// room is whole and lines cross again.
#[test]
fn rooms_span_servers_on_separate_hosts() {
    let _g = util::server::serial();
    let hosts = Hosts::new();
    let [redis_ns, a_ns, b_ns] = hosts.names.clone();
    let redis = Reaped(
        Command::new("ip")
            .args(["netns", "exec", &redis_ns, "redis-server", "--port", "6379"])
            .args(["--bind", "0.0.0.0", "--protected-mode", "no"])
            .args(["--save", "", "--appendonly", "no", "--logfile", ""])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server"),
    );
    let redis_at = SocketAddr::from(([10, 201, 1, 1], 6379));
    let up = wait_until(TIMEOUT, || {
        let s = thread::spawn({
            let ns = a_ns.clone();
            move || {
                let mut s = connect_in(&ns, redis_at);
                command(&mut s, &["PING"]).ok()
            }
        });
        s.join().ok().flatten().as_deref() == Some("PONG")
    });
    assert!(up, "redis on its host never answered");

    let serve = |ns: &str, net: u8| {
        let bus = format!("redis://10.201.{net}.1:6379");
        Bin::spawn_under(
            &["ip", "netns", "exec", ns],
            &[
                "serve",
                "--chat",
                "0.0.0.0:0",
                "--http",
                "0.0.0.0:0",
                "--bus",
                &bus,
                "--log-level",
                "info",
            ],
        )
    };
    let mut servers = [serve(&a_ns, 1), serve(&b_ns, 2)];
    let at = |net: u8, port: u16| SocketAddr::from(([10, 201, net, 2], port));
    // Each server's ports, as it bound them (port 0: the OS's pick).
    let port = |srv: &mut Bin, svc: &str| -> u16 {
        let addr: SocketAddr = srv.listening(svc, TIMEOUT).parse().unwrap();
        addr.port()
    };
    let mut chat_ports = Vec::new();
    for (i, (srv, ns)) in servers.iter_mut().zip([&a_ns, &b_ns]).enumerate() {
        chat_ports.push(port(srv, "chat"));
        let http = at(i as u8 + 1, port(srv, "http"));
        let on = wait_until(TIMEOUT, || stats_in(ns, http)["bus_state"] == 3);
        assert!(
            on,
            "server on {ns} never reached the bus:\n{}",
            srv.log_text()
        );
    }
    let mut a = Member::join(&a_ns, at(1, chat_ports[0]));
    let mut a2 = Member::join(&a_ns, at(1, chat_ports[0]));
    let mut b = Member::join(&b_ns, at(2, chat_ports[1]));
    let numsub = || {
        let mut s = connect_in(&a_ns, redis_at);
        command(&mut s, &["PUBSUB", "NUMSUB", "reactor:room:lobby"]).unwrap()
    };
    assert!(
        wait_until(TIMEOUT, || numsub().ends_with(",2")),
        "{}",
        numsub()
    );

    let line = |m: &Member, text: &str| format!("[lobby] {}: {text}", m.nick);
    a.say("from host a");
    assert_eq!(b.until(|l| !l.starts_with("* ")), line(&a, "from host a"));
    b.say("from host b");
    assert_eq!(a.until(|l| !l.starts_with("* ")), line(&b, "from host b"));
    assert_eq!(a2.until(|l| !l.starts_with("* ")), line(&a, "from host a"));
    assert_eq!(a2.until(|l| !l.starts_with("* ")), line(&b, "from host b"));

    // Host b's link to Redis cut: no reset comes, the pings go unanswered.
    hosts.link(2, false);
    let split = "* netsplit: lobby is cut off from the other servers";
    assert!(b.until(|l| l.starts_with("* netsplit")).starts_with(split));
    a.say("while b is away");
    assert_eq!(
        a2.until(|l| !l.starts_with("* ")),
        line(&a, "while b is away")
    );
    hosts.link(2, true);
    let join = "* netjoin: lobby reaches the other servers again";
    assert_eq!(b.until(|l| l.starts_with("* netjoin")), join);
    assert!(
        wait_until(TIMEOUT, || numsub().ends_with(",2")),
        "{}",
        numsub()
    );
    a.say("b is back");
    assert_eq!(
        b.until(|l| l == line(&a, "b is back")),
        line(&a, "b is back")
    );
    b.say("hello again");
    assert_eq!(a.until(|l| !l.starts_with("* ")), line(&b, "hello again"));

    drop((a, a2, b));
    for srv in &mut servers {
        srv.signal("TERM");
        let st = srv
            .wait_exit(Duration::from_secs(10))
            .expect("exit after SIGTERM");
        let log = srv.final_log();
        assert_eq!(st.code(), Some(0), "{log}");
        assert!(bad_log_lines(&log).is_empty(), "{log}");
    }
    drop(redis);
}
