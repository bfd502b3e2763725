#!/usr/bin/env python3
"""The import graph of function/src's modules, and whether it has cycles.

A module imports another when its code (tests excluded) names it by path:
`crate::a::b`, `super::x`. The architecture (README: Architecture) wants the
flow to go one way, so no two modules may import each other, directly or
round a longer loop.

  python3 scripts/module_graph.py          print each module's imports, then the verdict
  python3 scripts/module_graph.py --check  only the verdict; exit 1 on a cycle
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "function", "src")


def modules():
    mods = {}
    for folder, _, files in os.walk(ROOT):
        for f in files:
            if not f.endswith(".rs") or f == "main.rs":
                continue
            path = os.path.join(folder, f)
            parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib"):
                parts = parts[:-1]
            mods["::".join(parts)] = path
    return mods


def imports(mods):
    def resolve(path):
        parts = [p for p in path.split("::") if p]
        for i in range(len(parts), 0, -1):
            name = "::".join(parts[:i])
            if name in mods:
                return name
        return None

    edges = {}
    for name, path in mods.items():
        code = open(path, encoding="utf-8").read().split("#[cfg(test)]")[0]
        deps = set()
        for ref in re.findall(r"\bcrate::([a-z_][a-z0-9_:]*)", code):
            deps.add(resolve(ref))
        parent = name.rsplit("::", 1)[0] if "::" in name else ""
        for ref in re.findall(r"\bsuper::([a-z_][a-z0-9_:]*)", code):
            deps.add(resolve(f"{parent}::{ref}" if parent else ref))
        edges[name] = {d for d in deps if d and d != name}
    return edges


def cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def main():
    edges = imports(modules())
    if "--check" not in sys.argv:
        for name in sorted(edges):
            print(f"{name or '(crate)'} -> {', '.join(sorted(edges[name])) or '-'}")
    loops = cycles(edges)
    if loops:
        for loop in loops:
            print("cycle: " + " <-> ".join(loop))
        sys.exit(1)
    print(f"no cycles among {len(edges)} modules")


if __name__ == "__main__":
    main()
