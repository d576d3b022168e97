//! The flags of `reactor bench`: one subcommand per workload, plus
//! `compare` and `merge`. Flags shared by every load workload live in
//! [`Common`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::units::{parse_duration, parse_size};

/// Drive a server with load and report throughput and latency honestly.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The workload (or `compare`, `merge`).
    #[command(subcommand)]
    pub command: BenchCommand,
}

/// The workloads, and `compare` and `merge`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// TCP echo: send messages, verify every byte that comes back.
    Echo(EchoArgs),
    /// HTTP/1.1 (GET, or any method, bodies, request lists; http:// or https://): keep-alive (or --close), pipelining; status and length checked.
    Http(HttpArgs),
    /// A fixed request and a fixed answer (redis PING, a line protocol): every answer byte checked.
    Tcp(TcpArgs),
    /// UDP echo at a fixed rate: loss, reordering and duplicates by sequence number.
    Udp(UdpArgs),
    /// Line chat: K members, S senders; fan-out latency, loss and order per receiver.
    Chat(ChatArgs),
    /// WebSocket chat (ws://host:port/ws): the chat workload with browser-like
    /// members; with --echo, messages to an echo endpoint (ws://host:port/ws/echo),
    /// every byte of every answer checked.
    Ws(WsArgs),
    /// Connections per second: connect, read the greeting until EOF, close.
    Connect(ConnectArgs),
    /// Hold N idle connections; with --pid, the server's memory per connection.
    Idle(IdleArgs),
    /// The game (reactor serve --game): N bot players over UDP (and/or
    /// WebSocket); tick jitter, snapshot sizes, bandwidth, input-to-snapshot
    /// latency and loss, with simulated loss (--loss).
    Game(GameArgs),
    /// Compare two --json results; exit code 1 on a regression.
    Compare(CompareArgs),
    /// Merge --json results of runs made at the same time (by several
    /// generators): throughputs summed, histograms merged.
    Merge(MergeArgs),
}

/// Flags every load workload shares.
#[derive(Clone, Debug, Args)]
pub struct Common {
    /// Connections (chat: members; udp: sockets; idle: connections to hold)
    #[arg(
        short = 'c',
        long = "connections",
        value_name = "N",
        default_value_t = 100
    )]
    pub conns: usize,
    /// Measured duration: 10s, 2m, or plain seconds
    #[arg(short = 'd', long, value_name = "DUR", default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Stop after COUNT requests instead of after a duration
    #[arg(short = 'n', long, value_name = "COUNT")]
    pub count: Option<u64>,
    /// Run this long first and discard what it measured
    #[arg(long, value_name = "DUR", default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Open loop: this many requests per second in total (default: closed loop)
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Open loop with Poisson (exponential) gaps instead of constant ones
    #[arg(long, requires = "rate")]
    pub poisson: bool,
    /// Event-loop threads, each driving its share of the connections
    #[arg(short = 't', long, value_name = "N", default_value_t = 1)]
    pub threads: usize,
    /// A request unanswered this long is a timeout error
    #[arg(long, value_name = "DUR", default_value = "2s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Bind connections to 127.0.0.1..127.0.0.N (past one address's ~28k ports)
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..))]
    pub source_ips: u8,
    /// Never sleep: poll with a zero timeout, so no wake-up delay of the
    /// generator's counts in latency (takes its whole core; the spin is
    /// not counted as busy in the verdict)
    #[arg(long)]
    pub busy_poll: bool,
    /// Sample this server process's CPU time and RSS from /proc during the
    /// run (repeatable: several processes, added up)
    #[arg(long, value_name = "PID")]
    pub pid: Vec<u32>,
    /// Write the full result as JSON (schema in docs/BENCH.md)
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw the latency spectrum and throughput over time as SVG
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Write each second's latency histogram to FILE, in HdrHistogram's
    /// interval log format (for HistogramLogProcessor and its plotters)
    #[arg(long, value_name = "FILE")]
    pub hdr_log: Option<PathBuf>,
    /// No live ticker (it is shown only when stderr is a terminal anyway)
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// TLS settings of the workloads that speak it.
#[derive(Clone, Debug, Default, Args)]
pub struct TlsOpts {
    /// TLS: trust the CA certificates in FILE (PEM) instead of the
    /// system's (/etc/ssl/certs/ca-certificates.crt)
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// TLS: accept any server certificate (the handshake's signatures are
    /// still checked)
    #[arg(short = 'k', long)]
    pub insecure: bool,
    /// TLS: no session resumption, a full handshake on every connection
    #[arg(long)]
    pub no_resume: bool,
}

