//! A WebSocket client for the tests, as a browser speaks it: the
//! handshake (with the RFC 6455 example key), masked frames out, frames in
//! read whole, and the chat's welcome.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

use super::{End, connect, read_to_end};

/// The accept value of the RFC 6455 example key (sent in `GOOD`).
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The status code and headers (lowercased names) of a response head read
/// byte by byte, so nothing after it is consumed.
pub fn read_head(s: &mut TcpStream) -> (u16, Vec<(String, String)>) {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            other => panic!(
                "head ended early ({other:?}) after {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    let text = String::from_utf8(head).unwrap();
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
        .collect();
    (status, headers)
}

pub fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// A handshake request with `extra` header lines.
pub fn upgrade_request(extra: &str) -> String {
    format!("GET /ws HTTP/1.1\r\nHost: t\r\n{extra}\r\n")
}

pub const GOOD: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
                    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

/// A client frame, masked (or not, to break the rules).
pub fn frame(fin: bool, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mask = [0xA1, 0x5B, 0x07, 0xC3];
    let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
    let m = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n <= 125 => f.push(m | n as u8),
        n if n <= 0xFFFF => {
            f.push(m | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(m | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        f.extend_from_slice(&mask);
        f.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, k)| b ^ k));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

pub fn text(s: &str) -> Vec<u8> {
    frame(true, 1, s.as_bytes(), true)
}

/// A browser-like member: handshake done, frames in and out (reads are
/// buffered, as a browser's are, so it keeps up with a flood).
pub struct Ws {
    pub s: TcpStream,
    pub r: BufReader<TcpStream>,
}

/// A server frame: opcode and payload.
#[derive(Debug, PartialEq)]
pub struct Frame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn text(&self) -> &str {
        assert_eq!(self.opcode, 1, "not a text frame: {self:?}");
        std::str::from_utf8(&self.payload).unwrap()
    }

    pub fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, 8, "not a close frame: {self:?}");
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

impl Ws {
    /// A member over `s`, whose handshake is done.
    pub fn over(s: TcpStream) -> Ws {
        let r = BufReader::with_capacity(64 * 1024, s.try_clone().unwrap());
        Ws { s, r }
    }

    pub fn open(addr: SocketAddr) -> Ws {
        Ws::open_at(addr, "/ws")
    }

    /// A connection to the endpoint at `path`, handshake done.
    pub fn open_at(addr: SocketAddr, path: &str) -> Ws {
        let mut s = connect(addr);
        write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n{GOOD}\r\n").unwrap();
        let (status, h) = read_head(&mut s);
        assert_eq!(status, 101);
        assert_eq!(header(&h, "sec-websocket-accept"), Some(ACCEPT));
        Ws::over(s)
    }

    /// Opens and reads the welcome; returns the member and its nick.
    pub fn join(addr: SocketAddr) -> (Ws, String) {
        let mut ws = Ws::open(addr);
        let welcome = ws.recv().text().to_string();
        let nick = welcome
            .strip_prefix("* welcome to reactor chat, you are ")
            .and_then(|r| r.split(" in lobby").next())
            .unwrap_or_else(|| panic!("welcome {welcome:?}"))
            .to_string();
        (ws, nick)
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    pub fn recv(&mut self) -> Frame {
        self.try_recv().unwrap_or_else(|e| panic!("no frame: {e}"))
    }

    pub fn try_recv(&mut self) -> std::io::Result<Frame> {
        let mut h = [0u8; 2];
        self.r.read_exact(&mut h)?;
        assert_eq!(h[0] & 0x70, 0, "RSV bits from the server");
        assert_eq!(h[1] & 0x80, 0, "a server frame must not be masked");
        let len = match h[1] & 0x7F {
            126 => {
                let mut n = [0u8; 2];
                self.r.read_exact(&mut n)?;
                u16::from_be_bytes(n) as usize
            }
            127 => {
                let mut n = [0u8; 8];
                self.r.read_exact(&mut n)?;
                u64::from_be_bytes(n) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0; len];
        self.r.read_exact(&mut payload)?;
        Ok(Frame {
            opcode: h[0] & 0x0F,
            payload,
        })
    }

    /// Skips frames until a text frame satisfying `pred`.
    pub fn until(&mut self, pred: impl Fn(&str) -> bool) -> String {
        loop {
            let f = self.recv();
            if f.opcode == 1 && pred(f.text()) {
                return f.text().to_string();
            }
        }
    }

    /// Reads until a close frame (skipping others); its code.
    pub fn close_code(&mut self) -> Option<u16> {
        loop {
            let f = self.recv();
            if f.opcode == 8 {
                return f.close_code();
            }
        }
    }

    /// After a close frame: the server closes the TCP connection.
    pub fn expect_eof(&mut self) {
        let (rest, end) = read_to_end(&mut self.r, "ws after close");
        assert!(rest.is_empty(), "bytes after the close frame: {rest:?}");
        assert_eq!(end, End::Eof, "the server must close cleanly");
    }
}
