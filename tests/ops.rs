//! Running it for real (issue 19), against the binary: the access log
//! (parsed back field by field, rotated with SIGUSR1), the config file
//! (against the same flags, its mistakes, SIGHUP), the certificate
//! reloaded under load, systemd's readiness datagram, completions, the man
//! page and the unit file.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use util::*;

/// One access-log line, split into its nine fields.
#[derive(Debug, PartialEq, Eq)]
struct Line {
    addr: String,
    ident: String,
    user: String,
    time: String,
    request: String,
    status: u16,
    bytes: u64,
    referer: String,
    agent: String,
}

/// Parses a Combined Log Format line (quoted fields have no bare `"`:
/// the server escapes them), or panics saying why.
fn parse(line: &str) -> Line {
    let bad = |why: &str| -> ! { panic!("{why}: {line:?}") };
    let (addr, rest) = line.split_once(' ').unwrap_or_else(|| bad("no address"));
    let (ident, rest) = rest.split_once(' ').unwrap_or_else(|| bad("no ident"));
    let (user, rest) = rest.split_once(' ').unwrap_or_else(|| bad("no user"));
    let rest = rest.strip_prefix('[').unwrap_or_else(|| bad("no ["));
    let (time, rest) = rest.split_once("] \"").unwrap_or_else(|| bad("no time"));
    let (request, rest) = rest.split_once("\" ").unwrap_or_else(|| bad("no request"));
    let (status, rest) = rest.split_once(' ').unwrap_or_else(|| bad("no status"));
    let (bytes, rest) = rest.split_once(" \"").unwrap_or_else(|| bad("no bytes"));
    let (referer, rest) = rest
        .split_once("\" \"")
        .unwrap_or_else(|| bad("no referer"));
    let agent = rest.strip_suffix('"').unwrap_or_else(|| bad("no agent"));
    assert!(!request.contains('"') && !referer.contains('"') && !agent.contains('"'));
    Line {
        addr: addr.into(),
        ident: ident.into(),
        user: user.into(),
        time: time.into(),
        request: request.into(),
        status: status.parse().unwrap_or_else(|_| bad("status")),
        bytes: bytes.parse().unwrap_or_else(|_| bad("bytes")),
        referer: referer.into(),
        agent: agent.into(),
    }
}

/// The lines of `path` (none if it does not exist yet).
fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits until `path` holds at least `n` lines; returns them.
fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    let ok = wait_until(TIMEOUT, || {
        got = lines_of(path);
        got.len() >= n
    });
    assert!(
        ok,
        "{} has {} lines, not {n}:\n{}",
        path.display(),
        got.len(),
        got.join("\n")
    );
    got
}

/// A CLF time: `06/Nov/1994:08:49:37 +0000`.
fn is_clf_time(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 26
        && b[2] == b'/'
        && b[6] == b'/'
        && b[11] == b':'
        && t.ends_with(" +0000")
        && b[..2].iter().all(u8::is_ascii_digit)
        && b[7..11].iter().all(u8::is_ascii_digit)
}

/// `reactor serve` with HTTP on port 0 and `extra`; its address.
fn serve_http(extra: &[&str]) -> (Bin, SocketAddr) {
    let mut args = vec!["serve", "--http", "127.0.0.1:0", "--log-level", "info"];
    args.extend_from_slice(extra);
    let mut bin = Bin::spawn(&args);
    let addr = bin
        .listening("http", TIMEOUT)
        .parse()
        .expect("http address");
    bin.wait_line("ready", TIMEOUT);
    (bin, addr)
}

