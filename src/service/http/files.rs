//! Static files under a root, like `python -m http.server`.
//!
//! A clean path (see `path`) is joined under the root, then the result is
//! `canonicalize`d and must still lie under the canonical root: a symlink
//! that leads out of the root is a 404, and so is anything missing. The
//! file is then opened with `O_NOFOLLOW | O_NONBLOCK` (a FIFO planted in
//! the root cannot block the loop) and checked again through the open
//! handle: only a regular file is served. The response head goes into
//! `out`; the bytes go back to the loop as a [`FileBody`] to stream in
//! bounded chunks. This module and the listing are the only code here that
//! touches the file system.
//!
//! - A directory without a trailing `/` is a 301 to the same path with one;
//!   with it, its `index.html` is served, or else an HTML listing (names
//!   HTML-escaped, links percent-encoded, at most [`MAX_LISTED`] entries).
//! - `Content-Type` comes from the extension ([`mime`]).
//! - Validators: `Last-Modified` (the mtime, whole seconds) and a strong
//!   `ETag` `"<mtime-hex>-<len-hex>"`. `If-None-Match` (weak comparison)
//!   wins over `If-Modified-Since`; either can give 304.
//! - `Range` (GET only): one `bytes=a-b`, `a-` or `-n` gives 206 with
//!   `Content-Range`; an unsatisfiable one 416 with `bytes */len`; several
//!   ranges, or a malformed header, are ignored (200 with the whole file).
//!   `If-Range` that does not match the current validator also ignores it.

use std::ffi::OsStr;
use std::fs::{self, File, Metadata, OpenOptions};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::path::{Clean, encode_segment};
use super::request::{Method, Request, content_length, trim};
use super::response::{self, Conn, TEXT, clamp_time, content, finish, header, push_date, push_hex};

/// A file body to send after the response head already in `out`: `len`
/// bytes from `offset`. The loop reads it in bounded chunks (or uses
/// `sendfile`), never whole. Never empty: a zero-length body is not returned.
#[derive(Debug)]
pub struct FileBody {
    /// The open file (a regular file under the root, opened read-only).
    pub file: File,
    /// Where the bytes to send start.
    pub offset: u64,
    /// How many bytes to send.
    pub len: u64,
}

/// Most entries a directory listing shows (the rest are left out).
pub(crate) const MAX_LISTED: usize = 10_000;

/// What a request for a file needs besides the file.
pub(crate) struct Reply<'a, 'r> {
    /// The parsed request (method and conditional headers).
    pub req: &'a Request<'r>,
    /// The cached `Date` value.
    pub date: &'a [u8],
    /// The `Connection` header to send.
    pub conn: Conn,
}

impl Reply<'_, '_> {
    /// True for HEAD: headers only.
    fn head_only(&self) -> bool {
        self.req.method == Method::Head
    }

    /// Appends an error response (keeps the connection as `conn` says).
    fn error(&self, status: u16, out: &mut Vec<u8>) {
        response::error(out, status, self.date, self.head_only(), self.conn);
    }
}

/// Answers a GET or HEAD for `clean` under `root`; returns the file body
/// to stream, if any.
pub(crate) fn serve(
    root: &Path,
    clean: &Clean<'_>,
    reply: &Reply<'_, '_>,
    out: &mut Vec<u8>,
) -> Option<FileBody> {
    let Some((root, found, meta)) = locate(root, &clean.path) else {
        reply.error(404, out);
        return None;
    };
    if meta.is_dir() {
        if !clean.dir {
            redirect(&clean.path, reply, out);
            return None;
        }
        if let Some((index, meta)) = confine(&root, found.join("index.html"))
            && meta.is_file()
        {
            return send_file(&index, reply, out);
        }
        if !listing(&found, &clean.path, reply, out) {
            reply.error(404, out);
        }
        return None;
    }
    if meta.is_file() && !clean.dir {
        return send_file(&found, reply, out);
    }
    reply.error(404, out);
    None
}

