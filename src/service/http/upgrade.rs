//! The WebSocket opening handshake (RFC 6455 section 4.2), the HTTP side of
//! `GET /ws` and `GET /ws/echo`: a valid upgrade request gets `101
//! Switching Protocols` and the connection leaves HTTP (the loop makes it
//! a chat member or an echo speaking frames, `service::ws`); anything else
//! gets the status that says what was wrong, and the connection closes.
//!
//! No extension is negotiated: an offer of `permessage-deflate` (every
//! browser makes one) is declined the way RFC 7692 section 5 provides, by
//! a 101 without `Sec-WebSocket-Extensions`, so the client sends frames
//! without RSV1 (one with RSV1 is a protocol error, 1002). Nor is a
//! subprotocol chosen: a `Sec-WebSocket-Protocol` offer goes unanswered.
//! Why not deflate: its per-connection cost, in `docs/WEBSOCKET.md`.

use super::config::HttpConfig;
use super::request::{Framing, Method, Request};
use super::response::{self, Conn};
use crate::service::ws;

/// Extra header lines of a refusal.
type Headers<'a> = &'a [(&'a str, &'a [u8])];

/// Answers an upgrade request to a WebSocket endpoint; `true` if it was accepted (101 in
/// `out`), `false` if refused (an error in `out` that closes).
pub(super) fn handshake(
    req: &Request<'_>,
    cfg: &HttpConfig,
    date: &[u8],
    out: &mut Vec<u8>,
) -> bool {
    let up = &req.upgrade;
    let version_ok = up.version == Some(b"13");
    let key = up.key.filter(|k| !up.duplicate_key && ws::valid_key(k));
    let head = req.method == Method::Head;
    let refusal: Option<(u16, Headers<'_>)> = if !(head || req.method == Method::Get) || req.http10
    {
        Some((400, &[])) // the handshake is an HTTP/1.1 GET
    } else if !up.websocket {
        // A plain GET (or HEAD) of a WebSocket resource: say what it needs.
        Some((
            426,
            &[("Upgrade", b"websocket"), ("Sec-WebSocket-Version", b"13")],
        ))
    } else if head {
        Some((400, &[])) // HEAD cannot switch protocols
    } else if !version_ok {
        Some((426, &[("Sec-WebSocket-Version", b"13")]))
    } else if !up.connection || key.is_none() || req.framing != Framing::None {
        Some((400, &[]))
    } else if !origin_allowed(up.origin, &cfg.ws_origins) {
        Some((403, &[]))
    } else {
        None
    };
    if let Some((status, extra)) = refusal {
        response::error_with(out, status, date, extra, head, Conn::Close);
        return false;
    }
    let accept = ws::accept_key(key.unwrap_or_default());
    response::start(out, 101, date);
    out.extend_from_slice(b"Upgrade: websocket\r\nConnection: Upgrade\r\n");
    response::header(out, "Sec-WebSocket-Accept", accept.as_bytes());
    out.extend_from_slice(b"\r\n");
    true
}

/// True if a request from `origin` may upgrade: always when the allow-list
/// is empty or the client sent no `Origin` (not a browser, so no page can
/// be borrowing a user's session); otherwise only a listed origin (ASCII
/// case-insensitive, as browsers send scheme and host in lowercase).
fn origin_allowed(origin: Option<&[u8]>, allowed: &[String]) -> bool {
    match origin {
        None => true,
        Some(_) if allowed.is_empty() => true,
        Some(o) => allowed.iter().any(|a| a.as_bytes().eq_ignore_ascii_case(o)),
    }
}
