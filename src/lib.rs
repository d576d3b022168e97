//! # reactor
//!
//! A single-threaded event-loop network server on `mio`: one thread, one
//! `Poll`, every socket in one `Slab`, protocols as sans-I/O state
//! machines. It grows out of the Python `select.select` loop of the
//! tutorials it started from; `docs/FROM-SELECT.md` walks that path.
//!
//! ## A route for a reader
//!
//! 1. `examples/mini_reactor.rs`: the whole pattern in one file (an echo
//!    server, every pitfall of edge-triggered I/O named where it is met).
//!    Its names are the real loop's; its header maps them.
//! 2. `core/`: that loop grown up, and protocol-blind. `core/mod.rs` gives
//!    the order to read it in: the `App` trait (the one extension point),
//!    the phases (`reactor.rs`), one connection's turn (`drive.rs`).
//! 3. `proto/`: the protocols on the loop, one file each (`echo.rs` is the
//!    smallest, `http.rs` the largest), behind the `Protocol` trait, and
//!    the one dispatch in `proto/mod.rs`.
//! 4. `service/`: what the protocols' bytes mean, as sans-I/O state
//!    machines tested in memory: chat lines, HTTP requests, WebSocket frames.
//! 5. `server.rs`: how a configuration becomes loops and listeners.
//!
//! `docs/FROM-SELECT.md` walks from the tutorials' Python `select` loop
//! to this code, and `docs/ARCHITECTURE.md` explains the loop with
//! diagrams.
//!
//! ## Layout
//!
//! Imports run one way, from the binary down to the core (checked by
//! `tests/layers.rs`):
//!
//! - `core/`: the event loop, naming no protocol: phases, readiness,
//!   connection I/O, the staged close, accept and its faults, timers, the
//!   deferred list, the slab, memory caps, setup and shutdown.
//! - `proto/`: each protocol on the loop (`greet`, `echo`, `chat`,
//!   `http`, `ws`, `ws_echo`, `udp`, `game`, and `bus`, the loop's two
//!   connections to Redis), the state each keeps per connection, and
//!   `loops.rs`, chat lines between the loops of one process.
//! - `service/`: the protocols' state machines, with no I/O: `greet`,
//!   `echo`, `chat`, `http` (requests, files, the `/ws` and `/ws/echo`
//!   handshake, the embedded pages), `ws` (the WebSocket frame codec),
//!   `bus` (chat rooms across servers over Redis pub/sub), `resp` (RESP2,
//!   the Redis codec), `game` (the arena, its ticks, snapshots and
//!   handshake; `docs/GAME.md`).
//! - `bench/`: `reactor bench`, the load generator (its own mio loops; it
//!   shares the server's HTTP and WebSocket parsers and `sys.rs`). A
//!   module of this crate rather than a workspace member, on purpose:
//!   `docs/ARCHITECTURE.md`, "Before and after the split".
//! - `buf.rs`: byte buffers and the pool that keeps idle connections
//!   buffer-free, and the count of what all buffers hold.
//! - `transport.rs`: TCP, Unix and TLS streams behind one type.
//! - `tls.rs`: TLS with rustls's unbuffered API, its buffers from the pool;
//!   certificates and keys.
//! - `listen.rs`: opening listeners (socket2, Unix socket files).
//! - `server.rs`: `Server` (bind, run) and `Handle` (stop, stats).
//! - `config.rs`, `cli.rs`: what to serve and the limits; the flags.
//!   `conffile.rs`: the flags from a TOML file (`--config`), reread on
//!   SIGHUP. `notify.rs`: systemd's readiness datagram.
//! - `units.rs`: durations and sizes as typed on the command line.
//! - `stats.rs`: the counters and the one list of figures `/stats` and
//!   `/metrics` print. `error.rs`: the one error type.
//! - `sys.rs`: the only `unsafe` code (rlimit calls, socket options, a
//!   timerfd for precise wake-ups: the load generator's sends, the app
//!   timer's ticks).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
pub mod buf;
pub mod cli;
pub mod conffile;
pub mod config;
pub mod core;
pub mod error;
pub mod listen;
pub mod notify;
pub mod proto;
pub mod server;
pub mod service;
pub mod stats;
pub mod sys;
pub mod tls;
pub mod transport;
pub mod units;

pub use config::{Config, Limits};
pub use error::{Error, Result};
pub use server::{Handle, Server};
pub use service::Service;
pub use stats::Stats;
