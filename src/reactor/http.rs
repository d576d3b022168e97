//! HTTP on the loop: feeding buffered requests to the sans-I/O
//! `HttpConn`, streaming file bodies in bounded chunks, and the deadlines
//! HTTP needs (a header deadline that trickling bytes do not extend, a
//! keep-alive idle timeout between requests, 408 and 503).

use std::io::{self, Write as _};
use std::time::SystemTime;

use crate::buf::CHUNK;
use crate::config::Limits;
use crate::service::Verdict;
use crate::service::http::{FIXED_MAX, HttpConfig, HttpConn, Site, canned, fixed_after_date};
use crate::stats::Stats;
use crate::timer::{Clock, Millis};

use super::conn::{Conn, Extra, Phase};
use super::{Reactor, Slot};

/// Most unparsed request bytes kept per connection: past this the loop
/// stops reading it (requests buffered ahead are bounded).
pub const HTTP_INPUT_CAP: usize = 64 * 1024;
/// A file is read into the output only while less than this is queued: a
/// client that does not read holds at most this much of a file.
const FILE_WINDOW: usize = 4 * CHUNK;
/// File bytes written per connection per loop turn before it yields to
/// the others (the rest goes on the ready list).
const FILE_TURN_BUDGET: usize = CHUNK;
/// Rounds of `HttpConn::input` per connection per turn (each answers up to
/// `max_pipeline` requests) before it yields to the others.
const HTTP_ROUNDS: usize = 4;

/// True if `c` still has response bytes to send (queued or in a file).
pub fn http_busy(c: &Conn) -> bool {
    c.pending() > 0 || c.extra.as_ref().is_some_and(|x| x.file.is_some())
}

/// True if a request head is arriving on `c`: bytes are buffered at a
/// request boundary (not in a body being discarded).
fn head_arriving(c: &Conn) -> bool {
    c.input.as_ref().is_some_and(|b| !b.is_empty()) && proto_of(c).idle()
}

/// The deadline an HTTP connection that is serving should have now:
/// while a response is being sent, the idle timeout (a send timeout); while
/// a head arrives, its header deadline (`mark`), which nothing extends;
/// while a body is discarded, the idle timeout; between requests, the
/// keep-alive timeout.
pub fn http_deadline(c: &Conn, clock: &Clock, limits: &Limits) -> Millis {
    // `mark` is set from accept until the first request is whole, and from
    // the first byte of each later one until it is whole.
    let head_due = if proto_of(c).idle() { c.mark } else { 0 };
    let busy = if http_busy(c) || !proto_of(c).idle() {
        clock.after(limits.idle_timeout)
    } else {
        0
    };
    match (head_due, busy) {
        (0, 0) => clock.after(limits.keepalive_timeout),
        (0, t) | (t, 0) => t,
        (a, b) => a.min(b),
    }
}

/// The protocol state of `c` (a fresh one between requests).
fn proto_of(c: &Conn) -> HttpConn {
    c.extra.as_ref().map_or_else(HttpConn::new, |x| x.proto)
}

/// What `/stats` and `/metrics` show: the loop's counters and gauges.
pub struct SiteView<'a> {
    /// The counters.
    pub stats: &'a Stats,
    /// Open connections now.
    pub open: usize,
    /// Chat members now.
    pub members: usize,
    /// Chat rooms now.
    pub rooms: usize,
    /// Milliseconds since the loop started (the dashboard's clock).
    pub uptime_ms: u64,
}

