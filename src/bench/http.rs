//! `reactor bench http`: HTTP/1.1 requests (any method, a body from the
//! command line or a file, or a list of requests taken in turn), over TCP
//! or TLS, keep-alive (pipelined to `--depth`) or one request per
//! connection (`--close`). Each response's head is parsed with `httparse`,
//! its status checked (2xx and 3xx are fine, or `--expect-status`) and
//! exactly its body consumed (none after a HEAD, a 1xx, 204 or 304);
//! bodies are skipped, never copied. Only a head split across reads is
//! buffered.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::cli::{HttpArgs, parse_header, parse_method};
use super::driver::{self, Answer, Parser, Request, Sink, Spec};
use super::kind::{self, Kind};
use super::net;
use super::report::Report;
use super::tls::Tls;

/// Longest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Most headers a response may have.
const MAX_HEADERS: usize = 64;
/// The ALPN protocol offered over TLS.
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// A parsed `http://host:port/path` or `https://...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// `https`: TLS.
    pub tls: bool,
    /// The Host header's value (the authority as given).
    pub authority: String,
    /// The host alone: SNI, and the name the certificate must carry.
    pub host: String,
    /// Where to connect.
    pub addr: SocketAddr,
    /// The request target.
    pub path: String,
}

/// Parses an `http://` or `https://` URL and resolves its host once (of
/// several addresses, the first that accepts a connection within
/// `probe`).
pub fn parse_url(url: &str, probe: Duration) -> Result<Url, String> {
    let (tls, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(r), _) => (false, r),
        (_, Some(r)) => (true, r),
        _ => return Err(format!("'{url}': an http:// or https:// URL")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let default_port = if tls { 443 } else { 80 };
    let (host, port) = net::split_host_port(authority, Some(default_port))?;
    let target = net::resolve(&host, port, Some(probe))?;
    Ok(Url {
        tls,
        authority: authority.to_string(),
        host,
        addr: target.addr,
        path: path.to_string(),
    })
}

/// One request to send: method, target, headers of its own, body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// The method.
    pub method: String,
    /// The request target.
    pub path: String,
    /// Its own headers, each `Name: value`.
    pub headers: Vec<String>,
    /// The body (empty: none).
    pub body: Arc<[u8]>,
}

/// The request bytes of `line` to `url`: the request line and Host (the
/// smallest HTTP/1.1 allows, as wrk sends), then `headers` (each `Name:
/// value`, for every request) and the line's own, then Content-Length (for
/// a body, or a method that carries one), then `Connection: close` if
/// `close`. A Host among the headers replaces ours; Content-Length and
/// Transfer-Encoding are ours alone (the body is what we send).
pub fn request(url: &Url, line: &Line, headers: &[String], close: bool) -> Result<Request, String> {
    let mut r = format!("{} {} HTTP/1.1\r\n", line.method, line.path);
    let own: Vec<&String> = headers.iter().chain(&line.headers).collect();
    let named = |h: &str, n: &str| {
        h.split(':')
            .next()
            .is_some_and(|x| x.eq_ignore_ascii_case(n))
    };
    if let Some(h) = own
        .iter()
        .find(|h| named(h, "Content-Length") || named(h, "Transfer-Encoding"))
    {
        return Err(format!(
            "'{h}': the body's length is set from the body itself"
        ));
    }
    if !own.iter().any(|h| named(h, "Host")) {
        r.push_str(&format!("Host: {}\r\n", url.authority));
    }
    for h in own {
        r.push_str(h);
        r.push_str("\r\n");
    }
    let carries = matches!(line.method.as_str(), "POST" | "PUT" | "PATCH");
    if !line.body.is_empty() || carries {
        r.push_str(&format!("Content-Length: {}\r\n", line.body.len()));
    }
    if close {
        r.push_str("Connection: close\r\n");
    }
    r.push_str("\r\n");
    Ok(Request {
        head: r.into_bytes().into(),
        body: line.body.clone(),
    })
}

/// Bodies read from files, each once however many requests send it.
#[derive(Debug, Default)]
struct Bodies(HashMap<PathBuf, Arc<[u8]>>);

