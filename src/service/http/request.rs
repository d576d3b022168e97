//! The request head: tokenized by `httparse`, then checked against our
//! limits and framing rules.
//!
//! `httparse` rejects malformed request lines, headers without a colon,
//! whitespace before a colon, obs-fold, bare CR, NUL and other control
//! bytes. What it does not know is ours:
//!
//! - limits: target over `max_target` is 414; a header line over
//!   `max_header_line`, header bytes over `max_headers_bytes`, or more than
//!   `max_headers` headers is 431. A head still incomplete is checked as
//!   far as it goes, so an oversized head is answered, not buffered.
//! - versions: `HTTP/<digit>.<digit>` other than 1.0 and 1.1 is 505;
//!   anything else in the version slot (`HTTP/1.32`) is 400.
//! - framing (RFC 9112 §6): `Content-Length` must be one header of plain
//!   `1*DIGIT` that fits a `u64`; `Transfer-Encoding` must be exactly
//!   `chunked` (one header, HTTP/1.1 only; an unknown coding is 501, any
//!   other list 400); both together are 400. Any framing doubt closes.
//! - `Host`: exactly one in HTTP/1.1, at most one in HTTP/1.0.
//! - `Expect`: only `100-continue` (else 417); a declared body over
//!   `max_body` is 413 before a byte of it is read.

use std::mem::MaybeUninit;

use super::config::HttpConfig;

/// Header slots on the stack: `max_headers` is clamped to this.
pub(crate) const HEADER_CAP: usize = 128;

/// Leading empty lines tolerated before a request line (RFC 9112 §2.2), in bytes.
const MAX_BLANK: usize = 1024;

/// Request-line bytes allowed beyond the target (method, spaces, version).
const LINE_SLACK: usize = 64;

/// The request methods we tell apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    /// `GET`.
    Get,
    /// `HEAD`: GET's headers without the body.
    Head,
    /// Anything else: 405.
    Other,
}

/// How the request's body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    None,
    /// `Content-Length: n` with `0 < n <= max_body`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A valid request head, borrowing from the input.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    /// The method.
    pub method: Method,
    /// The request target as sent (path, query and all).
    pub target: &'a str,
    /// Bytes of the head, from the first byte to the end of the blank line.
    pub head_len: usize,
    /// How the body is framed.
    pub framing: Framing,
    /// The connection persists after the response (version and `Connection`).
    pub keep_alive: bool,
    /// HTTP/1.0 (the response says `Connection: keep-alive` when persisting).
    pub http10: bool,
    /// `Expect: 100-continue` from an HTTP/1.1 client.
    pub expect_continue: bool,
    /// First `If-Modified-Since` value.
    pub if_modified_since: Option<&'a [u8]>,
    /// First `If-None-Match` value.
    pub if_none_match: Option<&'a [u8]>,
    /// First `Range` value.
    pub range: Option<&'a [u8]>,
    /// First `If-Range` value.
    pub if_range: Option<&'a [u8]>,
    /// The headers a WebSocket handshake is judged on.
    pub upgrade: Upgrade<'a>,
    /// First `Referer` value (for the access log).
    pub referer: Option<&'a [u8]>,
    /// First `User-Agent` value (for the access log).
    pub user_agent: Option<&'a [u8]>,
}

/// The headers of a WebSocket upgrade request (RFC 6455 section 4.2.1),
/// as sent; `websocket::handshake` judges them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Upgrade<'a> {
    /// An `Upgrade` header listed `websocket`.
    pub websocket: bool,
    /// A `Connection` header listed `upgrade`.
    pub connection: bool,
    /// The `Sec-WebSocket-Key` value; `None` if absent or sent twice.
    pub key: Option<&'a [u8]>,
    /// The `Sec-WebSocket-Version` value (first).
    pub version: Option<&'a [u8]>,
    /// The `Origin` value (first).
    pub origin: Option<&'a [u8]>,
    /// `Sec-WebSocket-Key` was sent more than once.
    pub duplicate_key: bool,
}

