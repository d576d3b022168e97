//! What to serve and the limits to serve it under.
//!
//! The limits a user tunes have a command-line flag (see `src/cli.rs`);
//! the fairness knobs (`accepts_per_tick`, `read_budget`) and `udp_queue`
//! are set in code. Defaults follow what Redis, nginx and memcached do,
//! scaled to this project.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::core::CoreLimits;
use crate::service::Service;
use crate::service::http::HttpConfig;

/// Default greet address: seed 000's port.
pub const DEFAULT_GREET: &str = "127.0.0.1:12345";
/// Default TCP echo address.
pub const DEFAULT_ECHO: &str = "127.0.0.1:8080";
/// Default UDP echo address (UDP, so it can share 8000 with HTTP over TCP).
pub const DEFAULT_UDP: &str = "127.0.0.1:8000";
/// Default chat address.
pub const DEFAULT_CHAT: &str = "127.0.0.1:9000";
/// Default HTTP address: seed 001's `http.server` port.
pub const DEFAULT_HTTP: &str = "127.0.0.1:8000";

/// The services one reactor runs and the limits it enforces.
#[derive(Clone, Debug)]
pub struct Config {
    /// Greet (seed 000): one line, then close.
    pub greet: Option<SocketAddr>,
    /// TCP echo.
    pub echo: Option<SocketAddr>,
    /// UDP echo.
    pub udp: Option<SocketAddr>,
    /// Line chat with rooms.
    pub chat: Option<SocketAddr>,
    /// Echo on a Unix stream socket at this path.
    pub unix: Option<PathBuf>,
    /// The game over UDP (its WebSocket players come by `/game/ws`).
    pub game: Option<SocketAddr>,
    /// The game's tick rate, player cap and UDP timeout.
    pub game_config: crate::service::game::GameConfig,
    /// HTTP/1.1 (hello, `/stats`, `/metrics`, static files).
    pub http: Option<SocketAddr>,
    /// HTTP/1.1 over TLS (HSTS, ALPN `http/1.1`); needs `tls_cert` and
    /// `tls_key`. Not in the defaults.
    pub https: Option<SocketAddr>,
    /// Echo over TLS; needs `tls_cert` and `tls_key`. Not in the defaults.
    pub tls_echo: Option<SocketAddr>,
    /// PEM certificate chain for the TLS services.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (RSA, ECDSA or Ed25519) for the TLS services.
    pub tls_key: Option<PathBuf>,
    /// What HTTP serves (`root`) and its request limits.
    pub http_config: HttpConfig,
    /// Set `SO_REUSEPORT` on listening sockets so several processes (or
    /// reactors) can share a port.
    pub reuse_port: bool,
    /// Event loops (threads) to run, each with its own `Poll` and slab;
    /// more than one implies `reuse_port`.
    pub threads: usize,
    /// Install SIGINT/SIGTERM handling (the binary does; in-process tests
    /// stop the server through a `Handle` instead).
    pub handle_signals: bool,
    /// The Redis bus chat rooms are shared over with other servers.
    pub bus: Option<BusSettings>,
    /// Where HTTP's access log goes (`-`: standard output); none: off.
    pub access_log: Option<PathBuf>,
    /// The config file and command line to read again on SIGHUP.
    pub reload: Option<std::sync::Arc<dyn Reload>>,
    /// The limits.
    pub limits: Limits,
}

/// Reads the configuration again, for `SIGHUP`: the config file, with the
/// command line on top (`conffile::Reloader`).
pub trait Reload: Send + Sync + std::fmt::Debug {
    /// The configuration as it reads now, and the log level.
    fn reload(&self) -> Result<(Config, log::LevelFilter), String>;
}

/// Chat rooms shared with every server on the same Redis and prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusSettings {
    /// Where Redis is.
    pub url: BusUrl,
    /// Prefix of every key and channel (`--bus-prefix`).
    pub prefix: String,
    /// Bytes of lines waiting for Redis, past which lines are dropped
    /// (`--bus-queue`).
    pub queue_cap: usize,
    /// How long a server's lease lasts (`--bus-lease`).
    pub lease: Duration,
}

/// `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusUrl {
    /// A name or an address (IPv6 in brackets).
    pub host: String,
    /// 6379 unless given.
    pub port: u16,
    /// 0 unless given.
    pub db: u32,
    /// The ACL user, if given.
    pub user: Option<String>,
    /// The password, if given.
    pub password: Option<String>,
}