impl Bodies {
    /// The bytes of `path`.
    fn get(&mut self, path: &Path) -> Result<Arc<[u8]>, String> {
        if let Some(b) = self.0.get(path) {
            return Ok(b.clone());
        }
        let bytes: Arc<[u8]> = std::fs::read(path)
            .map_err(|e| format!("cannot read the body {}: {e}", path.display()))?
            .into();
        self.0.insert(path.to_path_buf(), bytes.clone());
        Ok(bytes)
    }
}

/// Splits a request list line into tokens at whitespace; a token in
/// double quotes may hold spaces (`"X-Note: a b"`).
fn tokens(line: &str) -> Result<Vec<String>, String> {
    let (mut out, mut rest) = (Vec::new(), line.trim());
    while !rest.is_empty() {
        let (tok, after) = match rest.strip_prefix('"') {
            Some(q) => {
                let end = q.find('"').ok_or("an unclosed quote")?;
                (&q[..end], &q[end + 1..])
            }
            None => {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            }
        };
        out.push(tok.to_string());
        rest = after.trim_start();
    }
    Ok(out)
}

/// Parses a request list: one request a line, `METHOD PATH [NAME:VALUE
/// ...] [@BODY_FILE]` (a body file relative to `dir`, the list's
/// directory); blank lines and lines starting with `#` are skipped.
pub fn parse_requests(text: &str, dir: &Path) -> Result<Vec<Line>, String> {
    let mut bodies = Bodies::default();
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}", i + 1);
        if raw.trim().is_empty() || raw.trim_start().starts_with('#') {
            continue;
        }
        let toks = tokens(raw).map_err(|e| at(e.to_string()))?;
        let [method, path, rest @ ..] = &toks[..] else {
            return Err(at("METHOD PATH expected".into()));
        };
        let method = parse_method(method).map_err(at)?;
        if !path.starts_with('/') && path != "*" {
            return Err(at(format!("'{path}': a path starts with /")));
        }
        let mut line = Line {
            method,
            path: path.clone(),
            headers: Vec::new(),
            body: Arc::from(&[][..]),
        };
        for (j, t) in rest.iter().enumerate() {
            match t.strip_prefix('@') {
                Some(file) if j + 1 == rest.len() => {
                    line.body = bodies.get(&dir.join(file)).map_err(at)?
                }
                Some(_) => return Err(at("the @BODY_FILE comes last".into())),
                None => line.headers.push(parse_header(t).map_err(at)?),
            }
        }
        lines.push(line);
    }
    if lines.is_empty() {
        return Err("no request in the list".into());
    }
    Ok(lines)
}

/// Where a parser is in the current response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Part {
    /// Waiting for (the rest of) a head.
    #[default]
    Head,
    /// This many body bytes to go.
    Body(u64),
    /// The body runs to EOF (no Content-Length).
    ToEof,
}

/// What makes a response fine, and which requests get answers without a
/// body: shared by every connection's parser.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    /// The statuses that count as success; empty: any 2xx or 3xx.
    pub accept: Vec<u16>,
    /// By request index: a HEAD (its answer has no body).
    pub head: Vec<bool>,
}

impl Rules {
    /// The verdict on status `code`.
    fn judge(&self, code: u16) -> Result<(), Kind> {
        let fine = if self.accept.is_empty() {
            (200..400).contains(&code)
        } else {
            self.accept.contains(&code)
        };
        if fine { Ok(()) } else { Err(Kind::Status) }
    }
}

/// Follows a stream of HTTP/1.1 responses.
#[derive(Clone, Debug, Default)]
pub struct HttpParser {
    /// A head split across reads, kept until it is whole.
    head: Vec<u8>,
    /// Where we are.
    part: Part,
    /// The current response's verdict and status.
    answer: Option<Answer>,
    /// What counts as fine; which requests are HEADs.
    rules: Arc<Rules>,
}

impl HttpParser {
    /// A parser judging by `rules`.
    pub fn new(rules: Arc<Rules>) -> HttpParser {
        HttpParser {
            rules,
            ..HttpParser::default()
        }
    }
}

/// A parsed head: its length, the body to expect (`Part::Head` after an
/// interim 1xx: another head follows), its status.
type Head = (usize, Part, u16);

