//! What a peer can make the server hold (issue "bounded memory"), against
//! the real binary: the kernel's share of a slow reader's socket.
//!
//! Each test starts its own server process and ends it the way the fault
//! tests do (fds back to the baseline, a clean log, exit 0 on SIGTERM).
//! They run one at a time: they measure the server's memory.

mod util;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

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
