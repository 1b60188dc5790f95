"""The preprocessing contract: one ``preprocessing.json`` written next to every exported model.

Every later stage (quantize/ calibration, convert/ metadata, edge_eval/, the Android app) reads
this file instead of re-stating the numbers. This module imports no TensorFlow so the run side can
use it; the TF implementation lives in ``train/data.py``.

Evaluation preprocessing (the paper's): decode -> central crop of ``crop_fraction`` of the image's
height and width -> bilinear resize to ``input_size`` (half-pixel centres, no antialiasing, as
``tf.image.resize`` and OpenCV's ``INTER_LINEAR``) -> grey to RGB if needed -> ``x * scale + offset``
(Inception: ``x / 127.5 - 1``, pixels in [-1, 1]).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import List

FILENAME = "preprocessing.json"
SCHEMA_VERSION = 1


@dataclasses.dataclass
class PreprocessingSpec:
    input_size: List[int] = dataclasses.field(default_factory=lambda: [299, 299])  # [height, width]
    channels: int = 3
    color_order: str = "RGB"
    source_channels: int = 3  # 1: grayscale data, repeated to 3 channels after resizing
    crop_fraction: float = 0.875
    resize_method: str = "bilinear"
    scale: float = 1.0 / 127.5
    offset: float = -1.0
    layout: str = "NHWC"
    dtype: str = "float32"

    @property
    def mean(self) -> List[float]:
        """The same normalisation as ``(x - mean) / std`` (TFLite metadata's form)."""
        return [-self.offset / self.scale] * self.channels

    @property
    def std(self) -> List[float]:
        return [1.0 / self.scale] * self.channels

    @property
    def input_range(self) -> List[float]:
        return [self.offset, 255.0 * self.scale + self.offset]

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(schema_version=SCHEMA_VERSION, mean=self.mean, std=self.std,
                 input_range=self.input_range)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessingSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        missing = {"input_size", "crop_fraction", "scale", "offset"} - set(d)
        if missing:
            raise ValueError(f"preprocessing spec lacks {sorted(missing)}. Received keys: {sorted(d)}")
        spec = cls(**{k: v for k, v in d.items() if k in names})
        spec.input_size = [int(v) for v in spec.input_size]
        if not 0.0 < spec.crop_fraction <= 1.0:
            raise ValueError(f"crop_fraction must be in (0, 1]. Received: {spec.crop_fraction}")
        return spec

    def save(self, directory: str) -> str:
        path = os.path.join(directory, FILENAME)
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2)
            f.write("\n")
        return path

    @classmethod
    def load(cls, path: str) -> "PreprocessingSpec":
        """Loads from a ``preprocessing.json`` or from the folder (or a model file's folder) holding one."""
        candidates = [path]
        if os.path.isdir(path):
            candidates = [os.path.join(path, FILENAME), os.path.join(path, "..", FILENAME)]
        elif not path.endswith(".json"):
            candidates = [os.path.join(os.path.dirname(path), FILENAME)]
        for c in candidates:
            if os.path.isfile(c):
                with open(c) as f:
                    return cls.from_dict(json.load(f))
        raise FileNotFoundError(f"no {FILENAME} found for {path} (looked at {candidates})")


def central_crop_box(height: int, width: int, fraction: float):
    """Integer (top, left, crop_h, crop_w) of the central crop, as ``tf.image.central_crop``."""
    if fraction >= 1.0:
        return 0, 0, height, width
    top = int((height - height * fraction) / 2)
    left = int((width - width * fraction) / 2)
    return top, left, height - 2 * top, width - 2 * left
