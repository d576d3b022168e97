//! The access log on the loop (`--access-log PATH`, `-` for standard
//! output): one Combined Log Format line per HTTP response (rendered by
//! `service::http::access`), one when a WebSocket upgrade is answered
//! (status 101, like any response) and one when that WebSocket closes.
//!
//! Off the hot path, as nginx's `access_log ... buffer=`: lines are
//! appended to a buffer in memory, and the buffer is written with one
//! `write` before the loop sleeps (`App::before_sleep`), or as soon as it
//! holds [`FLUSH_AT`] bytes. So a turn that answers 300 pipelined requests
//! makes one `write`, and a slow disk costs the loop at most one `write`
//! per turn (or per `FLUSH_AT` of lines). What a short write leaves waits
//! for the next turn; past [`HOLD_MAX`] unwritten, lines are dropped and
//! counted, never waited for (a warning says so
//! once an episode, and the count is logged when the server stops). A
//! failed write (a full disk) drops what was buffered, the same way.
//!
//! `SIGUSR1` reopens the file at the same path (logrotate's `postrotate`:
//! rename the file, then signal), after writing out what is buffered to
//! the old one, so no line is lost across a rotation. Each loop of a
//! `--threads` server has its own buffer and its own descriptor on the
//! file (opened `O_APPEND`, so their writes never overwrite each other's).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, ErrorKind, Write};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use log::{info, warn};

use super::{Io, Protocols};
use crate::service::http::access::{AccessSink, CLF_TIME_LEN, Logged, clf_time, combined};

/// Bytes of lines buffered before they are written without waiting for
/// the end of the turn.
pub const FLUSH_AT: usize = 64 * 1024;
/// Bytes of lines kept unwritten at most (the file is slower than the
/// requests): past it, new lines are dropped and counted.
pub const HOLD_MAX: usize = 1 << 20;

/// The loop's access log: where lines go, and those not yet written.
#[derive(Debug)]
pub struct AccessLog {
    /// The file's path; `None` for standard output.
    path: Option<PathBuf>,
    /// Where lines are written.
    file: File,
    /// Lines not yet written.
    buf: Vec<u8>,
    /// Lines logged (buffered).
    pub lines: u64,
    /// Lines dropped: past `HOLD_MAX`, or lost to a failed write.
    pub dropped: u64,
    /// A write failed and has not succeeded since (one warning an episode).
    failing: bool,
    /// The `Date` value the cached CLF time was made from.
    time_of: Vec<u8>,
    /// The CLF time of the turn.
    time: [u8; CLF_TIME_LEN],
    /// The last client address formatted, and its text (clients come
    /// back: formatting an address costs as much as the rest of a line).
    last_ip: Option<(std::net::IpAddr, [u8; 48], usize)>,
    /// Where each connection that has logged a line came from (asked of
    /// the socket once, not once a request: `getpeername` is a system
    /// call), and the WebSocket endpoint it upgraded to; by the
    /// connection's id, until it closes.
    peers: HashMap<u32, (SocketAddr, Option<&'static str>), BuildHasherDefault<IdHasher>>,
}

/// Hashes a connection id (a serial number) as itself, spread: the ids
/// are not chosen by peers, so SipHash's defence buys nothing here.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl AccessLog {
    /// Opens `path` for appending (created mode 0640 if missing), or
    /// standard output for `-`.
    pub fn open(path: &Path) -> io::Result<AccessLog> {
        let (path, file) = if path == Path::new("-") {
            (None, File::from(io::stdout().as_fd().try_clone_to_owned()?))
        } else {
            (Some(path.to_path_buf()), open_append(path)?)
        };
        Ok(AccessLog {
            path,
            file,
            buf: Vec::with_capacity(FLUSH_AT),
            lines: 0,
            dropped: 0,
            failing: false,
            time_of: Vec::new(),
            time: [b'-'; CLF_TIME_LEN],
            last_ip: None,
            peers: HashMap::default(),
        })
    }

    /// Where it writes, as given (`-` for standard output).
    pub fn shown(&self) -> String {
        self.path
            .as_ref()
            .map_or_else(|| "-".to_string(), |p| p.display().to_string())
    }

    /// Bytes buffered, not yet written.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Sets the time lines are stamped with from the `Date` value `imf`
    /// (reformatted only when it changes: once a second).
    pub fn set_time(&mut self, imf: &[u8]) {
        if self.time_of != imf
            && let Some(t) = clf_time(imf)
        {
            self.time = t;
            self.time_of.clear();
            self.time_of.extend_from_slice(imf);
        }
    }

