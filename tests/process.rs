//! The `reactor` binary: flags, bind errors, and graceful SIGTERM.

mod util;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use util::*;

/// Promise: `reactor --version` prints the crate version and exits 0.
#[test]
fn bin_version() {
    let (st, out, err) = run_bin(&["--version"], TIMEOUT);
    assert!(st.success(), "exit {st:?}; stderr {err}");
    assert!(
        out.contains(env!("CARGO_PKG_VERSION")),
        "--version printed {out:?}"
    );
}

/// Promise: `reactor serve --help` documents every service and limit flag.
#[test]
fn bin_serve_help_mentions_every_flag() {
    let (st, out, err) = run_bin(&["serve", "--help"], TIMEOUT);
    assert!(st.success(), "exit {st:?}; stderr {err}");
    for flag in [
        "--greet",
        "--echo",
        "--udp",
        "--chat",
        "--unix",
        "--max-conns",
        "--idle-timeout",
        "--max-line",
        "--grace",
        "--log-level",
    ] {
        assert!(
            out.contains(flag),
            "serve --help does not mention {flag}:\n{out}"
        );
    }
}

/// Check a failed start: exit 1, no panic, exactly one stderr line naming
/// both the service and the address.
fn assert_bind_failure(args: &[&str], service: &str, addr: &str) {
    let (st, _out, err) = run_bin(args, TIMEOUT);
    assert_eq!(st.code(), Some(1), "exit status {st:?}; stderr:\n{err}");
    assert!(!err.contains("panicked"), "panic on bind error:\n{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "want a one-line error; stderr:\n{err}");
    let naming: Vec<&str> = lines.into_iter().filter(|l| l.contains(addr)).collect();
    assert_eq!(
        naming.len(),
        1,
        "the error line does not name {addr}; stderr:\n{err}"
    );
    assert!(
        naming[0].contains(service),
        "error line does not name the service {service}: {:?}",
        naming[0]
    );
}

/// Promise: a TCP address already in use -> exit 1 and a one-line error
/// naming the service and address, no panic.
#[test]
fn bin_tcp_address_in_use_exits_1() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    assert_bind_failure(&["serve", "--echo", &addr], "echo", &addr);
    assert_bind_failure(&["serve", "--chat", &addr], "chat", &addr);
}

/// Promise: the same for a UDP address already in use.
#[test]
fn bin_udp_address_in_use_exits_1() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    assert_bind_failure(&["serve", "--udp", &addr], "udp", &addr);
}

/// Promise: on SIGTERM the server reads what already arrived, flushes every
/// echo, closes each connection with EOF, and exits 0 within the grace
/// (100 clients x 64 KiB, all written before the signal).
#[test]
fn bin_sigterm_flushes_everything_and_exits_0() {
    let grace = Duration::from_secs(5);
    let mut bin = Bin::spawn(&[
        "serve",
        "--echo",
        "127.0.0.1:0",
        "--grace",
        "5s",
        "--log-level",
        "info",
    ]);
    let addr: SocketAddr = bin
        .listening("echo", TIMEOUT)
        .parse()
        .expect("address in the listen line");

    let n = 100;
    let size = 64 * 1024;
    let head = 1024;
    let payloads: Vec<Vec<u8>> = (0..n).map(|i| Rng::new(7000 + i).bytes(size)).collect();
    let mut clients: Vec<TcpStream> = (0..n).map(|_| connect(addr)).collect();
    for (i, s) in clients.iter_mut().enumerate() {
        write_all(s, &payloads[i], &format!("client {i}"));
    }
    // Each connection is accepted and echoing: read back its first KiB.
    for (i, s) in clients.iter_mut().enumerate() {
        let what = format!("client {i} before SIGTERM");
        let got = read_n(s, head, &what);
        assert_bytes_eq(&got, &payloads[i][..head], &what);
    }

    bin.signal("TERM");
    let signalled = Instant::now();
    for (i, s) in clients.iter_mut().enumerate() {
        let what = format!("client {i} after SIGTERM");
        let got = read_until_eof(s, &what);
        assert_bytes_eq(&got, &payloads[i][head..], &what);
        if i == 0 {
            // Shutdown has begun (client 0 got its EOF): no new client is served.
            assert_not_served(addr);
        }
    }
    let status = bin.wait_exit(grace + Duration::from_secs(1));
    let log = bin.final_log();
    let status = status.unwrap_or_else(|| {
        panic!(
            "still running {:?} after SIGTERM (grace {grace:?}); log:\n{log}",
            signalled.elapsed()
        )
    });
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM; log:\n{log}"
    );
    assert!(!log.contains("panicked"), "log:\n{log}");
}