impl SiteView<'_> {
    /// Every figure as (name, kind, help, value): one list for both formats.
    fn figures(&self) -> [(&'static str, &'static str, &'static str, u64); 29] {
        let s = self.stats;
        let by = s.open_by;
        [
            ("accepted", "counter", "Connections accepted.", s.accepted),
            (
                "refused",
                "counter",
                "Connections refused at max-conns.",
                s.refused,
            ),
            ("open", "gauge", "Connections open.", self.open as u64),
            ("open_greet", "gauge", "Greet connections open.", by.greet),
            (
                "open_echo",
                "gauge",
                "Echo connections open (TCP and TLS).",
                by.echo,
            ),
            (
                "open_chat",
                "gauge",
                "Line chat members connected.",
                by.chat,
            ),
            (
                "open_unix",
                "gauge",
                "Unix-socket echo connections open.",
                by.unix,
            ),
            (
                "open_http",
                "gauge",
                "HTTP connections open (plain and TLS).",
                by.http,
            ),
            (
                "open_ws",
                "gauge",
                "WebSocket chat members connected.",
                by.ws,
            ),
            ("closed", "counter", "Connections closed.", s.closed),
            (
                "timeouts",
                "counter",
                "Connections closed by a deadline.",
                s.timeouts,
            ),
            (
                "slow_dropped",
                "counter",
                "Chat members dropped for not reading.",
                s.slow_dropped,
            ),
            (
                "bytes_in",
                "counter",
                "Bytes read from clients.",
                s.bytes_in,
            ),
            (
                "bytes_out",
                "counter",
                "Bytes written to clients.",
                s.bytes_out,
            ),
            (
                "http_requests",
                "counter",
                "HTTP responses sent.",
                s.http_requests,
            ),
            (
                "ws_upgrades",
                "counter",
                "HTTP connections upgraded to WebSocket.",
                s.ws_upgrades,
            ),
            (
                "ws_messages",
                "counter",
                "WebSocket messages received.",
                s.ws_messages,
            ),
            ("udp_in", "counter", "UDP datagrams received.", s.udp_in),
            ("udp_out", "counter", "UDP datagrams sent.", s.udp_out),
            (
                "udp_dropped",
                "counter",
                "UDP replies dropped (queue full).",
                s.udp_dropped,
            ),
            ("events", "counter", "Readiness events handled.", s.events),
            (
                "wakeups",
                "counter",
                "Polls that returned events.",
                s.wakeups,
            ),
            ("iterations", "counter", "Loop iterations.", s.iterations),
            (
                "accept_errors",
                "counter",
                "Accept errors for lack of fds.",
                s.accept_errors,
            ),
            (
                "chat_members",
                "gauge",
                "Chat members now (TCP and WebSocket).",
                self.members as u64,
            ),
            ("chat_rooms", "gauge", "Chat rooms now.", self.rooms as u64),
            (
                "rss_kib",
                "gauge",
                "Resident memory of this process, KiB.",
                rss_kib(),
            ),
            (
                "pid",
                "gauge",
                "Process id of this server.",
                std::process::id() as u64,
            ),
            (
                "uptime_ms",
                "counter",
                "Milliseconds since this loop started.",
                self.uptime_ms,
            ),
        ]
    }
}

/// This process's resident memory in KiB (`VmRSS` of `/proc/self/status`;
/// 0 where there is no `/proc`).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

impl Site for SiteView<'_> {
    fn stats_json(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        for (i, (name, _, _, value)) in self.figures().iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(out, "{sep}\"{name}\":{value}");
        }
        out.extend_from_slice(b"}\n");
    }

    fn metrics_text(&self, out: &mut Vec<u8>) {
        for (name, kind, help, value) in self.figures() {
            let _ = write!(
                out,
                "# HELP reactor_{name} {help}\n# TYPE reactor_{name} {kind}\nreactor_{name} {value}\n"
            );
        }
    }
}

impl Reactor {
    /// All the HTTP work connection `key` can do now: stream its file,
    /// answer buffered requests, stream the file they may have started.
    pub(super) fn http_work(&mut self, key: usize) -> io::Result<()> {
        self.pump_file(key)?;
        self.http_process(key);
        self.pump_file(key)
    }

    /// Answers the requests buffered on connection `key`, in order, until
    /// the input holds only a partial request, a file body must go first,
    /// or this turn's share is used (then the ready list brings it back).
    pub(super) fn http_process(&mut self, key: usize) {
        self.refresh_date();
        for _ in 0..HTTP_ROUNDS {
            let Some(Slot::Conn(c)) = self.slab.get_mut(key) else {
                return;
            };
            if !c.is_serving() || c.extra.as_ref().is_some_and(|x| x.file.is_some()) {
                return;
            }
            let mut proto = proto_of(c);
            let Some(input) = c.input.as_mut().filter(|b| !b.is_empty()) else {
                self.moved = true;
                return;
            };
            let site = SiteView {
                stats: &self.stats,
                open: self.open,
                members: self.chat.members(),
                rooms: self.chat.rooms(),
                uptime_ms: self.clock.now(),
            };
            self.http_out.clear();
            // HTTPS responses carry HSTS: a fixed line after `Date`.
            let mut room = [0; FIXED_MAX];
            let hsts = c.transport.is_tls();
            let date = fixed_after_date(self.date.text(), hsts, &mut room);
            let p = proto.input(
                input.data(),
                &mut self.http_out,
                &self.http_cfg,
                date,
                &site,
            );
            input.consume(p.consumed);
            self.stats.http_requests += u64::from(p.responses);
            if !self.http_out.is_empty() {
                c.queue(&self.http_out, &mut self.pool);
            }
            self.pool.release_if_empty(&mut c.input);
            // Keep the boxed state only while it says something.
            if !proto.idle() || p.file.is_some() {
                let extra = c.extra.get_or_insert_with(|| Box::new(Extra::new(proto)));
                extra.proto = proto;
                extra.file = p.file;
            } else {
                c.extra = None;
            }
            // The header deadline: set when a head starts arriving (the
            // first bytes after an answered request, or after idleness),
            // never moved while it arrives, cleared once nothing is pending.
            if !head_arriving(c) {
                c.mark = 0;
            } else if c.mark == 0 || p.responses > 0 {
                c.mark = self.clock.at(self.limits.header_timeout);
            }
            if p.upgrade {
                return self.ws_open(key);
            }
            if p.verdict == Verdict::Close {
                self.begin_close(key);
                return;
            }
            if !p.again {
                self.moved = true;
                return;
            }
        }
        self.moved = true;
        self.defer(key);
    }

