//! HTTP/1.1 through real sockets: every status code the service sends,
//! pipelining, HEAD, keep-alive, half-close, bodies, static files (with a
//! dozen traversal attempts that must never leak a byte from outside the
//! root), slowloris and keep-alive deadlines, a large file to a slow
//! reader with the server's memory bounded, `/stats` and `/metrics`.
//!
//! Every test runs its own in-process server on port 0 and ends by waiting
//! (bounded) for `open` to return to 0. Waits are on readiness (blocking
//! reads with timeouts, stats polling), never fixed sleeps; the only
//! sleeps pace a client on purpose (slowloris, the slow reader).

mod util;

use std::collections::HashSet;
use std::io::{ErrorKind, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread;
use std::time::{Duration, Instant};

use util::*;

/// The memory test measures this process's RSS, so it runs alone: it
/// takes this lock for writing, every other test for reading.
static GATE: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    GATE.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    GATE.write().unwrap_or_else(|e| e.into_inner())
}

/// The marker in the file outside the root: it must never be sent.
const SECRET: &str = "SECRET-MARKER-7f3a9c1e-outside-the-root";

/// Wait (bounded) until no connection is open, then stop the server.
/// The counters are published a few times a second, so only a snapshot
/// newer than this call counts (its loop iteration count has moved on).
fn finish(srv: Running) {
    let it0 = srv.stats().iterations;
    srv.wait_stats("open == 0 (fresh snapshot)", Duration::from_secs(5), |s| {
        s.iterations > it0 && s.open == 0
    });
    srv.stop(Duration::from_secs(5));
}

/// A GET with `Host` and nothing else.
fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
}

/// Send `req` on a fresh connection; the first response and everything
/// after it until the server closes (or `TIMEOUT`).
fn exchange_then_close(addr: SocketAddr, req: &[u8], what: &str) -> (Resp, Vec<u8>, End) {
    let mut c = HttpClient::connect(addr, what);
    c.send(req);
    let r = c.response();
    let (rest, end) = c.rest();
    (r, rest, end)
}

/// A refused request: `status`, `Connection: close`, then a clean EOF with
/// nothing after the response (what followed was never taken as a request).
fn expect_refused_and_closed(addr: SocketAddr, req: &[u8], status: u16, what: &str) -> Resp {
    let (r, rest, end) = exchange_then_close(addr, req, what);
    assert_eq!(
        r.status,
        status,
        "{what}: sent {:?}, got {:?} {:?}",
        String::from_utf8_lossy(req),
        r.status_line,
        r.text()
    );
    assert!(
        r.closes(),
        "{what}: no `Connection: close` in {:?}",
        r.headers
    );
    assert!(
        rest.is_empty(),
        "{what}: bytes after the {status}: {:?}",
        String::from_utf8_lossy(&rest)
    );
    assert_eq!(
        end,
        End::Eof,
        "{what}: reset instead of EOF after the {status}"
    );
    r
}

/// Deterministic content of the large file at `offset`.
fn pattern(offset: u64) -> u8 {
    (offset.wrapping_mul(2_654_435_761) >> 13) as u8 ^ (offset >> 16) as u8
}

/// A web root and a directory beside it with the secret file.
struct Site {
    _tmp: TempDir,
    root: std::path::PathBuf,
    outside: std::path::PathBuf,
}

fn site() -> Site {
    let tmp = TempDir::new("http");
    let root = tmp.path().join("www");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), SECRET).unwrap();
    std::fs::write(outside.join("passwd"), SECRET).unwrap();
    let w = |rel: &str, data: &[u8]| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    };
    w("hello.txt", b"hello from a file\n");
    w("a.html", b"<p>a</p>");
    w("a.css", b"p{}");
    w("a.js", b"1;");
    w("a.json", b"{}");
    w("a.png", b"\x89PNG");
    w("a.bin", b"\x00\x01");
    w("noext", b"x");
    w("sub/index.html", b"<h1>index of sub</h1>");
    w("list/<b>&.txt", b"escaped");
    w("list/plain.txt", b"plain");
    let thousand: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    w("range.bin", &thousand);
    for i in 0..50 {
        w(
            &format!("n/{i:02}.txt"),
            format!("body number {i:02}").as_bytes(),
        );
    }
    std::os::unix::fs::symlink(outside.join("secret.txt"), root.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("leakdir")).unwrap();
    Site {
        _tmp: tmp,
        root,
        outside,
    }
}

fn start_site(site: &Site) -> (Running, SocketAddr) {
    start_http(http_config(Some(&site.root)))
}

// ------------------------------------------------------------------ 200

/// Promise: with `--root`, `GET /` is the root's `index.html` if it has
/// one, else its listing (as `python -m http.server`); HEAD the same
/// without the body. Without a root it stays the seed's greeting (below).
#[test]
fn root_slash_is_index_or_listing() {
    let _g = shared();
    let site = site();
    let (srv, addr) = start_site(&site);
    let r = http_get(addr, "/");
    assert_eq!(r.status, 200, "{}", r.status_line);
    let listing = r.text();
    for name in ["hello.txt", "sub/", "range.bin"] {
        assert!(
            listing.contains(name),
            "the listing of / lacks {name}:\n{listing}"
        );
    }
    assert!(!listing.contains("Hello, client!"), "{listing}");
    std::fs::write(site.root.join("index.html"), b"<h1>the index</h1>").unwrap();
    let r = http_get(addr, "/");
    assert_eq!(r.status, 200, "{}", r.status_line);
    assert_bytes_eq(&r.body, b"<h1>the index</h1>", "GET / with an index.html");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    finish(srv);
}

