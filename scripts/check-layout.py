#!/usr/bin/env python3
"""The house rules docs/architecture.md states, checked: no Rust file over 600 lines of code before its inline
test module, and no import circle between the files of a crate (`crate::` and `super::` paths).

    python3 scripts/check-layout.py        # exit 1 with one line per breach
"""
import os
import re
import sys

MAX_CODE_LINES = 600
CRATES = ["filters/src", "proxy/src", "loadtest/sim/src"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def code_lines(text: str) -> int:
    head = text.split("\n#[cfg(test)]", 1)[0]
    return head.count("\n") + 1


def modules(src: str) -> dict:
    found = {}
    for folder, _, names in os.walk(src):
        for name in names:
            if name.endswith(".rs"):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, src)[:-3].split(os.sep)
                if parts[-1] == "mod":
                    parts = parts[:-1]
                if parts in (["lib"], ["main"]):
                    parts = []
                found["::".join(parts)] = path
    return found


def imports(module: str, path: str, files: dict) -> set:
    def resolve(segments):
        while segments:
            key = "::".join(segments)
            if key in files:
                return key
            segments = segments[:-1]
        return None

    text = open(path).read().split("\n#[cfg(test)]", 1)[0]
    text = re.sub(r"//.*", "", text)
    parent = module.split("::")[:-1] if module else []
    deps = set()
    for match in re.finditer(r"\bcrate((?:::\w+)+)", text):
        deps.add(resolve(match.group(1)[2:].split("::")))
    for match in re.finditer(r"\bcrate::\{([^}]*)\}", text):
        for item in match.group(1).split(","):
            deps.add(resolve(item.strip().split("::")))
    for match in re.finditer(r"\bsuper((?:::\w+)+)", text):
        deps.add(resolve(parent + match.group(1)[2:].split("::")))
    return {d for d in deps if d and d != module}


def cycles(graph: dict) -> list:
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return found


def main() -> int:
    breaches = []
    for crate in CRATES:
        src = os.path.join(ROOT, crate)
        files = modules(src)
        for module, path in sorted(files.items()):
            n = code_lines(open(path).read())
            if n > MAX_CODE_LINES:
                breaches.append(f"{os.path.relpath(path, ROOT)}: {n} lines of code before its tests (limit {MAX_CODE_LINES})")
        graph = {m: imports(m, p, files) for m, p in files.items()}
        for component in cycles(graph):
            breaches.append(f"{crate}: import circle between " + ", ".join(c or "<crate root>" for c in component))
    for line in breaches:
        print(line)
    return 1 if breaches else 0


if __name__ == "__main__":
    sys.exit(main())
