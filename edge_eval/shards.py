"""Sharded, resumable, streamed evaluation: ImageNet-sized sets on one box or on a Ray cluster.

    python -m edge_eval accuracy artifacts/in1k --data-source imagenet --data-path /data/val \
        --shard-size 1000 [--backend ray --address auto]

The work is shards (ranges of the evaluation set) x artifacts. One worker process takes a
shard and runs the existing worker code (``edge_eval.worker`` / ``edge_eval.reference``: the
same preprocessing and interpreter as every other evaluation) on its images alone, streamed one
image at a time through every model of the shard (each image decoded and cropped once); each
model's answers become a shard of per-image prediction records (``contract.predictions``: top-5
indices and scores, the image's identity, ~140 bytes an image), written whole or not at all
under ``<out>/shards/<set key>/<artifact>/``. A killed run resumes at the first unfinished unit
and never loses a finished one; a worker whose image count (its progress file) has not moved for
``stall_s`` is stopped and its units retried once, each alone. Accuracy rows and the paired
statistics are computed from the merged records (from the top-5 kept: no KL divergence), so one
box and a cluster give the same numbers.

Backends: ``local`` (the default; ``workers`` worker processes, no extra dependency) and ``ray``
(``pip install .[ray]``): each shard's work a Ray task asking for ``num_cpus`` (fractional by default:
on 2 cores, tasks asking for 1 CPU each starve the driver's own work) that runs the same worker
code in the task's process. Both give byte-identical records for the same shards.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import shutil
import tempfile
import time
from typing import Callable, Dict, List, Optional

import numpy as np

from contract import predictions, records, workdirs
from contract.jobs import WorkerJob, WorkerResult, read_progress, run as run_job
from edge_eval import preprocess

BACKENDS = ("local", "ray")
SHARDS = "shards"


class ShardError(RuntimeError):
    """A unit that failed twice, or a backend that cannot start: one clear message."""


@dataclasses.dataclass
class Unit:
    """One artifact's work on one shard of the set."""
    artifact: str
    shard: int
    start: int
    stop: int
    job: WorkerJob  # the worker's predict job (items/output filled in per unit)
    final: str      # the shard's predictions file

    @property
    def images(self) -> int:
        return self.stop - self.start


def set_key(set_meta: dict) -> str:
    """Which evaluation set (data, split, sample, crops, preprocessing) the shards belong to:
    records of another set are never resumed into this one."""
    return hashlib.sha256(json.dumps(set_meta, sort_keys=True).encode()).hexdigest()[:16]


def plan_units(artifacts: List[dict], n_images: int, shard_size: int, root: str) -> List[Unit]:
    """``artifacts``: [{"artifact", "sha256", "job"}] (the reference first). Units whose shard
    file already exists are left out (that is the resume)."""
    if shard_size < 1:
        raise ShardError(f"--shard-size must be >= 1. Received: {shard_size}")
    units = []
    for a in artifacts:
        folder = artifact_folder(root, a["artifact"], a.get("sha256"))
        for k, start in enumerate(range(0, n_images, shard_size)):
            final = os.path.join(folder, f"{k:05d}.jsonl")
            if not _complete(final):
                units.append(Unit(a["artifact"], k, start, min(start + shard_size, n_images),
                                  a["job"], final))
    return units


def artifact_folder(root: str, artifact: str, sha256: Optional[str]) -> str:
    """An artifact's shard folder: its name and the start of its sha256 (another build of the
    same name never resumes into it)."""
    return os.path.join(root, _plain(artifact) + "-" + (sha256 or "float")[:12])


def _plain(name: str) -> str:
    base = os.path.basename(name)
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in base) or "model"


def _complete(path: str) -> bool:
    """A shard file that reads whole (a torn one is redone, not trusted)."""
    if not os.path.isfile(path):
        return False
    try:
        predictions.read(path)
        return True
    except predictions.PredictionError:
        os.remove(path)
        return False


# --------------------------------------------------------------------------------------------
# one unit: in a worker process (local) or a Ray task (ray), then its records
# --------------------------------------------------------------------------------------------
GROUP_MAX = 8  # models one worker holds at once