/// Promise: one line per response in the Combined Log Format, each field
/// right, in order, for sequential keep-alive requests, a pipelined
/// batch, a refused head, and a WebSocket's upgrade and close.
#[test]
fn access_log_lines_parse_back_field_by_field() {
    let dir = TempDir::new("access");
    dir.write("www/hello.txt", b"hello from a file\n");
    let log = dir.path().join("access.log");
    let root = dir.path().join("www");
    let (bin, addr) = serve_http(&[
        "--root",
        root.to_str().unwrap(),
        "--access-log",
        log.to_str().unwrap(),
    ]);
    // (request line, status, body bytes, referer, agent) expected, in order.
    let mut want: Vec<(String, u16, u64, &str, &str)> = Vec::new();

    // Keep-alive: three requests one after another on one connection.
    let mut c = HttpClient::connect(addr, "keep-alive");
    let r = c.roundtrip(
        b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nReferer: http://ref.example/a\"b\r\nUser-Agent: test-agent/1.0\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    want.push((
        "GET /hello.txt HTTP/1.1".into(),
        200,
        18,
        "http://ref.example/a\\x22b",
        "test-agent/1.0",
    ));
    let r = c.roundtrip(b"GET /missing HTTP/1.1\r\nHost: t\r\n\r\n");
    want.push((
        "GET /missing HTTP/1.1".into(),
        404,
        r.body.len() as u64,
        "-",
        "-",
    ));
    c.send(b"HEAD /hello.txt HTTP/1.1\r\nHost: t\r\nUser-Agent: h\r\n\r\n");
    let r = c.response_to(true);
    assert_eq!(r.status, 200);
    want.push(("HEAD /hello.txt HTTP/1.1".into(), 200, 0, "-", "h"));

    // Pipelined: 20 requests in one write, answered in one batch.
    let mut c = HttpClient::connect(addr, "pipelined");
    let mut batch = Vec::new();
    for i in 0..20 {
        let path = if i % 2 == 0 {
            format!("/hello.txt?n={i}")
        } else {
            format!("/no-{i}")
        };
        batch.extend_from_slice(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nUser-Agent: p{i}\r\n\r\n").as_bytes(),
        );
        want.push((format!("GET {path} HTTP/1.1"), 0, 0, "-", ""));
    }
    c.send(&batch);
    let base = want.len() - 20;
    for i in 0..20 {
        let r = c.response();
        want[base + i].1 = r.status;
        want[base + i].2 = r.body.len() as u64;
    }
    drop(c);

    // A head refused: 400 for a request line that is not one.
    let mut s = connect(addr);
    s.write_all(b"NOT HTTP AT ALL\r\n\r\n").unwrap();
    let reply = read_until_eof(&mut s, "400");
    let body = reply.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(reply.starts_with(b"HTTP/1.1 400"));
    want.push((
        "NOT HTTP AT ALL".into(),
        400,
        (reply.len() - body) as u64,
        "-",
        "-",
    ));

    // A WebSocket: the 101 and, once it closes, its close line.
    let mut s = connect(addr);
    s.write_all(
        b"GET /ws/echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nUser-Agent: ws-client\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "101 head");
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    want.push(("GET /ws/echo HTTP/1.1".into(), 101, 0, "-", "ws-client"));
    drop(s);
    want.push(("WS-CLOSE /ws/echo".into(), 101, 0, "-", "-"));

    let got = wait_lines(&log, want.len());
    assert_eq!(got.len(), want.len(), "{}", got.join("\n"));
    for (i, (line, w)) in got.iter().zip(&want).enumerate() {
        let l = parse(line);
        assert_eq!(
            (l.addr.as_str(), l.ident.as_str(), l.user.as_str()),
            ("127.0.0.1", "-", "-"),
            "line {i}"
        );
        assert!(is_clf_time(&l.time), "line {i}: time {:?}", l.time);
        assert_eq!(l.request, w.0, "line {i}: request");
        assert_eq!(l.status, w.1, "line {i}: status");
        assert_eq!(l.bytes, w.2, "line {i}: bytes");
        assert_eq!(l.referer, w.3, "line {i}: referer");
        let agent = if w.4.is_empty() {
            format!("p{}", i - base)
        } else {
            w.4.to_string()
        };
        assert_eq!(l.agent, agent, "line {i}: agent");
    }
    // The body bytes of the pipelined 200s are the file's.
    assert!(
        want[base..base + 20]
            .iter()
            .step_by(2)
            .all(|w| w.1 == 200 && w.2 == 18)
    );
    drop(bin);
}

