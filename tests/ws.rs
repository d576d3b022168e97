//! WebSocket on the HTTP service: the handshake and its refusals, frames
//! and close codes on a real socket, browser and TCP members in one room,
//! keep-alive pings, slow members and shutdown; the echo endpoint
//! (`/ws/echo`): messages back unchanged, its limit, its close codes, its
//! pings and shutdown.

mod util;

use std::io::{ErrorKind, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use reactor::service::Service;
use reactor::{Config, Server};
use util::ws::*;
use util::*;

/// A server with HTTP (and so `/ws`) and TCP chat on ephemeral ports.
struct Site {
    srv: Running,
    http: SocketAddr,
    chat: SocketAddr,
}

fn start_site(tweak: impl FnOnce(&mut Config)) -> Site {
    let mut cfg = Config::empty();
    cfg.http = Some(loopback0());
    cfg.chat = Some(loopback0());
    tweak(&mut cfg);
    let server = Server::bind(cfg).unwrap_or_else(|e| panic!("bind: {e}"));
    let http = server.local_addr(Service::Http).unwrap();
    let chat = server.local_addr(Service::Chat).unwrap();
    let handle = server.handle();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(server.run());
    });
    Site {
        srv: Running::from_parts(handle, rx),
        http,
        chat,
    }
}

// ------------------------------------------------------------ handshake

/// Promise: the handshake answers 101 with the RFC's accept value, and
/// `Upgrade`/`Connection` headers; the member is welcomed as in nc.
#[test]
fn handshake_accepts_with_the_rfc_key() {
    let site = start_site(|_| {});
    let mut s = connect(site.http);
    s.write_all(upgrade_request(GOOD).as_bytes()).unwrap();
    let (status, h) = read_head(&mut s);
    assert_eq!(status, 101);
    assert_eq!(header(&h, "sec-websocket-accept"), Some(ACCEPT));
    assert_eq!(header(&h, "upgrade"), Some("websocket"));
    assert_eq!(header(&h, "connection"), Some("Upgrade"));
    let mut ws = Ws::over(s);
    assert!(ws.recv().text().starts_with("* welcome to reactor chat"));
    site.srv.wait_stats("one ws member", TIMEOUT, |s| {
        s.open_by.ws == 1 && s.open_by.http == 0 && s.ws_upgrades == 1
    });
}

/// Promise: every bad handshake gets the status that says why, then close.
#[test]
fn bad_handshakes_are_refused_with_their_status() {
    let site = start_site(|cfg| cfg.http_config.ws_origins = vec!["https://ok.example".into()]);
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let v13 = "Sec-WebSocket-Version: 13\r\n";
    let up = "Upgrade: websocket\r\nConnection: Upgrade\r\n";
    let cases: Vec<(&str, String, u16)> = vec![
        ("plain GET", upgrade_request(""), 426),
        (
            "version 8",
            upgrade_request(&format!("{up}{key}Sec-WebSocket-Version: 8\r\n")),
            426,
        ),
        ("no version", upgrade_request(&format!("{up}{key}")), 426),
        ("no key", upgrade_request(&format!("{up}{v13}")), 400),
        (
            "short key",
            upgrade_request(&format!("{up}{v13}Sec-WebSocket-Key: abc=\r\n")),
            400,
        ),
        (
            "two keys",
            upgrade_request(&format!("{up}{v13}{key}{key}")),
            400,
        ),
        (
            "no Connection: Upgrade",
            upgrade_request(&format!("Upgrade: websocket\r\n{key}{v13}")),
            400,
        ),
        (
            "POST",
            format!("POST /ws HTTP/1.1\r\nHost: t\r\n{GOOD}Content-Length: 0\r\n\r\n"),
            400,
        ),
        ("HTTP/1.0", format!("GET /ws HTTP/1.0\r\n{GOOD}\r\n"), 400),
        (
            "foreign origin",
            upgrade_request(&format!("{GOOD}Origin: https://evil.example\r\n")),
            403,
        ),
    ];
    for (what, req, want) in cases {
        let mut s = connect(site.http);
        s.write_all(req.as_bytes()).unwrap();
        let (status, h) = read_head(&mut s);
        assert_eq!(status, want, "{what}");
        assert_eq!(header(&h, "connection"), Some("close"), "{what}");
        if want == 426 {
            assert_eq!(header(&h, "sec-websocket-version"), Some("13"), "{what}");
        }
        let (_, end) = read_to_end(&mut s, what);
        assert_eq!(end, End::Eof, "{what}: not closed");
    }
    // A listed origin (any case) and a client with no Origin are let in.
    for extra in ["Origin: https://OK.example\r\n", ""] {
        let mut s = connect(site.http);
        s.write_all(upgrade_request(&format!("{GOOD}{extra}")).as_bytes())
            .unwrap();
        assert_eq!(read_head(&mut s).0, 101, "origin {extra:?}");
    }
}

