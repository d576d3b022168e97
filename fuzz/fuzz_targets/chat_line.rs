//! `ChatHub` with 2 or 3 members fed arbitrary bytes, the way the event
//! loop feeds it (a pending buffer per member: append, call `input`, drop
//! `consumed`; on `Close` the connection ends).
//!
//! Input: the first byte chooses the members (`2 + b % 2`) and the line
//! limit (16, 64 or 512 from bits 1-2). Then events: a control byte `c`,
//! `0xff` drops member `next % n` (reason from `next`) and reconnects it;
//! else `(c >> 2) & 63` bytes (as many as are left) go to member `c % n`
//! (`c % 4 == 3` with 2 members: every member gets them, one after another).
//!
//! Checks: no panic; each `send` is whole lines (non-empty, ends with `\n`,
//! no other `\n` split problem) of valid UTF-8, to a member that is in the
//! chat; `consumed` within the input; a pending partial line stays under
//! the window; the hub's member count matches.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use reactor::service::chat::{ChatHub, Leave};
use reactor::service::{Outbox, Verdict};

/// Member ids (slab keys; not dense).
const IDS: [usize; 3] = [0, 3, 1];

/// Checks every `send`.
struct Checked {
    /// Ids that may receive (connected members).
    live: BTreeSet<usize>,
}

impl Outbox for Checked {
    fn send(&mut self, to: usize, bytes: &[u8]) {
        assert!(self.live.contains(&to), "send to {to}, not a member");
        assert!(!bytes.is_empty(), "empty send");
        assert!(
            bytes.ends_with(b"\n"),
            "send does not end a line: {:?}",
            String::from_utf8_lossy(bytes)
        );
        assert!(
            std::str::from_utf8(bytes).is_ok(),
            "output is not UTF-8: {bytes:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, mut rest)) = data.split_first() else {
        return;
    };
    let n = 2 + usize::from(ctl % 2);
    let max_line = [16, 64, 512, 64][usize::from(ctl >> 1 & 3)];
    let ids = &IDS[..n];
    let mut hub = ChatHub::new(max_line);
    let mut out = Checked {
        live: BTreeSet::new(),
    };
    let mut pending: Vec<Vec<u8>> = vec![Vec::new(); n];
    let mut open = vec![true; n];
    for &id in ids {
        out.live.insert(id);
        hub.connect(id, &mut out);
    }
    while let Some((&c, tail)) = rest.split_first() {
        rest = tail;
        if c == 0xff {
            let Some((&m, tail)) = rest.split_first() else {
                break;
            };
            rest = tail;
            let who = usize::from(m) % n;
            let why = [Leave::Closed, Leave::TooSlow, Leave::TimedOut, Leave::Quit]
                [usize::from(m >> 4) % 4];
            hub.disconnect(ids[who], why, &mut out);
            out.live.remove(&ids[who]);
            out.live.insert(ids[who]);
            hub.connect(ids[who], &mut out);
            pending[who].clear();
            open[who] = true;
            continue;
        }
        let take = usize::from(c >> 2 & 63).min(rest.len());
        let (bytes, tail) = rest.split_at(take);
        rest = tail;
        let targets: Vec<usize> = if n == 2 && c % 4 == 3 {
            vec![0, 1]
        } else {
            vec![usize::from(c) % n]
        };
        for who in targets {
            if !open[who] {
                continue;
            }
            let id = ids[who];
            pending[who].extend_from_slice(bytes);
            let (used, verdict) = hub.input(id, &pending[who], &mut out);
            assert!(used <= pending[who].len(), "consumed past the input");
            pending[who].drain(..used);
            if verdict == Verdict::Close {
                assert!(pending[who].is_empty(), "Close must consume everything");
                open[who] = false;
                hub.disconnect(id, Leave::Closed, &mut out);
                out.live.remove(&id);
            } else {
                assert!(
                    pending[who].len() < max_line + 2,
                    "pending line at the window"
                );
            }
        }
        assert_eq!(
            hub.members(),
            open.iter().filter(|&&o| o).count(),
            "member count"
        );
    }
    assert!(
        hub.rooms() >= 1 && hub.rooms() <= 1 + n,
        "room count {}",
        hub.rooms()
    );
});
