"""A module's code, as the files it can import: the import closure of an entry module (every
project file ``python -m <entry>`` can import, read from the source: lazy imports inside
functions included, parent packages, modules started as children with ``-m``, and the data
folders a module names), and a digest of their contents. The job's runner keys each stage's
code by it (pipeline/runner.py); the trainer keys a finished run by it, so an edit that changes
what training computes is never answered with an export the old code made. Standard library only.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import os
import re
from typing import List, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _module_file(name: str, root: str) -> Optional[str]:
    """The project file of module ``name`` (relative to ``root``), None outside the project."""
    base = os.path.join(root, *name.split("."))
    for cand in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(cand):
            return os.path.relpath(cand, root)
    return None


_DOTTED = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)+")


def _imports(path: str, name: str, is_pkg: bool) -> List[str]:
    """Every module ``path`` imports, anywhere in the file (lazy imports inside functions
    included), as absolute names; ``from a import b`` also names ``a.b`` (b may be a module)."""
    with open(path, "rb") as f:
        tree = ast.parse(f.read(), path)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package
                parts = name.split(".")
                keep = len(parts) - node.level + (1 if is_pkg else 0)
                mod = ".".join(parts[:keep] + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append(mod)
            out += [f"{mod}.{a.name}" for a in node.names if a.name != "*"]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                _DOTTED.fullmatch(node.value):
            out.append(node.value)  # a module run as a child (``-m edge_eval.worker``)
    return out


def _names_string(path: str, s: str) -> bool:
    with open(path, "rb") as f:
        tree = ast.parse(f.read(), path)
    return any(isinstance(n, ast.Constant) and n.value == s for n in ast.walk(tree))


@functools.lru_cache(maxsize=None)
def _closure_cached(entry: str, root: str, stamp: tuple) -> tuple:
    del stamp  # part of the cache key only: any project file's change makes a new closure
    files, seen = set(), set()
    todo = [entry, entry + ".__main__"]
    while todo:
        name = todo.pop()
        if name in seen or not name:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages run first
        rel = _module_file(name, root)
        if rel is None or rel in files:
            continue
        files.add(rel)
        todo += _imports(os.path.join(root, rel), name, rel.endswith("__init__.py"))
    # the packages' data folders (no Python in them, e.g. contract/schema/) that a module in
    # the closure names in a string literal
    for pkg in {os.path.dirname(f) for f in files}:
        for d in sorted(os.listdir(os.path.join(root, pkg))):
            full = os.path.join(root, pkg, d)
            if not os.path.isdir(full) or d.startswith((".", "__")) or any(
                    n.endswith(".py") for _, _, ns in os.walk(full) for n in ns):
                continue
            if any(_names_string(os.path.join(root, f), d) for f in files
                   if os.path.dirname(f) == pkg):
                files.add(os.path.join(pkg, d))
    return tuple(sorted(files))


def _tree_stamp(root: str) -> tuple:
    out = []
    for top in sorted(os.listdir(root)):
        if os.path.isfile(os.path.join(root, top, "__init__.py")):
            for r, dirs, names in os.walk(os.path.join(root, top)):
                dirs[:] = [d for d in dirs if d != "__pycache__"]
                out += [(os.path.join(r, n), os.stat(os.path.join(r, n)).st_mtime_ns)
                        for n in names if n.endswith(".py")]
    return tuple(sorted(out))


def import_closure(entry: str, root: str = ROOT) -> List[str]:
    """The project files (relative to ``root``) that ``python -m <entry>`` can import."""
    return list(_closure_cached(entry, os.path.abspath(root), _tree_stamp(root)))


def code_digest(entries: Sequence[str], root: str = ROOT) -> str:
    """sha256 over the contents of every file in the closures of ``entries``."""
    h = hashlib.sha256()
    files = sorted({f for e in entries for f in import_closure(e, root)})
    for f in files:
        full = os.path.join(root, f)
        h.update(f.encode() + b"\0")
        if os.path.isdir(full):
            for r, dirs, names in os.walk(full):
                dirs.sort()
                for n in sorted(names):
                    with open(os.path.join(r, n), "rb") as fh:
                        h.update(n.encode() + b"\0" + fh.read())
        else:
            with open(full, "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()
