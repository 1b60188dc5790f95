"""The artifacts folder's manifest.json and the provenance it records, shared by convert/,
edge_eval/ and pipeline/: the one reader, the lock and read-modify-write every writer goes through,
atomic writes, the check that an entry's file is inside the folder and unchanged, file hashes,
the git state, tool versions, and the names artifacts of a source model carry.

Standard library only (edge_eval's run side imports it on boards without TensorFlow).
"""
from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import re
import subprocess
import tempfile
from typing import Callable, Dict, Iterable, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST = "manifest.json"


class ManifestError(ValueError):
    """A manifest.json that is missing (when required), not JSON, or not a manifest; an entry
    whose file is not inside the folder; a write the disk cannot hold."""


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


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------
def atomic_write_bytes(path: str, data: bytes) -> None:
    """``data`` to ``path`` through a pid-named partial file and a rename: a reader sees the old
    file or the new one, never half of one (a full disk is ManifestError, nothing left)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.{os.getpid()}.",
                               suffix=".partial", dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ManifestError(f"the disk is full: could not write {path} "
                                f"({len(data) / 1e6:.1f} MB); nothing was left half-written"
                                ) from None
        raise


def atomic_write_json(path: str, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def update_manifest(out_dir: str, change: Callable[[dict], Optional[dict]]) -> dict:
    """Applies ``change`` to the manifest as it is on disk now, under the folder's lock (two
    conversions into one folder both end up listed); ``change`` returns the new manifest, or
    None for no change (nothing is written)."""
    from contract.workdirs import locked

    with locked(os.path.join(out_dir, ".manifest.lock")):
        current = read_manifest(out_dir, required=False)
        new = change(current)
        if new is None:
            return current
        atomic_write_json(os.path.join(out_dir, MANIFEST), new)
        return new


# --------------------------------------------------------------------------------------------
# reading an entry's file
# --------------------------------------------------------------------------------------------
def artifact_path(artifacts_dir: str, name) -> str:
    """The path of a manifest entry's file, which must be a plain name inside the artifacts
    folder (no separators, not absolute, no link out of it); ManifestError otherwise."""
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name \
            or "\\" in name or "\0" in name:
        raise ManifestError(f"manifest entry {name!r} is not a file name inside "
                            f"{artifacts_dir}: refused")
    path = os.path.join(artifacts_dir, name)
    root = os.path.realpath(artifacts_dir)
    if os.path.commonpath([os.path.realpath(path), root]) != root:
        raise ManifestError(f"manifest entry {name!r} links outside {artifacts_dir}: refused")
    return path


def verify(artifacts_dir: str, entry: dict) -> Optional[str]:
    """None when the file is there (inside the folder) and its hash matches the manifest, else
    the problem. Every use of an entry's file goes through this first."""
    try:
        path = artifact_path(artifacts_dir, entry.get("file"))
    except ManifestError as e:
        return str(e)
    if not os.path.exists(path):
        return f"{entry.get('file')} is listed in the manifest but missing"
    if entry.get("sha256") and (sha256_tree(path) if os.path.isdir(path) else
                                sha256_file(path)) != entry["sha256"]:
        return (f"{entry['file']} does not match the manifest's sha256 (changed since "
                f"conversion): convert again")
    return None
