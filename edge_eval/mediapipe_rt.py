"""MediaPipe Tasks as an evaluation runtime: what an app's ``ImageClassifier`` gives.

MediaPipe reads a ``.tflite``'s metadata (labels, normalization) and preprocesses the image itself,
so its answers can differ from the harness's, which preprocesses with ``preprocessing.json``.
This module scores artifacts through ``mediapipe.tasks.python.vision.ImageClassifier`` and
captures the input tensor MediaPipe really builds (a *probe* model: the artifact's input tensor
and metadata in front of a reshape, so the classifier's "scores" are its own input values).

Where it lives: mediapipe pulls ``opencv-contrib-python`` and a newer ``absl-py``; installed
beside the project's ``opencv-python-headless`` the two OpenCV wheels overwrite each other's
``cv2``. So mediapipe gets its own virtual environment (``python -m edge_eval.mediapipe_rt
--setup``, run by scripts/setup.sh), and the harness runs MediaPipe jobs in worker processes of
that environment's Python, with this project on their path: the main environment never imports
mediapipe. ``MEDIAPIPE_PYTHON`` points at another interpreter that has it.

Main side (``probe_model``, ``interpreter``; which models it runs:
contract.tflite_file.mediapipe_problem) imports numpy and LiteRT's schema only; worker side (``classify``, ``probe``) imports mediapipe, numpy and cv2 only.
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from typing import Optional

import numpy as np

VERSION = "1.2.3"  # the MediaPipe release the runtime is tested with
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def venv_dir() -> str:
    from contract.workdirs import user_cache

    return user_cache(f"mediapipe-{VERSION}")


@functools.lru_cache(maxsize=None)
def interpreter() -> Optional[str]:
    """The Python that runs MediaPipe jobs (``MEDIAPIPE_PYTHON``, else the project's own
    environment for it), or None when there is none that imports mediapipe."""
    exe = os.environ.get("MEDIAPIPE_PYTHON") or os.path.join(venv_dir(), "bin", "python")
    if not os.path.exists(exe):
        return None
    try:
        out = subprocess.run([exe, "-c", "import mediapipe; print(mediapipe.__version__)"],
                             capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return exe if out.returncode == 0 else None


def missing_reason() -> str:
    return ("MediaPipe is not installed for the harness: run 'python -m edge_eval.mediapipe_rt "
            "--setup' (its own virtual environment: its opencv-contrib-python would replace the "
            "project's cv2) or set MEDIAPIPE_PYTHON to a Python that imports mediapipe")


def worker_env() -> dict:
    """The environment of a MediaPipe worker: this project importable, nothing else changed."""
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=ROOT + (os.pathsep + path if path else ""))


def setup(log=print) -> str:
    """Creates (or completes) MediaPipe's virtual environment; returns its Python."""
    d = venv_dir()
    exe = os.path.join(d, "bin", "python")
    if not os.path.exists(exe):
        log(f"[mediapipe] creating {d}")
        subprocess.run([sys.executable, "-m", "venv", d], check=True)
    log(f"[mediapipe] pip install mediapipe=={VERSION}")
    subprocess.run([exe, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    f"mediapipe=={VERSION}"], check=True)
    interpreter.cache_clear()
    if interpreter() is None:
        raise RuntimeError(f"mediapipe does not import in {d}")
    return exe