/// A head turned away: the status to answer with, then close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reject {
    /// The error status.
    pub status: u16,
    /// The request was HEAD, so the error has no body.
    pub head_only: bool,
}

/// What parsing the start of the input found.
#[derive(Debug)]
pub(crate) enum Parsed<'a> {
    /// Not a whole head yet, and within the limits so far: wait for more.
    Partial,
    /// A valid head.
    Done(Request<'a>),
    /// A head that must be refused (then close).
    Reject(Reject),
}

/// Rejection with `status` for a request whose method is unknown or not HEAD.
fn reject(status: u16) -> Parsed<'static> {
    Parsed::Reject(Reject {
        status,
        head_only: false,
    })
}

/// Parses the head at the start of `buf` and applies every rule above.
pub(crate) fn parse<'a>(buf: &'a [u8], cfg: &HttpConfig) -> Parsed<'a> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; HEADER_CAP];
    let slots = &mut slots[..cfg.max_headers.clamp(1, HEADER_CAP)];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(buf, slots) {
        Ok(httparse::Status::Partial) | Err(_) => match first_refusal(buf, cfg) {
            Some(status) => reject(status),
            None => Parsed::Partial,
        },
        Ok(httparse::Status::Complete(len)) => validate(&req, buf, len, cfg),
    }
}

/// The status for an incomplete or malformed head, judged on the shortest
/// prefix of `buf` that is already refusable, or `None` to wait. Judging
/// the whole buffer instead would make the status depend on how the bytes
/// arrived: a syntax error early in the head and a size limit broken later
/// would give 400 when the bytes trickle in but 414 or 431 when they come
/// in one read. A prefix, once refusable, stays so as bytes are added, so
/// a binary search finds it; it runs only on the way to a refusal.
fn first_refusal(buf: &[u8], cfg: &HttpConfig) -> Option<u16> {
    refusal(buf, cfg)?;
    let (mut lo, mut hi) = (0, buf.len()); // refusal(buf[..lo]) is None, buf[..hi] is Some
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match refusal(&buf[..mid], cfg) {
            Some(_) => hi = mid,
            None => lo = mid,
        }
    }
    refusal(&buf[..hi], cfg)
}

/// What an incomplete or malformed head `buf` gets as it stands: a status
/// (a broken limit, or httparse's error), or `None` to wait for more.
fn refusal(buf: &[u8], cfg: &HttpConfig) -> Option<u16> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; HEADER_CAP];
    let slots = &mut slots[..cfg.max_headers.clamp(1, HEADER_CAP)];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(buf, slots) {
        Ok(httparse::Status::Partial) => scan_limits(buf, cfg),
        Err(e) => scan_limits(buf, cfg).or_else(|| error_status(e, buf)),
        // A whole head is not refused here: `validate` judges it.
        Ok(httparse::Status::Complete(_)) => None,
    }
}

/// The status for an `httparse` error (431, 505 or 400), or `None` to
/// wait: a version slot still too short to tell `HTTP/2.0` from garbage.
fn error_status(e: httparse::Error, buf: &[u8]) -> Option<u16> {
    match e {
        httparse::Error::TooManyHeaders => Some(431),
        httparse::Error::Version => version_status(buf),
        _ => Some(400),
    }
}

/// For a request line whose version httparse refused: 505 for a
/// well-formed `HTTP/d.d` (one we do not implement), 400 for anything
/// else, `None` while the line is unterminated and could still be `HTTP/d.d`.
fn version_status(buf: &[u8]) -> Option<u16> {
    /// The shape of a version: `D` stands for any digit.
    const SHAPE: &[u8] = b"HTTP/D.D";
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(0);
    let (line, next) = line_at(buf, start);
    // The version is whatever follows the second space (method SP target
    // SP version): not the last word, which would read `G GET / HTTP/1.1`
    // as version 1.1 whole but as garbage byte by byte.
    let mut spaces = line.iter().enumerate().filter(|&(_, &b)| b == b' ');
    let version = match spaces.nth(1) {
        Some((sp, _)) => line.get(sp + 1..).unwrap_or_default(),
        None => return Some(400),
    };
    // An unterminated line may end in the CR of its CRLF.
    let version = match next {
        None => version.strip_suffix(b"\r").unwrap_or(version),
        Some(_) => version,
    };
    let fits = version.len() <= SHAPE.len()
        && version
            .iter()
            .zip(SHAPE)
            .all(|(&b, &s)| b == s || (s == b'D' && b.is_ascii_digit()));
    match (fits, next) {
        (true, Some(_)) if version.len() == SHAPE.len() => Some(505),
        (true, None) => None,
        _ => Some(400),
    }
}

