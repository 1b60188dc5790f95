"""The one conversion loop every target runs (TFLite recipes, Core ML variants): per item, skip
it when the artifact on disk is up to date (same source, recipe settings and file hash), else
build it in a work location, check it against the source on the check images
(``convert/check.py``), put it in place atomically and list it in the manifest at once; a failure
(the recipe cannot be applied, or the check fails) is recorded and removes the earlier artifact
of that name. What differs per target is an ``Adapter``.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
from typing import Callable, List, Optional, Sequence

import numpy as np

from contract import recipes, workdirs
from contract.manifest import (atomic_write_bytes, atomic_write_json, git_state, read_manifest,
                               tool_versions, update_manifest)
from contract.preprocessing import FILENAME as PREPROCESSING_FILE
from train.source import Source

# the converters' versions, as every manifest records them
CONVERT_TOOLS = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert",
                 "coremltools", "numpy")


class ConvertError(ValueError):
    """A user-facing conversion failure; the message has the numbers."""


@dataclasses.dataclass
class Built:
    """One artifact made and checked, not yet in place."""
    check: dict
    fields: dict  # the target's own manifest fields (I/O description, metadata, ...)
    place: Callable[[str], None]  # writes or moves it to the final path
    discard: Callable[[], None] = lambda: None  # removes its work files
    note: str = ""  # appended to the log line (e.g. which runtime checked it)


class Adapter:
    """What one target supplies to the loop."""
    target = ""
    baseline = "fp32"  # built first: the size baseline of the others

    def key(self, item) -> dict:
        """Manifest fields that must be unchanged for an artifact to be up to date: the
        recipe's name and its structured fields (what every later reader goes by)."""
        return {"recipe": item.key, "recipe_spec": json.loads(json.dumps(recipes.fields(item)))}

    def digest(self, path: str) -> str:
        raise NotImplementedError

    def size(self, path: str) -> int:
        return os.path.getsize(path)

    def prepare(self, items: Sequence, artifacts: dict, out_dir: str) -> None:
        """Before the loop (e.g. the size baseline when fp32 is not among the items)."""

    def reuse(self, item, entry: dict) -> None:
        """An up-to-date artifact is kept (its numbers may serve as the baseline)."""

    def build(self, item, ref: np.ndarray, check_x: np.ndarray) -> Built:
        """Converts and checks ``item``; ConvertError for a known failure."""
        raise NotImplementedError


def start_run(out_dir: str, log: Callable = print) -> None:
    """Before converting into ``out_dir``: the folder exists, what killed runs left is gone."""
    os.makedirs(out_dir, exist_ok=True)
    workdirs.sweep(out_dir, log)


def run(src: Source, adapter: Adapter, items: Sequence, out_dir: str, check_x: np.ndarray,
        check_from: str, log: Callable = print) -> dict:
    """Builds, checks and writes every item; returns the manifest (also written)."""
    from convert.check import summary

    start_run(out_dir, log)
    artifacts = {a["file"]: a for a in read_manifest(out_dir, required=False)
                 .get("artifacts", [])}
    failures: List[dict] = []
    ref = src.predict(check_x)
    ordered = sorted(items, key=lambda i: i.key != adapter.baseline)
    adapter.prepare(ordered, artifacts, out_dir)
    for item in ordered:
        fname = recipes.file_name(src.name, item)
        path = os.path.join(out_dir, fname)
        prev, key = artifacts.get(fname), adapter.key(item)
        if (prev and prev.get("source_sha256") == src.sha256
                and all(prev.get(k) == v for k, v in key.items())
                and os.path.exists(path) and adapter.digest(path) == prev["sha256"]):
            log(f"[convert] {fname}: up to date (same source, recipe and file hash)", flush=True)
            adapter.reuse(item, prev)
            continue
        log(f"[convert] {fname} ...", flush=True)
        failure = {"recipe": item.key, "source_sha256": src.sha256,
                   "source_name": src.name}
        try:
            built = adapter.build(item, ref, check_x)
        except ConvertError as e:
            failures.append(dict(failure, error=str(e)))
            log(f"[convert]   FAILED: {e}", flush=True)
            drop_superseded(out_dir, artifacts, fname, log)
            continue
        if not built.check["passed"]:
            built.discard()
            failures.append(dict(failure, error="; ".join(built.check["problems"]),
                                 check=built.check))
            log(f"[convert]   FAILED self-check: {'; '.join(built.check['problems'])}",
                flush=True)
            drop_superseded(out_dir, artifacts, fname, log)
            continue
        built.place(path)
        artifacts[fname] = {
            "file": fname, "target": adapter.target, **key,
            "source_sha256": src.sha256, "source_name": src.name,
            "sha256": adapter.digest(path), "bytes": adapter.size(path), "qat": src.is_qat,
            **built.fields, "check": built.check,
        }
        commit_artifact(out_dir, src, artifacts[fname])
        log(f"[convert]   ok: {artifacts[fname]['bytes'] / 1e6:.2f} MB, {summary(built.check)}"
            + (f" ({built.note})" if built.note else ""), flush=True)
    return finish_manifest(out_dir, src, failures, {i.key for i in items}, check_x,
                           check_from)


