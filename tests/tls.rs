//! TLS: echo and HTTPS through a rustls client, and the faults a TLS port
//! meets (plaintext, a trickled ClientHello, no close_notify, a garbage
//! record, a handshake that never ends). Certificates are made in-test
//! with rcgen; every blocking step is bounded; ports come from the OS.

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reactor::{Config, Handle, Server, Service, Stats};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use util::{Rng, TIMEOUT, loopback0, wait_until};

/// A TLS client over a blocking socket with timeouts.
type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A fresh directory under the system temp dir.
fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "reactor-tls-{tag}-{}-{:?}",
        std::process::id(),
        Instant::now()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A server with `https` and `tls_echo` on ephemeral ports, a cert made
/// for it, and the client configuration that trusts it.
struct Setup {
    /// Stops the server (on drop too) and reads its counters.
    handle: Handle,
    /// HTTPS address.
    https: SocketAddr,
    /// TLS echo address.
    echo: SocketAddr,
    /// Trusts the generated certificate; offers ALPN http/1.1.
    client: Arc<ClientConfig>,
    /// Where the certificate lives.
    dir: PathBuf,
}

impl Setup {
    /// Waits (bounded) until the counters satisfy `cond`.
    fn wait_stats(&self, what: &str, cond: impl Fn(&Stats) -> bool) {
        let ok = wait_until(TIMEOUT, || cond(&self.handle.stats()));
        assert!(ok, "never {what}: {:?}", self.handle.stats());
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.handle.shutdown();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts a TLS server; `tweak` adjusts the config first.
fn setup(tag: &str, tweak: impl FnOnce(&mut Config)) -> Setup {
    let dir = temp_dir(tag);
    let (cert, key) = reactor::tls::write_self_signed(&dir).unwrap();
    let mut cfg = Config::empty();
    cfg.https = Some(loopback0());
    cfg.tls_echo = Some(loopback0());
    cfg.tls_cert = Some(cert.clone());
    cfg.tls_key = Some(key);
    tweak(&mut cfg);
    let server = Server::bind(cfg).unwrap_or_else(|e| panic!("bind: {e}"));
    let https = server.local_addr(Service::Https).unwrap();
    let echo = server.local_addr(Service::TlsEcho).unwrap();
    let handle = server.handle();
    std::thread::spawn(move || server.run());
    Setup {
        handle,
        https,
        echo,
        client: client_config(&cert),
        dir,
    }
}

/// A client configuration trusting the certificate in `cert`.
fn client_config(cert: &Path) -> Arc<ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// A TCP connection with timeouts.
fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A TLS client connected to `addr`, handshake done.
fn connect(cfg: &Arc<ClientConfig>, addr: SocketAddr) -> Tls {
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(cfg.clone(), name).unwrap();
    let mut tls = StreamOwned::new(conn, tcp(addr));
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("handshake");
    }
    tls
}

/// Reads exactly `n` bytes.
fn read_n(s: &mut impl Read, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).expect("read_exact");
    buf
}

/// Reads one HTTP response (head and Content-Length body); returns both.
fn read_response(s: &mut impl Read) -> (String, Vec<u8>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.trim().parse::<usize>().unwrap())
        })
        .expect("content-length");
    (head, read_n(s, len))
}

/// True once `s` reads EOF or an error (the server closed it).
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let end = Instant::now() + TIMEOUT;
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                return false;
            }
            Err(_) => return true,
        }
    }
    false
}

/// A normal TLS client is still served, and nothing stays open after.
fn still_serves(t: &Setup) {
    let mut c = connect(&t.client, t.echo);
    c.write_all(b"still here").unwrap();
    assert_eq!(read_n(&mut c, 10), b"still here");
    drop(c);
    t.wait_stats("open == 0", |s| s.open == 0);
}

