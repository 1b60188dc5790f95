"""Golden vectors for android_demo/core: what the Python pipeline feeds a model for a few images.

    python tests/golden_vectors.py            # rewrites android_demo/core/src/test/resources/golden.json

For each case: the image's RGB bytes, its ``preprocessing.json`` spec, the float model input
``edge_eval.preprocess.central`` makes of it (itself checked against train/'s TensorFlow
pipeline), and that input quantized for an int8- and a uint8-input model with
``contract.litert.quantize`` (the harness's own conversion) at the input quantization our
converter gives a [-1, 1] input (scale 2/255; zero point -1 for int8, 127 for uint8). The file is
committed, so ``mvn -o test`` in android_demo/core runs on a fresh clone; tests/test_android_core.py
checks that the pipeline still makes exactly these vectors, then runs the Java tests on them.
The images are made here (seeded), so the file does not depend on any data set.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATH = os.path.join(ROOT, "android_demo", "core", "src", "test", "resources", "golden.json")
# (dtype, scale, zero point) of the two integer-input recipes for a [-1, 1] input
QUANTIZATION = (("int8", 2 / 255, -1), ("uint8", 2 / 255, 127))
FLOAT_DIGITS = 7


def _images():
    rng = np.random.default_rng(0)
    # a grey garment-like image, as Fashion-MNIST's: a bright blob on black, 28 x 28
    yy, xx = np.mgrid[:28, :28]
    grey = np.clip(255 * np.exp(-((yy - 14) ** 2 / 60 + (xx - 12) ** 2 / 25)), 0, 255)
    grey = (grey + rng.integers(0, 20, grey.shape)).clip(0, 255).astype(np.uint8)[..., None]
    stripes = np.zeros((28, 28, 1), np.uint8)
    stripes[::3] = 255
    colour = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
    colour[:, :, 0] = np.linspace(0, 255, 52, dtype=np.uint8)  # channel order matters
    big = rng.integers(0, 256, (80, 64, 3), dtype=np.uint8)
    return grey, stripes, colour, big


def cases() -> list:
    sys.path.insert(0, ROOT)
    from contract.litert import quantize
    from edge_eval import preprocess
    from contract.preprocessing import PreprocessingSpec, named_spec

    import cv2

    grey, stripes, colour, big = _images()
    # small inputs keep the file small; the arithmetic is the same at 299 px
    demo = PreprocessingSpec(input_size=[40, 40], crop_fraction=1.0, source_channels=1)
    # (name, the image the app has, what the Python side decodes of it, spec): a grey-trained
    # model reads a colour photo as grey (OpenCV's RGB -> grey), a BGR model gets BGR
    table = [("grey_enlarge", grey, grey, demo),
             ("grey_stripes", stripes, stripes, PreprocessingSpec(
                 input_size=[33, 33], crop_fraction=1.0, source_channels=1)),
             ("colour_enlarge_crop", colour, colour, PreprocessingSpec(input_size=[48, 48])),
             ("colour_shrink_crop", big, big, PreprocessingSpec(input_size=[40, 40])),
             ("colour_to_grey", colour, cv2.cvtColor(colour, cv2.COLOR_RGB2GRAY)[..., None],
              PreprocessingSpec(input_size=[36, 36], source_channels=1)),
             ("colour_bgr", colour, colour, PreprocessingSpec(input_size=[48, 48],
                                                              color_order="BGR")),
             # per-channel normalisation, as models trained elsewhere take it
             ("colour_caffe", colour, colour, named_spec("caffe", [44, 44])),
             ("colour_torch", big, big, named_spec("torch", [40, 40]))]
    out = []
    for name, img, decoded, spec in table:
        f = np.round(preprocess.central(decoded, spec), FLOAT_DIGITS).astype(np.float32)
        rgb = np.repeat(img, 3, axis=-1) if img.shape[-1] == 1 else img
        quant = [{"dtype": dt, "scale": scale, "zero_point": zp,
                  "values": quantize(f, scale, zp, dt).astype(int).ravel().tolist()}
                 for dt, scale, zp in QUANTIZATION]
        out.append({"name": name, "height": int(img.shape[0]), "width": int(img.shape[1]),
                    "rgb": rgb.astype(int).ravel().tolist(), "spec": spec.to_dict(),
                    "float": [round(float(v), FLOAT_DIGITS) for v in f.ravel()], "quantized": quant})
    return out


def write(path: str = PATH) -> str:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"made_by": "tests/golden_vectors.py", "cases": cases()}, f,
                  separators=(",", ":"))
        f.write("\n")
    os.replace(tmp, path)
    return path


if __name__ == "__main__":
    print(write())
