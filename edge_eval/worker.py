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
from typing import Callable, Dict

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


def _crop_batches(job: WorkerJob, items, batch: int):
    """Multi-crop inputs, one image at a time: for each of ``items``, its ``scheme`` crops
    through the job's ``spec`` in chunks of at most ``batch`` (a divisor of the crop count, so
    every chunk has one shape), then ``None`` to close the image."""
    spec = PreprocessingSpec.from_dict(job.spec)
    per = int(job.scheme)
    chunk = max(d for d in range(1, min(batch, per) + 1) if per % d == 0)
    for i in range(len(items)):
        image, _ = items.load(i, spec.decode_channels)
        crops = preprocess.crops(image, spec, per)
        for j in range(0, per, chunk):
            yield crops[j:j + chunk]
        del crops
        yield None


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


def _per_image(run, batches, n: int, tick=None):
    """Averages ``run``'s outputs over each image's crops (batches up to a ``None``);
    ``tick(images done)`` after each image."""
    out, acc, count = None, None, 0
    k = 0
    for b in batches:
        if b is None:
            if out is None:
                out = np.empty((n, acc.shape[0]), np.float32)
            out[k] = acc / count
            k, acc, count = k + 1, None, 0
            if tick is not None:
                tick(k, final=k == n)
            continue
        p = np.asarray(run(b), np.float64)
        acc = p.sum(axis=0) if acc is None else acc + p.sum(axis=0)
        count += len(p)
    return out if out is not None else np.empty((0, 0), np.float32)


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
    ``job.output``."""
    items = None
    if job.items:  # multi-crop: the images themselves, cropped here
        with open(job.items) as f:
            items = preprocess.Items.from_json(json.load(f))
        n = len(items)
    else:
        n = _count(job.inputs)
    t = time.perf_counter()
    runner = load(job)
    load_s = time.perf_counter() - t
    tick = Progress(job.progress) if job.progress else None
    probs = _per_image(runner.run, _crop_batches(job, items, runner.batch_size), n, tick) \
        if items is not None else runner.whole(job)
    total = time.perf_counter() - t
    probs = np.asarray(probs, np.float32)
    if probs.ndim != 2 or len(probs) != n:
        raise ValueError(f"model output has shape {probs.shape} for {n} images")
    tmp = job.output + ".tmp.npy"
    np.save(tmp, probs)
    os.replace(tmp, job.output)
    return WorkerResult(status="ok", runtime=runner.runtime, load_s=load_s, seconds=total,
                        images_per_s=n / max(total - load_s, 1e-9),
                        classes=int(probs.shape[1]), peak_memory_mb=bench.peak_rss_mb(),
                        delegation=runner.delegation)


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
