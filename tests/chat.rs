//! Line chat: welcome, broadcast, rooms, commands, limits, slow members.

mod util;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use reactor::Config;
use util::*;

fn chat_config() -> Config {
    let mut cfg = Config::empty();
    cfg.chat = Some(loopback0());
    cfg
}

/// A connected chat member whose welcome line has been read.
struct Member {
    nick: String,
    w: TcpStream,
    r: Lines<TcpStream>,
}

impl Member {
    fn join(addr: SocketAddr) -> Member {
        Self::from_stream(connect(addr))
    }

    fn from_stream(s: TcpStream) -> Member {
        let w = s.try_clone().unwrap();
        let mut r = Lines::new(s, "chat member");
        let welcome = r.line();
        let nick = welcome
            .strip_prefix("* welcome to reactor chat, you are ")
            .and_then(|rest| rest.split(" in lobby").next())
            .unwrap_or_else(|| panic!("unexpected welcome line {welcome:?}"))
            .to_string();
        assert!(
            nick.starts_with("guest") && nick[5..].bytes().all(|b| b.is_ascii_digit()),
            "welcome names {nick:?}, want guest<id>: {welcome:?}"
        );
        assert_eq!(
            welcome,
            format!("* welcome to reactor chat, you are {nick} in lobby; /help for commands\n")
        );
        r.what = format!("member {nick}");
        Member { nick, w, r }
    }

    fn send(&mut self, bytes: &[u8]) {
        let what = format!("member {}", self.nick);
        write_all(&mut self.w, bytes, &what);
    }

    /// The next line that is not a `* ` notice (notices are returned too).
    fn next_message(&mut self) -> (String, Vec<String>) {
        self.r.until(|l| !l.starts_with("* "))
    }
}

/// Promise: every plain line reaches every OTHER member of the room,
/// complete and in per-sender order (20 members, 5 senders x 200 lines,
/// randomly fragmented writes, `\n` and `\r\n` endings).
#[test]
fn chat_broadcast_20_members_5_senders() {
    broadcast_20_members_5_senders(chat_config());
}

/// Promise: with `--chat-flush-delay`, fan-out held back and written in
/// batches still brings every plain line to every other member, complete
/// and in per-sender order (the same run as above, the output of several
/// turns coalesced into one write per member).
#[test]
fn chat_flush_delay_keeps_every_line_in_order() {
    let mut cfg = chat_config();
    cfg.limits.chat_flush_delay = Duration::from_millis(20);
    broadcast_20_members_5_senders(cfg);
}

fn broadcast_20_members_5_senders(cfg: Config) {
    let srv = start(cfg);
    let addr = srv.chat.unwrap();
    let members: Vec<Member> = (0..20).map(|_| Member::join(addr)).collect();
    let nicks: Vec<String> = members.iter().map(|m| m.nick.clone()).collect();
    let senders = 5;
    let per_sender = 200;

    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for (i, m) in members.into_iter().enumerate() {
        let Member { nick, w, mut r } = m;
        let nicks = nicks.clone();
        readers.push(thread::spawn(move || {
            let by_nick: HashMap<&str, usize> = nicks
                .iter()
                .enumerate()
                .map(|(j, n)| (n.as_str(), j))
                .collect();
            let mut next = vec![0usize; senders];
            let want_total = if i < senders {
                (senders - 1) * per_sender
            } else {
                senders * per_sender
            };
            let mut joins = Vec::new();
            let mut got = 0;
            while got < want_total {
                let l = r.line();
                if let Some(who) = l
                    .strip_prefix("* ")
                    .and_then(|x| x.strip_suffix(" joined lobby\n"))
                {
                    joins.push(who.to_string());
                    continue;
                }
                let (who, text) = l
                    .strip_prefix("[lobby] ")
                    .and_then(|x| x.split_once(": "))
                    .unwrap_or_else(|| panic!("{nick}: unexpected line {l:?}"));
                let s = by_nick[who];
                assert_ne!(s, i, "{nick} received its own line {l:?}");
                let want = format!("msg {s} {:03}\n", next[s]);
                assert_eq!(
                    text, want,
                    "{nick}: line from {who} out of order or damaged"
                );
                next[s] += 1;
                got += 1;
            }
            let want_joins: Vec<String> = nicks[i + 1..].to_vec();
            assert_eq!(joins, want_joins, "{nick}: join notices");
        }));
        if i < senders {
            writers.push(thread::spawn(move || {
                let mut w = w;
                let mut rng = Rng::new(500 + i as u64);
                let mut all = Vec::new();
                for n in 0..per_sender {
                    let end = if i % 2 == 1 { "\r\n" } else { "\n" };
                    all.extend_from_slice(format!("msg {i} {n:03}{end}").as_bytes());
                }
                let mut off = 0;
                while off < all.len() {
                    let k = rng.chunk(300).min(all.len() - off);
                    write_all(&mut w, &all[off..off + k], "chat sender");
                    off += k;
                }
                w
            }));
        } else {
            drop(w);
        }
    }
    let _keep_open: Vec<TcpStream> = writers
        .into_iter()
        .map(|t| t.join().expect("a sender failed"))
        .collect();
    for t in readers {
        t.join()
            .expect("a member did not receive every line in order");
    }
}