/// Promise: SIGUSR1 reopens the access log (rotation by rename, as
/// logrotate does it) and no line is lost or doubled across three
/// rotations under a steady stream of requests.
#[test]
fn sigusr1_rotation_loses_no_line() {
    let dir = TempDir::new("rotate");
    let log = dir.path().join("access.log");
    let (mut bin, addr) = serve_http(&["--access-log", log.to_str().unwrap()]);
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (done, stop) = (done.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut c = HttpClient::connect(addr, "stream");
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) || i < 300 {
                let r = c.roundtrip(format!("GET /?i={i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
                assert_eq!(r.status, 200);
                i += 1;
                done.store(i, Ordering::Relaxed);
                if i.is_multiple_of(97) {
                    c = HttpClient::connect(addr, "stream"); // a new connection now and then
                }
            }
            i
        })
    };
    for n in 1..=3 {
        let before = done.load(Ordering::Relaxed);
        assert!(wait_until(TIMEOUT, || done.load(Ordering::Relaxed) > before + 50));
        std::fs::rename(&log, dir.path().join(format!("access.log.{n}"))).unwrap();
        bin.signal("USR1");
        bin.wait_line("reopened", TIMEOUT);
    }
    stop.store(true, Ordering::Relaxed);
    let total = client.join().unwrap();
    let files: Vec<PathBuf> = (1..=3)
        .map(|n| dir.path().join(format!("access.log.{n}")))
        .chain([log.clone()])
        .collect();
    let mut seen = Vec::new();
    assert!(wait_until(TIMEOUT, || {
        seen = files.iter().flat_map(|f| lines_of(f)).collect();
        seen.len() as u64 >= total
    }));
    let numbers: Vec<u64> = seen
        .iter()
        .map(|l| {
            let req = parse(l).request;
            req.strip_prefix("GET /?i=")
                .and_then(|r| r.strip_suffix(" HTTP/1.1"))
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(
        numbers,
        (0..total).collect::<Vec<_>>(),
        "every request once, in order"
    );
    for f in &files[1..] {
        assert!(!lines_of(f).is_empty(), "{} got lines", f.display());
    }
}

/// The same settings as a config file and as flags give the same
/// configuration; flags on the command line win over the file.
#[test]
fn a_config_file_is_the_same_as_its_flags() {
    let dir = TempDir::new("conf");
    let file = dir.write(
        "reactor.toml",
        br#"
idle-timeout = "45s"
max-conns = 77
reuse-port = true
ws-origin = ["https://a.example", "https://b.example"]
access-log = "-"
max-body = "2k"
[http]
addr = "127.0.0.1:0"
[unix]
path = "/tmp/x.sock"
"#,
    );
    let flags = [
        "--idle-timeout",
        "45s",
        "--max-conns",
        "77",
        "--reuse-port",
        "--ws-origin",
        "https://a.example",
        "--ws-origin",
        "https://b.example",
        "--access-log",
        "-",
        "--max-body",
        "2k",
        "--http",
        "127.0.0.1:0",
        "--unix",
        "/tmp/x.sock",
    ];
    let argv = |rest: &[&str]| -> Vec<std::ffi::OsString> {
        ["reactor", "serve"]
            .iter()
            .chain(rest)
            .map(Into::into)
            .collect()
    };
    let from_flags = reactor::conffile::serve_args(&argv(&flags), Path::new("/dev/null")).unwrap();
    let from_file =
        reactor::conffile::serve_args(&argv(&["--config", file.to_str().unwrap()]), &file).unwrap();
    assert_eq!(
        format!("{:?}", from_file.to_config()),
        format!("{:?}", from_flags.to_config())
    );
    // The command line wins.
    let over = reactor::conffile::serve_args(
        &argv(&["--config", file.to_str().unwrap(), "--max-conns", "5"]),
        &file,
    )
    .unwrap();
    assert_eq!(over.max_conns, 5);
    assert_eq!(over.idle_timeout, Duration::from_secs(45));
}

/// Promise: the example in the repository is a valid config file, and
/// says what it says.
#[test]
fn the_example_config_file_parses() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/reactor.toml");
    let argv: Vec<std::ffi::OsString> = ["reactor", "serve", "--config", file.to_str().unwrap()]
        .iter()
        .map(Into::into)
        .collect();
    let args = reactor::conffile::serve_args(&argv, &file).unwrap();
    let config = args.to_config();
    // Parsed only: the example's production ports; nothing binds them.
    assert_eq!(config.http, Some("0.0.0.0:80".parse().unwrap()));
    assert_eq!(config.https, Some("0.0.0.0:443".parse().unwrap()));
    assert_eq!(
        config.access_log.as_deref(),
        Some(Path::new("/var/log/reactor/access.log"))
    );
    assert_eq!(
        config.http_config.root.as_deref(),
        Some(Path::new("/srv/www"))
    );
    assert_eq!(config.limits.keepalive_timeout, Duration::from_secs(60));
    assert_eq!(config.greet, None);
}

