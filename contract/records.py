"""The result record: one schema for host, Android and Edge TPU results (``schema/record.json``).

Run side: standard library only. The Android app's benchmark mode writes the same keys; the test
suite checks the Java side against the same schema file.
"""
from __future__ import annotations

import datetime
import enum
import functools
import json
import os
import platform
import socket
from typing import Iterable, List, Optional

from contract.manifest import git_state

SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema", "record.json")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class RowsFile:
    """The rows files of a results folder, by what writes them (the report reads them all).
    Plain strings: they are path parts."""
    ACCURACY = "accuracy.jsonl"  # edge_eval accuracy: the host's evaluation
    LATENCY = "latency.jsonl"  # edge_eval bench: the host's latency
    MEDIAPIPE = "mediapipe.jsonl"  # edge_eval accuracy through MediaPipe Tasks
    CHOICE = "choice.jsonl"  # pipeline.choose: its selective steps' rows
    ANDROID = "android.jsonl"  # edge_eval android: latency on a phone
    ANDROID_ACCURACY = "android_accuracy.jsonl"  # edge_eval android accuracy: a phone's drift
    BOARD_ACCURACY = "board_accuracy.jsonl"  # edge_eval pair: a board's drift


# rows measured where the model runs, written outside the job (a phone or a board): the choice
# and the report read them, so they are those stages' inputs
DEVICE_ROWS_FILES = (RowsFile.ANDROID, RowsFile.ANDROID_ACCURACY, RowsFile.BOARD_ACCURACY)


def schema() -> dict:
    with open(SCHEMA_PATH) as f:
        return json.load(f)


_TYPES = {"integer": (int,), "number": (int, float), "string": (str,), "object": (dict,),
          "boolean": (bool,), "array": (list,)}


def validate(record: dict, sch: Optional[dict] = None) -> List[str]:
    """The ways ``record`` breaks the schema (empty when it conforms)."""
    sch = sch or schema()
    problems = [f"missing key {k!r}" for k in sch["required"] if k not in record]
    for k, t in sch["types"].items():
        v = record.get(k)
        if v is None:
            continue
        ok = _TYPES[t]
        if isinstance(v, bool) and t in ("integer", "number") or not isinstance(v, ok):
            problems.append(f"{k!r} should be {t}, is {type(v).__name__}")
    for k, allowed in sch["enums"].items():
        if record.get(k) is not None and record[k] not in allowed:
            problems.append(f"{k!r} is {record[k]!r}, not one of {allowed}")
    lat = record.get("latency_ms")
    if isinstance(lat, dict):
        problems += [f"latency_ms lacks {k!r}" for k in sch["latency_keys"] if k not in lat]
    acc = record.get("accuracy")
    if isinstance(acc, dict):
        problems += [f"accuracy lacks {k!r}" for k in sch["accuracy_keys"] if k not in acc]
    if record.get("status") == "ok" and record.get("error"):
        problems.append("status 'ok' with an error")
    if record.get("status") in ("failed", "invalid", "unavailable") and not record.get("error"):
        problems.append(f"status {record.get('status')!r} without an error message")
    return problems


RUN_TOOLS = ("ai-edge-litert", "tflite-runtime", "numpy", "opencv-python-headless", "tensorflow",
             "coremltools")


@functools.lru_cache(maxsize=None)
def tool_versions() -> dict:
    """Python and the run side's packages that are installed (records leave out the others)."""
    from contract.manifest import tool_versions as versions

    return {"python": platform.python_version(),
            **{k: v for k, v in versions(RUN_TOOLS).items() if v is not None}}


@functools.lru_cache(maxsize=None)
def host_device() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"kind": "host", "name": socket.gethostname(), "os": platform.platform(),
            "machine": platform.machine(), "cpu": cpu, "cpu_count": os.cpu_count()}


def _enum(name: str, key: str):
    return enum.Enum(name, {v.upper(): v for v in schema()["enums"][key]}, type=str)


# the schema's closed choices as enums (the schema file is the one list)
Status = _enum("Status", "status")
Kind = _enum("Kind", "kind")


def new_record(kind: str, status: str = "ok", error: Optional[str] = None, **fields) -> dict:
    """A record with every required key (None where not given), environment filled in."""
    Kind(kind), Status(status)  # a typo is an error here, not a record that fails validation
    rec = {k: None for k in schema()["required"]}
    rec.update(schema_version=schema()["schema_version"], kind=kind, status=status, error=error,
               created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    rec["tools"] = dict(tool_versions())
    rec["git"] = dict(git_state())
    rec["device"] = dict(host_device())
    rec.update(fields)
    return rec


def artifact_fields(entry: dict) -> dict:
    """The record's artifact keys from a manifest entry."""
    return {"artifact": entry.get("file"), "recipe": entry.get("recipe"),
            "recipe_spec": entry.get("recipe_spec"), "qat": entry.get("qat"),
            "target": entry.get("target"), "sha256": entry.get("sha256"),
            "bytes": entry.get("bytes")}


def write_jsonl(records: Iterable[dict], path: str) -> str:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for r in records:
            f.write(json.dumps(r, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def read_jsonl(path: str) -> List[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
