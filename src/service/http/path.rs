//! Request paths: from the target to a clean, rooted path.
//!
//! The order matters and is fixed: take the path out of the target (drop
//! the query and fragment; absolute-form gives its path), percent-decode
//! it exactly once, then normalise `.`, `..` and empty segments. Refused
//! with 400: a target that is `*` or does not start with `/`, an invalid
//! `%` escape, a NUL, an encoded `/` (`%2f`), any backslash (literal or
//! encoded), and a `..` that would climb above the root. The result has no
//! `.`/`..`/empty segments, so joining it under a root stays under that
//! root lexically; `files` then checks the canonical path (symlinks).

use std::borrow::Cow;

/// A decoded, normalised path.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Clean<'a> {
    /// `/` or `/seg/seg`: never a trailing slash, never `.`, `..` or `//`.
    pub path: Cow<'a, [u8]>,
    /// The request named a directory: it ended in `/` (or `/.`, `/..`).
    pub dir: bool,
}

/// The path of a request target, query and fragment dropped; `None` for
/// anything but origin-form (`/...`) or absolute-form (`http://host/...`,
/// whose empty path is `/`).
pub(crate) fn path_of(target: &str) -> Option<&str> {
    let path = if target.starts_with('/') {
        target
    } else {
        let (scheme, rest) = target.split_once("://")?;
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return None;
        }
        match rest.find(['/', '?', '#']) {
            Some(at) if rest.get(at..)?.starts_with('/') => rest.get(at..)?,
            _ => "/",
        }
    };
    let end = path.find(['?', '#']).unwrap_or(path.len());
    path.get(..end)
}

/// True if `path` is already clean: no `%`, no backslash, no `.` or `..`
/// segment, no empty segment except a final one (a trailing `/`).
fn is_plain(path: &[u8]) -> bool {
    if path.first() != Some(&b'/') || path.iter().any(|&b| b == b'%' || b == b'\\' || b == 0) {
        return false;
    }
    let mut segments = path.split(|&b| b == b'/').skip(1).peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if (seg.is_empty() && !last) || seg == b"." || seg == b".." {
            return false;
        }
    }
    true
}

/// Decodes and normalises a path from [`path_of`]; `Err` means 400.
pub(crate) fn clean(path: &str) -> Result<Clean<'_>, ()> {
    let bytes = path.as_bytes();
    if is_plain(bytes) {
        let dir = bytes.len() > 1 && bytes.ends_with(b"/");
        let trimmed = if dir {
            bytes.get(..bytes.len() - 1).ok_or(())?
        } else {
            bytes
        };
        return Ok(Clean {
            path: Cow::Borrowed(trimmed),
            dir: dir || trimmed == b"/",
        });
    }
    let decoded = decode(bytes)?;
    let mut out = Vec::with_capacity(decoded.len() + 1);
    let mut dir = false;
    for seg in decoded.split(|&b| b == b'/').skip(1) {
        dir = true;
        match seg {
            b"" | b"." => {}
            b".." => {
                let cut = out.iter().rposition(|&b| b == b'/').ok_or(())?;
                out.truncate(cut);
            }
            _ => {
                dir = false;
                out.push(b'/');
                out.extend_from_slice(seg);
            }
        }
    }
    if out.is_empty() {
        out.push(b'/');
        dir = true;
    }
    Ok(Clean {
        path: Cow::Owned(out),
        dir,
    })
}

/// Percent-decodes `path` once; `Err` for a bad escape, a NUL, an encoded
/// `/`, or a backslash in any form.
fn decode(path: &[u8]) -> Result<Vec<u8>, ()> {
    if path.first() != Some(&b'/') {
        return Err(());
    }
    let mut out = Vec::with_capacity(path.len());
    let mut bytes = path.iter();
    while let Some(&b) = bytes.next() {
        let b = if b == b'%' {
            let hi = bytes.next().and_then(|&h| hex(h)).ok_or(())?;
            let lo = bytes.next().and_then(|&l| hex(l)).ok_or(())?;
            let b = hi << 4 | lo;
            if b == b'/' {
                return Err(());
            }
            b
        } else {
            b
        };
        if b == 0 || b == b'\\' {
            return Err(());
        }
        out.push(b);
    }
    Ok(out)
}

