//! Request bodies, read only to be discarded: a `Content-Length` countdown
//! and a strict chunked decoder (RFC 9112 §7.1).
//!
//! The chunked decoder is a four-phase machine: `Size` (a chunk-size
//! line), `Data` (`left` bytes of chunk data), `DataEnd` (the CRLF after
//! the data) and `Trailers` (trailer fields up to the blank line). A line
//! is only consumed once it is whole, so the caller keeps a partial line
//! buffered and offers it again with more bytes; the machine itself holds
//! only the phase, the bytes left in the chunk and the body budget left.
//!
//! Strictness: a chunk size is 1 to 16 hex digits (no `+`, no `0x`, no
//! `_`); after it may come spaces or tabs and then only `;` and an
//! extension; the line ends in CRLF or a bare LF (as `httparse` allows in
//! the head); a CR not followed by LF is an error, as are missing CRLF
//! after the data (`4\r\nSEE-THIS\r\n`) and malformed trailers. Errors are
//! 400; chunk data beyond the budget (`max_body`) is 413.

use super::config::HttpConfig;

/// Longest chunk-size line (with extensions) we wait for.
const MAX_CHUNK_LINE: usize = 4096;

/// Trailer fields we parse at most (more is a 400).
const MAX_TRAILERS: usize = 32;

/// Where a chunked body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Expecting a chunk-size line.
    Size,
    /// Inside chunk data.
    Data,
    /// Expecting the CRLF that ends chunk data.
    DataEnd,
    /// After the last chunk: trailer fields up to a blank line.
    Trailers,
}

/// A chunked body being discarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Chunked {
    /// The current phase.
    phase: Phase,
    /// Chunk-data bytes still allowed (`max_body`, capped at 4 GiB, less
    /// what arrived): a `u32` keeps the connection state at 16 bytes.
    budget: u32,
    /// Bytes of the current chunk's data still to come (phase `Data`).
    left: u64,
}

/// The outcome of feeding body bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// The body ended after this many bytes of the input.
    Done(usize),
    /// This many bytes were used; the body goes on.
    More(usize),
    /// The body is invalid (400) or too large (413): close.
    Fail(u16),
}

/// Feeds a `Content-Length` body with `left` bytes to go; updates `left`.
pub(crate) fn feed_length(left: &mut u64, input: &[u8]) -> Step {
    let take = (*left).min(input.len() as u64);
    *left -= take;
    // `take <= input.len()`, so it fits a usize.
    let take = take as usize;
    if *left == 0 {
        Step::Done(take)
    } else {
        Step::More(take)
    }
}

impl Chunked {
    /// A chunked body with the budget `cfg.max_body` (at most `u32::MAX`).
    pub(crate) fn new(cfg: &HttpConfig) -> Self {
        Chunked {
            phase: Phase::Size,
            budget: u32::try_from(cfg.max_body).unwrap_or(u32::MAX),
            left: 0,
        }
    }

    /// Feeds `input`; returns how far the body got (see [`Step`]).
    pub(crate) fn feed(&mut self, input: &[u8], cfg: &HttpConfig) -> Step {
        let mut pos = 0;
        loop {
            let rest = input.get(pos..).unwrap_or_default();
            // Each phase uses at least one byte or asks to wait (None).
            let used = match self.phase {
                Phase::Size => self.size_line(rest),
                Phase::Data => Ok(self.data(rest)),
                Phase::DataEnd => self.data_end(rest),
                Phase::Trailers => match trailers(rest, cfg) {
                    Ok(Some(n)) => return Step::Done(pos + n),
                    other => other,
                },
            };
            match used {
                Ok(Some(n)) => pos += n,
                Ok(None) => return Step::More(pos),
                Err(status) => return Step::Fail(status),
            }
        }
    }

    /// Phase `Size`: parses a whole chunk-size line at the start of `rest`.
    fn size_line(&mut self, rest: &[u8]) -> Result<Option<usize>, u16> {
        let Some(end) = rest.iter().take(MAX_CHUNK_LINE).position(|&b| b == b'\n') else {
            return if rest.len() >= MAX_CHUNK_LINE {
                Err(400)
            } else {
                Ok(None)
            };
        };
        let line = rest.get(..end).unwrap_or_default();
        let size = chunk_size(line).ok_or(400u16)?;
        if size == 0 {
            self.phase = Phase::Trailers;
        } else {
            let size32 = u32::try_from(size).map_err(|_| 413u16)?;
            self.budget = self.budget.checked_sub(size32).ok_or(413u16)?;
            self.left = size;
            self.phase = Phase::Data;
        }
        Ok(Some(end + 1))
    }

    /// Phase `Data`: skips up to `left` bytes; returns how many (`None`
    /// when `rest` is empty).
    fn data(&mut self, rest: &[u8]) -> Option<usize> {
        if rest.is_empty() {
            return None;
        }
        let take = self.left.min(rest.len() as u64);
        self.left -= take;
        if self.left == 0 {
            self.phase = Phase::DataEnd;
        }
        // `take <= rest.len()`, so it fits a usize.
        Some(take as usize)
    }

    /// Phase `DataEnd`: the CRLF (or LF) after chunk data.
    fn data_end(&mut self, rest: &[u8]) -> Result<Option<usize>, u16> {
        let used = match rest {
            [b'\r', b'\n', ..] => 2,
            [b'\n', ..] => 1,
            [] | [b'\r'] => return Ok(None),
            _ => return Err(400),
        };
        self.phase = Phase::Size;
        Ok(Some(used))
    }
}