/// Promise: `HEAD /ws` is answered as `GET /ws` would be (without an
/// upgrade, 426; with one, 400: HEAD cannot switch protocols), but with
/// no body, then the connection closes.
#[test]
fn head_of_the_websocket_path_has_no_body() {
    let site = start_site(|_| {});
    for (what, extra, want) in [
        ("plain HEAD", "", 426),
        ("HEAD asking to upgrade", GOOD, 400),
    ] {
        let mut s = connect(site.http);
        write!(s, "HEAD /ws HTTP/1.1\r\nHost: t\r\n{extra}\r\n").unwrap();
        let (status, h) = read_head(&mut s);
        assert_eq!(status, want, "{what}");
        assert_eq!(header(&h, "connection"), Some("close"), "{what}");
        let (rest, end) = read_to_end(&mut s, what);
        assert!(
            rest.is_empty(),
            "{what}: {} bytes after the head",
            rest.len()
        );
        assert_eq!(end, End::Eof, "{what}: not closed");
    }
}

/// Promise: requests pipelined before the upgrade are answered in order;
/// frames sent right behind the handshake are not lost.
#[test]
fn frames_right_behind_the_handshake_are_read() {
    let site = start_site(|_| {});
    let mut s = connect(site.http);
    let mut burst = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".to_vec();
    burst.extend_from_slice(upgrade_request(GOOD).as_bytes());
    burst.extend(text("/nick early"));
    s.write_all(&burst).unwrap();
    let (status, h) = read_head(&mut s);
    assert_eq!(status, 200);
    let len: usize = header(&h, "content-length").unwrap().parse().unwrap();
    read_n(&mut s, len, "hello body");
    assert_eq!(read_head(&mut s).0, 101);
    let mut ws = Ws::over(s);
    ws.until(|t| t.starts_with("* welcome"));
    ws.until(|t| t.contains("you are now early"));
}

/// Promise: once the handshake is answered, what follows it in the same
/// read is WebSocket, whole or cut: half a frame right behind the
/// handshake is kept and completed by the next bytes, and never parsed as
/// HTTP (no `400` in the frame stream).
#[test]
fn half_a_frame_behind_the_handshake_stays_websocket() {
    let site = start_site(|_| {});
    let mut s = connect(site.http);
    let whole = text("/nick halves");
    let (first, second) = whole.split_at(whole.len() / 2);
    let mut burst = upgrade_request(GOOD).into_bytes();
    burst.extend_from_slice(first);
    s.write_all(&burst).unwrap();
    assert_eq!(read_head(&mut s).0, 101);
    let mut ws = Ws::over(s);
    assert!(ws.recv().text().starts_with("* welcome"));
    ws.s.write_all(second).unwrap();
    let f = ws.recv();
    assert_eq!(f.opcode, 1, "a text frame, not {:?}", f.text());
    assert_eq!(f.text(), "* you are now halves");
}

// ------------------------------------------------------------ chat