/// A client connecting now must not be echoed: the connect is refused, or the
/// connection is closed (possibly after an `ERROR` line) without an echo.
fn assert_not_served(addr: SocketAddr) {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, TIMEOUT) else {
        return;
    };
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let _ = s.write_all(b"late\n");
    let (data, _end) = read_to_end(&mut s, "client connecting during shutdown");
    assert!(
        data.is_empty() || data.starts_with(b"ERROR"),
        "a client connecting after SIGTERM was served: got {:?}",
        String::from_utf8_lossy(&data)
    );
}

/// Promise: the limit and duration flags take effect, the Unix listener logs
/// its path, SIGINT stops the server with exit 0, and the socket file goes.
#[test]
fn bin_max_conns_unix_and_sigint() {
    let path = std::env::temp_dir().join(format!("reactor-bin-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let path_s = path.to_str().unwrap().to_string();
    let mut bin = Bin::spawn(&[
        "serve",
        "--echo",
        "127.0.0.1:0",
        "--unix",
        &path_s,
        "--max-conns",
        "2",
        "--grace",
        "3",
    ]);
    let addr: SocketAddr = bin.listening("echo", TIMEOUT).parse().unwrap();
    assert_eq!(bin.listening("unix", TIMEOUT), path_s);

    let mut tcp = connect(addr);
    echo_roundtrip(&mut tcp, b"tcp client", "tcp client");
    let mut unix = UnixStream::connect(&path).unwrap();
    unix.set_read_timeout(Some(TIMEOUT)).unwrap();
    write_all(&mut unix, b"unix client", "unix client");
    assert_bytes_eq(
        &read_n(&mut unix, 11, "unix client"),
        b"unix client",
        "unix echo",
    );

    // Two connections open: a third is refused with an ERROR line.
    let mut third = Lines::new(connect(addr), "third client");
    let l = third.line();
    assert!(l.starts_with("ERROR"), "third client got {l:?}");

    bin.signal("INT");
    assert_eq!(read_until_eof(&mut tcp, "tcp client at SIGINT"), b"");
    let status = bin.wait_exit(Duration::from_secs(4));
    let log = bin.final_log();
    let status = status.unwrap_or_else(|| panic!("still running after SIGINT; log:\n{log}"));
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGINT; log:\n{log}"
    );
    assert!(!path.exists(), "unix socket file left after exit");
}

/// Promise: `--idle-timeout 300ms` closes an idle client, `--grace` accepts a
/// bare number of seconds, and SIGTERM with nothing pending exits 0 at once.
#[test]
fn bin_idle_timeout_flag() {
    let mut bin = Bin::spawn(&[
        "serve",
        "--echo",
        "127.0.0.1:0",
        "--idle-timeout",
        "300ms",
        "--grace",
        "5",
    ]);
    let addr: SocketAddr = bin.listening("echo", TIMEOUT).parse().unwrap();
    let mut s = connect(addr);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    echo_roundtrip(&mut s, b"hi", "idle client");
    let t = Instant::now();
    let (data, _end) = read_to_end(&mut s, "idle client");
    assert!(data.is_empty(), "idle client got {data:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(150),
        "closed after only {:?}",
        t.elapsed()
    );

    bin.signal("TERM");
    let status = bin.wait_exit(Duration::from_secs(2));
    let log = bin.final_log();
    let status = status.unwrap_or_else(|| panic!("still running 2 s after SIGTERM; log:\n{log}"));
    assert_eq!(status.code(), Some(0), "log:\n{log}");
}

/// Promise: CI and the scripts run the binary cargo actually built: with
/// `CARGO_TARGET_DIR` set (a shared target directory), `release_bin` in
/// `scripts/lib.sh` names it there, and `.ci/run` takes its binary from
/// `release_bin` rather than from a fixed `target/`.
#[test]
fn ci_finds_the_binary_in_cargo_target_dir() {
    let root = env!("CARGO_MANIFEST_DIR");
    let elsewhere = std::env::temp_dir().join("reactor-shared-target");
    let out = std::process::Command::new("bash")
        .args(["-c", ". scripts/lib.sh && release_bin"])
        .current_dir(root)
        .env("CARGO_TARGET_DIR", &elsewhere)
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let named = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        named,
        elsewhere.join("release/reactor").display().to_string()
    );
    let ci = std::fs::read_to_string(format!("{root}/.ci/run")).expect("read .ci/run");
    assert!(
        ci.contains("bin=$(release_bin)"),
        ".ci/run does not use release_bin"
    );
    assert!(
        !ci.contains("target/release/reactor"),
        ".ci/run names target/release/reactor"
    );
}
