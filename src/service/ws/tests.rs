//! The codec in memory: frames built as a client would, fed whole, in
//! pieces and byte by byte.

use super::*;

/// A masked client frame.
fn client(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xFA, 0x21, 0x3D];
    let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n if n <= 125 => f.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    f
}

/// What a decoder made of a stream: events as owned values, the close code
/// if it failed.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    texts: Vec<String>,
    binaries: Vec<Vec<u8>>,
    pings: Vec<Vec<u8>>,
    pongs: usize,
    closes: Vec<Option<u16>>,
    failed: Option<u16>,
}

/// Feeds `stream` to a fresh decoder in pieces of `step` bytes, keeping
/// what it asks to keep as the loop does.
fn run(stream: &[u8], step: usize, accept: Accept) -> Seen {
    let mut d = Decoder::default();
    let mut seen = Seen::default();
    let mut buf: Vec<u8> = Vec::new();
    for piece in stream.chunks(step.max(1)) {
        buf.extend_from_slice(piece);
        let got = d.feed(&mut buf, accept, |e| {
            match e {
                Event::Text(t) => seen.texts.push(String::from_utf8(t.to_vec()).unwrap()),
                Event::Binary(b) => seen.binaries.push(b.to_vec()),
                Event::Ping(p) => seen.pings.push(p.to_vec()),
                Event::Pong => seen.pongs += 1,
                Event::Close(c) => seen.closes.push(c),
            }
            true
        });
        match got {
            Ok(keep) => {
                assert!(keep <= buf.len(), "keeps more than it has");
                buf.truncate(keep);
            }
            Err(code) => {
                seen.failed = Some(code);
                return seen;
            }
        }
    }
    assert!(d.is_idle() || !buf.is_empty(), "state without bytes kept");
    seen
}

/// Runs `stream` whole and in pieces of 1, 3 and 7 bytes, taking text of
/// up to `max` bytes: all must agree.
fn all_ways(stream: &[u8], max: usize) -> Seen {
    all_ways_with(stream, Accept::text(max))
}

/// `all_ways`, taking what `accept` says.
fn all_ways_with(stream: &[u8], accept: Accept) -> Seen {
    let whole = run(stream, stream.len(), accept);
    for step in [1, 3, 7] {
        assert_eq!(
            run(stream, step, accept),
            whole,
            "fed {step} bytes at a time"
        );
    }
    whole
}

/// Text and binary messages of up to `max` bytes (the echo endpoint's).
fn both(max: usize) -> Accept {
    Accept { max, binary: true }
}

