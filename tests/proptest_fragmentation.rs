//! Fragmentation properties: each protocol state machine gives the same
//! output whatever the input's fragmentation.
//!
//! The reactor hands a service whatever one `read` returned, appended to
//! the bytes the service left unconsumed last time. A TCP stream may be cut
//! anywhere, so a service must answer the same bytes the same way however
//! they were cut. Each property here builds a random script, feeds it to a
//! fresh state machine once "whole" (each event in one call) and once split
//! at random points (the way the reactor does it: a pending buffer per
//! connection, append, call `input`, drop `consumed`), and compares every
//! byte sent and every verdict.
//!
//! - chat: lines from several members (messages, commands, CRLF and LF,
//!   invalid UTF-8, lines around and over the limit, raw bytes), with
//!   partial lines arriving while others talk.
//! - HTTP: pipelined GET/HEAD/POST/other requests, valid and invalid, with
//!   `Content-Length` and chunked bodies, files with ranges and validators.
//!   The only documented fragmentation dependences are allowed: an interim
//!   `100 Continue` (sent only while the body is still to come), and an
//!   invalid chunked body (400/413 in place of the response when its bad
//!   bytes are already here; the response then a close when they come later).
//!   These properties once found that the status of a refused head
//!   depended on its fragmentation (400 against 414, 431 or 505); the
//!   parser now judges a bad head on its shortest refusable prefix, and
//!   `bad_head_status_ignores_fragmentation` keeps the reproducers.
//! - the chunked decoder, through `HttpConn::input`: a valid chunked body
//!   is consumed exactly (the request pipelined after it is answered as if
//!   the body were absent), however it is cut.
//!
//! Echo and greet have no parser (echo returns the bytes it got, greet
//! ignores input), so they have no fragmentation property.
//!
//! Case counts are modest so the file runs in a few seconds in release mode;
//! `PROPTEST_CASES=N` raises them all for a longer local run.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::sample::{Index, select};
use reactor::service::chat::{ChatHub, Leave};
use reactor::service::http::{FileBody, HttpConfig, HttpConn, Site};
use reactor::service::{Outbox, Verdict};

/// Cases per property unless `PROPTEST_CASES` says otherwise.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        // Keep failures reproducible from the printed seed only; no files.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ===========================================================================
// Chat
// ===========================================================================

/// The hub's line limit: small, so lines around and over it are cheap.
const MAX_LINE: usize = 24;

/// Connection ids of the members (slab keys: not necessarily dense).
const IDS: [usize; 4] = [0, 1, 4, 2];

/// Nicks to try: valid, taken, guest-like, too long, invalid characters.
const NICKS: &[&str] = &[
    "alice",
    "bob",
    "a_b-c",
    "guest0",
    "guest1",
    "GUEST4",
    "guest",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "bad name",
    "caf\u{e9}",
];

/// Rooms to try: new, the lobby, invalid.
const ROOMS: &[&str] = &["r1", "r2", "lobby", "x_y", "bad room", "!"];

/// Everything a member may say on one line (without its line ending).
#[derive(Clone, Debug)]
enum Line {
    /// A message.
    Text(String),
    /// A command or a `//` escape, as typed.
    Command(String),
    /// An empty line (ignored).
    Empty,
    /// Bytes that are not UTF-8.
    BadUtf8(Vec<u8>),
    /// `n` bytes of `x`: around the limit.
    Long(usize),
    /// Any bytes but `\n`.
    Raw(Vec<u8>),
}

impl Line {
    /// The line's bytes, with its ending.
    fn render(&self, crlf: bool, out: &mut Vec<u8>) {
        match self {
            Line::Text(s) | Line::Command(s) => out.extend_from_slice(s.as_bytes()),
            Line::Empty => {}
            Line::BadUtf8(b) | Line::Raw(b) => out.extend_from_slice(b),
            Line::Long(n) => out.resize(out.len() + n, b'x'),
        }
        out.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
    }
}

/// A command line.
fn command() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(NICKS).prop_map(|n| format!("/nick {n}")),
        4 => select(ROOMS).prop_map(|r| format!("/join {r}")),
        2 => Just("/who".to_string()),
        2 => Just("/rooms".to_string()),
        1 => Just("/help".to_string()),
        1 => Just("/nick".to_string()),
        1 => Just("/join   ".to_string()),
        1 => Just("/frob it".to_string()),
        1 => Just("/".to_string()),
        2 => "//[a-z/ ]{0,8}",
        1 => Just("/quit".to_string()),
    ]
}

/// One line of a script.
fn line() -> impl Strategy<Value = Line> {
    prop_oneof![
        6 => "[a-z ]{1,10}".prop_map(Line::Text),
        6 => command().prop_map(Line::Command),
        1 => Just(Line::Empty),
        1 => prop::collection::vec(0x80u8..=0xff, 1..4).prop_map(Line::BadUtf8),
        1 => (MAX_LINE - 2..=MAX_LINE + 3).prop_map(Line::Long),
        1 => prop::collection::vec(any::<u8>().prop_filter("no LF", |&b| b != b'\n'), 0..12)
            .prop_map(Line::Raw),
    ]
}