/// Promise: a WebSocket member and a TCP member in one room see each
/// other's lines; one message with several lines is several lines.
#[test]
fn browser_and_nc_members_share_a_room() {
    let site = start_site(|_| {});
    let (mut ws, ws_nick) = Ws::join(site.http);
    let tcp = connect(site.chat);
    let mut tcp_w = tcp.try_clone().unwrap();
    let mut tcp_r = Lines::new(tcp, "tcp member");
    let welcome = tcp_r.line();
    let tcp_nick = welcome
        .strip_prefix("* welcome to reactor chat, you are ")
        .and_then(|r| r.split(" in lobby").next())
        .unwrap()
        .to_string();
    ws.until(|t| t.contains(&tcp_nick) && t.contains("joined"));
    tcp_w.write_all(b"hello from nc\n").unwrap();
    assert_eq!(
        ws.until(|t| !t.starts_with('*')),
        format!("[lobby] {tcp_nick}: hello from nc")
    );
    ws.send(&text("hello from a browser"));
    tcp_r.expect(&format!("[lobby] {ws_nick}: hello from a browser\n"));
    ws.send(&text("two\nlines\n"));
    tcp_r.expect(&format!("[lobby] {ws_nick}: two\n"));
    tcp_r.expect(&format!("[lobby] {ws_nick}: lines\n"));
    // A line from nc that is not UTF-8 is refused to its sender and never
    // reaches a browser (which would fail the connection on it).
    tcp_w.write_all(b"caf\xE9\nplain\n").unwrap();
    tcp_r.expect("ERROR invalid UTF-8, line dropped\n");
    assert_eq!(
        ws.until(|t| !t.starts_with('*')),
        format!("[lobby] {tcp_nick}: plain")
    );
    site.srv
        .wait_stats("messages counted", TIMEOUT, |s| s.ws_messages == 2);
}

/// Promise: a fragmented message with control frames between its
/// fragments arrives whole; pings are answered with their payload.
#[test]
fn fragments_and_pings_on_the_wire() {
    let site = start_site(|_| {});
    let (mut a, a_nick) = Ws::join(site.http);
    let (mut b, b_nick) = Ws::join(site.http);
    a.until(|t| t.contains(&b_nick));
    let mut parts = frame(false, 1, "frag".as_bytes(), true);
    parts.extend(frame(true, 9, b"are you there", true));
    parts.extend(frame(false, 0, "ment".as_bytes(), true));
    parts.extend(frame(true, 0, "ed ☃".as_bytes(), true));
    // Byte by byte, so every boundary is split somewhere.
    for byte in parts {
        a.send(&[byte]);
    }
    let pong = a.recv();
    assert_eq!(
        pong,
        Frame {
            opcode: 10,
            payload: b"are you there".to_vec()
        }
    );
    assert_eq!(
        b.until(|t| !t.starts_with('*')),
        format!("[lobby] {a_nick}: fragmented ☃")
    );
}

/// Promise: the close handshake echoes the client's code, then the server
/// closes the TCP connection; the member leaves the room.
#[test]
fn close_is_answered_in_kind() {
    let site = start_site(|_| {});
    let (mut a, a_nick) = Ws::join(site.http);
    let (mut b, _) = Ws::join(site.http);
    a.send(&frame(true, 8, &[0x03, 0xE8, b'b', b'y', b'e'], true));
    assert_eq!(a.close_code(), Some(1000));
    a.expect_eof();
    b.until(|t| t.contains(&a_nick) && t.contains("left"));
    // A close with no code is answered with none.
    let (mut c, _) = Ws::join(site.http);
    c.send(&frame(true, 8, b"", true));
    assert_eq!(c.close_code(), None);
    c.expect_eof();
    // `/quit` closes with 1000.
    let (mut d, _) = Ws::join(site.http);
    d.send(&text("/quit"));
    assert_eq!(d.close_code(), Some(1000));
    d.expect_eof();
    drop(b);
    site.srv
        .wait_stats("all closed", TIMEOUT, |s| s.open_by.ws == 0 && s.open == 0);
}

