//! `HttpConn::input` on arbitrary bytes, fed in 1 to 3 pieces the way the
//! event loop feeds it (append to a buffer, call, drop `consumed`, call
//! again while `again`, stream file bodies inline).
//!
//! Input: the first byte chooses the pieces (`1 + b % 3` of them, cut at
//! eighths of the length from bits 2-4 and 5-7); the rest is the stream.
//!
//! Checks: no panic; `consumed` within the input; `again` only with
//! progress; stopping without `again` means no progress is left (and
//! `at_eof` agrees); the output is a sequence of well-formed responses
//! (`HTTP/1.1 ` and a 3-digit status, header lines, the fixed `Date`, a
//! body as long as `Content-Length` says), and `Connection: close` comes
//! only on the last response before a `Close` verdict.
#![no_main]

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use reactor::service::Verdict;
use reactor::service::http::{FileBody, HttpConfig, HttpConn, Site};

/// The `Date` value passed to every call.
const DATE: &[u8] = b"Sun, 06 Nov 1994 08:49:37 GMT";

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

/// Limits small enough for the fuzzer to reach, and a root with a file,
/// a directory with an index, and one to list (made once per process).
fn cfg() -> &'static HttpConfig {
    static CFG: OnceLock<HttpConfig> = OnceLock::new();
    CFG.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("reactor-fuzz-root-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("dir")).expect("mkdir");
        fs::create_dir_all(root.join("sub")).expect("mkdir");
        let text: Vec<u8> = (0..100u8).map(|i| b'a' + i % 26).collect();
        fs::write(root.join("a.txt"), text).expect("write");
        fs::write(root.join("dir/index.html"), b"<p>index</p>").expect("write");
        fs::write(root.join("sub/one.css"), b"p{}").expect("write");
        fs::write(root.join("sub/two words.txt"), b"2").expect("write");
        let mut cfg = HttpConfig {
            max_body: 4096,
            max_target: 256,
            max_header_line: 512,
            max_headers_bytes: 2048,
            max_headers: 16,
            max_pipeline: 4,
            // Fields added later keep their defaults.
            ..HttpConfig::default()
        };
        cfg.root = Some(root);
        cfg
    })
}

/// Appends the bytes a `FileBody` names.
fn read_body(mut body: FileBody, out: &mut Vec<u8>) {
    assert!(body.len > 0, "an empty file body was returned");
    body.file.seek(SeekFrom::Start(body.offset)).expect("seek");
    let start = out.len();
    body.file.take(body.len).read_to_end(out).expect("read");
    assert_eq!((out.len() - start) as u64, body.len, "file body short");
}

