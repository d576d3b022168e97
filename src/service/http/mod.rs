//! HTTP/1.1 as a sans-I/O state machine: bytes in; response bytes, a file
//! to stream, and a verdict out.
//!
//! # What it serves
//!
//! Without a root, `GET /` is `Hello, client!` (text/html, as seed 001's
//! `http.server`); `GET /stats` and `GET /metrics` are rendered by the
//! loop's [`Site`]; with [`HttpConfig::root`] every other path, `/`
//! included (its `index.html` or its listing), is a file under the root
//! (see `files`), else 404. HEAD gets GET's headers without the body;
//! other methods get 405 with `Allow: GET, HEAD`.
//!
//! # The state machine
//!
//! [`HttpConn`] is 16 bytes: one `State`. `Idle` means at a request
//! boundary; `Length(n)` and `Chunked(..)` mean inside a request body that
//! is being discarded; `Closed` means a response ended the connection and
//! all further input is ignored. The loop keeps the bytes: it calls
//! [`HttpConn::input`] with everything it has buffered, and drops the
//! `consumed` prefix. A partial head (or chunk-size line) is never
//! consumed, only re-offered with more bytes, so nothing is copied here.
//!
//! Each call answers up to `max_pipeline` requests, in order, appending
//! whole responses to `out`, so a batch of pipelined requests becomes one
//! write. It stops early after a response with a file body (the loop
//! streams [`FileBody`], then calls again) and after a response that
//! closes.
//!
//! # Bodies
//!
//! A request body is read only to be discarded. Once a head is accepted,
//! the body bytes already buffered are decoded *before* the response is
//! written, so an invalid chunk or an over-budget chunked body that is
//! already here gets 400 or 413 instead of the response. If the body is
//! still arriving, the response goes out at once (with `100 Continue`
//! first when the client asked for it) and the rest of the body is
//! discarded as it comes; an error found then cannot have a status of its
//! own (the response is out), so the connection just closes. That is what
//! nginx does for the bodies it discards.
//!
//! # Rules, and where they live
//!
//! - `request`: httparse plus our limits (414, 431), versions (505),
//!   framing (`Content-Length`, `Transfer-Encoding`: 400 or 501), `Host`
//!   (400), `Expect` (417) and the body limit (413).
//! - `path`: target forms, percent-decoding once, normalising, refusals (400).
//! - `files`: confinement under the root (404), validators (304), ranges
//!   (206, 416), listings, redirects (301), content types.
//! - `body`: Content-Length countdown and the strict chunked decoder.
//! - `response`: status lines, canned errors, the `Date` cache.
//!
//! Every error response closes the connection (the loop stops reading,
//! flushes, then closes in stages), except 404, 405 and 416, which keep
//! it, as do 301 and 304. `Connection: close` closes after the response;
//! HTTP/1.0 closes unless it sent `Connection: keep-alive`.
//!
//! # Choices where the issue is silent
//!
//! - `/stats`, `/metrics`, `/chat` and `/dashboard` win over files of
//!   those names. `/` is the root's `index.html` or listing when there is a
//!   root (what `python -m http.server` users expect), the seed's greeting
//!   when there is none.
//! - Responses always say `HTTP/1.1`, also to HTTP/1.0 clients.
//! - 304 carries `ETag` and `Last-Modified` but no `Content-Length`.
//! - `HTTP/1.2` (a well-formed version we do not speak) is 505, like 2.0.
//! - An unknown method (`FOO`) is 405, like a known one we do not serve.
//! - Bare LF line ends are accepted in chunked framing as httparse accepts
//!   them in heads; a CR not followed by LF is always 400.

pub mod access;
mod body;
mod config;
mod files;
mod path;
mod request;
mod response;
#[cfg(test)]
mod tests;
mod upgrade;

pub use config::HttpConfig;
pub use files::FileBody;
/// Also the load generator's reading of responses (`src/bench/http.rs`).
pub(crate) use request::content_length;
pub use response::{DateCache, FIXED_MAX, canned, fixed_after_date, reason};

/// Public for the fuzz targets (`fuzz/`): the path a request target is
/// served as, decoded and normalised, with `true` if it names a directory;
/// `None` where a request gets 400. Not part of the API.
#[doc(hidden)]
pub fn clean_target(target: &str) -> Option<(Vec<u8>, bool)> {
    let clean = path::clean(path::path_of(target)?).ok()?;
    Some((clean.path.into_owned(), clean.dir))
}

use self::access::{AccessSink, Logged};
use self::body::{Chunked, Step, feed_length};
use self::path::Clean;
use self::request::{Framing, Method, Parsed, Request};
use self::response::Conn;
use super::answer::Verdict;

/// The body of `GET /`.
const HELLO: &[u8] = b"Hello, client!";

