//! The request-path normaliser (`reactor::service::http::clean_target`:
//! target to path, percent-decoding once, `.`/`..`/empty segments) on
//! arbitrary targets.
//!
//! Checks: no panic; an accepted path is `/` or `/seg/...` with no empty,
//! `.` or `..` segment, no trailing `/`, no NUL and no backslash; joined
//! under a root it stays under it; it agrees with a plain stack model of
//! the decoded path (a `..` above the root is refused); and cleaning it
//! again (when it has no `%`, `?` or `#` left) changes nothing.
#![no_main]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use reactor::service::http::clean_target;

/// The model: `path` (already taken out of the target and decoded)
/// normalised with a stack of segments; `None` when a `..` climbs above the
/// root.
fn model(decoded: &[u8]) -> Option<Vec<u8>> {
    let mut stack: Vec<&[u8]> = Vec::new();
    for seg in decoded.split(|&b| b == b'/').skip(1) {
        match seg {
            b"" | b"." => {}
            b".." => {
                stack.pop()?;
            }
            s => stack.push(s),
        }
    }
    if stack.is_empty() {
        return Some(b"/".to_vec());
    }
    Some(
        stack
            .iter()
            .flat_map(|s| [&b"/"[..], s])
            .flatten()
            .copied()
            .collect(),
    )
}

fuzz_target!(|data: &[u8]| {
    let target = String::from_utf8_lossy(data);
    // An origin-form target without escapes, query or fragment: the model
    // says what it must become (or that it climbs above the root).
    let plain = target.starts_with('/') && !target.contains(['%', '?', '#', '\\', '\0']);
    let Some((path, dir)) = clean_target(&target) else {
        if plain {
            assert_eq!(model(target.as_bytes()), None, "refused {target:?}");
        }
        return;
    };
    assert!(path.first() == Some(&b'/'), "not rooted: {path:?}");
    assert!(
        !path.contains(&0) && !path.contains(&b'\\'),
        "NUL or backslash: {path:?}"
    );
    if path != b"/" {
        assert!(!path.ends_with(b"/"), "trailing slash: {path:?}");
        for seg in path.split(|&b| b == b'/').skip(1) {
            assert!(
                !seg.is_empty() && seg != b"." && seg != b"..",
                "bad segment in {path:?}"
            );
        }
    } else {
        assert!(dir, "the root is a directory");
    }

    // Under a root, lexically: no `..` component, still under the root.
    let root = Path::new("/srv/root");
    let joined = root.join(OsStr::from_bytes(&path[1..]));
    assert!(joined.starts_with(root), "escaped the root: {joined:?}");
    assert!(
        !joined
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir)),
        "dot segment survived: {joined:?}"
    );

    if plain {
        assert_eq!(
            model(target.as_bytes()).as_deref(),
            Some(&path[..]),
            "differs from the model for {target:?}"
        );
    }

    // Idempotent where the result reads as a target of its own.
    if let Ok(again) = std::str::from_utf8(&path)
        && !again.contains(['%', '?', '#'])
    {
        let (twice, _) =
            clean_target(again).unwrap_or_else(|| panic!("{again:?} cleaned, then refused"));
        assert_eq!(twice, path, "cleaning twice changed {again:?}");
    }
});
