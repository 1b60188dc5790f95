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
import math
import os
import sys
import threading
from typing import List, Union

FILENAME = "preprocessing.json"
SCHEMA_VERSION = 1


class PreprocessingError(ValueError):
    """A preprocessing.json that breaks the contract (the message names the field)."""


def _number(lo=None, hi=None, lo_open=False, nonzero=False):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return "must be a finite number"
        if nonzero and v == 0:
            return "must not be 0"
        if lo is not None and (v <= lo if lo_open else v < lo) or hi is not None and v > hi:
            return f"must be in {'(' if lo_open else '['}{lo}, {hi}]"
        return None
    return check


def _per_channel(nonzero=False):
    """A number, or one number per channel (checked against ``channels`` in from_dict)."""
    one = _number(nonzero=nonzero)

    def check(v):
        if isinstance(v, list):
            if not 1 <= len(v) <= 3:
                return "must be a number or a list of one number per channel"
            bad = next((one(x) for x in v if one(x)), None)
            return f"(each channel) {bad}" if bad else None
        return one(v)
    return check


def _choice(*allowed):
    return lambda v: None if v in allowed else f"must be one of {list(allowed)}"


def _size(v):
    if not isinstance(v, list) or len(v) != 2 or any(
            isinstance(x, bool) or not isinstance(x, int) or not 1 <= x <= 8192 for x in v):
        return "must be [height, width], two integers in 1..8192"
    return None


def _per(v, channels: int) -> List[float]:
    return [float(x) for x in v] if isinstance(v, list) else [float(v)] * channels


REQUIRED = ("input_size", "channels", "crop_fraction", "scale", "offset")
FIELDS = {
    "input_size": _size,
    "channels": _choice(1, 3),
    "source_channels": _choice(1, 3),
    "color_order": _choice("RGB", "BGR"),
    "crop_fraction": _number(0.0, 1.0, lo_open=True),
    "resize_method": _choice("bilinear"),
    "scale": _per_channel(nonzero=True),
    "offset": _per_channel(),
    "layout": _choice("NHWC"),
    "dtype": _choice("float32"),
}


@dataclasses.dataclass
class PreprocessingSpec:
    input_size: List[int] = dataclasses.field(default_factory=lambda: [299, 299])  # [height, width]
    channels: int = 3
    color_order: str = "RGB"
    source_channels: int = 3  # 1: grayscale data, repeated to 3 channels after resizing
    crop_fraction: float = 0.875
    resize_method: str = "bilinear"
    # model input = pixel * scale + offset: one number for every channel, or one per channel in
    # the model's channel order (after an RGB -> BGR swap): caffe's BGR means, torch's mean/std
    scale: Union[float, List[float]] = 1.0 / 127.5
    offset: Union[float, List[float]] = -1.0
    layout: str = "NHWC"
    dtype: str = "float32"

    @property
    def scales(self) -> List[float]:
        """``scale`` per channel (``channels`` numbers)."""
        return _per(self.scale, self.channels)

    @property
    def offsets(self) -> List[float]:
        return _per(self.offset, self.channels)

    @property
    def decode_channels(self) -> int:
        """Channels an image is decoded to: 1 for a model trained on grey data (a colour image
        is made grey first - BT.601 luma, as the app's Preprocessor does - then repeated after
        resizing), else ``channels``."""
        return 1 if self.source_channels == 1 else self.channels

    @property
    def uniform(self) -> bool:
        """One scale and one offset for all channels (what a grey pixel can carry)."""
        return len(set(self.scales)) == 1 and len(set(self.offsets)) == 1

    @property
    def mean(self) -> List[float]:
        """The same normalisation as ``(x - mean) / std`` (TFLite metadata's form)."""
        return [-o / s for s, o in zip(self.scales, self.offsets)]

    @property
    def std(self) -> List[float]:
        return [1.0 / s for s in self.scales]

    @property
    def input_range(self) -> List[float]:
        ends = [v for s, o in zip(self.scales, self.offsets) for v in (o, 255.0 * s + o)]
        return [min(ends), max(ends)]

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(schema_version=SCHEMA_VERSION, mean=self.mean, std=self.std,
                 input_range=self.input_range)
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = "preprocessing spec") -> "PreprocessingSpec":
        """A validated spec: every field checked against ``FIELDS`` once, here, with one message
        naming the field and the value received (PreprocessingError)."""
        if not isinstance(d, dict):
            raise PreprocessingError(f"{source}: expected a JSON object. Received: "
                                     f"{type(d).__name__}")
        missing = [k for k in REQUIRED if k not in d]
        if missing:
            raise PreprocessingError(f"{source} lacks {missing}. Received keys: {sorted(d)}")
        values = {}
        for name, check in FIELDS.items():
            if name in d:
                problem = check(d[name])
                if problem:
                    raise PreprocessingError(f"{source}: field {name!r} {problem}. "
                                             f"Received: {d[name]!r}")
                values[name] = d[name]
        spec = cls(**values)
        spec.input_size = [int(v) for v in spec.input_size]
        spec.crop_fraction = float(spec.crop_fraction)
        for name in ("scale", "offset"):
            v = getattr(spec, name)
            if isinstance(v, list):
                if len(v) != spec.channels:
                    raise PreprocessingError(
                        f"{source}: field {name!r} has {len(v)} values for a {spec.channels}-"
                        f"channel input. Received: {v!r}")
                v = [float(x) for x in v]
                v = v[0] if len(set(v)) == 1 else v  # one value: the plain form
            else:
                v = float(v)
            setattr(spec, name, v)
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
                try:
                    with open(c, encoding="utf-8") as f:
                        data = json.load(f)
                except (ValueError, UnicodeDecodeError) as e:
                    raise PreprocessingError(f"{c} is not valid JSON: {e}") from None
                return cls.from_dict(data, source=os.path.normpath(c))
        raise FileNotFoundError(f"no {FILENAME} found for {path} (looked at {candidates})")


