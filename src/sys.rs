//! The crate's only `unsafe` code: thin wrappers over `libc` calls that
//! std does not offer (the open-files limit, one socket option, a
//! timerfd, a thread's CPU clock). Each wrapper is safe to call: it passes only pointers to
//! locals that live across the call, and fds it owns.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

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

/// A one-shot timer as a file descriptor (`timerfd`, CLOCK_MONOTONIC,
/// non-blocking): readable once it expires, so it can sit in a poll set
/// and wake `epoll_wait` with nanosecond resolution, where the wait's own
/// timeout counts in milliseconds.
#[derive(Debug)]
pub struct TimerFd(OwnedFd);

impl TimerFd {
    /// A disarmed timer.
    pub fn new() -> io::Result<TimerFd> {
        // SAFETY: no pointers; the result is checked before use.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created, is valid, and nothing else owns it.
        Ok(TimerFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Arms the timer to expire once, `after_ns` from now (at least 1 ns:
    /// a zero time would disarm it), replacing any earlier setting.
    pub fn set(&self, after_ns: u64) -> io::Result<()> {
        let ns = after_ns.max(1);
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (ns % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: the fd is ours and open; `spec` lives across the call;
        // the old value is not asked for (null).
        let rc =
            unsafe { libc::timerfd_settime(self.0.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl AsRawFd for TimerFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// CPU time the calling thread has used, in ns, up to this moment
/// (`CLOCK_THREAD_CPUTIME_ID`). Unlike `/proc/thread-self/schedstat`,
/// whose figure the kernel brings up to date only at a scheduler tick or
/// a switch (every 4 ms at HZ=250), this includes the running slice.
pub fn thread_cpu_ns() -> io::Result<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the
    // call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// Hands the allocator's free memory back to the kernel (glibc's
/// `malloc_trim(0)`: the top of the heap is shrunk, and free pages inside
/// it are released with `MADV_DONTNEED`). After a burst of connections
/// has gone, what they held is free in the allocator but still counted in
/// the process's RSS; this gives it back. Elsewhere than glibc, nothing.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and only walks the allocator's
    // own state, under its lock.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// CLOCK_MONOTONIC in microseconds (what systemd's `MONOTONIC_USEC=`
/// wants; std's `Instant` reads the same clock but keeps its value opaque).
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1000
}