/// Promise: a member that never reads is dropped once its pending output
/// passes chat_output_hard (slow_dropped counted, room told `(too slow)`),
/// and the other members keep receiving every line.
#[test]
fn chat_slow_reader_is_dropped_others_get_everything() {
    let mut cfg = chat_config();
    cfg.limits.chat_output_hard = 64 * 1024;
    cfg.limits.chat_output_soft = 512 * 1024;
    cfg.limits.chat_soft_time = Duration::from_secs(10);
    let srv = start(cfg);
    let addr = srv.chat.unwrap();

    let mut sender = Member::join(addr);
    let b = Member::join(addr);
    let c = Member::join(addr);
    // The slow member: a small receive buffer so the kernel absorbs little.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect_timeout(&addr.into(), TIMEOUT).unwrap();
    let slow_stream: TcpStream = sock.into();
    slow_stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut slow = Member::from_stream(slow_stream);
    let slow_nick = slow.nick.clone();
    let sender_nick = sender.nick.clone();

    // Lines received so far by each fast member: the sender keeps at most
    // WINDOW lines in flight to them, so they really are keeping up.
    const WINDOW: usize = 16;
    let progress: Vec<Arc<AtomicUsize>> = (0..2).map(|_| Arc::default()).collect();
    let readers: Vec<_> = [b, c]
        .into_iter()
        .zip(progress.iter().cloned())
        .map(|(m, progress)| {
            let slow_nick = slow_nick.clone();
            let sender_nick = sender_nick.clone();
            thread::spawn(move || {
                let Member { nick, w: _w, mut r } = m;
                let notice = format!("* {slow_nick} left lobby (too slow)\n");
                let prefix = format!("[lobby] {sender_nick}: ");
                let mut saw_notice = false;
                let mut next = 0usize;
                loop {
                    let l = r.line();
                    if l == notice {
                        saw_notice = true;
                    } else if l.starts_with("* ") && l.ends_with(" joined lobby\n") {
                    } else if let Some(text) = l.strip_prefix(&prefix) {
                        if text == "done\n" {
                            return (next, saw_notice);
                        }
                        let want = format!("line {next:06} ");
                        assert!(
                            text.starts_with(&want) && text.len() == 1000,
                            "{nick}: expected {want:?}..., got {:?}",
                            &l[..l.len().min(80)]
                        );
                        next += 1;
                        progress.store(next, Ordering::Release);
                    } else {
                        panic!("{nick}: unexpected line {l:?} after {next} chat lines");
                    }
                }
            })
        })
        .collect();

    // Send ~1 KB lines (8 per write) until the server reports the drop, then
    // 200 more. Give up once 40 MB (far past any kernel buffering) and 5 s
    // have passed.
    let pad = "x".repeat(1000 - "line 000000 ".len() - 1);
    let min_lines = 40_000;
    let t0 = std::time::Instant::now();
    let mut sent = 0;
    let mut after_drop = None;
    while after_drop.is_some() || sent < min_lines || t0.elapsed() < Duration::from_secs(5) {
        let caught_up = wait_until(TIMEOUT, || {
            readers.iter().any(|t| t.is_finished())
                || progress
                    .iter()
                    .all(|p| p.load(Ordering::Acquire) + WINDOW >= sent + 8)
        });
        assert!(
            caught_up,
            "fast members stalled at {progress:?} of {sent} lines"
        );
        if readers.iter().any(|t| t.is_finished()) {
            break; // a reader failed: its panic is reported below
        }
        let mut batch = String::new();
        for _ in 0..8 {
            batch.push_str(&format!("line {sent:06} {pad}\n"));
            sent += 1;
        }
        sender.send(batch.as_bytes());
        if after_drop.is_none() && srv.stats().slow_dropped >= 1 {
            after_drop = Some(sent);
        }
        if after_drop.is_some_and(|d| sent >= d + 200) {
            break;
        }
    }
    sender.send(b"done\n");
    for t in readers {
        let (got, saw_notice) = t.join().expect("a fast member missed lines");
        assert_eq!(got, sent, "fast member got {got} of {sent} lines");
        assert!(
            saw_notice,
            "fast member never got `* {slow_nick} left lobby (too slow)`"
        );
    }
    assert!(
        after_drop.is_some(),
        "slow member never dropped after {sent} lines of 1000 bytes; stats {:?}",
        srv.stats()
    );
    assert!(srv.stats().slow_dropped >= 1);

    // The slow member is told (an ERROR line after the last chat bytes it
    // got) and closed.
    let (tail, end) = slow.r.rest();
    let text = String::from_utf8_lossy(&tail);
    let last_chat = text.rfind("[lobby]").map(|i| i + 1).unwrap_or(0);
    assert!(
        text[last_chat..].contains("ERROR"),
        "slow member's stream ({} bytes, then {end:?}) has no ERROR after its last chat line; ends {:?}",
        tail.len(),
        String::from_utf8_lossy(&tail[tail.len().saturating_sub(120)..])
    );
    // Whole lines, then the error on a line of its own: the backlog is cut
    // at a line boundary, never in the middle of a chat line.
    let error = "ERROR too slow: output limit reached, disconnecting\n";
    assert!(
        text.ends_with(error),
        "stream ends {:?}",
        &text[text.len().saturating_sub(120)..]
    );
    let before = &text[..text.len() - error.len()];
    assert!(
        before.is_empty() || before.ends_with('\n'),
        "the ERROR line follows a cut-off line: {:?}",
        &before[before.len().saturating_sub(120)..]
    );
}

