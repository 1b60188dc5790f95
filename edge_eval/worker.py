"""One artifact, one process: ``python -m edge_eval.worker JOB.json`` - the run side.

The harness runs every artifact in its own worker with a timeout, so an artifact that crashes the
interpreter (a corrupt file, a bad delegate) becomes a failed row while the others finish, and so
peak memory and timings belong to one model. The job and its result are contract.jobs records.
This module and what it imports (edge_eval.bench, preprocess, mediapipe_rt's worker side, and
``contract/``) never import TensorFlow, ``convert/`` or matplotlib: a board installs numpy, LiteRT
and the project's ``contract/`` + ``edge_eval/`` and runs it (tests/test_run_side.py proves it).
The float reference and Core ML run in ``edge_eval.reference``, on the host, through the same loop.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Callable, Dict, List

import numpy as np

from contract.jobs import WorkerJob, WorkerResult
from contract.preprocessing import PreprocessingSpec
from edge_eval import bench, preprocess
from contract.litert import TFLiteModel


def iter_chunks(path: str, batch: int, channels: int, expand: bool = True):
    """Batches of a float32 .npy, read into one reused buffer (no memory map: faulting in
    hundreds of MB of mapped pages cost more than the copy), grey expanded to ``channels`` unless
    the consumer broadcasts it itself (``expand=False``)."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(f)
        if fortran or dtype != np.float32:
            raise ValueError(f"{path}: expected a C-ordered float32 array, found {dtype}")
        n, item = shape[0], shape[1:]
        buf = np.empty((batch, *item), np.float32)
        wide = np.empty((batch, *item[:-1], channels), np.float32) \
            if expand and item[-1] != channels else None
        for i in range(0, n, batch):
            m = min(batch, n - i)
            f.readinto(memoryview(buf[:m]).cast("B"))
            if wide is None:
                yield buf[:m]
            else:
                wide[:m] = buf[:m]  # broadcast the grey channel
                yield wide[:m]


def _count(path: str) -> int:
    return int(np.load(path, mmap_mode="r").shape[0])


def _chunk(per: int, batch: int) -> int:
    """The largest divisor of the crop count ``per`` that is at most ``batch`` (every chunk of an
    image's crops has one shape)."""
    return max(d for d in range(1, min(batch, per) + 1) if per % d == 0)


def stream(job: WorkerJob, items, runners: List[Runner], tick=None):
    """``items`` streamed through every runner of ``runners``: each image decoded and cropped
    once (``scheme`` crops through the job's ``spec``), its crops through each model in chunks
    of at most that model's batch size, averaged per image; ``tick(images done)`` after each
    image. Returns one probabilities array per runner, or the exception that stopped it (the
    others go on: one model's failure is its own)."""
    import concurrent.futures

    spec = PreprocessingSpec.from_dict(job.spec)
    per, n = int(job.scheme), len(items)
    live = list(range(len(runners)))
    chunks = [_chunk(per, r.batch_size) for r in runners]
    out: List = [None] * len(runners)

    def prepare(i: int) -> np.ndarray:
        return preprocess.crops(items.load(i, spec.decode_channels)[0], spec, per)

    # the next image is decoded and cropped while the models run on this one (OpenCV and the
    # interpreter both let go of the GIL): the decode costs the interpreter nothing where a
    # core is free, and no more than before where none is
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as ahead:
        nxt = ahead.submit(prepare, 0) if n else None
        for i in range(n):
            crops = nxt.result()
            nxt = ahead.submit(prepare, i + 1) if i + 1 < n else None
            for k in list(live):
                try:
                    c = chunks[k]
                    p = sum(np.asarray(runners[k].run(crops[j:j + c]), np.float64).sum(axis=0)
                            for j in range(0, per, c))
                    if out[k] is None:
                        out[k] = np.empty((n, p.shape[0]), np.float32)
                    out[k][i] = p / per
                except Exception as e:  # noqa: BLE001 - this model's failure, not the others'
                    out[k] = e
                    live.remove(k)
            del crops
            if tick is not None:
                tick(i + 1, final=i + 1 == n)
    return [o if o is not None else np.empty((0, 0), np.float32) for o in out]


