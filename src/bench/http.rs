//! `reactor bench http`: GET over HTTP/1.1, keep-alive (pipelined to
//! `--depth`) or one request per connection (`--close`). Each response's
//! head is parsed with `httparse`, its status checked (2xx and 3xx are
//! fine) and exactly Content-Length body bytes consumed; bodies are
//! skipped, never copied. Only a head split across reads is buffered.

use std::net::{SocketAddr, ToSocketAddrs};

use serde_json::json;

use super::cli::HttpArgs;
use super::driver::{self, Parser, Spec};
use super::kind::{self, Kind};
use super::report::Report;

/// Longest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Most headers a response may have.
const MAX_HEADERS: usize = 64;

/// A parsed `http://host:port/path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// The Host header's value.
    pub host: String,
    /// Where to connect.
    pub addr: SocketAddr,
    /// The request target.
    pub path: String,
}

/// Parses an `http://` URL (no TLS) and resolves its host once.
pub fn parse_url(url: &str) -> Result<Url, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("'{url}': only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let has_port = match authority.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => authority.contains(':'),
    };
    let with_port = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("'{authority}': {e}"))?
        .next()
        .ok_or_else(|| format!("'{authority}': no address"))?;
    Ok(Url {
        host: authority.to_string(),
        addr,
        path: path.to_string(),
    })
}