/// Canonical root, canonical path and metadata of `path` (`/...`) under
/// `root`; `None` if missing or outside the root.
fn locate(root: &Path, path: &[u8]) -> Option<(PathBuf, PathBuf, Metadata)> {
    let root = root.canonicalize().ok()?;
    let rel = OsStr::from_bytes(path.strip_prefix(b"/")?);
    let (canon, meta) = confine(&root, root.join(rel))?;
    Some((root, canon, meta))
}

/// `path` canonicalised, with its metadata, if it exists and lies under
/// the canonical `root`.
fn confine(root: &Path, path: PathBuf) -> Option<(PathBuf, Metadata)> {
    let canon = path.canonicalize().ok()?;
    if !canon.starts_with(root) {
        return None;
    }
    let meta = fs::metadata(&canon).ok()?;
    Some((canon, meta))
}

/// 301 to the directory `path` (normalised, decoded) with a trailing
/// slash. The `Location` is built from the normalised path, segment by
/// segment, percent-encoded, never from the target as sent: a target like
/// `//evil.example/../sub` must not become a `Location` that a browser
/// reads as another host.
fn redirect(path: &[u8], reply: &Reply<'_, '_>, out: &mut Vec<u8>) {
    const BODY: &[u8] = b"301 Moved Permanently\n";
    response::start(out, 301, reply.date);
    out.extend_from_slice(b"Location: ");
    for segment in path.split(|&b| b == b'/').filter(|s| !s.is_empty()) {
        out.push(b'/');
        encode_segment(segment, out);
    }
    out.extend_from_slice(b"/\r\n");
    content(out, Some(TEXT), BODY.len() as u64);
    finish(out, reply.conn);
    if !reply.head_only() {
        out.extend_from_slice(BODY);
    }
}

/// Opens a regular file without following a final symlink or blocking.
fn open_regular(path: &Path) -> Option<(File, Metadata)> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    meta.is_file().then_some((file, meta))
}

/// Answers with the file at `path` (canonical): 200, 206, 304 or 416.
fn send_file(path: &Path, reply: &Reply<'_, '_>, out: &mut Vec<u8>) -> Option<FileBody> {
    let Some((file, meta)) = open_regular(path) else {
        reply.error(404, out);
        return None;
    };
    let len = meta.len();
    let v = Validators::of(&meta);
    if not_modified(reply.req, &v.etag, v.secs) {
        response::start(out, 304, reply.date);
        v.write(out);
        finish(out, reply.conn);
        return None;
    }
    let wanted = wanted_range(reply.req, &v, len);
    let (offset, count) = match wanted {
        Some(Range::Unsatisfiable) => {
            unsatisfiable(len, reply, out);
            return None;
        }
        Some(Range::Part(first, last)) => (first, last - first + 1),
        None => (0, len),
    };
    response::start(out, if wanted.is_some() { 206 } else { 200 }, reply.date);
    content(out, Some(mime(path)), count);
    v.write(out);
    out.extend_from_slice(b"Accept-Ranges: bytes\r\n");
    if let Some(Range::Part(first, last)) = wanted {
        content_range(out, first, last, len);
    }
    finish(out, reply.conn);
    let body = FileBody {
        file,
        offset,
        len: count,
    };
    (!reply.head_only() && count > 0).then_some(body)
}

/// A file's validators.
struct Validators {
    /// The strong entity tag `"<mtime-hex>-<len-hex>"`, quotes included.
    etag: Vec<u8>,
    /// The modification time, clamped and truncated to seconds.
    mtime: SystemTime,
    /// `mtime` in seconds since the epoch.
    secs: u64,
}

impl Validators {
    /// The validators of a file with metadata `meta`.
    fn of(meta: &Metadata) -> Self {
        let mtime = clamp_time(meta.modified().unwrap_or(UNIX_EPOCH));
        let secs = mtime.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut etag = Vec::with_capacity(36);
        etag.push(b'"');
        push_hex(&mut etag, secs);
        etag.push(b'-');
        push_hex(&mut etag, meta.len());
        etag.push(b'"');
        Validators { etag, mtime, secs }
    }