/// Parses a chunk-size line (without its LF): 1 to 16 hex digits, then
/// optionally spaces/tabs and a `;` extension, then an optional CR.
pub(crate) fn chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return None;
    }
    let (hex, after) = line.split_at(digits);
    let after = skip_bws(after);
    if !(after.is_empty() || after.first() == Some(&b';')) {
        return None;
    }
    // An extension may hold spaces, tabs and visible bytes, no controls.
    if after.iter().any(|&b| (b < b' ' && b != b'\t') || b == 0x7f) {
        return None;
    }
    hex.iter().try_fold(0u64, |n, &b| {
        let d = (b as char).to_digit(16)?;
        Some(n << 4 | u64::from(d))
    })
}

/// `bytes` without leading spaces and tabs (BWS before a chunk extension).
fn skip_bws(bytes: &[u8]) -> &[u8] {
    let n = bytes
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    bytes.get(n..).unwrap_or_default()
}

/// Phase `Trailers`: `Ok(Some(n))` when the trailer section (ending with
/// its blank line) is the first `n` bytes of `rest`; `Ok(None)` to wait.
fn trailers(rest: &[u8], cfg: &HttpConfig) -> Result<Option<usize>, u16> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILERS];
    match httparse::parse_headers(rest, &mut fields) {
        Ok(httparse::Status::Complete((n, _))) if n <= cfg.max_headers_bytes => Ok(Some(n)),
        Ok(httparse::Status::Partial) if rest.len() <= cfg.max_headers_bytes => Ok(None),
        _ => Err(400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` to a fresh decoder in two pieces cut at `cut`, keeping
    /// unconsumed bytes as a caller would; returns the final step and the
    /// total consumed.
    fn feed_split(body: &[u8], cut: usize, cfg: &HttpConfig) -> (Step, usize) {
        let mut dec = Chunked::new(cfg);
        let mut buf = Vec::new();
        let mut total = 0;
        let mut last = Step::More(0);
        for piece in [&body[..cut], &body[cut..]] {
            buf.extend_from_slice(piece);
            last = dec.feed(&buf, cfg);
            match last {
                Step::More(n) => {
                    buf.drain(..n);
                    total += n;
                }
                Step::Done(n) => return (last, total + n),
                Step::Fail(_) => return (last, total),
            }
        }
        (last, total)
    }

    #[test]
    fn chunk_sizes_are_strict_hex() {
        assert_eq!(chunk_size(b"0"), Some(0));
        assert_eq!(chunk_size(b"1aF\r"), Some(0x1af));
        assert_eq!(chunk_size(b"5;name=value"), Some(5));
        assert_eq!(chunk_size(b"5 ; ext\r"), Some(5));
        assert_eq!(chunk_size(b"ffffffffffffffff"), Some(u64::MAX));
        assert_eq!(chunk_size(b"0000000000000005"), Some(5));
        for bad in [
            &b""[..],
            b"Z",
            b"+5",
            b"-5",
            b"0x5",
            b"0_2e",
            b" 5",
            b"5 5",
            b"5\r\r",
            b"10000000000000000",
            b"5;a\x00b",
            b"5;\rx",
        ] {
            assert_eq!(chunk_size(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_chunked_body_ends_at_every_split_point() {
        let body =
            b"4\r\nWiki\r\n5;x=y\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nT: v\r\n\r\nNEXT";
        let cfg = HttpConfig::default();
        for cut in 0..=body.len() {
            let (step, used) = feed_split(body, cut, &cfg);
            assert!(matches!(step, Step::Done(_)), "cut at {cut}: {step:?}");
            assert_eq!(used, body.len() - 4, "cut at {cut}");
        }
    }

    #[test]
    fn bare_lf_line_ends_are_accepted() {
        let cfg = HttpConfig::default();
        let mut dec = Chunked::new(&cfg);
        assert_eq!(dec.feed(b"3\nabc\n0\n\nX", &cfg), Step::Done(9));
    }

    #[test]
    fn invalid_chunks_fail_with_400() {
        let cfg = HttpConfig::default();
        for bad in [
            &b"4\r\nSEE-THIS\r\n0\r\n\r\n"[..],
            b"Z\r\n",
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"0_2e\r\n",
            b"11111111111111111\r\n",
            b"3\r\nabc\rX",
            b"0\r\nbad trailer\r\n\r\n",
            b"0\r\n bad: fold\r\n\r\n",
        ] {
            let mut dec = Chunked::new(&cfg);
            assert_eq!(
                dec.feed(bad, &cfg),
                Step::Fail(400),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut dec = Chunked::new(&cfg);
        let long = vec![b'1'; MAX_CHUNK_LINE + 1];
        assert_eq!(dec.feed(&long, &cfg), Step::Fail(400), "endless size line");
    }

    #[test]
    fn the_budget_gives_413() {
        let cfg = HttpConfig {
            max_body: 10,
            ..HttpConfig::default()
        };
        let mut dec = Chunked::new(&cfg);
        assert_eq!(dec.feed(b"6\r\nabcdef\r\n", &cfg), Step::More(11));
        assert_eq!(dec.feed(b"5\r\n", &cfg), Step::Fail(413));
        let mut dec = Chunked::new(&cfg);
        assert_eq!(dec.feed(b"ffffffffffffffff\r\n", &cfg), Step::Fail(413));
    }

    #[test]
    fn content_length_counts_down() {
        let mut left = 5;
        assert_eq!(feed_length(&mut left, b"abc"), Step::More(3));
        assert_eq!(left, 2);
        assert_eq!(feed_length(&mut left, b"deGET"), Step::Done(2));
        assert_eq!(left, 0);
    }
}
