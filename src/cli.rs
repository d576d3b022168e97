//! The command line: `reactor serve ...` (and, later, `reactor bench`).
//! Parsed with clap; every flag maps onto a field of `Config`/`Limits`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{BusSettings, Config, Limits};
use crate::service::http::HttpConfig;
use crate::units::{parse_duration, parse_size};

/// A single-threaded event-loop server on mio, and the tools around it.
#[derive(Debug, Parser)]
#[command(name = "reactor", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve greet, echo, UDP echo, chat and HTTP from one event loop.
    ///
    /// With no service flags, every service runs on its loopback default:
    /// greet 127.0.0.1:12345, echo 127.0.0.1:8080, UDP echo 127.0.0.1:8000,
    /// chat 127.0.0.1:9000, HTTP 127.0.0.1:8000 (TCP). With any service
    /// flag, only the named services run.
    Serve(Box<ServeArgs>),
    /// Drive a server with load and report throughput and latency honestly.
    Bench(Box<crate::bench::cli::BenchArgs>),
    /// Write a self-signed certificate and key for localhost and 127.0.0.1
    /// (DIR/cert.pem, DIR/key.pem), for trying --https and --tls-echo.
    Cert(CertArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(CompletionsArgs),
    /// Print the manual page (roff), made from these flags: `reactor man | man -l -`
    Man,
}

