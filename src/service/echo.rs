//! Echo: every byte back, in order.
//!
//! Echo has no state of its own: the bytes that arrived are the bytes to
//! send. The reactor therefore hands the filled read buffer itself to the
//! output queue (no copy) when nothing else is queued, and stops reading a
//! client whose pending output reaches `Limits::output_cap`
//! (backpressure: memory stays flat with a client that never reads).
//! After the client's FIN, the reactor sends what is left, then closes.

use super::answer::Verdict;

/// Echo's backpressure rule: take more input only while fewer than `cap`
/// bytes wait to go back to the client.
pub fn wants_input(pending: usize, cap: usize) -> bool {
    pending < cap
}

/// Echo at the client's FIN: what was received is still sent, then close.
pub fn on_eof() -> Verdict {
    Verdict::Close
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_until_the_output_cap() {
        assert!(wants_input(0, 64));
        assert!(wants_input(63, 64));
        assert!(!wants_input(64, 64));
        assert!(!wants_input(1000, 64));
    }

    #[test]
    fn fin_means_flush_then_close() {
        assert_eq!(on_eof(), Verdict::Close);
    }
}
