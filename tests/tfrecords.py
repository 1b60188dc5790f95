"""ImageNet-layout TFRecord sets for tests, written with TensorFlow's own writer (so the
project's TF-free reader, contract/tfrecord.py, is checked against the real format)."""
from __future__ import annotations

import os

import numpy as np

SYNSETS = ("n01440764", "n01443537", "n01484850", "n01491361")
WORDS = ("tench, Tinca tinca", "goldfish, Carassius auratus", "great white shark",
         "tiger shark, Galeocerdo cuvieri")


def colour_image(rng, c: int, size=(48, 56)) -> np.ndarray:
    """A colour image a small network can tell apart: class ``c``'s dominant channel and stripe
    direction, with noise (RGB uint8)."""
    img = rng.integers(0, 60, (*size, 3)).astype(np.uint8)
    img[..., c % 3] = np.clip(img[..., c % 3] + 150, 0, 255)
    if c % 2:
        img[::4] = 255
    else:
        img[:, ::4] = 255
    return img


def write_set(folder, per_class=(8, 4), classes=4, shards=2, text=True, size=(48, 56),
              drop_encoded=False, seed=0) -> str:
    """``train-*`` and ``validation-*`` shards of JPEG Examples with labels 1..classes (ImageNet's
    1-based labels), synsets and words; returns the folder."""
    import cv2
    import tensorflow as tf

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)

    def feat(**kw):
        out = {}
        for k, v in kw.items():
            if isinstance(v, int):
                out[k] = tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))
            else:
                out[k] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))
        return out

    for split, n in zip(("train", "validation"), per_class):
        examples = []
        for c in range(classes):
            for _ in range(n):
                ok, jpg = cv2.imencode(".jpg", colour_image(rng, c, size)[..., ::-1])
                fields = {"image/class/label": c + 1, "image/format": b"JPEG"}
                if not drop_encoded:
                    fields["image/encoded"] = jpg.tobytes()
                if text:
                    fields["image/class/synset"] = SYNSETS[c % 4].encode()
                    fields["image/class/text"] = WORDS[c % 4].encode()
                examples.append(tf.train.Example(features=tf.train.Features(
                    feature=feat(**fields))).SerializeToString())
        order = rng.permutation(len(examples))  # classes interleaved, as ImageNet's shards are
        for s in range(shards):
            path = os.path.join(folder, f"{split}-{s:05d}-of-{shards:05d}")
            with tf.io.TFRecordWriter(path) as w:
                for i in order[s::shards]:
                    w.write(examples[i])
    return str(folder)