/// Promise: the binary serves what its config file says, with a flag on
/// the command line winning (here `--max-body`, so a body the file would
/// allow gets 413).
#[test]
fn the_binary_serves_its_config_file() {
    let dir = TempDir::new("confbin");
    dir.write("www/page.txt", b"from the root\n");
    let toml = format!(
        "max-body = \"1m\"\nroot = \"{}\"\n[http]\naddr = \"127.0.0.1:0\"\n",
        dir.path().join("www").display()
    );
    let file = dir.write("r.toml", toml.as_bytes());
    let mut bin = Bin::spawn(&[
        "serve",
        "--config",
        file.to_str().unwrap(),
        "--max-body",
        "10",
    ]);
    let addr: SocketAddr = bin.listening("http", TIMEOUT).parse().unwrap();
    assert_bytes_eq(
        &http_get(addr, "/page.txt").body,
        b"from the root\n",
        "file from the config's root",
    );
    let mut c = HttpClient::connect(addr, "body");
    let r = c.roundtrip(b"POST /page.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n");
    assert_eq!(r.status, 413, "the command line's --max-body 10 wins");
}

/// Promise: a mistake in the config file is exit status 2 and one line
/// naming the file, the line and the key.
#[test]
fn a_config_mistake_names_the_line_and_the_key() {
    let dir = TempDir::new("confbad");
    for (text, want) in [
        (
            "grace = \"5s\"\n\nidle-timeout = \"soon\"\n",
            ":3: key `idle-timeout`",
        ),
        (
            "[http]\naddr = \"127.0.0.1:0\"\nmax-conns = 3\n",
            ":3: key `http.max-conns`",
        ),
        ("max_conns = 3\n", ":1: key `max_conns`: no such setting"),
        ("root = \n", ":1:"),
    ] {
        let file = dir.write("bad.toml", text.as_bytes());
        let (st, _out, err) = run_bin(&["serve", "--config", file.to_str().unwrap()], TIMEOUT);
        assert_eq!(st.code(), Some(2), "{text:?}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(
            !lines.is_empty() && lines[0].contains(&format!("bad.toml{want}")),
            "{text:?}: {err}"
        );
    }
}

/// Promise: SIGHUP rereads the config file and applies its reloadable
/// settings (the root here), saying what changed; a broken file is
/// refused with an error line and the running settings kept.
#[test]
fn sighup_reloads_the_config_file() {
    let dir = TempDir::new("confhup");
    dir.write("a/which.txt", b"a\n");
    dir.write("b/which.txt", b"b\n");
    let conf = |root: &str| {
        format!(
            "root = \"{}\"\n[http]\naddr = \"127.0.0.1:0\"\n",
            dir.path().join(root).display()
        )
    };
    let file = dir.write("r.toml", conf("a").as_bytes());
    let mut bin = Bin::spawn(&["serve", "--config", file.to_str().unwrap()]);
    let addr: SocketAddr = bin.listening("http", TIMEOUT).parse().unwrap();
    bin.wait_line("ready", TIMEOUT);
    assert_bytes_eq(&http_get(addr, "/which.txt").body, b"a\n", "before");
    // Replaced as editors do: a new file renamed over the old.
    let tmp = dir.write("r.toml.new", conf("b").as_bytes());
    std::fs::rename(tmp, &file).unwrap();
    bin.signal("HUP");
    let line = bin.wait_line("config reloaded", TIMEOUT);
    assert!(line.contains("root"), "{line}");
    assert_bytes_eq(&http_get(addr, "/which.txt").body, b"b\n", "after SIGHUP");
    std::fs::write(&file, "root = [\n").unwrap();
    bin.signal("HUP");
    bin.wait_line("the running settings are kept", TIMEOUT);
    assert_bytes_eq(
        &http_get(addr, "/which.txt").body,
        b"b\n",
        "after a bad file",
    );
}

// ---------------------------------------------------------------- TLS