/// Parses one head, the answer to a HEAD if `to_head`: Some(head), None
/// if incomplete, Err if unparsable (or chunked, which is not supported).
fn parse_head(buf: &[u8], to_head: bool) -> Result<Option<Head>, Kind> {
    // Uninitialised slots: httparse writes only the ones it fills, so no
    // response pays for clearing all 64 (a quarter of its parse time).
    let mut slots =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut slots);
    let n = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Kind::Verify),
    };
    let code = resp.code.unwrap_or(0);
    // RFC 9112 6.3: whatever Content-Length says, no body follows the
    // answer to a HEAD, a 1xx, a 204 or a 304 (for a HEAD or a 304 it is
    // the length the resource would have).
    let bodiless = to_head || code == 204 || code == 304 || (100..200).contains(&code);
    let mut body = None;
    for h in resp.headers.iter() {
        if is_header(h.name, "Content-Length") {
            let len = crate::service::http::content_length(h.value).ok_or(Kind::Verify)?;
            if body.is_some_and(|b| b != Part::Body(len)) {
                return Err(Kind::Verify); // two lengths: which body is it?
            }
            body = Some(Part::Body(len));
        } else if is_header(h.name, "Transfer-Encoding") && !bodiless {
            return Err(Kind::Verify); // chunked bodies are not followed
        }
    }
    let part = match body {
        // An interim response (100 Continue, 103 Early Hints): the final
        // one to the same request follows.
        _ if (100..200).contains(&code) && code != 101 => Part::Head,
        _ if bodiless => Part::Body(0),
        Some(p) => p,
        None => Part::ToEof,
    };
    Ok(Some((n, part, code)))
}

/// Header `name` is `canonical`, in any case (the canonical spelling,
/// which most servers send, is tried first: a plain comparison).
fn is_header(name: &str, canonical: &str) -> bool {
    name == canonical || name.eq_ignore_ascii_case(canonical)
}

impl HttpParser {
    /// True if the response being parsed answers a HEAD.
    fn to_head(&self, sink: &impl Sink) -> bool {
        sink.request()
            .is_some_and(|r| self.rules.head.get(r).copied().unwrap_or(false))
    }

    /// A head was parsed: start its body (an empty one completes now).
    fn begin(&mut self, part: Part, code: u16, sink: &mut impl Sink) {
        if part == Part::Head {
            return; // interim: no response yet
        }
        let answer = Answer {
            verdict: self.rules.judge(code),
            status: code,
        };
        self.answer = Some(answer);
        self.part = part;
        if part == Part::Body(0) {
            self.part = Part::Head;
            sink.done(answer);
        }
    }

    /// The current response is complete.
    fn complete(&mut self, sink: &mut impl Sink) {
        self.part = Part::Head;
        if let Some(a) = self.answer.take() {
            sink.done(a);
        }
    }
}

impl Parser for HttpParser {
    /// Consumes heads and bodies; one `done` per complete response.
    fn feed(&mut self, mut data: &[u8], sink: &mut impl Sink) -> Result<(), Kind> {
        loop {
            match self.part {
                Part::ToEof => return Ok(()),
                Part::Body(rem) => {
                    let k = rem.min(data.len() as u64);
                    data = &data[k as usize..];
                    if rem == k {
                        self.complete(sink);
                    } else {
                        self.part = Part::Body(rem - k);
                        return Ok(());
                    }
                }
                Part::Head if data.is_empty() => return Ok(()),
                Part::Head if self.head.is_empty() => match parse_head(data, self.to_head(sink))? {
                    Some((n, part, code)) => {
                        data = &data[n..];
                        self.begin(part, code, sink);
                    }
                    None => {
                        if data.len() > MAX_HEAD {
                            return Err(Kind::Verify);
                        }
                        self.head.extend_from_slice(data);
                        return Ok(());
                    }
                },
                Part::Head => {
                    self.head.extend_from_slice(data);
                    let Some((n, part, code)) = parse_head(&self.head, self.to_head(sink))? else {
                        return if self.head.len() > MAX_HEAD {
                            Err(Kind::Verify)
                        } else {
                            Ok(())
                        };
                    };
                    // The joined bytes past the head: parse them in turn,
                    // then keep the buffer's capacity for next time.
                    let mut joined = std::mem::take(&mut self.head);
                    self.begin(part, code, sink);
                    let r = self.feed(&joined[n..], sink);
                    if self.head.is_empty() {
                        joined.clear();
                        self.head = joined;
                    }
                    return r;
                }
            }
        }
    }