    /// A sink for the HTTP state machine, for requests from `peer`.
    pub fn sink(&mut self, peer: Option<SocketAddr>) -> Sink<'_> {
        let (addr, n) = match (peer, self.last_ip) {
            (Some(p), Some((ip, text, n))) if p.ip() == ip => (text, n),
            _ => {
                let mut text = [0u8; 48];
                let n = format_ip(peer, &mut text);
                if let Some(p) = peer {
                    self.last_ip = Some((p.ip(), text, n));
                }
                (text, n)
            }
        };
        Sink {
            log: self,
            addr,
            len: n,
        }
    }

    /// Appends one line; writes the buffer if it is full enough.
    fn push(&mut self, addr: &[u8], e: &Logged<'_>) {
        if self.buf.len() >= HOLD_MAX {
            if self.dropped == 0 || !self.failing {
                warn!(
                    "access log {}: {HOLD_MAX} bytes not yet written: dropping lines until the file keeps up",
                    self.shown()
                );
                self.failing = true;
            }
            self.dropped += 1;
            return;
        }
        combined(&mut self.buf, addr, &self.time, e);
        self.lines += 1;
        if self.buf.len() >= FLUSH_AT {
            self.write_once();
        }
    }

    /// Connection `id`'s peer: asked of the socket (`ask`) the first
    /// time, remembered until `forget`.
    pub fn peer_of(
        &mut self,
        id: u32,
        ask: impl FnOnce() -> Option<SocketAddr>,
    ) -> Option<SocketAddr> {
        if let Some((peer, _)) = self.peers.get(&id) {
            return Some(*peer);
        }
        let peer = ask()?;
        self.peers.insert(id, (peer, None));
        Some(peer)
    }

    /// Connection `id` closed (as HTTP): its peer is forgotten.
    pub fn forget(&mut self, id: u32) {
        self.peers.remove(&id);
    }

    /// A WebSocket upgrade to `path` was answered for connection `id`.
    pub fn ws_opened(&mut self, id: u32, path: &'static str) {
        if let Some(entry) = self.peers.get_mut(&id) {
            entry.1 = Some(path);
        }
    }

    /// Connection `id` closed: if it was a logged WebSocket, its line
    /// (`"WS-CLOSE /ws/echo"`, status 101, 0 bytes).
    pub fn ws_closed(&mut self, id: u32) {
        let Some((peer, Some(path))) = self.peers.remove(&id) else {
            return;
        };
        let mut request = Vec::with_capacity(9 + path.len());
        request.extend_from_slice(b"WS-CLOSE ");
        request.extend_from_slice(path.as_bytes());
        let mut addr = [0u8; 48];
        let n = format_ip(Some(peer), &mut addr);
        self.push(
            &addr[..n],
            &Logged {
                request: &request,
                status: 101,
                bytes: 0,
                referer: None,
                user_agent: None,
            },
        );
    }

    /// Writes what is buffered with one `write` (what it does not take
    /// waits for the next call). Called before the loop sleeps.
    pub fn write_once(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        match self.file.write(&self.buf) {
            Ok(n) => {
                self.buf.drain(..n);
                if self.failing {
                    self.failing = false;
                    info!("access log {}: writing again", self.shown());
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::Interrupted | ErrorKind::WouldBlock) => {}
            Err(e) => self.failed(&e),
        }
    }

    /// A write failed: what was buffered is lost, counted, and said once.
    fn failed(&mut self, e: &io::Error) {
        let lost = self.buf.iter().filter(|&&b| b == b'\n').count() as u64;
        self.dropped += lost;
        self.buf.clear();
        if !self.failing {
            self.failing = true;
            warn!(
                "access log {}: write failed ({e}): {lost} lines dropped, and more until it works again",
                self.shown()
            );
        }
    }

    /// Writes out everything buffered (blocking: at most `HOLD_MAX`).
    pub fn write_all(&mut self) {
        if !self.buf.is_empty() {
            match self.file.write_all(&self.buf) {
                Ok(()) => self.buf.clear(),
                Err(e) => self.failed(&e),
            }
        }
    }

    /// `SIGUSR1`: writes out what is buffered to the file open now, then
    /// opens the path again (a new file, once logrotate has renamed the
    /// old one). If it cannot be opened, the old file is kept.
    pub fn reopen(&mut self) {
        self.write_all();
        let Some(path) = &self.path else {
            return; // standard output: nothing to reopen
        };
        match open_append(path) {
            Ok(file) => {
                self.file = file;
                info!("access log {}: reopened", path.display());
            }
            Err(e) => warn!(
                "access log {}: cannot reopen ({e}); still writing to the file open before",
                path.display()
            ),
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.write_all();
        if self.dropped > 0 {
            warn!(
                "access log {}: {} lines were dropped",
                self.shown(),
                self.dropped
            );
        }
    }
}

/// A WebSocket that began as an HTTP request closed: its access-log line.
pub(super) fn ws_closed(io: &Io<'_>, app: &mut Protocols) {
    if let Some(log) = app.access.as_deref_mut() {
        log.set_time(app.http.date_at(io.now()));
        log.ws_closed(io.link.id);
    }
}

/// Opens `path` to append to, creating it (mode 0640) if missing.
fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

/// Writes the peer's IP (IPv4-mapped addresses as IPv4) into `out`; its
/// length. `-` when unknown.
fn format_ip(peer: Option<SocketAddr>, out: &mut [u8; 48]) -> usize {
    let Some(peer) = peer else {
        out[0] = b'-';
        return 1;
    };
    if let std::net::IpAddr::V4(v4) = peer.ip().to_canonical() {
        // By hand: `Display` for an address costs more than the line.
        let mut n = 0;
        for (i, octet) in v4.octets().into_iter().enumerate() {
            if i > 0 {
                out[n] = b'.';
                n += 1;
            }
            let digits = [octet / 100, octet / 10 % 10, octet % 10];
            let skip = match octet {
                100.. => 0,
                10.. => 1,
                _ => 2,
            };
            for d in &digits[skip..] {
                out[n] = b'0' + d;
                n += 1;
            }
        }
        return n;
    }
    let mut cursor = io::Cursor::new(&mut out[..]);
    let _ = write!(cursor, "{}", peer.ip().to_canonical());
    cursor.position() as usize
}

/// The access log as the HTTP state machine sees it: entries for one
/// connection's requests.
pub struct Sink<'a> {
    /// Where the lines go.
    log: &'a mut AccessLog,
    /// The client's address, formatted.
    addr: [u8; 48],
    /// Its length.
    len: usize,
}

