//! Shared helpers for the integration tests: start an in-process server,
//! connect with timeouts, read with deadlines, spawn the binary and parse
//! its listen lines, wait on conditions, and a tiny xorshift PRNG.
//!
//! Every blocking call here is bounded in time so that a server bug makes a
//! test fail with a message instead of hanging the suite.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use reactor::{Config, Handle, Server, Service, Stats};

pub mod redis;
pub mod server;
pub mod ws;

/// Default bound for any single blocking step of a test.
pub const TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- PRNG

/// xorshift64* : small, deterministic, good enough for fragmentation.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Avoid the all-zero state and spread small seeds.
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        assert!(lo <= hi);
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    pub fn chance(&mut self, one_in: u64) -> bool {
        self.next_u64().is_multiple_of(one_in)
    }

    /// A chunk size with a spread of scales: tiny, medium and large.
    pub fn chunk(&mut self, max: usize) -> usize {
        let cap = match self.next_u64() % 3 {
            0 => 16,
            1 => 1024,
            _ => max,
        };
        self.range(1, cap.min(max).max(1))
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

// ---------------------------------------------------------------- waiting

/// Poll `cond` (every 50 us at first, backing off to every 5 ms) until it
/// holds or `within` passes. Returns whether it held.
pub fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_micros(50);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------- server

/// A server running on its own thread; shut down (without waiting) on drop.
pub struct Running {
    pub handle: Handle,
    pub greet: Option<SocketAddr>,
    pub echo: Option<SocketAddr>,
    pub chat: Option<SocketAddr>,
    pub udp: Option<SocketAddr>,
    done: Option<Receiver<reactor::Result<Stats>>>,
}

/// Bind `cfg` (panicking with the error's text if that fails) and run it.
pub fn start(cfg: Config) -> Running {
    let server = match Server::bind(cfg) {
        Ok(s) => s,
        Err(e) => panic!("Server::bind failed: {e}"),
    };
    let greet = server.local_addr(Service::Greet);
    let echo = server.local_addr(Service::Echo);
    let chat = server.local_addr(Service::Chat);
    let udp = server.local_addr(Service::Udp);
    let handle = server.handle();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(server.run());
    });
    Running {
        handle,
        greet,
        echo,
        chat,
        udp,
        done: Some(rx),
    }
}

/// A config with only echo on an ephemeral loopback port.
pub fn echo_config() -> Config {
    let mut cfg = Config::empty();
    cfg.echo = Some(loopback0());
    cfg
}

pub fn loopback0() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

impl Running {
    /// A server started by the caller: its handle and the channel its
    /// `run()` result arrives on.
    pub fn from_parts(handle: Handle, done: Receiver<reactor::Result<Stats>>) -> Running {
        Running {
            handle,
            greet: None,
            echo: None,
            chat: None,
            udp: None,
            done: Some(done),
        }
    }

    pub fn stats(&self) -> Stats {
        self.handle.stats()
    }

    /// Wait (bounded) until the refreshed stats satisfy `cond`; on timeout
    /// panic showing the last snapshot.
    pub fn wait_stats(&self, what: &str, within: Duration, mut cond: impl FnMut(&Stats) -> bool) {
        let mut last = None;
        let ok = wait_until(within, || {
            let s = self.handle.stats();
            let ok = cond(&s);
            last = Some(s);
            ok
        });
        assert!(
            ok,
            "stats never reached `{what}` within {within:?}; last: {last:?}"
        );
    }

