"""Provenance helpers shared by convert/, edge_eval/ and pipeline/: file hashes, the git state and
the name artifacts of a source model carry.

Standard library only (edge_eval's run side imports it on boards without TensorFlow).
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def git_state() -> dict:
    """The project's commit and whether the working tree differs from it (None outside git)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=ROOT,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"commit": commit, "dirty": dirty if commit else None}


SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


def safe_name(name, what: str = "name") -> str:
    """``name`` if it can become a file name as it is (letters, digits, ``. _ + -``, no path
    separator, not ``..``, at most 128 characters), else ValueError naming ``what``: names read
    from inputs (a run's config.json, a job file, a manifest) never choose where a file goes."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"{what} {name!r} cannot be used in a file name: use letters, digits "
                         f"and . _ + - (no path separators or '..', at most 128 characters)")
    return name


def source_name(config_name, model_path: str, qat: bool = False) -> str:
    """The stem of every artifact made from a model: its run config's name (``_qat`` added for a
    quantization-aware model), else the model file's name, else the run folder's for
    ``RUN/export``. convert/ names artifacts with it; the main job predicts their paths with it.
    ValueError when that name is not a safe file name (``safe_name``)."""
    if config_name:
        return safe_name(config_name, "the model's config.json name") + (
            "_qat" if qat and not config_name.endswith("_qat") else "")
    base = os.path.basename(os.path.normpath(model_path))
    stem = os.path.splitext(base)[0] if base != "export" else \
        os.path.basename(os.path.dirname(os.path.normpath(model_path)))
    return safe_name(stem, "the model's file or folder name")


def sha256_tree(path: str) -> str:
    """One hash of a folder (an .mlpackage, a SavedModel): relative paths and file hashes."""
    h = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(path)):
        dirs.sort()
        for name in sorted(files):
            p = os.path.join(root, name)
            h.update(os.path.relpath(p, path).encode())
            h.update(sha256_file(p).encode())
    return h.hexdigest()
