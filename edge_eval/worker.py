"""One artifact, one process: ``python -m edge_eval.worker JOB.json``.

The harness runs every artifact in its own worker with a timeout, so an artifact that crashes the
interpreter (a corrupt file, a bad delegate) becomes a failed row while the others finish, and so
peak memory and timings belong to one model. TFLite jobs import numpy and LiteRT only; only the
float reference (``kind: keras``/``savedmodel``) imports TensorFlow.

Job keys: ``op`` (predict | bench | probe), ``model``, ``kind`` (tflite | coreml | keras |
savedmodel | mediapipe: run in MediaPipe's own environment, see edge_eval.mediapipe_rt), ``result``
(where the worker writes its JSON answer); predict: ``inputs`` (.npy, float32, model input range;
grey inputs stay one channel and are expanded to ``channels`` batch by batch) or, for multi-crop,
``items`` (edge_eval.preprocess.Items as JSON) with ``spec`` and ``scheme``: the worker crops each
image itself and writes one averaged row per image (memory: one image's crops at a time),
``output`` (.npy of float32 probabilities), ``batch_size``, ``threads``, ``delegate``; bench: the
keyword arguments of ``edge_eval.bench.bench_tflite``.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback


def iter_chunks(path: str, batch: int, channels: int, expand: bool = True):
    """Batches of a float32 .npy, read into one reused buffer (no memory map: faulting in
    hundreds of MB of mapped pages cost more than the copy), grey expanded to ``channels`` unless
    the consumer broadcasts it itself (``expand=False``)."""
    import numpy as np

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
    import numpy as np

    return int(np.load(path, mmap_mode="r").shape[0])


def _tf_threads(job: dict) -> None:
    """TensorFlow's thread pools sized to the job's ``threads`` (before any op runs)."""
    if job.get("threads"):
        import tensorflow as tf

        n = int(job["threads"])
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)


def _crop_batches(job: dict, items, batch: int):
    """Multi-crop inputs, one image at a time: for each of ``items``, its ``scheme`` crops
    through the job's ``spec`` in chunks of at most ``batch`` (a divisor of the crop count, so
    every chunk has one shape), then ``None`` to close the image."""
    from edge_eval import preprocess
    from contract.preprocessing import PreprocessingSpec

    spec = PreprocessingSpec.from_dict(job["spec"])
    per = int(job["scheme"])
    chunk = max(d for d in range(1, min(batch, per) + 1) if per % d == 0)
    for i in range(len(items)):
        image, _ = items.load(i, spec.channels)
        crops = preprocess.crops(image, spec, per)
        for j in range(0, per, chunk):
            yield crops[j:j + chunk]
        del crops
        yield None


def _per_image(run, batches, n: int):
    """Averages ``run``'s outputs over each image's crops (batches up to a ``None``)."""
    import numpy as np

    out, acc, count = None, None, 0
    k = 0
    for b in batches:
        if b is None:
            if out is None:
                out = np.empty((n, acc.shape[0]), np.float32)
            out[k] = acc / count
            k, acc, count = k + 1, None, 0
            continue
        p = np.asarray(run(b), np.float64)
        acc = p.sum(axis=0) if acc is None else acc + p.sum(axis=0)
        count += len(p)
    return out if out is not None else np.empty((0, 0), np.float32)


def _predict(job: dict) -> dict:
    import numpy as np

    if job.get("kind") == "mediapipe":  # in MediaPipe's own environment (edge_eval.mediapipe_rt)
        from edge_eval.mediapipe_rt import classify

        return classify(job)

    channels = int(job.get("channels", 3))
    items = None
    if "items" in job:  # multi-crop: the images themselves, cropped here
        from edge_eval.preprocess import Items

        with open(job["items"]) as f:
            items = Items.from_json(json.load(f))
        n = len(items)
    else:
        n = _count(job["inputs"])
    kind = job.get("kind", "tflite")
    t = time.perf_counter()
    delegation = None
    if kind == "tflite":
        from contract.litert import TFLiteModel

        delegates = None
        delegate = job.get("delegate", "xnnpack")
        if delegate == "edgetpu":
            from edge_eval.bench import edgetpu_delegate

            delegates = [edgetpu_delegate()]
        model = TFLiteModel(job["model"], num_threads=int(job.get("threads", 2)),
                            xnnpack=delegate == "xnnpack", delegates=delegates)
        from edge_eval.bench import _runtime_label

        runtime = _runtime_label()
        delegation = model.delegation(delegate)
        bs = int(job.get("batch_size", 50))
        run = lambda c: model.predict_batches([c])  # noqa: E731
        whole = lambda: model.predict_batches(iter_chunks(  # noqa: E731
            job["inputs"], bs, channels, expand=False))
    elif kind in ("keras", "savedmodel"):
        from train import keras_env  # noqa: F401  (before TensorFlow)
        _tf_threads(job)
        from train.source import load_source

        src = load_source(job["model"])
        runtime = "tensorflow"
        bs = int(job.get("batch_size", 256))
        run = lambda c: src.predict(c, batch_size=bs)  # noqa: E731
        whole = lambda: np.concatenate([run(c) for c in iter_chunks(  # noqa: E731
            job["inputs"], bs, channels)])
    elif kind == "coreml":
        # Core ML's own predict on macOS; elsewhere the reference evaluator of the ML Program
        # (convert/mil_eval.py), fed the pixel values the package's image input takes
        _tf_threads(job)
        from convert.coreml import predict_pixels

        scale = np.asarray(job["scale"], np.float32)  # one per channel
        offset = np.asarray(job["offset"], np.float32)
        bs = int(job.get("batch_size", 64))
        runtimes = []

        def run(c):
            p, rt = predict_pixels(job["model"], ((c - offset) / scale).transpose(0, 3, 1, 2), bs)
            runtimes.append(rt)
            return p

        whole = lambda: np.concatenate([run(c) for c in iter_chunks(  # noqa: E731
            job["inputs"], bs, channels)])
        runtime = None
    else:
        raise ValueError(f"the worker runs tflite, coreml, keras and savedmodel models, "
                         f"not {kind!r}")
    load_s = time.perf_counter() - t
    probs = _per_image(run, _crop_batches(job, items, bs), n) if items is not None else whole()
    if kind == "coreml":
        runtime = runtimes[-1] if runtimes else None
    total = time.perf_counter() - t
    probs = np.asarray(probs, np.float32)
    from edge_eval.bench import peak_rss_mb

    if probs.ndim != 2 or len(probs) != n:
        raise ValueError(f"model output has shape {probs.shape} for {n} images")
    tmp = job["output"] + ".tmp.npy"
    np.save(tmp, probs)
    os.replace(tmp, job["output"])
    return {"status": "ok", "error": None, "runtime": runtime, "load_s": load_s,
            "seconds": total, "images_per_s": n / max(total - load_s, 1e-9),
            "classes": int(probs.shape[1]), "peak_memory_mb": peak_rss_mb(),
            "delegation": delegation}


def _bench(job: dict) -> dict:
    from edge_eval.bench import bench_tflite

    kw = {k: job[k] for k in ("threads", "delegate", "warmup", "runs", "min_seconds",
                              "max_seconds", "runtime") if k in job}
    return bench_tflite(job["model"], **kw)


def _probe(job: dict) -> dict:
    from edge_eval.mediapipe_rt import probe

    return probe(job)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as f:
        job = json.load(f)
    from edge_eval.bench import DelegateUnavailable

    try:
        out = {"predict": _predict, "bench": _bench, "probe": _probe}[job["op"]](job)
        code = 0
    except Exception as e:  # noqa: BLE001 - every failure becomes the row's error
        out = {"status": "unavailable" if isinstance(e, DelegateUnavailable) else "failed",
               "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-4000:]}
        code = 1
    tmp = job["result"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f)
    os.replace(tmp, job["result"])
    return code


if __name__ == "__main__":
    sys.exit(main())