impl AccessSink for Sink<'_> {
    fn log(&mut self, entry: &Logged<'_>) {
        let addr = self.addr;
        self.log.push(&addr[..self.len], entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_formatted_as_display_does() {
        for a in [
            "0.0.0.0:1",
            "10.0.99.255:2",
            "[::ffff:1.2.3.4]:3",
            "[2001:db8::1]:4",
        ] {
            let peer: SocketAddr = a.parse().unwrap();
            let mut out = [0u8; 48];
            let n = format_ip(Some(peer), &mut out);
            assert_eq!(&out[..n], peer.ip().to_canonical().to_string().as_bytes());
        }
        assert_eq!(format_ip(None, &mut [0u8; 48]), 1);
    }

    #[test]
    fn lines_wait_for_the_turn_and_survive_a_reopen() {
        let dir = std::env::temp_dir().join(format!("reactor-access-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("access.log");
        let mut log = AccessLog::open(&path).unwrap();
        log.set_time(b"Sun, 06 Nov 1994 08:49:37 GMT");
        let e = Logged {
            request: b"GET / HTTP/1.1",
            status: 200,
            bytes: 14,
            referer: None,
            user_agent: None,
        };
        let peer: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        log.sink(Some(peer)).log(&e);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"",
            "buffered until the turn ends"
        );
        log.write_once();
        let line =
            "127.0.0.1 - - [06/Nov/1994:08:49:37 +0000] \"GET / HTTP/1.1\" 200 14 \"-\" \"-\"\n";
        assert_eq!(std::fs::read_to_string(&path).unwrap(), line);
        log.sink(Some(peer)).log(&e);
        std::fs::rename(&path, dir.join("access.log.1")).unwrap();
        log.reopen();
        assert_eq!(log.peer_of(7, || Some(peer)), Some(peer));
        assert_eq!(log.peer_of(7, || None), Some(peer), "asked once");
        log.ws_opened(7, "/ws/echo");
        log.ws_closed(7);
        log.ws_closed(7);
        drop(log);
        assert_eq!(
            std::fs::read_to_string(dir.join("access.log.1")).unwrap(),
            format!("{line}{line}")
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "127.0.0.1 - - [06/Nov/1994:08:49:37 +0000] \"WS-CLOSE /ws/echo\" 101 0 \"-\" \"-\"\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