/// Promise: each broken rule closes with its code (1002, 1003, 1007,
/// 1009), and the connection is then closed by the server.
#[test]
fn broken_rules_close_with_their_codes() {
    let site = start_site(|cfg| cfg.limits.max_line = 100);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked", frame(true, 1, b"hi", false), 1002),
        (
            "rsv bit",
            {
                let mut f = text("x");
                f[0] |= 0x20;
                f
            },
            1002,
        ),
        ("continuation first", frame(true, 0, b"x", true), 1002),
        ("binary", frame(true, 2, b"\x00", true), 1003),
        ("invalid UTF-8", frame(true, 1, b"\xFF\xFE", true), 1007),
        ("over the limit", text(&"x".repeat(101)), 1009),
        // The header alone is enough to refuse: no payload follows.
        (
            "huge length",
            {
                let mut f = vec![0x81, 0xFF];
                f.extend_from_slice(&(1u64 << 40).to_be_bytes());
                f.extend_from_slice(&[1, 2, 3, 4]);
                f
            },
            1009,
        ),
    ];
    for (what, bytes, want) in cases {
        let (mut ws, _) = Ws::join(site.http);
        ws.send(&bytes);
        assert_eq!(ws.close_code(), Some(want), "{what}");
        ws.expect_eof();
    }
    // At the limit exactly is fine.
    let (mut a, _) = Ws::join(site.http);
    a.send(&text(&"y".repeat(100)));
    a.send(&text("/help"));
    a.until(|t| t.starts_with("* commands"));
    drop(a);
    site.srv.wait_stats("all closed", TIMEOUT, |s| s.open == 0);
}

// ------------------------------------------------------------ keep-alive

/// Promise: a silent member is pinged after `ws_ping`; one that answers
/// stays; one that stays silent as long again is closed.
#[test]
fn silent_members_are_pinged_then_closed() {
    let site = start_site(|cfg| cfg.limits.ws_ping = Duration::from_millis(300));
    let (mut live, _) = Ws::join(site.http);
    let (mut dead, _) = Ws::join(site.http);
    // The live one answers two pings and is still a member.
    for _ in 0..2 {
        let ping = loop {
            let f = live.recv();
            if f.opcode == 9 {
                break f;
            }
        };
        live.send(&frame(true, 10, &ping.payload, true));
    }
    // The dead one gets a ping, never answers, and is closed.
    let start = Instant::now();
    loop {
        match dead.try_recv() {
            Ok(f) => assert!(matches!(f.opcode, 1 | 9), "unexpected {f:?}"),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("dead member: {e}"),
        }
    }
    assert!(start.elapsed() < TIMEOUT);
    live.send(&text("/help"));
    live.until(|t| t.starts_with("* commands"));
    site.srv.wait_stats("one timed out", TIMEOUT, |s| {
        s.timeouts >= 1 && s.open_by.ws == 1
    });
}

// ------------------------------------------------------------ limits

/// Promise: a WebSocket member that does not read is dropped by the same
/// output caps as a TCP member (1008 after its backlog); others are fine.
#[test]
fn a_member_that_does_not_read_is_dropped() {
    let site = start_site(|cfg| {
        // Long enough for the slow member to start reading after its drop.
        cfg.limits.linger = Duration::from_secs(20);
    });
    let (mut slow, _) = Ws::join(site.http);
    let (mut reader, _) = Ws::join(site.http);
    let sender = connect(site.chat);
    let mut sender_w = sender.try_clone().unwrap();
    const LINES: usize = 100_000;
    let line = format!("{}\n", "z".repeat(200));
    // The reader reads on another thread; the slow member reads nothing.
    let read = Arc::new(AtomicUsize::new(0));
    let read_r = read.clone();
    let counter = thread::spawn(move || {
        let mut n = 0;
        while n < LINES {
            let f = reader.recv();
            if f.opcode == 1 && f.text().ends_with(&"z".repeat(200)) {
                n += 1;
                read_r.store(n, Ordering::Relaxed);
            }
        }
        n
    });
    // 20 MB: far more than the default caps (1 MiB hard) and the kernel's
    // socket buffers can hide. Sent no faster than the reader reads (at
    // most 1,000 lines, 200 KB, ahead of it): a member that keeps up is
    // never dropped, whatever the rate.
    let batch = line.repeat(100);
    for sent in (0..LINES).step_by(100) {
        let t = Instant::now();
        while sent > read.load(Ordering::Relaxed) + 1_000 {
            assert!(
                t.elapsed() < TIMEOUT,
                "the reader is stuck at {sent} lines sent"
            );
            thread::sleep(Duration::from_micros(200));
        }
        sender_w.write_all(batch.as_bytes()).unwrap();
    }
    site.srv
        .wait_stats("slow member dropped", TIMEOUT, |s| s.slow_dropped == 1);
    assert_eq!(counter.join().unwrap(), LINES, "the reader missed lines");
    // The slow member now reads its backlog, the error, then 1008.
    let err = slow.until(|t| t.starts_with("ERROR"));
    assert!(err.contains("too slow"), "{err}");
    assert_eq!(slow.close_code(), Some(1008));
}