/// One event of a chat script. `who` picks a member among those in play.
#[derive(Clone, Debug)]
enum ChatEvent {
    /// Complete lines from a member. Split feeding cuts the bytes at `cuts`
    /// and may deliver a prefix of the first line (`early`: how much, and up
    /// to how many events sooner) while other members talk.
    Input {
        /// The member.
        who: Index,
        /// The lines, each with `true` for CRLF.
        lines: Vec<(Line, bool)>,
        /// Where the split feed cuts this event's bytes.
        cuts: Vec<Index>,
        /// A prefix of the first line sent early: length, events sooner.
        early: Option<(Index, usize)>,
    },
    /// The member's connection ends, with this reason.
    Drop {
        /// The member.
        who: Index,
        /// 0: closed, 1: too slow, 2: idle.
        why: u8,
    },
    /// The member (re)connects (a stale member with that id is replaced).
    Connect {
        /// The member.
        who: Index,
    },
}

/// A chat script: how many members, then events.
fn chat_script() -> impl Strategy<Value = (usize, Vec<ChatEvent>)> {
    let input = (
        any::<Index>(),
        prop::collection::vec((line(), any::<bool>()), 1..4),
        prop::collection::vec(any::<Index>(), 0..5),
        prop::option::weighted(0.4, (any::<Index>(), 1usize..=3)),
    )
        .prop_map(|(who, lines, cuts, early)| ChatEvent::Input {
            who,
            lines,
            cuts,
            early,
        });
    let event = prop_oneof![
        12 => input,
        1 => (any::<Index>(), 0u8..3).prop_map(|(who, why)| ChatEvent::Drop { who, why }),
        1 => any::<Index>().prop_map(|who| ChatEvent::Connect { who }),
    ];
    (2usize..=IDS.len(), prop::collection::vec(event, 1..24))
}

/// What the hub is asked to do, one call each.
#[derive(Clone, Debug)]
enum ChatStep {
    /// `input` with these bytes appended to the member's pending bytes.
    Bytes(usize, Vec<u8>),
    /// `connect`.
    Connect(usize),
    /// `disconnect` with this reason.
    Drop(usize, Leave),
}

/// Everything sent, by connection id.
#[derive(Default, Debug, PartialEq, Eq)]
struct Mail(BTreeMap<usize, Vec<u8>>);

impl Outbox for Mail {
    fn send(&mut self, to: usize, bytes: &[u8]) {
        self.0.entry(to).or_default().extend_from_slice(bytes);
    }
}

/// What a chat run ends with.
#[derive(Debug, PartialEq, Eq)]
struct ChatRun {
    /// Every byte each connection was sent.
    mail: Mail,
    /// Per member: how many times its input was closed by a `Close` verdict.
    closes: BTreeMap<usize, u32>,
    /// Members and rooms at the end.
    members: usize,
    /// Rooms at the end.
    rooms: usize,
    /// Each id's nick at the end.
    nicks: Vec<Option<String>>,
}

/// Runs `steps` against a fresh hub as the reactor would: each member has
/// a pending buffer; `Close` stops its input, then the connection ends
/// (`disconnect` with `Closed`, as the loop does when the close completes).
fn run_chat(members: usize, steps: &[ChatStep]) -> ChatRun {
    let mut hub = ChatHub::new(MAX_LINE);
    let mut mail = Mail::default();
    let mut pending: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
    let mut open: BTreeMap<usize, bool> = BTreeMap::new();
    let mut closes = BTreeMap::new();
    for &id in &IDS[..members] {
        hub.connect(id, &mut mail);
        open.insert(id, true);
    }
    for step in steps {
        match step {
            ChatStep::Connect(id) => {
                hub.connect(*id, &mut mail);
                open.insert(*id, true);
                pending.remove(id);
            }
            ChatStep::Drop(id, why) => {
                hub.disconnect(*id, *why, &mut mail);
                open.insert(*id, false);
                pending.remove(id);
            }
            ChatStep::Bytes(id, bytes) => {
                if !open.get(id).copied().unwrap_or(false) {
                    continue;
                }
                let buf = pending.entry(*id).or_default();
                buf.extend_from_slice(bytes);
                let (used, verdict) = hub.input(*id, buf, &mut mail);
                assert!(used <= buf.len(), "consumed {used} of {}", buf.len());
                buf.drain(..used);
                assert!(
                    buf.len() < MAX_LINE + 2,
                    "a pending partial line reached the window: {buf:?}"
                );
                if verdict == Verdict::Close {
                    *closes.entry(*id).or_insert(0) += 1;
                    open.insert(*id, false);
                    pending.remove(id);
                    hub.disconnect(*id, Leave::Closed, &mut mail);
                }
            }
        }
    }
    for (id, out) in &mail.0 {
        assert!(
            out.is_empty() || out.ends_with(b"\n"),
            "output to {id} ends mid-line: {out:?}"
        );
    }
    ChatRun {
        mail,
        closes,
        members: hub.members(),
        rooms: hub.rooms(),
        nicks: IDS.iter().map(|&id| hub.nick(id)).collect(),
    }
}

