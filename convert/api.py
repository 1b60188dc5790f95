"""The conversion as a library call: ``Request`` -> checked artifacts + manifest.json.

``python -m convert`` parses flags into a ``Request``; the job's recipe choice builds one too
(a selective step is one recipe), so calibration and check images are drawn the same way.
"""
from __future__ import annotations

import dataclasses
import sys
import tempfile
from typing import Callable, List, Optional, Tuple

import numpy as np

from contract.recipes import CoreMLVariant, Recipe, get_recipe
from convert.loop import ConvertError
import quantize  # noqa: F401  (registers the QAT layers' scope: a QAT export loads)
from contract import workdirs
from train.source import Source, check_images_array, dataset_images, load_source

EDGETPU_RECIPE = "static_wi8_ai8_uint8io"


@dataclasses.dataclass
class Request:
    model: str
    out: str
    recipes: List[Recipe] = dataclasses.field(default_factory=list)
    variants: List[CoreMLVariant] = dataclasses.field(default_factory=list)
    edgetpu: bool = False  # the Edge TPU report (and compiled model) of the uint8-I/O recipe
    require_edgetpu_compiler: bool = False
    edgetpu_segments: int = 1  # >1: compiled as that many segments (pipelined Edge TPUs)
    calib_images: Optional[int] = None  # default 200; with calib_npy: the whole file
    calib_npy: Optional[str] = None
    data_path: Optional[str] = None
    data_source: Optional[str] = None
    check_npy: Optional[str] = None
    check_images: int = 64
    check_split: str = "test"  # the split the check images come from (the choice: holdout)
    seed: int = 0
    coreml_target: Optional[str] = None
    metadata: Optional[dict] = dataclasses.field(default_factory=dict)  # None: none embedded
    preprocessing: Optional[dict] = None  # for a model with no preprocessing.json
    labels: Optional[str] = None

    def __post_init__(self):
        if self.edgetpu and EDGETPU_RECIPE not in {r.name for r in self.recipes}:
            self.recipes = list(self.recipes) + [get_recipe(EDGETPU_RECIPE)]
        if self.edgetpu_segments < 1:
            raise ConvertError(f"--edgetpu-segments must be >= 1. Received: "
                               f"{self.edgetpu_segments}")
        if self.data_source and not self.data_path:
            raise ConvertError("--data-source needs --data-path (the dataset's folder)")


@dataclasses.dataclass
class Inputs:
    calib: Optional[np.ndarray]
    check_x: np.ndarray
    check_from: str


def load(req: Request, log: Callable = print) -> Source:
    # the lean SavedModels (convert-sm-<pid>-...) a killed conversion left in the temp folder
    workdirs.sweep(tempfile.gettempdir(), log)
    src = load_source(req.model, req.preprocessing, req.labels)
    if src.labels_generated:
        print(f"[convert] warning: no labels.txt beside {req.model}: the outputs are named "
              f"class_0 .. class_{len(src.labels) - 1}; give --labels FILE for real names",
              file=sys.stderr)
    return src


def _data_overrides(req: Request, src: Source) -> dict:
    over = {k: v for k, v in (("path", req.data_path), ("source", req.data_source)) if v}
    if req.data_source == "imagenet":  # the model's outputs are the records' classes
        over["num_classes"] = src.num_outputs
    return over


def calibration(req: Request, src: Source) -> Optional[np.ndarray]:
    """The representative images, when a recipe or variant calibrates (a QAT model's TFLite
    recipes do not: its ranges are learnt)."""
    if not ((any(r.calibrate for r in req.recipes) and not src.is_qat)
            or any(v.activations == "int8" for v in req.variants)):
        return None
    if req.calib_npy:  # the user's file is used whole unless calib_images is given
        calib = np.load(req.calib_npy, allow_pickle=False)
        what = f"calibration data {req.calib_npy}"
        want = req.calib_images or len(calib)
    else:
        want = req.calib_images or 200
        calib = dataset_images(src, "train", want, req.seed, _data_overrides(req, src))
        what = "calibration data"
    calib = check_images_array(calib, src, min(want, 10) or 1, what)
    if len(calib) < want:
        raise ConvertError(f"{what} has {len(calib)} images; --calib-images asks for {want}")
    return calib[:want]


def check_images(req: Request, src: Source) -> Tuple[np.ndarray, str]:
    """The images every artifact is checked on against the source, and where they came from."""
    over = _data_overrides(req, src)
    if req.check_npy:
        x = check_images_array(np.load(req.check_npy, allow_pickle=False), src, 1, req.check_npy)
        return x, req.check_npy
    if src.config or over:
        return (dataset_images(src, req.check_split, req.check_images, req.seed + 1, over),
                "evaluation split, seeded" if req.check_split == "test"
                else f"{req.check_split} split, seeded")
    lo, hi = src.spec.input_range  # a user's model with no dataset config: seeded noise
    frm = "seeded uniform noise (no dataset known: pass --check-npy)"
    print(f"[convert] warning: checking on {frm}", file=sys.stderr)
    return (np.random.RandomState(req.seed + 1).uniform(
        lo, hi, (req.check_images, *src.input_shape)).astype(np.float32), frm)


def inputs(req: Request, src: Source) -> Inputs:
    return Inputs(calibration(req, src), *check_images(req, src))


def convert(req: Request, src: Optional[Source] = None, log: Callable = print,
            given: Optional[Inputs] = None) -> dict:
    """Every recipe and variant of ``req``, each checked; returns the manifest (written). The
    failures of this source are the manifest's ``failures`` with its ``source_sha256``.
    ``given``: calibration and check images drawn once for several calls (the choice)."""
    from convert.tflite import convert_tflite

    src = src or load(req, log)
    given = given or inputs(req, src)
    calib, check_x, check_from = given.calib, given.check_x, given.check_from
    manifest = None
    if req.recipes:
        manifest = convert_tflite(src, req.recipes, req.out, calib, check_x,
                                  check_from=check_from, metadata=req.metadata, log=log)
    failed_now = {f["recipe"] for f in (manifest or {}).get("failures", [])
                  if f.get("source_sha256") == src.sha256}
    if req.edgetpu and EDGETPU_RECIPE in failed_now:
        # the model the Edge TPU needs failed its own check: that failure is reported and the
        # other artifacts stand; there is nothing to compile
        log("[convert] Edge TPU: skipped, static_wi8_ai8_uint8io failed its check", flush=True)
    elif req.edgetpu:
        from convert.edgetpu import annotate

        manifest = annotate(req.out, src.sha256, req.require_edgetpu_compiler, log=log,
                            segments=req.edgetpu_segments)
    if req.variants:
        from convert.coreml import convert_coreml

        meta = req.metadata or {}
        manifest = convert_coreml(src, req.variants, req.out, calib, check_x, req.coreml_target,
                                  meta.get("author", ""), meta.get("license", ""),
                                  meta.get("version", ""), check_from=check_from, log=log)
    return manifest


def failures(manifest: dict, src_sha256: str) -> List[dict]:
    return [f for f in manifest.get("failures", []) if f.get("source_sha256") == src_sha256]
