//! TLS on the loop, with rustls's *unbuffered* API.
//!
//! Why unbuffered: a buffered `rustls::ServerConnection` keeps its own
//! buffers for the life of the connection (a 4 KiB read buffer that never
//! shrinks below one read, plus queues of received and sendable bytes), so
//! an idle keep-alive connection would hold them for nothing. With
//! `UnbufferedServerConnection` the ciphertext lives in buffers we pass in:
//! they come from the reactor's pool (`src/buf.rs`) when bytes arrive or
//! must be sent and go back the moment they are empty. An idle TLS
//! connection then keeps only rustls's key schedule and record state (the
//! figure is in `docs/ARCHITECTURE.md`, "Transport: plain, Unix and TLS").
//!
//! Three edge-triggered subtleties live here:
//! - the socket is read until `WouldBlock` (or EOF): a short read proves
//!   nothing, since one record may arrive in pieces and rustls only hands
//!   out whole records;
//! - plaintext, or whole records, can be left over once the socket is
//!   drained (the caller's buffer filled up): the fd will not signal them
//!   again, so [`Got::drained`] says so and the loop keeps the connection
//!   readable (Redis's `has_pending_data`);
//! - handshake bytes flow from the read path itself: the service queues
//!   nothing until the handshake is done, and its output waits for it.

use std::io::{self, ErrorKind, Read, Write};
use std::net::Shutdown;
use std::path::Path;
use std::sync::Arc;

use log::debug;
use mio::net::TcpStream;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};

use crate::buf::{Buffer, CHUNK, Pool};
use crate::error::{Error, Result};

/// The most plaintext one record carries (RFC 8446, section 5.1).
const MAX_PLAINTEXT: usize = 16 * 1024;
/// Ciphertext kept unprocessed at most: room for the largest record rustls
/// accepts (16 KiB + 2 KiB + header) and change. Past it, process first.
const INCOMING_CAP: usize = 2 * CHUNK;
/// The caller's buffer is "full enough" past this: stop decrypting, say
/// "not drained", and let the service consume first.
const PLAIN_ENOUGH: usize = CHUNK / 2;
/// Rounds of process/read in one call, in a row, that use no incoming
/// byte before giving up on a peer whose bytes make no progress (cannot
/// happen with a sane rustls; never spin). Rounds that use bytes do not
/// count: a peer may send hundreds of tiny records in one read (a
/// WebSocket client writing 64-byte frames one record each), and their
/// number is bounded by the `INCOMING_CAP` bytes they came in.
const MAX_ROUNDS: usize = 64;

/// The ALPN protocol the HTTPS listener offers.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Loads a PEM certificate chain and private key (RSA, ECDSA or Ed25519)
/// into a rustls server configuration: TLS 1.2 and 1.3 only, rustls's
/// default provider and suites, and the ALPN protocols `alpn`.
pub fn server_config(cert: &Path, key: &Path, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>> {
    let shown = |p: &Path| p.display().to_string();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect())
        .map_err(|e| Error::Config(format!("tls: cannot read certificate {}: {e}", shown(cert))))?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "tls: no certificate in {}",
            shown(cert)
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| Error::Config(format!("tls: cannot read private key {}: {e}", shown(key))))?;
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Config(format!("tls: certificate and key rejected: {e}")))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The SHA-1 fingerprint of the first certificate in the PEM file `cert`
/// (`AB:CD:...`, as `openssl x509 -fingerprint` prints it), for the logs.
pub fn fingerprint(cert: &Path) -> Option<String> {
    let first = CertificateDer::pem_file_iter(cert).ok()?.next()?.ok()?;
    let digest = sha1_smol::Sha1::from(first.as_ref()).digest().bytes();
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    Some(hex.join(":"))
}