/// Flags of `reactor completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// Flags of `reactor cert`.
#[derive(Debug, Args)]
pub struct CertArgs {
    /// Directory to write cert.pem and key.pem into (created if missing)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Flags of `reactor serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Read settings from this TOML file (keys: these flags' names; services as tables, [http] addr = ...); flags given here win. Reread on SIGHUP
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// HTTP: log each request in the Combined Log Format to FILE (- for standard output); reopened on SIGUSR1 [default: off]
    #[arg(long, value_name = "FILE")]
    pub access_log: Option<PathBuf>,
    /// Greet (seed 000): send "Thank you for connecting", then close [default: 127.0.0.1:12345]
    #[arg(long, value_name = "ADDR")]
    pub greet: Option<SocketAddr>,
    /// TCP echo: every byte back, in order [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    pub echo: Option<SocketAddr>,
    /// UDP echo: each datagram back to its sender [default: 127.0.0.1:8000]
    #[arg(long, value_name = "ADDR")]
    pub udp: Option<SocketAddr>,
    /// Line chat with rooms (/nick, /join, /who, /rooms, /quit, /help) [default: 127.0.0.1:9000]
    #[arg(long, value_name = "ADDR")]
    pub chat: Option<SocketAddr>,
    /// Echo on a Unix stream socket at PATH (a stale socket file is replaced)
    #[arg(long, value_name = "PATH")]
    pub unix: Option<PathBuf>,
    /// The game over UDP (tag in a shared arena; its page is /game on HTTP, WebSocket /game/ws) [off by default]
    #[arg(long, value_name = "ADDR")]
    pub game: Option<SocketAddr>,
    /// Game: ticks (simulation steps and snapshots) per second
    #[arg(long, value_name = "HZ", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub game_tick: u32,
    /// Game: most players in the arena (at most 128, so a full snapshot fits one datagram)
    #[arg(long, value_name = "N", default_value_t = 128, value_parser = clap::value_parser!(u16).range(1..=128))]
    pub game_max_players: u16,
    /// Game: drop a UDP player silent this long
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = parse_duration)]
    pub game_timeout: Duration,
    /// HTTP/1.1: "Hello, client!" at /, counters at /stats and /metrics, the browser chat at /chat (WebSocket /ws), a WebSocket echo at /ws/echo, a live /dashboard [default: 127.0.0.1:8000]
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// HTTP over TLS (HSTS, ALPN http/1.1); needs --tls-cert and --tls-key [not in the defaults]
    #[arg(long, value_name = "ADDR")]
    pub https: Option<SocketAddr>,
    /// Echo over TLS; needs --tls-cert and --tls-key [not in the defaults]
    #[arg(long, value_name = "ADDR")]
    pub tls_echo: Option<SocketAddr>,
    /// TLS: certificate chain, PEM (see `reactor cert`)
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// TLS: private key, PEM (RSA, ECDSA or Ed25519)
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// HTTP: serve the files under DIR (like python -m http.server)
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// HTTP: a request head must arrive within this long (408 and close)
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// HTTP: close an idle keep-alive connection after this long
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = parse_duration)]
    pub keepalive_timeout: Duration,
    /// HTTP: largest request body read (and discarded); more gets 413
    #[arg(long, value_name = "BYTES", default_value = "1m", value_parser = parse_size)]
    pub max_body: usize,
    /// WebSocket (/ws and /ws/echo): let browsers in only from this Origin
    /// (repeat for more), e.g. https://chat.example.org [default: any]
    #[arg(long, value_name = "ORIGIN")]
    pub ws_origin: Vec<String>,
    /// WebSocket: ping a member silent this long; close it if silent as long again (0: never)
    #[arg(long, value_name = "DUR", default_value = "30s", value_parser = parse_duration)]
    pub ws_ping: Duration,
    /// WebSocket echo (/ws/echo): the largest message, fragments counted together (more: close 1009)
    #[arg(long, value_name = "BYTES", default_value = "1m", value_parser = parse_size)]
    pub ws_max_message: usize,
    /// Most open connections; past it a client gets one error line and is closed
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_conns: usize,
    /// Close a connection idle this long (0: never), e.g. 300, 300s, 5m, 500ms
    #[arg(long, value_name = "DUR", default_value = "300s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Longest chat line in bytes, also a /ws message's; a longer line gets an error line and a close (a /ws message: close 1009)
    #[arg(long, value_name = "BYTES", default_value = "4096", value_parser = parse_size)]
    pub max_line: usize,
    /// Any connection: with this much output unsent, the server stops using and reading its input until it drains
    #[arg(long, visible_alias = "echo-output-cap", value_name = "BYTES", default_value = "64k", value_parser = parse_size)]
    pub output_cap: usize,
    /// All connections together: past this much buffer memory, those holding the most are evicted (0: no cap) [default: a quarter of memory]
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub max_client_memory: Option<usize>,
    /// A chat member with more than this unsent is dropped at once
    #[arg(long, value_name = "BYTES", default_value = "1m", value_parser = parse_size)]
    pub chat_output_hard: usize,
    /// A chat member above this for --chat-soft-time is dropped
    #[arg(long, value_name = "BYTES", default_value = "256k", value_parser = parse_size)]
    pub chat_output_soft: usize,
    /// How long a chat member may stay above --chat-output-soft
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_duration)]
    pub chat_soft_time: Duration,
    /// Write chat fan-out at most once per this long, several lines to a member in one write (0: every loop turn)
    #[arg(long, value_name = "DUR", default_value = "20ms", value_parser = parse_duration)]
    pub chat_flush_delay: Duration,
    /// On SIGINT/SIGTERM, time allowed to flush before closing everything
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = parse_duration)]
    pub grace: Duration,
    /// After our last byte, how long to wait for the client to close
    #[arg(long, value_name = "DUR", default_value = "2s", value_parser = parse_duration)]
    pub linger: Duration,
    /// Set SO_REUSEPORT so several servers can share the ports
    #[arg(long)]
    pub reuse_port: bool,
    /// Event loops, one per thread, sharing the ports through SO_REUSEPORT
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
    /// Share chat rooms with every server on this Redis (and prefix): redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]
    #[arg(long, value_name = "URL")]
    pub bus: Option<crate::config::BusUrl>,
    /// Prefix of the bus's keys and channels, so deployments can share one Redis
    #[arg(long, value_name = "NAME", default_value = "reactor", value_parser = crate::config::parse_bus_prefix)]
    pub bus_prefix: String,
    /// Chat lines waiting for Redis (while it is slow or down) past which lines are dropped, counted
    #[arg(long, value_name = "BYTES", default_value = "4m", value_parser = parse_size)]
    pub bus_queue: usize,
    /// A server killed without a goodbye leaves /who elsewhere within this long
    #[arg(long, value_name = "DUR", default_value = "15s", value_parser = parse_lease)]
    pub bus_lease: Duration,
    /// error, warn, info, debug or trace (trace narrates every event)
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub log_level: log::LevelFilter,
}

/// Parses `--bus-lease`: a duration of whole seconds, at least 1.
fn parse_lease(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_secs(1) || d.subsec_nanos() != 0 {
        return Err(format!("'{s}': a lease is whole seconds, at least 1"));
    }
    Ok(d)
}