/// The reason a `ChatEvent::Drop` names.
fn leave(why: u8) -> Leave {
    match why {
        0 => Leave::Closed,
        1 => Leave::TooSlow,
        _ => Leave::TimedOut,
    }
}

/// The script's steps, each event's bytes in one call.
fn chat_whole(members: usize, events: &[ChatEvent]) -> Vec<ChatStep> {
    events
        .iter()
        .map(|e| match e {
            ChatEvent::Input { who, lines, .. } => {
                let mut bytes = Vec::new();
                for (line, crlf) in lines {
                    line.render(*crlf, &mut bytes);
                }
                ChatStep::Bytes(IDS[who.index(members)], bytes)
            }
            ChatEvent::Drop { who, why } => ChatStep::Drop(IDS[who.index(members)], leave(*why)),
            ChatEvent::Connect { who } => ChatStep::Connect(IDS[who.index(members)]),
        })
        .collect()
}

/// The script's steps with each event's bytes cut at its `cuts`, and an
/// `early` prefix of its first line moved up to that many events sooner,
/// over other members' input only (so no event of this member, no connect
/// and no drop is crossed). The prefix holds no `\n` and at most `MAX_LINE`
/// bytes, so it cannot complete or overflow a line on its own.
fn chat_split(members: usize, events: &[ChatEvent]) -> Vec<ChatStep> {
    let whole = chat_whole(members, events);
    let mut slots: Vec<Vec<ChatStep>> = vec![Vec::new(); events.len()];
    for (i, (event, step)) in events.iter().zip(&whole).enumerate() {
        let (ChatEvent::Input { cuts, early, .. }, ChatStep::Bytes(id, bytes)) = (event, step)
        else {
            slots[i].push(step.clone());
            continue;
        };
        let mut start = 0;
        if let Some((len, back)) = early {
            let first_line = bytes.iter().position(|&b| b == b'\n').unwrap_or(0);
            let len = len.index(first_line.min(MAX_LINE) + 1);
            // How far back: only over other members' input.
            let mut to = i;
            while to > 0 && i - to < *back {
                match &whole[to - 1] {
                    ChatStep::Bytes(other, _) if other != id => to -= 1,
                    _ => break,
                }
            }
            if len > 0 && to < i {
                slots[to].insert(0, ChatStep::Bytes(*id, bytes[..len].to_vec()));
                start = len;
            }
        }
        let rest = &bytes[start..];
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(rest.len() + 1)).collect();
        points.push(rest.len());
        points.sort_unstable();
        let mut from = 0;
        for to in points {
            if to > from {
                slots[i].push(ChatStep::Bytes(*id, rest[from..to].to_vec()));
                from = to;
            }
        }
    }
    slots.into_iter().flatten().collect()
}

/// The same script one byte per call.
fn bytewise(steps: &[ChatStep]) -> Vec<ChatStep> {
    let mut out = Vec::new();
    for step in steps {
        match step {
            ChatStep::Bytes(id, bytes) => {
                out.extend(bytes.iter().map(|&b| ChatStep::Bytes(*id, vec![b])));
            }
            other => out.push(other.clone()),
        }
    }
    out
}

/// Output as text, for failure messages.
fn show(mail: &Mail) -> String {
    let mut s = String::new();
    for (id, out) in &mail.0 {
        s.push_str(&format!("--- {id}\n{}", String::from_utf8_lossy(out)));
    }
    s
}

proptest! {
    #![proptest_config(config(2000))]

    /// Chat: the same per-member output and verdicts, whole or split.
    #[test]
    fn chat_output_ignores_fragmentation((members, events) in chat_script()) {
        let whole = run_chat(members, &chat_whole(members, &events));
        let split = run_chat(members, &chat_split(members, &events));
        prop_assert_eq!(&whole, &split, "whole:\n{}\nsplit:\n{}", show(&whole.mail), show(&split.mail));
    }

    /// Chat: the same, one byte per call.
    #[test]
    fn chat_output_bytewise((members, events) in chat_script()) {
        let steps = chat_whole(members, &events);
        let whole = run_chat(members, &steps);
        let bytes = run_chat(members, &bytewise(&steps));
        prop_assert_eq!(&whole, &bytes, "whole:\n{}\nbytewise:\n{}", show(&whole.mail), show(&bytes.mail));
    }
}

// ===========================================================================
// HTTP
// ===========================================================================

/// The `Date` value every call gets (the one input that varies in time).
const DATE: &[u8] = b"Sun, 06 Nov 1994 08:49:37 GMT";