#[test]
fn echo_is_byte_exact_under_random_fragmentation() {
    let t = setup("echo", |_| {});
    let mut rng = Rng::new(7);
    // Plaintext writes of random sizes: one record per write.
    let mut c = connect(&t.client, t.echo);
    for _ in 0..40 {
        let n = rng.range(1, 40_000);
        let msg = rng.bytes(n);
        c.write_all(&msg).unwrap();
        assert!(read_n(&mut c, n) == msg, "echo differs ({n} bytes)");
    }
    drop(c);
    // Ciphertext cut at random points: records arrive in pieces.
    let mut c = connect(&t.client, t.echo);
    for round in 0..20 {
        let n = rng.range(1, 20_000);
        let msg = rng.bytes(n);
        c.conn.writer().write_all(&msg).unwrap();
        let mut wire = Vec::new();
        while c.conn.wants_write() {
            c.conn.write_tls(&mut wire).unwrap();
        }
        let mut at = 0;
        while at < wire.len() {
            let k = rng.range(1, 700).min(wire.len() - at);
            c.sock.write_all(&wire[at..at + k]).unwrap();
            at += k;
            if rng.chance(8) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        assert!(read_n(&mut c, n) == msg, "round {round}: echo differs");
    }
    c.conn.send_close_notify();
    c.conn.complete_io(&mut c.sock).unwrap();
    drop(c);
    still_serves(&t);
}

/// A thousand one-byte records in one write (a client that writes each
/// small message as its own record, as a WebSocket client writing 64-byte
/// fragments does): every round of the server's TLS state machine uses one
/// record, and all of them must be used, however many there are in a read.
/// (With a cap on rounds per read, not only on rounds that used nothing,
/// the connection failed as "makes no progress".)
#[test]
fn a_burst_of_tiny_records_is_all_echoed() {
    let t = setup("tiny-records", |_| {});
    let mut c = connect(&t.client, t.echo);
    let msg: Vec<u8> = (0..1000).map(|i| b'a' + (i % 26) as u8).collect();
    for b in &msg {
        c.conn.writer().write_all(std::slice::from_ref(b)).unwrap();
    }
    let mut wire = Vec::new();
    while c.conn.wants_write() {
        c.conn.write_tls(&mut wire).unwrap();
    }
    assert!(wire.len() > 20 * msg.len(), "not one record per byte");
    c.sock.write_all(&wire).unwrap();
    assert!(read_n(&mut c, msg.len()) == msg, "echo differs");
    drop(c);
    still_serves(&t);
}

/// The client's last handshake flight and 12 KiB of data in one write:
/// the server decrypts the data before rustls reports the handshake done,
/// and must still send the echo once it is (the turn writes after reading).
#[test]
fn data_behind_the_last_handshake_flight_is_echoed() {
    let t = setup("echo", |_| {});
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(t.client.clone(), name).unwrap();
    let mut sock = tcp(t.echo);
    // The handshake, up to the client's Finished, which is held back.
    while conn.is_handshaking() {
        while conn.wants_write() && conn.is_handshaking() {
            conn.write_tls(&mut sock).unwrap();
        }
        if !conn.is_handshaking() {
            break;
        }
        conn.read_tls(&mut sock).expect("handshake bytes");
        conn.process_new_packets().expect("handshake");
    }
    let msg = Rng::new(11).bytes(12 * 1024);
    conn.writer().write_all(&msg).unwrap();
    let mut wire = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut wire).unwrap();
    }
    sock.write_all(&wire).unwrap(); // Finished and the data, together
    let mut tls = StreamOwned::new(conn, sock);
    assert!(read_n(&mut tls, msg.len()) == msg, "echo differs");
    still_serves(&t);
}

#[test]
fn https_get_has_exact_body_hsts_and_alpn() {
    let t = setup("get", |_| {});
    let mut c = connect(&t.client, t.https);
    assert_eq!(c.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    c.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let (head, body) = read_response(&mut c);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("\r\nStrict-Transport-Security: max-age=31536000\r\n"),
        "{head}"
    );
    assert!(String::from_utf8_lossy(&body).contains("Hello, client!"));
    // Our close_notify comes before FIN on a closing response.
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let _ = read_response(&mut c);
    let mut rest = Vec::new();
    c.read_to_end(&mut rest)
        .expect("clean close_notify, then EOF");
    assert!(rest.is_empty());
    drop(c);
    still_serves(&t);
}

