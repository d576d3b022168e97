//! The WebSocket frame decoder (`service::ws::Decoder`) on any bytes, fed
//! the way the loop feeds it: one buffer, append, `feed`, keep what it asks
//! to keep.
//!
//! Input: the first byte chooses the message limit (`16 << (b & 7)`), the
//! piece size for a second run (`1 + ((b >> 3) & 15)` bytes at a time) and
//! whether binary messages are taken (`b & 0x80`, as on `/ws/echo`; else
//! refused, as on the chat's `/ws`).
//!
//! Checks: no panic; `feed` keeps no more than it has; every text message
//! is valid UTF-8 within the limit; a binary message comes only where
//! binary is taken, within the limit; every ping payload fits a control
//! frame; and the stream means the same whole or in pieces: the same
//! events in the same order and the same close code, however it is cut.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reactor::service::ws::{Accept, Decoder, Event};

/// What a run saw: events as owned values, then the failure code if any.
#[derive(Debug, PartialEq)]
enum Seen {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong,
    Close(Option<u16>),
    Failed(u16),
}

/// Feeds `stream` in pieces of `step` bytes.
fn run(stream: &[u8], step: usize, accept: Accept) -> Vec<Seen> {
    let max = accept.max;
    let mut d = Decoder::default();
    let mut seen = Vec::new();
    let mut buf = Vec::new();
    for piece in stream.chunks(step) {
        buf.extend_from_slice(piece);
        let got = d.feed(&mut buf, accept, |e| {
            seen.push(match e {
                Event::Text(t) => {
                    assert!(t.len() <= max, "message over the limit");
                    assert!(std::str::from_utf8(t).is_ok(), "text not UTF-8");
                    Seen::Text(t.to_vec())
                }
                Event::Binary(b) => {
                    assert!(accept.binary, "binary where only text is taken");
                    assert!(b.len() <= max, "message over the limit");
                    Seen::Binary(b.to_vec())
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
    let accept = Accept {
        max: 16usize << (ctl & 7),
        binary: ctl & 0x80 != 0,
    };
    let step = 1 + usize::from((ctl >> 3) & 15);
    let whole = run(stream, stream.len().max(1), accept);
    let pieces = run(stream, step, accept);
    assert_eq!(whole, pieces, "the same stream means the same, however cut");
});