/// Promise: `GET /` is 200 with exactly `Hello, client!` as text/html,
/// with `Server` and `Date`.
#[test]
fn get_root_is_hello_client() {
    let _g = shared();
    let (srv, addr) = start_http(http_config(None));
    let r = http_get(addr, "/");
    assert_eq!(r.status_line, "HTTP/1.1 200 OK");
    assert_bytes_eq(&r.body, b"Hello, client!", "GET / body");
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "Content-Type: {:?}",
        r.header("content-type")
    );
    assert_eq!(r.header("content-length"), Some("14"));
    assert!(r.header("server").is_some(), "no Server header");
    let date = r.header("date").expect("no Date header");
    assert!(httpdate_like(date), "Date {date:?} is not an IMF-fixdate");
    finish(srv);
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`: the shape only.
fn httpdate_like(d: &str) -> bool {
    d.len() == 29 && d.ends_with(" GMT") && d.as_bytes()[3] == b','
}

// ------------------------------------------------------------------ 400

/// Promise: each malformed or smuggling-shaped head gets 400, then the
/// server closes (EOF) without answering anything sent after it.
#[test]
fn bad_requests_get_400_and_close() {
    let _g = shared();
    let (srv, addr) = start_http(http_config(None));
    // A request smuggled after the bad one: it must never be answered.
    let smuggled = "GET /stats HTTP/1.1\r\nHost: t\r\n\r\n";
    let cases: Vec<(&str, String)> = vec![
        (
            "request line without spaces",
            "GET/HTTP/1.1\r\nHost: t\r\n\r\n".into(),
        ),
        (
            "request line with junk after the version",
            "GET / HTTP/1.1 x\r\nHost: t\r\n\r\n".into(),
        ),
        (
            "request line with a bad method byte",
            "G(T / HTTP/1.1\r\nHost: t\r\n\r\n".into(),
        ),
        (
            "header without colon",
            "GET / HTTP/1.1\r\nHost: t\r\nNoColonHere\r\n\r\n".into(),
        ),
        (
            "space before colon",
            "GET / HTTP/1.1\r\nHost: t\r\nX-A : b\r\n\r\n".into(),
        ),
        (
            "obs-fold",
            "GET / HTTP/1.1\r\nHost: t\r\nX-A: b\r\n  folded\r\n\r\n".into(),
        ),
        (
            "bare CR in a value",
            "GET / HTTP/1.1\r\nHost: t\r\nX-A: b\rc\r\n\r\n".into(),
        ),
        (
            "NUL in a value",
            "GET / HTTP/1.1\r\nHost: t\r\nX-A: b\0c\r\n\r\n".into(),
        ),
        (
            "control byte in a value",
            "GET / HTTP/1.1\r\nHost: t\r\nX-A: b\x01c\r\n\r\n".into(),
        ),
        (
            "Content-Length and Transfer-Encoding",
            format!(
                "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "two different Content-Lengths",
            format!(
                "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!{smuggled}"
            ),
        ),
        (
            "Content-Length +5",
            format!("GET / HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\nhello{smuggled}"),
        ),
        (
            "Content-Length -1",
            format!("GET / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n{smuggled}"),
        ),
        (
            "Content-Length 0x5",
            format!("GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 0x5\r\n\r\nhello{smuggled}"),
        ),
        (
            "Content-Length overflowing u64",
            format!(
                "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999999\r\n\r\n{smuggled}"
            ),
        ),
        (
            "invalid chunk size",
            format!(
                "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "negative chunk size",
            format!(
                "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "no Host in HTTP/1.1",
            format!("GET / HTTP/1.1\r\n\r\n{smuggled}"),
        ),
        (
            "two Hosts",
            format!("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n{smuggled}"),
        ),
    ];
    for (what, req) in &cases {
        expect_refused_and_closed(addr, req.as_bytes(), 400, what);
    }
    // Every response above was a single 400 and none was a /stats answer.
    srv.wait_stats("all 400s counted", TIMEOUT, |s| {
        s.http_requests == cases.len() as u64
    });
    finish(srv);
}

// ------------------------------------------------------------------ files

/// Promise: a file is 200 with its bytes and the Content-Type of its
/// extension; `Last-Modified` and `ETag` are present.
#[test]
fn files_have_content_type_by_extension() {
    let _g = shared();
    let site = site();
    let (srv, addr) = start_site(&site);
    let mut c = HttpClient::connect(addr, "content types");
    for (path, ty, body) in [
        ("/hello.txt", "text/plain", &b"hello from a file\n"[..]),
        ("/a.html", "text/html", b"<p>a</p>"),
        ("/a.css", "text/css", b"p{}"),
        ("/a.js", "text/javascript", b"1;"),
        ("/a.json", "application/json", b"{}"),
        ("/a.png", "image/png", b"\x89PNG"),
        ("/a.bin", "application/octet-stream", b"\x00\x01"),
        ("/noext", "application/octet-stream", b"x"),
    ] {
        let r = c.roundtrip(&get(path));
        assert_eq!(r.status, 200, "{path}: {:?}", r.status_line);
        assert_bytes_eq(&r.body, body, path);
        let got = r.header("content-type").unwrap_or_default();
        assert!(
            got.split(';').next() == Some(ty),
            "{path}: Content-Type {got:?}, want {ty}"
        );
        assert!(
            r.header("last-modified").is_some_and(httpdate_like),
            "{path}: Last-Modified"
        );
        assert!(r.header("etag").is_some(), "{path}: ETag");
    }
    drop(c);
    finish(srv);
}

/// Promise: a redirect never leaves the site. `Location` is built from
/// the normalised path, not the target as sent: `//evil.example/../sub`
/// (which a browser would follow to another host) is sent to `/sub/`, and
/// names are percent-encoded as the listing's links are.
#[test]
fn redirects_stay_on_the_site() {
    let _g = shared();
    let site = site();
    let (srv, addr) = start_site(&site);
    let mut c = HttpClient::connect(addr, "redirects");
    for (target, want) in [
        ("//evil.example/../sub", "/sub/"),
        ("/./sub", "/sub/"),
        ("/list/../sub", "/sub/"),
        ("//sub", "/sub/"),
    ] {
        let r = c.roundtrip(&get(target));
        assert_eq!(r.status, 301, "{target}: {:?}", r.status_line);
        assert_eq!(r.header("location"), Some(want), "{target}");
    }
    drop(c);
    finish(srv);
}