    /// Appends `ETag` and `Last-Modified`.
    fn write(&self, out: &mut Vec<u8>) {
        header(out, "ETag", &self.etag);
        out.extend_from_slice(b"Last-Modified: ");
        push_date(out, self.mtime);
        out.extend_from_slice(b"\r\n");
    }
}

/// The range a GET asks for (`None`: the whole file), honouring `If-Range`.
fn wanted_range(req: &Request<'_>, v: &Validators, len: u64) -> Option<Range> {
    if req.method != Method::Get || !if_range_holds(req.if_range, &v.etag, v.secs) {
        return None;
    }
    req.range.and_then(|r| parse_range(r, len))
}

/// Appends `Content-Range: bytes first-last/len`.
fn content_range(out: &mut Vec<u8>, first: u64, last: u64, len: u64) {
    out.extend_from_slice(b"Content-Range: bytes ");
    response::push_u64(out, first);
    out.push(b'-');
    response::push_u64(out, last);
    out.push(b'/');
    response::push_u64(out, len);
    out.extend_from_slice(b"\r\n");
}

/// 416 with `Content-Range: bytes */len` (the connection stays).
fn unsatisfiable(len: u64, reply: &Reply<'_, '_>, out: &mut Vec<u8>) {
    const BODY: &[u8] = b"416 Range Not Satisfiable\n";
    response::start(out, 416, reply.date);
    out.extend_from_slice(b"Content-Range: bytes */");
    response::push_u64(out, len);
    out.extend_from_slice(b"\r\n");
    content(out, Some(TEXT), BODY.len() as u64);
    finish(out, reply.conn);
    if !reply.head_only() {
        out.extend_from_slice(BODY);
    }
}

/// True if the conditional headers make this a 304: `If-None-Match`
/// matching `etag`, or else `If-Modified-Since` not before `secs`.
fn not_modified(req: &Request<'_>, etag: &[u8], secs: u64) -> bool {
    if let Some(inm) = req.if_none_match {
        return etag_listed(inm, etag);
    }
    req.if_modified_since
        .and_then(parse_date)
        .is_some_and(|since| secs <= since)
}

/// True if the `If-None-Match` list holds `*` or `etag` (weak comparison).
fn etag_listed(list: &[u8], etag: &[u8]) -> bool {
    let list = trim(list);
    list == b"*"
        || list
            .split(|&b| b == b',')
            .map(trim)
            .any(|tag| tag.strip_prefix(b"W/").unwrap_or(tag) == etag)
}

/// True if there is no `If-Range`, or it matches the current validator
/// exactly (our strong `etag`, or a date equal to the mtime).
fn if_range_holds(if_range: Option<&[u8]>, etag: &[u8], secs: u64) -> bool {
    let Some(value) = if_range.map(trim) else {
        return true;
    };
    if value.first() == Some(&b'"') {
        value == etag
    } else {
        parse_date(value) == Some(secs)
    }
}

/// Seconds since the epoch of an HTTP date (any of the three formats).
fn parse_date(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(trim(value)).ok()?;
    let t = httpdate::parse_http_date(text).ok()?;
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// A `Range` request against a representation of known length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Range {
    /// Bytes `first..=last`, both within the file.
    Part(u64, u64),
    /// No byte of the range exists: 416.
    Unsatisfiable,
}

