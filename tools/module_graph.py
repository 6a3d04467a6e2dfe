#!/usr/bin/env python3
"""File-level dependency check of the crate: which source file uses which.

Prints every cycle between files (strongly connected components of more
than one file) and every file over the line limit, and exits non-zero when
there is either. Test modules (`#[cfg(test)] mod tests` at the end of a
file) are left out: they may use anything.

    python3 tools/module_graph.py [--limit 600] [--allow src/captions/vocab.rs]

Standard library only.
"""
import argparse
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SRC = os.path.join(ROOT, "src")


def module_of(path):
    rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return rel


def file_of(parts):
    """The file defining the longest module prefix of `parts`."""
    for n in range(len(parts), -1, -1):
        base = os.path.join(SRC, *parts[:n]) if n else SRC
        for cand in ([base + ".rs", os.path.join(base, "mod.rs")] if n else
                     [os.path.join(SRC, "lib.rs")]):
            if os.path.isfile(cand):
                return cand
    return None


def expand(tree):
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    tree = tree.strip()
    m = re.match(r"^(.*?)\{(.*)\}$", tree, re.S)
    if not m:
        return [tree]
    prefix, inner = m.group(1), m.group(2)
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    parts.append(cur)
    out = []
    for p in parts:
        if p.strip():
            out += [prefix + q for q in expand(p)]
    return out


def deps(path):
    text = open(path, encoding="utf-8").read()
    cut = re.search(r"^#\[cfg\(test\)\]\s*\n\s*mod tests", text, re.M)
    if cut:
        text = text[: cut.start()]
    text = re.sub(r"//[^\n]*", "", text)
    here = module_of(path)
    is_mod = os.path.basename(path) in ("mod.rs", "lib.rs", "main.rs")
    paths = []
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        paths += [p.split(" as ")[0].strip() for p in expand(m.group(1))]
    paths += re.findall(r"\b((?:crate|super)(?:::\w+)+)", text)
    found = set()
    for p in paths:
        segs = [s for s in p.split("::") if s and s != "self" and s != "*"]
        if not segs:
            continue
        if segs[0] == "crate":
            target = segs[1:]
        elif segs[0] == "super":
            base = list(here[:-1])
            while segs and segs[0] == "super":
                segs = segs[1:]
                if not base:
                    break
                base = base[:-1] if segs and segs[0] == "super" else base
            # `super` of a file module is its parent folder's module
            target = base + segs
        else:
            continue
        f = file_of(target)
        if f and os.path.abspath(f) != os.path.abspath(path):
            found.add(os.path.abspath(f))
    return found


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=600)
    ap.add_argument("--allow", action="append", default=[])
    a = ap.parse_args()
    files = []
    for d, _, names in os.walk(SRC):
        files += [os.path.abspath(os.path.join(d, n)) for n in names if n.endswith(".rs")]
    graph = {f: deps(f) for f in files}
    # mod.rs / lib.rs files only declare and re-export: edges out of them
    # are the module tree, not uses
    for f in graph:
        if os.path.basename(f) in ("mod.rs", "lib.rs"):
            graph[f] = set()
    index, low, stack, on, sccs = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(comp)

    for v in graph:
        if v not in index:
            visit(v)
    rel = lambda f: os.path.relpath(f, ROOT)
    bad = False
    for comp in sccs:
        bad = True
        print("cycle: " + " <-> ".join(sorted(rel(f) for f in comp)))
    allowed = {os.path.abspath(os.path.join(ROOT, p)) for p in a.allow}
    for f in sorted(files):
        n = sum(1 for _ in open(f, encoding="utf-8"))
        if n > a.limit and f not in allowed:
            bad = True
            print(f"over {a.limit} lines: {rel(f)} ({n})")
    print(f"{len(files)} files, {sum(len(v) for v in graph.values())} uses, "
          f"{len(sccs)} cycles")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