    /// Graceful shutdown; `run()` must return within `within`.
    pub fn stop(mut self, within: Duration) -> Stats {
        self.handle.shutdown();
        let rx = self.done.take().unwrap();
        match rx.recv_timeout(within) {
            Ok(Ok(stats)) => stats,
            Ok(Err(e)) => panic!("run() returned an error: {e}"),
            Err(RecvTimeoutError::Timeout) => {
                panic!("run() did not return within {within:?} after shutdown()")
            }
            Err(RecvTimeoutError::Disconnected) => panic!("server thread panicked"),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.done.is_some() {
            self.handle.shutdown();
        }
    }
}

// ---------------------------------------------------------------- sockets

/// Connect with read and write timeouts of `TIMEOUT` and Nagle off.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to {addr} failed: {e}"));
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Read exactly `n` bytes or panic saying how many arrived before the
/// error / EOF / deadline. `what` names the stream in the message.
pub fn read_n<R: Read>(r: &mut R, n: usize, what: &str) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match r.read(&mut buf[got..]) {
            Ok(0) => panic!("{what}: EOF after {got} of {n} bytes"),
            Ok(k) => got += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("{what}: error after {got} of {n} bytes: {e}"),
        }
    }
    buf
}

/// How a stream ended when read to the end.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    Eof,
    Reset,
}

/// Read until EOF (or a reset); panics on a timeout or other error.
pub fn read_to_end<R: Read>(r: &mut R, what: &str) -> (Vec<u8>, End) {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return (out, End::Eof),
            Ok(k) => out.extend_from_slice(&buf[..k]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ) =>
            {
                return (out, End::Reset);
            }
            Err(e) => panic!(
                "{what}: error after {} bytes while waiting for EOF: {e}",
                out.len()
            ),
        }
    }
}

/// Read until EOF, which must come cleanly (a reset fails the test).
pub fn read_until_eof<R: Read>(r: &mut R, what: &str) -> Vec<u8> {
    let (data, end) = read_to_end(r, what);
    assert_eq!(
        end,
        End::Eof,
        "{what}: connection reset instead of EOF after {} bytes",
        data.len()
    );
    data
}

/// Compare two byte strings and describe the first difference.
pub fn assert_bytes_eq(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    panic!(
        "{what}: got {} bytes, want {}; first difference at offset {first} (got {:?}, want {:?})",
        got.len(),
        want.len(),
        got.get(first..(first + 16).min(got.len())),
        want.get(first..(first + 16).min(want.len())),
    );
}

/// One request/response round trip on an echo connection.
pub fn echo_roundtrip(s: &mut TcpStream, msg: &[u8], what: &str) {
    s.write_all(msg)
        .unwrap_or_else(|e| panic!("{what}: write failed: {e}"));
    let back = read_n(s, msg.len(), what);
    assert_bytes_eq(&back, msg, what);
}

/// Half-close helper that tolerates an already-closed socket.
pub fn shutdown_write(s: &TcpStream) {
    let _ = s.shutdown(Shutdown::Write);
}

// ---------------------------------------------------------------- lines

/// Reads `\n`-terminated lines with the stream's own read timeout.
pub struct Lines<S: Read> {
    inner: BufReader<S>,
    pub what: String,
}

impl<S: Read> Lines<S> {
    pub fn new(s: S, what: impl Into<String>) -> Self {
        Lines {
            inner: BufReader::with_capacity(64 * 1024, s),
            what: what.into(),
        }
    }

    /// Next line including its `\n`, or `Err` on EOF / error (with what
    /// part of a line had arrived).
    pub fn try_line(&mut self) -> io::Result<String> {
        let mut buf = Vec::new();
        match self.inner.read_until(b'\n', &mut buf) {
            Ok(_) if buf.ends_with(b"\n") => Ok(String::from_utf8_lossy(&buf).into_owned()),
            Ok(_) => Err(io::Error::new(
                ErrorKind::UnexpectedEof,
                format!("EOF (partial line {:?})", String::from_utf8_lossy(&buf)),
            )),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("{e} (partial line {:?})", String::from_utf8_lossy(&buf)),
            )),
        }
    }

    pub fn line(&mut self) -> String {
        self.try_line()
            .unwrap_or_else(|e| panic!("{}: no complete line: {e}", self.what))
    }

    /// The next line must be exactly `want`.
    pub fn expect(&mut self, want: &str) {
        let got = self.line();
        assert_eq!(got, want, "{}: unexpected line", self.what);
    }

    /// Skip lines until one satisfies `pred`; returns it and the skipped ones.
    pub fn until(&mut self, mut pred: impl FnMut(&str) -> bool) -> (String, Vec<String>) {
        let mut skipped = Vec::new();
        loop {
            let l = self.try_line().unwrap_or_else(|e| {
                panic!(
                    "{}: stream ended before the awaited line: {e}; skipped {skipped:?}",
                    self.what
                )
            });
            if pred(&l) {
                return (l, skipped);
            }
            skipped.push(l);
        }
    }

    /// Everything left until EOF / reset.
    pub fn rest(&mut self) -> (Vec<u8>, End) {
        let what = self.what.clone();
        read_to_end(&mut self.inner, &what)
    }

    pub fn get_mut(&mut self) -> &mut S {
        self.inner.get_mut()
    }
}

