//! Finding the server and opening client sockets: a `HOST:PORT` resolved
//! once at start; non-blocking connect, optionally from a chosen loopback
//! source address (127.0.0.K), so one machine can hold more connections
//! than the ~28k ephemeral ports of one address allow.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// A server: the host as given (for SNI and the Host header) and the one
/// address every connection goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The host, without brackets or port: a name or an IP address.
    pub host: String,
    /// Where to connect.
    pub addr: SocketAddr,
}

/// Splits `HOST:PORT` (`[V6]:PORT` for IPv6; the port may be left out if
/// `default_port` is given) into the host, unbracketed, and the port.
pub fn split_host_port(s: &str, default_port: Option<u16>) -> Result<(String, u16), String> {
    let (host, port) = match s.strip_prefix('[') {
        Some(v6) => {
            let (h, rest) = v6
                .split_once(']')
                .ok_or_else(|| format!("'{s}': no ']' after an IPv6 address"))?;
            (h, rest.strip_prefix(':'))
        }
        None => match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            _ => (s, None),
        },
    };
    let port = match (port, default_port) {
        (Some(p), _) => p
            .parse()
            .map_err(|_| format!("'{s}': '{p}' is not a port"))?,
        (None, Some(d)) => d,
        (None, None) => return Err(format!("'{s}': HOST:PORT expected")),
    };
    if host.is_empty() {
        return Err(format!("'{s}': no host"));
    }
    Ok((host.to_string(), port))
}

/// Resolves `host` (an IP address as is; a name through the system
/// resolver: `localhost`, `/etc/hosts`, DNS) once, at start. Of several
/// addresses the first that accepts a TCP connection within `probe` is
/// taken (a name may list an address nothing listens on, as `localhost`
/// may `::1`), the first if none does or `probe` is None (UDP).
pub fn resolve(host: &str, port: u16, probe: Option<Duration>) -> Result<Target, String> {
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("'{host}': {e}"))?
            .collect(),
    };
    let first = *addrs
        .first()
        .ok_or_else(|| format!("'{host}': no address"))?;
    let addr = match probe {
        Some(t) if addrs.len() > 1 => addrs
            .iter()
            .copied()
            .find(|a| std::net::TcpStream::connect_timeout(a, t).is_ok())
            .unwrap_or(first),
        _ => first,
    };
    Ok(Target {
        host: host.to_string(),
        addr,
    })
}

/// `HOST:PORT` resolved (TCP: probed within `timeout`; see [`resolve`]).
pub fn target(s: &str, timeout: Duration) -> Result<Target, String> {
    let (host, port) = split_host_port(s, None)?;
    resolve(&host, port, Some(timeout))
}

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
    fn hosts_and_ports() {
        let hp = |s, d| split_host_port(s, d);
        assert_eq!(hp("127.0.0.1:80", None), Ok(("127.0.0.1".into(), 80)));
        assert_eq!(hp("localhost:8080", None), Ok(("localhost".into(), 8080)));
        assert_eq!(hp("[::1]:443", None), Ok(("::1".into(), 443)));
        assert_eq!(hp("[::1]", Some(443)), Ok(("::1".into(), 443)));
        assert_eq!(hp("example.org", Some(80)), Ok(("example.org".into(), 80)));
        for bad in ["example.org", ":80", "[::1:80", "h:port", "h:70000"] {
            assert!(hp(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_resolve_once_to_an_address() {
        let lit = resolve("127.0.0.1", 9, None).unwrap();
        assert_eq!(lit.addr, "127.0.0.1:9".parse().unwrap());
        // localhost is in /etc/hosts, whatever else it lists.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = resolve("localhost", port, Some(Duration::from_secs(1))).unwrap();
        assert_eq!((t.host.as_str(), t.addr.port()), ("localhost", port));
        assert!(t.addr.ip().is_loopback());
    }

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
