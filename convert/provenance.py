"""Provenance helpers shared by convert/, edge_eval/ and pipeline/: file hashes, the git state,
tool versions, the name artifacts of a source model carry, and the one reader of an artifacts
folder's manifest.json.

Standard library only (edge_eval's run side imports it on boards without TensorFlow).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import subprocess
from typing import Dict, Iterable, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST = "manifest.json"


class ManifestError(ValueError):
    """A manifest.json that is missing (when required), not JSON, or not a manifest."""


def read_manifest(folder: str, required: bool = True) -> dict:
    """The manifest of an artifacts folder, checked to be an object with an ``artifacts`` list of
    objects. A missing file is ManifestError when ``required`` (a folder to read from), else ``{}``
    (a folder convert/ is about to write into). convert/ and edge_eval/ both read through here and
    wrap the message in their own error type."""
    path = os.path.join(folder, MANIFEST)
    if not os.path.isfile(path):
        if required:
            raise ManifestError(f"{folder} has no {MANIFEST}: point at a folder written by "
                                "`python -m convert`")
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            m = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path} is not valid JSON ({e}): move it aside, or delete the "
                            "folder, and convert again") from None
    arts = m.get("artifacts") if isinstance(m, dict) else None
    if arts is None and isinstance(m, dict) and not required:
        arts = []  # a manifest convert/ started without artifacts yet
    if not isinstance(arts, list) or not all(isinstance(a, dict) for a in arts):
        raise ManifestError(f"{path} lists no artifacts (expected an object with an 'artifacts' "
                            "list of objects)")
    return m


def tool_versions(packages: Iterable[str]) -> Dict[str, Optional[str]]:
    """Installed version of each distribution, None for one that is not installed."""
    from importlib import metadata

    out: Dict[str, Optional[str]] = {}
    for pkg in packages:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


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
