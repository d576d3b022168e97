//! The layering of `src/`, checked: imports run one way, from the binary
//! down to the core; the core names no protocol; the sans-I/O services
//! touch no socket.
//!
//! The module graph is read from the sources: every `use` tree and every
//! inline `crate::`/`super::` path, resolved to the module it names (an
//! item a `mod.rs` re-exports counts as its origin). Unit tests at the end
//! of a file (`#[cfg(test)]`) and `tests` modules are left out: they may
//! reach anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Words that name a protocol, which the core's code and comments never
/// use: it moves bytes for protocols it does not know.
const PROTOCOL_WORDS: &[&str] = &[
    "greet",
    "greeting",
    "echo",
    "chat",
    "http",
    "https",
    "websocket",
    "ws",
    "udp",
    "resp",
    "game",
    "lobby",
    "nick",
];

/// What the core may import from the rest of the crate: its own modules
/// and the building blocks below it (buffers, sockets, TLS, errors).
const CORE_MAY_USE: &[&str] = &["core", "buf", "transport", "tls", "listen", "sys", "error"];

/// What the protocols' state machines may import: each other only.
const SERVICE_MAY_USE: &[&str] = &["service"];

/// Every module of the crate: its path (`core::drive`; the root is
/// `crate`) and its source up to its unit tests.
fn modules() -> BTreeMap<String, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            let name = match parts.as_slice() {
                [one] if one == "lib" => "crate".to_string(),
                [one] if one == "main" => continue, // the binary, above all
                _ if parts.last().is_some_and(|p| p == "tests") => continue,
                _ => parts.join("::"),
            };
            let text = std::fs::read_to_string(&path).unwrap();
            let code = match text.find("\n#[cfg(test)]\nmod tests") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            out.insert(name, code);
        }
    }
    out
}

/// `src` without comments (line comments, doc comments) and string
/// literals, so neither can look like an import.
fn code_only(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    for line in src.lines() {
        let mut in_str = false;
        let mut prev = ' ';
        let mut kept = String::new();
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if !in_str && c == '/' && chars.get(i + 1) == Some(&'/') {
                break;
            }
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            } else if !in_str {
                kept.push(c);
            }
            prev = c;
            i += 1;
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(tree).trim();
        return vec![path.trim_end_matches("::*").to_string()];
    };
    let prefix = tree[..open].trim_end_matches("::");
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand)
        .map(|p| match p.as_str() {
            "self" => prefix.to_string(),
            _ => format!("{prefix}::{p}"),
        })
        .collect()
}

/// The paths module `name` imports or names inline, made absolute
/// (`crate::...`); only paths into this crate.
fn paths(name: &str, src: &str) -> Vec<Vec<String>> {
    let code = code_only(src);
    let mut raw = Vec::new();
    // `use` statements (possibly over several lines).
    let mut rest = code.as_str();
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().last();
        let after = &rest[at + 4..];
        if before.is_none_or(|c| !c.is_alphanumeric() && c != '_')
            && let Some(end) = after.find(';')
        {
            raw.extend(expand(&after[..end]));
            rest = &after[end..];
        } else {
            rest = after;
        }
    }
    // Inline paths.
    for anchor in ["crate::", "super::"] {
        for (at, _) in code.match_indices(anchor) {
            let before = code[..at].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let path: String = code[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            raw.push(path.trim_end_matches(':').to_string());
        }
    }
    let here: Vec<String> = if name == "crate" {
        Vec::new()
    } else {
        name.split("::").map(String::from).collect()
    };
    let mut out = Vec::new();
    for path in raw {
        let mut segs: Vec<String> = path.split("::").map(String::from).collect();
        let mut base = match segs.first().map(String::as_str) {
            Some("crate") => {
                segs.remove(0);
                Vec::new()
            }
            Some("super") => here.clone(),
            Some("self") => {
                segs.remove(0);
                here.clone()
            }
            _ => {
                // A child module of this one (`mod x;` then `x::y`), or
                // another crate.
                let mut child = here.clone();
                child.push(segs[0].clone());
                let child = child.join("::");
                if !src.contains(&format!("mod {};", segs[0])) || child.is_empty() {
                    continue;
                }
                here.clone()
            }
        };
        while segs.first().is_some_and(|s| s == "super") {
            segs.remove(0);
            base.pop();
        }
        base.extend(segs);
        out.push(base);
    }
    out
}

/// The names module `name` re-exports (`pub use x::{A, B}`), with the
/// path each comes from.
fn reexports(name: &str, src: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let code = code_only(src);
    for stmt in code.split(';') {
        let stmt = stmt.trim();
        let Some(tree) = stmt.strip_prefix("pub use ") else {
            continue;
        };
        for p in expand(tree) {
            let mut segs: Vec<String> = p.split("::").map(String::from).collect();
            let item = segs.last().cloned().unwrap_or_default();
            if segs.first().is_some_and(|s| s == "crate") {
                segs.remove(0);
            } else if name != "crate" {
                let mut base: Vec<String> = name.split("::").map(String::from).collect();
                base.extend(segs);
                segs = base;
            }
            out.insert(item, segs);
        }
    }
    out
}