// ---------------------------------------------------------------- binary

/// The `reactor` binary running as a child; killed on drop if still alive.
pub struct Bin {
    pub child: Child,
    lines: Receiver<String>,
    pub log: Arc<Mutex<Vec<String>>>,
}

/// Strip ANSI colour escapes from a log line.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The `reactor` binary under test: `REACTOR_BIN` if set (to run a test
/// against another build), else the one cargo built for the tests.
pub fn bin_path() -> String {
    std::env::var("REACTOR_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_reactor").to_string())
}

impl Bin {
    /// Spawn `reactor ARGS...` with stderr read line by line in a thread.
    pub fn spawn(args: &[&str]) -> Bin {
        Bin::spawn_under(&[], args)
    }

    /// Spawn `WRAPPER... <reactor binary> ARGS...` (for example under
    /// `prlimit --nofile=64:64 --`; no wrapper: the binary itself), stderr
    /// read line by line in a thread. A wrapper must exec the binary, so
    /// the child's pid is the server's.
    pub fn spawn_under(wrapper: &[&str], args: &[&str]) -> Bin {
        Bin::spawn_with(wrapper, args, &[])
    }

    /// `spawn_under`, with `env` added to the child's environment.
    pub fn spawn_with(wrapper: &[&str], args: &[&str], env: &[(&str, &str)]) -> Bin {
        let mut command = match wrapper.split_first() {
            Some((program, pre)) => {
                let mut c = Command::new(program);
                c.args(pre).arg(bin_path());
                c
            }
            None => Command::new(bin_path()),
        };
        let mut child = command
            .args(args)
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {wrapper:?} reactor: {e}"));
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = log.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let line = strip_ansi(&line);
                log2.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        Bin {
            child,
            lines: rx,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Wait for `<service> listening on <addr>` and return `<addr>`.
    pub fn listening(&mut self, service: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let needle = format!("{service} listening on ");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(i) = line.find(&needle) {
                        let rest = &line[i + needle.len()..];
                        return rest.split_whitespace().next().unwrap_or("").to_string();
                    }
                }
                Err(_) => panic!(
                    "no `{needle}...` line within {within:?}; stderr so far:\n{}",
                    self.log_text()
                ),
            }
        }
    }

    /// Wait for a stderr line containing `needle` (after the lines already
    /// taken) and return it.
    pub fn wait_line(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "no line with `{needle}` within {within:?}; stderr so far:\n{}",
                    self.log_text()
                ),
            }
        }
    }

    /// Wait (bounded) for the process to exit; None if still running.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Send a signal by name with the `kill` command.
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -{sig} failed");
    }

    /// After the process exited: wait (bounded) for the stderr reader to
    /// reach EOF, then return the whole log.
    pub fn final_log(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(_) => {}
                Err(_) => break,
            }
        }
        self.log_text()
    }
}

