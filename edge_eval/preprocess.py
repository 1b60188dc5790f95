"""Evaluation preprocessing with numpy + OpenCV, no TensorFlow (run side: works on a board).

Implements the contract of ``contract/preprocessing.py`` exactly as ``train/data.py`` does with
TensorFlow: central crop of ``crop_fraction`` (the same integer box as ``tf.image.central_crop``),
bilinear resize with half-pixel centres and no antialiasing (OpenCV's ``INTER_LINEAR`` on float32
equals ``tf.image.resize(..., 'bilinear')`` when enlarging, and to within a few 1e-4 when shrinking
by less than 2x), grey -> RGB after resizing, RGB -> BGR for a ``color_order`` BGR model, then
``x * scale + offset``. ``tests/test_edge_eval.py``
checks the two against each other.

Multi-crop evaluation (the paper's Table 4): ``10`` = 4 corners + centre, each also mirrored, of a
square ``input_size`` crop taken from the image resized so its shorter side is ``input_size /
crop_fraction``; ``144`` = GoogLeNet's scheme: 4 scales (shorter side 256, 288, 320 and 352 for a
224 input, scaled to the model's input), the left/centre/right (or top/centre/bottom) square of each,
and from each square the 4 corner crops, the centre crop and the whole square resized, each mirrored.
"""
from __future__ import annotations

import os
from typing import Iterable, List, Tuple

import numpy as np

from contract.predictions import image_id
from contract.preprocessing import PreprocessingSpec, central_crop_box, image_bytes_problem
from contract.tfrecord import ImageRecords, RecordError

try:  # OpenCV is the run side's only image library
    import cv2
except ImportError:  # pragma: no cover - reported when an image actually needs decoding
    cv2 = None

CROP_SCHEMES = (1, 10, 144)


class ImageError(ValueError):
    """An image file that cannot be decoded (the message names the file)."""


def _cv2():
    if cv2 is None:
        raise ImportError("OpenCV is needed to decode and resize images: "
                          "pip install opencv-python-headless")
    return cv2


def decode(path: str, channels: int = 3) -> np.ndarray:
    """An image file -> uint8 [H, W, channels] in RGB (or [H, W, 1] grey)."""
    if not os.path.isfile(path):
        raise ImageError(f"image not found: {path}")
    return decode_bytes(np.fromfile(path, np.uint8).tobytes(), path, channels)


def decode_bytes(data: bytes, name: str, channels: int = 3, checked: bool = False) -> np.ndarray:
    """Encoded JPEG/PNG bytes -> uint8 [H, W, channels] in RGB (or [H, W, 1] grey); ``name``
    says where they came from in the message of a corrupt one. ``checked``: the bytes passed
    ``check_bytes`` already (a streamed set's images, checked once before every worker reads
    them), so only the decode is left."""
    cv = _cv2()
    if not checked:
        check_bytes(data, name)
    img = cv.imdecode(np.frombuffer(data, np.uint8), cv.IMREAD_COLOR) if data else None
    if img is None:
        raise ImageError(f"cannot decode image {name} (corrupt or not a JPEG/PNG)")
    if channels == 1:
        # a colour image made grey as the app does it (BT.601 luma, OpenCV's fixed point:
        # android_demo/core Preprocessor.grey), not by the decoder: libpng's own RGB->grey
        # (IMREAD_GRAYSCALE) differs by a grey level, enough to flip near-tied answers between
        # the host and the phone. A grey file decodes to three equal channels and back exactly.
        return cv.cvtColor(img, cv.COLOR_BGR2GRAY)[..., None]
    return cv.cvtColor(img, cv.COLOR_BGR2RGB)


def check_bytes(data: bytes, name: str) -> None:
    """ImageError unless ``data`` is an image that ``decode_bytes`` decodes whole: the rule
    training's pre-flight check applies (contract.preprocessing.image_bytes_problem), and for a
    PNG, OpenCV's own decode (at an eighth of the size: the same bytes are read)."""
    problem = image_bytes_problem(data)
    if problem:
        raise ImageError(f"corrupt image {name}: {problem}")
    if data[:2] != b"\xff\xd8":  # a JPEG's was decoded by OpenCV in that check already
        cv = _cv2()
        if cv.imdecode(np.frombuffer(data, np.uint8), cv.IMREAD_REDUCED_COLOR_8) is None:
            raise ImageError(f"cannot decode image {name} (corrupt or not a JPEG/PNG)")


