//! WebSocket (RFC 6455) as a sans-I/O codec: the handshake's accept key,
//! a frame decoder that reassembles messages inside the caller's buffer,
//! and the server's frame encoder.
//!
//! # Decoding in place
//!
//! The loop keeps a connection's unread bytes in one buffer and hands it to
//! [`Decoder::feed`]. Frames are unmasked where they lie. A fragmented
//! message is gathered at the front of the same buffer: each fragment's
//! payload slides down to follow the previous one, so a message in flight
//! costs no second buffer, and the decoder's state between calls is three
//! small integers. A partial frame is never consumed, only offered again
//! with more bytes after it (as the HTTP head parser does).
//!
//! # What is refused, and with which close code
//!
//! - 1002 (protocol error): an unmasked client frame, RSV bits, an unknown
//!   opcode, a fragmented or over-125-byte control frame, a continuation
//!   with no message begun or a new message before the last one ended, a
//!   64-bit length with its top bit set, a malformed close payload.
//! - 1003 (unsupported data): a binary message, where the caller takes
//!   only text ([`Accept::binary`]: chat lines are text, echo takes both).
//! - 1007 (invalid payload): a text message or close reason that is not
//!   UTF-8, judged as the fragments arrive (an invalid prefix fails at once).
//! - 1009 (too big): a message over the limit ([`Accept::max`]), judged
//!   from the frame header before its payload is waited for.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// The GUID the accept key is derived with (RFC 6455 section 1.3).
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Close codes (RFC 6455 section 7.4.1).
pub mod code {
    /// The purpose of the connection is fulfilled.
    pub const NORMAL: u16 = 1000;
    /// The server is going down.
    pub const GOING_AWAY: u16 = 1001;
    /// A frame broke the protocol.
    pub const PROTOCOL: u16 = 1002;
    /// A kind of data the endpoint does not take (binary, on the chat).
    pub const UNSUPPORTED: u16 = 1003;
    /// Text that is not UTF-8.
    pub const INVALID: u16 = 1007;
    /// A policy was broken (the member did not read its output).
    pub const POLICY: u16 = 1008;
    /// A message over the size limit.
    pub const TOO_BIG: u16 = 1009;
}

/// Frame opcodes.
mod op {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// Largest control frame payload.
const CONTROL_MAX: usize = 125;

/// Longest frame header a client sends: 2 + 8 (length) + 4 (mask).
pub const HEADER_MAX: usize = 14;

/// `Sec-WebSocket-Accept` for `key`: base64 of the SHA-1 of key + GUID.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key);
    sha.update(GUID);
    BASE64.encode(sha.digest().bytes())
}

/// True if `key` is a valid `Sec-WebSocket-Key`: base64 of 16 bytes.
pub fn valid_key(key: &[u8]) -> bool {
    key.len() == 24 && BASE64.decode(key).is_ok_and(|k| k.len() == 16)
}

/// What a caller takes in data messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accept {
    /// Largest message in bytes, its fragments counted together (more:
    /// 1009). At most `u32::MAX`: a larger value is taken as that.
    pub max: usize,
    /// Binary messages are taken (as [`Event::Binary`]); else 1003.
    pub binary: bool,
}

impl Accept {
    /// Text messages of up to `max` bytes, and no binary ones.
    pub fn text(max: usize) -> Accept {
        Accept { max, binary: false }
    }
}

