"""The per-image prediction record: what one run of one model answered for each image of a set,
written by the host harness (Python) and by the app on a phone (Java: android_demo/core
PredictionWriter) in one format, so drift between any two runs - host float against phone GPU,
CPU against NPU on one phone, phone A against phone B - is a join on the image's identity.

A file is JSON lines (``<out>/predictions/<artifact>.jsonl``; the float reference's is
``reference.jsonl``). The first line is the header (``contract/schema/predictions.json``):
``{"kind": "predictions", "version": 1, "artifact", "sha256", "recipe", "runtime",
"accelerator": {"requested", "used", "fully_accelerated", "fallback_reason"}, "device",
"classes", "top_k", "set": {"split", "images", "source", "note"}, "created"}``. Each further
line is one image: ``{"i": index in the set, "id": identity, "y": label, "k": [top-k class
indices, best first], "s": [their scores]}``. The identity is ``image_id`` of the image's encoded
bytes as evaluated (the file, the TFRecord payload, or for in-memory pixels their canonical PNG,
which is what is pushed to a phone), so the host and the phone name an image the same way.

Standard library only (a board and the phone's Python-free side share the format)."""
from __future__ import annotations

import datetime
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

KIND = "predictions"
VERSION = 1
TOP_K = 5
ID_CHARS = 20  # hex digits of sha256: 80 bits, collision-free for any evaluation set
REFERENCE = "reference"  # the float reference's file stem
DIRNAME = "predictions"


class PredictionError(ValueError):
    """A predictions file that is not one this version writes; the message names the line."""


def image_id(encoded: bytes) -> str:
    """An image's identity: the first ``ID_CHARS`` hex digits of sha256 of its encoded bytes."""
    return hashlib.sha256(encoded).hexdigest()[:ID_CHARS]


def file_name(artifact: Optional[str]) -> str:
    """The predictions file of an artifact (``None``: the float reference)."""
    if artifact is None:
        return f"{REFERENCE}.jsonl"
    base = os.path.basename(artifact)
    if base != artifact or base in ("", ".", "..") or base.startswith("."):
        raise PredictionError(f"{artifact!r} is not a plain artifact name")
    return f"{base}.jsonl"