# --------------------------------------------------------------------------------------------
# main side: the probe model
# --------------------------------------------------------------------------------------------
def probe_model(model_bytes: bytes) -> bytes:
    """A model with ``model_bytes``' input tensor (shape, dtype, quantization) and its embedded
    normalization whose one output is that input, flattened (dequantized for a uint8 input):
    run through ImageClassifier, its scores are the tensor MediaPipe fed the model."""
    from ai_edge_litert import schema_py_generated as schema

    from contract import tflite_file
    from contract.tflite_file import input_tensor, pack

    tin = input_tensor(model_bytes)
    n = int(np.prod(tin["shape"]))
    md = tflite_file.read_metadata(model_bytes) or {"inputs": [{}]}
    norm = md["inputs"][0].get("normalization") or {}
    stats = md["inputs"][0].get("stats") or {}

    def tensor(name, shape, ttype, buffer, quant=None):
        t = schema.TensorT()
        t.name, t.shape, t.type, t.buffer = name, list(shape), ttype, buffer
        t.quantization = quant
        return t

    def buffer(data=None):
        b = schema.BufferT()
        b.data = data
        return b

    def code(op):
        c = schema.OperatorCodeT()
        c.builtinCode = c.deprecatedBuiltinCode = op
        c.version = 1
        return c

    def operator(opcode, inputs, outputs, options_type=0, options=None):
        o = schema.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = opcode, inputs, outputs
        o.builtinOptionsType, o.builtinOptions = options_type, options
        return o

    g = schema.SubGraphT()
    g.name = "probe"
    codes, ops = [code(schema.BuiltinOperator.RESHAPE)], []
    bufs = [buffer(), buffer(np.asarray([1, n], "<i4").view(np.uint8))]
    if tin["dtype"] == "uint8":
        q = schema.QuantizationParametersT()
        q.scale, q.zeroPoint = [tin["scale"]], [tin["zero_point"]]
        g.tensors = [tensor("image", tin["shape"], schema.TensorType.UINT8, 0, q),
                     tensor("dequantized", tin["shape"], schema.TensorType.FLOAT32, 0)]
        codes.append(code(schema.BuiltinOperator.DEQUANTIZE))
        ops.append(operator(1, [0], [1]))
        src = 1
    else:
        g.tensors = [tensor("image", tin["shape"], schema.TensorType.FLOAT32, 0)]
        src = 0
    g.tensors += [tensor("shape", [2], schema.TensorType.INT32, 1),
                  tensor("input_values", [1, n], schema.TensorType.FLOAT32, 0)]
    shape_i, out_i = len(g.tensors) - 2, len(g.tensors) - 1
    opts = schema.ReshapeOptionsT()
    opts.newShape = [1, n]
    ops.append(operator(0, [src, shape_i], [out_i], schema.BuiltinOptions.ReshapeOptions, opts))
    g.operators, g.inputs, g.outputs = ops, [0], [out_i]
    m = schema.ModelT()
    m.version, m.description, m.operatorCodes = 3, "input probe", codes
    m.subgraphs, m.buffers = [g], bufs
    bare = pack(m)
    h, w, c = tin["shape"][1:]
    meta = tflite_file.build_metadata(
        name="probe", description="echoes its input tensor", version="1", author="edge_eval",
        license_="", input_name="image", input_description="probe",
        mean=norm.get("mean") or [0.0] * c, std=norm.get("std") or [1.0] * c, width=w,
        height=h, channels=c, value_min=(stats.get("min") or [-1.0])[0],
        value_max=(stats.get("max") or [1.0])[0], output_name="input_values",
        output_description="the input tensor, flattened", labels_file=None)
    return tflite_file.attach(bare, meta, {})


# --------------------------------------------------------------------------------------------
# worker side (runs in MediaPipe's environment)
# --------------------------------------------------------------------------------------------
def _classifier(model: str):
    from mediapipe.tasks.python import BaseOptions, vision

    opts = vision.ImageClassifierOptions(
        base_options=BaseOptions(model_asset_path=model),
        max_results=-1, score_threshold=-3.0e38)  # every class, negative scores included
    return vision.ImageClassifier.create_from_options(opts)


def _mp_image(image: np.ndarray):
    import mediapipe as mp

    rgb = image if image.shape[-1] == 3 else np.repeat(image, 3, axis=-1)
    return mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb, np.uint8))


def _options(roi):
    if roi is None:
        return None
    from mediapipe.tasks.python.components.containers import rect
    from mediapipe.tasks.python.vision.core import image_processing_options as ipo

    left, top, right, bottom = roi
    return ipo.ImageProcessingOptions(region_of_interest=rect.RectF(
        left=left, top=top, right=right, bottom=bottom))


