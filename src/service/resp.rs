//! RESP2, the Redis protocol, as a sans-I/O codec: commands encoded into a
//! `Vec<u8>`, replies decoded from whatever bytes have arrived.
//!
//! The subset a chat bus needs and no more: commands are arrays of bulk
//! strings; replies are the five RESP2 types (`+` simple string, `-`
//! error, `:` integer, `$` bulk string, `*` array). [`decode`] reads one
//! reply from the front of a buffer and says how many bytes it took, or
//! that the reply is not all there yet (`Ok(None)`: read more and call
//! again with the same bytes plus the new). Decoded values borrow from the
//! buffer: a bulk string is a slice of it, not a copy.
//!
//! A peer cannot make the decoder hold or do unbounded work: a bulk string
//! is at most [`MAX_BULK`] bytes, an array at most [`MAX_ITEMS`] items,
//! nested at most [`MAX_DEPTH`] deep, and a line (a simple string, an
//! error, a length) at most [`MAX_LINE`]; past any of them the reply is an
//! error, and the connection is dropped by its owner. Tested against the
//! `redis-protocol` crate (`tests/resp.rs`) and fuzzed (`fuzz/`).

use std::fmt;

/// Largest bulk string taken (Redis's own default `proto-max-bulk-len`
/// is 512 MB; nothing a chat bus asks for comes near 1 MiB).
pub const MAX_BULK: usize = 1 << 20;
/// Most items in one array (a `/rooms` or `/who` answer holds a few
/// hundred; a resubscription confirms at most 512 channels a command, one
/// reply each).
pub const MAX_ITEMS: usize = 1 << 16;
/// Deepest nesting of arrays (replies here nest two deep at most).
pub const MAX_DEPTH: usize = 8;
/// Longest line: a simple string, an error, or a length.
pub const MAX_LINE: usize = 4096;

/// One RESP2 reply, borrowing its bytes from the buffer it was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// `+OK`: a status line.
    Simple(&'a [u8]),
    /// `-ERR ...`: the command failed; the text says why.
    Error(&'a [u8]),
    /// `:42`.
    Int(i64),
    /// `$5 hello` (`None`: the null bulk string, `$-1`).
    Bulk(Option<&'a [u8]>),
    /// `*2 ...` (`None`: the null array, `*-1`).
    Array(Option<Vec<Value<'a>>>),
}

impl<'a> Value<'a> {
    /// The bytes of a bulk or simple string.
    pub fn bytes(&self) -> Option<&'a [u8]> {
        match *self {
            Value::Bulk(Some(b)) | Value::Simple(b) => Some(b),
            _ => None,
        }
    }

    /// The integer, if it is one.
    pub fn int(&self) -> Option<i64> {
        match *self {
            Value::Int(n) => Some(n),
            _ => None,
        }
    }

    /// The items of an array (none for anything else).
    pub fn items(&self) -> &[Value<'a>] {
        match self {
            Value::Array(Some(items)) => items,
            _ => &[],
        }
    }

    /// Appends this value's RESP2 encoding to `out` (for tests, fuzzing,
    /// and a fake server).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Simple(s) => line(out, b'+', s),
            Value::Error(s) => line(out, b'-', s),
            Value::Int(n) => line(out, b':', n.to_string().as_bytes()),
            Value::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
            Value::Bulk(Some(b)) => bulk(out, b),
            Value::Array(None) => out.extend_from_slice(b"*-1\r\n"),
            Value::Array(Some(items)) => {
                header(out, b'*', items.len());
                for item in items {
                    item.encode(out);
                }
            }
        }
    }
}

/// Why bytes are not RESP2 (the connection cannot be trusted after this).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// A byte that cannot start a reply.
    Type(u8),
    /// A length or integer that is not a number, or a negative length
    /// other than -1.
    Number,
    /// A line not ended by CRLF, or a bulk string not followed by it.
    Terminator,
    /// Past one of the limits (`MAX_BULK`, `MAX_ITEMS`, `MAX_DEPTH`,
    /// `MAX_LINE`).
    TooLarge,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::Type(b) => write!(f, "unknown reply type byte 0x{b:02x}"),
            Malformed::Number => f.write_str("bad number"),
            Malformed::Terminator => f.write_str("missing CRLF"),
            Malformed::TooLarge => f.write_str("reply over the size limits"),
        }
    }
}

