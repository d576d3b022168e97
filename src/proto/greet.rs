//! Greet on the loop (seed 000): the greeting on open, then a close once
//! it is out. Input is never used: the connection is closing already.

use crate::service::greet;
use crate::stats::OpenBy;

use super::{Act, Input, Io, Protocol, Protocols};

/// A greet connection: no state beyond being one.
#[derive(Debug)]
pub struct Greet;

impl Protocol for Greet {
    fn opened(&mut self, io: &mut Io<'_>, _app: &mut Protocols) -> Act {
        let (greeting, _) = greet::on_open();
        io.send(greeting);
        Act::Close
    }

    fn input(&mut self, input: &mut Input<'_>, _io: &mut Io<'_>, _app: &mut Protocols) -> Act {
        input.take();
        Act::Close
    }

    fn gauge<'a>(&self, open: &'a mut OpenBy) -> Option<&'a mut u64> {
        Some(&mut open.greet)
    }
}