/// Promise: on shutdown, members get the notice and close 1001.
#[test]
fn shutdown_says_going_away() {
    let site = start_site(|_| {});
    let (mut ws, _) = Ws::join(site.http);
    let Site { srv, .. } = site;
    let stopper = thread::spawn(move || srv.stop(TIMEOUT));
    ws.until(|t| t == "* server shutting down");
    assert_eq!(ws.close_code(), Some(1001));
    ws.expect_eof();
    stopper.join().unwrap();
}

/// Promise: the pages are served, embedded, as HTML.
#[test]
fn chat_and_dashboard_pages_are_served() {
    let site = start_site(|_| {});
    for path in ["/chat", "/dashboard"] {
        let r = http_get(site.http, path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert!(r.body.starts_with(b"<!doctype html>") || r.body.starts_with(b"<!DOCTYPE html>"));
    }
    let stats = http_get(site.http, "/stats");
    let body = String::from_utf8(stats.body).unwrap();
    for field in [
        "\"open_ws\":",
        "\"open_http\":",
        "\"rss_kib\":",
        "\"ws_upgrades\":0",
    ] {
        assert!(body.contains(field), "{field} not in {body}");
    }
}

// ------------------------------------------------------------ echo

/// A binary message of `n` bytes, every value.
fn binary_payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 256) as u8).collect()
}

/// Promise: `/ws/echo` sends every text and binary message back
/// unchanged, in order, one frame each, whatever the fragmentation, and
/// answers pings between fragments; it is not a chat member.
#[test]
fn echo_sends_every_message_back_unchanged() {
    let site = start_site(|_| {});
    let mut ws = Ws::open_at(site.http, "/ws/echo");
    let big = binary_payload(70_000);
    ws.send(&text("hello ☃"));
    ws.send(&frame(true, 2, &binary_payload(256), true));
    ws.send(&frame(true, 1, b"", true));
    ws.send(&frame(true, 2, &big, true));
    for (opcode, payload) in [
        (1, "hello ☃".as_bytes().to_vec()),
        (2, binary_payload(256)),
        (1, Vec::new()),
        (2, big.clone()),
    ] {
        assert_eq!(ws.recv(), Frame { opcode, payload });
    }
    // Fragments with a ping between them, byte by byte: one message back,
    // after the pong.
    let mut parts = frame(false, 2, &big[..1000], true);
    parts.extend(frame(true, 9, b"still there?", true));
    parts.extend(frame(false, 0, &big[1000..3000], true));
    parts.extend(frame(true, 0, &big[3000..3001], true));
    for byte in parts {
        ws.send(&[byte]);
    }
    assert_eq!(
        ws.recv(),
        Frame {
            opcode: 10,
            payload: b"still there?".to_vec()
        }
    );
    assert_eq!(
        ws.recv(),
        Frame {
            opcode: 2,
            payload: big[..3001].to_vec()
        }
    );
    // A thousand messages in one write come back in order.
    let burst: Vec<u8> = (0..1000).flat_map(|i| text(&format!("m{i}"))).collect();
    ws.send(&burst);
    for i in 0..1000 {
        assert_eq!(ws.recv().text(), format!("m{i}"));
    }
    site.srv.wait_stats("counted, in no room", TIMEOUT, |s| {
        s.ws_upgrades == 1 && s.ws_messages == 1005 && s.open_by.ws == 0
    });
    ws.send(&frame(true, 8, &1000u16.to_be_bytes(), true));
    assert_eq!(ws.close_code(), Some(1000));
    ws.expect_eof();
}