#[test]
fn https_pipelined_requests_get_answers_in_order() {
    let t = setup("pipe", |_| {});
    let mut c = connect(&t.client, t.https);
    let one = "GET /stats HTTP/1.1\r\nHost: x\r\n\r\n";
    let reqs =
        format!("GET / HTTP/1.1\r\nHost: x\r\n\r\n{one}GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    c.write_all(reqs.as_bytes()).unwrap();
    let (h1, _) = read_response(&mut c);
    let (h2, b2) = read_response(&mut c);
    let (h3, _) = read_response(&mut c);
    assert!(h1.starts_with("HTTP/1.1 200"), "{h1}");
    assert!(
        h2.starts_with("HTTP/1.1 200") && b2.starts_with(b"{"),
        "{h2}"
    );
    assert!(h3.starts_with("HTTP/1.1 404"), "{h3}");
    assert!(h3.contains("Strict-Transport-Security"), "{h3}");
    drop(c);
    still_serves(&t);
}

#[test]
fn https_large_file_is_byte_exact() {
    let root = temp_dir("root");
    let mut rng = Rng::new(11);
    let data = rng.bytes(3 * 1024 * 1024 + 123);
    std::fs::write(root.join("big.bin"), &data).unwrap();
    let t = setup("big", |cfg| cfg.http_config.root = Some(root.clone()));
    let mut c = connect(&t.client, t.https);
    c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (head, body) = read_response(&mut c);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body == data, "file body differs");
    drop(c);
    still_serves(&t);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn plain_http_on_the_tls_port_is_closed() {
    let t = setup("plain", |_| {});
    let mut s = tcp(t.https);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(closed_by_server(&mut s), "plaintext connection left open");
    still_serves(&t);
}

#[test]
fn garbage_record_after_handshake_is_closed() {
    let t = setup("garbage", |_| {});
    let mut c = connect(&t.client, t.echo);
    c.write_all(b"ok").unwrap();
    assert_eq!(read_n(&mut c, 2), b"ok");
    // An application-data record whose bytes are noise: bad MAC.
    let mut rec = vec![23, 3, 3, 0, 64];
    rec.extend(Rng::new(3).bytes(64));
    c.sock.write_all(&rec).unwrap();
    assert!(closed_by_server(&mut c.sock), "garbage record left open");
    still_serves(&t);
}

#[test]
fn close_without_close_notify_is_an_ordinary_close() {
    let t = setup("nonotify", |_| {});
    let mut c = connect(&t.client, t.echo);
    c.write_all(b"bye").unwrap();
    assert_eq!(read_n(&mut c, 3), b"bye");
    c.sock.shutdown(std::net::Shutdown::Both).unwrap();
    drop(c);
    still_serves(&t);
}

/// A ClientHello as bytes, from a real client.
fn client_hello(cfg: &Arc<ClientConfig>) -> Vec<u8> {
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(cfg.clone(), name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

#[test]
fn trickled_client_hello_meets_the_header_deadline() {
    let t = setup("slow", |cfg| {
        cfg.limits.header_timeout = Duration::from_millis(1500);
    });
    let hello = client_hello(&t.client);
    let mut s = tcp(t.https);
    let start = Instant::now();
    let mut closed = false;
    for b in &hello {
        if s.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        // One byte a second would take minutes; 100 ms shows the same.
        std::thread::sleep(Duration::from_millis(100));
        if start.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    assert!(closed || closed_by_server(&mut s), "slow hello left open");
    assert!(start.elapsed() < Duration::from_secs(6));
    still_serves(&t);
}

#[test]
fn handshake_that_never_finishes_is_closed() {
    let t = setup("stall", |cfg| {
        cfg.limits.header_timeout = Duration::from_millis(800);
    });
    let mut s = tcp(t.echo);
    s.write_all(&client_hello(&t.client)).unwrap();
    // Read the server's flight, then say nothing more.
    let start = Instant::now();
    assert!(closed_by_server(&mut s), "stalled handshake left open");
    assert!(start.elapsed() < Duration::from_secs(5));
    let timed_out = wait_until(TIMEOUT, || t.handle.stats().timeouts >= 1);
    assert!(timed_out, "no deadline fired");
    still_serves(&t);
}

#[test]
fn missing_certificate_is_a_one_line_error() {
    let out = std::process::Command::new(util::bin_path())
        .args(["serve", "--https", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("--tls-cert"), "{err}");
}

#[test]
fn cert_subcommand_writes_cert_and_key() {
    let dir = temp_dir("cert");
    let out = std::process::Command::new(util::bin_path())
        .args(["cert", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("cert.pem"));
    let cfg = client_config(&dir.join("cert.pem"));
    assert!(!cfg.alpn_protocols.is_empty());
    assert!(dir.join("key.pem").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Promise: `wss://`: the WebSocket upgrade works over `--https`, frames
/// travel inside TLS both ways, and the member shares the hub.
#[test]
fn websocket_over_tls() {
    let t = setup("wss", |_| {});
    let mut c = connect(&t.client, t.https);
    c.write_all(
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut byte).expect("101 head");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    // The welcome arrives as a text frame.
    let h = read_n(&mut c, 2);
    assert_eq!(h[0], 0x81, "a final text frame");
    let welcome = read_n(&mut c, usize::from(h[1] & 0x7F));
    assert!(welcome.starts_with(b"* welcome to reactor chat"));
    // `/quit`, masked, is answered with close 1000 and a clean close.
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![0x81, 0x80 | 5];
    f.extend_from_slice(&mask);
    f.extend(b"/quit".iter().zip(mask.iter().cycle()).map(|(b, k)| b ^ k));
    c.write_all(&f).unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest)
        .expect("close frame, close_notify, EOF");
    assert!(rest.ends_with(&[0x88, 2, 0x03, 0xE8]), "{rest:?}");
    drop(c);
    t.wait_stats("the member gone", |s| {
        s.ws_upgrades == 1 && s.open_by.ws == 0
    });
}
