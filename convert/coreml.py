"""The Core ML half of the convert-model script: one ``.mlpackage`` (ML Program) per variant.

Each package takes an image input named ``image`` with the model's own scaling (read from
``preprocessing.json``: Inception's x/127.5 - 1 becomes Core ML's ``scale``/``bias``), outputs the
class label and the probabilities of every label (``ClassifierConfig``), and carries the
author, license, description, version and preprocessing in its metadata. Every package is checked
against the source model on the same seeded images as the TFLite artifacts, through the reference
evaluator (``convert/mil_eval.py``) on Linux, or Core ML itself on macOS, and is listed in the
same ``manifest.json``.

Variants are data (``contract.recipes.VARIANTS``); W8A8's activation calibration, which coremltools runs through
Core ML's ``predict`` (macOS only), runs here through the reference evaluator.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from contract import workdirs
from contract.manifest import sha256_tree
from contract.recipes import CoreMLVariant, file_name
from convert.loop import Adapter, Built, ConvertError, run
from train.source import Source


SIZE_CHECK_MIN_BYTES = 4 << 20
TARGETS = ("iOS16", "iOS17", "iOS18", "macOS13", "macOS14", "macOS15")
_TARGET_ORDER = {"iOS16": 0, "macOS13": 0, "iOS17": 1, "macOS14": 1, "iOS18": 2, "macOS15": 2}


def check_target(target: Optional[str], variants: Sequence[CoreMLVariant]) -> Optional[str]:
    if target is None:
        return None
    if target not in TARGETS:
        raise ConvertError(f"unknown deployment target {target!r}; valid: {', '.join(TARGETS)}")
    for v in variants:
        if _TARGET_ORDER[target] < _TARGET_ORDER[v.min_target]:
            raise ConvertError(f"Core ML variant {v.name} needs {v.min_target} or later; "
                               f"--coreml-target is {target}")
    return target


# --------------------------------------------------------------------------------------------
# conversion
# --------------------------------------------------------------------------------------------
def _ct():
    import logging

    os.environ.setdefault("TQDM_DISABLE", "1")  # coremltools' per-pass progress bars
    for name in ("coremltools",):
        logging.getLogger(name).setLevel(logging.ERROR)
    import coremltools as ct

    return ct


def _folded(spec) -> bool:
    """Core ML's ImageType has one scale (and a bias per channel): a per-channel scale (torch's
    std) is applied inside the program instead, in front of the model, on raw pixels."""
    return len(set(spec.scales)) > 1


def image_input(src: Source):
    """Core ML's ImageType for the model's preprocessing: y = scale * pixel + bias (scale 1,
    bias 0 when the per-channel scale is folded into the program)."""
    ct = _ct()
    spec = src.spec
    h, w = spec.input_size
    folded = _folded(spec)
    scale = 1.0 if folded else spec.scales[0]
    bias = [0.0] * spec.channels if folded else spec.offsets
    if spec.channels not in (1, 3):
        raise ConvertError(f"Core ML image inputs have 1 or 3 channels, the model has "
                           f"{spec.channels}")
    layout = ct.colorlayout.GRAYSCALE if spec.channels == 1 else (
        ct.colorlayout.BGR if getattr(spec, "color_order", "RGB") == "BGR" else ct.colorlayout.RGB)
    return ct.ImageType(name="image", shape=(1, h, w, spec.channels), scale=scale,
                        bias=bias if spec.channels == 3 else bias[0], color_layout=layout)


def _concrete_function(src: Source):
    """A one-input concrete function whose placeholder is named ``image`` (Keras 3 and
    two-signature SavedModels do not convert otherwise)."""
    import tensorflow as tf

    h, w = src.spec.input_size
    sig = tf.TensorSpec([1, h, w, src.spec.channels], tf.float32, name="image")
    if _folded(src.spec):
        scale = tf.constant(src.spec.scales, tf.float32)
        offset = tf.constant(src.spec.offsets, tf.float32)
        return tf.function(lambda image: src(image * scale + offset)).get_concrete_function(sig)
    return tf.function(lambda image: src(image)).get_concrete_function(sig)


def base_model(src: Source, precision: str, target: str):
    ct = _ct()
    kwargs = {}
    if src.labels:
        kwargs["classifier_config"] = ct.ClassifierConfig(list(src.labels))
    return ct.convert([_concrete_function(src)], source="tensorflow", inputs=[image_input(src)],
                      convert_to="mlprogram",
                      minimum_deployment_target=getattr(ct.target, target),
                      compute_precision=ct.precision.FLOAT16 if precision == "fp16"
                      else ct.precision.FLOAT32, **kwargs)


def to_program_input(x_nhwc: np.ndarray, src: Source) -> np.ndarray:
    """Preprocessed model inputs -> the pixel values the package's image input takes (NCHW)."""
    spec = src.spec
    return ((np.asarray(x_nhwc, np.float32) - np.asarray(spec.offsets, np.float32))
            / np.asarray(spec.scales, np.float32)).transpose(0, 3, 1, 2)


