"""The float reference and Core ML, one model per process: ``python -m edge_eval.reference JOB.json``.

The host side of the worker (contract.jobs.HOST_KINDS): the Keras or SavedModel the artifacts are
compared with, loaded through train.source (with its safety checks), and Core ML packages (Core
ML's own predict on macOS; elsewhere convert/mil_eval.py's reference evaluator of the ML Program).
The job, its evaluation set, the loop and the result are edge_eval.worker's, so every row is
measured the same way; only this module imports TensorFlow and ``convert/``.
"""
from __future__ import annotations

import sys

import numpy as np

from contract.jobs import WorkerJob, WorkerResult
from edge_eval import worker
from edge_eval.worker import Runner


def _tf_threads(job: WorkerJob) -> None:
    """TensorFlow's thread pools sized to the job's ``threads`` (before any op runs)."""
    if job.threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(int(job.threads))
        tf.config.threading.set_inter_op_parallelism_threads(int(job.threads))


def tensorflow_runner(job: WorkerJob) -> Runner:
    from train import keras_env  # noqa: F401  (before TensorFlow)
    from train.source import load_source  # TensorFlow: seconds, so only in this process

    _tf_threads(job)
    src = load_source(job.model)
    bs = int(job.batch_size or 256)
    return Runner(lambda c: src.predict(c, batch_size=bs), bs, "tensorflow")


def coreml_runner(job: WorkerJob) -> Runner:
    """Fed the pixel values the package's image input takes (per-channel scale and offset).
    The job's delegate picks the runtime: a Core ML compute unit (``cpu_and_ne`` ...), Apple's
    runtime with it (its failure fails the row: the evaluator never answers in its place);
    anything else, the project's ML Program evaluator."""
    from contract import coreml_runtime as cr
    from convert.coreml import mlmodel, predict_pixels  # coremltools: seconds, so only here

    _tf_threads(job)
    scale = np.asarray(job.scale, np.float32)
    offset = np.asarray(job.offset, np.float32)
    unit = job.delegate.upper() if job.delegate.upper() in cr.COMPUTE_UNITS else None
    delegation = None
    if unit is not None:
        problem = cr.missing()
        if problem:
            raise cr.CoreMLRuntimeError(problem)
        delegation = cr.placement(mlmodel(job.model, unit), unit)

    def run(c):
        return predict_pixels(job.model, ((c - offset) / scale).transpose(0, 3, 1, 2),
                              int(job.batch_size or 64), unit)[0]

    return Runner(run, int(job.batch_size or 64), "coreml" if unit else "mil_reference",
                  delegation)


def _coreml_pixels(job: WorkerJob) -> np.ndarray:
    """One image as the package's image input takes it (a fixed seeded pattern: timing only)."""
    from convert.coreml import describe_package

    inp = describe_package(job.model)["input"]
    c = 1 if inp["color_space"] == "GRAYSCALE" else 3
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (1, c, inp["height"], inp["width"])).astype(np.float32)


def _bench(job: WorkerJob) -> WorkerResult:
    """Apple's runtime timing one package under the job's compute unit (edge_eval.bench)."""
    from contract import coreml_runtime as cr
    from edge_eval.bench import bench_coreml

    if job.kind != "coreml":
        raise ValueError(f"the host's bench runs Core ML packages, not {job.kind!r}")
    problem = cr.missing()
    if problem:
        return WorkerResult(status="unavailable", error=problem, runtime="coreml")
    m = bench_coreml(job.model, cr.unit_of(job.delegate), _coreml_pixels(job), job.warmup,
                     job.runs, job.min_seconds, job.max_seconds)
    return WorkerResult(status=m["status"], error=m.get("error"), runtime="coreml",
                        delegation=m.get("delegation"), measurement=m)


LOADERS = {"keras": tensorflow_runner, "savedmodel": tensorflow_runner, "coreml": coreml_runner}


def _load(job: WorkerJob) -> Runner:
    """The loader of the job's kind (a group's members each by their own: the float
    reference and Core ML packages share a shard's worker)."""
    if job.kind not in LOADERS:
        raise ValueError(f"the reference runs {sorted(LOADERS)} models, not {job.kind!r}")
    return LOADERS[job.kind](job)


def _predict(job: WorkerJob) -> WorkerResult:
    if job.kind not in LOADERS:
        raise ValueError(f"the reference runs {sorted(LOADERS)} models, not {job.kind!r}")
    return worker.predict(job, _load)


def main(argv=None) -> int:
    return worker.serve(sys.argv[1:] if argv is None else argv,
                        {"predict": _predict, "bench": _bench})


if __name__ == "__main__":
    sys.exit(main())