/// The line starting at `pos` (without its `\n` or `\r\n`) and where the
/// next one starts (`None` if this line is unterminated).
fn line_at(buf: &[u8], pos: usize) -> (&[u8], Option<usize>) {
    let rest = buf.get(pos..).unwrap_or_default();
    match rest.iter().position(|&b| b == b'\n') {
        Some(end) => {
            let line = rest.get(..end).unwrap_or_default();
            (
                line.strip_suffix(b"\r").unwrap_or(line),
                Some(pos + end + 1),
            )
        }
        None => (rest, None),
    }
}

/// Checks a head (possibly incomplete) against the size limits; returns
/// 400, 414 or 431 for the first one broken.
pub(crate) fn scan_limits(buf: &[u8], cfg: &HttpConfig) -> Option<u16> {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n');
    let start = start.unwrap_or(buf.len());
    if start > MAX_BLANK {
        return Some(400);
    }
    let (line, mut next) = line_at(buf, start);
    let target = line.split(|&b| b == b' ').nth(1).unwrap_or_default();
    if target.len() > cfg.max_target {
        return Some(414);
    }
    if line.len() > cfg.max_target.saturating_add(LINE_SLACK) {
        return Some(400);
    }
    let (mut count, mut bytes) = (0usize, 0usize);
    while let Some(pos) = next {
        let (line, after) = line_at(buf, pos);
        if line.is_empty() && after.is_some() {
            break;
        }
        count += 1;
        bytes += after.unwrap_or(buf.len()) - pos;
        if line.len() > cfg.max_header_line
            || count > cfg.max_headers
            || bytes > cfg.max_headers_bytes
        {
            return Some(431);
        }
        next = after;
    }
    None
}

/// Offset of `part` inside `buf`, or `None` if `part` does not point into
/// it (httparse may hand out a static empty slice for an empty value).
fn offset(buf: &[u8], part: &[u8]) -> Option<usize> {
    let at = (part.as_ptr() as usize).checked_sub(buf.as_ptr() as usize)?;
    (at <= buf.len()).then_some(at)
}

/// Applies the limits and rules to a complete head of `len` bytes.
fn validate<'a>(
    req: &httparse::Request<'_, 'a>,
    buf: &'a [u8],
    len: usize,
    cfg: &HttpConfig,
) -> Parsed<'a> {
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return reject(400);
    };
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => Method::Other,
    };
    let fail = |status| {
        Parsed::Reject(Reject {
            status,
            head_only: method == Method::Head,
        })
    };
    if offset(buf, method_bytes(req)).unwrap_or(0) > MAX_BLANK {
        return fail(400);
    }
    if target.len() > cfg.max_target {
        return fail(414);
    }
    if let Some(status) = header_limits(req, buf, len, cfg) {
        return fail(status);
    }
    let fields = match Fields::collect(req.headers) {
        Ok(fields) => fields,
        Err(status) => return fail(status),
    };
    match fields.check(minor, cfg) {
        Ok((framing, keep_alive, expect_continue)) => Parsed::Done(Request {
            method,
            target,
            head_len: len,
            framing,
            keep_alive,
            http10: minor == 0,
            expect_continue,
            if_modified_since: fields.if_modified_since,
            if_none_match: fields.if_none_match,
            range: fields.range,
            if_range: fields.if_range,
            upgrade: fields.upgrade,
            referer: fields.referer,
            user_agent: fields.user_agent,
        }),
        Err(status) => fail(status),
    }
}