#[test]
fn accept_key_matches_the_rfc_example() {
    assert_eq!(
        accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn keys_must_be_base64_of_16_bytes() {
    assert!(valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
    assert!(!valid_key(b"dGhlIHNhbXBsZSBub25jZQ")); // unpadded
    assert!(!valid_key(b"dGhlIHNhbXBsZSBub25jZSE=")); // 17 bytes
    assert!(!valid_key(b"not base64 at all!!!!!=="));
    assert!(!valid_key(b""));
}

#[test]
fn single_text_frames_of_every_length_form() {
    for len in [0, 1, 125, 126, 1000, 65_535, 65_536, 70_000] {
        let text = "x".repeat(len);
        let seen = all_ways(&client(true, 1, text.as_bytes()), 100_000);
        assert_eq!(seen.texts, vec![text], "length {len}");
        assert_eq!(seen.failed, None);
    }
}

#[test]
fn several_messages_in_one_read_arrive_in_order() {
    let mut s = client(true, 1, b"one");
    s.extend(client(true, 1, b"two"));
    s.extend(client(true, 9, b"p"));
    s.extend(client(true, 1, b"three"));
    let seen = all_ways(&s, 4096);
    assert_eq!(seen.texts, ["one", "two", "three"]);
    assert_eq!(seen.pings, vec![b"p".to_vec()]);
}

#[test]
fn fragments_are_reassembled_with_control_frames_between() {
    let mut s = client(false, 1, b"Hel");
    s.extend(client(true, 9, b"ping!"));
    s.extend(client(false, 0, b"lo, "));
    s.extend(client(true, 10, b""));
    s.extend(client(true, 0, b"world"));
    s.extend(client(true, 1, b"after"));
    let seen = all_ways(&s, 4096);
    assert_eq!(seen.texts, ["Hello, world", "after"]);
    assert_eq!(seen.pings, vec![b"ping!".to_vec()]);
    assert_eq!(seen.pongs, 1);
}

#[test]
fn utf8_cut_between_fragments_is_fine() {
    let snow = "☃".as_bytes(); // three bytes
    let mut s = client(false, 1, &snow[..1]);
    s.extend(client(false, 0, &snow[1..2]));
    s.extend(client(true, 0, &snow[2..]));
    assert_eq!(all_ways(&s, 4096).texts, ["☃"]);
}

#[test]
fn invalid_utf8_fails_with_1007_as_soon_as_it_shows() {
    assert_eq!(
        all_ways(&client(true, 1, b"ok\xFFno"), 4096).failed,
        Some(1007)
    );
    // An invalid first fragment fails before the message ends.
    let s = client(false, 1, b"\xC0\xAF");
    assert_eq!(all_ways(&s, 4096).failed, Some(1007));
    // A sequence cut by the end of the final fragment.
    assert_eq!(
        all_ways(&client(true, 1, b"ab\xE2\x98"), 4096).failed,
        Some(1007)
    );
    // In a close reason too.
    let mut close = vec![0x03, 0xE8];
    close.extend_from_slice(b"\xFF");
    assert_eq!(all_ways(&client(true, 8, &close), 4096).failed, Some(1007));
}

#[test]
fn too_big_fails_with_1009_from_the_header_alone() {
    let s = client(true, 1, &[b'a'; 101]);
    // Only the header is offered: the verdict comes before the payload.
    assert_eq!(run(&s[..8], 8, Accept::text(100)).failed, Some(1009));
    assert_eq!(all_ways(&client(true, 1, &[b'a'; 100]), 100).texts.len(), 1);
    // Fragments count together.
    let mut s = client(false, 1, &[b'a'; 60]);
    s.extend(client(true, 0, &[b'a'; 41]));
    assert_eq!(all_ways(&s, 100).failed, Some(1009));
}

#[test]
fn protocol_errors_fail_with_1002() {
    let unmasked = [0x81, 0x02, b'h', b'i'];
    let rsv = {
        let mut f = client(true, 1, b"x");
        f[0] |= 0x40;
        f
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unmasked", unmasked.to_vec()),
        ("rsv bit", rsv),
        ("opcode 3", client(true, 3, b"")),
        ("opcode 0xB", client(true, 0xB, b"")),
        ("continuation first", client(true, 0, b"x")),
        ("text inside a message", {
            let mut s = client(false, 1, b"a");
            s.extend(client(true, 1, b"b"));
            s
        }),
        ("fragmented ping", client(false, 9, b"")),
        ("long ping", client(true, 9, &[0; 126])),
        ("close of one byte", client(true, 8, &[3])),
        ("close code 1005", client(true, 8, &1005u16.to_be_bytes())),
        ("close code 999", client(true, 8, &999u16.to_be_bytes())),
        ("close code 2000", client(true, 8, &2000u16.to_be_bytes())),
        ("64-bit length, top bit", {
            let mut f = vec![0x81, 0xFF];
            f.extend_from_slice(&(1u64 << 63).to_be_bytes());
            f.extend_from_slice(&[0; 4]);
            f
        }),
    ];
    for (what, s) in cases {
        assert_eq!(all_ways(&s, 4096).failed, Some(1002), "{what}");
    }
}

#[test]
fn binary_is_refused_with_1003_where_only_text_is_taken() {
    assert_eq!(
        all_ways(&client(true, 2, b"\x00\x01"), 4096).failed,
        Some(1003)
    );
    // A binary continuation of a text message is still a continuation:
    // only the first frame says what the message is.
    let mut s = client(false, 2, b"\x00");
    s.extend(client(true, 0, b"\x01"));
    assert_eq!(all_ways(&s, 4096).failed, Some(1003));
}

#[test]
fn binary_is_taken_where_the_caller_takes_it() {
    // Any bytes at all: not UTF-8, NULs, every value.
    let bytes: Vec<u8> = (0..=255u8).chain([0xFF, 0xC0, 0x00]).collect();
    let seen = all_ways_with(&client(true, 2, &bytes), both(4096));
    assert_eq!(seen.binaries, vec![bytes]);
    assert_eq!((seen.texts.len(), seen.failed), (0, None));
    // Empty, and text and binary messages interleaved, each its own kind.
    let mut s = client(true, 2, b"");
    s.extend(client(true, 1, b"text"));
    s.extend(client(true, 2, b"\xFF\xFE"));
    let seen = all_ways_with(&s, both(4096));
    assert_eq!(seen.binaries, vec![b"".to_vec(), b"\xFF\xFE".to_vec()]);
    assert_eq!(seen.texts, ["text"]);
    // Text is still held to UTF-8 where binary is taken.
    let seen = all_ways_with(&client(true, 1, b"\xFF"), both(4096));
    assert_eq!(seen.failed, Some(1007));
}

#[test]
fn fragmented_binary_is_reassembled_without_a_utf8_check() {
    // Fragments that would be invalid UTF-8 on their own and together,
    // with a ping and a pong between them.
    let mut s = client(false, 2, b"\xE2\x98");
    s.extend(client(true, 9, b"p"));
    s.extend(client(false, 0, b"\xFF"));
    s.extend(client(true, 10, b""));
    s.extend(client(true, 0, b"\xC0\xAF"));
    s.extend(client(true, 2, b"next"));
    let seen = all_ways_with(&s, both(4096));
    assert_eq!(
        seen.binaries,
        vec![b"\xE2\x98\xFF\xC0\xAF".to_vec(), b"next".to_vec()]
    );
    assert_eq!((seen.pings.len(), seen.pongs, seen.failed), (1, 1, None));
    // The order rules are the same as for text.
    let mut s = client(false, 2, b"a");
    s.extend(client(true, 2, b"b"));
    assert_eq!(all_ways_with(&s, both(4096)).failed, Some(1002));
}

#[test]
fn large_messages_up_to_the_limit_and_not_a_byte_more() {
    // 1 MiB in one frame and in 64 fragments, text and binary: each is
    // whole at exactly the limit; one byte more fails from the header.
    let max = 1 << 20;
    let text: Vec<u8> = (0..max).map(|i| b'a' + (i % 26) as u8).collect();
    let bin: Vec<u8> = (0..max).map(|i| (i * 7 % 251) as u8).collect();
    for (opcode, msg) in [(1u8, &text), (2, &bin)] {
        let whole = client(true, opcode, msg);
        let seen = run(&whole, 64 << 10, both(max));
        let got = if opcode == 1 {
            seen.texts.concat().into_bytes()
        } else {
            seen.binaries.concat()
        };
        assert_eq!((got.len(), got == *msg, seen.failed), (max, true, None));
        let mut frags = Vec::new();
        for (i, part) in msg.chunks(max / 64).enumerate() {
            let op = if i == 0 { opcode } else { 0 };
            frags.extend(client(i == 63, op, part));
        }
        let seen = run(&frags, 10_000, both(max));
        let got = if opcode == 1 {
            seen.texts.concat().into_bytes()
        } else {
            seen.binaries.concat()
        };
        assert_eq!((got.len(), got == *msg, seen.failed), (max, true, None));
        assert_eq!(run(&whole, whole.len(), both(max - 1)).failed, Some(1009));
        // Fragments: the one that crosses the limit fails, from its header.
        let cut = frags.len() - client(true, 0, &msg[..max / 64]).len() + 14;
        assert_eq!(run(&frags[..cut], cut, both(max - 1)).failed, Some(1009));
    }
}

#[test]
fn a_limit_past_u32_is_taken_as_u32() {
    // The reassembled length is a u32: a larger limit must not let it wrap.
    let mut f = vec![0x82, 0xFF];
    f.extend_from_slice(&(u64::from(u32::MAX) + 1).to_be_bytes());
    f.extend_from_slice(&[0; 4]);
    let seen = run(&f, f.len(), both(usize::MAX));
    assert_eq!(seen.failed, Some(1009));
}

#[test]
fn close_codes_are_reported() {
    assert_eq!(all_ways(&client(true, 8, b""), 4096).closes, vec![None]);
    let mut p = 1000u16.to_be_bytes().to_vec();
    p.extend_from_slice(b"bye");
    assert_eq!(
        all_ways(&client(true, 8, &p), 4096).closes,
        vec![Some(1000)]
    );
    let p = 4321u16.to_be_bytes();
    assert_eq!(
        all_ways(&client(true, 8, &p), 4096).closes,
        vec![Some(4321)]
    );
}

#[test]
fn stopping_leaves_later_frames_alone() {
    let mut s = client(true, 8, b"");
    s.extend(client(true, 1, b"ignored"));
    let mut d = Decoder::default();
    let mut texts = 0;
    let mut buf = s.clone();
    d.feed(&mut buf, Accept::text(4096), |e| {
        texts += matches!(e, Event::Text(_)) as usize;
        !matches!(e, Event::Close(_))
    })
    .unwrap();
    assert_eq!(texts, 0);
}

#[test]
fn server_frames_use_the_shortest_length_form() {
    assert_eq!(&text_header(5).0[..text_header(5).1], &[0x81, 5]);
    let (h, n) = text_header(300);
    assert_eq!(&h[..n], &[0x81, 126, 1, 44]);
    let (h, n) = text_header(70_000);
    assert_eq!(&h[..n], &[0x81, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
    let mut out = Vec::new();
    pong(b"abc", &mut out);
    assert_eq!(out, [0x8A, 3, b'a', b'b', b'c']);
    assert_eq!(close_frame(1009), [0x88, 2, 0x03, 0xF1]);
    let (h, n) = binary_header(126);
    assert_eq!(&h[..n], &[0x82, 126, 0, 126]);
}

#[test]
fn garbage_never_panics() {
    // A cheap deterministic sweep; the fuzz target goes further.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..20_000 {
        let mut s = Vec::new();
        for _ in 0..(x % 40) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.push(x as u8);
        }
        let accept = Accept {
            max: 64,
            binary: x & 8 != 0,
        };
        let _ = run(&s, (x % 5 + 1) as usize, accept);
    }
}
