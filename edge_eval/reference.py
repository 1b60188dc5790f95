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
    """Fed the pixel values the package's image input takes (per-channel scale and offset)."""
    from convert.coreml import predict_pixels  # coremltools: seconds, so only in this process

    _tf_threads(job)
    scale = np.asarray(job.scale, np.float32)
    offset = np.asarray(job.offset, np.float32)
    runtimes = []

    def run(c):
        p, rt = predict_pixels(job.model, ((c - offset) / scale).transpose(0, 3, 1, 2),
                               int(job.batch_size or 64))
        runtimes.append(rt)
        return p

    return Runner(run, int(job.batch_size or 64), lambda: runtimes[-1] if runtimes else None)


LOADERS = {"keras": tensorflow_runner, "savedmodel": tensorflow_runner, "coreml": coreml_runner}


def _predict(job: WorkerJob) -> WorkerResult:
    if job.kind not in LOADERS:
        raise ValueError(f"the reference runs {sorted(LOADERS)} models, not {job.kind!r}")
    return worker.predict(job, LOADERS[job.kind])


def main(argv=None) -> int:
    return worker.serve(sys.argv[1:] if argv is None else argv, {"predict": _predict})


if __name__ == "__main__":
    sys.exit(main())