    /// EOF completes a body that runs to EOF.
    fn eof(&mut self) -> Option<Answer> {
        if self.part == Part::ToEof {
            self.part = Part::Head;
            self.answer.take()
        } else {
            None
        }
    }

    /// Forgets the partial response.
    fn reset(&mut self) {
        self.head.clear();
        self.part = Part::Head;
        self.answer = None;
    }
}

/// The body of `-m`'s request: `--body`, `--body-file`'s bytes, or none.
fn body(a: &HttpArgs) -> Result<Arc<[u8]>, String> {
    match (&a.body, &a.body_file) {
        (Some(b), _) => Ok(b.as_bytes().into()),
        (None, Some(f)) => Bodies::default().get(f),
        (None, None) => Ok(Arc::from(&[][..])),
    }
}

/// Runs the HTTP workload.
pub fn bench(a: &HttpArgs) -> crate::Result<Report> {
    let c = &a.common;
    let url = parse_url(&a.url, c.timeout).map_err(kind::config)?;
    let lines = match &a.requests {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| kind::config(format!("cannot read {}: {e}", file.display())))?;
            let dir = file.parent().unwrap_or(Path::new("."));
            parse_requests(&text, dir)
                .map_err(|e| kind::config(format!("{}: {e}", file.display())))?
        }
        None => vec![Line {
            method: a.method.clone(),
            path: url.path.clone(),
            headers: Vec::new(),
            body: body(a).map_err(kind::config)?,
        }],
    };
    let requests = lines
        .iter()
        .map(|l| request(&url, l, &a.headers, a.close))
        .collect::<Result<Vec<_>, _>>()
        .map_err(kind::config)?;
    let rules = Rules {
        accept: a.expect_status.clone(),
        head: lines.iter().map(|l| l.method == "HEAD").collect(),
    };
    let tls = match url.tls {
        true => Some(Tls::new(&a.tls_opts, &url.host, &[ALPN_HTTP11])?),
        false => None,
    };
    let depth = if a.close { 1 } else { a.depth.max(1) };
    let spec = Spec {
        addr: url.addr,
        requests: requests.into(),
        depth,
        per_conn: a.close,
        parser: HttpParser::new(Arc::new(rules)),
        tls,
        hang_up: false,
        upgrade: None,
    };
    let m = driver::drive(spec, c)?;
    let config = json!({
        "url": a.url, "close": a.close, "depth": depth, "headers": a.headers,
        "method": a.method, "body_bytes": lines[0].body.len(),
        "requests_file": a.requests, "requests": lines.len(),
        "expect_status": a.expect_status, "tls": url.tls,
    });
    Ok(Report::new("http", a.url.clone(), config, c, c.conns, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts answers; every request awaited is `req`.
    struct Count {
        /// (fine, failed) answers.
        got: (u32, u32),
        /// Statuses seen, in order.
        codes: Vec<u16>,
        /// The request each response answers.
        req: usize,
    }

    impl Sink for Count {
        fn request(&self) -> Option<usize> {
            Some(self.req)
        }
        fn done(&mut self, a: Answer) {
            match a.verdict {
                Ok(()) => self.got.0 += 1,
                Err(_) => self.got.1 += 1,
            }
            self.codes.push(a.status);
        }
    }

    /// Feeds `data` to `p` in pieces of `step`, every response answering
    /// request `req`: (ok, failed, result, statuses).
    fn feed_with(
        p: &mut HttpParser,
        req: usize,
        data: &[u8],
        step: usize,
    ) -> (u32, u32, Result<(), Kind>, Vec<u16>) {
        let mut c = Count {
            got: (0, 0),
            codes: Vec::new(),
            req,
        };
        for chunk in data.chunks(step) {
            let r = p.feed(chunk, &mut c);
            if r.is_err() {
                return (c.got.0, c.got.1, r, c.codes);
            }
        }
        (c.got.0, c.got.1, Ok(()), c.codes)
    }

    /// Feeds `data` in pieces of `step`: (ok, errors by status, result).
    fn run(data: &[u8], step: usize) -> (u32, u32, Result<(), Kind>) {
        let (ok, bad, r, _) = feed_with(&mut HttpParser::default(), 0, data, step);
        (ok, bad, r)
    }

    #[test]
    fn pipelined_responses_in_any_split() {
        let one = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        let nf = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        let mut s = one.repeat(3);
        s.extend_from_slice(nf);
        s.extend_from_slice(one);
        for step in 1..=s.len() {
            assert_eq!(run(&s, step), (4, 1, Ok(())), "step {step}");
        }
    }

    #[test]
    fn no_body_after_304_204_or_1xx_whatever_their_length() {
        // RFC 9112 6.3: a 304's Content-Length is the length the resource
        // would have; no body follows, and the next response starts.
        let mut s = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n".to_vec();
        s.extend_from_slice(b"HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n");
        // An interim 100 is not the answer: the 200 after it is.
        s.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        s.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        for step in 1..=s.len() {
            assert_eq!(run(&s, step), (3, 0, Ok(())), "step {step}");
        }
    }

    #[test]
    fn garbage_and_chunked_are_errors() {
        assert_eq!(run(b"NOT HTTP\r\n\r\n", 100).2, Err(Kind::Verify));
        let ch = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        assert_eq!(run(ch, 100).2, Err(Kind::Verify));
        let two = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\ncontent-length: 2\r\n\r\nab";
        assert_eq!(run(two, 100).2, Err(Kind::Verify));
        let same = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nCONTENT-LENGTH: 2\r\n\r\nab";
        assert_eq!(run(same, 100), (1, 0, Ok(())));
    }

    #[test]
    fn a_head_answer_has_no_body_whatever_its_length() {
        let rules = Rules {
            accept: Vec::new(),
            head: vec![false, true],
        };
        let mut p = HttpParser::new(Arc::new(rules));
        let mut s = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n".to_vec();
        s.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
        // Request 1 is a HEAD: two answers, no bodies.
        assert_eq!(feed_with(&mut p, 1, &s, 7).0, 2);
        // Request 0 is not: the second head's first 5 bytes are the
        // first one's body, and the rest does not parse.
        let mut p = HttpParser::new(p.rules.clone());
        let (ok, _, r, _) = feed_with(&mut p, 0, &s, 7);
        assert_eq!((ok, r), (1, Err(Kind::Verify)));
    }

    #[test]
    fn expected_statuses_and_status_codes() {
        let s = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\nHTTP/1.1 405 No\r\nContent-Length: 0\r\n\r\nHTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n";
        let (ok, bad, r, codes) = feed_with(&mut HttpParser::default(), 0, s, 5);
        assert_eq!((ok, bad, r, codes), (2, 1, Ok(()), vec![201, 405, 302]));
        let rules = Rules {
            accept: vec![405],
            head: Vec::new(),
        };
        let (ok, bad, _, _) = feed_with(&mut HttpParser::new(Arc::new(rules)), 0, s, 5);
        assert_eq!((ok, bad), (1, 2));
    }

    #[test]
    fn body_to_eof() {
        let mut p = HttpParser::default();
        let (ok, bad, r, _) = feed_with(&mut p, 0, b"HTTP/1.0 200 OK\r\n\r\nabc", 100);
        assert_eq!((ok, bad, r), (0, 0, Ok(())), "not yet");
        let a = p.eof().unwrap();
        assert_eq!((a.verdict, a.status), (Ok(()), 200));
    }

    /// A URL to 127.0.0.1:7080, resolved without a probe.
    fn url() -> Url {
        parse_url("http://127.0.0.1:7080/x", Duration::ZERO).unwrap()
    }

    /// A line of the request list.
    fn line(method: &str, path: &str, headers: &[&str], body: &str) -> Line {
        Line {
            method: method.into(),
            path: path.into(),
            headers: headers.iter().map(|h| h.to_string()).collect(),
            body: body.as_bytes().into(),
        }
    }

    /// The bytes of `r`, head and body.
    fn bytes(r: &Request) -> Vec<u8> {
        [&r.head[..], &r.body[..]].concat()
    }

    #[test]
    fn request_bytes() {
        let u = url();
        let get = request(&u, &line("GET", "/x", &[], ""), &[], false).unwrap();
        assert_eq!(
            bytes(&get),
            b"GET /x HTTP/1.1\r\nHost: 127.0.0.1:7080\r\n\r\n"
        );
        let h = ["User-Agent: t".to_string(), "Accept: */*".to_string()];
        let closed = request(&u, &line("GET", "/x", &[], ""), &h, true).unwrap();
        assert_eq!(
            bytes(&closed),
            b"GET /x HTTP/1.1\r\nHost: 127.0.0.1:7080\r\nUser-Agent: t\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        // A body: its length; POST without one: Content-Length 0.
        let post = request(&u, &line("POST", "/p", &["X-A: 1"], "hello"), &[], false).unwrap();
        assert_eq!(
            bytes(&post),
            b"POST /p HTTP/1.1\r\nHost: 127.0.0.1:7080\r\nX-A: 1\r\nContent-Length: 5\r\n\r\nhello"
        );
        assert_eq!(
            &post.body[..],
            b"hello",
            "the body is shared, not copied in"
        );
        let empty = request(&u, &line("POST", "/p", &[], ""), &[], false).unwrap();
        assert!(bytes(&empty).ends_with(b"Content-Length: 0\r\n\r\n"));
        // Host given replaces ours; a length of the user's is refused.
        let hosted = request(
            &u,
            &line("GET", "/", &["Host: example.org"], ""),
            &[],
            false,
        );
        assert_eq!(
            bytes(&hosted.unwrap()),
            b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n"
        );
        let cl = ["content-length: 3".to_string()];
        assert!(request(&u, &line("POST", "/", &[], "abc"), &cl, false).is_err());
    }

    #[test]
    fn request_lists() {
        let dir = std::env::temp_dir().join(format!("reactor-reqs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("b.json"), b"{\"a\":1}").unwrap();
        let text = "# a comment\n\nGET /\nPOST /items Content-Type:application/json @b.json\n\
                    PUT /x \"X-Note: a b\" @b.json\nHEAD /h\n";
        let ls = parse_requests(text, &dir).unwrap();
        assert_eq!(ls.len(), 4);
        assert_eq!(ls[0], line("GET", "/", &[], ""));
        assert_eq!(
            ls[1],
            line(
                "POST",
                "/items",
                &["Content-Type: application/json"],
                "{\"a\":1}"
            )
        );
        assert_eq!(ls[2], line("PUT", "/x", &["X-Note: a b"], "{\"a\":1}"));
        assert!(
            Arc::ptr_eq(&ls[1].body, &ls[2].body),
            "a body file is read once"
        );
        assert_eq!(ls[3].method, "HEAD");
        for bad in [
            "GET",
            "G@T /",
            "GET x",
            "GET / @b.json X:1",
            "GET / \"X: a",
            "GET / @nope",
            "",
        ] {
            assert!(parse_requests(bad, &dir).is_err(), "{bad:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn urls() {
        let u = parse_url("http://127.0.0.1:7080/x?y", Duration::ZERO).unwrap();
        assert_eq!(u.addr, "127.0.0.1:7080".parse().unwrap());
        assert_eq!((u.path.as_str(), u.tls), ("/x?y", false));
        assert_eq!(
            parse_url("http://127.0.0.1", Duration::ZERO)
                .unwrap()
                .addr
                .port(),
            80
        );
        let s = parse_url("https://localhost/", Duration::ZERO).unwrap();
        assert_eq!(
            (s.tls, s.host.as_str(), s.addr.port()),
            (true, "localhost", 443)
        );
        let v6 = parse_url("http://[::1]:8000/", Duration::ZERO).unwrap();
        assert_eq!(
            (v6.host.as_str(), v6.authority.as_str()),
            ("::1", "[::1]:8000")
        );
        assert!(parse_url("ftp://x", Duration::ZERO).is_err());
    }
}