def _scores(result, n: int) -> np.ndarray:
    row = np.full(n, np.nan, np.float32)
    for c in result.classifications[0].categories:
        if 0 <= c.index < n:
            row[c.index] = c.score
    if np.isnan(row).any():
        raise ValueError(f"MediaPipe returned {int((~np.isnan(row)).sum())} of {n} scores")
    return row


def roi_of(spec, height: int, width: int):
    """The normalized region of interest that makes MediaPipe take preprocessing.json's central
    crop (None when the spec keeps the whole image)."""
    if spec.crop_fraction >= 1.0:
        return None
    from contract.preprocessing import central_crop_box

    top, left, ch, cw = central_crop_box(height, width, spec.crop_fraction)
    return [left / width, top / height, (left + cw) / width, (top + ch) / height]


def classify(job):
    """Worker (a contract.jobs.WorkerJob): ``items`` through the model's ImageClassifier; one probability row per image,
    indexed by the model's class index."""
    import time

    from contract.preprocessing import PreprocessingSpec
    from edge_eval.preprocess import Items

    with open(job.items) as f:
        items = Items.from_json(json.load(f))
    spec = PreprocessingSpec.from_dict(job.spec)
    t = time.perf_counter()
    clf = _classifier(job.model)
    load_s = time.perf_counter() - t
    rows = []
    for i in range(len(items)):
        image, _ = items.load(i, 3)
        opts = _options(roi_of(spec, image.shape[0], image.shape[1])) if job.roi else None
        rows.append(_scores(clf.classify(_mp_image(image), opts), int(job.classes)))
    clf.close()
    total = time.perf_counter() - t
    import mediapipe

    probs = np.stack(rows).astype(np.float32)
    tmp = job.output + ".tmp.npy"
    np.save(tmp, probs)
    os.replace(tmp, job.output)
    return {"status": "ok", "error": None, "runtime": f"mediapipe {mediapipe.__version__}",
            "load_s": load_s, "seconds": total,
            "images_per_s": len(rows) / max(total - load_s, 1e-9),
            "classes": int(probs.shape[1]), "peak_memory_mb": None}


def probe(job):
    """Worker (a contract.jobs.WorkerJob): the tensor MediaPipe builds for each of ``images`` (a .npy list of uint8 RGB
    arrays), read through the probe model ``model``; saved to ``output`` [N, H, W, C]."""
    import mediapipe

    from contract.preprocessing import PreprocessingSpec

    images = np.load(job.images, allow_pickle=False)
    sizes = job.sizes
    spec = PreprocessingSpec.from_dict(job.spec)
    h, w = spec.input_size
    n = h * w * spec.channels
    clf = _classifier(job.model)
    out = []
    flat, k = images.reshape(-1), 0
    for (ih, iw) in sizes:
        image = flat[k:k + ih * iw * 3].reshape(ih, iw, 3)
        k += ih * iw * 3
        opts = _options(roi_of(spec, ih, iw)) if job.roi else None
        out.append(_scores(clf.classify(_mp_image(image), opts), n).reshape(h, w, spec.channels))
    clf.close()
    np.save(job.output, np.stack(out))
    return {"status": "ok", "error": None, "runtime": f"mediapipe {mediapipe.__version__}"}


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m edge_eval.mediapipe_rt", description=(
        "MediaPipe Tasks for the harness: --setup makes its own virtual environment; "
        "--check says whether the harness can run it"))
    ap.add_argument("--setup", action="store_true")
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args(argv)
    if a.setup:
        print(f"[mediapipe] ready: {setup()}")
        return 0
    exe = interpreter()
    print(f"[mediapipe] {exe}" if exe else f"[mediapipe] {missing_reason()}")
    return 0 if exe else 1


if __name__ == "__main__":
    sys.exit(main())