/// Writes a self-signed certificate and its key for `localhost` and
/// `127.0.0.1` to `dir/cert.pem` and `dir/key.pem` (the key readable by
/// its owner only); returns the two paths.
pub fn write_self_signed(dir: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let fail = |e: rcgen::Error| Error::Config(format!("cert: cannot generate: {e}"));
    let mut params = rcgen::CertificateParams::new(names).map_err(fail)?;
    // Valid from the start of this year to the end of next January: at
    // most 396 days, under the 398 that scanners and browsers accept
    // (rcgen's default, 1975 to 4096, is rated a finding).
    let year = this_year();
    params.not_before = rcgen::date_time_ymd(year, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 1, 1, 31);
    let signing_key = rcgen::KeyPair::generate().map_err(fail)?;
    let cert = params.self_signed(&signing_key).map_err(fail)?;
    let made = rcgen::CertifiedKey { cert, signing_key };
    std::fs::create_dir_all(dir)?;
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, made.cert.pem())?;
    write_private(&key, made.signing_key.serialize_pem().as_bytes())?;
    Ok((cert, key))
}

/// The current UTC year (from the system clock; 1970 if it is unset).
fn this_year() -> i32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Whole days, then years of 365.2425 days: exact enough away from
    // the first and last day of a year, which the validity range spans.
    1970 + (secs / 86_400 * 10_000 / 3_652_425) as i32
}

/// Writes `bytes` to a new file at `path` with mode 0600.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

/// True if `data` starts with a whole TLS record (5-byte header, then
/// the length it gives).
fn whole_record(data: &[u8]) -> bool {
    data.len() >= 5 && data.len() >= 5 + usize::from(u16::from_be_bytes([data[3], data[4]]))
}

/// What one read produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Got {
    /// Bytes appended to the caller's buffer; 0 means end of input.
    pub n: usize,
    /// Nothing is left to read until the next readiness event: the socket
    /// said `WouldBlock` and no record or plaintext waits in user space.
    pub drained: bool,
}

/// What the caller wants from one pass over rustls's states.
enum Want<'a> {
    /// Decrypted application data, into this buffer.
    Read(&'a mut Buffer),
    /// This plaintext encrypted (at most one record of it).
    Encrypt(&'a [u8]),
    /// A `close_notify` alert queued.
    CloseNotify,
}

/// A TLS server connection over a mio TCP stream. Ciphertext buffers are
/// taken from the reactor's pool and held only while they hold bytes.
pub struct TlsStream {
    /// The socket.
    sock: TcpStream,
    /// rustls's state: handshake, keys, record sequence numbers.
    conn: UnbufferedServerConnection,
    /// Ciphertext read and not yet processed (a partial record, or whole
    /// ones left for the next read); `None` when empty.
    incoming: Option<Box<Buffer>>,
    /// Ciphertext not yet written to the socket; `None` when empty.
    outgoing: Option<Box<Buffer>>,
    /// Plaintext decrypted while encrypting (records rustls had to get
    /// past first), handed out by the next read; `None` when empty.
    plain: Option<Box<Buffer>>,
    /// The handshake is done: application data may be encrypted.
    established: bool,
    /// Whole records may wait in `incoming` (decrypting stopped early).
    backlog: bool,
    /// The socket read returned 0 (the peer's FIN).
    sock_eof: bool,
    /// No more plaintext will come: `close_notify`, or FIN after the last
    /// whole record.
    eof: bool,
    /// Our `close_notify` is queued (it goes out before FIN).
    close_queued: bool,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("sock", &self.sock)
            .field("established", &self.established)
            .field("pending", &self.unsent())
            .finish_non_exhaustive()
    }
}

/// A rustls error as an I/O error (the loop logs it and closes).
fn tls_err(e: rustls::Error) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, format!("tls: {e}"))
}