def tasks_of(units: List[Unit]) -> List[List[Unit]]:
    """What each worker process runs: the units of one shard whose models are of one kind
    (every .tflite: edge_eval.worker), up to GROUP_MAX of them, so each image is decoded and
    cropped once for all of them; shards in order."""
    groups: Dict[tuple, List[Unit]] = {}
    for u in units:
        key = (u.start, u.stop, u.job.entry, u.job.kind)
        if len(groups.get(key, ())) == GROUP_MAX:
            groups[key + (len(groups),)] = groups.pop(key)
        groups.setdefault(key, []).append(u)
    return sorted(groups.values(), key=lambda t: (t[0].start, t[0].artifact))


def task_job(task: List[Unit], items: preprocess.Items, work: str) -> WorkerJob:
    """The worker job of ``task``: its shard's images only (a shard-sized list or array), and
    one member job per unit (each with its own output) when there are several."""
    u = task[0]
    folder = tempfile.mkdtemp(prefix=f"u{u.shard:05d}-", dir=work)
    path = os.path.join(folder, "items.json")
    with open(path, "w") as f:
        json.dump(items.subset(range(u.start, u.stop)).to_json(
            os.path.join(folder, "pixels.npy")), f)
    members = [m.job.replace(items=path, output=os.path.join(folder, f"p{k}.npy"), inputs=None)
               for k, m in enumerate(task)]
    progress = os.path.join(folder, "progress")
    if len(task) == 1:
        return members[0].replace(progress=progress)
    return members[0].replace(output=None, progress=progress,
                              group=[m.to_json() for m in members])


def member_outputs(job: WorkerJob) -> List[str]:
    """Where ``task_job``'s job writes each unit's probabilities, in the task's order."""
    return [m["output"] for m in job.group] if job.group else [job.output]


def member_results(res: WorkerResult, n: int) -> List[WorkerResult]:
    """A task's result as one result per unit (a group's members each have their own)."""
    if not res.members:
        return [res] * n
    return [WorkerResult(status=m["status"], error=m.get("error")) for m in res.members]


def run_in_process(job: WorkerJob, work: str) -> WorkerResult:
    """The worker's own code in this process (what a Ray task runs): ``serve`` of the job's
    entry module writes the result file as the subprocess would."""
    fd, path = tempfile.mkstemp(suffix=".json", dir=work)
    job = job.replace(result=path + ".result")
    with os.fdopen(fd, "w") as f:
        json.dump(job.to_json(), f)
    t = time.perf_counter()
    importlib.import_module(job.entry).main([path])
    with open(job.result) as f:
        out = WorkerResult.from_json(json.load(f))
    out.wall_s = time.perf_counter() - t
    return out


def write_shard(u: Unit, probs: np.ndarray, head: dict, index, ids, labels) -> str:
    """The unit's answers as a predictions file, atomically."""
    top, scores = predictions.top_k(probs)
    os.makedirs(os.path.dirname(u.final), exist_ok=True)
    return predictions.write(u.final, head, index[u.start:u.stop], ids[u.start:u.stop],
                             labels[u.start:u.stop], top, scores)


# --------------------------------------------------------------------------------------------
# the backends
# --------------------------------------------------------------------------------------------
Task = List[Unit]


def _local(tasks: List[Task], make_job: Callable[[Task], WorkerJob], workers: int,
           stall_s: float, work: str, done: Callable[[Task, WorkerResult], None],
           tick: Callable[[Task, int], None]) -> None:
    import concurrent.futures

    def one(t: Task) -> WorkerResult:
        # no wall-clock bound: the worker is stopped when its image count stops moving
        return run_job(make_job(t), None, work, stall_s=stall_s,
                       on_progress=lambda k: tick(t, k))

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futs = {pool.submit(one, t): t for t in tasks}
        for fut in concurrent.futures.as_completed(futs):
            done(futs[fut], fut.result())


