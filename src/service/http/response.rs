//! Writing responses: status lines, the fixed headers, canned error
//! responses, and the `Date` cache.
//!
//! Everything here appends to a caller's `Vec<u8>` with
//! `extend_from_slice` and a small integer formatter, so answering
//! `GET /` allocates nothing once `out` has grown to its working size.
//! Every response carries `Server: reactor` and `Date`; error responses
//! carry a short `text/plain` body such as `400 Bad Request\n`.

use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use httpdate::HttpDate;

/// Length of an IMF-fixdate such as `Sun, 06 Nov 1994 08:49:37 GMT`.
pub const DATE_LEN: usize = 29;

/// Seconds from the epoch to 9999-12-31T23:59:59Z, the last second an
/// IMF-fixdate (and `httpdate`) can express.
const LAST_SECOND: u64 = 253_402_300_799;

/// The `Connection` header a response carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Conn {
    /// HTTP/1.1 persistence: no header needed.
    Keep,
    /// HTTP/1.0 client that asked to keep the connection: `Connection: keep-alive`.
    Keep10,
    /// The connection closes after this response: `Connection: close`.
    Close,
}

impl Conn {
    /// True unless the connection closes after the response.
    pub(crate) fn keeps(self) -> bool {
        self != Conn::Close
    }
}