/// A complete thing the client said.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A whole text message (valid UTF-8, reassembled).
    Text(&'a [u8]),
    /// A whole binary message (reassembled), when the caller takes them.
    Binary(&'a [u8]),
    /// A ping with its payload: answer with a pong carrying it.
    Ping(&'a [u8]),
    /// A pong (the answer to our keep-alive ping).
    Pong,
    /// The client's close, with its status code if it gave one: answer
    /// with the same code, then close.
    Close(Option<u16>),
}

/// A connection's decoding state between calls (12 bytes): the reassembled
/// part of a fragmented message at the front of the buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decoder {
    /// Bytes of the message in flight gathered at the buffer's front.
    assembled: u32,
    /// Of those, how many are known to be valid UTF-8 (a sequence may be
    /// cut between fragments).
    checked: u32,
    /// A fragmented message has begun and not ended.
    in_message: bool,
    /// That message is binary (no UTF-8 to check).
    binary: bool,
}

/// A frame header, parsed.
struct Header {
    /// The final fragment of its message.
    fin: bool,
    /// The opcode.
    opcode: u8,
    /// The masking key.
    mask: [u8; 4],
    /// Header length in bytes.
    len: usize,
    /// Payload length in bytes.
    payload: u64,
}

impl Decoder {
    /// True when no fragmented message is in flight: the state is the
    /// default and need not be kept.
    pub fn is_idle(&self) -> bool {
        *self == Decoder::default()
    }

    /// Decodes the frames at the start of `buf` (the bytes it kept last
    /// time, then new ones), calling `on` for each event in order until it
    /// returns `false`. Data messages are taken as `accept` says (size,
    /// binary or not). Returns how many bytes at the front of `buf` to
    /// keep (a message in flight and a partial frame, moved to the front),
    /// or the close code to fail with.
    pub fn feed(
        &mut self,
        buf: &mut [u8],
        accept: Accept,
        mut on: impl FnMut(Event<'_>) -> bool,
    ) -> Result<usize, u16> {
        // `assembled` is a u32: so is the limit.
        let max = accept.max.min(u32::MAX as usize) as u64;
        // buf[start..start + self.assembled]: the message in flight;
        // buf[pos..]: frames not yet decoded.
        let mut start = 0;
        let mut pos = self.assembled as usize;
        while let Some(h) = header(buf.get(pos..).unwrap_or_default())? {
            let control = h.opcode & 0x8 != 0;
            if !control {
                self.check_order(h.opcode)?;
                if h.opcode == op::BINARY && !accept.binary {
                    return Err(code::UNSUPPORTED);
                }
                // Too big is known from the header: fail before buffering it.
                if h.payload > max.saturating_sub(u64::from(self.assembled)) {
                    return Err(code::TOO_BIG);
                }
            }
            let total = h.len + h.payload as usize;
            if buf.len() - pos < total {
                break; // the payload is still arriving
            }
            let body = pos + h.len..pos + total;
            unmask(&mut buf[body.clone()], h.mask);
            pos += total;
            if control {
                let event = control_event(h.opcode, &buf[body])?;
                if !on(event) {
                    break;
                }
                continue;
            }
            // Slide the fragment down to follow the message so far.
            let at = start + self.assembled as usize;
            buf.copy_within(body.clone(), at);
            self.assembled += body.len() as u32;
            if !self.in_message {
                self.in_message = true;
                self.binary = h.opcode == op::BINARY;
            }
            let message = &buf[start..start + self.assembled as usize];
            if !self.binary {
                self.checked = check_utf8(message, self.checked as usize, h.fin)? as u32;
            }
            if h.fin {
                let whole = &buf[start..start + self.assembled as usize];
                let event = if self.binary {
                    Event::Binary(whole)
                } else {
                    Event::Text(whole)
                };
                *self = Decoder::default();
                // The next message gathers where the undecoded frames begin.
                start = pos;
                if !on(event) {
                    break;
                }
            }
        }
        // Keep the message in flight and the undecoded rest, at the front.
        let assembled = self.assembled as usize;
        buf.copy_within(start..start + assembled, 0);
        buf.copy_within(pos.., assembled);
        Ok(assembled + buf.len() - pos)
    }

    /// Checks that a data frame with `opcode` may come now.
    fn check_order(&self, opcode: u8) -> Result<(), u16> {
        match (opcode, self.in_message) {
            (op::CONTINUATION, true) | (op::TEXT | op::BINARY, false) => Ok(()),
            _ => Err(code::PROTOCOL),
        }
    }
}

/// Parses the frame header at the start of `b`: `None` if incomplete, the
/// close code if it breaks a rule that the header alone shows.
fn header(b: &[u8]) -> Result<Option<Header>, u16> {
    let [b0, b1, ..] = *b else {
        return Ok(None);
    };
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    if b0 & 0x70 != 0 || !matches!(opcode, 0x0..=0x2 | 0x8..=0xA) {
        return Err(code::PROTOCOL); // RSV bits without an extension; unknown opcode
    }
    if b1 & 0x80 == 0 {
        return Err(code::PROTOCOL); // a client must mask every frame
    }
    let (payload, at) = match b1 & 0x7F {
        126 => match b.get(2..4) {
            Some(n) => (u64::from(u16::from_be_bytes([n[0], n[1]])), 4),
            None => return Ok(None),
        },
        127 => match b.get(2..10).and_then(|n| <[u8; 8]>::try_from(n).ok()) {
            Some(n) if n[0] & 0x80 != 0 => return Err(code::PROTOCOL),
            Some(n) => (u64::from_be_bytes(n), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if opcode & 0x8 != 0 && (!fin || payload > CONTROL_MAX as u64) {
        return Err(code::PROTOCOL);
    }
    let Some(mask) = b.get(at..at + 4).and_then(|m| <[u8; 4]>::try_from(m).ok()) else {
        return Ok(None);
    };
    Ok(Some(Header {
        fin,
        opcode,
        mask,
        len: at + 4,
        payload,
    }))
}

/// Unmasks `payload` in place with the client's key.
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    // Four bytes at a time where they line up, so the compiler vectorises.
    let word = u32::from_ne_bytes(mask);
    let mut chunks = payload.chunks_exact_mut(4);
    for c in &mut chunks {
        let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (b, m) in chunks.into_remainder().iter_mut().zip(mask) {
        *b ^= m;
    }
}

/// The event a control frame with `payload` makes, or its close code.
fn control_event(opcode: u8, payload: &[u8]) -> Result<Event<'_>, u16> {
    match opcode {
        op::PING => Ok(Event::Ping(payload)),
        op::PONG => Ok(Event::Pong),
        _ => match payload {
            [] => Ok(Event::Close(None)),
            [hi, lo, reason @ ..] => {
                let status = u16::from_be_bytes([*hi, *lo]);
                if !valid_close_code(status) {
                    return Err(code::PROTOCOL);
                }
                if std::str::from_utf8(reason).is_err() {
                    return Err(code::INVALID);
                }
                Ok(Event::Close(Some(status)))
            }
            [_] => Err(code::PROTOCOL), // a code is two bytes
        },
    }
}

/// True for a close code a peer may send (RFC 6455 section 7.4).
fn valid_close_code(status: u16) -> bool {
    matches!(status, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// How much of `message` is valid UTF-8, checking on from `from` (which
/// ends a valid prefix); a sequence cut at the end is allowed unless this
/// is the final fragment. 1007 if invalid.
fn check_utf8(message: &[u8], from: usize, fin: bool) -> Result<usize, u16> {
    match std::str::from_utf8(&message[from..]) {
        Ok(_) => Ok(message.len()),
        Err(e) if e.error_len().is_none() && !fin => Ok(from + e.valid_up_to()),
        Err(_) => Err(code::INVALID),
    }
}

/// The header of a final, unmasked server frame with `opcode` and a
/// payload of `len` bytes; use `&h[..n]` of the returned `(h, n)`.
pub fn frame_header(opcode: u8, len: usize) -> ([u8; 10], usize) {
    let mut h = [0; 10];
    h[0] = 0x80 | opcode;
    let n = if len <= CONTROL_MAX {
        h[1] = len as u8;
        2
    } else if let Ok(short) = u16::try_from(len) {
        h[1] = 126;
        h[2..4].copy_from_slice(&short.to_be_bytes());
        4
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    (h, n)
}

/// The header of a text frame of `len` bytes (see [`frame_header`]).
pub fn text_header(len: usize) -> ([u8; 10], usize) {
    frame_header(op::TEXT, len)
}

/// The header of a binary frame of `len` bytes (see [`frame_header`]).
pub fn binary_header(len: usize) -> ([u8; 10], usize) {
    frame_header(op::BINARY, len)
}

/// Appends a pong answering a ping with `payload`.
pub fn pong(payload: &[u8], out: &mut Vec<u8>) {
    let (h, n) = frame_header(op::PONG, payload.len());
    out.extend_from_slice(&h[..n]);
    out.extend_from_slice(payload);
}

/// Our keep-alive ping (empty payload).
pub const PING: [u8; 2] = [0x80 | op::PING, 0];

/// A close frame with `status` (and no reason).
pub fn close_frame(status: u16) -> [u8; 4] {
    let [hi, lo] = status.to_be_bytes();
    [0x80 | op::CLOSE, 2, hi, lo]
}

/// A close frame with no status (the answer to a close without one).
pub const CLOSE_EMPTY: [u8; 2] = [0x80 | op::CLOSE, 0];

#[cfg(test)]
mod tests;