# --------------------------------------------------------------------------------------------
# the manifest's entries for one source
# --------------------------------------------------------------------------------------------
def source_entry(src: Source) -> dict:
    return {"path": os.path.abspath(src.path), "kind": src.kind, "name": src.name,
            "qat": src.is_qat}


def commit_artifact(out_dir: str, src: Source, entry: dict) -> None:
    """Lists one artifact (already in place) in the manifest at once: a run killed later
    leaves no file that no manifest lists."""
    def change(m):
        arts = {a["file"]: a for a in m.get("artifacts", [])}
        arts[entry["file"]] = entry
        return dict(m, schema_version=1, artifacts=sorted(arts.values(), key=lambda a: a["file"]),
                    sources={**m.get("sources", {}), src.sha256: source_entry(src)})
    update_manifest(out_dir, change)


def finish_manifest(out_dir: str, src: Source, failures: List[dict], ran: set,
                    check_x: np.ndarray, check_from: str) -> dict:
    """Writes preprocessing.json, labels.txt and the manifest after a conversion run: this run's
    failures replace the earlier ones of the same recipes. Merged with what is on disk now,
    under the lock (another conversion may have listed its artifacts meanwhile). An unchanged
    manifest is not rewritten, so a rerun leaves later stages' inputs as they were."""
    atomic_write_json(os.path.join(out_dir, PREPROCESSING_FILE), src.spec.to_dict())
    if src.labels:
        atomic_write_bytes(os.path.join(out_dir, "labels.txt"),
                           ("\n".join(src.labels) + "\n").encode())

    def change(current: dict) -> Optional[dict]:
        # this run's artifacts were listed as they were committed (commit_artifact) and its
        # superseded ones unlisted (drop_superseded): the disk's list is the merged one
        arts = {a["file"]: a for a in current.get("artifacts", [])}
        new = {
            "schema_version": 1,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "sources": {**current.get("sources", {}), src.sha256: source_entry(src)},
            "preprocessing": src.spec.to_dict(),
            "labels": "labels.txt" if src.labels else None,
            "labels_generated": src.labels_generated,
            "check_inputs": {"images": int(len(check_x)), "source": check_from},
            "tools": tool_versions(CONVERT_TOOLS), "git": dict(git_state()),
            "artifacts": sorted(arts.values(), key=lambda a: a["file"]),
            # this run supersedes earlier failures of the same model (by name: a retrained
            # model has a new hash) for the recipes it ran, and any of an older version of it
            "failures": [f for f in current.get("failures", [])
                         if f.get("source_name", src.name) != src.name
                         or (f.get("source_sha256") == src.sha256
                             and f.get("recipe") not in ran)] + failures,
        }
        used = {a.get("source_sha256") for a in new["artifacts"]} | {
            f.get("source_sha256") for f in new["failures"]}
        new["sources"] = {k: v for k, v in new["sources"].items() if k in used}
        volatile = ("created", "git", "tools")
        if current and {k: v for k, v in current.items() if k not in volatile} == \
                json.loads(json.dumps({k: v for k, v in new.items() if k not in volatile})):
            return None  # nothing changed: keep the file (and its provenance) as it was
        return new

    return update_manifest(out_dir, change)


def drop_superseded(out_dir: str, artifacts: dict, fname: str, log: Callable) -> None:
    """A failed (re)conversion removes the earlier artifact of that name: it was made from
    another version of the model or recipe, and must not be evaluated as if it were current."""
    old = artifacts.pop(fname, None)
    if old is None:
        return
    # unlisted first, then removed: the manifest never lists a missing file
    update_manifest(out_dir, lambda m: dict(m, artifacts=[
        a for a in m.get("artifacts", []) if a["file"] != fname]))
    path = os.path.join(out_dir, fname)
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.isfile(path):
        os.remove(path)
    log(f"[convert]   removed the earlier {fname} (from source "
        f"{old.get('source_sha256', '')[:12]}): superseded by this failed conversion",
        flush=True)