/// Parses a single `bytes=` range for a file of `len` bytes; `None` means
/// ignore the header (other unit, several ranges, malformed).
pub(crate) fn parse_range(value: &[u8], len: u64) -> Option<Range> {
    let value = trim(value);
    let (unit, spec) = value.split_at_checked(6)?;
    if !unit.eq_ignore_ascii_case(b"bytes=") || spec.contains(&b',') {
        return None;
    }
    let dash = spec.iter().position(|&b| b == b'-')?;
    let (first, last) = (spec.get(..dash)?, spec.get(dash + 1..)?);
    if first.is_empty() {
        let n = content_length(last)?;
        if n == 0 || len == 0 {
            return Some(Range::Unsatisfiable);
        }
        return Some(Range::Part(len - n.min(len), len - 1));
    }
    let first = content_length(first)?;
    let last = match trim(last) {
        [] => None,
        digits => Some(content_length(digits)?),
    };
    if last.is_some_and(|last| last < first) {
        return None;
    }
    if first >= len {
        return Some(Range::Unsatisfiable);
    }
    Some(Range::Part(
        first,
        last.map_or(len - 1, |last| last.min(len - 1)),
    ))
}

/// Writes the listing of `dir` (shown as `shown`); false if it cannot be read.
fn listing(dir: &Path, shown: &[u8], reply: &Reply<'_, '_>, out: &mut Vec<u8>) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    let mut names: Vec<(Vec<u8>, bool)> = entries
        .filter_map(Result::ok)
        .take(MAX_LISTED)
        .map(|e| {
            let is_dir = fs::metadata(e.path()).is_ok_and(|m| m.is_dir());
            (e.file_name().into_vec(), is_dir)
        })
        .collect();
    names.sort_unstable();
    let mut title = Vec::with_capacity(shown.len() + 8);
    escape_html(shown, &mut title);
    if shown != b"/" {
        title.push(b'/');
    }
    let mut body = Vec::with_capacity(256 + names.len() * 64);
    body.extend_from_slice(
        b"<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>Directory listing for ",
    );
    body.extend_from_slice(&title);
    body.extend_from_slice(b"</title>\n</head>\n<body>\n<h1>Directory listing for ");
    body.extend_from_slice(&title);
    body.extend_from_slice(b"</h1>\n<hr>\n<ul>\n");
    for (name, is_dir) in &names {
        let slash: &[u8] = if *is_dir { b"/" } else { b"" };
        body.extend_from_slice(b"<li><a href=\"");
        encode_segment(name, &mut body);
        body.extend_from_slice(slash);
        body.extend_from_slice(b"\">");
        escape_html(name, &mut body);
        body.extend_from_slice(slash);
        body.extend_from_slice(b"</a></li>\n");
    }
    body.extend_from_slice(b"</ul>\n<hr>\n</body>\n</html>\n");
    response::simple(
        out,
        200,
        reply.date,
        "text/html; charset=utf-8",
        &body,
        reply.head_only(),
        reply.conn,
    );
    true
}