/// Promise: a directory without a trailing slash is 301 to the path with
/// one; with it, `index.html` is served; without an index, a listing with
/// HTML-escaped names.
#[test]
fn directories_301_index_and_escaped_listing() {
    let _g = shared();
    let site = site();
    let (srv, addr) = start_site(&site);
    let mut c = HttpClient::connect(addr, "directories");

    let r = c.roundtrip(&get("/sub"));
    assert_eq!(r.status, 301, "{:?}", r.status_line);
    assert_eq!(r.header("location"), Some("/sub/"));
    assert!(!r.closes(), "301 should keep the connection");

    let r = c.roundtrip(&get("/sub/"));
    assert_eq!(r.status, 200, "{:?}", r.status_line);
    assert_bytes_eq(&r.body, b"<h1>index of sub</h1>", "/sub/ index.html");
    assert!(
        r.header("content-type")
            .unwrap_or_default()
            .starts_with("text/html")
    );

    let r = c.roundtrip(&get("/list/"));
    assert_eq!(r.status, 200, "{:?}", r.status_line);
    assert!(
        r.header("content-type")
            .unwrap_or_default()
            .starts_with("text/html")
    );
    let body = r.text();
    assert!(
        body.contains("&lt;b&gt;&amp;.txt"),
        "escaped name missing: {body}"
    );
    assert!(
        !body.contains("<b>&.txt"),
        "raw name in the listing: {body}"
    );
    assert!(body.contains("plain.txt"), "plain.txt missing: {body}");
    // The link works: fetch the escaped file by its encoded name.
    let r = c.roundtrip(&get("/list/%3Cb%3E%26.txt"));
    assert_eq!(r.status, 200, "{:?}", r.status_line);
    assert_bytes_eq(&r.body, b"escaped", "<b>&.txt by its encoded name");
    drop(c);
    finish(srv);
}