class Items:
    """The images of an evaluation set by position, readable in any process without
    TensorFlow: an in-memory uint8 array (``array``), image files (``files``) or TFRecord
    records (``records``, contract.tfrecord.ImageRecords). ``to_json`` hands them to a worker,
    which reads and crops each image itself (multi-crop evaluation streams, it stores nothing)."""

    def __init__(self, kind: str, array=None, labels=None, files=None, records=None,
                 checked: bool = False):
        self.kind, self.array, self.files, self.records = kind, array, files, records
        # every image passed ``check``: a worker decodes without checking each again
        self.checked = checked
        self.labels = None if labels is None else np.asarray(labels, np.int32)

    @classmethod
    def from_dataset(cls, ds) -> "Items":
        if ds.arrays is not None:
            return cls("array", array=ds.arrays[0], labels=ds.arrays[1])
        if ds.records is not None:
            return cls("records", records=ds.records)
        return cls("files", files=list(ds.files), labels=ds.labels)

    def __len__(self) -> int:
        return len(self.array if self.kind == "array" else
                   self.files if self.kind == "files" else self.records)

    def load(self, i: int, channels: int = 3):
        """(uint8 image [H, W, C], label); ImageError for an image that does not decode."""
        return self.load_identified(i, channels, identify=False)[:2]

    def load_identified(self, i: int, channels: int = 3, identify: bool = True):
        """(uint8 image, label, identity or None): files and records are read once for both
        the pixels and the identity (``identity``)."""
        if self.kind == "array":
            return (np.asarray(self.array[i]), int(self.labels[i]),
                    self.identity(i) if identify else None)
        data, label, where = self._stored(i)
        return (decode_bytes(data, where, channels, self.checked), label,
                image_id(data) if identify else None)

    def check(self, i: int, identify: bool = True):
        """(label, identity or None) of an image that decodes, ImageError otherwise: what
        ``load_identified`` settles, without keeping the pixels (a streamed set's one pass)."""
        if self.kind == "array":
            return int(self.labels[i]), self.identity(i) if identify else None
        data, label, where = self._stored(i)
        check_bytes(data, where)
        return label, image_id(data) if identify else None

    def _stored(self, i: int):
        """(encoded bytes, label, where, for messages) of a file or record image."""
        if self.kind == "files":
            path = self.files[i]
            if not os.path.isfile(path):
                raise ImageError(f"image not found: {path}")
            return np.fromfile(path, np.uint8).tobytes(), int(self.labels[i]), path
        try:
            data, label = self.records.item(i)
        except RecordError as e:
            raise ImageError(str(e)) from None
        return data, label, self.records.where(i)

    def encoded(self, i: int) -> Tuple[bytes, str]:
        """(the image's encoded bytes, their file extension): the file, the TFRecord payload, or
        for in-memory pixels their canonical PNG (OpenCV, compression 1). What is pushed to a
        phone, and what its identity (``identity``) is taken from."""
        if self.kind == "files":
            return self._stored(i)[0], os.path.splitext(self.files[i])[1].lower() or ".img"
        if self.kind == "records":
            data = self._stored(i)[0]
            return data, ".jpg" if data[:2] == b"\xff\xd8" else ".png"
        cv2 = _cv2()
        im = np.asarray(self.array[i])
        im = im if im.ndim == 2 or im.shape[-1] == 1 else cv2.cvtColor(im, cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".png", im, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise ImageError(f"image {i} of the set cannot be encoded as PNG")
        return buf.tobytes(), ".png"

    def identity(self, i: int) -> str:
        """The image's identity in prediction records (contract.predictions.image_id)."""
        return image_id(self.encoded(i)[0])

    def subset(self, keep) -> "Items":
        keep = list(keep)
        if self.kind == "records":
            return Items("records", records=self.records.subset(keep), checked=self.checked)
        lab = self.labels[keep]
        if self.kind == "array":
            return Items("array", array=self.array[keep], labels=lab)
        return Items("files", files=[self.files[i] for i in keep], labels=lab,
                     checked=self.checked)

    def to_json(self, array_path: str) -> dict:
        """What a worker needs to read these images; an ``array`` set's pixels are saved to
        ``array_path`` (atomically) for it."""
        if self.kind == "array":
            tmp = f"{array_path}.tmp-{os.getpid()}.npy"
            np.save(tmp, np.ascontiguousarray(self.array))
            os.replace(tmp, array_path)
            return {"kind": "array", "path": array_path, "labels": self.labels.tolist()}
        checked = {"checked": True} if self.checked else {}
        if self.kind == "files":
            return {"kind": "files", "files": self.files, "labels": self.labels.tolist(),
                    **checked}
        return {"kind": "records", **self.records.to_json(), **checked}

    @classmethod
    def from_json(cls, d: dict) -> "Items":
        if d["kind"] == "array":
            return cls("array", array=np.load(d["path"], mmap_mode="r"), labels=d["labels"])
        checked = d.get("checked") is True
        if d["kind"] == "files":
            return cls("files", files=d["files"], labels=d["labels"], checked=checked)
        return cls("records", records=ImageRecords.from_json(
            {k: v for k, v in d.items() if k != "checked"}), checked=checked)


def resize(image: np.ndarray, size) -> np.ndarray:
    """uint8/float [H, W, C] -> float32 [h, w, C], bilinear, half-pixel centres, no antialias."""
    h, w = int(size[0]), int(size[1])
    x = image.astype(np.float32)
    if x.shape[0] == h and x.shape[1] == w:
        return x
    out = _cv2().resize(x, (w, h), interpolation=_cv2().INTER_LINEAR)
    return out.reshape(h, w, image.shape[-1])


def finish(image: np.ndarray, spec: PreprocessingSpec) -> np.ndarray:
    """Resized float image -> model input: grey to RGB, RGB to BGR for a BGR model, then scale
    and offset."""
    if image.shape[-1] == 1 and spec.channels == 3:
        image = np.repeat(image, 3, axis=-1)
    if spec.color_order == "BGR" and image.shape[-1] == 3:
        image = image[..., ::-1]
    c = image.shape[-1]
    scale = np.asarray(spec.scales[:c] if c == spec.channels else spec.scales[0], np.float32)
    offset = np.asarray(spec.offsets[:c] if c == spec.channels else spec.offsets[0], np.float32)
    return (image * scale + offset).astype(np.float32)


def central(image: np.ndarray, spec: PreprocessingSpec) -> np.ndarray:
    """The paper's single evaluation crop: uint8 [H, W, C] -> float32 [h, w, channels]."""
    top, left, ch, cw = central_crop_box(image.shape[0], image.shape[1], spec.crop_fraction)
    return finish(resize(image[top:top + ch, left:left + cw], spec.input_size), spec)


def _shorter_side_to(image: np.ndarray, side: int) -> np.ndarray:
    h, w = image.shape[:2]
    if h <= w:
        size = (side, max(side, int(round(w * side / h))))
    else:
        size = (max(side, int(round(h * side / w))), side)
    return resize(image, size)


def _five(square: np.ndarray, h: int, w: int) -> List[np.ndarray]:
    H, W = square.shape[:2]
    t, l = (H - h) // 2, (W - w) // 2
    return [square[:h, :w], square[:h, W - w:], square[H - h:, :w], square[H - h:, W - w:],
            square[t:t + h, l:l + w]]


def crops(image: np.ndarray, spec: PreprocessingSpec, scheme: int = 1) -> np.ndarray:
    """All crops of one image for ``scheme`` in CROP_SCHEMES -> float32 [n, h, w, channels]."""
    if scheme not in CROP_SCHEMES:
        raise ValueError(f"crop scheme must be one of {CROP_SCHEMES}. Received: {scheme}")
    h, w = spec.input_size
    if scheme == 1:
        return central(image, spec)[None]
    out: List[np.ndarray] = []
    if scheme == 10:
        big = _shorter_side_to(image, int(round(min(h, w) / spec.crop_fraction)))
        views = _five(big, h, w)
    else:
        views = []
        for s in (256, 288, 320, 352):
            big = _shorter_side_to(image, int(round(s * min(h, w) / 224)))
            H, W = big.shape[:2]
            side = min(H, W)
            if H <= W:
                squares = [big[:, :side], big[:, (W - side) // 2:(W - side) // 2 + side],
                           big[:, W - side:]]
            else:
                squares = [big[:side], big[(H - side) // 2:(H - side) // 2 + side], big[H - side:]]
            for sq in squares:
                views.extend(_five(sq, h, w))
                views.append(resize(sq, (h, w)))
    for v in views:
        out.append(finish(v, spec))
        out.append(finish(v[:, ::-1], spec))
    return np.stack(out)


def preprocess_batch(images: Iterable[np.ndarray], spec: PreprocessingSpec,
                     scheme: int = 1) -> np.ndarray:
    """uint8 images -> float32 [N * crops, h, w, c] (crops of one image are consecutive)."""
    return np.concatenate([crops(im, spec, scheme) for im in images], axis=0)
