//! What a peer can make the server hold, against the real binary: for
//! every service, clients that send as fast as they can and never read
//! (hogs) make the server's memory grow by no more than the documented
//! bound per connection (`docs/LIMITS.md`), the others are still served,
//! and the memory is given back when they go; past `--max-client-memory`
//! the largest are evicted; a slow reader's socket holds little in the
//! kernel.
//!
//! Each test starts its own server process and ends it the way the fault
//! tests do (fds back to the baseline, a clean log, exit 0 on SIGTERM).
//! They run one at a time: they measure the server's memory. `HOGS=N`
//! (default 50) sets how many hogs each case uses; the figures each case
//! measured are printed (`--nocapture`).

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use util::server::*;
use util::*;

/// Bytes the kernel holds in the send queues of the server's sockets on
/// `port` (sent but unacknowledged, plus not yet sent): the `tx_queue`
/// column of `/proc/net/tcp` for every socket whose local port is `port`.
fn kernel_send_queues(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            let tx = u64::from_str_radix(f.get(4)?.split(':').next()?, 16).ok()?;
            (local_port == port).then_some(tx)
        })
        .sum()
}

/// A TCP client with a receive buffer of `rcvbuf` bytes (set before
/// connect, so the window it offers is small from the start).
fn small_window_client(addr: SocketAddr, rcvbuf: usize) -> TcpStream {
    let s =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    s.set_recv_buffer_size(rcvbuf).expect("SO_RCVBUF");
    s.connect(&addr.into()).expect("connect");
    let s: TcpStream = s.into();
    s.set_write_timeout(Some(TIMEOUT)).expect("write timeout");
    s
}

/// Waits until `/stats`'s `bytes_out` has stopped moving (the server has
/// written all the kernel will take): three samples 100 ms apart that grew
/// by less than a `/stats` response each. Returns it.
fn settled_bytes_out(srv: &Server) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut prev, mut still) = (srv.stats()["bytes_out"], 0);
    while still < 3 {
        assert!(
            Instant::now() < deadline,
            "bytes_out still moving after 20 s: {prev}"
        );
        std::thread::sleep(Duration::from_millis(100));
        let now = srv.stats()["bytes_out"];
        still = if now < prev + 4096 { still + 1 } else { 0 };
        prev = now;
    }
    prev
}

/// Slow readers (slowhttptest -X): 100 clients with 1 KiB receive windows
/// ask three times for a 1 MiB file and read nothing. The kernel must not
/// absorb the file for them: with the send buffer's autotuning alone it
/// takes about 1.6 MB per socket (the loop then spends its time in the
/// kernel's allocator, and other clients wait); `TCP_NOTSENT_LOWAT` on the
/// listeners bounds the unsent bytes the kernel keeps per socket. Other
/// clients are answered meanwhile.
#[test]
fn slow_readers_leave_little_in_the_kernel() {
    let _serial = serial();
    let www = TempDir::new("memory-slowread");
    www.write("big.bin", &vec![7u8; 1 << 20]);
    let root = www.path().to_str().unwrap();
    let srv = Server::start(&["--root", root]);
    let addr = srv.addr("http");
    const N: usize = 100;
    let request = b"GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n".repeat(3);
    let readers: Vec<TcpStream> = (0..N)
        .map(|_| {
            let mut s = small_window_client(addr, 1024);
            s.write_all(&request).expect("send requests");
            s
        })
        .collect();
    let out = settled_bytes_out(&srv);
    let queued = kernel_send_queues(addr.port());
    let per_conn = 128 * 1024;
    eprintln!("{N} slow readers: the kernel holds {queued} bytes, the server wrote {out}");
    assert!(
        queued <= (N * per_conn) as u64,
        "the kernel holds {queued} bytes for {N} slow readers, over {per_conn} each"
    );
    assert!(
        out <= (N * per_conn) as u64,
        "the server wrote {out} bytes to {N} readers that read nothing"
    );
    assert_eq!(http_get(addr, "/").status, 200, "others are served");
    drop(readers);
    srv.stop("slow readers");
}