/// The interim response a client waiting to send its body gets.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Request-body budget: small, so chunked bodies reach 413 cheaply.
const MAX_BODY: u64 = 64;

/// A `Site` with fixed bodies.
struct FakeSite;

impl Site for FakeSite {
    fn stats_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"open\":1}");
    }

    fn metrics_text(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"# TYPE open gauge\nopen 1\n");
    }
}

/// A served root with a file, a directory with an index and one without.
/// Made once per test binary under Cargo's temporary directory.
fn root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("proptest-fragmentation-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("dir")).expect("mkdir dir");
        fs::create_dir_all(root.join("sub")).expect("mkdir sub");
        let text: Vec<u8> = (0..100u8).map(|i| b'a' + i % 26).collect();
        fs::write(root.join("a.txt"), &text).expect("write a.txt");
        fs::write(root.join("dir/index.html"), b"<p>index</p>").expect("write index");
        fs::write(root.join("sub/one.css"), b"p{}").expect("write one.css");
        fs::write(root.join("sub/two words.txt"), b"2").expect("write two");
        root
    })
    .clone()
}

/// Limits small enough that random requests reach them.
fn http_cfg(pipeline: usize, with_root: bool, max_body: u64) -> HttpConfig {
    let mut cfg = HttpConfig {
        max_body,
        max_target: 64,
        max_header_line: 96,
        max_headers_bytes: 256,
        max_headers: 8,
        max_pipeline: pipeline,
        // Fields added later keep their defaults.
        ..HttpConfig::default()
    };
    cfg.root = with_root.then(root);
    cfg
}

/// One chunk of a chunked body, and how its framing is spelled.
#[derive(Clone, Debug)]
struct Chunk {
    /// The data (1.. bytes).
    data: Vec<u8>,
    /// Upper-case hex digits.
    upper: bool,
    /// Leading zeros on the size.
    zeros: usize,
    /// A chunk extension (with optional whitespace before the `;`).
    ext: Option<&'static str>,
    /// Bare LF line ends instead of CRLF.
    lf: bool,
}

/// Chunk extensions to try.
const EXTS: &[&str] = &[";a=b", " ;x", "\t;name=\"q v\"", ";;"];

impl Chunk {
    /// Appends the chunk's size line, data and data end.
    fn render(&self, out: &mut Vec<u8>) {
        let eol: &[u8] = if self.lf { b"\n" } else { b"\r\n" };
        let size = if self.upper {
            format!("{:0w$X}", self.data.len(), w = self.zeros + 1)
        } else {
            format!("{:0w$x}", self.data.len(), w = self.zeros + 1)
        };
        out.extend_from_slice(size.as_bytes());
        out.extend_from_slice(self.ext.unwrap_or("").as_bytes());
        out.extend_from_slice(eol);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(eol);
    }
}

/// A chunk with 1..=`max` data bytes.
fn chunk(max: usize) -> impl Strategy<Value = Chunk> {
    (
        prop::collection::vec(any::<u8>(), 1..=max),
        any::<bool>(),
        0usize..3,
        prop::option::weighted(0.3, select(EXTS)),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(data, upper, zeros, ext, lf)| Chunk {
            data,
            upper,
            zeros,
            ext,
            lf,
        })
}

/// A request body.
#[derive(Clone, Debug)]
enum Body {
    /// None at all.
    None,
    /// `Content-Length` and these bytes.
    Length(Vec<u8>),
    /// `Transfer-Encoding: chunked`: chunks, the last chunk's extension,
    /// trailer fields.
    Chunked(Vec<Chunk>, Option<&'static str>, Vec<&'static str>),
}

/// Trailer fields to try.
const TRAILERS: &[&str] = &["X-T: 1", "Expires: never", "A:"];