impl Drop for Bin {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Run the binary to completion (bounded), returning (status, stdout, stderr).
pub fn run_bin(args: &[&str], within: Duration) -> (std::process::ExitStatus, String, String) {
    let mut child = Command::new(bin_path())
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn reactor binary");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let t_err = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`reactor {}` did not exit within {within:?}",
                args.join(" ")
            );
        }
        thread::sleep(Duration::from_millis(10));
    };
    let out = String::from_utf8_lossy(&t_out.join().unwrap()).into_owned();
    let err = strip_ansi(&String::from_utf8_lossy(&t_err.join().unwrap()));
    (status, out, err)
}

/// Write everything, panicking with progress on error.
pub fn write_all(s: &mut impl Write, data: &[u8], what: &str) {
    s.write_all(data)
        .unwrap_or_else(|e| panic!("{what}: write of {} bytes failed: {e}", data.len()));
}

// ---------------------------------------------------------------- http

/// Bind `cfg` (which must enable HTTP) and run it; returns the server and
/// its HTTP address.
pub fn start_http(cfg: Config) -> (Running, SocketAddr) {
    let server = match Server::bind(cfg) {
        Ok(s) => s,
        Err(e) => panic!("Server::bind failed: {e}"),
    };
    let http = server
        .local_addr(Service::Http)
        .expect("config has no HTTP listener");
    let handle = server.handle();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(server.run());
    });
    let running = Running {
        handle,
        greet: None,
        echo: None,
        chat: None,
        udp: None,
        done: Some(rx),
    };
    (running, http)
}

/// A config with only HTTP on an ephemeral loopback port, serving `root`.
pub fn http_config(root: Option<&std::path::Path>) -> Config {
    let mut cfg = Config::empty();
    cfg.http = Some(loopback0());
    cfg.http_config.root = root.map(|p| p.to_path_buf());
    cfg
}

/// One parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Resp {
    /// The status code.
    pub status: u16,
    /// The status line without its CRLF.
    pub status_line: String,
    /// Header fields in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (empty for HEAD, 1xx, 304).
    pub body: Vec<u8>,
    /// The head exactly as received, blank line included.
    pub raw_head: Vec<u8>,
}

impl Resp {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// How many times header `name` appears.
    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// True if the response says `Connection: close`.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// An HTTP client connection that keeps the bytes read past one response
/// for the next, so pipelined responses parse one after another.
pub struct HttpClient {
    pub s: TcpStream,
    buf: Vec<u8>,
    pub what: String,
}

/// Where the head ends (index just past `\r\n\r\n`), if it has.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

impl HttpClient {
    /// Connect (timeouts as [`connect`]).
    pub fn connect(addr: SocketAddr, what: impl Into<String>) -> HttpClient {
        HttpClient {
            s: connect(addr),
            buf: Vec::new(),
            what: what.into(),
        }
    }

    /// Write raw bytes.
    pub fn send(&mut self, data: &[u8]) {
        let what = self.what.clone();
        write_all(&mut self.s, data, &what);
    }

    /// Read more into the buffer; panics on EOF, error or timeout.
    fn fill(&mut self, want: &str) {
        let mut tmp = [0u8; 64 * 1024];
        loop {
            match self.s.read(&mut tmp) {
                Ok(0) => panic!(
                    "{}: EOF while waiting for {want}; have {} bytes: {:?}",
                    self.what,
                    self.buf.len(),
                    String::from_utf8_lossy(&self.buf[..self.buf.len().min(512)])
                ),
                Ok(k) => {
                    self.buf.extend_from_slice(&tmp[..k]);
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!(
                    "{}: error while waiting for {want} ({} bytes buffered: {:?}): {e}",
                    self.what,
                    self.buf.len(),
                    String::from_utf8_lossy(&self.buf[..self.buf.len().min(512)])
                ),
            }
        }
    }

    /// Read one response head (panics if none arrives).
    pub fn read_head(&mut self) -> Resp {
        let end = loop {
            if let Some(end) = head_end(&self.buf) {
                break end;
            }
            assert!(
                self.buf.len() < 256 * 1024,
                "{}: response head over 256 KiB",
                self.what
            );
            self.fill("a response head");
        };
        let raw_head: Vec<u8> = self.buf.drain(..end).collect();
        let text = String::from_utf8_lossy(&raw_head[..end - 4]).into_owned();
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or_default().to_string();
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("{}: bad status line {status_line:?}", self.what));
        let headers = lines
            .map(|l| {
                let (n, v) = l
                    .split_once(':')
                    .unwrap_or_else(|| panic!("{}: bad header line {l:?}", self.what));
                (n.to_string(), v.trim().to_string())
            })
            .collect();
        Resp {
            status,
            status_line,
            headers,
            body: Vec::new(),
            raw_head,
        }
    }