/// `reactor bench echo`.
#[derive(Debug, Args)]
pub struct EchoArgs {
    /// Server, HOST:PORT (e.g. 127.0.0.1:8080, localhost:8080, [::1]:8080)
    pub addr: String,
    /// Speak TLS (SNI: HOST)
    #[arg(long)]
    pub tls: bool,
    /// TLS settings.
    #[command(flatten)]
    pub tls_opts: TlsOpts,
    /// Bytes per message
    #[arg(long, value_name = "BYTES", default_value = "64", value_parser = parse_size)]
    pub size: usize,
    /// Messages in flight per connection (pipelining)
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub depth: usize,
    /// Shared flags.
    #[command(flatten)]
    pub common: Common,
}

/// `reactor bench tcp`.
#[derive(Debug, Args)]
pub struct TcpArgs {
    /// Server, HOST:PORT (e.g. 127.0.0.1:6379)
    pub addr: String,
    /// Speak TLS (SNI: HOST)
    #[arg(long)]
    pub tls: bool,
    /// TLS settings.
    #[command(flatten)]
    pub tls_opts: TlsOpts,
    /// The request's bytes, with escapes \r \n \t \0 \\ \xNN (e.g. 'PING\r\n')
    #[arg(long, value_name = "BYTES", value_parser = parse_escaped)]
    pub send: Bytes,
    /// The answer every request must get, same escapes (e.g. '+PONG\r\n')
    #[arg(long, value_name = "BYTES", value_parser = parse_escaped)]
    pub expect: Bytes,
    /// Requests in flight per connection (pipelining)
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub depth: usize,
    /// Shared flags.
    #[command(flatten)]
    pub common: Common,
}

/// Bytes given on the command line (a newtype: clap would take a
/// `Vec<u8>` for many values).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

/// Decodes `\r \n \t \0 \\ \xNN` in `s`; anything else after a backslash,
/// or an empty result, is an error.
pub fn parse_escaped(s: &str) -> Result<Bytes, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut it = s.bytes();
    while let Some(b) = it.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let e = it.next().ok_or("a lone \\ at the end")?;
        out.push(match e {
            b'r' => b'\r',
            b'n' => b'\n',
            b't' => b'\t',
            b'0' => 0,
            b'\\' => b'\\',
            b'x' => {
                let hex = [it.next().unwrap_or(0), it.next().unwrap_or(0)];
                std::str::from_utf8(&hex)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or("\\x takes two hex digits")?
            }
            other => return Err(format!("unknown escape \\{}", other as char)),
        });
    }
    if out.is_empty() {
        return Err("no bytes".into());
    }
    Ok(Bytes(out))
}

/// `reactor bench http`.
#[derive(Debug, Args)]
pub struct HttpArgs {
    /// http://HOST[:PORT]/PATH or https://... (HOST a name, resolved once,
    /// or an IP address)
    pub url: String,
    /// The request method
    #[arg(short = 'm', long, value_name = "METHOD", default_value = "GET", value_parser = parse_method)]
    pub method: String,
    /// The request body (sent with Content-Length)
    #[arg(long, value_name = "STRING", conflicts_with = "body_file")]
    pub body: Option<String>,
    /// The request body, read from FILE once (and never copied per request)
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,
    /// Requests from FILE, one a line, taken in turn: METHOD PATH
    /// [NAME:VALUE ...] [@BODY_FILE] (see docs/BENCH.md); replaces the
    /// URL's path, -m and the body flags
    #[arg(long, value_name = "FILE", conflicts_with_all = ["body", "body_file", "method"])]
    pub requests: Option<PathBuf>,
    /// Only these statuses count as success (repeatable, or CODE,CODE);
    /// default: any 2xx or 3xx
    #[arg(long, value_name = "CODE", value_delimiter = ',', value_parser = clap::value_parser!(u16).range(100..600))]
    pub expect_status: Vec<u16>,
    /// One request per connection (Connection: close); latency includes the connect
    #[arg(long)]
    pub close: bool,
    /// Requests in flight per connection (HTTP/1.1 pipelining)
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub depth: usize,
    /// Add a request header, e.g. -H 'User-Agent: x' (repeatable; the
    /// request is otherwise the smallest HTTP/1.1 allows: the request
    /// line, Host, and Content-Length for a body or a POST, PUT or PATCH)
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    pub headers: Vec<String>,
    /// TLS settings (https://).
    #[command(flatten)]
    pub tls_opts: TlsOpts,
    /// Shared flags.
    #[command(flatten)]
    pub common: Common,
}