/// Promise: the echo endpoint's handshake is the chat's: the same
/// refusals and origin check; a browser's `permessage-deflate` offer is
/// declined by a 101 without `Sec-WebSocket-Extensions`, and frames then
/// flow uncompressed.
#[test]
fn echo_handshake_checks_the_origin_and_declines_deflate() {
    let site = start_site(|cfg| cfg.http_config.ws_origins = vec!["https://ok.example".into()]);
    let req = |extra: &str| format!("GET /ws/echo HTTP/1.1\r\nHost: t\r\n{extra}\r\n");
    for (what, r, want) in [
        ("plain GET", req(""), 426),
        (
            "foreign origin",
            req(&format!("{GOOD}Origin: https://evil.example\r\n")),
            403,
        ),
    ] {
        let mut s = connect(site.http);
        s.write_all(r.as_bytes()).unwrap();
        assert_eq!(read_head(&mut s).0, want, "{what}");
        let (_, end) = read_to_end(&mut s, what);
        assert_eq!(end, End::Eof, "{what}: not closed");
    }
    // What Chromium and Firefox send.
    let offer = "Origin: https://ok.example\r\n\
                 Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
    let mut s = connect(site.http);
    s.write_all(req(&format!("{GOOD}{offer}")).as_bytes())
        .unwrap();
    let (status, h) = read_head(&mut s);
    assert_eq!(status, 101);
    assert_eq!(header(&h, "sec-websocket-accept"), Some(ACCEPT));
    assert_eq!(header(&h, "sec-websocket-extensions"), None, "{h:?}");
    let mut ws = Ws::over(s);
    ws.send(&text("plain"));
    assert_eq!(ws.recv().text(), "plain");
    // A compressed frame (RSV1) after the refusal breaks the protocol.
    let mut f = text("x");
    f[0] |= 0x40;
    ws.send(&f);
    assert_eq!(ws.close_code(), Some(1002));
    ws.expect_eof();
}

/// Promise: a message of exactly `--ws-max-message` (here its 1 MiB
/// default) is echoed whole, in one frame or in fragments; one byte more
/// closes with 1009, judged from the header.
#[test]
fn echo_takes_the_max_message_whole_and_closes_1009_one_byte_over() {
    let site = start_site(|_| {});
    let max = reactor::config::Limits::default().ws_max_message;
    assert_eq!(max, 1 << 20);
    let msg = binary_payload(max);
    let mut ws = Ws::open_at(site.http, "/ws/echo");
    ws.send(&frame(true, 2, &msg, true));
    let got = ws.recv();
    assert!(got.opcode == 2 && got.payload == msg, "1 MiB in one frame");
    let mut frags = Vec::new();
    for (i, part) in msg.chunks(1000).enumerate() {
        let last = (i + 1) * 1000 >= max;
        frags.extend(frame(last, if i == 0 { 2 } else { 0 }, part, true));
    }
    ws.send(&frags);
    let got = ws.recv();
    assert!(got.opcode == 2 && got.payload == msg, "1 MiB in fragments");
    // One byte over, in one frame: the server reads the header, says 1009
    // and discards the rest while it lingers.
    let over = frame(true, 1, &vec![b'o'; max + 1], true);
    let mut w = ws.s.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let _ = w.write_all(&over);
    });
    assert_eq!(ws.close_code(), Some(1009));
    ws.expect_eof();
    writer.join().unwrap();
    // One byte over across fragments: the fragment that crosses fails.
    let mut ws = Ws::open_at(site.http, "/ws/echo");
    ws.send(&frame(false, 2, &msg[..max / 2], true));
    ws.send(&frame(false, 0, &msg[max / 2..], true));
    ws.send(&frame(true, 0, b"+", true)[..6]); // its header only
    assert_eq!(ws.close_code(), Some(1009));
    ws.expect_eof();
}