/// The request bytes for `url`: the smallest GET HTTP/1.1 allows (the
/// request line and Host, as wrk sends), then `headers` (each
/// `Name: value`), then `Connection: close` if `close`.
pub fn request(url: &Url, headers: &[String], close: bool) -> Vec<u8> {
    let mut r = format!("GET {} HTTP/1.1\r\nHost: {}\r\n", url.path, url.host);
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    if close {
        r.push_str("Connection: close\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// Where a parser is in the current response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    /// Waiting for (the rest of) a head.
    Head,
    /// This many body bytes to go.
    Body(u64),
    /// The body runs to EOF (no Content-Length).
    ToEof,
}

/// Follows a stream of HTTP/1.1 responses.
#[derive(Clone, Debug)]
pub struct HttpParser {
    /// A head split across reads, kept until it is whole.
    head: Vec<u8>,
    /// Where we are.
    part: Part,
    /// The current response's verdict (from its status).
    verdict: Result<(), Kind>,
}

impl Default for HttpParser {
    fn default() -> Self {
        HttpParser {
            head: Vec::new(),
            part: Part::Head,
            verdict: Ok(()),
        }
    }
}

/// A parsed head: its length, the body to expect (`Part::Head` after an
/// interim 1xx: another head follows), the status's verdict.
type Head = (usize, Part, Result<(), Kind>);

/// Parses one head: Some(head), None if incomplete, Err if unparsable (or
/// chunked, which is not supported).
fn parse_head(buf: &[u8]) -> Result<Option<Head>, Kind> {
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
    let verdict = if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(Kind::Status)
    };
    // RFC 9112 6.3: whatever Content-Length says, no body follows a 1xx,
    // a 204 or a 304 (for a 304 it is the length the resource would have).
    let bodiless = code == 204 || code == 304 || (100..200).contains(&code);
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
    Ok(Some((n, part, verdict)))
}

/// Header `name` is `canonical`, in any case (the canonical spelling,
/// which most servers send, is tried first: a plain comparison).
fn is_header(name: &str, canonical: &str) -> bool {
    name == canonical || name.eq_ignore_ascii_case(canonical)
}

impl HttpParser {
    /// A head was parsed: start its body (an empty one completes now).
    fn begin(
        &mut self,
        part: Part,
        verdict: Result<(), Kind>,
        done: &mut impl FnMut(Result<(), Kind>),
    ) {
        if part == Part::Head {
            return; // interim: no response yet
        }
        self.verdict = verdict;
        self.part = part;
        if part == Part::Body(0) {
            self.part = Part::Head;
            done(verdict);
        }
    }
}

impl Parser for HttpParser {
    /// Consumes heads and bodies; one `done` per complete response.
    fn feed(
        &mut self,
        mut data: &[u8],
        done: &mut impl FnMut(Result<(), Kind>),
    ) -> Result<(), Kind> {
        loop {
            match self.part {
                Part::ToEof => return Ok(()),
                Part::Body(rem) => {
                    let k = rem.min(data.len() as u64);
                    data = &data[k as usize..];
                    if rem == k {
                        self.part = Part::Head;
                        done(self.verdict);
                    } else {
                        self.part = Part::Body(rem - k);
                        return Ok(());
                    }
                }
                Part::Head if data.is_empty() => return Ok(()),
                Part::Head if self.head.is_empty() => match parse_head(data)? {
                    Some((n, part, verdict)) => {
                        data = &data[n..];
                        self.begin(part, verdict, done);
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
                    let Some((n, part, verdict)) = parse_head(&self.head)? else {
                        return if self.head.len() > MAX_HEAD {
                            Err(Kind::Verify)
                        } else {
                            Ok(())
                        };
                    };
                    // The joined bytes past the head: parse them in turn,
                    // then keep the buffer's capacity for next time.
                    let mut joined = std::mem::take(&mut self.head);
                    self.begin(part, verdict, done);
                    let r = self.feed(&joined[n..], done);
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
    fn eof(&mut self) -> Option<Result<(), Kind>> {
        if self.part == Part::ToEof {
            self.part = Part::Head;
            Some(self.verdict)
        } else {
            None
        }
    }

    /// Forgets the partial response.
    fn reset(&mut self) {
        self.head.clear();
        self.part = Part::Head;
        self.verdict = Ok(());
    }
}

/// Runs the HTTP workload.
pub fn bench(a: &HttpArgs) -> crate::Result<Report> {
    let url = parse_url(&a.url).map_err(kind::config)?;
    let depth = if a.close { 1 } else { a.depth.max(1) };
    let spec = Spec {
        addr: url.addr,
        request: request(&url, &a.headers, a.close),
        depth,
        per_conn: a.close,
        parser: HttpParser::default(),
    };
    let c = &a.common;
    let m = driver::drive(spec, c)?;
    let config = json!({ "url": a.url, "close": a.close, "depth": depth, "headers": a.headers });
    Ok(Report::new("http", a.url.clone(), config, c, c.conns, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `data` in pieces of `step`: (ok, errors by status, result).
    fn run(data: &[u8], step: usize) -> (u32, u32, Result<(), Kind>) {
        let mut p = HttpParser::default();
        let (mut ok, mut bad) = (0, 0);
        for chunk in data.chunks(step) {
            let r = p.feed(chunk, &mut |v| match v {
                Ok(()) => ok += 1,
                Err(_) => bad += 1,
            });
            if r.is_err() {
                return (ok, bad, r);
            }
        }
        (ok, bad, Ok(()))
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
    fn body_to_eof() {
        let mut p = HttpParser::default();
        p.feed(b"HTTP/1.0 200 OK\r\n\r\nabc", &mut |_| panic!("not yet"))
            .unwrap();
        assert_eq!(p.eof(), Some(Ok(())));
    }

    #[test]
    fn request_bytes() {
        let u = parse_url("http://127.0.0.1:7080/x").unwrap();
        assert_eq!(
            request(&u, &[], false),
            b"GET /x HTTP/1.1\r\nHost: 127.0.0.1:7080\r\n\r\n"
        );
        let h = ["User-Agent: t".to_string(), "Accept: */*".to_string()];
        assert_eq!(
            request(&u, &h, true),
            b"GET /x HTTP/1.1\r\nHost: 127.0.0.1:7080\r\nUser-Agent: t\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn urls() {
        let u = parse_url("http://127.0.0.1:7080/x?y").unwrap();
        assert_eq!(u.addr, "127.0.0.1:7080".parse().unwrap());
        assert_eq!(u.path, "/x?y");
        assert_eq!(parse_url("http://127.0.0.1").unwrap().addr.port(), 80);
        assert!(parse_url("https://x").is_err());
    }
}