/// Appends a chunked body's last chunk, trailers and blank line.
fn render_chunked(chunks: &[Chunk], ext: Option<&str>, trailers: &[&str], out: &mut Vec<u8>) {
    for c in chunks {
        c.render(out);
    }
    out.extend_from_slice(b"0");
    out.extend_from_slice(ext.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for t in trailers {
        out.extend_from_slice(t.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A chunked body within `MAX_BODY`.
fn chunked_body() -> impl Strategy<Value = Body> {
    (
        prop::collection::vec(chunk(16), 0..4),
        prop::option::weighted(0.2, select(EXTS)),
        prop::collection::vec(select(TRAILERS), 0..3),
    )
        .prop_map(|(c, e, t)| Body::Chunked(c, e, t))
}

/// A request body (or none).
fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        4 => Just(Body::None),
        2 => prop::collection::vec(any::<u8>(), 0..20).prop_map(Body::Length),
        2 => chunked_body(),
    ]
}

/// A request head that httparse and our rules accept (the target or the
/// method may still get an error response, as they would on the wire).
#[derive(Clone, Debug)]
struct Head {
    /// The method.
    method: &'static str,
    /// The target.
    target: &'static str,
    /// HTTP/1.0 rather than 1.1.
    v10: bool,
    /// A `Connection` header.
    conn: Option<&'static str>,
    /// `Expect: 100-continue`.
    expect: bool,
    /// More header fields.
    extra: Vec<&'static str>,
}

/// Methods to try (lower-case `get` is not GET: 405).
const METHODS: &[&str] = &["GET", "GET", "HEAD", "POST", "DELETE", "get"];

/// Targets to try: built-ins, files, directories, forms, traversal.
const TARGETS: &[&str] = &[
    "/",
    "/stats",
    "/metrics",
    "/missing",
    "/a.txt",
    "/a.txt?x=1#f",
    "http://h/a.txt",
    "/x/../a.txt",
    "/%61.txt",
    "/dir",
    "/dir/",
    "/sub/",
    "/../a.txt",
    "/%2e%2e/a.txt",
    "/a%2fb",
    "/a%00",
    "*",
];

/// More header fields to try.
const EXTRA: &[&str] = &[
    "Accept: */*",
    "Range: bytes=0-9",
    "Range: bytes=-5",
    "Range: bytes=200-",
    "Range: bytes=0-1,3-4",
    "If-None-Match: *",
    "If-Modified-Since: Sun, 06 Nov 2094 08:49:37 GMT",
    "If-Range: \"nope\"",
    "X-Empty:",
];

/// A valid head.
fn head() -> impl Strategy<Value = Head> {
    (
        select(METHODS),
        select(TARGETS),
        prop::bool::weighted(0.1),
        prop::option::weighted(0.15, select(&["close", "keep-alive", "Keep-Alive, x"][..])),
        prop::bool::weighted(0.15),
        prop::collection::vec(select(EXTRA), 0..3),
    )
        .prop_map(|(method, target, v10, conn, expect, extra)| Head {
            method,
            target,
            v10,
            conn,
            expect,
            extra,
        })
}

impl Head {
    /// Appends the head, with the framing header for `body`.
    fn render(&self, body: &Body, out: &mut Vec<u8>) {
        let version = if self.v10 { "1.0" } else { "1.1" };
        out.extend_from_slice(
            format!(
                "{} {} HTTP/{version}\r\nHost: h\r\n",
                self.method, self.target
            )
            .as_bytes(),
        );
        if let Some(c) = self.conn {
            out.extend_from_slice(format!("Connection: {c}\r\n").as_bytes());
        }
        if self.expect {
            out.extend_from_slice(b"Expect: 100-continue\r\n");
        }
        for h in &self.extra {
            out.extend_from_slice(format!("{h}\r\n").as_bytes());
        }
        match body {
            Body::None => {}
            Body::Length(b) => {
                out.extend_from_slice(format!("Content-Length: {}\r\n", b.len()).as_bytes());
            }
            Body::Chunked(..) => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        }
        out.extend_from_slice(b"\r\n");
        match body {
            Body::None => {}
            Body::Length(b) => out.extend_from_slice(b),
            Body::Chunked(c, e, t) => render_chunked(c, *e, t, out),
        }
    }
}

/// Heads that must be refused (each then closes), and near misses.
const BAD_HEADS: &[&str] = &[
    "GET / HTTP/2.0\r\nHost: h\r\n\r\n",
    "GET / HTTP/1.32\r\nHost: h\r\n\r\n",
    "GET / HTTX/1.1\r\nHost: h\r\n\r\n",
    "GET / HTTP/1.1\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
    "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: h\r\nExpect: bogus\r\n\r\n",
    "GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: h\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: h\r\nX: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\nG: 7\r\nH: 8\r\n\r\n",
    "GET / HTTP/1.1\r\nHost : h\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: h\rX: 1\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n",
    "GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
    "GARBAGE\r\n\r\n",
    "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
    "GET / HTTP/1.1\nHost: h\n\n",
    "HEAD / HTTP/2.0\r\nHost: h\r\n\r\n",
    "HEAD / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n",
];

/// Bad chunked bodies (each follows a chunked head; 400 or 413).
const BAD_BODIES: &[&str] = &[
    "zz\r\n",
    "5\r\nabcdefg\r\n0\r\n\r\n",
    "5\rX\r\n",
    "100\r\n",
    "41\r\n",
    "00000000000000001\r\n",
    "3;\x01\r\nabc\r\n0\r\n\r\n",
    "3\r\nabc\r\n0\r\nno colon\r\n\r\n",
    "3\r\nabc\r\n0x\r\n\r\n",
    "-1\r\n",
    "3\r\nabc\rX",
];

/// One request of an HTTP script.
#[derive(Clone, Debug)]
enum Req {
    /// A valid head and a valid body.
    Good(Head, Body),
    /// A head to refuse, or a near miss.
    Bad(&'static str),
    /// Bytes from a request-like alphabet (usually partial or refused).
    Noise(Vec<u8>),
    /// A valid chunked head with a bad body. Always last in a script: what
    /// it gets depends on how the body is cut (see the module docs).
    BadBody(Head, &'static str),
}

impl Req {
    /// Appends the request's bytes; `valid_body` replaces a bad body by
    /// an empty valid one.
    fn render(&self, valid_body: bool, out: &mut Vec<u8>) {
        match self {
            Req::Good(head, body) => head.render(body, out),
            Req::Bad(raw) => out.extend_from_slice(raw.as_bytes()),
            Req::Noise(raw) => out.extend_from_slice(raw),
            Req::BadBody(head, bad) => {
                head.render(&Body::Chunked(Vec::new(), None, Vec::new()), out);
                if !valid_body {
                    // Take off the valid `0\r\n\r\n` just rendered.
                    out.truncate(out.len() - 5);
                    out.extend_from_slice(bad.as_bytes());
                }
            }
        }
    }
}

/// Bytes of a request-like alphabet.
fn noise() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(select(&b"GET /HTP1.0\r\n:Host hCL-chunked"[..]), 1..40)
}

/// An HTTP script: requests (a bad body only last), the pipeline limit,
/// whether files are served, and where the split feed cuts.
fn http_script() -> impl Strategy<Value = (Vec<Req>, usize, bool, Vec<Index>)> {
    let req = prop_oneof![
        12 => (head(), body()).prop_map(|(h, b)| Req::Good(h, b)),
        2 => select(BAD_HEADS).prop_map(Req::Bad),
        1 => noise().prop_map(Req::Noise),
    ];
    let last = prop::option::weighted(
        0.3,
        (head(), select(BAD_BODIES)).prop_map(|(h, b)| Req::BadBody(h, b)),
    );
    (
        prop::collection::vec(req, 1..8),
        last,
        1usize..=4,
        any::<bool>(),
        prop::collection::vec(any::<Index>(), 0..12),
    )
        .prop_map(|(mut reqs, last, pipeline, files, cuts)| {
            reqs.extend(last);
            (reqs, pipeline, files, cuts)
        })
}

/// What a connection run ends with.
#[derive(Debug, PartialEq, Eq)]
struct HttpRun {
    /// Every byte sent (file bodies inline).
    out: Vec<u8>,
    /// Responses counted by `Progress::responses`.
    responses: u32,
    /// A verdict closed the connection.
    closed: bool,
    /// Bytes left unconsumed at the end.
    left: Vec<u8>,
    /// What `at_eof` says of them (None when closed).
    at_eof: Option<Verdict>,
}

/// Appends the bytes a `FileBody` names.
fn read_body(mut body: FileBody, out: &mut Vec<u8>) {
    body.file
        .seek(SeekFrom::Start(body.offset))
        .expect("seek file body");
    let start = out.len();
    body.file
        .take(body.len)
        .read_to_end(out)
        .expect("read file body");
    assert_eq!((out.len() - start) as u64, body.len, "file body short");
}

/// Runs a connection as the loop does: append each piece to the buffer,
/// call `input` (again while it says `again`), drop what it consumed,
/// stream file bodies inline, stop at `Close`. Checks on every call that
/// the verdict and `consumed` are consistent.
fn run_http(cfg: &HttpConfig, pieces: &[&[u8]]) -> HttpRun {
    let mut conn = HttpConn::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let mut responses = 0;
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            let before = out.len();
            let p = conn.input(&buf, &mut out, cfg, DATE, &FakeSite);
            assert!(p.consumed <= buf.len(), "consumed past the input");
            assert!(
                out.len() == before || out[before..].starts_with(b"HTTP/1.1 "),
                "output does not start a response"
            );
            responses += p.responses;
            buf.drain(..p.consumed);
            if let Some(body) = p.file {
                assert!(body.len > 0, "empty file body returned");
                read_body(body, &mut out);
            }
            if p.verdict == Verdict::Close {
                assert_eq!(conn.at_eof(&buf, cfg), Verdict::Close);
                return HttpRun {
                    out,
                    responses,
                    closed: true,
                    left: Vec::new(),
                    at_eof: None,
                };
            }
            assert!(!p.again || p.consumed > 0, "again without progress");
            if !p.again {
                // Waiting for bytes must be right: another call on the same
                // bytes would do nothing, and `at_eof` agrees.
                let mut probe = conn;
                let mut scratch = Vec::new();
                let q = probe.input(&buf, &mut scratch, cfg, DATE, &FakeSite);
                assert!(
                    q.consumed == 0 && q.responses == 0 && q.verdict == Verdict::Continue,
                    "input stopped with work left: {q:?} on {:?}",
                    String::from_utf8_lossy(&buf)
                );
                break;
            }
        }
    }
    let at_eof = Some(conn.at_eof(&buf, cfg));
    HttpRun {
        out,
        responses,
        closed: false,
        left: buf,
        at_eof,
    }
}

/// `bytes` cut at `cuts` (indices into its length).
fn cut<'a>(bytes: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    points.push(bytes.len());
    points.sort_unstable();
    let mut pieces = Vec::new();
    let mut from = 0;
    for to in points {
        if to > from {
            pieces.push(&bytes[from..to]);
            from = to;
        }
    }
    pieces
}