    /// Reads the connection's file body into its output while less than
    /// `FILE_WINDOW` is queued and the socket takes what is written.
    fn pump_file(&mut self, key: usize) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        // Nothing to stream (the common case): no more to look at.
        if !matches!(self.slab.get(key), Some(Slot::Conn(c)) if c.extra.as_ref().is_some_and(|x| x.file.is_some()))
        {
            return Ok(());
        }
        let mut sent = false;
        let mut budget = FILE_TURN_BUDGET;
        loop {
            let Some(Slot::Conn(c)) = self.slab.get_mut(key) else {
                return Ok(());
            };
            if budget == 0 {
                // Fairness: a reader with a huge window must not hold the
                // loop while others wait; the rest goes next turn.
                self.moved = true;
                self.defer(key);
                return Ok(());
            }
            if sent && c.extra.as_ref().is_none_or(|x| x.file.is_none()) {
                // The file is out: requests pipelined behind it may be
                // waiting in the input, and no event will announce them.
                self.moved = true;
                self.defer(key);
                return Ok(());
            }
            if matches!(c.phase, Phase::Closed | Phase::Lingering)
                || !c.writable
                || c.pending() >= FILE_WINDOW
            {
                if sent {
                    self.moved = true; // progress: a send timeout anew
                }
                return Ok(());
            }
            let Some(extra) = c.extra.as_mut() else {
                return Ok(());
            };
            let Some(body) = extra.file.as_mut() else {
                return Ok(());
            };
            let want = body.len.min(FILE_WINDOW as u64) as usize;
            let out = c.output.get_or_insert_with(|| self.pool.get());
            let n = out.fill_with(want, |room| body.file.read_at(room, body.offset))?;
            if n == 0 {
                // The file shrank under us: the promised length cannot be
                // kept, so the connection must end.
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while sent",
                ));
            }
            body.offset += n as u64;
            body.len -= n as u64;
            if body.len == 0 {
                extra.file = None;
                if extra.proto.idle() {
                    c.extra = None;
                }
            }
            let written = c.flush(&mut self.pool)?;
            self.stats.bytes_out += written as u64;
            budget = budget.saturating_sub(written.max(1));
            sent = true;
        }
    }

    /// Brings `date` up to this loop turn: the wall clock is read at most
    /// once per turn (the loop's cached clock says when a turn began), and
    /// formatted at most once per second.
    fn refresh_date(&mut self) {
        let turn = self.clock.now();
        if self.date_turn != turn {
            self.date_turn = turn;
            self.date.get(SystemTime::now());
        }
    }

    /// A canned `status` response, as bytes (for 408 and 503); `hsts` for
    /// an HTTPS connection.
    pub(super) fn http_canned(&mut self, status: u16, hsts: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        let mut room = [0; FIXED_MAX];
        self.refresh_date();
        let date = fixed_after_date(self.date.text(), hsts, &mut room);
        canned(status, date, &mut out);
        out
    }

    /// What an HTTP connection whose deadline passed gets: 408 if a request
    /// was on its way and nothing is being sent, silence otherwise.
    pub(super) fn http_timeout_reply(&mut self, key: usize) -> bool {
        let Some(Slot::Conn(c)) = self.slab.get(key) else {
            return false;
        };
        if !c.is_serving() || !head_arriving(c) || http_busy(c) {
            return false;
        }
        let hsts = c.transport.is_tls();
        let reply = self.http_canned(408, hsts);
        if let Some(Slot::Conn(c)) = self.slab.get_mut(key) {
            c.queue(&reply, &mut self.pool);
        }
        true
    }
}

/// After the client's FIN: `true` if buffered requests can still be
/// answered (the loop comes back for them), `false` when the connection
/// may close once its output is sent.
pub fn more_after_eof(c: &Conn, cfg: &HttpConfig) -> bool {
    let rest = c.input.as_ref().map_or(&[][..], |b| b.data());
    proto_of(c).at_eof(rest, cfg) == Verdict::Continue
}
