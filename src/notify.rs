//! systemd's readiness protocol (`Type=notify`, sd_notify(3)), written
//! out: one datagram of `KEY=VALUE` lines to the Unix socket named by
//! `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace). No
//! C library; without the variable, nothing is sent.
//!
//! The server sends `READY=1` (with `MAINPID`) once every listener is
//! open, `RELOADING=1` then `READY=1` around a `SIGHUP` reload, and
//! `STOPPING=1` when it begins to shut down.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `state` (newline-separated `KEY=VALUE` lines) to the service
/// manager, if `$NOTIFY_SOCKET` names one; `Ok(false)` if it does not.
pub fn notify(state: &str) -> io::Result<bool> {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(target) => notify_to(&target.to_string_lossy(), state).map(|()| true),
        None => Ok(false),
    }
}

/// Sends `state` to the socket `target` (a path, or `@name`).
fn notify_to(target: &str, state: &str) -> io::Result<()> {
    let addr = match target.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())?
        }
        None if target.starts_with('/') => SocketAddr::from_pathname(target)?,
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("NOTIFY_SOCKET={target}: neither a path nor @name"),
            ));
        }
    };
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

/// `notify`, with a failure logged (the service manager then times out on
/// us, which says more than we could).
pub fn tell(state: &str) {
    if let Err(e) = notify(state) {
        log::warn!("sd_notify {:?}: {e}", state.lines().next().unwrap_or(""));
    }
}

/// What `RELOADING=1` carries besides: the monotonic clock in µs, which
/// `Type=notify-reload` requires.
pub fn reloading() -> String {
    format!(
        "RELOADING=1\nMONOTONIC_USEC={}",
        crate::sys::monotonic_usec()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_datagram_to_the_socket_named() {
        let dir = std::env::temp_dir().join(format!("reactor-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        super::notify_to(path.to_str().unwrap(), "READY=1\nMAINPID=1").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nMAINPID=1");
        assert!(super::notify_to("relative", "READY=1").is_err());
        assert!(super::reloading().starts_with("RELOADING=1\nMONOTONIC_USEC="));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