def _ray(tasks: List[Task], make_job: Callable[[Task], WorkerJob], workers: int,
         stall_s: float, work: str, done: Callable[[Task, WorkerResult], None],
         tick: Callable[[Task, int], None], address: Optional[str] = None,
         num_cpus: float = 0.5) -> None:
    try:
        import ray
    except ImportError:
        raise ShardError("the ray backend needs Ray: pip install .[ray] (or --backend local)")
    if not ray.is_initialized():
        kw = {"address": address} if address else {"num_cpus": max(workers, 1)}
        ray.init(ignore_reinit_error=True, log_to_driver=False, include_dashboard=False, **kw)

    @ray.remote(num_cpus=num_cpus, max_retries=0)
    def task(job_json: dict, work_dir: str) -> dict:
        # the worker's code in the task's process; every path in the job is absolute and must
        # be readable where the task runs (a shared folder or object storage on a cluster)
        return run_in_process(WorkerJob.from_json(job_json), work_dir).to_json()

    pending = {}  # ref -> [task, job, last count, when it last moved]
    queue = list(tasks)
    while queue or pending:
        while queue and len(pending) < workers:
            u = queue.pop(0)
            job = make_job(u)
            pending[task.remote(job.to_json(), work)] = [u, job, None, time.time()]
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
        for ref in ready:
            u = pending.pop(ref)[0]
            try:
                done(u, WorkerResult.from_json(ray.get(ref)))
            except Exception as e:  # noqa: BLE001 - a task that died is the unit's failure
                done(u, WorkerResult.failed(f"ray task failed: {type(e).__name__}: {e}"))
        now = time.time()
        for ref, p in list(pending.items()):
            # the task's image count, from its progress file (the work folder is where the
            # driver reads the task's output too: the same path on every node)
            count = read_progress(p[1].progress)
            if count is not None and count != p[2]:
                p[2], p[3] = count, now
                tick(p[0], count)
            if now - p[3] > stall_s:  # stalled: stop it; the unit is retried once
                ray.cancel(ref, force=True)
                pending.pop(ref)
                done(p[0], WorkerResult.failed(f"no progress for {stall_s:g} s (stalled at "
                                               f"image {p[2] or 0})"))


class _Progress:
    """Images done per artifact (finished units and the running units' live counts), logged
    as ``<artifact>: done/total images, img/s, time left`` when a unit ends and at most every
    ``every_s`` while units run (any thread may call)."""

    def __init__(self, units: List[Unit], log, every_s: float):
        import threading

        self.log, self.every_s, self.lock = log, every_s, threading.Lock()
        self.total: Dict[str, int] = {}
        for u in units:
            self.total[u.artifact] = self.total.get(u.artifact, 0) + u.images
        self.done = {a: 0 for a in self.total}
        self.live: Dict[str, tuple] = {}  # a running unit's shard file: (artifact, images)
        self.t0: Dict[str, float] = {}  # when each artifact's first unit started
        self.last = time.time()

    def start(self, u: Unit) -> None:
        with self.lock:
            self.t0.setdefault(u.artifact, time.time())

    def tick(self, u: Unit, count: int) -> None:
        with self.lock:
            self.live[u.final] = (u.artifact, count)
            if time.time() - self.last >= self.every_s:
                self.last = time.time()
                for a in sorted({art for art, _ in self.live.values()}):
                    self._line(a)

    def finish(self, u: Unit) -> None:
        with self.lock:
            self.live.pop(u.final, None)
            self.done[u.artifact] += u.images
            self._line(u.artifact)

    def _line(self, a: str) -> None:
        n = self.done[a] + sum(c for art, c in self.live.values() if art == a)
        if not n:
            return
        rate = n / max(time.time() - self.t0.get(a, self.last), 1e-9)
        self.log(f"[shards] {a}: {n}/{self.total[a]} images, {rate:.1f} img/s, "
                 f"{(self.total[a] - n) / rate:.0f} s left", flush=True)