/// A request method: a token (RFC 9110), e.g. GET, POST, HEAD.
pub fn parse_method(s: &str) -> Result<String, String> {
    if s.is_empty() || !s.chars().all(is_tchar) {
        return Err(format!("'{s}': not a method"));
    }
    Ok(s.to_string())
}

/// A token character (RFC 9110 5.6.2).
pub fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// A `-H` header: `Name: value`, the name a token (RFC 9110), no CR or
/// LF anywhere (they would let one flag smuggle a second request).
pub fn parse_header(s: &str) -> Result<String, String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("'{s}': a header is NAME: VALUE"))?;
    if name.is_empty() || !name.chars().all(is_tchar) {
        return Err(format!("'{name}': not a header name"));
    }
    if value.contains(['\r', '\n']) {
        return Err("a header value cannot hold CR or LF".into());
    }
    Ok(format!("{name}: {}", value.trim()))
}

/// `reactor bench udp`.
#[derive(Debug, Args)]
pub struct UdpArgs {
    /// Server, HOST:PORT (e.g. 127.0.0.1:8000)
    pub addr: String,
    /// Bytes per datagram (at least 24: sequence number and two timestamps)
    #[arg(long, value_name = "BYTES", default_value = "64", value_parser = parse_size)]
    pub size: usize,
    /// Shared flags (--rate defaults to 10000 datagrams/s; -c is the socket count).
    #[command(flatten)]
    pub common: Common,
}

/// `reactor bench chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Server, HOST:PORT (e.g. 127.0.0.1:9000); optional with --server
    #[arg(required_unless_present = "servers")]
    pub addr: Option<String>,
    /// One more server, HOST:PORT (repeatable): the members are spread
    /// over ADDR and these in turn (member i on server i mod N), and
    /// deliveries from a sender on another server are reported apart
    #[arg(long = "server", value_name = "ADDR")]
    pub servers: Vec<String>,
    /// Members that send (the first S of the -c members); all receive
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub senders: usize,
    /// Rooms, load processes, setup pace.
    #[command(flatten)]
    pub room: RoomOpts,
    /// Shared flags (--rate is lines/s in total, default 1000).
    #[command(flatten)]
    pub common: Common,
}

/// How chat and ws members are laid out over rooms, servers and load
/// processes (several `reactor bench` processes driving one run).
#[derive(Clone, Debug, Default, Args)]
pub struct RoomOpts {
    /// Rooms of N members instead of the lobby: member g (counted from
    /// --first-member) sends `/join bR`, R = g / N, once welcomed; the
    /// first --senders of each room send into it
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(2..))]
    pub room_size: Option<u64>,
    /// With --room-size: each room's members on K of the servers (room R
    /// on servers R*K .. R*K+K-1, mod the servers; default: all)
    #[arg(long, value_name = "K", requires = "room_size", value_parser = clap::value_parser!(u64).range(1..))]
    pub room_spread: Option<u64>,
    /// The global index of this process's first member, when several load
    /// processes share the rooms (each gives its own range): it decides
    /// each member's room, server, source address and sender number
    #[arg(long, value_name = "G", default_value_t = 0)]
    pub first_member: u64,
    /// Lines each member here is owed by senders in other load processes
    /// (one room over several processes); the run ends once all came, or
    /// --timeout after -d
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub expect_lines: u64,
    /// Pace connection setup: at most R new members per second (default:
    /// as fast as connects complete)
    #[arg(long, value_name = "R")]
    pub connect_rate: Option<f64>,
    /// Write FILE (the members ready) once every member is welcomed (and
    /// in its room), for a script that starts its load processes together
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
    /// Once ready, wait for FILE to exist before time zero (at most 10
    /// minutes), so the load processes of one run start together
    #[arg(long, value_name = "FILE")]
    pub go_file: Option<PathBuf>,
}

