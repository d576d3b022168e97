//! A line's envelope on the bus (`1 NODE.LOOP STREAM SEQ\n` and the line),
//! and the receiver's check of each origin's order.

/// Who this loop is on the bus: its process's node id and its own index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    /// Drawn at random when the process starts; shared by its loops.
    pub node: u64,
    /// The loop's index in its process.
    pub lane: u16,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}.{}", self.node, self.lane)
    }
}

/// What a receiver knows of one origin's stream in a room.
#[derive(Clone, Copy, Debug)]
pub(super) struct Heard {
    /// The origin.
    origin: Origin,
    /// Its stream in this room.
    stream: u32,
    /// The last line number heard.
    seq: u64,
}

/// The origin, stream, number and line of an envelope.
pub(super) fn parse_envelope(payload: &[u8]) -> Option<(Origin, u32, u64, &[u8])> {
    let nl = payload.iter().position(|&b| b == b'\n')?;
    let head = std::str::from_utf8(&payload[..nl]).ok()?;
    let mut fields = head.split(' ');
    if fields.next()? != "1" {
        return None;
    }
    let (node, lane) = fields.next()?.split_once('.')?;
    let origin = Origin {
        node: u64::from_str_radix(node, 16).ok()?,
        lane: lane.parse().ok()?,
    };
    let stream = fields.next()?.parse().ok()?;
    let seq = fields.next()?.parse().ok()?;
    if fields.next().is_some() {
        return None;
    }
    Some((origin, stream, seq, &payload[nl + 1..]))
}

/// Line `seq` of `origin`'s stream `stream`, against what was heard of
/// it: true if it is to be delivered (next, or after a gap, which is
/// added to `lost`), false for a repeat or a stale stream.
pub(super) fn take_in_order(
    heard: &mut Vec<Heard>,
    origin: Origin,
    stream: u32,
    seq: u64,
    lost: &mut u64,
) -> bool {
    let Some(h) = heard.iter_mut().find(|h| h.origin == origin) else {
        // First word from this origin here: what came before we listened
        // is not lost to us.
        heard.push(Heard {
            origin,
            stream,
            seq,
        });
        return true;
    };
    if stream == h.stream {
        if seq <= h.seq {
            return false; // a repeat
        }
        *lost += seq - h.seq - 1;
    } else if stream > h.stream {
        // The origin's room opened anew: its numbers start again at 1.
        *lost += seq - 1;
        h.stream = stream;
    } else {
        return false; // an older opening's line, late
    }
    h.seq = seq;
    true
}