/// Checks that `out` is a sequence of whole, well-formed responses; returns
/// whether the last one said `Connection: close`.
fn check_responses(out: &[u8]) -> bool {
    let mut pos = 0;
    let mut closed = false;
    while pos < out.len() {
        assert!(!closed, "a response after one that said Connection: close");
        let rest = &out[pos..];
        assert!(
            rest.starts_with(b"HTTP/1.1 "),
            "no status line at {pos}: {:?}",
            show(rest)
        );
        let code = &rest[9..12.min(rest.len())];
        assert!(
            code.len() == 3
                && code.iter().all(u8::is_ascii_digit)
                && (b'1'..=b'5').contains(&code[0]),
            "bad status {:?}",
            show(rest)
        );
        let end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("unterminated head: {:?}", show(rest)));
        let head = &rest[..end];
        let mut length = None;
        let mut date = false;
        // Lines end in CRLF; none holds another CR or LF.
        let text = String::from_utf8_lossy(head);
        for line in text.split("\r\n").skip(1) {
            let line = line.as_bytes();
            assert!(
                !line.contains(&b'\r') && !line.contains(&b'\n'),
                "bare CR or LF in head: {:?}",
                show(head)
            );
            let colon = line
                .iter()
                .position(|&b| b == b':')
                .unwrap_or_else(|| panic!("header without colon: {:?}", show(line)));
            let (name, value) = (&line[..colon], &line[colon + 1..]);
            assert!(
                !name.is_empty() && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-'),
                "bad header name {:?}",
                show(line)
            );
            let value = value.strip_prefix(b" ").unwrap_or(value);
            if name.eq_ignore_ascii_case(b"content-length") {
                let n = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<usize>().ok());
                length = Some(n.unwrap_or_else(|| panic!("bad Content-Length {:?}", show(line))));
            }
            if name.eq_ignore_ascii_case(b"date") {
                assert_eq!(value, DATE, "Date is not the one given");
                date = true;
            }
            if name.eq_ignore_ascii_case(b"connection") && value == b"close" {
                closed = true;
            }
        }
        let interim = code[0] == b'1';
        assert!(date || interim, "no Date header: {:?}", show(head));
        pos += end + 4;
        // A HEAD response, a 304 or a 100 has no body (whatever its
        // Content-Length says): the next response follows at once.
        let next = &out[pos..];
        let bodiless =
            interim || code == b"304" || next.is_empty() || next.starts_with(b"HTTP/1.1 ");
        if !bodiless {
            let n =
                length.unwrap_or_else(|| panic!("a body without Content-Length: {:?}", show(head)));
            assert!(
                n <= next.len(),
                "body shorter than Content-Length {n}: {:?}",
                show(head)
            );
            pos += n;
        }
    }
    closed
}

/// Bytes as text for messages.
fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(400)]).into_owned()
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, stream)) = data.split_first() else {
        return;
    };
    let len = stream.len();
    let mut cuts = [
        len * usize::from(ctl >> 2 & 7) / 8,
        len * usize::from(ctl >> 5) / 8,
    ];
    cuts.sort_unstable();
    let pieces: Vec<&[u8]> = match ctl % 3 {
        0 => vec![stream],
        1 => vec![&stream[..cuts[0]], &stream[cuts[0]..]],
        _ => vec![
            &stream[..cuts[0]],
            &stream[cuts[0]..cuts[1]],
            &stream[cuts[1]..],
        ],
    };

    let cfg = cfg();
    let mut conn = HttpConn::new();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut verdict = Verdict::Continue;
    'feed: for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            let p = conn.input(&buf, &mut out, cfg, DATE, &FakeSite);
            assert!(
                p.consumed <= buf.len(),
                "consumed {} of {}",
                p.consumed,
                buf.len()
            );
            buf.drain(..p.consumed);
            if let Some(body) = p.file {
                read_body(body, &mut out);
            }
            if p.verdict == Verdict::Close {
                assert!(buf.is_empty(), "Close must consume everything");
                assert!(!p.again, "again with Close");
                verdict = Verdict::Close;
                break 'feed;
            }
            if p.again {
                assert!(p.consumed > 0, "again without progress");
                continue;
            }
            // Waiting for more bytes must be right: nothing to do on these.
            let mut probe = conn;
            let mut scratch = Vec::new();
            let q = probe.input(&buf, &mut scratch, cfg, DATE, &FakeSite);
            assert!(
                q.consumed == 0
                    && q.responses == 0
                    && q.verdict == Verdict::Continue
                    && scratch.is_empty(),
                "input stopped with work left: {q:?}"
            );
            break;
        }
    }
    // At EOF: `Continue` only if another call would make progress.
    if verdict == Verdict::Continue && conn.at_eof(&buf, cfg) == Verdict::Continue {
        let mut probe = conn;
        let mut scratch = Vec::new();
        let q = probe.input(&buf, &mut scratch, cfg, DATE, &FakeSite);
        assert!(
            q.consumed > 0 || q.responses > 0 || q.verdict == Verdict::Close,
            "at_eof said Continue, but: {q:?}"
        );
    }
    let said_close = check_responses(&out);
    if said_close {
        assert_eq!(
            verdict,
            Verdict::Close,
            "Connection: close without a Close verdict"
        );
    }
});