/// `out` without interim `100 Continue` responses.
fn without_continue(out: &[u8]) -> Vec<u8> {
    let mut kept = Vec::with_capacity(out.len());
    let mut rest = out;
    while !rest.is_empty() {
        if rest.starts_with(CONTINUE) {
            rest = &rest[CONTINUE.len()..];
        } else {
            kept.push(rest[0]);
            rest = &rest[1..];
        }
    }
    kept
}

/// Checks a split run against the whole run(s) of the same script: the
/// same bytes less interim `100 Continue`s, responses, verdict and rest. A
/// script ending in a bad chunked body may instead match `valid` (the
/// whole run with that body made valid) in its bytes, then close.
fn same_run(whole: &HttpRun, valid: Option<&HttpRun>, split: &HttpRun) -> Result<(), String> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if whole.out.windows(CONTINUE.len()).any(|w| w == CONTINUE) {
        return Err(format!(
            "100 Continue with the body here: {}",
            text(&whole.out)
        ));
    }
    let got = without_continue(&split.out);
    let same = |w: &HttpRun| got == w.out && split.responses == w.responses;
    if same(whole) && split.closed == whole.closed && split.left == whole.left {
        if split.at_eof == whole.at_eof {
            return Ok(());
        }
        return Err(format!("at_eof {:?} vs {:?}", whole.at_eof, split.at_eof));
    }
    if let Some(valid) = valid
        && same(valid)
        && split.closed
    {
        return Ok(());
    }
    Err(format!(
        "whole ({} responses, closed {}, left {:?}):\n{}\nsplit ({} responses, closed {}, left {:?}):\n{}",
        whole.responses,
        whole.closed,
        text(&whole.left),
        text(&whole.out),
        split.responses,
        split.closed,
        text(&split.left),
        text(&got)
    ))
}