    /// The bytes read past the last parsed response (emptied).
    pub fn take_buffered(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Read exactly `n` body bytes.
    pub fn read_body(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            self.fill(&format!("{n} body bytes"));
        }
        self.buf.drain(..n).collect()
    }

    /// Read one whole response. `head_only`: the request was HEAD (no body
    /// whatever Content-Length says). 1xx and 304 never have a body.
    pub fn response_to(&mut self, head_only: bool) -> Resp {
        let mut r = self.read_head();
        let no_body = head_only || r.status / 100 == 1 || r.status == 204 || r.status == 304;
        if !no_body {
            assert!(
                r.header("transfer-encoding").is_none(),
                "{}: unexpected Transfer-Encoding in {:?}",
                self.what,
                r.status_line
            );
            let len: usize = r
                .header("content-length")
                .unwrap_or_else(|| panic!("{}: no Content-Length in {:?}", self.what, r.headers))
                .parse()
                .unwrap_or_else(|e| panic!("{}: bad Content-Length: {e}", self.what));
            r.body = self.read_body(len);
        }
        r
    }

    /// Read one whole response to a non-HEAD request.
    pub fn response(&mut self) -> Resp {
        self.response_to(false)
    }

    /// Send `req` and read its response.
    pub fn roundtrip(&mut self, req: &[u8]) -> Resp {
        self.send(req);
        self.response()
    }

    /// Everything left until EOF or reset (buffered bytes first).
    pub fn rest(&mut self) -> (Vec<u8>, End) {
        let mut out = std::mem::take(&mut self.buf);
        let what = self.what.clone();
        let (more, end) = read_to_end(&mut self.s, &what);
        out.extend_from_slice(&more);
        (out, end)
    }

    /// Nothing more comes: a clean EOF (not a reset), no stray bytes.
    pub fn expect_eof(&mut self) {
        let (rest, end) = self.rest();
        assert!(
            rest.is_empty(),
            "{}: {} bytes after the last response: {:?}",
            self.what,
            rest.len(),
            String::from_utf8_lossy(&rest[..rest.len().min(512)])
        );
        assert_eq!(end, End::Eof, "{}: reset instead of EOF", self.what);
    }

    /// True if the server has not closed and sent nothing within `within`.
    pub fn quiet_for(&mut self, within: Duration) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        self.s.set_read_timeout(Some(within)).unwrap();
        let mut b = [0u8; 1];
        let quiet = matches!(self.s.read(&mut b), Err(e)
            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut));
        self.s.set_read_timeout(Some(TIMEOUT)).unwrap();
        quiet
    }
}

/// `GET path` with `Host` on a fresh connection; the response.
pub fn http_get(addr: SocketAddr, path: &str) -> Resp {
    let mut c = HttpClient::connect(addr, format!("GET {path}"));
    c.roundtrip(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
}

/// A fresh directory under the temp dir, removed (recursively) on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!(
            "reactor-test-{tag}-{}-{n}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// Write `data` to `rel` (parents created).
    pub fn write(&self, rel: &str, data: &[u8]) -> std::path::PathBuf {
        let p = self.0.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("create parent dir");
        }
        std::fs::write(&p, data).expect("write file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// This process's resident set size in KiB (`VmRSS` in /proc/self/status).
pub fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/self/status")
}