// ---------------------------------------------------------------- hogs

/// How a hog talks to the server: what it connects to and what it sends,
/// over and over, never reading an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hog {
    /// Echo: bytes.
    Echo,
    /// Chat: `/help`, whose replies go to the sender.
    Chat,
    /// HTTP: one `GET /` per write.
    KeepAlive,
    /// HTTP: batches of pipelined requests: `/`, the `/chat` page,
    /// `/stats`, a directory listing.
    Pipelined,
    /// WebSocket chat: `/help` messages.
    WsChat,
    /// WebSocket: pings with 125-byte payloads (each is answered).
    WsPing,
    /// WebSocket echo: binary messages of `WS_ECHO_MESSAGE` bytes.
    WsEcho,
    /// Echo over TLS.
    TlsEcho,
    /// HTTPS: pipelined requests.
    Https,
}

/// Every kind, in the order the proof runs them.
const HOGS: [Hog; 9] = [
    Hog::Echo,
    Hog::Chat,
    Hog::KeepAlive,
    Hog::Pipelined,
    Hog::WsChat,
    Hog::WsPing,
    Hog::WsEcho,
    Hog::TlsEcho,
    Hog::Https,
];

/// The size of a WebSocket echo hog's messages: a quarter of the default
/// `--ws-max-message`, so the bound is about messages, not the output cap.
const WS_ECHO_MESSAGE: usize = 256 << 10;

/// Most bytes a hog sends: far past any cap, so a server that did not
/// stop it would show it in its memory.
const HOG_MAX: usize = 32 << 20;

/// The documented bound on what one connection of `hog` can make the
/// server hold (`docs/LIMITS.md`, "What a connection can hold"), in bytes
/// of memory: its buffers as they grow (by powers of two) plus its
/// protocol's state, with the defaults (a 64 KiB output cap, 16 KiB reads).
fn bound(hog: Hog) -> u64 {
    match hog {
        // The output cap and one read, in storage that doubles as it grows.
        Hog::Echo | Hog::Chat | Hog::WsChat | Hog::WsPing => 160 << 10,
        // The cap plus one response (the largest here is the 13 KiB /chat
        // page), and the unanswered requests of one read.
        Hog::KeepAlive | Hog::Pipelined => 176 << 10,
        // The same, plus TLS's own buffers (32 KiB of records read ahead,
        // one record written ahead) and its state (about 4 KiB).
        Hog::TlsEcho | Hog::Https => 240 << 10,
        // No new message while the output is at its cap: the cap plus one
        // message (and its header) queued, and one message being
        // reassembled plus one read, each in storage rounded up to a
        // power of two (512 KiB + 512 KiB for 256 KiB messages); 32 KiB
        // for the decoder's state and the allocator's rounding.
        Hog::WsEcho => ws_echo_bound(64 << 10, WS_ECHO_MESSAGE as u64) + (32 << 10),
    }
}

/// What `docs/LIMITS.md` says a WebSocket echo connection that never
/// reads can make the server hold, with an output cap of `cap` and
/// messages of `m` bytes: the output (the cap, less a byte, plus one
/// message and its 10-byte header) and the input (one message and its
/// 14-byte header, plus the 16 KiB a read makes room for), each rounded
/// up to a power of two.
fn ws_echo_bound(cap: u64, m: u64) -> u64 {
    (cap + m + 10).next_power_of_two() + (m + 14 + (16 << 10)).next_power_of_two()
}

/// What the server may hold beside its connections, and what a freed
/// connection may leave behind for a while: the buffer pool keeps up to
/// 4 MiB of free buffers until its next trim, and the allocator keeps some
/// of what was freed.
const SLACK: u64 = 12 << 20;