/// The status of the response starting at `at` in `out`.
fn status_at(out: &[u8], at: usize) -> Option<u16> {
    std::str::from_utf8(out.get(at + 9..at + 12)?)
        .ok()?
        .parse()
        .ok()
}

/// The script's bytes (`valid_body`: a bad last body made valid).
fn render(reqs: &[Req], valid_body: bool) -> Vec<u8> {
    let mut bytes = Vec::new();
    for r in reqs {
        r.render(valid_body, &mut bytes);
    }
    bytes
}

/// The whole run and, for a script ending in a bad body, its valid twin.
fn whole_runs(cfg: &HttpConfig, reqs: &[Req]) -> (Vec<u8>, HttpRun, Option<HttpRun>) {
    let bytes = render(reqs, false);
    let whole = run_http(cfg, &[&bytes]);
    let valid = matches!(reqs.last(), Some(Req::BadBody(..)))
        .then(|| run_http(cfg, &[&render(reqs, true)]));
    (bytes, whole, valid)
}

proptest! {
    #![proptest_config(config(2000))]

    /// HTTP: the same responses and verdict, whole or cut anywhere.
    #[test]
    fn http_output_ignores_fragmentation((reqs, pipeline, files, cuts) in http_script()) {
        let cfg = http_cfg(pipeline, files, MAX_BODY);
        let (bytes, whole, valid) = whole_runs(&cfg, &reqs);
        let split = run_http(&cfg, &cut(&bytes, &cuts));
        if let Err(e) = same_run(&whole, valid.as_ref(), &split) {
            return Err(TestCaseError::fail(e));
        }
    }

    /// HTTP: the same, one byte per call.
    #[test]
    fn http_output_bytewise((reqs, pipeline, files, _cuts) in http_script()) {
        let cfg = http_cfg(pipeline, files, MAX_BODY);
        let (bytes, whole, valid) = whole_runs(&cfg, &reqs);
        let pieces: Vec<&[u8]> = bytes.chunks(1).collect();
        let split = run_http(&cfg, &pieces);
        if let Err(e) = same_run(&whole, valid.as_ref(), &split) {
            return Err(TestCaseError::fail(e));
        }
    }
}

// ===========================================================================
// The chunked decoder, through HttpConn::input
// ===========================================================================

/// A long chunked body (many chunks, larger ones) for a roomier budget.
fn long_chunked() -> impl Strategy<Value = Body> {
    (
        prop::collection::vec(chunk(300), 0..12),
        prop::option::weighted(0.2, select(EXTS)),
        prop::collection::vec(select(TRAILERS), 0..4),
    )
        .prop_map(|(c, e, t)| Body::Chunked(c, e, t))
}

