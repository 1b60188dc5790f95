"""One artifact, one process: ``python -m edge_eval.worker JOB.json``.

The harness runs every artifact in its own worker with a timeout, so an artifact that crashes the
interpreter (a corrupt file, a bad delegate) becomes a failed row while the others finish, and so
peak memory and timings belong to one model. TFLite jobs import numpy and LiteRT only; only the
float reference (``kind: keras``/``savedmodel``) imports TensorFlow.

Job keys: ``op`` (predict | bench), ``model``, ``kind`` (tflite | keras | savedmodel), ``result``
(where the worker writes its JSON answer); predict: ``inputs`` (.npy, float32, model input range),
``output`` (.npy of float32 probabilities), ``batch_size``, ``threads``, ``delegate``; bench: the
keyword arguments of ``edge_eval.bench.bench_tflite``.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback


def _predict(job: dict) -> dict:
    import numpy as np

    x = np.load(job["inputs"], mmap_mode="r")
    kind = job.get("kind", "tflite")
    t = time.perf_counter()
    if kind == "tflite":
        from convert.litert import TFLiteModel

        delegates = None
        delegate = job.get("delegate", "xnnpack")
        if delegate == "edgetpu":
            from edge_eval.bench import edgetpu_delegate

            delegates = [edgetpu_delegate()]
        model = TFLiteModel(job["model"], num_threads=int(job.get("threads", 2)),
                            xnnpack=delegate == "xnnpack", delegates=delegates)
        runtime = "litert"
        load_s = time.perf_counter() - t
        probs = model.predict(x, batch_size=int(job.get("batch_size", 50)))
    elif kind in ("keras", "savedmodel"):
        from train import keras_env  # noqa: F401  (before TensorFlow)
        from convert.tflite import load_source

        src = load_source(job["model"])
        runtime = "tensorflow"
        load_s = time.perf_counter() - t
        probs = src.predict(np.asarray(x), batch_size=int(job.get("batch_size", 256)))
    else:
        raise ValueError(f"the worker runs tflite, keras and savedmodel models, not {kind!r}")
    total = time.perf_counter() - t
    probs = np.asarray(probs, np.float32)
    if probs.ndim != 2 or len(probs) != len(x):
        raise ValueError(f"model output has shape {probs.shape} for {len(x)} inputs")
    tmp = job["output"] + ".tmp.npy"
    np.save(tmp, probs)
    os.replace(tmp, job["output"])
    return {"status": "ok", "error": None, "runtime": runtime, "load_s": load_s,
            "seconds": total, "images_per_s": len(x) / max(total - load_s, 1e-9),
            "classes": int(probs.shape[1])}


def _bench(job: dict) -> dict:
    from edge_eval.bench import bench_tflite

    kw = {k: job[k] for k in ("threads", "delegate", "warmup", "runs", "min_seconds",
                              "max_seconds") if k in job}
    return bench_tflite(job["model"], **kw)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as f:
        job = json.load(f)
    try:
        out = {"predict": _predict, "bench": _bench}[job["op"]](job)
        code = 0
    except Exception as e:  # noqa: BLE001 - every failure becomes the row's error
        out = {"status": "unavailable" if "Edge TPU runtime" in str(e) else "failed",
               "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-4000:]}
        code = 1
    tmp = job["result"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f)
    os.replace(tmp, job["result"])
    return code


if __name__ == "__main__":
    sys.exit(main())
