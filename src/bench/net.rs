//! Opening client sockets: non-blocking connect, optionally from a chosen
//! loopback source address (127.0.0.K), so one machine can hold more
//! connections than the ~28k ephemeral ports of one address allow.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

/// The source address for connection number `i` when spreading over `n`
/// addresses 127.0.0.1..=127.0.0.n; None when n is 1 (let the kernel pick).
pub fn source_ip(i: usize, n: u8, target: SocketAddr) -> Option<IpAddr> {
    if n <= 1 || !target.ip().is_loopback() || !target.is_ipv4() {
        return None;
    }
    let k = (i % n as usize) as u8 + 1;
    Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, k)))
}

/// Starts a non-blocking TCP connect to `addr` (from `src` if given).
/// The result is usually still connecting: the caller waits for
/// writability, then checks `take_error` and `peer_addr`.
pub fn connect(addr: SocketAddr, src: Option<IpAddr>) -> io::Result<mio::net::TcpStream> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_nonblocking(true)?;
    // Requests are small and latency matters: no Nagle delay.
    sock.set_tcp_nodelay(true)?;
    if let Some(ip) = src {
        bind_source(&sock, ip)?;
    }
    match sock.connect(&addr.into()) {
        Ok(()) => {}
        // The usual case for a non-blocking connect: it completes later.
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(mio::net::TcpStream::from_std(sock.into()))
}

/// Binds `sock` to source address `ip`, leaving the port to `connect`
/// (`IP_BIND_ADDRESS_NO_PORT`): bound with port 0 alone, each socket would
/// take a port from `ip`'s whole range at `bind`, and ports in TIME_WAIT
/// from an earlier run could not be reused, so a second large run
/// would stall on connects.
pub fn bind_source(sock: &Socket, ip: IpAddr) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    crate::sys::bind_address_no_port(sock.as_raw_fd())?;
    sock.bind(&SocketAddr::new(ip, 0).into())
}

/// Connects to `addr` (from `src` if given), blocking up to `timeout`,
/// for workloads that set up all their connections before measuring.
/// `EADDRNOTAVAIL` (no free port for this source and destination yet, as
/// TIME_WAIT sockets of an earlier run expire) is retried a few times
/// before it is an error.
pub fn connect_blocking(
    addr: SocketAddr,
    src: Option<IpAddr>,
    timeout: std::time::Duration,
) -> io::Result<Socket> {
    let mut tries = 0;
    loop {
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        if let Some(ip) = src {
            bind_source(&sock, ip)?;
        }
        match sock.connect_timeout(&addr.into(), timeout) {
            Ok(()) => return Ok(sock),
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) && tries < 20 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}

/// After a writable (or error) event on a connecting socket: Ok(true) once
/// connected, Ok(false) if still in progress, Err if it failed.
pub fn connected(s: &mio::net::TcpStream) -> io::Result<bool> {
    if let Some(e) = s.take_error()? {
        return Err(e);
    }
    match s.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ips_cycle() {
        let t: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert_eq!(source_ip(0, 1, t), None);
        assert_eq!(source_ip(0, 3, t), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(source_ip(4, 3, t), Some("127.0.0.2".parse().unwrap()));
        let far: SocketAddr = "10.0.0.1:80".parse().unwrap();
        assert_eq!(source_ip(4, 3, far), None);
    }
}
