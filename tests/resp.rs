//! The RESP2 codec (`service::resp`) against an independent decoder, the
//! `redis-protocol` crate: the same replies, the same lengths, on every
//! reply proptest makes, on every prefix of one (incomplete for both), on
//! concatenations, and on arbitrary bytes whenever ours takes them.

use proptest::prelude::*;
use reactor::service::resp::{Value, decode};
use redis_protocol::resp2::decode::decode as oracle;
use redis_protocol::resp2::types::OwnedFrame;

/// Our value as the oracle would decode it (it has one `Null` for both
/// null kinds, and errors as text).
fn as_oracle(v: &Value<'_>) -> OwnedFrame {
    match v {
        Value::Simple(s) => OwnedFrame::SimpleString(s.to_vec()),
        Value::Error(s) => OwnedFrame::Error(String::from_utf8_lossy(s).into_owned()),
        Value::Int(n) => OwnedFrame::Integer(*n),
        Value::Bulk(None) | Value::Array(None) => OwnedFrame::Null,
        Value::Bulk(Some(b)) => OwnedFrame::BulkString(b.to_vec()),
        Value::Array(Some(items)) => OwnedFrame::Array(items.iter().map(as_oracle).collect()),
    }
}

/// An owned reply, for proptest to make (a `Value` borrows).
#[derive(Clone, Debug)]
enum Reply {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    fn value(&self) -> Value<'_> {
        match self {
            Reply::Simple(s) => Value::Simple(s),
            Reply::Error(s) => Value::Error(s),
            Reply::Int(n) => Value::Int(*n),
            Reply::Bulk(b) => Value::Bulk(b.as_deref()),
            Reply::Array(a) => {
                Value::Array(a.as_ref().map(|v| v.iter().map(Reply::value).collect()))
            }
        }
    }
}

/// A line's text: no CR or LF (ASCII for errors, which the oracle
/// takes as UTF-8).
fn text() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(0x20u8..0x7f, 0..40)
}

fn reply() -> impl Strategy<Value = Reply> {
    let leaf = prop_oneof![
        text().prop_map(Reply::Simple),
        text().prop_map(Reply::Error),
        any::<i64>().prop_map(Reply::Int),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)).prop_map(Reply::Bulk),
    ];
    leaf.prop_recursive(3, 48, 8, |inner| {
        proptest::option::weighted(0.9, proptest::collection::vec(inner, 0..8))
            .prop_map(Reply::Array)
    })
}

fn encoded(r: &Reply) -> Vec<u8> {
    let mut out = Vec::new();
    r.value().encode(&mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_same_reply_and_length(r in reply()) {
        let bytes = encoded(&r);
        let (ours, used) = decode(&bytes).unwrap().expect("complete");
        let (theirs, their_used) = oracle(&bytes).unwrap().expect("oracle: complete");
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(their_used, bytes.len());
        prop_assert_eq!(as_oracle(&ours), theirs);
        prop_assert_eq!(ours, r.value());
    }

    #[test]
    fn every_prefix_is_incomplete_for_both(r in reply()) {
        let bytes = encoded(&r);
        for cut in 0..bytes.len() {
            prop_assert_eq!(decode(&bytes[..cut]), Ok(None), "ours, {} bytes", cut);
            prop_assert!(matches!(oracle(&bytes[..cut]), Ok(None)), "oracle, {} bytes", cut);
        }
    }

    #[test]
    fn replies_back_to_back_come_apart_the_same(a in reply(), b in reply()) {
        let mut bytes = encoded(&a);
        let first = bytes.len();
        bytes.extend(encoded(&b));
        let (_, used) = decode(&bytes).unwrap().unwrap();
        let (_, their_used) = oracle(&bytes).unwrap().unwrap();
        prop_assert_eq!(used, first);
        prop_assert_eq!(their_used, first);
        let (second, _) = decode(&bytes[used..]).unwrap().unwrap();
        prop_assert_eq!(second, b.value());
    }

    /// Bytes from a small alphabet of RESP's own characters, so that many
    /// of them parse: whatever ours decodes, the oracle decodes the same.
    #[test]
    fn any_bytes_ours_takes_the_oracle_takes_alike(
        bytes in proptest::collection::vec(
            prop_oneof![
                Just(b'*'), Just(b'$'), Just(b':'), Just(b'+'), Just(b'-'),
                Just(b'\r'), Just(b'\n'), Just(b'0'), Just(b'1'), Just(b'2'), Just(b'a'),
            ],
            0..40,
        )
    ) {
        if let Ok(Some((ours, used))) = decode(&bytes) {
            let theirs = oracle(&bytes);
            prop_assert!(
                matches!(&theirs, Ok(Some((f, n))) if *n == used && *f == as_oracle(&ours)),
                "ours {:?} ({} bytes), oracle {:?}", ours, used, theirs
            );
        }
    }
}
