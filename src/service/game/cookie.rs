//! The address check of the UDP handshake: a stateless cookie, as DTLS's
//! `HelloVerifyRequest` and QUIC's Retry token do it.
//!
//! A client says HELLO; the server answers with a cookie that is a keyed
//! hash of the client's address and the current time window, and keeps
//! nothing. The client echoes the cookie in JOIN; the server hashes again
//! and compares. Only a client that can *receive* at the address it sends
//! from learns the cookie, so a JOIN with a good cookie proves the
//! address, and only then does the server start sending snapshots (more
//! bytes than the client sends). A spoofed HELLO gets the victim a reply
//! no larger than the HELLO itself: no amplification.
//!
//! The hash is SipHash-2-4 (a keyed pseudo-random function made for short
//! inputs) under a 128-bit key drawn at start; a cookie is good in its own
//! window of `WINDOW_MS` and the next, so it lives 10 to 20 seconds.

use std::net::{IpAddr, SocketAddr};

/// The length of a time window; a cookie is good for this one and the next.
pub const WINDOW_MS: u64 = 10_000;

/// SipHash-2-4 of `data` under key `(k0, k1)`.
pub fn siphash(k0: u64, k1: u64, data: &[u8]) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    let compress = |m: u64, v: &mut [u64; 4]| {
        v[3] ^= m;
        round(v);
        round(v);
        v[0] ^= m;
    };
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        compress(u64::from_le_bytes(c.try_into().unwrap_or_default()), &mut v);
    }
    let rest = chunks.remainder();
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    let m = u64::from_le_bytes(last) | ((data.len() as u64 & 0xff) << 56);
    compress(m, &mut v);
    v[2] ^= 0xff;
    for _ in 0..4 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// The bytes an address is hashed as, after a one-byte `domain` and the
/// 8-byte `n` (the window, or a counter): 16 bytes of IP (IPv4 mapped),
/// 2 of port.
fn material(domain: u8, n: u64, addr: SocketAddr) -> [u8; 27] {
    let mut m = [0u8; 27];
    m[0] = domain;
    m[1..9].copy_from_slice(&n.to_le_bytes());
    let ip = match addr.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    m[9..25].copy_from_slice(&ip.octets());
    m[25..27].copy_from_slice(&addr.port().to_le_bytes());
    m
}

/// The server's secret and what it derives from it.
#[derive(Clone, Copy, Debug)]
pub struct Secret {
    /// The SipHash key.
    key: [u64; 2],
}

impl Secret {
    /// A secret from a fixed key (tests), or from `random()` at start.
    pub fn new(key: [u64; 2]) -> Secret {
        Secret { key }
    }

    /// A secret from the OS's randomness (`/dev/urandom`), or, failing
    /// that, from the standard library's per-process hash keys.
    pub fn random() -> Secret {
        use std::io::Read;
        let mut b = [0u8; 16];
        let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
        if read.is_err() {
            use std::hash::{BuildHasher, RandomState};
            let s = RandomState::new();
            b[..8].copy_from_slice(&s.hash_one(1u8).to_le_bytes());
            b[8..].copy_from_slice(&s.hash_one(2u8).to_le_bytes());
        }
        let k0 = u64::from_le_bytes(b[..8].try_into().unwrap_or_default());
        let k1 = u64::from_le_bytes(b[8..].try_into().unwrap_or_default());
        Secret { key: [k0, k1] }
    }

    /// The cookie for `addr` in the window of `now`.
    pub fn cookie(&self, addr: SocketAddr, now: u64) -> u64 {
        self.cookie_in(addr, now / WINDOW_MS)
    }

    /// The cookie for `addr` in window `w`.
    fn cookie_in(&self, addr: SocketAddr, w: u64) -> u64 {
        siphash(self.key[0], self.key[1], &material(b'c', w, addr))
    }

    /// True if `cookie` is what `addr` was given in this window or the
    /// last one.
    pub fn check(&self, addr: SocketAddr, cookie: u64, now: u64) -> bool {
        let w = now / WINDOW_MS;
        self.cookie_in(addr, w) == cookie || (w > 0 && self.cookie_in(addr, w - 1) == cookie)
    }

    /// A session token for the `n`th player joined, from `addr`: what an
    /// off-path sender cannot guess, so it cannot move a player by
    /// spoofing its address.
    pub fn token(&self, addr: SocketAddr, n: u64) -> u32 {
        siphash(self.key[0], self.key[1], &material(b't', n, addr)) as u32
    }
}