def calibration_stats(mlmodel, x_pixels: np.ndarray, batch_size: int = 32) -> dict:
    """Activation ranges for W8A8, measured by the reference evaluator (what coremltools'
    ``_get_activation_calibration_stats`` measures with Core ML's predict on macOS), with the
    inputs and output of each concat sharing one range as coremltools does."""
    from convert.mil_eval import Evaluator

    ev = Evaluator(program=mlmodel._mil_program, spec=mlmodel.get_spec())
    ranges: Dict[str, list] = {ev.input_name: [float(x_pixels.min()), float(x_pixels.max())]}
    for i in range(0, len(x_pixels), batch_size):
        ev.run(x_pixels[i:i + batch_size], ranges=ranges)
    groups: List[set] = []
    for op in ev.ops:
        if op.op_type == "concat":
            g = {v.name for v in op.inputs["values"]} | {op.outputs[0].name}
            for other in [o for o in groups if o & g]:
                g |= other
                groups.remove(other)
            groups.append(g)
    for g in groups:
        names = [n for n in g if n in ranges]
        if names:
            lo = min(ranges[n][0] for n in names)
            hi = max(ranges[n][1] for n in names)
            for n in names:
                ranges[n] = [lo, hi]
    return {k: {"rmin": np.float32(v[0]), "rmax": np.float32(v[1])} for k, v in ranges.items()}


def compress(mlmodel, variant: CoreMLVariant, calib_pixels: Optional[np.ndarray]):
    ct = _ct()
    oc = ct.optimize.coreml
    if variant.weights == "int8":
        mlmodel = oc.linear_quantize_weights(mlmodel, oc.OptimizationConfig(
            global_config=oc.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8",
                                                     granularity="per_channel")))
    elif variant.weights.startswith("palettize"):
        nbits = int(variant.weights[len("palettize"):])
        mlmodel = oc.palettize_weights(mlmodel, oc.OptimizationConfig(
            global_config=oc.OpPalettizerConfig(nbits=nbits, mode="kmeans",
                                                granularity="per_tensor")))
    if variant.activations == "int8":
        if calib_pixels is None:
            raise ConvertError(f"{variant.name} needs calibration images")
        import coremltools.optimize.coreml._post_training_quantization as ptq

        stats = calibration_stats(mlmodel, calib_pixels)
        real = ptq._get_activation_calibration_stats
        ptq._get_activation_calibration_stats = lambda *a, **k: stats
        try:
            mlmodel = oc.linear_quantize_activations(
                mlmodel, oc.OptimizationConfig(global_config=oc.OpLinearQuantizerConfig(
                    mode="linear_symmetric")), [{"image": calib_pixels[:1]}])
        finally:
            ptq._get_activation_calibration_stats = real
    return mlmodel


def set_metadata(mlmodel, src: Source, variant: CoreMLVariant, target: str,
                 author: str, license_: str, version: str) -> None:
    import json

    mlmodel.author = author or "convert/ of the Inception-v3 edge pipeline"
    mlmodel.license = license_ or "the source model's license"
    mlmodel.version = version or f"{src.name}@{src.sha256[:12]}"
    mlmodel.short_description = (
        f"Inception-v3 ({src.name}), {variant.description}. Input: {src.spec.input_size[0]}x"
        f"{src.spec.input_size[1]} image; output: class label and probabilities.")
    mlmodel.input_description["image"] = (
        f"{src.spec.channels}-channel image, {src.spec.input_size[0]}x{src.spec.input_size[1]} "
        f"after a central crop of {src.spec.crop_fraction:g}; scaled by the model "
        + ("(x*{:g}{:+g})".format(src.spec.scales[0], src.spec.offsets[0]) if src.spec.uniform
           else "(x*{}+{} per channel)".format(
               [round(v, 6) for v in src.spec.scales], [round(v, 4) for v in src.spec.offsets])))
    ud = mlmodel.user_defined_metadata
    ud["preprocessing"] = json.dumps(src.spec.to_dict(), sort_keys=True)
    ud["variant"] = variant.name
    ud["deployment_target"] = target
    ud["source_sha256"] = src.sha256
    ud["source_name"] = src.name


def weight_bytes(mlpackage: str) -> int:
    wdir = os.path.join(mlpackage, "Data", "com.apple.CoreML", "weights")
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(wdir) for f in fs)