/// The method's bytes (empty if absent).
fn method_bytes<'a>(req: &httparse::Request<'_, 'a>) -> &'a [u8] {
    req.method.map_or(&[][..], str::as_bytes)
}

/// 431 if a header line or all header bytes of a complete head are too long.
fn header_limits(
    req: &httparse::Request<'_, '_>,
    buf: &[u8],
    len: usize,
    cfg: &HttpConfig,
) -> Option<u16> {
    for h in req.headers.iter() {
        // "name: value" as measured on the wire, less trailing whitespace.
        let name = h.name.as_bytes();
        let line = match (offset(buf, name), offset(buf, h.value)) {
            (Some(n), Some(v)) if v >= n && !h.value.is_empty() => v - n + h.value.len(),
            _ => name.len() + 2 + h.value.len(),
        };
        if line > cfg.max_header_line {
            return Some(431);
        }
    }
    let first = req.headers.first();
    let first = first
        .and_then(|h| offset(buf, h.name.as_bytes()))
        .unwrap_or(len);
    // The header block less its final blank line.
    let blank = if buf.get(..len).is_some_and(|h| h.ends_with(b"\r\n\r\n")) {
        2
    } else {
        1
    };
    if len.saturating_sub(first).saturating_sub(blank) > cfg.max_headers_bytes {
        return Some(431);
    }
    None
}

/// The header fields our rules look at, gathered in one pass.
#[derive(Debug, Default)]
struct Fields<'a> {
    /// The `Content-Length` value (the only one: duplicates are refused).
    content_length: Option<&'a [u8]>,
    /// The `Transfer-Encoding` value (the only one: duplicates are refused).
    transfer_encoding: Option<&'a [u8]>,
    /// How many `Host` headers.
    hosts: u32,
    /// A `Connection` header listed `close`.
    close: bool,
    /// A `Connection` header listed `keep-alive`.
    keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    expect_continue: bool,
    /// An `Expect` other than `100-continue` was sent.
    expect_other: bool,
    /// First `If-Modified-Since`.
    if_modified_since: Option<&'a [u8]>,
    /// First `If-None-Match`.
    if_none_match: Option<&'a [u8]>,
    /// First `Range`.
    range: Option<&'a [u8]>,
    /// First `If-Range`.
    if_range: Option<&'a [u8]>,
    /// The WebSocket handshake's headers.
    upgrade: Upgrade<'a>,
    /// First `Referer`.
    referer: Option<&'a [u8]>,
    /// First `User-Agent`.
    user_agent: Option<&'a [u8]>,
}