/// A rustls client trusting the certificates in `certs`.
fn tls_client(certs: &[PathBuf]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        for c in CertificateDer::pem_file_iter(cert).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
    }
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection to `addr`, handshake done.
fn tls_connect(cfg: &Arc<rustls::ClientConfig>, addr: SocketAddr) -> std::io::Result<Tls> {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(cfg.clone(), name).map_err(std::io::Error::other)?;
    let s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    let mut tls = rustls::StreamOwned::new(conn, s);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// `GET /` over `tls`: true if it was `200` with the greeting.
fn tls_get(tls: &mut Tls) -> std::io::Result<bool> {
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
    let mut got = Vec::new();
    let mut b = [0u8; 4096];
    while !got.ends_with(b"Hello, client!") {
        let n = tls.read(&mut b)?;
        if n == 0 {
            return Ok(false);
        }
        got.extend_from_slice(&b[..n]);
    }
    Ok(got.starts_with(b"HTTP/1.1 200"))
}

/// The DER of the certificate in the PEM file `path`.
fn cert_der(path: &Path) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

/// Writes `reactor cert` output into `dir`.
fn make_cert(dir: &Path) {
    let (st, _, err) = run_bin(&["cert", "--out", dir.to_str().unwrap()], TIMEOUT);
    assert!(st.success(), "{err}");
}

/// Promise: a certificate replaced under load (new files renamed into
/// place, then SIGHUP) is used by new handshakes, while a connection
/// opened before keeps working on the old one, and no request fails; a
/// bad new certificate is refused with an error line and the last good
/// one kept.
#[test]
fn certificate_replaced_under_load_without_a_failed_request() {
    let dir = TempDir::new("tlsreload");
    let (one, two, live) = (
        dir.path().join("one"),
        dir.path().join("two"),
        dir.path().join("live"),
    );
    make_cert(&one);
    make_cert(&two);
    std::fs::create_dir_all(&live).unwrap();
    for f in ["cert.pem", "key.pem"] {
        std::fs::copy(one.join(f), live.join(f)).unwrap();
    }
    let (cert, key) = (live.join("cert.pem"), live.join("key.pem"));
    let mut bin = Bin::spawn(&[
        "serve",
        "--https",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let addr: SocketAddr = bin.listening("https", TIMEOUT).parse().unwrap();
    bin.wait_line("ready", TIMEOUT);
    let client = tls_client(&[one.join("cert.pem"), two.join("cert.pem")]);
    let (der_one, der_two) = (
        cert_der(&one.join("cert.pem")),
        cert_der(&two.join("cert.pem")),
    );
    let peer_cert = |t: &Tls| t.conn.peer_certificates().unwrap()[0].to_vec();

    // A keep-alive connection from before the reload.
    let mut old = tls_connect(&client, addr).unwrap();
    assert!(tls_get(&mut old).unwrap());
    assert_eq!(peer_cert(&old), der_one);

    // Load: new connections, one request each, counting failures and
    // which certificate each saw.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, saw_two) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (stop, ok, failed, saw_two, client) = (
                stop.clone(),
                ok.clone(),
                failed.clone(),
                saw_two.clone(),
                client.clone(),
            );
            let der_two = der_two.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match tls_connect(&client, addr)
                        .and_then(|mut t| tls_get(&mut t).map(|g| (g, t)))
                    {
                        Ok((true, t)) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            if t.conn.peer_certificates().unwrap()[0].as_ref() == der_two.as_slice()
                            {
                                saw_two.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    assert!(wait_until(TIMEOUT, || ok.load(Ordering::Relaxed) > 20));

    // The new pair, renamed into place (as ACME clients do), then SIGHUP.
    for f in ["cert.pem", "key.pem"] {
        std::fs::copy(two.join(f), live.join(format!("{f}.new"))).unwrap();
        std::fs::rename(live.join(format!("{f}.new")), live.join(f)).unwrap();
    }
    bin.signal("HUP");
    let line = bin.wait_line("reloaded: SHA-1", TIMEOUT);
    assert!(line.contains(" -> "), "{line}");
    assert!(
        wait_until(TIMEOUT, || saw_two.load(Ordering::Relaxed) > 20),
        "new handshakes get the new certificate"
    );
    // The connection from before still works, on the old certificate.
    assert!(tls_get(&mut old).unwrap());
    assert_eq!(peer_cert(&old), der_one);

    // A broken certificate: refused, the last good one kept.
    std::fs::write(
        &cert,
        b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    bin.signal("HUP");
    bin.wait_line("certificate not reloaded", TIMEOUT);
    let before = ok.load(Ordering::Relaxed);
    assert!(wait_until(TIMEOUT, || ok.load(Ordering::Relaxed) > before + 20));
    let mut fresh = tls_connect(&client, addr).unwrap();
    assert!(tls_get(&mut fresh).unwrap());
    assert_eq!(peer_cert(&fresh), der_two, "the last good certificate");
    // A key that does not match the certificate: refused too.
    std::fs::copy(two.join("cert.pem"), &cert).unwrap();
    std::fs::copy(one.join("key.pem"), &key).unwrap();
    bin.signal("HUP");
    bin.wait_line("certificate not reloaded", TIMEOUT);
    let mut fresh = tls_connect(&client, addr).unwrap();
    assert!(tls_get(&mut fresh).unwrap());
    assert_eq!(peer_cert(&fresh), der_two);

    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests (of {})",
        ok.load(Ordering::Relaxed)
    );
}

// ---------------------------------------------------------------- systemd and the rest

/// Promise: with `$NOTIFY_SOCKET`, the server sends `READY=1` (and its
/// pid) once it listens, and `RELOADING=1` then `READY=1` around a SIGHUP.
#[test]
fn readiness_is_notified_over_notify_socket() {
    let dir = TempDir::new("notify");
    let path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    let bin = Bin::spawn_with(
        &[],
        &["serve", "--http", "127.0.0.1:0"],
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
    );
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("a datagram within the timeout");
    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
    assert_eq!(msg, format!("READY=1\nMAINPID={}", bin.child.id()));
    bin.signal("HUP");
    let n = sock.recv(&mut buf).unwrap();
    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(msg.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{msg:?}");
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"READY=1");
}

/// Promise: shell completions and the man page come from the clap
/// definition, so they know every flag.
#[test]
fn completions_and_man_page_are_generated() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let (st, out, err) = run_bin(&["completions", shell], TIMEOUT);
        assert!(st.success(), "{shell}: {err}");
        for word in ["serve", "access-log", "config", "tls-cert"] {
            assert!(out.contains(word), "{shell} completions lack {word}");
        }
    }
    let (st, _, _) = run_bin(&["completions", "tcsh"], TIMEOUT);
    assert_eq!(st.code(), Some(2), "an unknown shell is a usage error");
    let (st, out, err) = run_bin(&["man"], TIMEOUT);
    assert!(st.success(), "{err}");
    for word in [
        ".TH reactor",
        "EXIT STATUS",
        "SIGHUP",
        "SIGUSR1",
        "completions",
    ] {
        assert!(out.contains(word), "the man page lacks {word}");
    }
}

/// Promise: the unit file asks for readiness notification and the usual
/// hardening, and `systemd-analyze verify` accepts it (where systemd is
/// installed; the checks of its text run everywhere).
#[test]
fn the_systemd_unit_is_hardened_and_verifies() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/reactor.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    for want in [
        "Type=notify",
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "RestartPreventExitStatus=2",
    ] {
        assert!(
            text.lines().any(|l| l.trim() == want),
            "the unit lacks {want}"
        );
    }
    let analyze = Path::new("/usr/bin/systemd-analyze");
    if !analyze.exists() {
        eprintln!("systemd-analyze is not installed: verify skipped");
        return;
    }
    let dir = TempDir::new("unit");
    let local = text.replace("/usr/local/bin/reactor", &bin_path());
    let copy = dir.write("reactor.service", local.as_bytes());
    let out = std::process::Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Promise: `--access-log -` writes the lines to standard output.
#[test]
fn access_log_to_standard_output() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let mut child = Command::new(bin_path())
        .args(["serve", "--http", "127.0.0.1:0", "--access-log", "-"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap_or_default());
        }
    });
    // stderr is read to its end, so the server never writes to a closed pipe.
    let (etx, erx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let _ = etx.send(strip_ansi(&line.unwrap_or_default()));
        }
    });
    let addr: SocketAddr = loop {
        let line = erx.recv_timeout(TIMEOUT).expect("a listen line");
        if let Some((_, a)) = line.split_once("http listening on ") {
            break a.trim().parse().unwrap();
        }
    };
    assert_eq!(http_get(addr, "/stdout-test").status, 404);
    let line = rx.recv_timeout(TIMEOUT).expect("a line on standard output");
    let l = parse(&line);
    assert_eq!(
        (l.request.as_str(), l.status),
        ("GET /stdout-test HTTP/1.1", 404)
    );
    let _ = child.kill();
    let _ = child.wait();
}