def package_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def describe_package(path: str) -> dict:
    """Spec facts a runtime relies on, read back from the saved package."""
    ct = _ct()
    spec = ct.utils.load_spec(path)
    inp = spec.description.input[0]
    ev = _evaluator(path)  # the one the check already loaded
    scale = bias = None
    for op in ev.ops[:8]:  # the image scaling the converter put in front of the program
        if op.op_type == "mul" and op.inputs["x"].name == "image":
            scale = float(np.asarray(op.inputs["y"].val).ravel()[0])
        if op.op_type == "add" and bias is None and scale is not None:
            bias = [float(v) for v in np.asarray(op.inputs["y"].val).ravel()]
    weight_dtypes: Dict[str, int] = {}
    for op in ev.ops:
        if op.op_type.startswith("constexpr"):
            weight_dtypes[op.op_type] = weight_dtypes.get(op.op_type, 0) + 1
        elif op.op_type == "const" and op.outputs[0].val is not None and \
                np.asarray(op.outputs[0].val).size >= 64:
            dt = np.asarray(op.outputs[0].val).dtype.name
            weight_dtypes[dt] = weight_dtypes.get(dt, 0) + 1
    img = inp.type.imageType
    return {
        "input": {"name": inp.name, "width": int(img.width), "height": int(img.height),
                  "color_space": {10: "GRAYSCALE", 20: "RGB", 30: "BGR"}.get(img.colorSpace,
                                                                           str(img.colorSpace)),
                  "scale": scale, "bias": bias},
        "outputs": [o.name for o in spec.description.output],
        "classifier": spec.description.predictedFeatureName or None,
        "labels": len(ev.ops[-2].outputs[0].val) if ev.ops and ev.ops[-1].op_type == "classify"
        and ev.ops[-2].outputs[0].val is not None else None,
        "specification_version": int(spec.specificationVersion),
        "metadata": {"author": spec.description.metadata.author,
                     "license": spec.description.metadata.license,
                     "version": spec.description.metadata.versionString,
                     "description": spec.description.metadata.shortDescription,
                     "user_defined": dict(spec.description.metadata.userDefined)},
        "op_counts": {k: v for k, v in ev.op_types().items() if k != "const"},
        "weight_storage": weight_dtypes,
    }


_EVALUATORS: Dict[str, object] = {}
_MLMODELS: Dict[tuple, object] = {}


def _evaluator(path: str):
    """The reference evaluator of a package, loaded once per process."""
    from convert.mil_eval import Evaluator

    if path not in _EVALUATORS:
        _EVALUATORS[path] = Evaluator(path)
    return _EVALUATORS[path]


def predict_pixels(path: str, pixels_nchw: np.ndarray, batch_size: int = 64,
                   compute_unit: Optional[str] = "auto"):
    """Probabilities (in the package's label order) for images given as the pixel values its
    image input takes, and the runtime that computed them. ``compute_unit``: None, the
    project's ML Program evaluator (``mil_reference``); one of Core ML's compute units, Apple's
    runtime with it (contract.coreml_runtime; a failure raises CoreMLRuntimeError - the
    evaluator never answers in its place); ``auto``, ``ALL`` where Apple's runtime is here
    (macOS), else the evaluator."""
    from contract import coreml_runtime as cr

    ev = _evaluator(path)
    if compute_unit == "auto":
        compute_unit = "ALL" if cr.missing() is None else None
    if compute_unit is None:
        return ev.predict(pixels_nchw, batch_size), "mil_reference"
    return cr.predict(mlmodel(path, compute_unit), pixels_nchw, class_labels(path)), "coreml"


def mlmodel(path: str, compute_unit: str):
    """Apple's runtime's model of a package for a compute unit, loaded once per process."""
    from contract import coreml_runtime as cr

    key = (path, cr.unit_of(compute_unit))
    if key not in _MLMODELS:
        _MLMODELS[key] = cr.load(path, key[1])[0]
    return _MLMODELS[key]


def class_labels(path: str) -> List[str]:
    """The package's class labels, in its probabilities' order (its classify op's)."""
    return [str(c) for c in _evaluator(path).ops[-2].outputs[0].val]


def predict_package(path: str, x_nhwc: np.ndarray, src: Source, batch_size: int = 64):
    """Probabilities for preprocessed images, and which runtime computed them."""
    return predict_pixels(path, to_program_input(x_nhwc, src), batch_size)


