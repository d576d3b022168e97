//! Greet, seed 000: `c.send('Thank you for connecting'); c.close()`.
//!
//! The whole protocol is one message on open. Input is ignored: the
//! connection is already closing.

/// The bytes seed 000's server sends (no newline, exactly as the seed).
pub const GREETING: &[u8] = b"Thank you for connecting";