@dataclass
class Predictions:
    header: dict
    index: List[int] = field(default_factory=list)
    ids: List[str] = field(default_factory=list)
    labels: List[int] = field(default_factory=list)
    top: List[List[int]] = field(default_factory=list)
    scores: List[List[float]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


HEADER_KEYS = {"kind": str, "version": int, "artifact": str, "classes": int, "top_k": int,
               "runtime": str, "accelerator": dict, "set": dict}


def header(artifact: str, classes: int, runtime: str, requested: str, used: Optional[str],
           fully_accelerated: Optional[bool], fallback_reason: Optional[str] = None,
           sha256: Optional[str] = None, recipe: Optional[str] = None,
           device: Optional[dict] = None, split: Optional[str] = None,
           source: Optional[str] = None, note: Optional[str] = None,
           top_k: int = TOP_K) -> dict:
    return {"kind": KIND, "version": VERSION, "artifact": artifact, "sha256": sha256,
            "recipe": recipe, "runtime": runtime,
            "accelerator": {"requested": requested, "used": used,
                            "fully_accelerated": fully_accelerated,
                            "fallback_reason": fallback_reason},
            "device": device or {}, "classes": int(classes), "top_k": int(top_k),
            "set": {"split": split, "images": None, "source": source, "note": note},
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds")}


def top_k(probs, k: int = TOP_K):
    """(indices [N, k] best first, scores [N, k]) of a probability matrix (numpy); ties go to
    the lower class index, as the Java writer breaks them."""
    import numpy as np

    p = np.asarray(probs, np.float32)
    k = min(k, p.shape[1])
    idx = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(p, idx, axis=1)


def write(path: str, head: dict, index: Sequence[int], ids: Sequence[str],
          labels: Sequence[int], top: Sequence[Sequence[int]],
          scores: Sequence[Sequence[float]]) -> str:
    """Writes the file atomically (a reader never sees half of it)."""
    n = len(ids)
    if not (len(index) == len(labels) == len(top) == len(scores) == n):
        raise PredictionError(f"{path}: {n} ids but {len(index)} indices, {len(labels)} labels, "
                              f"{len(top)} top-k rows and {len(scores)} score rows")
    head = dict(head, set=dict(head.get("set") or {}, images=n))
    problems = validate_header(head)
    if problems:
        raise PredictionError(f"{path}: " + "; ".join(problems))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(head, sort_keys=True) + "\n")
        for i, d, y, k, s in zip(index, ids, labels, top, scores):
            f.write(json.dumps({"i": int(i), "id": str(d), "y": int(y),
                                "k": [int(v) for v in k],
                                "s": [round(float(v), 6) for v in s]}) + "\n")
    os.replace(tmp, path)
    return path


def validate_header(h) -> List[str]:
    if not isinstance(h, dict):
        return ["the header is not a JSON object"]
    out = [f"header key {k!r} missing or not {t.__name__}" for k, t in HEADER_KEYS.items()
           if not isinstance(h.get(k), t) or isinstance(h.get(k), bool) and t is int]
    if h.get("kind") != KIND:
        out.append(f"kind is {h.get('kind')!r}, not {KIND!r}")
    if h.get("version") != VERSION:
        out.append(f"version {h.get('version')!r}: this reader reads version {VERSION}")
    acc = h.get("accelerator") if isinstance(h.get("accelerator"), dict) else {}
    if not isinstance(acc.get("requested"), str):
        out.append("accelerator.requested missing")
    return out


def read(path: str) -> Predictions:
    """The file at ``path``; PredictionError naming the line for anything malformed."""
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise PredictionError(f"{path}: {e.strerror or e}") from None
    with f:
        try:
            first = f.readline()
            head = json.loads(first) if first.strip() else None
        except (ValueError, UnicodeDecodeError) as e:
            raise PredictionError(f"{path}:1: not JSON ({e})") from None
        problems = validate_header(head)
        if problems:
            raise PredictionError(f"{path}:1: not a predictions header: " + "; ".join(problems))
        out = Predictions(head)
        k, classes, seen = head["top_k"], head["classes"], set()
        for n, line in enumerate(f, start=2):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                i, d, y, top, s = row["i"], row["id"], row["y"], row["k"], row["s"]
                ok = (isinstance(i, int) and isinstance(d, str) and isinstance(y, int)
                      and isinstance(top, list) and isinstance(s, list)
                      and len(top) == len(s) == min(k, classes)
                      and all(isinstance(c, int) and 0 <= c < classes for c in top)
                      and all(isinstance(v, (int, float)) for v in s))
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                ok = False
            if not ok:
                raise PredictionError(f"{path}:{n}: not a prediction row "
                                      "({\"i\", \"id\", \"y\", \"k\", \"s\"})")
            if d in seen:
                raise PredictionError(f"{path}:{n}: image {d} appears twice")
            seen.add(d)
            out.index.append(i)
            out.ids.append(d)
            out.labels.append(y)
            out.top.append(top)
            out.scores.append([float(v) for v in s])
    declared = (head.get("set") or {}).get("images")
    if isinstance(declared, int) and declared != len(out):
        raise PredictionError(f"{path}: the header says {declared} images, the file has "
                              f"{len(out)} (cut off?)")
    return out


@dataclass
class Pairing:
    """Two runs on their common images, in the reference's order."""
    ref: Predictions
    other: Predictions
    ref_rows: List[int]
    other_rows: List[int]
    only_ref: int
    only_other: int
    label_conflicts: int


def pair(ref: Predictions, other: Predictions) -> Pairing:
    """The images both runs answered, joined on identity; PredictionError when they share none
    or their class counts differ (different models' outputs cannot be paired)."""
    if ref.header["classes"] != other.header["classes"]:
        raise PredictionError(f"{ref.header['artifact']} has {ref.header['classes']} classes, "
                              f"{other.header['artifact']} {other.header['classes']}: not the "
                              "same task")
    where: Dict[str, int] = {d: j for j, d in enumerate(other.ids)}
    ref_rows, other_rows, conflicts = [], [], 0
    for r, d in enumerate(ref.ids):
        j = where.get(d)
        if j is None:
            continue
        if ref.labels[r] != other.labels[j]:
            conflicts += 1
            continue
        ref_rows.append(r)
        other_rows.append(j)
    if not ref_rows:
        raise PredictionError(f"{ref.header['artifact']} and {other.header['artifact']} share no "
                              "image (were they evaluated on the same set?)")
    return Pairing(ref, other, ref_rows, other_rows, len(ref) - len(ref_rows) - conflicts,
                   len(other) - len(other_rows) - conflicts, conflicts)