/// The reason phrase for `status` (`"Unknown"` for codes we never send).
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Appends the decimal digits of `n`.
pub(crate) fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends the lowercase hex digits of `n`.
pub(crate) fn push_hex(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[(n & 15) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// The HSTS header line, without its line ending: one year, as Mozilla's
/// guidelines suggest.
pub const HSTS: &[u8] = b"Strict-Transport-Security: max-age=31536000";

/// Room for a `Date` value, a line break and the HSTS line.
pub const FIXED_MAX: usize = DATE_LEN + 2 + HSTS.len();

/// What follows `Date: ` in every response: the date, then (with `hsts`)
/// `\r\n` and the HSTS line, so `start` writes both for every response,
/// canned ones included, with no flag to thread through. Uses `room`.
pub fn fixed_after_date<'a>(date: &'a [u8], hsts: bool, room: &'a mut [u8; FIXED_MAX]) -> &'a [u8] {
    if !hsts || date.len() > DATE_LEN {
        return date;
    }
    let n = date.len();
    room[..n].copy_from_slice(date);
    room[n..n + 2].copy_from_slice(b"\r\n");
    room[n + 2..n + 2 + HSTS.len()].copy_from_slice(HSTS);
    &room[..n + 2 + HSTS.len()]
}

/// Appends `HTTP/1.1 <status> <reason>`, `Server` and `Date` lines (and
/// whatever fixed lines `date` carries after the date itself).
pub(crate) fn start(out: &mut Vec<u8>, status: u16, date: &[u8]) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\nServer: reactor\r\nDate: ");
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\n");
}

/// Appends one header line `name: value`.
pub(crate) fn header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `Content-Type` (if any) and `Content-Length`.
pub(crate) fn content(out: &mut Vec<u8>, content_type: Option<&str>, len: u64) {
    if let Some(ty) = content_type {
        header(out, "Content-Type", ty.as_bytes());
    }
    out.extend_from_slice(b"Content-Length: ");
    push_u64(out, len);
    out.extend_from_slice(b"\r\n");
}

/// Appends the `Connection` header `conn` needs and the blank line.
pub(crate) fn finish(out: &mut Vec<u8>, conn: Conn) {
    match conn {
        Conn::Keep => {}
        Conn::Keep10 => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        Conn::Close => out.extend_from_slice(b"Connection: close\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a complete response with body `body` (omitted for HEAD).
pub(crate) fn simple(
    out: &mut Vec<u8>,
    status: u16,
    date: &[u8],
    content_type: &str,
    body: &[u8],
    head_only: bool,
    conn: Conn,
) {
    start(out, status, date);
    content(out, Some(content_type), body.len() as u64);
    finish(out, conn);
    if !head_only {
        out.extend_from_slice(body);
    }
}

/// Appends an error response: `<status> <reason>\n` as text/plain, plus
/// `Allow` for 405; the body is left out for HEAD.
pub(crate) fn error(out: &mut Vec<u8>, status: u16, date: &[u8], head_only: bool, conn: Conn) {
    let allow: &[(&str, &[u8])] = if status == 405 {
        &[("Allow", b"GET, HEAD")]
    } else {
        &[]
    };
    error_with(out, status, date, allow, head_only, conn);
}

/// [`error`] with the header lines `extra` after `Date`.
pub(crate) fn error_with(
    out: &mut Vec<u8>,
    status: u16,
    date: &[u8],
    extra: &[(&str, &[u8])],
    head_only: bool,
    conn: Conn,
) {
    let why = reason(status);
    start(out, status, date);
    for (name, value) in extra {
        header(out, name, value);
    }
    // "NNN " + reason + "\n"
    content(out, Some(TEXT), 5 + why.len() as u64);
    finish(out, conn);
    if !head_only {
        push_u64(out, u64::from(status));
        out.push(b' ');
        out.extend_from_slice(why.as_bytes());
        out.push(b'\n');
    }
}

/// The Content-Type of error bodies.
pub(crate) const TEXT: &str = "text/plain; charset=utf-8";

/// Appends a complete error response that closes the connection: what the
/// event loop sends on its own (408 at the header deadline, 503 when it is
/// full). The body is `<status> <reason>\n`; `date` is the cached value.
pub fn canned(status: u16, date: &[u8], out: &mut Vec<u8>) {
    error(out, status, date, false, Conn::Close);
}

/// Clamps `t` into the range an HTTP date can express (1970 to 9999), so
/// odd file times never reach `httpdate`'s panics.
pub(crate) fn clamp_time(t: SystemTime) -> SystemTime {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs().min(LAST_SECOND),
        Err(_) => 0,
    };
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Appends `t` (clamped, whole seconds) as an IMF-fixdate.
pub(crate) fn push_date(out: &mut Vec<u8>, t: SystemTime) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{}", HttpDate::from(clamp_time(t)));
}

/// The `Date` header value, formatted at most once per second.
///
/// The loop keeps one and passes `get(now)` to [`super::HttpConn::input`]:
/// thousands of responses in one second share one formatting.
#[derive(Clone, Debug)]
pub struct DateCache {
    /// The second (since the epoch) `text` shows; `u64::MAX` before the first `get`.
    second: u64,
    /// The formatted date, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
    text: [u8; DATE_LEN],
}

impl Default for DateCache {
    fn default() -> Self {
        DateCache::new()
    }
}

impl DateCache {
    /// An empty cache; the first `get` formats.
    pub fn new() -> Self {
        DateCache {
            second: u64::MAX,
            text: [b' '; DATE_LEN],
        }
    }

    /// Reformats if `now` is in a different second than last time; returns
    /// the header value (no name, no CRLF).
    pub fn get(&mut self, now: SystemTime) -> &[u8] {
        let now = clamp_time(now);
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second != self.second {
            let mut buf: &mut [u8] = &mut self.text;
            // An IMF-fixdate is exactly DATE_LEN bytes for years 1970..=9999.
            let _ = write!(buf, "{}", HttpDate::from(now));
            self.second = second;
        }
        &self.text
    }

    /// The value formatted by the last [`get`](Self::get).
    pub fn text(&self) -> &[u8] {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed date for tests.
    const DATE: &[u8] = b"Sun, 06 Nov 1994 08:49:37 GMT";

    #[test]
    fn integers_format_in_decimal_and_hex() {
        let mut out = Vec::new();
        push_u64(&mut out, 0);
        out.push(b' ');
        push_u64(&mut out, u64::MAX);
        out.push(b' ');
        push_hex(&mut out, 0);
        out.push(b' ');
        push_hex(&mut out, 0xdead_beef);
        assert_eq!(out, b"0 18446744073709551615 0 deadbeef");
    }

    #[test]
    fn hsts_follows_date_only_when_asked() {
        let date = b"Sun, 06 Nov 1994 08:49:37 GMT";
        let mut room = [0; FIXED_MAX];
        assert_eq!(fixed_after_date(date, false, &mut room), &date[..]);
        let mut out = Vec::new();
        start(&mut out, 200, fixed_after_date(date, true, &mut room));
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with(
            "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nStrict-Transport-Security: max-age=31536000\r\n"
        ));
    }

    #[test]
    fn canned_408_and_503_close_with_a_text_body() {
        let mut out = Vec::new();
        canned(408, DATE, &mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 408 Request Timeout\r\nServer: reactor\r\n\
              Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
              Content-Type: text/plain; charset=utf-8\r\nContent-Length: 20\r\n\
              Connection: close\r\n\r\n408 Request Timeout\n"
        );
        out.clear();
        canned(503, DATE, &mut out);
        let text = String::from_utf8(out).expect("ascii");
        assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(text.ends_with("Connection: close\r\n\r\n503 Service Unavailable\n"));
        assert!(text.contains("Content-Length: 24\r\n"));
    }

    #[test]
    fn error_405_lists_allow_and_head_has_no_body() {
        let mut out = Vec::new();
        error(&mut out, 405, DATE, true, Conn::Keep);
        let text = String::from_utf8(out).expect("ascii");
        assert!(text.contains("\r\nAllow: GET, HEAD\r\n"));
        assert!(text.contains("Content-Length: 23\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        assert!(!text.contains("Connection:"));
    }

    #[test]
    fn date_cache_formats_once_per_second() {
        let mut cache = DateCache::new();
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(cache.get(t), DATE);
        // Same second, later instant: unchanged (and not reformatted).
        cache.text[0] = b'X';
        assert_eq!(cache.get(t + Duration::from_millis(999))[0], b'X');
        // Next second: reformatted.
        assert_eq!(
            cache.get(t + Duration::from_secs(1)),
            b"Sun, 06 Nov 1994 08:49:38 GMT"
        );
    }

    #[test]
    fn dates_out_of_range_are_clamped_not_panicking() {
        let mut out = Vec::new();
        push_date(&mut out, UNIX_EPOCH - Duration::from_secs(10));
        assert_eq!(out, b"Thu, 01 Jan 1970 00:00:00 GMT");
        out.clear();
        push_date(&mut out, UNIX_EPOCH + Duration::from_secs(u64::MAX / 4));
        assert_eq!(out, b"Fri, 31 Dec 9999 23:59:59 GMT");
        let mut cache = DateCache::new();
        assert_eq!(
            cache.get(UNIX_EPOCH - Duration::from_secs(1)).len(),
            DATE_LEN
        );
    }
}