/// Promise: If-Modified-Since and If-None-Match give 304 without a body
/// (the connection stays usable); a non-matching ETag gives 200.
#[test]
fn conditional_get_304() {
    let _g = shared();
    let site = site();
    let (srv, addr) = start_site(&site);
    let mut c = HttpClient::connect(addr, "304");
    let r = c.roundtrip(&get("/hello.txt"));
    assert_eq!(r.status, 200);
    let lm = r
        .header("last-modified")
        .expect("Last-Modified")
        .to_string();
    let etag = r.header("etag").expect("ETag").to_string();

    let r = c.roundtrip(
        format!("GET /hello.txt HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: {lm}\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 304, "If-Modified-Since: {:?}", r.status_line);
    assert!(r.body.is_empty());

    let r = c.roundtrip(
        format!("GET /hello.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 304, "If-None-Match: {:?}", r.status_line);
    assert_eq!(r.header("etag"), Some(etag.as_str()));

    let r = c.roundtrip(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"nope\"\r\n\r\n");
    assert_eq!(r.status, 200, "non-matching ETag: {:?}", r.status_line);
    assert_bytes_eq(&r.body, b"hello from a file\n", "after 304s");

    let r = c.roundtrip(
        b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
    );
    assert_eq!(r.status, 200, "old If-Modified-Since: {:?}", r.status_line);
    drop(c);
    finish(srv);
}

/// Promise: a single Range is 206 with exactly those bytes and
/// `Content-Range`; an unsatisfiable one is 416 with `bytes */len` (the
/// connection stays).
#[test]
fn ranges_206_and_416() {
    let _g = shared();
    let site = site();
    let (srv, addr) = start_site(&site);
    let whole: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let mut c = HttpClient::connect(addr, "ranges");
    for (range, first, last) in [
        ("bytes=10-19", 10usize, 19usize),
        ("bytes=-5", 995, 999),
        ("bytes=990-", 990, 999),
        ("bytes=0-0", 0, 0),
        ("bytes=500-5000", 500, 999),
    ] {
        let r = c.roundtrip(
            format!("GET /range.bin HTTP/1.1\r\nHost: t\r\nRange: {range}\r\n\r\n").as_bytes(),
        );
        assert_eq!(r.status, 206, "{range}: {:?}", r.status_line);
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {first}-{last}/1000").as_str()),
            "{range}"
        );
        assert_bytes_eq(&r.body, &whole[first..=last], range);
    }
    let r = c.roundtrip(b"GET /range.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=1000-\r\n\r\n");
    assert_eq!(r.status, 416, "{:?}", r.status_line);
    assert_eq!(r.header("content-range"), Some("bytes */1000"));
    assert!(!r.closes(), "416 should keep the connection");
    let r = c.roundtrip(&get("/range.bin"));
    assert_eq!(r.status, 200);
    assert_bytes_eq(&r.body, &whole, "whole file after 416");
    drop(c);
    finish(srv);
}

/// Promise: no path, however encoded, and no symlink, gets a byte from
/// outside the root: each is 400, 403 or 404, and the secret marker (and
/// the real /etc/passwd) never appear.
#[test]
fn traversal_variants_never_leak() {
    let _g = shared();
    let site = site();
    assert!(site.outside.join("secret.txt").exists());
    let (srv, addr) = start_site(&site);
    // Control: the root itself is served.
    assert_eq!(http_get(addr, "/hello.txt").status, 200);
    let targets = [
        "/../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/..%2f..%2fetc/passwd",
        "/a%00",
        "/a%5c..%5c..%5cetc%5cpasswd",
        "/./../x",
        "/sub/../../x",
        "/%252e%252e/%252e%252e/etc/passwd",
        "http://x/../../etc/passwd",
        "//etc/passwd",
        "/leak.txt",
        "/leakdir/secret.txt",
        "/leakdir/",
        "/leakdir",
        // The same tricks aimed at the file beside the root.
        "/../outside/secret.txt",
        "/../outside/passwd",
        "/%2e%2e/outside/secret.txt",
        "/%2E%2E/outside/secret.txt",
        "/.%2e/outside/secret.txt",
        "/sub/../../outside/secret.txt",
        "/sub/%2e%2e/%2e%2e/outside/secret.txt",
        "/..%2foutside%2fsecret.txt",
        "/..%5coutside%5csecret.txt",
        "/..\\outside\\secret.txt",
        "http://x/../outside/secret.txt",
        "/%252e%252e/outside/secret.txt",
        "/hello.txt%00/../../outside/secret.txt",
        "/leak.txt/",
        "/leakdir/../hello.txt/../../outside/secret.txt",
    ];
    let mut statuses = Vec::new();
    for t in targets {
        let what = format!("traversal {t:?}");
        let req = get(t);
        let mut c = HttpClient::connect(addr, &what);
        c.send(&req);
        let head = c.read_head();
        // Whatever else comes (body, or anything at all before close).
        let r = if head.closes() {
            let (rest, _) = c.rest();
            Resp { body: rest, ..head }
        } else {
            let n: usize = head
                .header("content-length")
                .unwrap_or("0")
                .parse()
                .unwrap();
            let body = c.read_body(n);
            Resp { body, ..head }
        };
        let all = [&r.raw_head[..], &r.body[..]].concat();
        let text = String::from_utf8_lossy(&all);
        assert!(
            !text.contains(SECRET) && !text.contains("root:x:0:0"),
            "{what}: LEAK: {text}"
        );
        assert!(
            matches!(r.status, 400 | 403 | 404),
            "{what}: status {:?}, want 400/403/404; body {:?}",
            r.status_line,
            r.text()
        );
        statuses.push((t, r.status));
    }
    let kinds: HashSet<u16> = statuses.iter().map(|(_, s)| *s).collect();
    assert!(kinds.contains(&400) && kinds.contains(&404), "{statuses:?}");
    finish(srv);
}

// ------------------------------------------------------------------ 404 405

/// Promise: a missing path is 404 (with no root: everything but `/`,
/// `/stats`, `/metrics`), and the connection stays.
#[test]
fn not_found_404_keeps_connection() {
    let _g = shared();
    let (srv, addr) = start_http(http_config(None));
    let mut c = HttpClient::connect(addr, "404");
    let r = c.roundtrip(&get("/nope"));
    assert_eq!(r.status, 404, "{:?}", r.status_line);
    assert!(!r.closes());
    let r = c.roundtrip(&get("/"));
    assert_bytes_eq(&r.body, b"Hello, client!", "after 404");
    drop(c);
    finish(srv);

    let site = site();
    let (srv, addr) = start_site(&site);
    let r = http_get(addr, "/missing.txt");
    assert_eq!(r.status, 404, "{:?}", r.status_line);
    finish(srv);
}

/// Promise: methods other than GET and HEAD get 405 with
/// `Allow: GET, HEAD`; a body sent with it is discarded.
#[test]
fn other_methods_405_with_allow() {
    let _g = shared();
    let (srv, addr) = start_http(http_config(None));
    let mut c = HttpClient::connect(addr, "405");
    for req in [
        &b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"[..],
        b"DELETE /x HTTP/1.1\r\nHost: t\r\n\r\n",
        b"PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
        b"OPTIONS / HTTP/1.1\r\nHost: t\r\n\r\n",
    ] {
        let r = c.roundtrip(req);
        assert_eq!(
            r.status,
            405,
            "{:?}: {:?}",
            String::from_utf8_lossy(req),
            r.status_line
        );
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
        if r.closes() {
            c.expect_eof();
            c = HttpClient::connect(addr, "405 again");
        }
    }
    let r = c.roundtrip(&get("/"));
    assert_bytes_eq(&r.body, b"Hello, client!", "after 405s");
    drop(c);
    finish(srv);
}

// ------------------------------------------------------------------ 408

/// Promise: slowloris. A head trickled one byte per 100 ms does not extend
/// the header deadline (500 ms from accept): 408, then close, within ~1 s.
#[test]
fn slowloris_gets_408_then_close() {
    let _g = shared();
    let mut cfg = http_config(None);
    cfg.limits.header_timeout = Duration::from_millis(500);
    let (srv, addr) = start_http(cfg);
    let t0 = Instant::now();
    let mut c = HttpClient::connect(addr, "slowloris");
    c.send(b"GET / HTTP/1.1\r\n");
    let stop = Arc::new(AtomicBool::new(false));
    let mut w = c.s.try_clone().unwrap();
    let stop2 = stop.clone();
    let trickle = thread::spawn(move || {
        use std::io::Write;
        let mut sent = 0;
        for b in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            .iter()
            .cycle()
        {
            thread::sleep(Duration::from_millis(100)); // the attack's pace
            if stop2.load(Ordering::SeqCst) || w.write_all(&[*b]).is_err() {
                break;
            }
            sent += 1;
            if sent > 200 {
                break;
            }
        }
        sent
    });
    let r = c.response();
    let at = t0.elapsed();
    stop.store(true, Ordering::SeqCst);
    assert_eq!(r.status, 408, "{:?}", r.status_line);
    assert!(r.closes(), "408 without Connection: close");
    assert!(
        at >= Duration::from_millis(450) && at <= Duration::from_millis(1200),
        "408 after {at:?}, want ~500 ms"
    );
    let (rest, _end) = c.rest();
    assert!(rest.is_empty(), "bytes after the 408: {rest:?}");
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "close came {:?} after connect",
        t0.elapsed()
    );
    let sent = trickle.join().unwrap();
    assert!(sent >= 3, "only {sent} bytes trickled before the 408");
    drop(c);
    srv.wait_stats("timeouts >= 1", TIMEOUT, |s| s.timeouts >= 1);
    finish(srv);
}

/// Promise: the header deadline of the first request runs from accept:
/// a client that waits before it starts a head does not get more time.
#[test]
fn header_deadline_runs_from_accept() {
    let _g = shared();
    let mut cfg = http_config(None);
    cfg.limits.header_timeout = Duration::from_millis(500);
    let (srv, addr) = start_http(cfg);
    let t0 = Instant::now();
    let mut c = HttpClient::connect(addr, "late starter");
    thread::sleep(Duration::from_millis(300)); // the client's delay before its head
    c.send(b"GET / HTTP/1.1\r\n");
    let r = c.response();
    let at = t0.elapsed();
    assert_eq!(r.status, 408, "{:?}", r.status_line);
    assert!(
        at <= Duration::from_millis(680),
        "408 came {at:?} after connect; header_timeout is 500 ms from accept"
    );
    c.expect_eof();
    drop(c);
    finish(srv);
}

/// Promise: a partial head that arrives in the same read as a complete
/// request (pipelined) is under the header deadline too: 408, then close.
#[test]
fn pipelined_partial_head_gets_408() {
    let _g = shared();
    let mut cfg = http_config(None);
    cfg.limits.header_timeout = Duration::from_millis(500);
    let (srv, addr) = start_http(cfg);
    let t0 = Instant::now();
    let mut c = HttpClient::connect(addr, "pipelined partial head");
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\n");
    assert_bytes_eq(&c.response().body, b"Hello, client!", "complete request");
    c.s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let r = c.response();
    let at = t0.elapsed();
    assert_eq!(r.status, 408, "{:?}", r.status_line);
    assert!(
        at <= Duration::from_millis(1200),
        "408 after {at:?}, want ~500 ms"
    );
    c.expect_eof();
    drop(c);
    finish(srv);
}

/// Promise: a connection that sends nothing is closed silently (no bytes,
/// EOF) at the header deadline.
#[test]
fn silent_connection_closed_at_header_deadline() {
    let _g = shared();
    let mut cfg = http_config(None);
    cfg.limits.header_timeout = Duration::from_millis(400);
    let (srv, addr) = start_http(cfg);
    let t0 = Instant::now();
    let mut c = HttpClient::connect(addr, "silent");
    let (rest, end) = c.rest();
    let at = t0.elapsed();
    assert!(
        rest.is_empty(),
        "silent client got {:?}",
        String::from_utf8_lossy(&rest)
    );
    assert_eq!(end, End::Eof, "reset instead of a clean close");
    assert!(
        at >= Duration::from_millis(350) && at <= Duration::from_millis(1500),
        "closed after {at:?}, want ~400 ms"
    );
    drop(c);
    srv.wait_stats("timeouts >= 1", TIMEOUT, |s| s.timeouts >= 1);
    finish(srv);
}

/// Promise: an idle keep-alive connection is closed silently after
/// keepalive_timeout.
#[test]
fn keepalive_idle_timeout_silent_close() {
    let _g = shared();
    let mut cfg = http_config(None);
    cfg.limits.keepalive_timeout = Duration::from_millis(300);
    cfg.limits.header_timeout = Duration::from_secs(5);
    let (srv, addr) = start_http(cfg);
    let mut c = HttpClient::connect(addr, "keep-alive idle");
    let r = c.roundtrip(&get("/"));
    assert_eq!(r.status, 200);
    assert!(!r.closes());
    let t0 = Instant::now();
    let (rest, end) = c.rest();
    let at = t0.elapsed();
    assert!(
        rest.is_empty(),
        "idle keep-alive got {:?}",
        String::from_utf8_lossy(&rest)
    );
    assert_eq!(end, End::Eof, "reset instead of a clean close");
    assert!(
        at >= Duration::from_millis(250) && at <= Duration::from_millis(1500),
        "closed {at:?} after the response, want ~300 ms"
    );
    drop(c);
    finish(srv);
}

// ------------------------------------------------------------------ 413 414 417 431 505

/// Promise: a declared body over max_body is 413 before a byte of it is
/// read; with `Expect: 100-continue`, 413 and no `100 Continue`.
#[test]
fn body_too_large_413() {
    let _g = shared();
    let mut cfg = http_config(None);
    cfg.http_config.max_body = 1 << 20;
    let (srv, addr) = start_http(cfg);
    expect_refused_and_closed(
        addr,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n",
        413,
        "POST 2000000",
    );
    expect_refused_and_closed(
        addr,
        b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n",
        413,
        "GET 2000000",
    );
    // With Expect: the first thing back is the 413 (no 100 before it).
    let r = expect_refused_and_closed(
        addr,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\nExpect: 100-continue\r\n\r\n",
        413,
        "POST 2000000 with Expect: 100-continue",
    );
    assert!(r.raw_head.starts_with(b"HTTP/1.1 413"));
    // Just under the limit is fine (body sent and discarded).
    let mut c = HttpClient::connect(addr, "body at the limit");
    let mut req = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1048576\r\n\r\n".to_vec();
    req.resize(req.len() + (1 << 20), b'z');
    req.extend_from_slice(&get("/"));
    c.send(&req);
    assert_eq!(c.response().status, 405);
    assert_bytes_eq(&c.response().body, b"Hello, client!", "after a 1 MiB body");
    drop(c);
    finish(srv);
}

/// Promise: a request target over 8 KiB is 414, then close.
#[test]
fn uri_too_long_414() {
    let _g = shared();
    let (srv, addr) = start_http(http_config(None));
    let target = format!("/{}", "a".repeat(9 * 1024));
    expect_refused_and_closed(addr, &get(&target), 414, "9 KiB target");
    finish(srv);
}

/// Promise: `Expect` other than `100-continue` is 417.
#[test]
fn unknown_expectation_417() {
    let _g = shared();
    let (srv, addr) = start_http(http_config(None));
    expect_refused_and_closed(
        addr,
        b"GET / HTTP/1.1\r\nHost: t\r\nExpect: foo\r\n\r\n",
        417,
        "Expect: foo",
    );
    finish(srv);
}

/// Promise: a header line over 8 KiB, more than 100 headers, or over 32
/// KiB of headers is 431, then close.
#[test]
fn header_limits_431() {
    let _g = shared();
    let (srv, addr) = start_http(http_config(None));
    let one_big = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(9 * 1024)
    );
    expect_refused_and_closed(addr, one_big.as_bytes(), 431, "9 KiB header");

    let mut many = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
    for i in 0..100 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    expect_refused_and_closed(addr, many.as_bytes(), 431, "101 headers");

    let mut bulky = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
    for i in 0..20 {
        bulky.push_str(&format!("X-H{i:02}: {}\r\n", "v".repeat(2 * 1024)));
    }
    bulky.push_str("\r\n");
    assert!(bulky.len() > 40 * 1024);
    expect_refused_and_closed(addr, bulky.as_bytes(), 431, "40 KiB of headers");

    // 100 headers is still fine.
    let mut hundred = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
    for i in 0..99 {
        hundred.push_str(&format!("X-H{i}: v\r\n"));
    }
    hundred.push_str("\r\n");
    let mut c = HttpClient::connect(addr, "100 headers");
    assert_eq!(c.roundtrip(hundred.as_bytes()).status, 200);
    drop(c);
    finish(srv);
}

/// Promise: `HTTP/2.0` (and other unknown versions) is 505, then close.
#[test]
fn http2_version_505() {
    let _g = shared();
    let (srv, addr) = start_http(http_config(None));
    expect_refused_and_closed(addr, b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505, "HTTP/2.0");
    expect_refused_and_closed(addr, b"GET / HTTP/3.0\r\nHost: t\r\n\r\n", 505, "HTTP/3.0");
    finish(srv);
}

// ------------------------------------------------------------------ 503

/// Promise: at max_conns a new HTTP client gets 503 then close; the others
/// are still served.
#[test]
fn max_conns_503_then_close() {
    let _g = shared();
    let mut cfg = http_config(None);
    cfg.limits.max_conns = 2;
    let (srv, addr) = start_http(cfg);
    let mut a = HttpClient::connect(addr, "client 1");
    let mut b = HttpClient::connect(addr, "client 2");
    assert_eq!(a.roundtrip(&get("/")).status, 200);
    assert_eq!(b.roundtrip(&get("/")).status, 200);
    let mut c = HttpClient::connect(addr, "client 3");
    let r = c.response();
    assert_eq!(r.status, 503, "{:?}", r.status_line);
    c.expect_eof();
    srv.wait_stats("refused >= 1", TIMEOUT, |s| s.refused >= 1);
    assert_bytes_eq(
        &a.roundtrip(&get("/")).body,
        b"Hello, client!",
        "client 1 after 503",
    );
    drop((a, b, c));
    finish(srv);
}

// ------------------------------------------------------------------ semantics

/// Promise: requests pipelined in one write are answered in order: 3, and
/// 50 (more than one `input` call's share of 16), of five kinds whose
/// responses tell them apart (HEAD among them, so a misframed response
/// shows).
#[test]
fn pipelining_in_order() {
    let _g = shared();
    let site = site();
    let (srv, addr) = start_site(&site);
    let mut c = HttpClient::connect(addr, "pipelined 3");
    let mut req = get("/hello.txt");
    req.extend_from_slice(&get("/hello.txt"));
    req.extend_from_slice(&get("/nope"));
    c.send(&req);
    assert_bytes_eq(&c.response().body, b"hello from a file\n", "pipelined 1/3");
    assert_bytes_eq(&c.response().body, b"hello from a file\n", "pipelined 2/3");
    assert_eq!(c.response().status, 404, "pipelined 3/3");
    assert!(
        c.quiet_for(Duration::from_millis(50)),
        "bytes after 3 responses"
    );

    c = HttpClient::connect(addr, "pipelined 50");
    let kind = |i: usize| i % 5;
    let req: Vec<u8> = (0..50)
        .flat_map(|i| match kind(i) {
            0 => get("/hello.txt"),
            1 => get("/stats"),
            2 => get(&format!("/missing-{i}")),
            3 => b"HEAD /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            _ => get("/metrics"),
        })
        .collect();
    c.send(&req);
    let mut last_requests = 0;
    for i in 0..50 {
        let what = format!("pipelined {i} of 50 (kind {})", kind(i));
        let r = c.response_to(kind(i) == 3);
        match kind(i) {
            0 | 3 => {
                assert_eq!(r.status, 200, "{what}");
                assert_eq!(r.header("content-length"), Some("18"), "{what}");
                let want: &[u8] = if kind(i) == 0 {
                    b"hello from a file\n"
                } else {
                    b""
                };
                assert_bytes_eq(&r.body, want, &what);
            }
            1 => {
                let v: serde_json::Value = serde_json::from_slice(&r.body)
                    .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {:?}", r.text()));
                let n = v["http_requests"].as_u64().unwrap();
                assert!(n >= last_requests, "{what}: http_requests went back");
                last_requests = n;
            }
            2 => assert_eq!(r.status, 404, "{what}"),
            _ => assert!(r.text().contains("# TYPE"), "{what}: {:?}", r.text()),
        }
    }
    assert!(
        c.quiet_for(Duration::from_millis(50)),
        "bytes after 50 responses"
    );
    drop(c);
    finish(srv);
}

/// Promise: pipelined requests whose responses are files (3, then 50) are
/// all answered, in order, without the client sending anything more.
#[test]
fn pipelined_file_responses_all_answered() {
    let _g = shared();
    let site = site();
    let (srv, addr) = start_site(&site);
    for n in [3usize, 50] {
        let what = format!("{n} pipelined file GETs");
        let mut c = HttpClient::connect(addr, &what);
        let req: Vec<u8> = (0..n)
            .flat_map(|i| get(&format!("/n/{i:02}.txt")))
            .collect();
        c.send(&req);
        for i in 0..n {
            c.s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let r = c.response();
            assert_eq!(r.status, 200, "{what}: response {i}");
            assert_bytes_eq(
                &r.body,
                format!("body number {i:02}").as_bytes(),
                &format!("{what}: response {i}"),
            );
        }
        assert!(
            c.quiet_for(Duration::from_millis(50)),
            "{what}: stray bytes"
        );
    }
    finish(srv);
}

/// Promise: HEAD gets GET's headers (Content-Length included) and no body;
/// the next pipelined response parses right after it.
#[test]
fn head_has_get_headers_and_no_body() {
    let _g = shared();
    let site = site();
    let (srv, addr) = start_site(&site);
    let mut c = HttpClient::connect(addr, "HEAD");
    let got = c.roundtrip(&get("/hello.txt"));
    for (path, body) in [
        ("/hello.txt", got.body.clone()),
        ("/hello.txt", b"hello from a file\n".to_vec()),
    ] {
        let mut req = format!("HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes();
        req.extend_from_slice(&get(path));
        c.send(&req);
        let h = c.response_to(true);
        let g = c.response();
        assert_eq!(h.status, 200, "HEAD {path}");
        assert_eq!(g.status, 200, "GET {path} after HEAD");
        assert_bytes_eq(&g.body, &body, &format!("GET {path} after HEAD"));
        assert_eq!(
            h.header("content-length"),
            Some(body.len().to_string().as_str()),
            "HEAD {path} Content-Length"
        );
        let strip = |r: &Resp| -> Vec<(String, String)> {
            r.headers
                .iter()
                .filter(|(n, _)| !n.eq_ignore_ascii_case("date"))
                .cloned()
                .collect()
        };
        assert_eq!(strip(&h), strip(&g), "HEAD {path} vs GET headers");
    }
    // A HEAD of a missing file: 404 head, no body, connection fine.
    c.send(b"HEAD /nope HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response_to(true).status, 404);
    assert_bytes_eq(
        &c.roundtrip(&get("/hello.txt")).body,
        b"hello from a file\n",
        "after HEAD 404",
    );
    assert!(
        c.quiet_for(Duration::from_millis(50)),
        "stray bytes after HEADs"
    );
    drop(c);
    finish(srv);
}

/// Promise: keep-alive: 10 requests on one connection, one accept.
#[test]
fn keepalive_reuse_one_accept() {
    let _g = shared();
    let (srv, addr) = start_http(http_config(None));
    let mut c = HttpClient::connect(addr, "keep-alive");
    for i in 0..10 {
        let r = c.roundtrip(&get("/"));
        assert_bytes_eq(&r.body, b"Hello, client!", &format!("request {i}"));
        assert!(!r.closes(), "request {i} closes");
    }
    srv.wait_stats("http_requests >= 10", TIMEOUT, |s| s.http_requests >= 10);
    let s = srv.stats();
    assert_eq!(s.accepted, 1, "{s:?}");
    assert_eq!(s.http_requests, 10, "{s:?}");
    drop(c);
    finish(srv);
}

/// Promise: `Connection: close` closes after the response; HTTP/1.0
/// closes unless it asked for keep-alive.
#[test]
fn connection_close_and_http10() {
    let _g = shared();
    let (srv, addr) = start_http(http_config(None));

    let mut c = HttpClient::connect(addr, "Connection: close");
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let r = c.response();
    assert_bytes_eq(&r.body, b"Hello, client!", "Connection: close");
    assert!(r.closes());
    c.expect_eof();

    c = HttpClient::connect(addr, "HTTP/1.0");
    c.send(b"GET / HTTP/1.0\r\n\r\n");
    let r = c.response();
    assert_bytes_eq(&r.body, b"Hello, client!", "HTTP/1.0");
    c.expect_eof();

    c = HttpClient::connect(addr, "HTTP/1.0 keep-alive");
    for i in 0..3 {
        c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let r = c.response();
        assert_bytes_eq(
            &r.body,
            b"Hello, client!",
            &format!("HTTP/1.0 keep-alive {i}"),
        );
        assert!(
            r.header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("keep-alive")),
            "HTTP/1.0 keep-alive response: {:?}",
            r.headers
        );
    }
    c.send(b"GET / HTTP/1.0\r\n\r\n");
    c.response();
    c.expect_eof();
    drop(c);
    finish(srv);
}

/// Promise: half-close: a request then `shutdown(Write)` still gets the
/// whole response (here a 2 MiB file), then EOF.
#[test]
fn half_close_still_answered() {
    let _g = shared();
    let site = site();
    let big: Vec<u8> = (0..2u64 << 20).map(pattern).collect();
    std::fs::write(site.root.join("two.bin"), &big).unwrap();
    let (srv, addr) = start_site(&site);

    let mut c = HttpClient::connect(addr, "half-close hello");
    c.send(&get("/hello.txt"));
    shutdown_write(&c.s);
    assert_bytes_eq(&c.response().body, b"hello from a file\n", "half-close /");
    c.expect_eof();

    c = HttpClient::connect(addr, "half-close pipelined");
    let mut req = get("/two.bin");
    req.extend_from_slice(&get("/hello.txt"));
    c.send(&req);
    shutdown_write(&c.s);
    assert_bytes_eq(&c.response().body, &big, "half-close 2 MiB");
    assert_bytes_eq(
        &c.response().body,
        b"hello from a file\n",
        "half-close second",
    );
    c.expect_eof();
    drop(c);
    finish(srv);
}

/// Promise: a body with Content-Length is read and discarded and the next
/// request answered, whether it came with the head or after the response.
#[test]
fn body_discarded_next_request_answered() {
    let _g = shared();
    let (srv, addr) = start_http(http_config(None));
    let mut c = HttpClient::connect(addr, "body in one write");
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nGET /nope X");
    // The body looks like a request on purpose: it must not be one.
    c.send(&get("/"));
    assert_bytes_eq(&c.response().body, b"Hello, client!", "request with body");
    assert_bytes_eq(&c.response().body, b"Hello, client!", "request after body");
    assert!(c.quiet_for(Duration::from_millis(50)));

    c = HttpClient::connect(addr, "body arriving later");
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
    assert_bytes_eq(
        &c.response().body,
        b"Hello, client!",
        "answered before the body ends",
    );
    let mut rest = b"defghij".to_vec();
    rest.extend_from_slice(b"GET /stats HTTP/1.1\r\nHost: t\r\n\r\n");
    c.send(&rest);
    let r = c.response();
    assert_eq!(r.status, 200);
    assert!(r.text().contains("\"http_requests\""), "{:?}", r.text());

    c = HttpClient::connect(addr, "chunked body");
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    c.send(&get("/"));
    assert_bytes_eq(&c.response().body, b"Hello, client!", "chunked request");
    assert_bytes_eq(&c.response().body, b"Hello, client!", "after chunked body");
    drop(c);
    finish(srv);
}

/// Promise: `Expect: 100-continue` with a small body: `100 Continue`,
/// then the response; the body is then discarded.
#[test]
fn expect_100_continue() {
    let _g = shared();
    let (srv, addr) = start_http(http_config(None));
    let mut c = HttpClient::connect(addr, "100-continue");
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let r = c.read_head();
    assert_eq!(r.status_line, "HTTP/1.1 100 Continue");
    assert!(r.headers.is_empty(), "100 with headers: {:?}", r.headers);
    let r = c.response();
    assert_bytes_eq(&r.body, b"Hello, client!", "after 100");
    let mut rest = b"hello".to_vec();
    rest.extend_from_slice(&get("/"));
    c.send(&rest);
    assert_bytes_eq(&c.response().body, b"Hello, client!", "after the body");
    assert!(c.quiet_for(Duration::from_millis(50)));
    drop(c);
    finish(srv);
}

// ------------------------------------------------------------------ stats

/// Promise: `/stats` is JSON with the loop's counters; `/metrics` is
/// Prometheus text with HELP and TYPE lines (counters and gauges).
#[test]
fn stats_json_and_metrics() {
    let _g = shared();
    let (srv, addr) = start_http(http_config(None));
    let r = http_get(addr, "/stats");
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap_or_default()
            .starts_with("application/json")
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("/stats is not JSON ({e}): {:?}", r.text()));
    for key in ["accepted", "open", "http_requests"] {
        assert!(
            v.get(key).is_some_and(|x| x.is_u64()),
            "/stats has no numeric {key}: {v}"
        );
    }
    assert!(v["accepted"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["open"].as_u64().unwrap() >= 1, "{v}");

    let r = http_get(addr, "/metrics");
    assert_eq!(r.status, 200);
    let text = r.text();
    let help = text.lines().filter(|l| l.starts_with("# HELP ")).count();
    let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
    assert!(help > 0 && help == types.len(), "HELP/TYPE lines: {text}");
    assert!(types.iter().any(|l| l.ends_with(" counter")), "{text}");
    assert!(types.iter().any(|l| l.ends_with(" gauge")), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("http_requests") && !l.starts_with('#')),
        "{text}"
    );
    for l in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, value) = l
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample {l:?}"));
        assert!(
            !name.is_empty() && value.parse::<f64>().is_ok(),
            "bad sample {l:?}"
        );
    }
    finish(srv);
}