impl std::str::FromStr for BusUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<BusUrl, String> {
        let bad = |why: &str| {
            format!("'{s}': {why} (expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB])")
        };
        let rest = s
            .strip_prefix("redis://")
            .ok_or_else(|| bad("not a redis:// URL"))?;
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((auth, rest)) => (Some(auth), rest),
            None => (None, rest),
        };
        let (hostport, db) = match rest.split_once('/') {
            Some((hp, "")) => (hp, 0),
            Some((hp, db)) => (
                hp,
                db.parse()
                    .map_err(|_| bad("the database is not a number"))?,
            ),
            None => (rest, 0),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') && (!h.starts_with('[') || h.ends_with(']')) => {
                (h, p.parse().map_err(|_| bad("the port is not a number"))?)
            }
            _ => (hostport, 6379),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let (user, password) = match auth.map(|a| a.split_once(':')) {
            None => (None, None),
            Some(None) => return Err(bad("a user with no password")),
            Some(Some((u, p))) => ((!u.is_empty()).then(|| u.to_string()), Some(p.to_string())),
        };
        Ok(BusUrl {
            host: host.to_string(),
            port,
            db,
            user,
            password,
        })
    }
}

impl std::fmt::Display for BusUrl {
    /// `HOST:PORT[/DB]`, without the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.host.contains(':') {
            true => write!(f, "[{}]:{}", self.host, self.port)?,
            false => write!(f, "{}:{}", self.host, self.port)?,
        }
        if self.db != 0 {
            write!(f, "/{}", self.db)?;
        }
        Ok(())
    }
}

/// Checks a `--bus-prefix`: 1 to 64 of `[A-Za-z0-9_.-]`.
pub fn parse_bus_prefix(s: &str) -> Result<String, String> {
    let ok = (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!("'{s}': a prefix is 1 to 64 of A-Z a-z 0-9 _ . -"))
    }
}

/// Every limit the reactor enforces. See `docs/LIMITS.md`.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Open connections across all services; past it a new client gets one
    /// error line and is closed. Clamped below the fd limit at start.
    pub max_conns: usize,
    /// Close a connection that has moved no bytes for this long (zero: never).
    pub idle_timeout: Duration,
    /// HTTP: a request head must arrive whole within this long of its first
    /// byte (of accept, for the first request); trickling bytes do not
    /// extend it. Past it: 408 and close.
    pub header_timeout: Duration,
    /// HTTP: an idle keep-alive connection is closed (silently) after this.
    pub keepalive_timeout: Duration,
    /// Longest chat line in bytes, without its line ending; also the
    /// largest WebSocket message (more: close 1009).
    pub max_line: usize,
    /// WebSocket: a member silent this long is pinged; silent as long
    /// again after the ping, it is closed (zero: never).
    pub ws_ping: Duration,
    /// WebSocket echo (`/ws/echo`): the largest message, its fragments
    /// counted together (more: close 1009). It is reassembled in the
    /// connection's input buffer, and so counts against the memory caps.
    pub ws_max_message: usize,
    /// Output a connection may have unsent before the server stops using
    /// (and then reading) its input, whatever its protocol: a peer that
    /// sends without reading makes the server hold at most this plus one
    /// answer (one read for echo, one response for HTTP).
    pub output_cap: usize,
    /// Buffer memory all connections together may hold; past it the ones
    /// holding the most are evicted (0: no cap). Default: a quarter of
    /// the memory this process may use.
    pub max_client_memory: usize,
    /// A chat member with more than this pending is disconnected at once.
    pub chat_output_hard: usize,
    /// A chat member above this for `chat_soft_seconds` is disconnected.
    pub chat_output_soft: usize,
    /// How long a chat member may stay above the soft limit.
    pub chat_soft_time: Duration,
    /// Fan-out output (a chat line to each member) is written at most once
    /// per this long, so lines that arrive meanwhile leave in one `write`
    /// per member; it delays a line by at most this (zero: every turn).
    /// Zero here, as before it existed; `reactor serve` defaults to 20 ms
    /// (`--chat-flush-delay`, chosen in `docs/PERFORMANCE.md`).
    pub chat_flush_delay: Duration,
    /// On SIGINT/SIGTERM, how long to flush pending output before closing.
    pub shutdown_grace: Duration,
    /// After our last byte of a closing connection, how long to wait for the
    /// client's FIN before closing the socket anyway (lingering close).
    pub linger: Duration,
    /// Datagrams kept for a UDP send that would block; the rest are dropped.
    pub udp_queue: usize,
    /// Connections accepted per listener per loop iteration (fairness).
    pub accepts_per_tick: usize,
    /// Bytes read from one connection per loop iteration (fairness).
    pub read_budget: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_conns: 10_000,
            idle_timeout: Duration::from_secs(300),
            header_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(60),
            max_line: 4096,
            ws_ping: Duration::from_secs(30),
            ws_max_message: 1 << 20,
            output_cap: 64 * 1024,
            max_client_memory: crate::core::bound_default(),
            chat_output_hard: 1024 * 1024,
            chat_output_soft: 256 * 1024,
            chat_soft_time: Duration::from_secs(10),
            chat_flush_delay: Duration::ZERO,
            shutdown_grace: Duration::from_secs(5),
            linger: Duration::from_secs(2),
            udp_queue: 1024,
            accepts_per_tick: 64,
            read_budget: 64 * 1024,
        }
    }
}

