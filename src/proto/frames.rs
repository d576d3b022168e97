//! Chat lines as WebSocket text frames: how the hub's lines reach a
//! member speaking frames (the chat's fan-out calls this for such
//! members, the WebSocket member for its own notices), so the hub never
//! knows which members are browsers.

use std::borrow::Cow;

use crate::buf::Pool;
use crate::core::Link;
use crate::service::ws::{self, code};

/// Queues the hub's `bytes` (whole lines, each ending in `\n`) as one
/// text frame per line. A TCP member may have sent bytes that are not
/// UTF-8; a browser would fail the whole connection on them, so such a
/// line goes out with U+FFFD in their place.
pub(super) fn frame_lines(link: &mut Link, bytes: &[u8], pool: &mut Pool) {
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let text = match String::from_utf8_lossy(line) {
            Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        };
        let (head, n) = ws::text_header(text.len());
        link.queue(&head[..n], pool);
        link.queue(&text, pool);
    }
}

/// The close frame a member dropped for not reading gets (1008).
pub(super) fn close_policy() -> [u8; 4] {
    ws::close_frame(code::POLICY)
}
