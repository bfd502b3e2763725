#!/usr/bin/env python3
"""The import graph of function/src's modules, and whether it has cycles.

A module imports another when its code (tests excluded) names it by path:
`crate::a::b`, `super::x`. The architecture (ARCHITECTURE.md) wants the
flow to go one way, so no two modules may import each other, directly or
round a longer loop.

The graph is checked twice: between leaf modules (`model::session`,
`preprocess::spec`), and between the crate's top-level modules (`model`,
`preprocess`), each import collapsed to the top-level module it lands in.
The leaf graph alone misses a loop between layers whose files never import
each other directly: `model::session` → `preprocess` → `model::contract` is
no leaf cycle, yet `model` and `preprocess` would each sit above the other.

Some arrows are forbidden outright (FORBIDDEN): the layers below the router
(`pipeline`, `objects`, `error`, `aws`) never import it, so S3 objects and
HTTP requests share the pipeline instead of one reaching into the other.

  python3 scripts/module_graph.py          print each module's imports, then the verdict
  python3 scripts/module_graph.py --check  only the verdict; exit 1 on a cycle
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "function", "src")


def modules():
    mods = {}
    for folder, dirs, files in os.walk(ROOT):
        if folder == ROOT:
            dirs[:] = [d for d in dirs if d != "bin"]  # the binary is no module of the library
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(folder, f)
            parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib"):
                parts = parts[:-1]
            mods["::".join(parts)] = path
    return mods


def paths_after(anchor, code):
    """The module paths that follow `anchor::` in `code`, grouped imports
    expanded: `crate::{model::session, preprocess}` names both."""
    found = []
    for m in re.finditer(rf"\b{anchor}::", code):
        found.extend(expand(code, m.end(), ""))
    return found


def expand(code, at, prefix):
    path = re.match(r"[a-z_][a-z0-9_]*(?:::[a-z_][a-z0-9_]*)*(::)?", code[at:])
    head = path.group(0) if path else ""
    rest = at + len(head)
    if not code.startswith("{", rest):
        # an item that is no module path (a type, `self`) names its group's module
        whole = (prefix + head).rstrip(":")
        return [whole] if whole else []
    # a group: split its items at the commas of its own level
    depth, start, out = 0, rest + 1, []
    for i in range(rest, len(code)):
        if code[i] == "{":
            depth += 1
        elif code[i] == "}":
            depth -= 1
        if (code[i] == "," and depth == 1) or depth == 0:
            item = start + len(code[start:i]) - len(code[start:i].lstrip())
            out.extend(expand(code, item, prefix + head))
            start = i + 1
        if depth == 0:
            break
    return out


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
        for ref in paths_after("crate", code):
            deps.add(resolve(ref))
        parent = name.rsplit("::", 1)[0] if "::" in name else ""
        for ref in paths_after("super", code):
            deps.add(resolve(f"{parent}::{ref}" if parent else ref))
        edges[name] = {d for d in deps if d and d != name}
    return edges


def top_level(edges):
    """The same imports between top-level modules (`model::session` -> `model`);
    imports within one top-level module are its own business and dropped."""
    top = lambda name: name.split("::", 1)[0]
    collapsed = {}
    for name, deps in edges.items():
        if not name:
            continue  # lib.rs declares the modules; it is no layer
        mine = collapsed.setdefault(top(name), set())
        mine.update(top(d) for d in deps if d and top(d) != top(name))
    return collapsed


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


# (from, to): top-level modules `from` must not import, directly.
FORBIDDEN = [
    ("objects", "http"),
    ("pipeline", "http"),
    ("pipeline", "objects"),
    ("error", "http"),
    ("error", "pipeline"),
    ("aws", "model"),
    ("aws", "http"),
    ("model", "http"),
    ("finetune", "http"),
]


def forbidden(layers):
    return [(a, b) for a, b in FORBIDDEN if b in layers.get(a, ())]


def main():
    edges = imports(modules())
    layers = top_level(edges)
    if "--check" not in sys.argv:
        for name in sorted(edges):
            print(f"{name or '(crate)'} -> {', '.join(sorted(edges[name])) or '-'}")
        print()
        for name in sorted(layers):
            print(f"[{name}] -> {', '.join(sorted(layers[name])) or '-'}")
    loops = [("cycle", loop) for loop in cycles(edges)]
    loops += [("top-level cycle", loop) for loop in cycles(layers)]
    banned = forbidden(layers)
    if loops or banned:
        for kind, loop in loops:
            print(f"{kind}: " + " <-> ".join(loop))
        for a, b in banned:
            print(f"forbidden arrow: {a} -> {b}")
        sys.exit(1)
    print(
        f"no cycles among {len(edges)} modules or their {len(layers)} top-level modules, "
        f"and none of the {len(FORBIDDEN)} forbidden arrows"
    )


if __name__ == "__main__":
    main()
