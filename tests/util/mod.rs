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

pub fn bin_path() -> &'static str {
    env!("CARGO_BIN_EXE_reactor")
}

impl Bin {
    /// Spawn `reactor ARGS...` with stderr read line by line in a thread.
    pub fn spawn(args: &[&str]) -> Bin {
        let mut child = Command::new(bin_path())
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn reactor binary");
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