/// Appends `text` (bytes, decoded lossily as UTF-8) with `& < > " '` escaped.
pub(crate) fn escape_html(text: &[u8], out: &mut Vec<u8>) {
    for c in String::from_utf8_lossy(text).chars() {
        match c {
            '&' => out.extend_from_slice(b"&amp;"),
            '<' => out.extend_from_slice(b"&lt;"),
            '>' => out.extend_from_slice(b"&gt;"),
            '"' => out.extend_from_slice(b"&quot;"),
            '\'' => out.extend_from_slice(b"&#x27;"),
            c => {
                let mut utf8 = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
}

/// The `Content-Type` for a file name's extension (case-insensitive);
/// `application/octet-stream` when unknown.
pub(crate) fn mime(path: &Path) -> &'static str {
    /// Extension to type; text types say UTF-8.
    const TYPES: [(&str, &str); 28] = [
        ("html", "text/html; charset=utf-8"),
        ("htm", "text/html; charset=utf-8"),
        ("css", "text/css; charset=utf-8"),
        ("js", "text/javascript; charset=utf-8"),
        ("mjs", "text/javascript; charset=utf-8"),
        ("json", "application/json"),
        ("txt", "text/plain; charset=utf-8"),
        ("md", "text/markdown; charset=utf-8"),
        ("csv", "text/csv; charset=utf-8"),
        ("xml", "application/xml"),
        ("png", "image/png"),
        ("jpg", "image/jpeg"),
        ("jpeg", "image/jpeg"),
        ("gif", "image/gif"),
        ("svg", "image/svg+xml"),
        ("ico", "image/x-icon"),
        ("webp", "image/webp"),
        ("avif", "image/avif"),
        ("wasm", "application/wasm"),
        ("pdf", "application/pdf"),
        ("zip", "application/zip"),
        ("gz", "application/gzip"),
        ("mp4", "video/mp4"),
        ("webm", "video/webm"),
        ("mp3", "audio/mpeg"),
        ("woff", "font/woff"),
        ("woff2", "font/woff2"),
        ("ttf", "font/ttf"),
    ];
    let ext = path.extension().map(OsStrExt::as_bytes).unwrap_or_default();
    TYPES
        .iter()
        .find(|(e, _)| ext.eq_ignore_ascii_case(e.as_bytes()))
        .map_or("application/octet-stream", |(_, ty)| ty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_to_parts_or_unsatisfiable() {
        let part = |a, b| Some(Range::Part(a, b));
        assert_eq!(parse_range(b"bytes=0-4", 10), part(0, 4));
        assert_eq!(parse_range(b"BYTES=2-", 10), part(2, 9));
        assert_eq!(parse_range(b"bytes=5-100", 10), part(5, 9));
        assert_eq!(parse_range(b"bytes=-3", 10), part(7, 9));
        assert_eq!(parse_range(b"bytes=-30", 10), part(0, 9));
        assert_eq!(parse_range(b"bytes=10-", 10), Some(Range::Unsatisfiable));
        assert_eq!(parse_range(b"bytes=-0", 10), Some(Range::Unsatisfiable));
        assert_eq!(parse_range(b"bytes=0-", 0), Some(Range::Unsatisfiable));
        assert_eq!(parse_range(b"bytes=0-1,3-4", 10), None);
        assert_eq!(parse_range(b"bytes=4-2", 10), None);
        assert_eq!(parse_range(b"bytes=+1-2", 10), None);
        assert_eq!(parse_range(b"bytes=a-b", 10), None);
        assert_eq!(parse_range(b"bytes=-", 10), None);
        assert_eq!(parse_range(b"items=0-1", 10), None);
        assert_eq!(parse_range(b"bytes", 10), None);
        assert_eq!(parse_range(b"bytes=0-99999999999999999999", 10), None);
    }

    #[test]
    fn mime_types_by_extension() {
        assert_eq!(mime(Path::new("a/b.HTML")), "text/html; charset=utf-8");
        assert_eq!(mime(Path::new("x.woff2")), "font/woff2");
        assert_eq!(mime(Path::new("x.wasm")), "application/wasm");
        assert_eq!(mime(Path::new("noext")), "application/octet-stream");
        assert_eq!(mime(Path::new("x.unknown")), "application/octet-stream");
    }

    #[test]
    fn html_is_escaped() {
        let mut out = Vec::new();
        escape_html(b"<b>&\"'x\xff", &mut out);
        assert_eq!(out, "&lt;b&gt;&amp;&quot;&#x27;x\u{fffd}".as_bytes());
    }

    #[test]
    fn etag_lists_match_weakly() {
        assert!(etag_listed(b"*", b"\"a-1\""));
        assert!(etag_listed(b"\"x\", W/\"a-1\"", b"\"a-1\""));
        assert!(!etag_listed(b"\"a-2\"", b"\"a-1\""));
        assert!(if_range_holds(None, b"\"a\"", 5));
        assert!(if_range_holds(Some(b"\"a\""), b"\"a\"", 5));
        assert!(!if_range_holds(Some(b"W/\"a\""), b"\"a\"", 5));
        assert!(if_range_holds(
            Some(b"Thu, 01 Jan 1970 00:00:05 GMT"),
            b"\"a\"",
            5
        ));
        assert!(!if_range_holds(
            Some(b"Thu, 01 Jan 1970 00:00:06 GMT"),
            b"\"a\"",
            5
        ));
    }
}