class CoreMLAdapter(Adapter):
    target = "coreml"
    baseline = "coreml_fp32"

    def __init__(self, src: Source, calib: Optional[np.ndarray], target: Optional[str],
                 author: str, license_: str, version: str, out_dir: str):
        self.src, self.deploy, self.out_dir = src, target, out_dir
        self.meta = (author, license_, version)
        self.calib_pixels = None if calib is None else to_program_input(calib, src)
        self.conv_src = src
        if src.is_qat:  # Core ML quantizes float weights itself: the QAT weights, no wrappers
            from quantize.qat import float_from_qat

            try:
                self.conv_src = dataclasses.replace(
                    src, keras_model=float_from_qat(src.keras_model, src.config))
            except ValueError as e:
                raise ConvertError(str(e)) from None
        self.bases: Dict[tuple, object] = {}
        self.fp32_wbytes = None

    def key(self, v: CoreMLVariant) -> dict:
        return dict(super().key(v), deployment_target=self.deploy or v.min_target)

    def digest(self, path: str) -> str:
        return sha256_tree(path)

    def size(self, path: str) -> int:
        return package_bytes(path)

    def reuse(self, v: CoreMLVariant, entry: dict) -> None:
        if v.name == "fp32":
            self.fp32_wbytes = entry["check"]["weight_bytes"]

    def build(self, v: CoreMLVariant, ref: np.ndarray, check_x: np.ndarray) -> Built:
        tgt = self.deploy or v.min_target
        fname = file_name(self.src.name, v)
        work = workdirs.mkdtemp(".coreml-", dir=self.out_dir)  # beside: same disk
        try:
            key = (v.precision, tgt)
            if key not in self.bases:
                self.bases[key] = base_model(self.conv_src, v.precision, tgt)
            ml = compress(self.bases[key], v, self.calib_pixels)
            set_metadata(ml, self.src, v, tgt, *self.meta)
            pkg = os.path.join(work, fname)
            ml.save(pkg)
            got, runtime = predict_package(pkg, check_x, self.src)
            wb = weight_bytes(pkg)
            if v.name == "fp32":
                self.fp32_wbytes = wb
            elif self.fp32_wbytes is None:
                self.fp32_wbytes = _fp32_weight_bytes(self.conv_src, tgt)
            check = _check(v, got, ref, wb, self.fp32_wbytes, runtime)
            desc = describe_package(pkg)
        except ConvertError:
            shutil.rmtree(work, ignore_errors=True)
            raise
        except Exception as e:  # noqa: BLE001 - coremltools raises anything; name it
            shutil.rmtree(work, ignore_errors=True)
            raise ConvertError(f"coremltools failed: {type(e).__name__}: "
                               f"{str(e).splitlines()[0][:300]}") from None
        except BaseException:  # Ctrl-C, SIGTERM: the package being checked goes too
            shutil.rmtree(work, ignore_errors=True)
            raise

        def place(path: str) -> None:
            old = None
            if os.path.exists(path):
                old = workdirs.mkdtemp(".old-", dir=self.out_dir)
                os.replace(path, os.path.join(old, fname))
            os.replace(pkg, path)
            shutil.rmtree(work, ignore_errors=True)
            if old:
                shutil.rmtree(old, ignore_errors=True)

        return Built(check, {"coreml": desc}, place=place,
                     discard=lambda: shutil.rmtree(work, ignore_errors=True), note=runtime)


def convert_coreml(src: Source, variants: Sequence[CoreMLVariant], out_dir: str,
                   calib: Optional[np.ndarray], check_x: np.ndarray,
                   target: Optional[str] = None, author: str = "", license_: str = "",
                   version: str = "", log: Callable = print,
                   check_from: str = "evaluation split, seeded") -> dict:
    """Converts, checks and writes every variant; returns the manifest (also written)."""
    adapter = CoreMLAdapter(src, calib, target, author, license_, version, out_dir)
    return run(src, adapter, variants, out_dir, check_x, check_from, log)


def _fp32_weight_bytes(src: Source, target: str) -> int:
    ml = base_model(src, "fp32", target)
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "m.mlpackage")
        ml.save(p)
        return weight_bytes(p)


def _check(v: CoreMLVariant, got, ref, wbytes, fp32_wbytes, runtime) -> dict:
    """convert/check.py's rule; coremltools leaves tensors under 2048 values uncompressed: in a
    small model they are a large share of the bytes, so the size limit applies from 4 MB of
    fp32 weights on."""
    from convert.check import judge

    ratio = wbytes / fp32_wbytes if fp32_wbytes else None
    out = judge(v, got, ref, ratio, size_judged=bool(fp32_wbytes)
                and fp32_wbytes >= SIZE_CHECK_MIN_BYTES)
    diff = np.abs(np.asarray(got, np.float64) - np.asarray(ref, np.float64))
    out.update(runtime=runtime, weight_bytes=int(wbytes),
               max_rel_diff=float(np.max(diff / np.maximum(np.abs(ref), 1e-3))))
    return out
