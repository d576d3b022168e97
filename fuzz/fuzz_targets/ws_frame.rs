//! The WebSocket frame decoder (`service::ws::Decoder`) on any bytes, fed
//! the way the loop feeds it: one buffer, append, `feed`, keep what it asks
//! to keep.
//!
//! Input: the first byte chooses the message limit (`16 << (b & 7)`) and
//! the piece size for a second run (`1 + (b >> 3)` bytes at a time).
//!
//! Checks: no panic; `feed` keeps no more than it has; every text message
//! is valid UTF-8 within the limit; every ping payload fits a control
//! frame; and the stream means the same whole or in pieces: the same
//! events in the same order and the same close code, however it is cut.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reactor::service::ws::{Decoder, Event};

/// What a run saw: events as owned values, then the failure code if any.
#[derive(Debug, PartialEq)]
enum Seen {
    Text(Vec<u8>),
    Ping(Vec<u8>),
    Pong,
    Close(Option<u16>),
    Failed(u16),
}

/// Feeds `stream` in pieces of `step` bytes.
fn run(stream: &[u8], step: usize, max: usize) -> Vec<Seen> {
    let mut d = Decoder::default();
    let mut seen = Vec::new();
    let mut buf = Vec::new();
    for piece in stream.chunks(step) {
        buf.extend_from_slice(piece);
        let got = d.feed(&mut buf, max, |e| {
            seen.push(match e {
                Event::Text(t) => {
                    assert!(t.len() <= max, "message over the limit");
                    assert!(std::str::from_utf8(t).is_ok(), "text not UTF-8");
                    Seen::Text(t.to_vec())
                }
                Event::Ping(p) => {
                    assert!(p.len() <= 125, "ping payload too long");
                    Seen::Ping(p.to_vec())
                }
                Event::Pong => Seen::Pong,
                Event::Close(c) => Seen::Close(c),
            });
            true
        });
        match got {
            Ok(keep) => {
                assert!(keep <= buf.len(), "keeps more than it has");
                buf.truncate(keep);
            }
            Err(code) => {
                assert!(matches!(code, 1002 | 1003 | 1007 | 1009), "code {code}");
                seen.push(Seen::Failed(code));
                break;
            }
        }
    }
    seen
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, stream)) = data.split_first() else {
        return;
    };
    let max = 16usize << (ctl & 7);
    let step = 1 + usize::from(ctl >> 3);
    let whole = run(stream, stream.len().max(1), max);
    let pieces = run(stream, step, max);
    assert_eq!(whole, pieces, "the same stream means the same, however cut");
});