class Progress:
    """Writes the number of images done to ``path`` at most once a second (and the last count):
    the host's stall detector and progress line read it (contract.jobs.read_progress)."""

    def __init__(self, path: str, every_s: float = 1.0):
        self.path, self.every_s, self.last = path, every_s, 0.0

    def __call__(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if final or now - self.last >= self.every_s:
            self.last = now
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                f.write(str(done))
            os.replace(tmp, self.path)


class Runner:
    """A loaded model for ``predict``: ``run`` maps one batch of model inputs to probabilities;
    ``whole`` runs the whole ``inputs`` file (a runtime may batch it its own way)."""

    def __init__(self, run: Callable, batch_size: int, runtime, delegation=None, whole=None):
        self.run, self.batch_size, self.delegation = run, batch_size, delegation
        self._runtime, self._whole = runtime, whole

    @property
    def runtime(self):
        return self._runtime() if callable(self._runtime) else self._runtime

    def whole(self, job: WorkerJob):
        if self._whole is not None:
            return self._whole()
        return np.concatenate([self.run(c) for c in iter_chunks(
            job.inputs, self.batch_size, job.channels)])


def tflite_runner(job: WorkerJob) -> Runner:
    delegates = [bench.edgetpu_delegate()] if job.delegate == "edgetpu" else None
    model = TFLiteModel(job.model, num_threads=int(job.threads or 2),
                        xnnpack=job.delegate == "xnnpack", delegates=delegates)
    bs = int(job.batch_size or 50)
    return Runner(lambda c: model.predict_batches([c]), bs, bench._runtime_label(),
                  model.delegation(job.delegate),
                  whole=lambda: model.predict_batches(iter_chunks(
                      job.inputs, bs, job.channels, expand=False)))


def predict(job: WorkerJob, load: Callable[[WorkerJob], Runner]) -> WorkerResult:
    """``job``'s evaluation set through the model ``load`` returns; the probabilities to
    ``job.output``. A job with a ``group`` (jobs of the same set, one per model) streams each
    image once through every member's model (``stream``); each member's probabilities go to its
    own ``output`` and its outcome to the result's ``members``: one model that fails to load or
    run does not fail the others."""
    if job.group:
        return _predict_group(job, load)
    items = None
    if job.items:  # the images themselves, cropped here
        with open(job.items) as f:
            items = preprocess.Items.from_json(json.load(f))
        n = len(items)
    else:
        n = _count(job.inputs)
    t = time.perf_counter()
    runner = load(job)
    load_s = time.perf_counter() - t
    tick = Progress(job.progress) if job.progress else None
    if items is not None:
        probs, = stream(job, items, [runner], tick)
        if isinstance(probs, Exception):
            raise probs
    else:
        probs = runner.whole(job)
    total = time.perf_counter() - t
    _save(job.output, probs, n)
    return WorkerResult(status="ok", runtime=runner.runtime, load_s=load_s, seconds=total,
                        images_per_s=n / max(total - load_s, 1e-9),
                        classes=int(np.shape(probs)[1]), peak_memory_mb=bench.peak_rss_mb(),
                        delegation=runner.delegation)


def _save(path: str, probs, n: int) -> None:
    probs = np.asarray(probs, np.float32)
    if probs.ndim != 2 or len(probs) != n:
        raise ValueError(f"model output has shape {probs.shape} for {n} images")
    tmp = path + ".tmp.npy"
    np.save(tmp, probs)
    os.replace(tmp, path)


def _predict_group(job: WorkerJob, load: Callable[[WorkerJob], Runner]) -> WorkerResult:
    with open(job.items) as f:
        items = preprocess.Items.from_json(json.load(f))
    n = len(items)
    members = [WorkerJob.from_json(m) for m in job.group]
    t = time.perf_counter()
    runners, outcome = [], []
    for m in members:
        t1 = time.perf_counter()
        try:
            runners.append(load(m))
            outcome.append({"status": "ok", "load_s": time.perf_counter() - t1})
        except Exception as e:  # noqa: BLE001 - this model's row, not the group's
            runners.append(None)
            outcome.append(_failure(e))
    loaded = [k for k, r in enumerate(runners) if r is not None]
    tick = Progress(job.progress) if job.progress else None
    got = stream(job, items, [runners[k] for k in loaded], tick)
    total = time.perf_counter() - t
    for k, probs in zip(loaded, got):
        try:
            if isinstance(probs, Exception):
                raise probs
            _save(members[k].output, probs, n)
            outcome[k].update(runtime=runners[k].runtime, delegation=runners[k].delegation,
                              classes=int(probs.shape[1]))
        except Exception as e:  # noqa: BLE001
            outcome[k] = _failure(e)
    bad = [o for o in outcome if o["status"] != "ok"]
    return WorkerResult(status="failed" if bad else "ok", error=bad[0]["error"] if bad else None,
                        seconds=total, images_per_s=n / max(total, 1e-9),
                        peak_memory_mb=bench.peak_rss_mb(), members=outcome)


def _failure(e: Exception) -> dict:
    return {"status": "unavailable" if isinstance(e, bench.DelegateUnavailable) else "failed",
            "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-4000:]}


def _predict(job: WorkerJob) -> WorkerResult:
    if job.kind == "mediapipe":  # in MediaPipe's own environment (edge_eval.mediapipe_rt)
        from edge_eval.mediapipe_rt import classify

        return WorkerResult.from_json(classify(job))
    if job.kind != "tflite":
        raise ValueError(f"the run side runs tflite and mediapipe models, not {job.kind!r} "
                         "(the host's edge_eval.reference runs those)")
    return predict(job, tflite_runner)


def _bench(job: WorkerJob) -> WorkerResult:
    m = bench.bench_tflite(job.model, threads=int(job.threads or 2), delegate=job.delegate,
                           warmup=job.warmup, runs=job.runs, min_seconds=job.min_seconds,
                           max_seconds=job.max_seconds, runtime=job.runtime)
    return WorkerResult(status=m.get("status", "ok"), error=m.get("error"),
                        runtime=m.get("runtime"), delegation=m.get("delegation"), measurement=m)


def _probe(job: WorkerJob) -> WorkerResult:
    from edge_eval.mediapipe_rt import probe

    return WorkerResult.from_json(probe(job))


OPS: Dict[str, Callable[[WorkerJob], WorkerResult]] = {
    "predict": _predict, "bench": _bench, "probe": _probe}


def serve(argv, ops: Dict[str, Callable[[WorkerJob], WorkerResult]]) -> int:
    """Reads the job at ``argv[0]``, runs its op, writes the result atomically (a failure is a
    result too: the row's error); exit 1 when it failed."""
    job = WorkerJob.read(argv[0])
    try:
        out, code = ops[job.op](job), 0
    except Exception as e:  # noqa: BLE001 - every failure becomes the row's error
        out = WorkerResult(
            status="unavailable" if isinstance(e, bench.DelegateUnavailable) else "failed",
            error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc()[-4000:])
        code = 1
    tmp = job.result + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out.to_json(), f)
    os.replace(tmp, job.result)
    return code


def main(argv=None) -> int:
    return serve(sys.argv[1:] if argv is None else argv, OPS)


if __name__ == "__main__":
    sys.exit(main())