/// Decodes one reply from the front of `buf`: `Ok(Some((value, used)))`,
/// `Ok(None)` if `buf` holds only part of it, or why it is not RESP2.
pub fn decode(buf: &[u8]) -> Result<Option<(Value<'_>, usize)>, Malformed> {
    value(buf, 0, 0)
}

/// The value starting at `at`, and where it ends; `depth` arrays deep.
fn value(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Value<'_>, usize)>, Malformed> {
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some((text, next)) = read_line(buf, at + 1)? else {
        return Ok(None);
    };
    let v = match kind {
        b'+' => Value::Simple(text),
        b'-' => Value::Error(text),
        b':' => Value::Int(number(text)?),
        b'$' => {
            let Some(len) = length(text, MAX_BULK)? else {
                return Ok(Some((Value::Bulk(None), next)));
            };
            let end = next + len;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(Malformed::Terminator);
            }
            return Ok(Some((Value::Bulk(Some(&buf[next..end])), end + 2)));
        }
        b'*' => {
            let Some(n) = length(text, MAX_ITEMS)? else {
                return Ok(Some((Value::Array(None), next)));
            };
            if depth >= MAX_DEPTH {
                return Err(Malformed::TooLarge);
            }
            // Each item takes at least 3 bytes: no use reserving for more
            // items than the buffer could hold.
            let mut items = Vec::with_capacity(n.min((buf.len() - next) / 3));
            let mut pos = next;
            for _ in 0..n {
                let Some((item, end)) = value(buf, pos, depth + 1)? else {
                    return Ok(None);
                };
                items.push(item);
                pos = end;
            }
            return Ok(Some((Value::Array(Some(items)), pos)));
        }
        other => return Err(Malformed::Type(other)),
    };
    Ok(Some((v, next)))
}

/// The line starting at `at` (without its CRLF) and where the next one
/// starts; `None` if its CRLF has not arrived yet.
fn read_line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, Malformed> {
    let rest = buf.get(at..).unwrap_or(&[]);
    // Look no further than a line may be long: a peer cannot make every
    // call scan more than that.
    let window = &rest[..rest.len().min(MAX_LINE + 1)];
    let Some(i) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
        return if rest.len() > MAX_LINE {
            Err(Malformed::TooLarge)
        } else {
            Ok(None)
        };
    };
    match (window[i], rest.get(i + 1)) {
        (b'\r', Some(b'\n')) => Ok(Some((&rest[..i], at + i + 2))),
        (b'\r', None) => Ok(None), // the '\n' is still to come
        _ => Err(Malformed::Terminator),
    }
}

/// A RESP integer: optional `-`, then 1 to 19 digits, within `i64`.
fn number(text: &[u8]) -> Result<i64, Malformed> {
    let (neg, digits) = match text.split_first() {
        Some((b'-', d)) => (true, d),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Malformed::Number);
    }
    let mut n: i64 = 0;
    for &d in digits {
        let d = i64::from(d - b'0');
        n = n
            .checked_mul(10)
            .and_then(|n| {
                if neg {
                    n.checked_sub(d)
                } else {
                    n.checked_add(d)
                }
            })
            .ok_or(Malformed::Number)?;
    }
    Ok(n)
}

/// A length of at most `max`, or `None` for -1 (null).
fn length(text: &[u8], max: usize) -> Result<Option<usize>, Malformed> {
    match number(text)? {
        -1 => Ok(None),
        n if n < 0 => Err(Malformed::Number),
        n if n as u64 > max as u64 => Err(Malformed::TooLarge),
        n => Ok(Some(n as usize)),
    }
}

/// Appends a command (an array of bulk strings) to `out`.
pub fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    header(out, b'*', args.len());
    for arg in args {
        bulk(out, arg);
    }
}