/// Appends what `put` writes into `out`'s spare room (a pool buffer taken
/// if there is none), growing the buffer once if `put` asks for more.
fn put_with(
    out: &mut Option<Box<Buffer>>,
    pool: &mut Pool,
    mut put: impl FnMut(&mut [u8]) -> std::result::Result<usize, usize>,
) -> io::Result<usize> {
    let buf = out.get_or_insert_with(|| pool.get());
    let mut want = buf.spare().max(1024);
    for _ in 0..2 {
        let mut required = 0;
        let n = buf.fill_with(want, |room| match put(room) {
            Ok(n) => Ok(n),
            Err(need) => {
                required = need;
                Ok(0)
            }
        })?;
        if required == 0 {
            return Ok(n);
        }
        want = required;
    }
    Err(io::Error::other("tls: output record does not fit"))
}

/// The room an encode asks for, from its error (0 if it was not a size).
fn encode_need(e: EncodeError) -> usize {
    match e {
        EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => required_size,
        EncodeError::AlreadyEncoded => 0,
    }
}

/// The room an encrypt asks for, from its error (0 if it was not a size).
fn encrypt_need(e: EncryptError) -> usize {
    match e {
        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => required_size,
        EncryptError::EncryptExhausted => 0,
    }
}

impl TlsStream {
    /// A server connection on `sock`, its handshake not yet begun.
    pub fn new(sock: TcpStream, config: Arc<ServerConfig>) -> io::Result<TlsStream> {
        Ok(TlsStream {
            sock,
            conn: UnbufferedServerConnection::new(config).map_err(tls_err)?,
            incoming: None,
            outgoing: None,
            plain: None,
            established: false,
            backlog: false,
            sock_eof: false,
            eof: false,
            close_queued: false,
        })
    }

    /// The socket, for registration.
    pub fn socket(&mut self) -> &mut TcpStream {
        &mut self.sock
    }