/// `reactor bench ws`.
#[derive(Debug, Args)]
pub struct WsArgs {
    /// WebSocket URL, e.g. ws://127.0.0.1:8000/ws or wss://localhost:8443/ws;
    /// optional with --server
    #[arg(required_unless_present = "servers")]
    pub url: Option<String>,
    /// One more server's WebSocket URL (repeatable): the members are
    /// spread over URL and these in turn (member i on server i mod N), and
    /// deliveries from a sender on another server are reported apart
    #[arg(long = "server", value_name = "URL", conflicts_with = "echo")]
    pub servers: Vec<String>,
    /// Members that send (the first S of the -c members); all receive
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub senders: usize,
    /// Echo instead of chat: each connection sends messages of --size bytes
    /// (--depth in flight) and checks that each comes back unchanged
    #[arg(long, conflicts_with = "senders")]
    pub echo: bool,
    /// --echo: bytes per message
    #[arg(long, value_name = "BYTES", default_value = "64", value_parser = parse_size, requires = "echo")]
    pub size: usize,
    /// --echo: messages in flight per connection (pipelining)
    #[arg(long, value_name = "N", default_value_t = 1, requires = "echo")]
    pub depth: usize,
    /// --echo: binary messages (default: text)
    #[arg(long, requires = "echo")]
    pub binary: bool,
    /// TLS settings (wss://).
    #[command(flatten)]
    pub tls_opts: TlsOpts,
    /// Rooms, load processes, setup pace (chat only, not --echo).
    #[command(flatten)]
    pub room: RoomOpts,
    /// Shared flags (--rate is lines/s in total, default 1000).
    #[command(flatten)]
    pub common: Common,
}

/// `reactor bench connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Server, HOST:PORT (e.g. 127.0.0.1:12345, greet)
    pub addr: String,
    /// TLS handshakes: connect, handshake, close_notify, wait for the
    /// server to close (no greeting needed); resumed unless --no-resume
    #[arg(long)]
    pub tls: bool,
    /// TLS settings.
    #[command(flatten)]
    pub tls_opts: TlsOpts,
    /// Shared flags (-c is the number of connection cycles running at once).
    #[command(flatten)]
    pub common: Common,
}

/// `reactor bench idle`.
#[derive(Debug, Args)]
pub struct IdleArgs {
    /// Server, HOST:PORT
    pub addr: String,
    /// Send this once on each connection first (e.g. 'hi\n'; \r and \n are unescaped)
    #[arg(long, value_name = "TEXT")]
    pub hello: Option<String>,
    /// Shared flags (-d is how long to hold the connections).
    #[command(flatten)]
    pub common: Common,
}

/// `reactor bench game`.
#[derive(Debug, Args)]
pub struct GameArgs {
    /// The game's UDP address, HOST:PORT (`reactor serve --game ADDR`);
    /// optional with --ws
    #[arg(required_unless_present = "ws")]
    pub addr: Option<String>,
    /// Bot players, each with a socket of its own (the server takes at
    /// most its --game-max-players, 128 at most: the rest are refused and
    /// counted)
    #[arg(short = 'p', long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub players: u32,
    /// WebSocket players too, at ws://HOST:PORT/game/ws (the HTTP port)
    #[arg(long, value_name = "URL")]
    pub ws: Option<String>,
    /// With ADDR and --ws: this many of the players over WebSocket, the
    /// rest over UDP [default: half]; without ADDR all are
    #[arg(long, value_name = "N", requires = "ws")]
    pub ws_players: Option<u32>,
    /// Simulated loss: each UDP bot drops this fraction (0 to 1) of the
    /// datagrams it receives and of those it sends, on purpose, by a
    /// seeded RNG (WebSocket players lose nothing: TCP)
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = parse_fraction)]
    pub loss: f64,
    /// Seed of the bots' moves and of the simulated loss
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,
    /// Never acknowledge a snapshot (every INPUT says ack 0): the server
    /// then sends every snapshot in full, so a run with it and one without
    /// compare full snapshots with deltas
    #[arg(long)]
    pub no_ack: bool,
    /// The server's /stats (http://HOST:PORT/stats, or HOST:PORT of its
    /// HTTP port), read at the window's start and end: its own tick jitter,
    /// overruns, skipped ticks and snapshots over the window
    #[arg(long, value_name = "URL")]
    pub stats: Option<String>,
    /// Measured duration: 10s, 2m, or plain seconds
    #[arg(short = 'd', long, value_name = "DUR", default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Play this long first and discard what it measured
    #[arg(long, value_name = "DUR", default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// The handshakes (and WebSocket connects) must be done within this
    #[arg(long, value_name = "DUR", default_value = "2s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Never sleep: poll with a zero timeout (takes the whole core)
    #[arg(long)]
    pub busy_poll: bool,
    /// Sample this server process's CPU time and RSS from /proc during the
    /// run: its CPU per tick and per player (repeatable: added up)
    #[arg(long, value_name = "PID")]
    pub pid: Vec<u32>,
    /// Write the full result as JSON (schema in docs/BENCH.md)
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// No live ticker
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

