"""Evaluation preprocessing with numpy + OpenCV, no TensorFlow (run side: works on a board).

Implements the contract of ``train/preprocessing.py`` exactly as ``train/data.py`` does with
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
from typing import Iterable, List

import numpy as np

from train.preprocessing import PreprocessingSpec, central_crop_box, image_problem

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
    cv = _cv2()
    data = np.fromfile(path, np.uint8) if os.path.isfile(path) else None
    if data is None:
        raise ImageError(f"image not found: {path}")
    problem = image_problem(path)  # the rule training's pre-flight check applies
    if problem:
        raise ImageError(f"corrupt image {path}: {problem}")
    flag = cv.IMREAD_GRAYSCALE if channels == 1 else cv.IMREAD_COLOR
    img = cv.imdecode(data, flag) if data.size else None
    if img is None:
        raise ImageError(f"cannot decode image {path} (corrupt or not a JPEG/PNG)")
    if channels == 1:
        return img[..., None]
    return cv.cvtColor(img, cv.COLOR_BGR2RGB)


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
    return (image * np.float32(spec.scale) + np.float32(spec.offset)).astype(np.float32)


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
