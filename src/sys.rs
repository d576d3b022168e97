//! The crate's only `unsafe` code: thin wrappers over `libc` calls that
//! std does not offer (the open-files limit, one socket option). Each wrapper is safe to call: it passes only
//! pointers to locals that live across the call.
#![allow(unsafe_code)]

use std::io;

/// The soft and hard limits on open files (RLIMIT_NOFILE).
pub fn nofile_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Sets `IP_BIND_ADDRESS_NO_PORT` on socket `fd`: a later `bind` to a
/// source address with port 0 leaves the port to `connect`, which picks
/// one per destination and may reuse ports in TIME_WAIT. Without it the
/// port is taken at `bind`, from the address's whole range, for good.
pub fn bind_address_no_port(fd: std::os::fd::RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: `on` is a valid c_int that lives across the call, and its
    // size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Raises the soft open-files limit to the hard limit; returns the new soft
/// limit. A server that is asked for 10,000 connections needs the fds.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let (_, hard) = nofile_limit()?;
    let lim = libc::rlimit {
        rlim_cur: hard,
        rlim_max: hard,
    };
    // SAFETY: `lim` is a valid rlimit read by the call.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(hard)
}