impl Limits {
    /// The limits the loop itself enforces.
    pub fn core(&self) -> CoreLimits {
        CoreLimits {
            max_conns: self.max_conns,
            output_cap: self.output_cap,
            read_budget: self.read_budget,
            accepts_per_tick: self.accepts_per_tick,
            linger: self.linger,
            grace: self.shutdown_grace,
            handshake_timeout: self.header_timeout,
            max_client_memory: self.max_client_memory,
            flush_delay: self.chat_flush_delay,
        }
    }
}

/// Where a listener is bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bind {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A UDP address.
    Udp(SocketAddr),
    /// A Unix stream socket file.
    Unix(PathBuf),
}

impl Config {
    /// Every listener this configuration asks for, in one list: the one
    /// place the service fields become sockets (binding, and the other
    /// loops' rebinding of the same ports, go through it).
    pub fn listeners(&self) -> Vec<(Service, Bind)> {
        let tcp = |s: Service, a: Option<SocketAddr>| a.map(|a| (s, Bind::Tcp(a)));
        [
            tcp(Service::Greet, self.greet),
            tcp(Service::Echo, self.echo),
            self.udp.map(|a| (Service::Udp, Bind::Udp(a))),
            tcp(Service::Chat, self.chat),
            self.unix.clone().map(|p| (Service::Unix, Bind::Unix(p))),
            self.game.map(|a| (Service::Game, Bind::Udp(a))),
            tcp(Service::Http, self.http),
            tcp(Service::Https, self.https),
            tcp(Service::TlsEcho, self.tls_echo),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// No services at all: set the ones wanted. Tests start from here.
    pub fn empty() -> Config {
        Config {
            greet: None,
            echo: None,
            udp: None,
            chat: None,
            unix: None,
            game: None,
            game_config: Default::default(),
            http: None,
            https: None,
            tls_echo: None,
            tls_cert: None,
            tls_key: None,
            http_config: HttpConfig::default(),
            reuse_port: false,
            threads: 1,
            handle_signals: false,
            bus: None,
            access_log: None,
            reload: None,
            limits: Limits::default(),
        }
    }

    /// Every service on its loopback default, as `reactor serve` with no
    /// service flags.
    pub fn defaults() -> Config {
        let parse = |s: &str| s.parse().ok();
        Config {
            greet: parse(DEFAULT_GREET),
            echo: parse(DEFAULT_ECHO),
            udp: parse(DEFAULT_UDP),
            chat: parse(DEFAULT_CHAT),
            http: parse(DEFAULT_HTTP),
            ..Config::empty()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_urls() {
        let u: BusUrl = "redis://127.0.0.1:6380/2".parse().unwrap();
        assert_eq!((u.host.as_str(), u.port, u.db), ("127.0.0.1", 6380, 2));
        assert_eq!(u.to_string(), "127.0.0.1:6380/2");
        let u: BusUrl = "redis://redis".parse().unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.db, u.password),
            ("redis", 6379, 0, None)
        );
        let u: BusUrl = "redis://:s3cret@h:1/".parse().unwrap();
        assert_eq!((u.user, u.password.as_deref()), (None, Some("s3cret")));
        let u: BusUrl = "redis://ann:p@ss@h".parse().unwrap();
        assert_eq!(
            (u.user.as_deref(), u.password.as_deref()),
            (Some("ann"), Some("p@ss"))
        );
        let u: BusUrl = "redis://[::1]:7000".parse().unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 7000));
        assert_eq!(u.to_string(), "[::1]:7000");
        for bad in [
            "http://h",
            "redis://",
            "redis://h:x",
            "redis://h/x",
            "redis://ann@h",
        ] {
            assert!(bad.parse::<BusUrl>().is_err(), "{bad}");
        }
        assert!(parse_bus_prefix("reactor-prod.1").is_ok());
        assert!(parse_bus_prefix("a b").is_err() && parse_bus_prefix("").is_err());
    }
}
