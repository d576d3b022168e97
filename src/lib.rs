//! # reactor
//!
//! A single-threaded event-loop network server on `mio`: one thread, one
//! `Poll`, every socket in one `Slab`, protocols as sans-I/O state
//! machines. It grows out of the Python `select.select` loop of the
//! tutorials it started from; `docs/FROM-SELECT.md` walks that path.
//!
//! ## Layout
//!
//! - `reactor/`: the event loop.
//!   - `mod.rs`: the `Reactor` and its phases (before sleep, poll,
//!     dispatch, ready list, timers), signals and shutdown.
//!   - `drive.rs`: one connection's I/O: read until `WouldBlock`, write
//!     until `WouldBlock`, backpressure, staged close, accept.
//!   - `conn.rs`: a connection's state: socket, readiness, buffers, phase.
//!   - `accept.rs`: listeners, the accept loop's errors, EMFILE, refusal.
//!   - `udp.rs`: UDP echo with a bounded send queue.
//!   - `outbox.rs`: chat fan-out into connections, with output caps.
//!   - `http.rs`: HTTP on the loop: requests, file bodies, deadlines, `/stats`.
//!   - `ws.rs`: an upgraded HTTP connection as a chat member speaking
//!     WebSocket frames; keep-alive pings.
//!   - `bus.rs`: chat lines between loops (`--threads`).
//! - `service/`: the protocols, with no I/O: `greet`, `echo`, `chat`,
//!   `http` (requests, files, the `/ws` handshake, the embedded pages),
//!   `ws` (the WebSocket frame codec).
//! - `bench/`: `reactor bench`, the load generator (its own mio loops).
//! - `buf.rs`: byte buffers and the pool that keeps idle connections
//!   buffer-free.
//! - `timer.rs`: the cached clock and the deadline heap (lazy re-arm).
//! - `transport.rs`: TCP, Unix and TLS streams behind one type.
//! - `tls.rs`: TLS with rustls's unbuffered API, its buffers from the pool;
//!   certificates and keys.
//! - `listen.rs`: opening listeners (socket2, Unix socket files).
//! - `server.rs`: `Server` (bind, run) and `Handle` (stop, stats).
//! - `config.rs`, `cli.rs`: what to serve and the limits; the flags.
//! - `units.rs`: durations and sizes as typed on the command line.
//! - `stats.rs`: the loop's counters. `error.rs`: the one error type.
//! - `sys.rs`: the only `unsafe` code (rlimit calls, one socket option, a
//!   timerfd for the load generator's precise wake-ups).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
pub mod buf;
pub mod cli;
pub mod config;
pub mod core;
pub mod error;
pub mod listen;
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
