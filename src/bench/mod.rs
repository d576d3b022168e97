//! `reactor bench`: a load generator that is itself a mio event loop (one
//! per thread), and reports what happened without the known lies of the
//! usual tools. See `docs/BENCH.md`.
//!
//! Modules, each importing only those listed before it:
//! - `kind.rs`: why a request failed, what a run ends with, the run's
//!   errors. `text.rs`: short
//!   human forms of numbers. `hist.rs`: the histograms. `procstat.rs`:
//!   `/proc` sampling of the server and of ourselves. `net.rs`:
//!   resolving a target once, non-blocking connect from a chosen source
//!   address. `cli.rs`: the flags. `tls.rs`: the TLS client
//!   configuration; `stream.rs`: a connection's bytes, plain or TLS.
//! - `record.rs`: what one thread measured, merged at the end.
//! - `run.rs`: threads, the per-second series, the live ticker, and the
//!   `Sleeper` every loop waits in (a timerfd for sends on schedule,
//!   spinning with `--busy-poll`).
//! - `report.rs`: the verdict, the summary, the JSON, `compare`;
//!   `plot.rs`: the SVG; `finish.rs`: writing them out.
//! - `driver.rs`: the request/response loop over TCP (echo, tcp, http,
//!   connect): closed or open loop, a FIFO of send times per connection;
//!   `echo.rs` (echo and tcp), `http.rs`, `connect.rs`: the response
//!   parsers it drives.
//! - `udp.rs`, `chat.rs`, `idle.rs`, `game.rs`: workloads with loops of
//!   their own (`game.rs`: bot players of `reactor serve --game`).
//! - `merge.rs`: the results of runs made at once, as one.
//!
//! This file only dispatches on the subcommand.

pub mod chat;
pub mod cli;
pub mod connect;
pub mod driver;
pub mod echo;
pub mod finish;
pub mod game;
pub mod hist;
pub mod http;
pub mod idle;
pub mod kind;
pub mod merge;
pub mod net;
pub mod plot;
pub mod procstat;
pub mod record;
pub mod report;
pub mod run;
pub mod stream;
pub mod text;
pub mod tls;
pub mod udp;

use cli::{BenchArgs, BenchCommand};
pub use kind::{Kind, Outcome};

/// Runs `reactor bench ...`: the workload, then the report.
pub fn run(args: BenchArgs) -> crate::Result<Outcome> {
    match args.command {
        BenchCommand::Echo(a) => finish::finish(echo::bench(&a)?, &a.common),
        BenchCommand::Http(a) => finish::finish(http::bench(&a)?, &a.common),
        BenchCommand::Tcp(a) => finish::finish(echo::bench_tcp(&a)?, &a.common),
        BenchCommand::Connect(a) => finish::finish(connect::bench(&a)?, &a.common),
        BenchCommand::Udp(a) => finish::finish(udp::bench(&a)?, &a.common),
        BenchCommand::Chat(a) => finish::finish(chat::bench(&a)?, &a.common),
        BenchCommand::Ws(a) => finish::finish(chat::bench_ws(&a)?, &a.common),
        BenchCommand::Idle(a) => finish::finish(idle::bench(&a)?, &a.common),
        BenchCommand::Game(a) => finish::finish(game::bench(&a)?, &a.common()),
        BenchCommand::Compare(a) => report::compare(&a),
        BenchCommand::Merge(a) => merge::merge(&a),
    }
}