/// Promise: the echo endpoint's close codes are the codec's: invalid
/// UTF-8 in text 1007 (binary is not checked), protocol errors 1002; a
/// close is answered in kind.
#[test]
fn echo_closes_with_the_codecs_codes() {
    let site = start_site(|_| {});
    for (what, bytes, want) in [
        ("invalid UTF-8", frame(true, 1, b"ok\xFF", true), Some(1007)),
        ("unmasked", frame(true, 2, b"hi", false), Some(1002)),
        ("continuation first", frame(true, 0, b"x", true), Some(1002)),
        ("opcode 3", frame(true, 3, b"", true), Some(1002)),
        (
            "close 4000",
            frame(true, 8, &4000u16.to_be_bytes(), true),
            Some(4000),
        ),
        ("close without a code", frame(true, 8, b"", true), None),
    ] {
        let mut ws = Ws::open_at(site.http, "/ws/echo");
        ws.send(&frame(true, 2, b"\xFF\xFE", true));
        assert_eq!(
            ws.recv().payload,
            b"\xFF\xFE",
            "{what}: binary is not UTF-8-checked"
        );
        ws.send(&bytes);
        assert_eq!(ws.close_code(), want, "{what}");
        ws.expect_eof();
    }
    site.srv.wait_stats("all closed", TIMEOUT, |s| s.open == 0);
}

/// Promise: a silent echo connection is pinged after `ws_ping`, and
/// closed if it stays silent as long again; on shutdown an echo
/// connection gets 1001.
#[test]
fn echo_is_pinged_when_silent_and_told_on_shutdown() {
    let site = start_site(|cfg| cfg.limits.ws_ping = Duration::from_millis(300));
    let mut live = Ws::open_at(site.http, "/ws/echo");
    let mut dead = Ws::open_at(site.http, "/ws/echo");
    let ping = live.recv();
    assert_eq!(ping.opcode, 9, "{ping:?}");
    live.send(&frame(true, 10, &ping.payload, true));
    assert_eq!(dead.recv().opcode, 9);
    match dead.try_recv() {
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => {}
        other => panic!("a silent connection after its ping: {other:?}"),
    }
    site.srv
        .wait_stats("one timed out", TIMEOUT, |s| s.timeouts >= 1 && s.open == 1);
    let Site { srv, .. } = site;
    let stopper = thread::spawn(move || srv.stop(TIMEOUT));
    assert_eq!(live.close_code(), Some(1001));
    live.expect_eof();
    stopper.join().unwrap();
}

/// Promise: a message being reassembled counts against
/// `--max-client-memory`: with a 4 MiB cap and 16 MiB messages allowed,
/// a client halfway through a 12 MiB message is evicted once its input
/// passes the cap; another echo connection is still served.
#[test]
fn a_message_being_reassembled_counts_against_the_memory_cap() {
    let site = start_site(|cfg| {
        cfg.limits.max_client_memory = 4 << 20;
        cfg.limits.ws_max_message = 16 << 20;
    });
    let mut small = Ws::open_at(site.http, "/ws/echo");
    let mut big = Ws::open_at(site.http, "/ws/echo");
    let mut f = frame(true, 2, &binary_payload(12 << 20), true);
    f.truncate(f.len() / 2); // 6 MiB of it: never a whole message
    let mut w = big.s.try_clone().unwrap();
    let writer = thread::spawn(move || {
        // The server stops reading it, then drops it: both end the write.
        let _ = w.write_all(&f);
    });
    site.srv
        .wait_stats("the big one evicted", TIMEOUT, |s| s.evicted == 1);
    match big.try_recv() {
        Err(e) => assert!(
            matches!(
                e.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
            ),
            "{e}"
        ),
        Ok(f) => panic!("an evicted connection got {f:?}"),
    }
    writer.join().unwrap();
    small.send(&text("still here"));
    assert_eq!(small.recv().text(), "still here");
    let stats = site.srv.stats();
    assert!(
        stats.client_memory < 4 << 20,
        "held {} after the eviction",
        stats.client_memory
    );
}
