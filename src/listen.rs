//! Opening the listening sockets, before the loop starts.
//!
//! Sockets are made with `socket2` so options that must be set before
//! `bind` (`SO_REUSEADDR`, `SO_REUSEPORT`) can be, then handed to mio.
//! Every failure names the service and the address: "echo: cannot listen
//! on 127.0.0.1:8080: Address already in use".

use std::io;
use std::net::SocketAddr;
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream};
use std::path::{Path, PathBuf};

use socket2::{Domain, Protocol, Socket, Type};

use crate::error::{Error, Result};

/// Backlog of the listening sockets (the kernel caps it at somaxconn).
const BACKLOG: i32 = 1024;

/// Unsent bytes the kernel keeps in a TCP socket's send queue before it
/// calls the socket full (`TCP_NOTSENT_LOWAT`), set on the listeners and
/// so on every connection. Without it the send buffer autotunes up to
/// `tcp_wmem`'s maximum (4 MiB here) for a peer that reads nothing: a
/// slow reader then absorbs megabytes of copies into kernel memory (the
/// loop spent 85% of its time in the kernel's skb allocator and copy under
/// `slowhttptest -X`, and other clients waited up to a second), and a chat
/// member's output caps start counting only after those megabytes. With
/// it, what the kernel holds unsent is bounded by this plus one segment,
/// while the window of bytes in flight still autotunes for fast readers
/// on long paths (a fixed `SO_SNDBUF` would cap those too).
pub const NOTSENT_LOWAT: u32 = 16 * 1024;

/// Longest path a Unix socket address holds (`sun_path` is 108 bytes,
/// one of them the terminating NUL).
pub const UNIX_PATH_MAX: usize = 107;

/// A bind error naming `service` and `addr`.
fn bind_error(service: &'static str, addr: impl ToString, source: io::Error) -> Error {
    Error::Bind {
        service,
        addr: addr.to_string(),
        source,
    }
}

/// A non-blocking TCP listener on `addr`.
pub fn tcp(
    service: &'static str,
    addr: SocketAddr,
    reuse_port: bool,
) -> Result<mio::net::TcpListener> {
    let open = || -> io::Result<mio::net::TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        // SO_REUSEADDR: restart at once while old connections sit in TIME_WAIT.
        socket.set_reuse_address(true)?;
        // Inherited by every accepted socket: see NOTSENT_LOWAT.
        socket.set_tcp_notsent_lowat(NOTSENT_LOWAT)?;
        if reuse_port {
            socket.set_reuse_port(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(BACKLOG)?;
        Ok(mio::net::TcpListener::from_std(socket.into()))
    };
    open().map_err(|e| bind_error(service, addr, e))
}

/// A non-blocking UDP socket bound to `addr`.
pub fn udp(
    service: &'static str,
    addr: SocketAddr,
    reuse_port: bool,
) -> Result<mio::net::UdpSocket> {
    let open = || -> io::Result<mio::net::UdpSocket> {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if reuse_port {
            socket.set_reuse_port(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        Ok(mio::net::UdpSocket::from_std(socket.into()))
    };
    open().map_err(|e| bind_error(service, addr, e))
}

/// A Unix stream listener that removes its socket file when dropped.
#[derive(Debug)]
pub struct UnixListen {
    /// The listening socket.
    pub listener: mio::net::UnixListener,
    /// The socket file, removed on drop.
    pub path: PathBuf,
}

impl Drop for UnixListen {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Listens on the Unix socket `path`. A leftover socket file is replaced
/// only if nothing answers on it; a live one is "address in use".
pub fn unix(service: &'static str, path: &Path) -> Result<UnixListen> {
    let shown = path.display();
    let len = path.as_os_str().len();
    if len > UNIX_PATH_MAX {
        return Err(Error::Config(format!(
            "{service}: socket path is {len} bytes, longer than the {UNIX_PATH_MAX} a Unix socket address holds: {shown}"
        )));
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            let e = io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            );
            return Err(bind_error(service, shown, e));
        }
        match StdUnixStream::connect(path) {
            Ok(_) => {
                let e = io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another server is answering on it",
                );
                return Err(bind_error(service, shown, e));
            }
            // Nobody home: a stale file from a server that died. Replace it.
            Err(_) => std::fs::remove_file(path).map_err(|e| bind_error(service, &shown, e))?,
        }
    }
    let std_listener = StdUnixListener::bind(path).map_err(|e| bind_error(service, &shown, e))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| bind_error(service, &shown, e))?;
    Ok(UnixListen {
        listener: mio::net::UnixListener::from_std(std_listener),
        path: path.to_path_buf(),
    })
}