proptest! {
    #![proptest_config(config(1000))]

    /// A valid chunked body is consumed exactly, however it is cut: the
    /// request after it gets what it gets after a bodiless request.
    #[test]
    fn chunked_bodies_are_consumed_exactly(
        body in long_chunked(),
        cuts in prop::collection::vec(any::<Index>(), 0..16),
    ) {
        let cfg = http_cfg(16, false, 1 << 20);
        let post = Head {
            method: "POST",
            target: "/",
            v10: false,
            conn: None,
            expect: false,
            extra: Vec::new(),
        };
        let get = Head { method: "GET", ..post.clone() };
        let mut bytes = Vec::new();
        post.render(&body, &mut bytes);
        get.render(&Body::None, &mut bytes);
        let mut plain = Vec::new();
        post.render(&Body::None, &mut plain);
        get.render(&Body::None, &mut plain);

        let want = run_http(&cfg, &[&plain]);
        prop_assert!(!want.closed && want.responses == 2 && want.left.is_empty());
        for run in [
            run_http(&cfg, &[&bytes]),
            run_http(&cfg, &cut(&bytes, &cuts)),
            run_http(&cfg, &bytes.chunks(1).collect::<Vec<_>>()),
        ] {
            if let Err(e) = same_run(&want, None, &run) {
                return Err(TestCaseError::fail(e));
            }
        }
    }

    /// A chunked body with one byte changed somewhere gets the same answer
    /// whole or cut, within the documented difference (an error in place
    /// of the response, or the response then a close).
    #[test]
    fn damaged_chunked_bodies_fail_alike(
        body in long_chunked(),
        at in any::<Index>(),
        byte in any::<u8>(),
        cuts in prop::collection::vec(any::<Index>(), 0..16),
    ) {
        let cfg = http_cfg(16, false, 1 << 20);
        let post = Head {
            method: "POST",
            target: "/",
            v10: false,
            conn: None,
            expect: false,
            extra: Vec::new(),
        };
        let mut bytes = Vec::new();
        post.render(&body, &mut bytes);
        // Change one byte of the body (it starts after the blank line).
        let start = bytes.windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4;
        let at = start + at.index(bytes.len() - start);
        bytes[at] = byte;
        let get = Head { method: "GET", ..post.clone() };
        get.render(&Body::None, &mut bytes);

        let whole = run_http(&cfg, &[&bytes]);
        // The valid twin: the same head, answered as if the body were fine.
        let mut twin = Vec::new();
        post.render(&Body::None, &mut twin);
        let twin = run_http(&cfg, &[&twin]);
        for run in [
            run_http(&cfg, &cut(&bytes, &cuts)),
            run_http(&cfg, &bytes.chunks(1).collect::<Vec<_>>()),
        ] {
            // A damaged body may still be valid (a data byte changed) or
            // swallow the GET: then the runs agree exactly. Else the split
            // run may have answered the POST before the damage came.
            if same_run(&whole, None, &run).is_ok() {
                continue;
            }
            prop_assert!(run.closed, "split run did not close");
            prop_assert!(
                without_continue(&run.out) == twin.out,
                "split run neither matched the whole run nor answered the POST:\nwhole:\n{}\nsplit:\n{}",
                String::from_utf8_lossy(&whole.out),
                String::from_utf8_lossy(&run.out)
            );
        }
    }
}

// ===========================================================================
// Bad heads judged alike however they arrive
// ===========================================================================

/// The status of the one response a fresh connection gives `input` fed in
/// pieces of `piece` bytes (the whole input when `piece` is its length).
fn status_in_pieces(input: &[u8], piece: usize) -> u16 {
    let run = run_http(
        &HttpConfig::default(),
        &input.chunks(piece).collect::<Vec<_>>(),
    );
    assert!(run.closed && run.responses == 1, "one closing response");
    status_at(&run.out, 0).expect("a status")
}

/// Heads that once got a status depending on their fragmentation: each
/// must get the same status whole and split.
#[test]
fn bad_head_status_ignores_fragmentation() {
    // A request line with four words: 505 whole, 400 byte by byte.
    let four_words = b"G GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    let whole = status_in_pieces(four_words, four_words.len());
    let bytewise = status_in_pieces(four_words, 1);
    // A bare CR in the method, then a target over `max_target`: 414 whole,
    // 400 when the first read ends before the target is long.
    let mut long = b"G\rGET /".to_vec();
    long.resize(long.len() + 9000, b'a');
    long.extend_from_slice(b" HTTP/1.1\r\nHost: h\r\n\r\n");
    let long_whole = status_in_pieces(&long, long.len());
    let long_split = status_in_pieces(&long, 1024);
    assert_eq!(
        (whole, long_whole),
        (bytewise, long_split),
        "status whole vs split: four words {whole} vs {bytewise}, long target {long_whole} vs {long_split}"
    );
    // `G / o` is refused (400) byte by byte, so `G / o ` whole must be too,
    // not wait as a partial head.
    let run = run_http(&HttpConfig::default(), &[b"G / o "]);
    assert_eq!(
        (run.responses, run.closed),
        (1, true),
        "\"G / o \" whole must be answered (400) and closed, as it is byte by byte"
    );
}
