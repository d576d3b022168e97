//! `reactor bench echo`: fixed-size messages; every byte that comes back
//! is compared with what was sent, straight from the read buffer (no copy),
//! across however the stream was split into reads. `reactor bench tcp`:
//! the same with a request and an expected answer of the user's (a redis
//! `PING` and its `+PONG`, say). `reactor bench ws --echo`: the echo
//! workload over WebSocket, each message a masked client frame and each
//! answer the server's unmasked frame of it, every byte checked.

use serde_json::json;

use super::cli::{Common, EchoArgs, TcpArgs, TlsOpts, WsArgs};
use super::driver::{self, Answer, Parser, Request, Sink, Spec};
use super::kind::{self, Kind};
use super::net;
use super::report::Report;
use super::tls::Tls;

/// The message: printable bytes, a newline at the end (so line-based
/// echo servers work too), different at every offset within it.
pub fn payload(size: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    if let Some(last) = p.last_mut() {
        *last = b'\n';
    }
    p
}

/// Verifies a stream of identical answers (echo: the message itself).
#[derive(Clone, Debug)]
pub struct EchoParser {
    /// The answer every request gets.
    msg: std::sync::Arc<[u8]>,
    /// Offset within the current message.
    pos: usize,
    /// The current message had a wrong byte.
    bad: bool,
}

impl EchoParser {
    /// A parser for answers that are each `msg`.
    pub fn new(msg: &[u8]) -> EchoParser {
        EchoParser {
            msg: msg.into(),
            pos: 0,
            bad: false,
        }
    }
}

impl Parser for EchoParser {
    /// Compares each chunk with the message at the same offset; a message
    /// with any wrong byte is a verify error (the stream stays aligned by
    /// length, so the next one is judged on its own).
    fn feed(&mut self, mut data: &[u8], sink: &mut impl Sink) -> Result<(), Kind> {
        let size = self.msg.len();
        if size == 0 {
            return if data.is_empty() {
                Ok(())
            } else {
                Err(Kind::Verify)
            };
        }
        while !data.is_empty() {
            let k = (size - self.pos).min(data.len());
            if data[..k] != self.msg[self.pos..self.pos + k] {
                self.bad = true;
            }
            data = &data[k..];
            self.pos += k;
            if self.pos == size {
                sink.done(Answer::plain(if self.bad {
                    Err(Kind::Verify)
                } else {
                    Ok(())
                }));
                self.pos = 0;
                self.bad = false;
            }
        }
        Ok(())
    }

    /// EOF never completes an echo.
    fn eof(&mut self) -> Option<Answer> {
        None
    }

    /// Back to a message boundary.
    fn reset(&mut self) {
        self.pos = 0;
        self.bad = false;
    }
}

/// Runs the echo workload.
pub fn bench(a: &EchoArgs) -> crate::Result<Report> {
    if a.size == 0 {
        return Err(kind::config("--size must be at least 1"));
    }
    let msg = payload(a.size);
    let config = json!({ "size": a.size, "depth": a.depth.max(1), "tls": a.tls });
    let tls = a.tls.then_some(&a.tls_opts);
    let f = Fixed {
        workload: "echo",
        addr: &a.addr,
        request: msg.clone(),
        answer: &msg,
        depth: a.depth,
        tls,
    };
    f.run(&a.common, config)
}

/// Runs the fixed request/answer workload.
pub fn bench_tcp(a: &TcpArgs) -> crate::Result<Report> {
    let config = json!({
        "send": String::from_utf8_lossy(&a.send.0),
        "expect": String::from_utf8_lossy(&a.expect.0),
        "depth": a.depth.max(1),
        "tls": a.tls,
    });
    let f = Fixed {
        workload: "tcp",
        addr: &a.addr,
        request: a.send.0.clone(),
        answer: &a.expect.0,
        depth: a.depth,
        tls: a.tls.then_some(&a.tls_opts),
    };
    f.run(&a.common, config)
}

/// A WebSocket echo server's target: where it is, the upgrade request
/// each connection sends, TLS for `wss://`.
pub struct WsTarget {
    /// The server's address.
    pub addr: std::net::SocketAddr,
    /// The upgrade request (`GET /ws/echo ...`).
    pub upgrade: Vec<u8>,
    /// TLS (ALPN `http/1.1`), for `wss://`.
    pub tls: Option<Tls>,
}

/// The client frame of an echo message of `size` bytes (text, or binary
/// with `binary`), and the server frame that must come back.
pub fn ws_echo_frames(size: usize, binary: bool) -> (Vec<u8>, Vec<u8>) {
    let msg = payload(size);
    let opcode = if binary { 0x2 } else { 0x1 };
    let mut request = Vec::with_capacity(size + 14);
    client_frame_op(opcode, &msg, &mut request);
    let (h, n) = if binary {
        crate::service::ws::binary_header(size)
    } else {
        crate::service::ws::text_header(size)
    };
    let mut answer = h[..n].to_vec();
    answer.extend_from_slice(&msg);
    (request, answer)
}

