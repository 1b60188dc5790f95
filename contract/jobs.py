"""What the host hands an evaluation worker, and what the worker hands back: typed records, written
as JSON between two processes (``edge_eval.worker`` on the run side, ``edge_eval.reference`` for
the float reference, and MediaPipe's own interpreter). Standard library only: a board or
MediaPipe's environment reads them without the project's dependencies.

A job names one model and one operation:

- ``predict``: probabilities for an evaluation set, written to ``output`` (.npy, float32, one row
  per image). The set is ``inputs`` (.npy of model inputs, one crop per image; grey inputs stay
  one channel and are expanded to ``channels``) or ``items`` (edge_eval.preprocess.Items as
  JSON) with ``spec`` and ``scheme`` crops per image, cropped by the worker one image at a time.
- ``bench``: one latency measurement (edge_eval.bench.bench_tflite's arguments).
- ``probe``: MediaPipe's own input tensor for ``images`` (edge_eval.mediapipe_rt.probe).
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import List, Optional

from contract.proc import child_setup

OPS = ("predict", "bench", "probe")
RUN_KINDS = ("tflite", "mediapipe")           # the run side: no TensorFlow
HOST_KINDS = ("keras", "savedmodel", "coreml")  # the float reference and Core ML: the host only
KINDS = RUN_KINDS + HOST_KINDS


class JobError(ValueError):
    """A job or result that is not one this version writes."""


class _Record:
    """JSON in and out for the dataclasses below; ``from_json`` refuses keys this version does
    not write (a job from another version is an error, not a half-read job)."""
    WHAT = "record"

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict):
        if not isinstance(data, dict):
            raise JobError(f"a worker {cls.WHAT} is a JSON object, not {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise JobError(f"unknown worker {cls.WHAT} key(s) {unknown}; known: {sorted(names)}")
        return cls(**data)

    @classmethod
    def read(cls, path: str):
        with open(path) as f:
            return cls.from_json(json.load(f))


@dataclass(frozen=True)
class WorkerJob(_Record):
    WHAT = "job"
    op: str
    model: str
    kind: str = "tflite"
    result: Optional[str] = None  # where the worker writes its WorkerResult (set by the host)
    output: Optional[str] = None  # predict/probe: the .npy written
    threads: Optional[int] = None
    delegate: str = "xnnpack"
    batch_size: Optional[int] = None
    channels: int = 3
    # predict's evaluation set: ``inputs`` or ``items`` + ``spec`` + ``scheme``
    inputs: Optional[str] = None
    items: Optional[str] = None
    spec: Optional[dict] = None
    scheme: int = 1
    # predict from ``items``: the worker writes how many images it has done to this file as it
    # goes (at most once a second); the host's stall detector and progress line read it
    progress: Optional[str] = None
    # predict from ``items``, several models at once: the member jobs (as JSON), each with its
    # own model and ``output``; every image is decoded and cropped once for all of them
    group: Optional[List[dict]] = None
    scale: Optional[List[float]] = None   # coreml: the image input's per-channel scale
    offset: Optional[List[float]] = None  # coreml: and offset
    classes: Optional[int] = None  # mediapipe: the label count
    roi: bool = False              # mediapipe: the central crop as the region of interest
    images: Optional[str] = None   # probe: the images, flattened, and their
    sizes: Optional[List[List[int]]] = None  # sizes
    # bench
    warmup: int = 5
    runs: int = 50
    min_seconds: float = 1.0
    max_seconds: float = 60.0
    runtime: str = "interpreter"

    def __post_init__(self):
        if self.op not in OPS:
            raise JobError(f"worker op must be one of {OPS}, not {self.op!r}")
        if self.kind not in KINDS:
            raise JobError(f"worker kind must be one of {KINDS}, not {self.kind!r}")

    @property
    def entry(self) -> str:
        """The module that runs this job: the float reference and Core ML on the host
        (edge_eval.reference, which imports TensorFlow/coremltools), the rest on the run side."""
        return "edge_eval.reference" if self.kind in HOST_KINDS else "edge_eval.worker"

    def replace(self, **changes) -> "WorkerJob":
        return dataclasses.replace(self, **changes)



@dataclass
class WorkerResult(_Record):
    WHAT = "result"
    status: str  # ok | failed | unavailable
    error: Optional[str] = None
    traceback: Optional[str] = None
    runtime: Optional[str] = None
    load_s: Optional[float] = None
    seconds: Optional[float] = None
    images_per_s: Optional[float] = None
    classes: Optional[int] = None
    peak_memory_mb: Optional[float] = None
    delegation: Optional[dict] = None
    # a group job's members, in its order: {"status", "error", "runtime", "delegation", ...}
    members: Optional[List[dict]] = None
    measurement: dict = field(default_factory=dict)  # bench: the latency record's fields
    wall_s: Optional[float] = None       # set by the host: the process's wall time
    stderr_tail: Optional[str] = None    # and the end of its stderr (runtimes warn there)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def failed(cls, error: str, **kw) -> "WorkerResult":
        return cls(status="failed", error=error, **kw)


def read_progress(path: Optional[str]) -> Optional[int]:
    """The images a worker has done, from its ``progress`` file (None before it writes one)."""
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, TypeError, ValueError):
        return None


def run(job: WorkerJob, timeout: Optional[float], workdir: str, python: Optional[str] = None,
        env: Optional[dict] = None, stall_s: Optional[float] = None,
        on_progress=None) -> WorkerResult:
    """Runs ``job`` in a fresh process (``python -m job.entry``, of ``python``, default this
    one's; in ``env``) that dies with this one; a crash or timeout is a failed result. The
    process's stderr is kept in ``stderr_tail`` (runtimes print warnings there).

    ``stall_s`` (with the job's ``progress`` file): the process is stopped when its image count
    has not moved for that long (the model's load counts as no progress), however long the
    whole job takes; ``on_progress(images)`` sees each new count."""
    fd, job_path = tempfile.mkstemp(suffix=".json", dir=workdir)
    job = job.replace(result=job_path + ".result")
    with os.fdopen(fd, "w") as f:
        json.dump(job.to_json(), f)
    t = time.perf_counter()
    # the worker imports what this process imports (the installed project, or the clone it
    # runs from: the same working directory); every path in the job is absolute
    proc = subprocess.Popen([python or sys.executable, "-m", job.entry, job_path],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=child_setup())
    seen, moved = None, time.perf_counter()
    while True:
        try:
            _, stderr = proc.communicate(timeout=1.0 if stall_s else timeout)
            break
        except BaseException as e:
            if not isinstance(e, subprocess.TimeoutExpired):  # this process is going: so is it
                proc.kill()
                raise
            now = time.perf_counter()
            if stall_s:
                count = read_progress(job.progress)
                if count is not None and count != seen:
                    seen, moved = count, now
                    if on_progress is not None:
                        on_progress(count)
            why = (f"timed out after {timeout:.0f} s" if timeout and now - t > timeout else
                   f"no progress for {stall_s:g} s (stalled at image "
                   f"{seen or 0})" if stall_s and now - moved > stall_s else None)
            if why:
                proc.kill()
                proc.communicate()
                return WorkerResult.failed(why, wall_s=now - t)
    wall = time.perf_counter() - t
    try:
        with open(job.result) as f:
            out = WorkerResult.from_json(json.load(f))
    except (OSError, ValueError):
        tail = (stderr or "").strip().splitlines()[-3:]
        rc = proc.returncode
        out = WorkerResult.failed(
            f"worker exited with code {rc} (crashed: "
            f"{'signal ' + str(-rc) if rc < 0 else 'no result'})"
            + (": " + " | ".join(tail) if tail else ""))
    out.wall_s = wall
    out.stderr_tail = (stderr or "")[-20000:]
    return out