/// The browser chat (`GET /chat`): one self-contained page that talks to
/// `/ws`.
const CHAT_PAGE: &[u8] = include_bytes!("pages/chat.html");

/// The live dashboard (`GET /dashboard`): charts of `/stats`, once a second.
const DASHBOARD_PAGE: &[u8] = include_bytes!("pages/dashboard.html");

/// The Content-Type of the pages.
const HTML: &str = "text/html; charset=utf-8";

/// Written before reading a body the client is waiting to send.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// What only the loop knows, rendered on request.
pub trait Site {
    /// Appends the loop's counters as a JSON object (the `/stats` body).
    fn stats_json(&self, out: &mut Vec<u8>);
    /// Appends the counters in Prometheus text format (the `/metrics` body).
    fn metrics_text(&self, out: &mut Vec<u8>);
}

/// What the loop must do after [`HttpConn::input`].
#[derive(Debug)]
pub struct Progress {
    /// Input bytes used; drop them. On `Close` it is the whole input (the
    /// rest is ignored). Otherwise the unconsumed rest is a partial head or
    /// body (call again when more bytes come) or, if `again`, more requests.
    pub consumed: usize,
    /// `Close`: stop reading, flush `out` (and `file`), then close.
    pub verdict: Verdict,
    /// A file body to stream after what is in `out`, before anything else.
    pub file: Option<FileBody>,
    /// Responses appended to `out` (not counting `100 Continue`).
    pub responses: u32,
    /// The request was a WebSocket upgrade to this endpoint, answered
    /// with 101 (the last bytes in `out`): the rest of the input is
    /// frames, not HTTP.
    pub upgrade: Option<WsEndpoint>,
    /// `input` stopped early (a file body, `max_pipeline` responses, or no
    /// room left in `out`) with bytes left: call it again on the rest
    /// without waiting for new bytes
    /// (after streaming `file`; the loop may first let other connections run).
    pub again: bool,
}

/// The WebSocket endpoints a request can upgrade to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsEndpoint {
    /// `GET /ws`: a chat member.
    Chat,
    /// `GET /ws/echo`: every text and binary message back.
    Echo,
    /// `GET /game/ws`: a player of the game (binary messages).
    Game,
}

/// Where a connection is between calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At a request boundary (maybe with part of a head buffered).
    Idle,
    /// Discarding a `Content-Length` body: this many bytes to go.
    Length(u64),
    /// Discarding a chunked body.
    Chunked(Chunked),
    /// A response closed the connection: input is ignored.
    Closed,
}

/// One HTTP connection's protocol state (16 bytes; see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpConn {
    /// Where the connection is.
    state: State,
}

impl Default for HttpConn {
    fn default() -> Self {
        HttpConn::new()
    }
}

/// Where each response's access-log entry goes, if anywhere.
type Log<'a, 'b> = &'a mut Option<&'b mut dyn AccessSink>;

/// Everything a request's answer depends on besides the connection.
struct Ctx<'a> {
    /// The limits and root.
    cfg: &'a HttpConfig,
    /// No new request is answered once `out` holds this many bytes.
    room: usize,
    /// The cached `Date` value, followed by any further fixed header
    /// lines (HSTS): what goes after `Date: ` (see `response::start`).
    date: &'a [u8],
    /// Renders `/stats` and `/metrics`.
    site: &'a dyn Site,
}

impl HttpConn {
    /// A connection at its first request.
    pub fn new() -> Self {
        HttpConn { state: State::Idle }
    }

    /// Handles the buffered bytes `input` (starting where the last call's
    /// `consumed` ended): appends zero or more complete responses to `out`,
    /// in request order, at most `cfg.max_pipeline` per call; stops after a
    /// response with a file body or one that closes. `date` is the cached
    /// `Date` value ([`DateCache::get`]), possibly followed by fixed header
    /// lines for every response (HTTPS: [`fixed_after_date`] adds HSTS).
    /// Never panics, whatever `input` is.
    pub fn input(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        cfg: &HttpConfig,
        date: &[u8],
        site: &dyn Site,
    ) -> Progress {
        self.input_within(input, out, usize::MAX, cfg, date, site)
    }

    /// [`input`](Self::input), answering no new request once `out` holds
    /// `room` bytes (the connection's output is full): so a client that
    /// pipelines without reading makes the loop hold at most `room` plus
    /// one response. `again` says when requests were left for that reason.
    pub fn input_within(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        room: usize,
        cfg: &HttpConfig,
        date: &[u8],
        site: &dyn Site,
    ) -> Progress {
        self.input_logged(input, out, room, cfg, date, site, None)
    }

