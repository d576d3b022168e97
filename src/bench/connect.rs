//! `reactor bench connect`: connection cycles per second (the seed 000
//! pattern): connect, read the greeting until the server's EOF, close.
//! Latency runs from the cycle's intended start to the EOF.

use serde_json::json;

use super::cli::ConnectArgs;
use super::driver::{self, Parser, Spec};
use super::kind::Kind;
use super::report::Report;

/// Counts greeting bytes; the EOF completes the cycle.
#[derive(Clone, Debug, Default)]
pub struct GreetParser {
    /// Bytes of greeting so far.
    got: usize,
}

impl Parser for GreetParser {
    /// Greeting bytes are only counted.
    fn feed(&mut self, data: &[u8], _: &mut impl FnMut(Result<(), Kind>)) -> Result<(), Kind> {
        self.got += data.len();
        Ok(())
    }

    /// EOF ends the cycle; an empty greeting is a verify error.
    fn eof(&mut self) -> Option<Result<(), Kind>> {
        Some(if self.got > 0 {
            Ok(())
        } else {
            Err(Kind::Verify)
        })
    }

    /// A new cycle.
    fn reset(&mut self) {
        self.got = 0;
    }
}

/// Runs the connect workload.
pub fn bench(a: &ConnectArgs) -> crate::Result<Report> {
    let spec = Spec {
        addr: a.addr,
        request: Vec::new(),
        depth: 1,
        per_conn: true,
        parser: GreetParser::default(),
    };
    let c = &a.common;
    let m = driver::drive(spec, c)?;
    Ok(Report::new(
        "connect",
        a.addr.to_string(),
        json!({}),
        c,
        c.conns,
        m,
    ))
}
