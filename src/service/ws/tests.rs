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
    pings: Vec<Vec<u8>>,
    pongs: usize,
    closes: Vec<Option<u16>>,
    failed: Option<u16>,
}

/// Feeds `stream` to a fresh decoder in pieces of `step` bytes, keeping
/// what it asks to keep as the loop does.
fn run(stream: &[u8], step: usize, max: usize) -> Seen {
    let mut d = Decoder::default();
    let mut seen = Seen::default();
    let mut buf: Vec<u8> = Vec::new();
    for piece in stream.chunks(step.max(1)) {
        buf.extend_from_slice(piece);
        let got = d.feed(&mut buf, max, |e| {
            match e {
                Event::Text(t) => seen.texts.push(String::from_utf8(t.to_vec()).unwrap()),
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

/// Runs `stream` whole, in 3-byte pieces and byte by byte: all must agree.
fn all_ways(stream: &[u8], max: usize) -> Seen {
    let whole = run(stream, stream.len(), max);
    for step in [1, 3, 7] {
        assert_eq!(run(stream, step, max), whole, "fed {step} bytes at a time");
    }
    whole
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
    assert_eq!(run(&s[..8], 8, 100).failed, Some(1009));
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
fn binary_is_refused_with_1003() {
    assert_eq!(
        all_ways(&client(true, 2, b"\x00\x01"), 4096).failed,
        Some(1003)
    );
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
    d.feed(&mut buf, 4096, |e| {
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
        let _ = run(&s, (x % 5 + 1) as usize, 64);
    }
}
