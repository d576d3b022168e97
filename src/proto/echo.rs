//! Echo on the loop: the bytes in are the bytes out. The read buffer
//! itself moves to the output queue (no copy when nothing else is queued),
//! and the loop stops using input, so stops reading, while the output is
//! at its cap: a peer that never reads makes us hold one cap's worth and
//! one read, no more (TCP flow control stops it). After the peer's FIN,
//! what is left is sent, then the connection closes.

use crate::stats::OpenBy;

use super::{Act, Input, Io, Protocol, Protocols};

/// An echo connection.
#[derive(Debug)]
pub struct Echo {
    /// Over a Unix socket (counted apart in `/stats`).
    pub unix: bool,
}

impl Protocol for Echo {
    #[inline]
    fn input(&mut self, input: &mut Input<'_>, io: &mut Io<'_>, _app: &mut Protocols) -> Act {
        if let Some(buf) = input.take() {
            io.send_buffer(buf);
        }
        Act::Continue
    }

    fn peer_closed(&mut self, input: &mut Input<'_>, io: &mut Io<'_>, app: &mut Protocols) -> Act {
        self.input(input, io, app);
        Act::Close
    }

    fn shutdown(&mut self, _io: &mut Io<'_>, _app: &mut Protocols) -> Act {
        Act::Drain // echo what already arrived, then close
    }

    fn gauge<'a>(&self, open: &'a mut OpenBy) -> Option<&'a mut u64> {
        Some(if self.unix {
            &mut open.unix
        } else {
            &mut open.echo
        })
    }
}