# --------------------------------------------------------------------------------------------
# the driver
# --------------------------------------------------------------------------------------------
def run_units(units: List[Unit], items: preprocess.Items, heads: Dict[str, dict], index, ids,
              labels, classes: int, backend: str = "local", workers: int = 2,
              stall_s: float = 600.0, address: Optional[str] = None,
              log=print, work_in: Optional[str] = None,
              log_every_s: float = 30.0) -> Dict[str, str]:
    """Runs every unit (a failed one once more); returns {artifact: error} for those with a
    unit that failed twice. A unit whose image count has not moved for ``stall_s`` is stopped
    (and retried once). Progress per artifact, as each unit ends and every ``log_every_s``
    while they run: images done, images/s, time left."""
    if backend not in BACKENDS:
        raise ShardError(f"--backend must be one of {BACKENDS}. Received: {backend!r}")
    # the units' inputs and outputs, in a folder that names this process: a killed run's is
    # swept by the next one (workdirs.sweep), never left behind
    if work_in:
        os.makedirs(work_in, exist_ok=True)
        workdirs.sweep(work_in)
    work = workdirs.mkdtemp(".work-shards-", work_in)
    progress = _Progress(units, log, log_every_s)
    failed: Dict[str, str] = {}
    tries: Dict[str, int] = {}
    again: List[Unit] = []
    outputs: Dict[str, str] = {}

    def make_job(task: Task) -> WorkerJob:
        job = task_job(task, items, work)
        for u, out in zip(task, member_outputs(job)):
            outputs[u.final] = out
            progress.start(u)
        return job

    def done(task: Task, res: WorkerResult) -> None:
        for u, r in zip(task, member_results(res, len(task))):
            one_done(u, r)

    def tick(task: Task, count: int) -> None:
        for u in task:
            progress.tick(u, count)

    def one_done(u: Unit, res: WorkerResult) -> None:
        tries[u.final] = tries.get(u.final, 0) + 1
        if res.ok:
            try:
                probs = np.load(outputs[u.final])
                if probs.shape[1] != classes:
                    res = WorkerResult.failed(
                        f"the model has {probs.shape[1]} outputs but the evaluation set has "
                        f"{classes} classes: labels do not match the model")
                else:
                    write_shard(u, probs, heads[u.artifact], index, ids, labels)
            except (OSError, ValueError, predictions.PredictionError) as e:
                res = WorkerResult.failed(f"the shard's records: {e}")
        if not res.ok:
            progress.tick(u, 0)
            if tries[u.final] < 2:
                again.append(u)
            else:
                failed.setdefault(u.artifact, f"shard {u.shard} (images {u.start}-{u.stop - 1})"
                                              f": {res.error}")
            return
        progress.finish(u)

    run = _ray if backend == "ray" else _local
    kw = {"address": address} if backend == "ray" else {}
    try:
        run(tasks_of(units), make_job, workers, stall_s, work, done, tick, **kw)
        if again:
            # each alone this time: a model that crashes its process takes no other with it
            log(f"[shards] {len(again)} unit(s) failed: trying each once more, alone",
                flush=True)
            retry = [[u] for u in again]
            again.clear()
            run(retry, make_job, workers, stall_s, work, done, tick, **kw)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return failed


def merge(folder: str) -> Optional[predictions.Predictions]:
    """An artifact's shards, in order, as one Predictions (None when there are none)."""
    if not os.path.isdir(folder):
        return None
    parts = [predictions.read(os.path.join(folder, n)) for n in sorted(os.listdir(folder))
             if n.endswith(".jsonl")]
    if not parts:
        return None
    out = predictions.Predictions(header=dict(parts[0].header))
    for p in parts:
        out.index += p.index
        out.ids += p.ids
        out.labels += p.labels
        out.top += p.top
        out.scores += p.scores
    out.header["set"] = dict(out.header.get("set") or {}, images=len(out))
    return out


def record_bytes(folder: str) -> float:
    """Mean bytes per image of the shard files under ``folder``."""
    size = n = 0
    for root, _, names in os.walk(folder):
        for name in names:
            if name.endswith(".jsonl"):
                path = os.path.join(root, name)
                size += os.path.getsize(path)
                n += max(sum(1 for _ in open(path)) - 1, 0)
    return size / n if n else 0.0


__all__ = ["BACKENDS", "ShardError", "Unit", "merge", "plan_units", "record_bytes",
           "run_units", "set_key", "records"]
