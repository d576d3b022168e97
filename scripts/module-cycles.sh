#!/usr/bin/env bash
# The module graph of a checkout, read as tests/layers.rs reads it (every
# `use` tree and inline `crate::`/`super::` path, resolved to its module;
# unit tests left out; a module's edges to its own submodules, which are
# declarations and re-exports, left out), and its cycles: every set of
# modules that reach each other. For checkouts older than tests/layers.rs
# too: the reading is this tree's, the sources are DIR's.
#
#   scripts/module-cycles.sh [DIR]        # DIR: a checkout (default: this one)
#   EDGES=1 scripts/module-cycles.sh DIR  # and every module's imports
#
# Prints "N modules, E edges", then one "cycle: a, b, c" line per set.
# Needs rustc (std only; built in a temporary directory).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=$(cd "${1:-$root}" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/module-cycles.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
{
  echo '#![allow(dead_code)]'
  # The reading: tests/layers.rs up to its first test, the sources' root
  # taken from the command line.
  sed -n '/^\/\/\/ Imports run one way/q;p' "$root/tests/layers.rs" |
    sed 's|Path::new(env!("CARGO_MANIFEST_DIR")).join("src")|Path::new(\&std::env::args().nth(1).unwrap()).join("src")|'
  cat <<'RS'
fn reach(g: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_string()];
    while let Some(n) = stack.pop() {
        for m in g.get(&n).into_iter().flatten() {
            if seen.insert(m.clone()) {
                stack.push(m.clone());
            }
        }
    }
    seen
}

fn main() {
    let mut g = graph();
    for (name, uses) in g.iter_mut() {
        let name = name.clone();
        uses.retain(|u| !inside(u, &name));
    }
    let edges: usize = g.values().map(BTreeSet::len).sum();
    println!("{} modules, {edges} edges", g.len());
    if std::env::var("EDGES").is_ok() {
        for (n, u) in &g {
            println!("{n} -> {u:?}");
        }
    }
    let r: BTreeMap<&String, BTreeSet<String>> = g.keys().map(|n| (n, reach(&g, n))).collect();
    let mut done = BTreeSet::new();
    for n in g.keys() {
        if done.contains(n) {
            continue;
        }
        let set: Vec<&String> = g
            .keys()
            .filter(|m| *m == n || (r[n].contains(*m) && r[*m].contains(n)))
            .collect();
        if set.len() > 1 {
            let names: Vec<&str> = set.iter().map(|s| s.as_str()).collect();
            println!("cycle: {}", names.join(", "));
        }
        done.extend(set.into_iter().cloned());
    }
}
RS
} >"$tmp/cycles.rs"
rustc -O --edition 2024 -o "$tmp/cycles" "$tmp/cycles.rs" 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
"$tmp/cycles" "$dir"