impl ServeArgs {
    /// The `Config` these flags describe.
    pub fn to_config(&self) -> Config {
        let named = Config {
            greet: self.greet,
            echo: self.echo,
            udp: self.udp,
            chat: self.chat,
            unix: self.unix.clone(),
            game: self.game,
            http: self.http,
            https: self.https,
            tls_echo: self.tls_echo,
            ..Config::empty()
        };
        // With no service named, every service runs on its default.
        let base = if named.listeners().is_empty() {
            Config::defaults()
        } else {
            named
        };
        let defaults = Limits::default();
        let limits = Limits {
            max_conns: self.max_conns,
            idle_timeout: self.idle_timeout,
            header_timeout: self.header_timeout,
            keepalive_timeout: self.keepalive_timeout,
            max_line: self.max_line,
            ws_ping: self.ws_ping,
            ws_max_message: self.ws_max_message,
            output_cap: self.output_cap,
            max_client_memory: self.max_client_memory.unwrap_or(defaults.max_client_memory),
            chat_output_hard: self.chat_output_hard,
            chat_output_soft: self.chat_output_soft,
            chat_soft_time: self.chat_soft_time,
            chat_flush_delay: self.chat_flush_delay,
            shutdown_grace: self.grace,
            linger: self.linger,
            ..defaults
        };
        Config {
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            http_config: HttpConfig {
                root: self.root.clone(),
                max_body: self.max_body as u64,
                ws_origins: self.ws_origin.clone(),
                ..HttpConfig::default()
            },
            reuse_port: self.reuse_port || self.threads > 1,
            threads: usize::from(self.threads),
            handle_signals: true,
            access_log: self.access_log.clone(),
            bus: self.bus.clone().map(|url| BusSettings {
                url,
                prefix: self.bus_prefix.clone(),
                queue_cap: self.bus_queue,
                lease: self.bus_lease,
            }),
            limits,
            game_config: crate::service::game::GameConfig {
                hz: self.game_tick,
                max_players: usize::from(self.game_max_players),
                timeout: self.game_timeout.as_millis() as u64,
            },
            ..base
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DEFAULT_CHAT, DEFAULT_ECHO, DEFAULT_GREET, DEFAULT_HTTP, DEFAULT_UDP};

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("64k").unwrap(), 65536);
        assert_eq!(parse_size("1M").unwrap(), 1 << 20);
        assert!(parse_size("k").is_err());
        assert!(parse_size("12q").is_err());
    }

    #[test]
    fn no_service_flag_means_every_default() {
        let cli = Cli::parse_from(["reactor", "serve"]);
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        let cfg = args.to_config();
        assert_eq!(cfg.greet, DEFAULT_GREET.parse().ok());
        assert_eq!(cfg.echo, DEFAULT_ECHO.parse().ok());
        assert_eq!(cfg.udp, DEFAULT_UDP.parse().ok());
        assert_eq!(cfg.chat, DEFAULT_CHAT.parse().ok());
        assert_eq!(cfg.http, DEFAULT_HTTP.parse().ok());
        assert!(cfg.unix.is_none());
    }

    #[test]
    fn one_service_flag_means_only_that_service() {
        let cli = Cli::parse_from([
            "reactor",
            "serve",
            "--echo",
            "127.0.0.1:0",
            "--max-conns",
            "7",
        ]);
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        let cfg = args.to_config();
        assert!(cfg.echo.is_some());
        assert!(cfg.greet.is_none() && cfg.udp.is_none() && cfg.chat.is_none());
        assert_eq!(cfg.limits.max_conns, 7);
    }

    #[test]
    fn ws_max_message_is_a_size_defaulting_to_1_mib() {
        let parse = |extra: &[&str]| {
            let args = [&["reactor", "serve", "--http", "127.0.0.1:0"], extra].concat();
            let Command::Serve(a) = Cli::parse_from(args).command else {
                panic!("not serve")
            };
            a.to_config().limits
        };
        assert_eq!(parse(&[]).ws_max_message, 1 << 20);
        let l = parse(&["--ws-max-message", "16m"]);
        assert_eq!(l.ws_max_message, 16 << 20);
        assert_eq!(l.max_line, 4096, "the chat's limit is apart");
    }

    #[test]
    fn bus_flags() {
        let parse = |extra: &[&str]| {
            let args = [&["reactor", "serve", "--chat", "127.0.0.1:0"], extra].concat();
            Cli::try_parse_from(args).map(|c| match c.command {
                Command::Serve(a) => a.to_config().bus,
                _ => panic!("not serve"),
            })
        };
        assert_eq!(parse(&[]).unwrap(), None);
        let b = parse(&["--bus", "redis://10.0.0.2:6380/1", "--bus-prefix", "prod"])
            .unwrap()
            .unwrap();
        assert_eq!(b.url.to_string(), "10.0.0.2:6380/1");
        assert_eq!((b.prefix.as_str(), b.queue_cap), ("prod", 4 << 20));
        assert_eq!(b.lease, Duration::from_secs(15));
        assert!(parse(&["--bus", "10.0.0.2:6380"]).is_err(), "not a URL");
        assert!(parse(&["--bus", "redis://h", "--bus-lease", "500ms"]).is_err());
        assert!(parse(&["--bus", "redis://h", "--bus-prefix", "a:b"]).is_err());
    }
}
