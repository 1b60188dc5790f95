"""Preprocessing fingerprints: a few canary images through each runtime's real preprocessing,
compared with what ``preprocessing.json`` says, and the likely cause named when they differ.

The expected tensor is ``reference(image, spec)``: preprocessing.json applied by the harness's
OpenCV path (``edge_eval.preprocess.central``, itself checked against train/'s TensorFlow
pipeline by the tests). A runtime's observed tensor for the same canaries is compared with it;
when the two differ by more than ``TOLERANCE`` (mean |difference| as a fraction of the input
range's width), each cause in ``CAUSES`` is tried: the expected tensor re-made with that one
thing changed (another colour order, an input range fitted from the observed values, another
resize filter or sampling grid, another crop fraction, letterboxing), and the cause whose
variant explains the observed tensor best is named, if it explains it: within tolerance, or
leaving at most half of the difference and clearly less than the next best cause. The canaries are made to tell the causes
apart: a landscape and a portrait image (crop vs letterbox), colour ramps that differ per
channel (colour order, range) and stripes one pixel wide (resize filter and grid).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from contract.preprocessing import PreprocessingSpec, central_crop_box
from edge_eval import preprocess
from contract.jobs import WorkerJob, run as run_job
from contract.manifest import atomic_write_json
from contract.workdirs import user_cache

TOLERANCE = 0.002  # mean |observed - expected| / range width; float-vs-float pipelines: ~1e-7
EXPLAINS = 0.5  # a cause explains a difference when its variant leaves at most half of it ...
CLEAR = 0.6  # ... and at most 0.6 of what the next best cause leaves
BLUR_SIGMA = 1.5  # pixels of the model input
# where each cause is fixed: what to tell the user along with the name
WHERE = {"colour order": "the frames the app hands over (BGR?) or the model's colour metadata",
         "range": "the model's normalization (metadata mean/std, or Core ML's scale/bias)",
         "resize filter": "the runtime's own resampler (not the artifact: its effect is the "
                          "measured top-1 difference)",
         "crop fraction": "the region of interest the app passes (preprocessing.json's "
                          "central crop)",
         "letterbox": "the runtime's or the app's resize mode (stretch, not pad)"}
CAUSES = ("colour order", "range", "resize filter", "crop fraction", "letterbox")


def canaries(grey: bool = False) -> List[np.ndarray]:
    """Three seeded uint8 RGB images: landscape, portrait and a small square; ``grey``: the same
    in grey (R = G = B, BT.601 luma), for a grey-trained model (its runtimes grey the image
    first, so colour order is not observable there)."""
    rng = np.random.default_rng(7)
    out = []
    for h, w in ((61, 97), (90, 54), (23, 23)):
        yy, xx = np.mgrid[:h, :w].astype(np.float32)
        img = np.empty((h, w, 3), np.float32)
        img[..., 0] = 255 * xx / (w - 1)  # red ramps left to right
        img[..., 1] = 255 * yy / (h - 1)  # green top to bottom
        img[..., 2] = 40 + 170 * ((xx.astype(int) + yy.astype(int)) % 2)  # a 1-px checker
        img[::4] = 0.5 * img[::4] + 0.5 * rng.integers(0, 256, (len(img[::4]), w, 3))
        out.append(np.clip(np.round(img), 0, 255).astype(np.uint8))
    if grey:
        cv = preprocess._cv2()
        out = [np.repeat(cv.cvtColor(im, cv.COLOR_RGB2GRAY)[..., None], 3, axis=-1)
               for im in out]
    return out


# --------------------------------------------------------------------------------------------
# the reference, and its variants
# --------------------------------------------------------------------------------------------
def _resize(image: np.ndarray, h: int, w: int, method: str) -> np.ndarray:
    """float32 resize of uint8/float ``image`` by ``method``: ``bilinear`` (half-pixel
    centres, preprocessing.json's), ``bilinear_asymmetric`` (src = dst * in / out: TF1's
    resize_bilinear, MediaPipe's), ``nearest`` (src = floor(dst * in / out)), ``nearest_exact``
    (pixel centres), ``area``, ``bicubic``."""
    if method == "bilinear":
        return preprocess.resize(image, (h, w))
    x = image.astype(np.float32)
    H, W = x.shape[:2]
    if method == "bilinear_asymmetric":
        ys = np.minimum(np.arange(h) * H / h, H - 1)
        xs = np.minimum(np.arange(w) * W / w, W - 1)
        y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
        y1, x1 = np.minimum(y0 + 1, H - 1), np.minimum(x0 + 1, W - 1)
        wy, wx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
        top = x[y0][:, x0] * (1 - wx) + x[y0][:, x1] * wx
        bottom = x[y1][:, x0] * (1 - wx) + x[y1][:, x1] * wx
        return (top * (1 - wy) + bottom * wy).astype(np.float32)
    cv = preprocess._cv2()
    flag = {"nearest": cv.INTER_NEAREST, "nearest_exact": cv.INTER_NEAREST_EXACT,
            "area": cv.INTER_AREA, "bicubic": cv.INTER_CUBIC}[method]
    return cv.resize(x, (w, h), interpolation=flag).reshape(h, w, x.shape[-1])


def reference(image: np.ndarray, spec: PreprocessingSpec, resize: str = "bilinear",
              crop_fraction: Optional[float] = None, letterbox: bool = False,
              swap: bool = False, pad: float = 0.0) -> np.ndarray:
    """preprocessing.json applied to one uint8 image (the harness's path) - or one variant of
    it: another ``resize``, ``crop_fraction``, letterboxing (the whole image, aspect kept,
    padded with pixel value ``pad``), or the colour channels swapped."""
    h, w = spec.input_size
    frac = spec.crop_fraction if crop_fraction is None else crop_fraction
    if resize == "bilinear" and not letterbox and not swap and crop_fraction is None:
        return preprocess.central(image, spec)
    top, left, ch, cw = central_crop_box(image.shape[0], image.shape[1], frac)
    img = image[top:top + ch, left:left + cw]
    if swap and img.shape[-1] == 3:
        img = img[..., ::-1]
    if letterbox:
        s = min(h / img.shape[0], w / img.shape[1])
        nh, nw = max(1, round(img.shape[0] * s)), max(1, round(img.shape[1] * s))
        canvas = np.full((h, w, img.shape[-1]), pad, np.float32)
        t, l = (h - nh) // 2, (w - nw) // 2
        canvas[t:t + nh, l:l + nw] = _resize(img, nh, nw, resize)
        return preprocess.finish(canvas, spec)
    return preprocess.finish(_resize(img, h, w, resize), spec)


def _variants(spec: PreprocessingSpec) -> Dict[str, List[tuple]]:
    """cause -> [(what the variant is, reference keyword arguments)] (range is fitted)."""
    crops = [f for f in (1.0, 0.95, 0.9, 0.875, 0.85, 0.8, 0.75, 0.7)
             if abs(f - spec.crop_fraction) > 1e-6]
    return {
        "colour order": [("channels swapped (RGB <-> BGR)", {"swap": True})],
        "resize filter": [(m, {"resize": m}) for m in
                          ("bilinear_asymmetric", "nearest", "nearest_exact", "area", "bicubic")],
        "crop fraction": [(f"crop fraction {f:g}", {"crop_fraction": f}) for f in crops],
        "letterbox": [(f"letterboxed (aspect kept, padded with {p:g})",
                       {"letterbox": True, "crop_fraction": 1.0, "pad": p}) for p in (0, 127.5)],
    }


def _error(a: np.ndarray, b: np.ndarray, width: float) -> float:
    return float(np.mean(np.abs(a.astype(np.float64) - b)) / width)


def _blur(x: np.ndarray) -> np.ndarray:
    cv = preprocess._cv2()
    return cv.GaussianBlur(np.ascontiguousarray(x, np.float32), (0, 0), BLUR_SIGMA).reshape(
        x.shape)


def _fit_range(observed: np.ndarray, expected: np.ndarray, spec: PreprocessingSpec):
    """The observed tensor as ``pixel * a + b`` per channel (pixels recovered from the expected
    tensor): (fitted tensor, the input range the observed values imply)."""
    c = expected.shape[-1]
    pix = (expected - np.asarray(spec.offsets[:c], np.float32)) / np.asarray(spec.scales[:c],
                                                                               np.float32)
    fitted = np.empty_like(expected, dtype=np.float64)
    ends = []
    for k in range(c):
        p, o = pix[..., k].ravel(), observed[..., k].ravel().astype(np.float64)
        a, b = np.polyfit(p, o, 1)
        fitted[..., k] = pix[..., k] * a + b
        ends += [b, 255 * a + b]
    return fitted, [round(float(min(ends)), 3), round(float(max(ends)), 3)]


def _search(obs, images, spec: PreprocessingSpec, width: float, grey: bool, base_kw: dict):
    """cause -> (error, what) of its best variant, each variant on top of ``base_kw``."""
    tried: Dict[str, tuple] = {}
    for cause, variants in _variants(spec).items():
        if grey and cause == "colour order":  # a grey image has no channel order to get wrong
            continue
        for what, kw in variants:
            e = float(np.mean([_error(o, reference(im, spec, **{**base_kw, **kw}), width)
                               for o, im in zip(obs, images)]))
            if cause not in tried or e < tried[cause][0]:
                tried[cause] = (e, what)
    exp = [reference(im, spec, **base_kw) for im in images]
    # any other filter or grid: the two agree once fine detail is blurred away (a colour,
    # range or geometry difference does not go away)
    e_blur = float(np.mean([_error(_blur(o), _blur(e), width) for o, e in zip(obs, exp)]))
    if e_blur < tried["resize filter"][0]:
        tried["resize filter"] = (e_blur, "another resize filter or sampling grid (the tensors "
                                          "agree once both are blurred)")
    fits = [_fit_range(o, e, spec) for o, e in zip(obs, exp)]
    e_range = float(np.mean([_error(o, f, width) for o, (f, _) in zip(obs, fits)]))
    tried["range"] = (e_range, f"input range {fits[0][1]} (preprocessing.json: "
                               f"{[round(v, 3) for v in spec.input_range]})")
    return tried


def _pick(tried: Dict[str, tuple], base: float):
    """(cause, error, what, named): the best cause, named when it explains the difference."""
    ranked = sorted(tried.items(), key=lambda kv: kv[1][0])
    cause, (err, what) = ranked[0]
    second = ranked[1][1][0] if len(ranked) > 1 else base
    return cause, err, what, err <= TOLERANCE or (err <= EXPLAINS * base and
                                                  err <= CLEAR * second)


def compare(observed: Sequence[np.ndarray], images: Sequence[np.ndarray],
            spec: PreprocessingSpec) -> dict:
    """The fingerprint verdict for one runtime's tensors of ``images``: ``verdict`` (match |
    differs), ``error`` (mean |observed - expected| / input range width), ``cause`` (one of
    CAUSES, or "unexplained") and ``detail`` when they differ, and every cause's best error."""
    lo, hi = spec.input_range
    width = float(hi - lo) or 1.0
    obs = [np.asarray(o, np.float32).reshape(spec.input_size[0], spec.input_size[1], -1)
           for o in observed]
    exp = [reference(im, spec) for im in images]
    base = float(np.mean([_error(o, e, width) for o, e in zip(obs, exp)]))
    out = {"verdict": "match" if base <= TOLERANCE else "differs", "error": round(base, 6),
           "tolerance": TOLERANCE, "canaries": len(images)}
    if base <= TOLERANCE:
        return out
    grey = all(im.shape[-1] == 1 or (np.array_equal(im[..., 0], im[..., 1]) and
                                     np.array_equal(im[..., 1], im[..., 2])) for im in images)
    tried = _search(obs, images, spec, width, grey, {})
    cause, err, what, named = _pick(tried, base)
    if not named:
        # two differences at once: the runtime's own resampler and one more (MediaPipe's grid
        # with a dropped region of interest, say): each other cause on top of each resizer
        for m, _ in _variants(spec)["resize filter"]:
            extra = _search(obs, images, spec, width, grey, {"resize": m})
            extra.pop("resize filter", None)
            c2, e2, w2, ok2 = _pick(extra, base)
            if ok2 and e2 < err:
                cause, err, what, named = c2, e2, f"{w2}, with {m} resizing", True
    out.update(cause=cause if named else "unexplained",
               detail=what if named else "no single cause explains it",
               fix_in=WHERE.get(cause) if named else None,
               explained_error=round(err, 6),
               causes={k: round(v[0], 6) for k, v in sorted(tried.items())})
    return out


# --------------------------------------------------------------------------------------------
# the runtimes' real preprocessing
# --------------------------------------------------------------------------------------------
def harness_tensors(images, spec: PreprocessingSpec) -> List[np.ndarray]:
    """The harness's TF-free OpenCV path (what every host evaluation is fed)."""
    return [preprocess.central(im, spec) for im in images]


def tensorflow_tensors(images, spec: PreprocessingSpec) -> List[np.ndarray]:
    """train/'s TensorFlow evaluation preprocessing (what the float model was validated on)."""
    from train.data import batch_preprocess

    return [np.asarray(batch_preprocess(im[None], spec))[0] for im in images]


def coreml_tensors(images, spec: PreprocessingSpec, package_input: dict) -> List[np.ndarray]:
    """A Core ML package's image input as the evaluator applies it: the pixels the resized image
    holds, through the package's own ``scale`` and ``bias`` (read back from the saved program,
    manifest ``coreml.input``) in its colour space."""
    h, w = spec.input_size
    scale, bias = package_input.get("scale"), package_input.get("bias")
    if scale is None or bias is None:
        raise ValueError("the package's image scale/bias were not read back")
    out = []
    for im in images:
        top, left, ch, cw = central_crop_box(im.shape[0], im.shape[1], spec.crop_fraction)
        pix = _resize(im[top:top + ch, left:left + cw], h, w, "bilinear")
        if pix.shape[-1] == 1 and spec.channels == 3:
            pix = np.repeat(pix, 3, axis=-1)
        if package_input.get("color_space") == "BGR":
            pix = pix[..., ::-1]
        out.append(pix * np.float32(scale) + np.asarray(bias, np.float32))
    return out


def mediapipe_tensors(model_path: str, spec: PreprocessingSpec, workdir: str, roi: bool = True,
                      bgr_frames: bool = False, timeout: float = 300.0):
    """MediaPipe's own input tensor for the artifact at ``model_path``: its probe model (the
    artifact's input tensor and embedded normalization, echoed) run by ImageClassifier in
    MediaPipe's environment; ``roi``: the central crop passed as the region of interest, as the
    harness's MediaPipe runtime does; ``bgr_frames``: the images handed over in BGR order (an
    app's OpenCV-decoded frames), to show the fingerprint catches it."""
    import os

    from edge_eval import mediapipe_rt

    def tensors(images):
        exe = mediapipe_rt.interpreter()
        if exe is None:
            raise RuntimeError(mediapipe_rt.missing_reason())
        with open(model_path, "rb") as f:
            probe = mediapipe_rt.probe_model(f.read())
        path = os.path.join(workdir, "probe.tflite")
        with open(path, "wb") as f:
            f.write(probe)
        rgb = [np.ascontiguousarray(im[..., ::-1] if bgr_frames else im) for im in images]
        np.save(os.path.join(workdir, "canaries.npy"), np.concatenate([im.ravel() for im in rgb]))
        job = WorkerJob("probe", path, kind="mediapipe",
                        images=os.path.join(workdir, "canaries.npy"),
                        sizes=[list(im.shape[:2]) for im in images], spec=spec.to_dict(),
                        roi=roi, output=os.path.join(workdir, "probe_out.npy"))
        res = run_job(job, timeout, workdir, python=exe, env=mediapipe_rt.worker_env())
        if not res.ok:
            raise RuntimeError(res.error)
        return list(np.load(job.output))
    return tensors


def _java_classes(src: str, timeout: float) -> str:
    """The Android core compiled once per version of its sources (a folder of this user's cache
    named by their hash, filled atomically), so every evaluation does not pay for javac."""
    import glob
    import hashlib
    import os
    import shutil
    import subprocess
    import tempfile

    files = sorted(glob.glob(os.path.join(src, "org", "inceptionedge", "core", "*.java")))
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            h.update(os.path.basename(f).encode() + b"\0" + fh.read())
    final = user_cache(f"java-core-{h.hexdigest()[:16]}")
    if os.path.isdir(final):
        return final
    os.makedirs(os.path.dirname(final), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(final) + ".tmp-", dir=os.path.dirname(final))
    try:
        subprocess.run(["javac", "-d", tmp, "-nowarn", *files], check=True,
                       capture_output=True, timeout=timeout)
        try:
            os.rename(tmp, final)
        except OSError:  # another process made it first
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def java_tensors(workdir: str, spec: PreprocessingSpec, timeout: float = 120.0):
    """The Android core's ``Preprocessor.toFloat`` (android_demo/core, compiled here with javac)
    on the canaries: the tensor the app feeds the model."""
    import os
    import shutil
    import struct
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    src = os.path.join(root, "android_demo", "core", "src", "main", "java")

    def tensors(images):
        if not shutil.which("javac") or not shutil.which("java"):
            raise RuntimeError("no JDK (javac/java) on this machine: apt-get install "
                               "default-jdk-headless")
        classes = _java_classes(src, timeout)
        spec_path = os.path.join(workdir, "preprocessing.json")
        atomic_write_json(spec_path, spec.to_dict())
        with open(os.path.join(workdir, "canaries.bin"), "wb") as f:
            f.write(struct.pack(">i", len(images)))
            for im in images:
                rgb = im if im.shape[-1] == 3 else np.repeat(im, 3, axis=-1)
                f.write(struct.pack(">ii", *rgb.shape[:2]) + np.ascontiguousarray(
                    rgb, np.uint8).tobytes())
        out = os.path.join(workdir, "java_out.bin")
        p = subprocess.run(["java", "-cp", classes, "org.inceptionedge.core.Fingerprint",
                            spec_path, os.path.join(workdir, "canaries.bin"), out],
                           capture_output=True, text=True, timeout=timeout)
        if p.returncode:
            raise RuntimeError(f"Fingerprint exited {p.returncode}: {p.stderr.strip()[-300:]}")
        data = open(out, "rb").read()
        (n,), k, res = struct.unpack(">i", data[:4]), 4, []
        h, w = spec.input_size
        for _ in range(n):
            (m,) = struct.unpack(">i", data[k:k + 4])
            res.append(np.frombuffer(data[k + 4:k + 4 + 4 * m], ">f4").astype(np.float32)
                       .reshape(h, w, 3))
            k += 4 + 4 * m
        return res
    return tensors


def verdict_line(name: str, v: dict) -> str:
    if v["verdict"] == "match":
        return f"{name}: matches preprocessing.json (mean |d| {v['error']:.2g} of the range)"
    return (f"{name}: differs from preprocessing.json by {v['error']:.3g} of the range; "
            f"likely cause: {v['cause']} ({v['detail']})"
            + (f"; lies in {v['fix_in']}" if v.get("fix_in") else ""))


@dataclasses.dataclass
class Runtime:
    """One runtime's preprocessing for fingerprinting: ``tensors(images) -> [tensor]``."""
    name: str
    tensors: Callable[[List[np.ndarray]], List[np.ndarray]]


def fingerprint(runtimes: Sequence[Runtime], spec: PreprocessingSpec,
                images: Optional[List[np.ndarray]] = None) -> Dict[str, dict]:
    """{runtime name: verdict}; a runtime that cannot run is reported, not raised."""
    images = canaries(spec.source_channels == 1) if images is None else images
    out = {}
    for rt in runtimes:
        try:
            out[rt.name] = compare(rt.tensors(images), images, spec)
        except Exception as e:  # noqa: BLE001 - one runtime's failure is its own row
            out[rt.name] = {"verdict": "unavailable", "error": None,
                            "reason": f"{type(e).__name__}: {e}"}
    return out
