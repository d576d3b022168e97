//! The access log's lines, sans I/O: what one answered request leaves to
//! be logged ([`Logged`], handed to an [`AccessSink`] as each response is
//! written) and its rendering in the Combined Log Format, nginx's default
//! `combined`:
//!
//! ```text
//! 127.0.0.1 - - [06/Nov/1994:08:49:37 +0000] "GET / HTTP/1.1" 200 14 "-" "curl/8.0"
//! ```
//!
//! The address, `-` (identd), `-` (user), the time, the request line, the
//! status, the body bytes (0 when there is none, as nginx's
//! `$body_bytes_sent`), the `Referer` and the `User-Agent` (`-` when
//! absent). Quoted fields escape `"`, `\` and bytes outside printable
//! ASCII as `\xHH`, as nginx does, so a line always parses back.

use super::response::{DATE_LEN, push_u64};

/// Longest request line logged; a longer one is cut and ends in `...`.
pub const MAX_LOGGED_LINE: usize = 4096;

/// Length of a CLF time such as `06/Nov/1994:08:49:37 +0000`.
pub const CLF_TIME_LEN: usize = 26;

/// What one answered request leaves in the access log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Logged<'a> {
    /// The request line as sent (empty if there was none to read).
    pub request: &'a [u8],
    /// The response's status.
    pub status: u16,
    /// Bytes of the response's body (a file body counted whole).
    pub bytes: u64,
    /// The `Referer` header, if sent.
    pub referer: Option<&'a [u8]>,
    /// The `User-Agent` header, if sent.
    pub user_agent: Option<&'a [u8]>,
}

/// Where the state machine hands each response's log entry, as the
/// response is written.
pub trait AccessSink {
    /// One request was answered.
    fn log(&mut self, entry: &Logged<'_>);
}

/// The first line of the head at the start of `input` (blank lines before
/// it skipped), without its line ending, at most `MAX_LOGGED_LINE` bytes
/// (the caller marks a cut).
pub fn request_line(input: &[u8]) -> &[u8] {
    let start = input
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(input.len());
    let rest = &input[start..];
    let end = rest
        .iter()
        .take(MAX_LOGGED_LINE + 1)
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(rest.len().min(MAX_LOGGED_LINE + 1));
    &rest[..end]
}

/// The status and body length of the one response that starts at the
/// beginning of `out` (past a `100 Continue`, if one leads), as written by
/// this module's siblings: `HTTP/1.1 NNN ...`, the head, then the body.
pub(crate) fn status_and_body(out: &[u8]) -> (u16, u64) {
    let mut at = out;
    if at.starts_with(b"HTTP/1.1 100 ") {
        at = match find_blank(at) {
            Some(end) => &at[end..],
            None => at,
        };
    }
    let status = match at.get(9..12) {
        Some(&[a, b, c]) if [a, b, c].iter().all(u8::is_ascii_digit) => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => 0,
    };
    let body = find_blank(at).map_or(0, |end| at.len() - end);
    (status, body as u64)
}

/// Where the body starts: just past the first `\r\n\r\n` (found from the
/// line ends, with `memchr`: a head is a handful of lines).
fn find_blank(head: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b'\n', head)
        .find(|&at| at >= 3 && head[at - 3..=at] == *b"\r\n\r\n")
        .map(|at| at + 1)
}

/// Turns an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, the cached
/// `Date` value) into the CLF time `06/Nov/1994:08:49:37 +0000`; `None` if
/// `imf` is not one.
pub fn clf_time(imf: &[u8]) -> Option<[u8; CLF_TIME_LEN]> {
    if imf.len() != DATE_LEN || !imf.ends_with(b" GMT") {
        return None;
    }
    let mut t = [0u8; CLF_TIME_LEN];
    t[0..2].copy_from_slice(&imf[5..7]);
    t[2] = b'/';
    t[3..6].copy_from_slice(&imf[8..11]);
    t[6] = b'/';
    t[7..11].copy_from_slice(&imf[12..16]);
    t[11] = b':';
    t[12..20].copy_from_slice(&imf[17..25]);
    t[20..].copy_from_slice(b" +0000");
    Some(t)
}

/// Appends one Combined Log Format line (with its `\n`) for `e`, from the
/// client at `addr`, at CLF time `time`.
pub fn combined(out: &mut Vec<u8>, addr: &[u8], time: &[u8], e: &Logged<'_>) {
    out.extend_from_slice(addr);
    out.extend_from_slice(b" - - [");
    out.extend_from_slice(time);
    out.extend_from_slice(b"] \"");
    if e.request.is_empty() {
        out.push(b'-');
    } else if e.request.len() > MAX_LOGGED_LINE {
        escaped(out, &e.request[..MAX_LOGGED_LINE]);
        out.extend_from_slice(b"...");
    } else {
        escaped(out, e.request);
    }
    out.extend_from_slice(b"\" ");
    push_u64(out, u64::from(e.status));
    out.push(b' ');
    push_u64(out, e.bytes);
    for field in [e.referer, e.user_agent] {
        out.extend_from_slice(b" \"");
        match field {
            Some(v) if !v.is_empty() => escaped(out, v),
            _ => out.push(b'-'),
        }
        out.push(b'"');
    }
    out.push(b'\n');
}

/// Appends `v` with `"`, `\` and bytes outside printable ASCII as `\xHH`.
fn escaped(out: &mut Vec<u8>, v: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let plain = |b: &u8| *b != b'"' && *b != b'\\' && (0x20..0x7f).contains(b);
    if v.iter().all(plain) {
        out.extend_from_slice(v); // the common case, in one copy
        return;
    }
    for &b in v {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            out.extend_from_slice(&[
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]);
        } else {
            out.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_in_the_combined_format() {
        let mut out = Vec::new();
        let time = clf_time(b"Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(&time, b"06/Nov/1994:08:49:37 +0000");
        let e = Logged {
            request: b"GET /a\"b\\c\x01 HTTP/1.1",
            status: 200,
            bytes: 14,
            referer: None,
            user_agent: Some(b"curl/8.0 \xc3\xa9"),
        };
        combined(&mut out, b"127.0.0.1", &time, &e);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "127.0.0.1 - - [06/Nov/1994:08:49:37 +0000] \"GET /a\\x22b\\x5Cc\\x01 HTTP/1.1\" 200 14 \"-\" \"curl/8.0 \\xC3\\xA9\"\n"
        );
        assert_eq!(clf_time(b"garbage"), None);
    }

    #[test]
    fn request_lines_and_responses_read_back() {
        assert_eq!(
            request_line(b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            b"GET / HTTP/1.1"
        );
        assert_eq!(request_line(b"GET"), b"GET");
        let long = vec![b'a'; MAX_LOGGED_LINE + 100];
        assert_eq!(request_line(&long).len(), MAX_LOGGED_LINE + 1);
        let resp = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nA: b\r\n\r\n404 x\n";
        assert_eq!(status_and_body(resp), (404, 6));
        assert_eq!(
            status_and_body(b"HTTP/1.1 304 Not Modified\r\n\r\n"),
            (304, 0)
        );
    }
}
