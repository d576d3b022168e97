//! `reactor bench connect`: connection cycles per second (the seed 000
//! pattern): connect, read the greeting until the server's EOF, close.
//! Latency runs from the cycle's intended start to the EOF. With `--tls`,
//! handshakes per second: connect, handshake, `close_notify`, and the
//! server's close ends the cycle (full handshakes with `--no-resume`,
//! else resumed ones once a session is known).

use serde_json::json;

use super::cli::ConnectArgs;
use super::driver::{self, Answer, Parser, Sink, Spec};
use super::kind::{self, Kind};
use super::net;
use super::report::Report;
use super::tls::Tls;

/// Counts greeting bytes; the EOF completes the cycle.
#[derive(Clone, Debug, Default)]
pub struct GreetParser {
    /// Bytes of greeting so far.
    got: usize,
    /// The cycle needs no greeting (TLS: the handshake is the point).
    silent: bool,
}

impl Parser for GreetParser {
    /// Greeting bytes are only counted.
    fn feed(&mut self, data: &[u8], _: &mut impl Sink) -> Result<(), Kind> {
        self.got += data.len();
        Ok(())
    }

    /// EOF ends the cycle; an empty greeting is a verify error (unless
    /// none is wanted).
    fn eof(&mut self) -> Option<Answer> {
        Some(Answer::plain(if self.got > 0 || self.silent {
            Ok(())
        } else {
            Err(Kind::Verify)
        }))
    }

    /// A new cycle.
    fn reset(&mut self) {
        self.got = 0;
    }
}

/// Runs the connect workload.
pub fn bench(a: &ConnectArgs) -> crate::Result<Report> {
    let c = &a.common;
    let target = net::target(&a.addr, c.timeout).map_err(kind::config)?;
    let tls = match a.tls {
        true => Some(Tls::new(&a.tls_opts, &target.host, &[])?),
        false => None,
    };
    let spec = Spec {
        addr: target.addr,
        requests: Vec::new().into(),
        depth: 1,
        per_conn: true,
        parser: GreetParser {
            got: 0,
            silent: a.tls,
        },
        tls,
        hang_up: a.tls,
        upgrade: None,
    };
    let m = driver::drive(spec, c)?;
    let config = json!({ "tls": a.tls, "resume": a.tls && !a.tls_opts.no_resume });
    Ok(Report::new(
        "connect",
        a.addr.clone(),
        config,
        c,
        c.conns,
        m,
    ))
}