    /// The peer's address, while the socket is connected.
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.sock.peer_addr().ok()
    }

    /// Bytes of buffer storage held (records in, records out, plaintext
    /// decrypted ahead).
    pub fn held(&self) -> usize {
        [&self.incoming, &self.outgoing, &self.plain]
            .iter()
            .map(|b| b.as_ref().map_or(0, |b| b.capacity()))
            .sum()
    }

    /// Ciphertext waiting for the socket.
    pub fn unsent(&self) -> usize {
        self.outgoing.as_ref().map_or(0, |b| b.len())
    }

    /// True once application data may be sent (the handshake is done).
    pub fn can_send(&self) -> bool {
        self.established
    }

    /// Reads and decrypts into `buf`. `Ok(n == 0)` is the end of input
    /// (`close_notify`, or FIN); `WouldBlock` means nothing until the next
    /// event. Handshake replies are written on the way.
    pub fn read_into(&mut self, buf: &mut Buffer, pool: &mut Pool) -> io::Result<Got> {
        if let Some(mut stash) = self.plain.take() {
            let n = stash.len();
            buf.extend(stash.data());
            stash.consume(n);
            pool.put(stash);
            return Ok(Got { n, drained: false });
        }
        let before = buf.len();
        for _ in 0..MAX_ROUNDS {
            let sock_drained = self.fill(pool)?;
            let step = self.turn(Want::Read(buf), pool);
            pool.release_if_empty(&mut self.incoming);
            step?;
            self.send_best_effort(pool)?;
            let n = buf.len() - before;
            if self.sock_eof && !self.backlog && !self.eof {
                self.eof = true;
                if self.established {
                    debug!("tls: peer closed without close_notify");
                }
            }
            let drained = sock_drained && !self.backlog && !self.eof;
            if n > 0 || self.eof {
                return Ok(Got { n, drained });
            }
            if drained {
                return Err(ErrorKind::WouldBlock.into());
            }
        }
        Err(io::Error::other("tls: input makes no progress"))
    }

    /// Reads the socket into `incoming` until `WouldBlock`, EOF or
    /// `INCOMING_CAP`; true if the socket is drained (or at EOF).
    fn fill(&mut self, pool: &mut Pool) -> io::Result<bool> {
        if self.sock_eof {
            return Ok(true);
        }
        let TlsStream { sock, incoming, .. } = self;
        let buf = incoming.get_or_insert_with(|| pool.get());
        loop {
            if buf.spare() == 0 {
                // Full: process the whole records first; grow only for
                // one record larger than the buffer.
                if buf.len() >= INCOMING_CAP || whole_record(buf.data()) {
                    return Ok(false);
                }
                buf.reserve(CHUNK);
            }
            let room = buf.spare();
            match buf.fill_with(room, |r| sock.read(r)) {
                Ok(0) => {
                    self.sock_eof = true;
                    return Ok(true);
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Encrypts up to one record of `data` (once the handshake is done)
    /// and writes what the socket takes. Returns the plaintext bytes
    /// taken; `WouldBlock` when the socket is full and nothing was taken.
    pub fn write_from(&mut self, data: &[u8], pool: &mut Pool) -> io::Result<usize> {
        self.send_pending(pool)?;
        let take = &data[..data.len().min(MAX_PLAINTEXT)];
        let n = self.turn(Want::Encrypt(take), pool)?;
        self.send_best_effort(pool)?;
        Ok(n)
    }

    /// Writes queued ciphertext until it is all out (`Ok`) or the socket
    /// is full (`WouldBlock`).
    pub fn send_pending(&mut self, pool: &mut Pool) -> io::Result<()> {
        let Some(out) = self.outgoing.as_mut() else {
            return Ok(());
        };
        while !out.is_empty() {
            match self.sock.write(out.data()) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => out.consume(n),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        pool.release_if_empty(&mut self.outgoing);
        Ok(())
    }

    /// `send_pending`, where a full socket is not an error (the bytes stay
    /// queued, and `pending` tells the loop).
    fn send_best_effort(&mut self, pool: &mut Pool) -> io::Result<()> {
        match self.send_pending(pool) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(()),
            other => other,
        }
    }

    /// Staged close: queues `close_notify` (once), sends it, then FIN.
    /// `Ok(false)` while the alert is still on its way.
    pub fn shutdown_write(&mut self, pool: &mut Pool) -> io::Result<bool> {
        if !self.close_queued {
            self.close_queued = true;
            if self.established {
                self.turn(Want::CloseNotify, pool)?;
            }
        }
        match self.send_pending(pool) {
            Ok(()) => self.sock.shutdown(Shutdown::Write).map(|()| true),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the buffers back to the pool (the connection is closing).
    pub fn release(&mut self, pool: &mut Pool) {
        for slot in [&mut self.incoming, &mut self.outgoing, &mut self.plain] {
            if let Some(mut b) = slot.take() {
                b.consume(b.len());
                pool.put(b);
            }
        }
    }

    /// Runs rustls's state machine over `incoming` until it needs bytes
    /// from the peer or has done what `want` asks; handshake output lands
    /// in `outgoing`. Returns the plaintext bytes encrypted (`Encrypt`).
    fn turn(&mut self, mut want: Want<'_>, pool: &mut Pool) -> io::Result<usize> {
        let mut empty = [0u8; 0];
        let mut idle_rounds = 0;
        while idle_rounds < MAX_ROUNDS {
            let TlsStream {
                conn,
                incoming,
                outgoing,
                plain,
                ..
            } = self;
            let input = match incoming.as_mut() {
                Some(b) => b.data_mut(),
                None => &mut empty[..],
            };
            let UnbufferedStatus { discard, state } = conn.process_tls_records(input);
            let mut extra = 0;
            let mut stop = false;
            let mut done = 0;
            let state = match state {
                Ok(s) => s,
                Err(e) => {
                    if let Some(b) = incoming.as_mut() {
                        b.consume(discard.min(b.len()));
                    }
                    self.last_gasp(pool);
                    return Err(tls_err(e));
                }
            };
            match state {
                ConnectionState::ReadTraffic(mut t) => {
                    let into: &mut Buffer = match &mut want {
                        Want::Read(b) => b,
                        _ => plain.get_or_insert_with(|| pool.get()),
                    };
                    while let Some(rec) = t.next_record() {
                        let rec = rec.map_err(tls_err)?;
                        extra += rec.discard;
                        into.extend(rec.payload);
                    }
                    if matches!(&want, Want::Read(b) if b.len() >= PLAIN_ENOUGH) {
                        self.backlog = true;
                        stop = true;
                    }
                }
                ConnectionState::EncodeTlsData(mut e) => {
                    put_with(outgoing, pool, |room| e.encode(room).map_err(encode_need))?;
                }
                // The bytes are in `outgoing`; the caller writes them.
                ConnectionState::TransmitTlsData(t) => t.done(),
                ConnectionState::BlockedHandshake => {
                    self.backlog = false;
                    stop = true;
                }
                ConnectionState::WriteTraffic(mut w) => {
                    self.established = true;
                    self.backlog = false;
                    stop = true;
                    match &want {
                        Want::Read(_) => {}
                        Want::Encrypt(data) => {
                            put_with(outgoing, pool, |room| {
                                w.encrypt(data, room).map_err(encrypt_need)
                            })?;
                            done = data.len();
                        }
                        Want::CloseNotify => {
                            put_with(outgoing, pool, |room| {
                                w.queue_close_notify(room).map_err(encrypt_need)
                            })?;
                        }
                    }
                }
                ConnectionState::PeerClosed => self.eof = true,
                ConnectionState::Closed => {
                    self.eof = true;
                    self.backlog = false;
                    stop = true;
                }
                ConnectionState::ReadEarlyData(_) => {
                    return Err(io::Error::new(ErrorKind::InvalidData, "tls: early data"));
                }
                _ => stop = true,
            }
            if let Some(b) = self.incoming.as_mut() {
                b.consume((discard + extra).min(b.len()));
            }
            if stop {
                return Ok(done);
            }
            idle_rounds = if discard + extra > 0 {
                0
            } else {
                idle_rounds + 1
            };
        }
        Err(io::Error::other("tls: state machine makes no progress"))
    }

    /// After a fatal error: encode the alert rustls queued for the peer
    /// and try once to send it; errors here change nothing.
    fn last_gasp(&mut self, pool: &mut Pool) {
        let mut empty = [0u8; 0];
        for _ in 0..4 {
            let input = match self.incoming.as_mut() {
                Some(b) => b.data_mut(),
                None => &mut empty[..],
            };
            let status = self.conn.process_tls_records(input);
            match status.state {
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    let put = put_with(&mut self.outgoing, pool, |room| {
                        e.encode(room).map_err(encode_need)
                    });
                    if put.is_err() {
                        break;
                    }
                }
                Ok(ConnectionState::TransmitTlsData(t)) => t.done(),
                _ => break,
            }
        }
        let _ = self.send_pending(pool);
    }
}

/// What a reactor needs to serve TLS: one rustls configuration per kind
/// of listener (HTTPS offers ALPN `http/1.1`).
#[derive(Debug)]
pub struct TlsSetup {
    /// For `--https`: ALPN `http/1.1`.
    pub https: Arc<ServerConfig>,
    /// For `--tls-echo`: no ALPN.
    pub plain: Arc<ServerConfig>,
}

impl TlsSetup {
    /// Loads the certificate and key. Without them, an error naming the
    /// flags.
    pub fn load(cert: Option<&Path>, key: Option<&Path>) -> Result<TlsSetup> {
        let (Some(cert), Some(key)) = (cert, key) else {
            return Err(Error::Config(
                "TLS services (--https, --tls-echo) need --tls-cert FILE and --tls-key FILE (try `reactor cert --out DIR`)".into(),
            ));
        };
        let https = server_config(cert, key, &[ALPN_HTTP11])?;
        let mut plain = (*https).clone();
        plain.alpn_protocols.clear();
        Ok(TlsSetup {
            https,
            plain: Arc::new(plain),
        })
    }
}