/// Promise: /nick renames (and others see the new name), /join moves a member
/// to a room with the member count, rooms are isolated, /quit says bye and closes.
#[test]
fn chat_nick_join_quit() {
    let srv = start(chat_config());
    let addr = srv.chat.unwrap();
    let mut a = Member::join(addr);
    let mut b = Member::join(addr);
    let mut c = Member::join(addr);
    let mut d = Member::join(addr);
    a.r.expect(&format!("* {} joined lobby\n", b.nick));

    a.send(b"/nick alice\n");
    let (l, _) = a.r.until(|l| l.starts_with("* you are now"));
    assert_eq!(l, "* you are now alice\n");
    a.send(b"hello everyone\n");
    for m in [&mut b, &mut c] {
        let (l, _) = m.next_message();
        assert_eq!(l, "[lobby] alice: hello everyone\n");
    }

    a.send(b"/join den\n");
    let (l, _) = a.r.until(|l| l.starts_with("* you joined"));
    assert_eq!(l, "* you joined den (1 members)\n");
    b.send(b"/join den\n");
    let (l, _) = b.r.until(|l| l.starts_with("* you joined"));
    assert_eq!(l, "* you joined den (2 members)\n");

    b.send(b"in the den\n");
    let (l, _) = a.next_message();
    assert_eq!(l, format!("[den] {}: in the den\n", b.nick));

    // Lobby members do not see den traffic; den members do not see lobby's.
    d.send(b"in the lobby\n");
    let (l, _) = c.next_message();
    assert_eq!(l, format!("[lobby] {}: in the lobby\n", d.nick));

    a.send(b"/quit\n");
    let (_, skipped) = a.r.until(|l| l == "* bye\n");
    assert!(
        skipped.iter().all(|l| l.starts_with("* ")),
        "den member saw non-den traffic before bye: {skipped:?}"
    );
    let (rest, _end) = a.r.rest();
    assert!(
        rest.is_empty(),
        "bytes after `* bye`: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

/// Promise: a line of exactly max_line bytes is delivered; one byte more gets
/// `ERROR line too long (max N bytes)` and the connection is closed.
#[test]
fn chat_line_too_long_closes() {
    let mut cfg = chat_config();
    cfg.limits.max_line = 64;
    let srv = start(cfg);
    let addr = srv.chat.unwrap();
    let mut a = Member::join(addr);
    let mut b = Member::join(addr);
    let mut c = Member::join(addr);

    let ok = "y".repeat(64);
    a.send(format!("{ok}\n").as_bytes());
    let (l, _) = b.next_message();
    assert_eq!(l, format!("[lobby] {}: {ok}\n", a.nick));

    a.send(format!("{}\n", "z".repeat(65)).as_bytes());
    let (l, _) = a.r.until(|l| !l.starts_with("* "));
    assert_eq!(l, "ERROR line too long (max 64 bytes)\n");
    let (rest, _end) = a.r.rest();
    assert!(
        rest.is_empty(),
        "bytes after the ERROR: {:?}",
        String::from_utf8_lossy(&rest)
    );

    // The long line never reached the room.
    c.send(b"marker\n");
    let (l, _) = b.next_message();
    assert_eq!(l, format!("[lobby] {}: marker\n", c.nick));
}

/// Promise: an invalid UTF-8 line gets `ERROR invalid UTF-8, line dropped`,
/// is not relayed, and the connection stays usable.
#[test]
fn chat_invalid_utf8_line_dropped() {
    let srv = start(chat_config());
    let addr = srv.chat.unwrap();
    let mut a = Member::join(addr);
    let mut b = Member::join(addr);

    a.send(b"bad \xff\xfe line\n");
    let (l, _) = a.next_message();
    assert_eq!(l, "ERROR invalid UTF-8, line dropped\n");

    a.send(b"still here\n");
    let (l, _) = b.next_message();
    assert_eq!(l, format!("[lobby] {}: still here\n", a.nick));
}

/// Promise: the output cap judges members that do not read, not bursts: a
/// member that is reading gets all of a 128 KB paste (one write of 128 lines
/// of 1000 bytes) under chat_output_hard = 64 KiB, and nobody is dropped.
#[test]
fn chat_burst_to_reading_member_is_not_dropped() {
    let mut cfg = chat_config();
    cfg.limits.chat_output_hard = 64 * 1024;
    cfg.limits.chat_output_soft = 512 * 1024;
    let srv = start(cfg);
    let addr = srv.chat.unwrap();
    let mut a = Member::join(addr);
    let b = Member::join(addr);
    let a_nick = a.nick.clone();
    let reader = thread::spawn(move || {
        let mut b = b;
        for n in 0..128 {
            let (l, _) = b.next_message();
            assert!(
                l.starts_with(&format!("[lobby] {a_nick}: line {n:06} ")),
                "reading member: want line {n}, got {:?}",
                &l[..l.len().min(80)]
            );
        }
    });
    let pad = "x".repeat(1000 - "line 000000 ".len() - 1);
    let paste: String = (0..128).map(|n| format!("line {n:06} {pad}\n")).collect();
    a.send(paste.as_bytes());
    reader.join().expect("reading member lost the paste");
    assert_eq!(srv.stats().slow_dropped, 0, "a reading member was dropped");
}