/// Appends `$len\r\nbytes\r\n`.
pub fn bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    header(out, b'$', bytes.len());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// Appends `*n\r\n` (or `$n\r\n`): the head of an array or a bulk string.
pub fn header(out: &mut Vec<u8>, kind: u8, n: usize) {
    out.push(kind);
    push_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal, without formatting machinery.
pub fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends a line of type `kind`.
fn line(out: &mut Vec<u8>, kind: u8, text: &[u8]) {
    out.push(kind);
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(bytes: &[u8]) -> Value<'_> {
        let (v, used) = decode(bytes).unwrap().expect("complete");
        assert_eq!(
            used,
            bytes.len(),
            "used all of {:?}",
            String::from_utf8_lossy(bytes)
        );
        v
    }

    #[test]
    fn the_five_types() {
        assert_eq!(one(b"+OK\r\n"), Value::Simple(b"OK"));
        assert_eq!(one(b"-ERR no\r\n"), Value::Error(b"ERR no"));
        assert_eq!(one(b":-42\r\n"), Value::Int(-42));
        assert_eq!(one(b"$5\r\nhe\r\no\r\n"), Value::Bulk(Some(b"he\r\no")));
        assert_eq!(one(b"$0\r\n\r\n"), Value::Bulk(Some(b"")));
        assert_eq!(one(b"$-1\r\n"), Value::Bulk(None));
        assert_eq!(one(b"*-1\r\n"), Value::Array(None));
        assert_eq!(one(b"*0\r\n"), Value::Array(Some(vec![])));
        assert_eq!(
            one(b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n"),
            Value::Array(Some(vec![
                Value::Bulk(Some(b"message")),
                Value::Bulk(Some(b"ch")),
                Value::Bulk(Some(b"x")),
            ]))
        );
    }

    #[test]
    fn every_prefix_is_incomplete_and_the_rest_is_left() {
        let frame = b"*2\r\n*2\r\n:1\r\n$3\r\nabc\r\n+OK\r\n";
        for cut in 0..frame.len() {
            assert_eq!(decode(&frame[..cut]), Ok(None), "prefix of {cut} bytes");
        }
        let mut two = frame.to_vec();
        two.extend_from_slice(b":7\r\n");
        let (_, used) = decode(&two).unwrap().unwrap();
        assert_eq!(used, frame.len());
        assert_eq!(decode(&two[used..]), Ok(Some((Value::Int(7), 4))));
    }

    #[test]
    fn what_is_not_resp2_is_refused() {
        assert_eq!(decode(b"%1\r\n"), Err(Malformed::Type(b'%')));
        assert_eq!(decode(b":12a\r\n"), Err(Malformed::Number));
        assert_eq!(decode(b":\r\n"), Err(Malformed::Number));
        assert_eq!(decode(b":99999999999999999999\r\n"), Err(Malformed::Number));
        assert_eq!(decode(b"$-2\r\n"), Err(Malformed::Number));
        assert_eq!(decode(b"+a\nb\r\n"), Err(Malformed::Terminator));
        assert_eq!(decode(b"+a\rb\r\n"), Err(Malformed::Terminator));
        assert_eq!(decode(b"$1\r\nab\r\n"), Err(Malformed::Terminator));
        assert_eq!(decode(b"$1048577\r\n"), Err(Malformed::TooLarge));
        assert_eq!(decode(b"*65537\r\n"), Err(Malformed::TooLarge));
        let deep = b"*1\r\n".repeat(MAX_DEPTH + 1);
        assert_eq!(decode(&deep), Err(Malformed::TooLarge));
        let long = vec![b'x'; MAX_LINE + 3];
        let mut line = b"+".to_vec();
        line.extend_from_slice(&long);
        assert_eq!(decode(&line), Err(Malformed::TooLarge));
    }

    #[test]
    fn extreme_integers() {
        assert_eq!(one(b":9223372036854775807\r\n"), Value::Int(i64::MAX));
        assert_eq!(one(b":-9223372036854775808\r\n"), Value::Int(i64::MIN));
        assert_eq!(decode(b":9223372036854775808\r\n"), Err(Malformed::Number));
    }

    #[test]
    fn a_huge_announced_array_reserves_only_what_arrived() {
        // 65,536 items announced, three bytes here: no 1 MiB reservation.
        assert_eq!(decode(b"*65536\r\n:1\r\n"), Ok(None));
    }

    #[test]
    fn commands_encode_and_values_round_trip() {
        let mut out = Vec::new();
        command(&mut out, &[b"PUBLISH", b"reactor:room:lobby", b"hi\r\n"]);
        assert_eq!(
            out,
            b"*3\r\n$7\r\nPUBLISH\r\n$18\r\nreactor:room:lobby\r\n$4\r\nhi\r\n\r\n"
        );
        let v = Value::Array(Some(vec![
            Value::Int(0),
            Value::Bulk(None),
            Value::Array(Some(vec![Value::Simple(b"x"), Value::Error(b"E")])),
        ]));
        let mut enc = Vec::new();
        v.encode(&mut enc);
        assert_eq!(one(&enc), v);
        for n in [0, 9, 10, 12345, usize::MAX] {
            let mut d = Vec::new();
            push_decimal(&mut d, n);
            assert_eq!(d, n.to_string().as_bytes());
        }
    }
}