impl<'a> Fields<'a> {
    /// Gathers the fields; 400 for a duplicate `Content-Length` or
    /// `Transfer-Encoding`.
    fn collect(headers: &[httparse::Header<'a>]) -> Result<Fields<'a>, u16> {
        let mut f = Fields::default();
        for h in headers {
            let name = h.name;
            let value = h.value;
            if name.eq_ignore_ascii_case("content-length") {
                if f.content_length.replace(value).is_some() {
                    return Err(400);
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                if f.transfer_encoding.replace(value).is_some() {
                    return Err(400);
                }
            } else if name.eq_ignore_ascii_case("host") {
                f.hosts += 1;
            } else if name.eq_ignore_ascii_case("connection") {
                f.connection(value);
            } else if name.eq_ignore_ascii_case("expect") {
                let ok = trim(value).eq_ignore_ascii_case(b"100-continue");
                f.expect_continue |= ok;
                f.expect_other |= !ok;
            } else if name.eq_ignore_ascii_case("if-modified-since") {
                f.if_modified_since.get_or_insert(value);
            } else if name.eq_ignore_ascii_case("if-none-match") {
                f.if_none_match.get_or_insert(value);
            } else if name.eq_ignore_ascii_case("range") {
                f.range.get_or_insert(value);
            } else if name.eq_ignore_ascii_case("if-range") {
                f.if_range.get_or_insert(value);
            } else if name.eq_ignore_ascii_case("upgrade") {
                f.upgrade.websocket |= has_token(value, b"websocket");
            } else if name.eq_ignore_ascii_case("sec-websocket-key") {
                f.upgrade.duplicate_key |= f.upgrade.key.replace(trim(value)).is_some();
            } else if name.eq_ignore_ascii_case("sec-websocket-version") {
                f.upgrade.version.get_or_insert(trim(value));
            } else if name.eq_ignore_ascii_case("origin") {
                f.upgrade.origin.get_or_insert(trim(value));
            } else if name.eq_ignore_ascii_case("user-agent") {
                f.user_agent.get_or_insert(value);
            } else if name.eq_ignore_ascii_case("referer") {
                f.referer.get_or_insert(value);
            }
        }
        Ok(f)
    }

    /// Notes the `close`, `keep-alive` and `upgrade` options of a
    /// `Connection` value.
    fn connection(&mut self, value: &[u8]) {
        for token in value.split(|&b| b == b',').map(trim) {
            self.close |= token.eq_ignore_ascii_case(b"close");
            self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            self.upgrade.connection |= token.eq_ignore_ascii_case(b"upgrade");
        }
    }

    /// Applies the Host, framing, Expect and size rules for HTTP/1.`minor`;
    /// returns the framing, persistence and whether to send 100.
    fn check(&self, minor: u8, cfg: &HttpConfig) -> Result<(Framing, bool, bool), u16> {
        if self.hosts > 1 || (minor == 1 && self.hosts == 0) {
            return Err(400);
        }
        let framing = match (self.content_length, self.transfer_encoding) {
            (Some(_), Some(_)) => return Err(400),
            (None, Some(_)) if minor == 0 => return Err(400),
            (None, Some(te)) => {
                transfer_coding(te)?;
                Framing::Chunked
            }
            (Some(cl), None) => match content_length(cl).ok_or(400u16)? {
                0 => Framing::None,
                n => Framing::Length(n),
            },
            (None, None) => Framing::None,
        };
        if self.expect_other {
            return Err(417);
        }
        if matches!(framing, Framing::Length(n) if n > cfg.max_body) {
            return Err(413);
        }
        let keep_alive = !self.close && (minor == 1 || self.keep_alive);
        let expect = self.expect_continue && minor == 1 && framing != Framing::None;
        Ok((framing, keep_alive, expect))
    }
}

/// True if the comma-separated list `value` holds `token` (any case).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| trim(t).eq_ignore_ascii_case(token))
}

/// `value` without leading and trailing spaces and tabs (OWS only).
pub(crate) fn trim(value: &[u8]) -> &[u8] {
    let start = value.iter().position(|&b| b != b' ' && b != b'\t');
    let Some(start) = start else {
        return &[];
    };
    let end = value.iter().rposition(|&b| b != b' ' && b != b'\t');
    value
        .get(start..end.map_or(start, |e| e + 1))
        .unwrap_or_default()
}

/// Parses a `Content-Length` value: `1*DIGIT` (OWS around it) that fits a
/// `u64`; `None` for anything else (`+5`, `-1`, `0x5`, `5 5`, `5,5`, overflow).
pub(crate) fn content_length(value: &[u8]) -> Option<u64> {
    let digits = trim(value);
    if digits.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// Checks a `Transfer-Encoding` value: `Ok` only for exactly `chunked`;
/// 501 if it names a coding we do not know; 400 otherwise (chunked not
/// last, chunked twice, empty elements, or a known coding we do not decode
/// put before chunked: we only discard bodies, and only chunked ones).
pub(crate) fn transfer_coding(value: &[u8]) -> Result<(), u16> {
    /// Codings registered for Transfer-Encoding (RFC 9110 §8.4.1, RFC 9112 §7).
    const KNOWN: [&[u8]; 6] = [
        b"chunked",
        b"compress",
        b"deflate",
        b"gzip",
        b"x-compress",
        b"x-gzip",
    ];
    let mut count = 0usize;
    let mut last_chunked = false;
    for token in value.split(|&b| b == b',').map(trim) {
        if token.is_empty() {
            return Err(400);
        }
        if !KNOWN.iter().any(|k| token.eq_ignore_ascii_case(k)) {
            return Err(501);
        }
        count += 1;
        last_chunked = token.eq_ignore_ascii_case(b"chunked");
    }
    match (count, last_chunked) {
        (1, true) => Ok(()),
        _ => Err(400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default configuration.
    fn cfg() -> HttpConfig {
        HttpConfig::default()
    }

    /// The status `parse` rejects `head` with, or 0 if it does not.
    fn status(head: &[u8]) -> u16 {
        match parse(head, &cfg()) {
            Parsed::Reject(r) => r.status,
            Parsed::Done(_) => 0,
            Parsed::Partial => 1,
        }
    }

    #[test]
    fn content_length_is_plain_digits_only() {
        assert_eq!(content_length(b"0"), Some(0));
        assert_eq!(content_length(b" 42\t"), Some(42));
        assert_eq!(content_length(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b"+5"[..],
            b"-1",
            b"0x5",
            b"5 5",
            b"5,5",
            b"",
            b" ",
            b"18446744073709551616",
            b"99999999999999999999",
            b"\x0c5",
        ] {
            assert_eq!(
                content_length(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn transfer_coding_accepts_only_chunked() {
        assert_eq!(transfer_coding(b"chunked"), Ok(()));
        assert_eq!(transfer_coding(b" ChUnKeD "), Ok(()));
        assert_eq!(transfer_coding(b"chunked, gzip"), Err(400));
        assert_eq!(transfer_coding(b"chunked, chunked"), Err(400));
        assert_eq!(transfer_coding(b"gzip, chunked"), Err(400));
        assert_eq!(transfer_coding(b"chunked,"), Err(400));
        assert_eq!(transfer_coding(b""), Err(400));
        assert_eq!(transfer_coding(b"identity"), Err(501));
        assert_eq!(transfer_coding(b"foo, chunked"), Err(501));
        assert_eq!(transfer_coding(b"chunked\x0b"), Err(501));
    }

    #[test]
    fn a_simple_head_parses_with_its_fields() {
        let head =
            b"GET /a?b HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\nRange: bytes=5-\r\n\r\nrest";
        let Parsed::Done(req) = parse(head, &cfg()) else {
            panic!("not parsed");
        };
        assert_eq!(req.method, Method::Get);
        assert_eq!(req.target, "/a?b");
        assert_eq!(req.head_len, head.len() - 4);
        assert_eq!(req.framing, Framing::None);
        assert!(req.keep_alive && !req.http10 && !req.expect_continue);
        assert_eq!(req.range, Some(&b"bytes=0-1"[..]));
    }

    #[test]
    fn versions_505_and_400() {
        assert_eq!(status(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTP/3.0\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTP/1.32\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / FTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / http/1.1\r\nHost: a\r\n\r\n"), 400);
    }

    #[test]
    fn limits_apply_to_partial_heads() {
        let c = cfg();
        let mut long = b"GET /".to_vec();
        long.resize(c.max_target + 10, b'a');
        assert_eq!(status(&long), 414, "partial long target");
        let mut line = b"GET / HTTP/1.1\r\nX: ".to_vec();
        line.resize(c.max_header_line + 100, b'a');
        assert_eq!(status(&line), 431, "partial long header");
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for _ in 0..=c.max_headers {
            many.extend_from_slice(b"X: y\r\n");
        }
        assert_eq!(status(&many), 431, "partial: too many headers");
        assert_eq!(status(&[b'\n'; 2000]), 400, "endless blank lines");
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\n"),
            1,
            "short partial waits"
        );
    }

    #[test]
    fn trim_is_ows_only() {
        assert_eq!(trim(b" \t a b \t"), b"a b");
        assert_eq!(trim(b"\x0ca\r"), b"\x0ca\r");
        assert_eq!(trim(b"   "), b"");
    }
}
