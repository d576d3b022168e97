//! Greet, seed 000: `c.send('Thank you for connecting'); c.close()`.
//!
//! The whole protocol is one message on open. Input is ignored: the
//! connection is already closing.

/// The bytes seed 000's server sends (no newline, exactly as the seed).
pub const GREETING: &[u8] = b"Thank you for connecting";

use super::answer::Verdict;

/// What a greet connection does when it opens: send the greeting, then
/// close once it is flushed. Input is never read (it would be discarded).
pub fn on_open() -> (&'static [u8], Verdict) {
    (GREETING, Verdict::Close)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_with_the_seed_bytes_then_closes() {
        let (bytes, verdict) = on_open();
        assert_eq!(bytes, b"Thank you for connecting");
        assert_eq!(verdict, Verdict::Close);
    }
}
