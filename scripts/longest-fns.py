#!/usr/bin/env python3
"""The longest functions of a checkout: each `fn` under DIR/src, from its
signature line to its closing brace, by counting braces in code with
comments, strings and char literals removed; unit tests left out (a
trailing `#[cfg(test)] mod tests` and `tests.rs` files).

    scripts/longest-fns.py [DIR] [N]    # DIR: a checkout (default .), N: 10

Prints "LINES  NAME  FILE:LINE", the longest first. A rough count (a brace
in a raw string would throw it), good for comparing two checkouts."""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".") / "src"
n = int(sys.argv[2]) if len(sys.argv) > 2 else 10


def clean(line):
    line = re.sub(r'"(?:\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(?:\\.|[^'\\])'", "' '", line)
    return line.split("//")[0]


def end_of(code, i, start):
    """The line where the fn starting at code[i][start:] ends, or None for a
    declaration without a body."""
    depth, nest, j = 0, 0, i
    started = False
    while j < len(code):
        for c in code[j][start:] if j == i else code[j]:
            if c in "([":
                nest += 1
            elif c in ")]":
                nest -= 1
            elif c == ";" and not started and nest <= 0:
                return None
            elif c == "{":
                depth += 1
                started = True
            elif c == "}":
                depth -= 1
                if started and depth == 0:
                    return j
        j += 1
    return None


found = []
for p in sorted(q for q in root.rglob("*.rs") if q.stem != "tests"):
    text = p.read_text()
    cut = text.find("\n#[cfg(test)]\nmod tests")
    code = [clean(line) for line in (text if cut < 0 else text[:cut]).split("\n")]
    for i, line in enumerate(code):
        m = re.search(r"\bfn\s+(\w+)", line)
        if m:
            j = end_of(code, i, m.end())
            if j is not None:
                found.append((j - i + 1, m.group(1), f"{p.relative_to(root.parent)}:{i + 1}"))
found.sort(key=lambda t: -t[0])
for length, name, where in found[:n]:
    print(f"{length:4d}  {name:24s} {where}")