/// The module a path lands in: its longest prefix that is a module, or
/// for an item a module re-exports, the item's origin.
fn resolve(
    path: &[String],
    mods: &BTreeMap<String, String>,
    re: &BTreeMap<String, BTreeMap<String, Vec<String>>>,
) -> Option<String> {
    for k in (0..=path.len()).rev() {
        let m = if k == 0 {
            "crate".to_string()
        } else {
            path[..k].join("::")
        };
        if !mods.contains_key(&m) {
            continue;
        }
        if let Some(item) = path.get(k)
            && let Some(origin) = re.get(&m).and_then(|r| r.get(item))
            && origin.as_slice() != path
        {
            return resolve(origin, mods, re).or(Some(m));
        }
        return Some(m);
    }
    None
}

/// The import graph: module to the modules it uses (itself left out).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules();
    let re: BTreeMap<_, _> = mods
        .iter()
        .map(|(n, s)| (n.clone(), reexports(n, s)))
        .collect();
    mods.iter()
        .map(|(name, src)| {
            let uses = paths(name, src)
                .iter()
                .filter_map(|p| resolve(p, &mods, &re))
                .filter(|m| m != name && m != "crate")
                .collect();
            (name.clone(), uses)
        })
        .collect()
}

/// True if `child` is a module inside `parent`.
fn inside(child: &str, parent: &str) -> bool {
    child.starts_with(&format!("{parent}::"))
}

/// The first cycle in `g`, as the modules along it.
fn cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if done.contains(n) {
            return None;
        }
        if let Some(at) = path.iter().position(|p| p == n) {
            let mut c = path[at..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        path.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|n| visit(n, g, &mut Vec::new(), &mut done))
}

/// Imports run one way: no cycle, and no module uses its own parent
/// (a `mod.rs` declares and re-exports its children; they never reach
/// back into it). One exception: `proto`'s `mod.rs` is the registry of
/// the protocols, the closed enum of their states that each of them must
/// name to switch protocols (`Act::Become`); its children use it, and it
/// uses none of them but to dispatch.
#[test]
fn imports_run_one_way() {
    let g = graph();
    if std::env::var("SHOW_GRAPH").is_ok() {
        for (n, u) in &g {
            eprintln!("{n} -> {u:?}");
        }
    }
    assert!(g.len() > 40, "the modules were found: {:?}", g.keys());
    let upward: Vec<String> = g
        .iter()
        .flat_map(|(name, uses)| {
            uses.iter()
                .filter(|u| inside(name, u) && *u != "proto")
                .map(move |u| format!("{name} uses its parent {u}"))
        })
        .collect();
    assert!(upward.is_empty(), "{upward:#?}");
    // Cut the registry's downward edges (dispatch), which its children
    // answer, then there is no cycle anywhere.
    let mut one_way = g.clone();
    if let Some(uses) = one_way.get_mut("proto") {
        uses.retain(|u| !inside(u, "proto"));
    }
    // Parents' edges to their own children are declarations and
    // re-exports, resolved to the children's items already.
    for (name, uses) in one_way.iter_mut() {
        let name = name.clone();
        uses.retain(|u| !inside(u, &name));
    }
    if let Some(c) = cycle(&one_way) {
        panic!("an import cycle: {}", c.join(" -> "));
    }
}

/// The core uses only itself and the building blocks below it.
#[test]
fn the_core_stands_alone() {
    let g = graph();
    let core: Vec<_> = g
        .iter()
        .filter(|(n, _)| *n == "core" || inside(n, "core"))
        .collect();
    assert!(core.len() > 5, "found the core: {core:?}");
    for (name, uses) in core {
        for u in uses {
            let top = u.split("::").next().unwrap_or(u);
            assert!(CORE_MAY_USE.contains(&top), "{name} uses {u}");
        }
    }
}

/// The protocols' state machines are sans-I/O: they use nothing but each
/// other (no loop, no socket, no buffer pool).
#[test]
fn the_services_touch_no_socket() {
    let g = graph();
    for (name, uses) in g
        .iter()
        .filter(|(n, _)| inside(n, "service") || *n == "service")
    {
        for u in uses {
            let top = u.split("::").next().unwrap_or(u);
            assert!(SERVICE_MAY_USE.contains(&top), "{name} uses {u}");
        }
    }
}

/// The core's code and comments name no protocol.
#[test]
fn the_core_names_no_protocol() {
    let mods = modules();
    let mut found = Vec::new();
    for (name, src) in mods
        .iter()
        .filter(|(n, _)| *n == "core" || inside(n, "core"))
    {
        for (i, line) in src.lines().enumerate() {
            for word in line
                .split(|c: char| !c.is_ascii_alphanumeric())
                .map(str::to_ascii_lowercase)
            {
                if PROTOCOL_WORDS.contains(&word.as_str()) {
                    found.push(format!("{name}:{}: {}", i + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "the core names protocols:\n{}",
        found.join("\n")
    );
}

/// The checks above see what they claim to: a cycle, a core import and a
/// parent import are found in made-up graphs and sources.
#[test]
fn the_checks_find_what_they_look_for() {
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert!(cycle(&g).is_some());
    g.insert("b".to_string(), BTreeSet::new());
    assert!(cycle(&g).is_none());
    let p = paths(
        "core::drive",
        "use super::{io::Io, state::{Core, Slot}};\nuse crate::proto::State;\nfn f() { crate::stats::x(); }",
    );
    let names: Vec<String> = p.iter().map(|s| s.join("::")).collect();
    for want in [
        "core::io::Io",
        "core::state::Core",
        "core::state::Slot",
        "proto::State",
        "stats::x",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    assert!(paths("x", "// use crate::y;\nlet s = \"crate::z\";").is_empty());
}