    /// [`input_within`](Self::input_within), handing `log` an entry for
    /// each response as it is written (the access log).
    #[allow(clippy::too_many_arguments)]
    pub fn input_logged(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        room: usize,
        cfg: &HttpConfig,
        date: &[u8],
        site: &dyn Site,
        mut log: Option<&mut dyn AccessSink>,
    ) -> Progress {
        let ctx = Ctx {
            cfg,
            room,
            date,
            site,
        };
        let mut p = Progress {
            consumed: 0,
            verdict: Verdict::Continue,
            file: None,
            responses: 0,
            upgrade: None,
            again: false,
        };
        while self.step(input, out, &ctx, &mut p, &mut log) {}
        if p.verdict == Verdict::Close {
            self.state = State::Closed;
            p.consumed = input.len();
        }
        p.again = p.verdict == Verdict::Continue
            && p.consumed < input.len()
            && (p.file.is_some()
                || p.responses as usize >= cfg.max_pipeline.max(1)
                || out.len() >= room);
        p
    }

    /// One move of `input`'s loop: a stretch of body or one request; true
    /// to go on.
    fn step(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        ctx: &Ctx<'_>,
        p: &mut Progress,
        log: Log<'_, '_>,
    ) -> bool {
        let rest = input.get(p.consumed..).unwrap_or_default();
        match self.state {
            State::Closed => {
                p.verdict = Verdict::Close;
                false
            }
            State::Length(_) | State::Chunked(_) => match self.feed_body(rest, ctx.cfg) {
                Step::Done(n) => {
                    p.consumed += n;
                    true
                }
                Step::More(n) => {
                    p.consumed += n;
                    false
                }
                Step::Fail(_) => {
                    // The response is already out: nothing to say, just close.
                    p.verdict = Verdict::Close;
                    false
                }
            },
            State::Idle => {
                if rest.is_empty()
                    || p.responses as usize >= ctx.cfg.max_pipeline.max(1)
                    || out.len() >= ctx.room
                {
                    return false;
                }
                self.request(rest, out, ctx, p, log)
            }
        }
    }

    /// Parses and answers the request at the start of `rest`; true to go on.
    fn request(
        &mut self,
        rest: &[u8],
        out: &mut Vec<u8>,
        ctx: &Ctx<'_>,
        p: &mut Progress,
        log: Log<'_, '_>,
    ) -> bool {
        let start = out.len();
        match request::parse(rest, ctx.cfg) {
            Parsed::Partial => false,
            Parsed::Reject(r) => {
                response::error(out, r.status, ctx.date, r.head_only, Conn::Close);
                p.responses += 1;
                p.verdict = Verdict::Close;
                if let Some(log) = log.as_deref_mut() {
                    logged(log, rest, &out[start..], 0, None, None);
                }
                false
            }
            Parsed::Done(req) => {
                p.consumed += req.head_len;
                p.responses += 1;
                let body = rest.get(req.head_len..).unwrap_or_default();
                self.answer(&req, body, out, ctx, p);
                if let Some(log) = log.as_deref_mut() {
                    let file = p.file.as_ref().map_or(0, |f| f.len);
                    logged(log, rest, &out[start..], file, req.referer, req.user_agent);
                }
                p.verdict == Verdict::Continue && p.file.is_none() && p.upgrade.is_none()
            }
        }
    }

    /// Answers a valid head whose body (if any) starts at `body`.
    fn answer(
        &mut self,
        req: &Request<'_>,
        body: &[u8],
        out: &mut Vec<u8>,
        ctx: &Ctx<'_>,
        p: &mut Progress,
    ) {
        let head_only = req.method == Method::Head;
        let fail = |out: &mut Vec<u8>, p: &mut Progress, status| {
            response::error(out, status, ctx.date, head_only, Conn::Close);
            p.verdict = Verdict::Close;
        };
        let Some(raw_path) = path::path_of(req.target) else {
            return fail(out, p, 400);
        };
        let Ok(clean) = path::clean(raw_path) else {
            return fail(out, p, 400);
        };
        let endpoint = match &*clean.path {
            b"/ws" => Some(WsEndpoint::Chat),
            b"/ws/echo" => Some(WsEndpoint::Echo),
            b"/game/ws" => Some(WsEndpoint::Game),
            _ => None,
        };
        if let Some(endpoint) = endpoint {
            // The connection leaves HTTP: nothing after this head is ours.
            if upgrade::handshake(req, ctx.cfg, ctx.date, out) {
                p.upgrade = Some(endpoint);
            } else {
                p.verdict = Verdict::Close;
            }
            return;
        }
        if let Err(status) = self.start_body(req.framing, body, ctx.cfg, p) {
            return fail(out, p, status);
        }
        let conn = match (req.keep_alive, req.http10) {
            (false, _) => Conn::Close,
            (true, true) => Conn::Keep10,
            (true, false) => Conn::Keep,
        };
        if req.expect_continue && self.state != State::Idle && conn.keeps() {
            out.extend_from_slice(CONTINUE);
        }
        p.file = respond(req, &clean, conn, out, ctx);
        if !conn.keeps() {
            p.verdict = Verdict::Close;
        }
    }