/// The value of one hex digit.
fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Appends `name` percent-encoded for use as one path segment in a URL:
/// everything but `A-Z a-z 0-9 - . _ ~` becomes `%XX`.
pub(crate) fn encode_segment(name: &[u8], out: &mut Vec<u8>) {
    for &b in name {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            out.push(b'%');
            out.push(b"0123456789ABCDEF"[usize::from(b >> 4)]);
            out.push(b"0123456789ABCDEF"[usize::from(b & 15)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cleaned path of a target as text, or `"400"`.
    fn cleaned(target: &str) -> String {
        match path_of(target).ok_or(()).and_then(clean) {
            Ok(c) => {
                let mut s = String::from_utf8_lossy(&c.path).into_owned();
                if c.dir {
                    s.push_str(" (dir)");
                }
                s
            }
            Err(()) => "400".into(),
        }
    }

    #[test]
    fn targets_give_their_path() {
        assert_eq!(path_of("/a/b?x=1#f"), Some("/a/b"));
        assert_eq!(path_of("/?x"), Some("/"));
        assert_eq!(path_of("http://h:80/p?q"), Some("/p"));
        assert_eq!(path_of("HTTPS://h"), Some("/"));
        assert_eq!(path_of("http://h?q"), Some("/"));
        assert_eq!(path_of("*"), None);
        assert_eq!(path_of("a/b"), None);
        assert_eq!(path_of("h:80"), None);
        assert_eq!(path_of("ftp://h/x"), None);
    }

    #[test]
    fn plain_paths_are_borrowed() {
        let c = clean("/a/b.txt").expect("clean");
        assert!(matches!(c.path, Cow::Borrowed(b"/a/b.txt")));
        assert!(!c.dir);
        let c = clean("/dir/").expect("clean");
        assert!(matches!(c.path, Cow::Borrowed(b"/dir")));
        assert!(c.dir);
        assert_eq!(cleaned("/"), "/ (dir)");
    }

    #[test]
    fn traversal_variants_are_refused_or_confined() {
        assert_eq!(cleaned("/../etc/passwd"), "400");
        assert_eq!(cleaned("/%2e%2e/%2e%2e/etc/passwd"), "400");
        assert_eq!(cleaned("/%2E%2E/etc/passwd"), "400");
        assert_eq!(cleaned("/..%2f..%2fetc/passwd"), "400");
        assert_eq!(cleaned("/a/%2F/b"), "400");
        assert_eq!(cleaned("/a%00"), "400");
        assert_eq!(cleaned("/a\\..\\b"), "400");
        assert_eq!(cleaned("/a%5c..%5cb"), "400");
        assert_eq!(cleaned("/./a/../../b"), "400");
        assert_eq!(cleaned("/a/b/../../.."), "400");
        assert_eq!(cleaned("/%zz"), "400");
        assert_eq!(cleaned("/%4"), "400");
        assert_eq!(cleaned("//etc/passwd"), "/etc/passwd");
        assert_eq!(cleaned("/a/./b/../c"), "/a/c");
        assert_eq!(cleaned("/a/.."), "/ (dir)");
        assert_eq!(cleaned("/a/b/."), "/a/b (dir)");
        assert_eq!(cleaned("/%252e%252e/x"), "/%2e%2e/x");
        assert_eq!(cleaned("/%41%62c"), "/Abc");
        assert_eq!(cleaned("/caf%C3%A9"), "/caf\u{e9}");
    }

    #[test]
    fn segments_are_percent_encoded() {
        let mut out = Vec::new();
        encode_segment(b"a b<&>\"'/%.txt~", &mut out);
        assert_eq!(out, b"a%20b%3C%26%3E%22%27%2F%25.txt~");
    }
}
