//! `resp::decode` on any bytes, whole and cut at many points before the
//! end of the first reply, the way replies arrive from a socket.
//!
//! Checks: no panic; `used` within the input; each cut before the end
//! of a complete reply is incomplete (`Ok(None)`), never an error or a
//! different reply; a decoded reply re-encodes to bytes that decode to
//! the same reply; an incomplete input has no prefix that is anything but
//! incomplete.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reactor::service::resp::decode;

fuzz_target!(|data: &[u8]| {
    match decode(data) {
        Ok(Some((value, used))) => {
            assert!(used > 0 && used <= data.len(), "used {used} of {}", data.len());
            for cut in cuts(used) {
                assert_eq!(decode(&data[..cut]), Ok(None), "prefix of {cut} of {used}");
            }
            let mut again = Vec::new();
            value.encode(&mut again);
            let (back, n) = decode(&again).expect("re-encoded").expect("complete");
            assert_eq!(n, again.len());
            assert_eq!(back, value);
        }
        Ok(None) => {
            for cut in cuts(data.len()) {
                assert_eq!(decode(&data[..cut]), Ok(None), "prefix of an incomplete reply");
            }
        }
        Err(_) => {}
    }
});

/// Up to about 130 cut points below `n`: the first and last 64, and
/// every step between (every point would make long inputs quadratic).
fn cuts(n: usize) -> impl Iterator<Item = usize> {
    let step = (n / 64).max(1);
    (0..n.min(64))
        .chain((64..n).step_by(step))
        .chain(n.saturating_sub(64).max(64)..n)
}