    /// Enters the body state `framing` asks for and discards the part of
    /// the body already in `body`; `Err` is 400 or 413.
    fn start_body(
        &mut self,
        framing: Framing,
        body: &[u8],
        cfg: &HttpConfig,
        p: &mut Progress,
    ) -> Result<(), u16> {
        self.state = match framing {
            Framing::None => return Ok(()),
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(Chunked::new(cfg)),
        };
        match self.feed_body(body, cfg) {
            Step::Done(n) | Step::More(n) => {
                p.consumed += n;
                Ok(())
            }
            Step::Fail(status) => Err(status),
        }
    }

    /// Feeds body bytes to the current body state; back to `Idle` when done.
    fn feed_body(&mut self, input: &[u8], cfg: &HttpConfig) -> Step {
        let step = match &mut self.state {
            State::Length(left) => feed_length(left, input),
            State::Chunked(chunked) => chunked.feed(input, cfg),
            State::Idle | State::Closed => Step::Done(0),
        };
        if let Step::Done(_) = step {
            self.state = State::Idle;
        }
        step
    }

    /// After the client's FIN, with `rest` the bytes still unconsumed:
    /// `Continue` if [`input`](Self::input) would still make progress on
    /// them (answer a request, or discard body bytes), so the loop should
    /// call it again; `Close` when nothing more can be answered (a partial
    /// head or body never completes): flush what is queued, then close.
    pub fn at_eof(&self, rest: &[u8], cfg: &HttpConfig) -> Verdict {
        let progress = match self.state {
            State::Closed => false,
            State::Idle => {
                !rest.is_empty() && !matches!(request::parse(rest, cfg), Parsed::Partial)
            }
            State::Length(_) | State::Chunked(_) => {
                let mut probe = *self;
                !matches!(probe.feed_body(rest, cfg), Step::More(0))
            }
        };
        if progress {
            Verdict::Continue
        } else {
            Verdict::Close
        }
    }

    /// True between requests (no body being discarded, not closed). With
    /// an empty input buffer this is keep-alive idleness (idle timeout);
    /// with bytes buffered, a head is arriving (header deadline).
    pub fn idle(&self) -> bool {
        self.state == State::Idle
    }
}

/// Hands `log` the entry for the request at the start of `rest`, answered
/// by `response` (and `file` bytes of file body after it).
fn logged(
    log: &mut dyn AccessSink,
    rest: &[u8],
    response: &[u8],
    file: u64,
    referer: Option<&[u8]>,
    user_agent: Option<&[u8]>,
) {
    let (status, body) = access::status_and_body(response);
    log.log(&Logged {
        request: access::request_line(rest),
        status,
        bytes: body + file,
        referer,
        user_agent,
    });
}

/// Writes the response to a valid GET, HEAD or other request; returns the
/// file body to stream, if any.
fn respond(
    req: &Request<'_>,
    clean: &Clean<'_>,
    conn: Conn,
    out: &mut Vec<u8>,
    ctx: &Ctx<'_>,
) -> Option<FileBody> {
    let head_only = req.method == Method::Head;
    if req.method == Method::Other {
        response::error(out, 405, ctx.date, false, conn);
        return None;
    }
    let rendered = |render: fn(&dyn Site, &mut Vec<u8>), ty: &str, out: &mut Vec<u8>| {
        let mut body = Vec::new();
        render(ctx.site, &mut body);
        response::simple(out, 200, ctx.date, ty, &body, head_only, conn);
    };
    match &*clean.path {
        // With a root, `/` is its index.html or listing, as in `http.server`.
        b"/" if ctx.cfg.root.is_none() => {
            response::simple(out, 200, ctx.date, "text/html", HELLO, head_only, conn)
        }
        b"/chat" => response::simple(out, 200, ctx.date, HTML, CHAT_PAGE, head_only, conn),
        b"/game" => {
            let page = crate::service::game::PAGE;
            response::simple(out, 200, ctx.date, HTML, page, head_only, conn)
        }
        b"/dashboard" => {
            response::simple(out, 200, ctx.date, HTML, DASHBOARD_PAGE, head_only, conn)
        }
        b"/stats" => rendered(|s, b| s.stats_json(b), "application/json", out),
        b"/metrics" => rendered(
            |s, b| s.metrics_text(b),
            "text/plain; version=0.0.4; charset=utf-8",
            out,
        ),
        _ => match &ctx.cfg.root {
            Some(root) => {
                let reply = files::Reply {
                    req,
                    date: ctx.date,
                    conn,
                };
                return files::serve(root, clean, &reply, out);
            }
            None => response::error(out, 404, ctx.date, head_only, conn),
        },
    }
    None
}