// ------------------------------------------------------------------ big file

/// Promise: a 32 MiB file to a client that reads slowly arrives byte for
/// byte; meanwhile the server's memory stays bounded (RSS growth < 8 MiB)
/// and another client's `GET /hello.txt` is answered within 1 s throughout.
#[test]
fn large_file_slow_reader_bounded_memory() {
    let _g = exclusive();
    const SIZE: u64 = 32 << 20;
    let site = site();
    {
        use std::io::Write;
        let mut f = std::fs::File::create(site.root.join("big.bin")).unwrap();
        let mut chunk = vec![0u8; 1 << 20];
        for base in (0..SIZE).step_by(chunk.len()) {
            for (i, b) in chunk.iter_mut().enumerate() {
                *b = pattern(base + i as u64);
            }
            f.write_all(&chunk).unwrap();
        }
    }
    let (srv, addr) = start_site(&site);

    // The other client: a fresh connection and `GET /` every 50 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let other = thread::spawn(move || {
        let mut worst = Duration::ZERO;
        let mut n = 0u32;
        while !stop2.load(Ordering::SeqCst) {
            let t = Instant::now();
            let r = http_get(addr, "/hello.txt");
            let dt = t.elapsed();
            assert_bytes_eq(&r.body, b"hello from a file\n", "other client");
            worst = worst.max(dt);
            n += 1;
            thread::sleep(Duration::from_millis(50)); // pacing
        }
        (n, worst)
    });
    // Let the server (and the other client) reach their working size.
    srv.wait_stats("other client served", TIMEOUT, |s| s.http_requests >= 3);
    let rss0 = vm_rss_kib();

    let mut c = HttpClient::connect(addr, "slow reader");
    c.send(&get("/big.bin"));
    let head = c.read_head();
    assert_eq!(head.status, 200, "{:?}", head.status_line);
    assert_eq!(
        head.header("content-length"),
        Some(SIZE.to_string().as_str())
    );
    let check = |data: &[u8], got: &mut u64| {
        for (i, &b) in data.iter().enumerate() {
            let at = *got + i as u64;
            if b != pattern(at) {
                panic!("big.bin: byte {at} is {b}, want {}", pattern(at));
            }
        }
        *got += data.len() as u64;
    };
    // Bytes of the body that came with the head.
    let mut got: u64 = 0;
    check(&c.take_buffered(), &mut got);
    let mut peak = rss0;
    let mut buf = vec![0u8; 64 * 1024];
    let t0 = Instant::now();
    let mut reads = 0u64;
    while got < SIZE {
        let slow = t0.elapsed() < Duration::from_secs(1);
        let want = (SIZE - got).min(buf.len() as u64) as usize;
        let n = match c.s.read(&mut buf[..want]) {
            Ok(0) => panic!("big.bin: EOF after {got} of {SIZE} bytes"),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => panic!("big.bin: error after {got} of {SIZE} bytes: {e}"),
        };
        check(&buf[..n], &mut got);
        reads += 1;
        if slow || reads.is_multiple_of(16) {
            peak = peak.max(vm_rss_kib());
        }
        if slow {
            thread::sleep(Duration::from_millis(20)); // the slow reader's pace
        }
    }
    peak = peak.max(vm_rss_kib());
    let took = t0.elapsed();
    // The response is complete; the connection is still usable.
    assert_bytes_eq(
        &c.roundtrip(&get("/hello.txt")).body,
        b"hello from a file\n",
        "after big.bin",
    );
    stop.store(true, Ordering::SeqCst);
    let (served, worst) = other.join().expect("other client failed");
    let growth = peak.saturating_sub(rss0);
    eprintln!(
        "big file: {SIZE} bytes in {took:?}; RSS {rss0} KiB -> peak {peak} KiB (+{growth} KiB); \
         other client: {served} GETs, worst {worst:?}"
    );
    assert!(
        growth < 8 * 1024,
        "RSS grew by {growth} KiB (from {rss0} KiB) while streaming"
    );
    assert!(served >= 10, "other client served only {served} times");
    assert!(
        worst < Duration::from_secs(1),
        "other client waited {worst:?}"
    );
    drop(c);
    finish(srv);
}

/// Sanity for the helpers: a root path that does not exist serves 404s.
#[test]
fn missing_root_is_404_not_a_crash() {
    let _g = shared();
    let tmp = TempDir::new("noroot");
    let root = tmp.path().join("does-not-exist");
    assert!(!Path::new(&root).exists());
    let (srv, addr) = start_http(http_config(Some(&root)));
    assert_eq!(http_get(addr, "/x.txt").status, 404);
    assert_eq!(http_get(addr, "/").status, 404, "/ under a missing root");
    finish(srv);
}