impl GameArgs {
    /// The shared flags of the harness these amount to (one thread, one
    /// "connection" per player, no request schedule of its own).
    pub fn common(&self) -> Common {
        Common {
            conns: self.players as usize,
            duration: self.duration,
            count: None,
            warmup: self.warmup,
            rate: None,
            poisson: false,
            threads: 1,
            timeout: self.timeout,
            source_ips: 1,
            busy_poll: self.busy_poll,
            pid: self.pid.clone(),
            json: self.json.clone(),
            plot: None,
            hdr_log: None,
            quiet: self.quiet,
        }
    }
}

/// Parses a fraction from 0 to 1 (`0.1`, or `10%`).
pub fn parse_fraction(s: &str) -> Result<f64, String> {
    let v = match s.trim().strip_suffix('%') {
        Some(p) => parse_percent(p)?,
        None => s
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("'{s}' is not a fraction (try 0.1 or 10%)"))?,
    };
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("'{s}': must be from 0 to 1"));
    }
    Ok(v)
}

/// `reactor bench compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The baseline result (--json of an earlier run)
    pub a: PathBuf,
    /// The candidate result
    pub b: PathBuf,
    /// Largest allowed drop in requests/s (and rise in p99), e.g. 5%
    #[arg(long, value_name = "PCT", default_value = "5%", value_parser = parse_percent)]
    pub max_regression: f64,
}

/// `reactor bench merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The results (--json of each generator's run)
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Write the merged result as JSON (the schema of one run, plus
    /// merged_from)
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw the merged spectrum and throughput over time as SVG
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
}

/// Parses `5%`, `5` or `0.5%` into a fraction (0.05).
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let v: f64 = t
        .strip_suffix('%')
        .unwrap_or(t)
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a percentage (try 5%)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("'{s}': must be >= 0"));
    }
    Ok(v / 100.0)
}

#[cfg(test)]
mod tests {
    use super::parse_header;

    #[test]
    fn escapes() {
        use super::{Bytes, parse_escaped};
        assert_eq!(parse_escaped("PING\\r\\n"), Ok(Bytes(b"PING\r\n".to_vec())));
        assert_eq!(
            parse_escaped("a\\x00\\xfF\\\\\\t"),
            Ok(Bytes(b"a\0\xff\\\t".to_vec()))
        );
        for bad in ["", "x\\", "\\q", "\\x4", "\\xzz"] {
            assert!(parse_escaped(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fractions() {
        use super::parse_fraction;
        assert_eq!(parse_fraction("0.1"), Ok(0.1));
        assert_eq!(parse_fraction("10%"), Ok(0.1));
        assert_eq!(parse_fraction("1"), Ok(1.0));
        for bad in ["-0.1", "1.5", "150%", "x", ""] {
            assert!(parse_fraction(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn headers_are_checked() {
        assert_eq!(
            parse_header("User-Agent:  x/1 ").unwrap(),
            "User-Agent: x/1"
        );
        assert_eq!(parse_header("X-Empty:").unwrap(), "X-Empty: ");
        for bad in [
            "no colon",
            ": v",
            "Bad Name: v",
            "X: a\r\nGET / HTTP/1.1",
            "X: a\nb",
        ] {
            assert!(parse_header(bad).is_err(), "{bad:?}");
        }
    }
}