/// Appends a masked, final client frame with `opcode` and `payload`, in
/// the shortest length form. The mask is the same on every frame: the
/// server unmasks whatever the key, and a fixed frame can be sent as is.
pub(super) fn client_frame_op(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    const MASK: [u8; 4] = [0x3C, 0x9A, 0x51, 0xE7];
    out.push(0x80 | opcode);
    match payload.len() {
        n if n <= 125 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().zip(MASK.iter().cycle()).map(|(b, k)| b ^ k));
}

/// Runs the echo workload over WebSocket (`reactor bench ws --echo`).
pub fn bench_ws(a: &WsArgs, target: WsTarget) -> crate::Result<Report> {
    if a.size == 0 {
        return Err(kind::config("--size must be at least 1"));
    }
    let (request, answer) = ws_echo_frames(a.size, a.binary);
    let config = json!({
        "echo": true,
        "size": a.size,
        "depth": a.depth.max(1),
        "binary": a.binary,
        "tls": target.tls.is_some(),
    });
    let spec = Spec {
        addr: target.addr,
        parser: EchoParser::new(&answer),
        requests: vec![Request::new(request)].into(),
        depth: a.depth.max(1),
        per_conn: false,
        tls: target.tls,
        hang_up: false,
        upgrade: Some(target.upgrade.into()),
    };
    let m = driver::drive(spec, &a.common)?;
    let c = &a.common;
    let url = a.url.clone().unwrap_or_default();
    Ok(Report::new("ws-echo", url, config, c, c.conns, m))
}

/// A workload of one fixed request and one fixed answer.
struct Fixed<'a> {
    /// Its name in the report.
    workload: &'static str,
    /// `HOST:PORT`.
    addr: &'a str,
    /// What every request sends.
    request: Vec<u8>,
    /// What every answer must be.
    answer: &'a [u8],
    /// Requests in flight per connection.
    depth: usize,
    /// TLS, with these settings.
    tls: Option<&'a TlsOpts>,
}

impl Fixed<'_> {
    /// Drives the server with it; reports with `config`.
    fn run(self, c: &Common, config: serde_json::Value) -> crate::Result<Report> {
        let target = net::target(self.addr, c.timeout).map_err(kind::config)?;
        let tls = match self.tls {
            Some(o) => Some(Tls::new(o, &target.host, &[])?),
            None => None,
        };
        let spec = Spec {
            addr: target.addr,
            parser: EchoParser::new(self.answer),
            requests: vec![Request::new(self.request)].into(),
            depth: self.depth.max(1),
            per_conn: false,
            tls,
            hang_up: false,
            upgrade: None,
        };
        let m = driver::drive(spec, c)?;
        let name = self.addr.to_string();
        Ok(Report::new(self.workload, name, config, c, c.conns, m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts answers.
    #[derive(Default)]
    struct Count(u32, u32);

    impl Sink for Count {
        fn request(&self) -> Option<usize> {
            Some(0)
        }
        fn done(&mut self, a: Answer) {
            match a.verdict {
                Ok(()) => self.0 += 1,
                Err(_) => self.1 += 1,
            }
        }
    }

    /// Feeds `data` in pieces of `step`; returns (ok, verify errors).
    fn run(p: &mut EchoParser, data: &[u8], step: usize) -> (u32, u32) {
        let mut c = Count::default();
        for chunk in data.chunks(step) {
            p.feed(chunk, &mut c).unwrap();
        }
        (c.0, c.1)
    }

    #[test]
    fn ws_echo_frames_are_what_the_server_codec_reads_and_writes() {
        use crate::service::ws::{Accept, Decoder, Event};
        for (size, binary) in [(64, false), (16 << 10, true), (70_000, false)] {
            let (mut request, answer) = ws_echo_frames(size, binary);
            let mut got = Vec::new();
            let accept = Accept {
                max: 1 << 20,
                binary: true,
            };
            let kept = Decoder::default()
                .feed(&mut request, accept, |e| {
                    got.push(match e {
                        Event::Text(t) => (false, t.to_vec()),
                        Event::Binary(b) => (true, b.to_vec()),
                        other => panic!("{other:?}"),
                    });
                    true
                })
                .unwrap();
            assert_eq!((kept, got), (0, vec![(binary, payload(size))]));
            let header = answer.len() - size;
            assert_eq!(answer[0], if binary { 0x82 } else { 0x81 });
            assert_eq!(
                header,
                if size <= 125 {
                    2
                } else if size <= 0xFFFF {
                    4
                } else {
                    10
                }
            );
            assert_eq!(&answer[header..], &payload(size)[..]);
        }
    }

    #[test]
    fn verifies_across_any_split() {
        let msg = payload(10);
        let stream = msg.repeat(3);
        for step in 1..=30 {
            let mut p = EchoParser::new(&msg);
            assert_eq!(run(&mut p, &stream, step), (3, 0), "step {step}");
        }
        let mut corrupt = stream.clone();
        corrupt[14] ^= 1;
        let mut p = EchoParser::new(&msg);
        assert_eq!(run(&mut p, &corrupt, 7), (2, 1));
    }
}