/// The hogs' number: `HOGS` in the environment, or 50.
fn hog_count() -> usize {
    std::env::var("HOGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
}

/// The server's addresses and what a TLS client needs.
struct Target {
    /// The server under test.
    srv: Server,
    /// Trusts the server's self-signed certificate.
    tls: Arc<ClientConfig>,
    /// The certificate's and the served files' directory.
    _dir: TempDir,
}

/// Starts a server with every service the hogs use (and `extra` flags).
fn target(extra: &[&str]) -> Target {
    let dir = TempDir::new("memory-hogs");
    let (cert, key) = reactor::tls::write_self_signed(dir.path()).unwrap();
    for i in 0..200 {
        dir.write(&format!("www/listed/file-{i:04}.txt"), b"x");
    }
    let www = dir.path().join("www");
    let (cert_s, key_s) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let mut args = vec![
        "--echo",
        "127.0.0.1:0",
        "--chat",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--https",
        "127.0.0.1:0",
        "--tls-echo",
        "127.0.0.1:0",
        "--tls-cert",
        cert_s,
        "--tls-key",
        key_s,
        "--root",
        www.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let srv = Server::start(&args);
    Target {
        srv,
        tls: client_config(&cert),
        _dir: dir,
    }
}

/// A client configuration trusting the certificate in `cert`.
fn client_config(cert: &Path) -> Arc<ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    Arc::new(
        ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A stream a hog writes to: plain TCP, or TLS over it.
enum Pipe {
    /// Plain.
    Tcp(TcpStream),
    /// TLS, handshake done.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Pipe {
    /// Writes what the socket takes of `data`; an error when it takes
    /// nothing for a while (the server stopped reading) or closed.
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self {
            Pipe::Tcp(s) => s.write(data),
            Pipe::Tls(t) => t.write(data),
        }
    }
}

/// A hog's TCP connection: a small receive window (so the kernel on the
/// client's side absorbs little), and writes that give up after 200 ms.
fn hog_socket(addr: SocketAddr) -> TcpStream {
    let s = small_window_client(addr, 4096);
    s.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// The WebSocket handshake to `path` on `s` (answered 101, read to its
/// end).
fn ws_handshake(s: &mut TcpStream, path: &str) {
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("101 response");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
}

/// A masked client frame with `opcode` and `payload`.
fn ws_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![0x80 | opcode];
    match payload.len() {
        n if n <= 125 => f.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Connects one hog of kind `hog` (handshakes done) and the block it
/// sends over and over.
fn connect_hog(t: &Target, hog: Hog) -> (Pipe, Vec<u8>) {
    let addr = |svc| t.srv.addr(svc);
    let pipelined = [
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /chat HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /stats HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /listed/ HTTP/1.1\r\nHost: a\r\n\r\n",
    ]
    .concat()
    .repeat(64)
    .into_bytes();
    let tls = |a: SocketAddr| {
        let name = ServerName::try_from("localhost").unwrap();
        let conn = ClientConnection::new(t.tls.clone(), name).unwrap();
        let mut s = StreamOwned::new(conn, hog_socket(a));
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).expect("TLS handshake");
        }
        Pipe::Tls(Box::new(s))
    };
    match hog {
        Hog::Echo => (Pipe::Tcp(hog_socket(addr("echo"))), vec![b'e'; 64 << 10]),
        Hog::Chat => (Pipe::Tcp(hog_socket(addr("chat"))), b"/help\n".repeat(1000)),
        Hog::KeepAlive => (
            Pipe::Tcp(hog_socket(addr("http"))),
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        ),
        Hog::Pipelined => (Pipe::Tcp(hog_socket(addr("http"))), pipelined),
        Hog::WsEcho => {
            let mut s = hog_socket(addr("http"));
            ws_handshake(&mut s, "/ws/echo");
            (Pipe::Tcp(s), ws_frame(2, &[b'w'; WS_ECHO_MESSAGE]))
        }
        Hog::WsChat | Hog::WsPing => {
            let mut s = hog_socket(addr("http"));
            ws_handshake(&mut s, "/ws");
            let block = if hog == Hog::WsChat {
                ws_frame(1, b"/help").repeat(1000)
            } else {
                ws_frame(9, &[b'p'; 125]).repeat(400)
            };
            (Pipe::Tcp(s), block)
        }
        Hog::TlsEcho => (tls(addr("tls-echo")), vec![b't'; 64 << 10]),
        Hog::Https => (tls(addr("https")), pipelined),
    }
}

/// The server's resident memory, its highest of five readings 50 ms apart.
fn rss_settled(srv: &Server) -> u64 {
    (0..5)
        .map(|_| {
            thread::sleep(Duration::from_millis(50));
            srv.rss_kib() * 1024
        })
        .max()
        .unwrap_or(0)
}

/// One round trip on each service, as a client that reads would make it.
fn served(t: &Target) {
    let mut echo = connect(t.srv.addr("echo"));
    echo_roundtrip(&mut echo, b"still served\n", "echo beside the hogs");
    let mut chat = Lines::new(connect(t.srv.addr("chat")), "chat beside the hogs");
    assert!(chat.line().starts_with("* welcome"));
    chat.get_mut().write_all(b"/rooms\n").unwrap();
    chat.until(|l| l.starts_with("* rooms")); // past any room notices
    assert_eq!(http_get(t.srv.addr("http"), "/").status, 200);
}

/// What one proof run measured.
#[derive(Debug)]
struct Held {
    /// Growth of the server's RSS with the hogs holding.
    growth: u64,
    /// What was still above the baseline once they had gone.
    left: u64,
    /// Bytes the hogs got the server to take, all together.
    sent: u64,
}

/// Opens `n` hogs of kind `hog`; once all are stalled (the server stopped
/// reading them) or done, measures the server's memory, checks that a
/// reading client is served, then closes them and measures again.
fn hold(t: &Target, hog: Hog, n: usize) -> Held {
    served(t);
    let before = rss_settled(&t.srv);
    let (stalled_tx, stalled_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let go_rx = Arc::new(std::sync::Mutex::new(go_rx));
    let mut threads = Vec::new();
    for _ in 0..n {
        let (mut pipe, block) = connect_hog(t, hog);
        let (stalled_tx, go_rx) = (stalled_tx.clone(), go_rx.clone());
        threads.push(thread::spawn(move || {
            let mut sent = 0usize;
            let mut at = 0;
            while sent < HOG_MAX {
                match pipe.write(&block[at..]) {
                    Ok(0) => break,
                    Ok(k) => {
                        sent += k;
                        at = (at + k) % block.len();
                    }
                    // The server stopped reading (or dropped us): stalled.
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = stalled_tx.send(sent);
            // Hold the connection until told, never reading.
            let _ = go_rx.lock().unwrap().recv();
            drop(pipe);
        }));
    }
    let mut sent = 0u64;
    for _ in 0..n {
        sent += stalled_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("a hog neither stalled nor finished within 60 s") as u64;
    }
    let holding = rss_settled(&t.srv);
    served(t);
    drop(go_tx);
    for th in threads {
        th.join().unwrap();
    }
    let ok = wait_until(Duration::from_secs(10), || t.srv.stats()["open"] == 1);
    assert!(
        ok,
        "{hog:?}: hogs still open after they closed: {:?}",
        t.srv.stats()
    );
    // The pool gives back what sat unused for a whole second.
    thread::sleep(Duration::from_millis(2100));
    let after = rss_settled(&t.srv);
    Held {
        growth: holding.saturating_sub(before),
        left: after.saturating_sub(before),
        sent,
    }
}

/// The proof for every service, on a server started with `extra`: each
/// case is measured and reported, then any that broke its bound fails.
fn prove_every_service(extra: &[&str], what: &str) {
    let n = hog_count();
    let t = target(extra);
    let mut broken = Vec::new();
    for hog in HOGS {
        let held = hold(&t, hog, n);
        let limit = n as u64 * bound(hog) + SLACK;
        eprintln!(
            "{what} {hog:?}: {n} hogs sent {} MB; RSS +{} KiB holding ({} B per hog, bound {} B), +{} KiB after they left",
            held.sent >> 20,
            held.growth >> 10,
            held.growth / n as u64,
            bound(hog),
            held.left >> 10
        );
        if held.growth > limit {
            broken.push(format!(
                "{hog:?}: {n} hogs grew the server by {} KiB, over {n} x {} + {} KiB",
                held.growth >> 10,
                bound(hog) >> 10,
                SLACK >> 10
            ));
        }
        if held.left > SLACK {
            broken.push(format!(
                "{hog:?}: {} KiB still held after the hogs left",
                held.left >> 10
            ));
        }
    }
    assert!(broken.is_empty(), "{what}: {broken:#?}");
    t.srv.stop(what);
}

/// Every service, one loop: hogs are held to the per-connection bound.
#[test]
fn hogs_are_bounded_for_every_service() {
    let _serial = serial();
    prove_every_service(&[], "one loop");
}

/// The same with two loops sharing the ports.
#[test]
fn hogs_are_bounded_for_every_service_on_two_loops() {
    let _serial = serial();
    prove_every_service(&["--threads", "2"], "two loops");
}

/// `--max-client-memory`: many echo hogs whose caps add up to far more
/// than it allows. The largest are evicted until the whole is under it:
/// memory stays near the cap, the eviction is counted and logged once,
/// and a reading client is still served.
#[test]
fn max_client_memory_evicts_the_largest() {
    let _serial = serial();
    let t = target(&["--max-client-memory", "4m"]);
    served(&t);
    let before = rss_settled(&t.srv);
    let n = 200;
    let hogs: Vec<_> = (0..n).map(|_| connect_hog(&t, Hog::Echo)).collect();
    let handles: Vec<_> = hogs
        .into_iter()
        .map(|(mut pipe, block)| {
            thread::spawn(move || {
                let mut sent = 0;
                while sent < HOG_MAX {
                    match pipe.write(&block) {
                        Ok(k) if k > 0 => sent += k,
                        _ => break,
                    }
                }
                pipe
            })
        })
        .collect();
    let pipes: Vec<Pipe> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let holding = rss_settled(&t.srv);
    let stats = t.srv.stats();
    eprintln!(
        "max-client-memory 4m: {n} echo hogs: RSS +{} KiB, evicted {}, client_memory {} B, episodes {}",
        holding.saturating_sub(before) >> 10,
        stats["evicted"],
        stats["client_memory"],
        stats["memory_episodes"]
    );
    assert!(stats["evicted"] > 0, "nobody evicted: {stats:?}");
    // Checked once a turn: a turn's reads may take it one connection over.
    assert!(
        stats["client_memory"] <= (4 << 20) + bound(Hog::Echo),
        "{stats:?}"
    );
    assert!(
        holding.saturating_sub(before) <= (4 << 20) + SLACK,
        "RSS grew by {} KiB with a 4 MiB cap",
        holding.saturating_sub(before) >> 10
    );
    served(&t);
    drop(pipes);
    let log = t.srv.log();
    let episodes = log.matches("over --max-client-memory").count() as u64;
    assert_eq!(
        episodes, stats["memory_episodes"],
        "one log line per episode"
    );
    t.srv.stop("max-client-memory");
}

/// What a chat member that never reads absorbs is bounded by the flags,
/// not by the kernel: `--chat-output-hard` (1 MiB) of unsent output, plus
/// what the kernel may hold for its socket (`TCP_NOTSENT_LOWAT`'s 16 KiB
/// unsent, and what its own receive buffer took). The room says 20,000
/// lines of 220 bytes (4.4 MB) while one member reads nothing: it is
/// dropped, having been sent at most the cap and the kernel's share. (With
/// the send buffer left to autotune, the kernel took about 4.6 MB for it
/// first, and it was never dropped.) One sender says them all, so no
/// other member has anything to keep up with.
#[test]
fn a_chat_member_that_never_reads_is_dropped_at_the_flag() {
    let _serial = serial();
    let srv = Server::start(&["--chat", "127.0.0.1:0"]);
    let chat = srv.addr("chat");
    let rcvbuf = 64 * 1024;
    let mut deaf = Lines::new(small_window_client(chat, rcvbuf), "non-reading member");
    deaf.get_mut().set_read_timeout(Some(TIMEOUT)).unwrap();
    assert!(deaf.line().starts_with("* welcome"));
    let mut sender = connect(chat);
    let block = format!("{}\n", "s".repeat(219)).repeat(100);
    for _ in 0..200 {
        write_all(&mut sender, block.as_bytes(), "sender");
    }
    // Input is handled in order: once `/rooms` is answered, every line
    // before it has been fanned out.
    write_all(&mut sender, b"/rooms\n", "sender");
    let mut said = Lines::new(sender, "sender");
    said.until(|l| l.starts_with("* rooms"));
    let sender = said;
    // Dropped: what it was sent, then EOF (a member still in the room gets
    // no EOF, and this fails when the read times out).
    let (rest, _) = deaf.rest();
    eprintln!(
        "a member that never reads, in a room that said 4.4 MB: dropped after being sent {} bytes",
        rest.len()
    );
    assert_eq!(srv.stats()["slow_dropped"], 1);
    let bound = (1 << 20) + 16 * 1024 + 2 * rcvbuf + 64 * 1024;
    assert!(
        rest.len() <= bound,
        "it was sent {} bytes before its drop, over {bound}",
        rest.len()
    );
    drop(sender);
    srv.stop("never-reading member");
}

/// Says the lines of `sender` into its room, 100 lines of 220 bytes at a
/// time, until `/stats` counts an eviction (at most 4.4 MB).
fn say_until_evicted(srv: &Server, sender: &mut TcpStream) {
    let block = format!("{}\n", "s".repeat(219)).repeat(100);
    for i in 0..200 {
        write_all(sender, block.as_bytes(), "sender");
        if i % 10 == 9 && srv.stats()["evicted"] > 0 {
            return;
        }
    }
    let ok = wait_until(Duration::from_secs(10), || srv.stats()["evicted"] > 0);
    assert!(ok, "nobody evicted after 4.4 MB: {:?}", srv.stats());
}

/// `--max-client-memory` on a chat member (`docs/LIMITS.md`, "memory of
/// all connections"): a member that never reads holds the room's lines
/// for it until the connections together pass the cap (512 KiB, under
/// `--chat-output-hard`'s 1 MiB), and it is the largest: it is evicted
/// with `ERROR too slow` after whole lines, the room hears it left (too
/// slow), and the sender is still served.
#[test]
fn max_client_memory_evicts_a_chat_member_with_too_slow() {
    let _serial = serial();
    // A long linger: the member reads what it was left only once the
    // sender is done.
    let srv = Server::start(&[
        "--chat",
        "127.0.0.1:0",
        "--max-client-memory",
        "512k",
        "--linger",
        "60s",
    ]);
    let chat = srv.addr("chat");
    let rcvbuf = 64 * 1024;
    let mut deaf = Lines::new(small_window_client(chat, rcvbuf), "non-reading member");
    deaf.get_mut().set_read_timeout(Some(TIMEOUT)).unwrap();
    assert!(deaf.line().starts_with("* welcome"));
    let mut sender = connect(chat);
    say_until_evicted(&srv, &mut sender);
    write_all(&mut sender, b"/rooms\n", "sender");
    let mut said = Lines::new(sender, "sender");
    said.until(|l| l.ends_with(" left lobby (too slow)\n"));
    said.until(|l| l.starts_with("* rooms"));
    let (rest, _) = deaf.rest();
    let stats = srv.stats();
    eprintln!(
        "max-client-memory 512k: a chat member that never reads, evicted after being sent {} bytes; {stats:?}",
        rest.len()
    );
    assert_eq!(stats["evicted"], 1, "{stats:?}");
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.ends_with(&format!(
            "{}\nERROR too slow: output limit reached, disconnecting\n",
            "s".repeat(219)
        )),
        "not whole lines and then the error: ...{:?}",
        &text[text.len().saturating_sub(300)..]
    );
    // Dropped at the memory cap, not at the member's own hard cap.
    assert!(rest.len() < 1 << 20, "it was sent {} bytes", rest.len());
    drop((said, deaf));
    srv.stop("chat member evicted");
}

/// The same for a WebSocket chat member: evicted and closed at once (no
/// message, as for a close without a word); the TCP member beside it
/// hears it left (too slow).
#[test]
fn max_client_memory_closes_a_websocket_member() {
    let _serial = serial();
    let srv = Server::start(&["--chat", "127.0.0.1:0", "--max-client-memory", "512k"]);
    let mut s = small_window_client(srv.addr("http"), 64 * 1024);
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    ws_handshake(&mut s, "/ws");
    let mut deaf = util::ws::Ws::over(s.try_clone().unwrap());
    assert!(deaf.recv().text().starts_with("* welcome"));
    let mut sender = connect(srv.addr("chat"));
    say_until_evicted(&srv, &mut sender);
    write_all(&mut sender, b"/rooms\n", "sender");
    let mut said = Lines::new(sender, "sender");
    said.until(|l| l.ends_with(" left lobby (too slow)\n"));
    said.until(|l| l.starts_with("* rooms"));
    drop(deaf);
    // Closed: what the kernel held for it, then the end (a reset or EOF).
    let (rest, end) = read_to_end(&mut s, "evicted WebSocket member");
    let stats = srv.stats();
    eprintln!(
        "max-client-memory 512k: a WebSocket member that never reads, closed ({end:?}) after {} more bytes; {stats:?}",
        rest.len()
    );
    assert_eq!(stats["evicted"], 1, "{stats:?}");
    assert!(rest.len() < 1 << 20, "it was sent {} bytes", rest.len());
    drop((said, s));
    srv.stop("WebSocket member evicted");
}

/// The same for HTTP: a client that pipelines requests and never reads
/// holds its responses until the connections pass the cap (96 KiB, under
/// one such client's 176 KiB bound); it is closed, and others are still
/// served.
#[test]
fn max_client_memory_closes_an_http_connection() {
    let _serial = serial();
    let t = target(&["--max-client-memory", "96k"]);
    served(&t);
    let (mut pipe, block) = connect_hog(&t, Hog::Pipelined);
    let mut sent = 0;
    while sent < HOG_MAX {
        match pipe.write(&block) {
            Ok(k) if k > 0 => sent += k,
            _ => break,
        }
    }
    let ok = wait_until(Duration::from_secs(10), || t.srv.stats()["evicted"] > 0);
    assert!(ok, "nobody evicted: {:?}", t.srv.stats());
    let Pipe::Tcp(mut s) = pipe else {
        unreachable!("a plain HTTP hog")
    };
    // Closed: the responses the kernel took for it, then the end.
    let (rest, end) = read_to_end(&mut s, "evicted HTTP client");
    let stats = t.srv.stats();
    eprintln!(
        "max-client-memory 96k: an HTTP client pipelining {} KiB of requests and never reading, closed ({end:?}) after {} bytes of responses; {stats:?}",
        sent >> 10,
        rest.len()
    );
    assert_eq!(stats["evicted"], 1, "{stats:?}");
    drop(s);
    served(&t);
    t.srv.stop("HTTP connection evicted");
}
