//! `reactor bench idle`: open N connections (optionally say hello once on
//! each), hold them idle for `-d`, and with `--pid` report the server's
//! RSS growth per connection. Connections the server closes while we hold
//! them are counted (read errors), never silently ignored.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use serde_json::json;

use super::cli::IdleArgs;
use super::kind::{self, Kind};
use super::net;
use super::procstat;
use super::record::Recorder;
use super::report::Report;
use super::run::{Merged, Second};

/// Runs the idle workload.
pub fn bench(a: &IdleArgs) -> crate::Result<Report> {
    let c = &a.common;
    let hello = a
        .hello
        .as_ref()
        .map(|h| h.replace("\\r", "\r").replace("\\n", "\n").into_bytes());
    let addr = net::target(&a.addr, c.timeout).map_err(kind::config)?.addr;
    let before = procstat::sample_all(&c.pid);
    let t0 = Instant::now();
    let mut rec = Recorder::new(0, u64::MAX);
    let mut held = Vec::with_capacity(c.conns);
    for i in 0..c.conns {
        match open(a, addr, i, hello.as_deref()) {
            Ok(s) => held.push(s),
            Err(k) => rec.error(1, k, 1),
        }
    }
    let opened = held.len() as u64;
    // Let the server settle (answers, buffers returned to pools).
    std::thread::sleep(c.duration);
    let mut buf = [0u8; 4096];
    let mut closed = 0;
    for s in &mut held {
        if gone(s, &mut buf) {
            closed += 1;
        }
    }
    rec.error(1, Kind::Read, closed);
    let after = procstat::sample_all(&c.pid);
    rec.count(1, "connections_opened", opened);
    rec.count(1, "connections_closed_by_server", closed);
    let window_s = t0.elapsed().as_secs_f64();
    let server = match (before, after) {
        (Some(b), Some(e)) => Some((b, e)),
        _ => None,
    };
    if let Some((b, e)) = server {
        let per = (e.rss as f64 - b.rss as f64) / opened.max(1) as f64;
        rec.count(1, "rss_growth_per_conn_bytes", per.max(0.0) as u64);
    }
    let m = Merged {
        rec,
        thread_busy: vec![0.0],
        thread_wait: vec![0.0],
        thread_spin: vec![0.0],
        thread_sleeps: vec![0],
        window_s,
        series: Vec::<Second>::new(),
        server,
        server_window_s: window_s,
        zero_unix_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64() - window_s),
    };
    let config = json!({ "hello": a.hello });
    let mut r = Report::new("idle", a.addr.clone(), config, c, c.conns, m);
    if opened == 0 {
        r.invalid.push("no connection could be opened".into());
    }
    Ok(r)
}

/// Opens connection `i` (blocking connect, then non-blocking), says hello.
fn open(a: &IdleArgs, addr: SocketAddr, i: usize, hello: Option<&[u8]>) -> Result<TcpStream, Kind> {
    let src = net::source_ip(i, a.common.source_ips, addr);
    let sock = net::connect_blocking(addr, src, a.common.timeout).map_err(|_| Kind::Connect)?;
    let mut s: TcpStream = sock.into();
    if let Some(h) = hello {
        s.write_all(h).map_err(|_| Kind::Write)?;
    }
    s.set_nonblocking(true).map_err(|_| Kind::Connect)?;
    Ok(s)
}

/// True if the server closed `s` (EOF or error); drains any answer.
fn gone(s: &mut TcpStream, buf: &mut [u8]) -> bool {
    loop {
        match s.read(buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}