def image_problem(path: str):
    """None if the image file decodes completely, else why not: the one rule training's
    pre-flight check and edge_eval's reader both apply. Every pixel is decoded (a header
    check passes a truncated file that training would then die on), a truncated file is an
    error rather than grey padding, and a JPEG must end with its end-of-image marker."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return f"cannot read: {e.strerror or e}"
    return image_bytes_problem(data)


def image_bytes_problem(data: bytes):
    """``image_problem`` for an encoded image in memory (a TFRecord's ``image/encoded``)."""
    if not data:
        return "empty file"
    if data[:2] == b"\xff\xd8" and not data.rstrip(b"\0").endswith(b"\xff\xd9"):
        return "truncated JPEG (no end-of-image marker)"
    try:
        import io

        from PIL import Image, ImageFile

        ImageFile.LOAD_TRUNCATED_IMAGES = False
        with Image.open(io.BytesIO(data)) as im:
            # a JPEG at an eighth of its size: every scan is still entropy-decoded (what finds
            # a truncated or garbled file), only the inverse DCT is smaller - 4x faster
            if im.format == "JPEG":
                im.draft(im.mode, (max(im.width // 8, 1), max(im.height // 8, 1)))
            im.load()
    except ImportError:  # a board without Pillow: OpenCV decodes the whole image or fails
        import cv2
        import numpy as np

        if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) is None:
            return "cannot be decoded"
    except Exception as e:  # noqa: BLE001 - any decoder failure means a corrupt file
        return f"cannot be decoded ({type(e).__name__}: {str(e)[:120]})"
    if data[:2] == b"\xff\xd8":
        return _jpeg_warnings(data)
    return None


_STDERR_LOCK = threading.Lock()
# what libjpeg says of a damaged scan it still decodes (garbled bytes, a lost marker)
_LIBJPEG_CORRUPT = ("Corrupt JPEG data", "Premature end of JPEG", "Invalid JPEG", "Bogus ")


def _jpeg_warnings(data: bytes):
    """libjpeg decodes a garbled JPEG to a picture with garbage in it and only warns, on file
    descriptor 2 ("Corrupt JPEG data: 62 extraneous bytes before marker 0xd9"); Pillow and
    TensorFlow do not report it at all. Decodes with OpenCV's libjpeg while fd 2 goes to a
    temporary file, and turns such a warning into the problem; any other text written there
    meanwhile is passed on to stderr."""
    try:
        import cv2
        import numpy as np
    except ImportError:
        return None
    import tempfile

    with _STDERR_LOCK, tempfile.TemporaryFile() as cap:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(cap.fileno(), 2)
            try:
                # at an eighth of the size: the same scans and markers are read, so the same
                # warnings come, for a quarter of the time
                cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_COLOR_8)
            finally:
                os.dup2(saved, 2)
        finally:
            os.close(saved)
        cap.seek(0)
        text = cap.read().decode("utf-8", "replace")
    said = [line for line in text.splitlines() if line.strip()]
    bad = [line for line in said if line.startswith(_LIBJPEG_CORRUPT)]
    rest = [line for line in said if line not in bad]
    if rest:
        sys.stderr.write("\n".join(rest) + "\n")
    return f"corrupt JPEG data (libjpeg: {bad[0].strip()[:120]})" if bad else None


# preprocessing conventions by name (``python -m convert --preprocessing NAME``): what a model
# trained elsewhere expects, so its user need not write preprocessing.json by hand
NAMED = {
    # Inception / TF-slim / keras.applications.inception_v3.preprocess_input: [-1, 1]
    "inception": dict(scale=1.0 / 127.5, offset=-1.0, crop_fraction=0.875, color_order="RGB"),
    # pixels scaled to [0, 1] (many Keras and TF Hub models)
    "unit": dict(scale=1.0 / 255.0, offset=0.0, crop_fraction=0.875, color_order="RGB"),
    # keras.applications' "caffe" mode (ResNet50, VGG): BGR, ImageNet's BGR means subtracted
    "caffe": dict(scale=1.0, offset=[-103.939, -116.779, -123.68], crop_fraction=0.875,
                  color_order="BGR"),
    # "torch" mode (torchvision, DenseNet): RGB / 255, ImageNet's mean and std per channel
    "torch": dict(scale=[1.0 / (255 * s) for s in (0.229, 0.224, 0.225)],
                  offset=[-m / s for m, s in zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))],
                  crop_fraction=0.875, color_order="RGB"),
}
def named_spec(name: str, input_size, channels: int = 3, **overrides) -> "PreprocessingSpec":
    """The spec of a named convention for a model of ``input_size`` [h, w], with overrides
    (crop_fraction, scale, offset, color_order...), validated like a preprocessing.json."""
    if name not in NAMED:
        raise PreprocessingError(f"unknown --preprocessing {name!r}: choose from "
                                 f"{sorted(NAMED)} (or give --scale and --offset)")
    d = PreprocessingSpec().to_dict()
    d.update(NAMED[name], input_size=[int(v) for v in input_size], channels=channels)
    d.update({k: v for k, v in overrides.items() if v is not None})
    for k in ("mean", "std", "input_range", "schema_version"):
        d.pop(k, None)
    return PreprocessingSpec.from_dict(d, source=f"--preprocessing {name}")


LABELS_FILENAME = "labels.txt"


def parse_labels(text: str) -> List[str]:
    """labels.txt's one rule, shared with the Android core (``Labels.parse``): one class name per
    line in output order, surrounding whitespace stripped, blank lines skipped."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_labels(path: str) -> List[str]:
    """The labels of a labels.txt (UTF-8, a BOM allowed); ValueError naming the file if it is
    not UTF-8 text."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            return parse_labels(f.read())
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text (byte {e.start}: {e.reason}): save it as "
                         "UTF-8") from None


def central_crop_box(height: int, width: int, fraction: float):
    """Integer (top, left, crop_h, crop_w) of the central crop, as ``tf.image.central_crop``."""
    if fraction >= 1.0:
        return 0, 0, height, width
    top = int((height - height * fraction) / 2)
    left = int((width - width * fraction) / 2)
    return top, left, height - 2 * top, width - 2 * left
