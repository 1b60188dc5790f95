"""tf.data input pipelines with the paper's Inception preprocessing.

Sources (``DataConfig.source``):

* ``fashion_mnist`` -- the IDX files (Debian package ``dataset-fashion-mnist``, a path, or Keras'
  downloader when ``download=True``); the embedded default. Kept in memory as uint8 and
  preprocessed a batch at a time (one vectorised crop-and-resize per batch).
* ``image_folder`` -- ``root/<class>/<image>.{jpg,png}``; classes are the sorted folder names.
* ``imagenet`` -- ILSVRC2012 TFRecords in the standard layout (``train-*``, ``validation-*``
  shards with ``image/encoded`` and ``image/class/label`` in 1..1000; ``data.num_classes`` for a
  set of another size). Records are indexed and read by ``contract/tfrecord.py`` (no TensorFlow),
  so seeded samples (calibration, checks, evaluation) read only the records they draw. Class
  names: ``labels.txt`` in the data folder (one per label), else the standard
  ``imagenet_lsvrc_2015_synsets.txt`` + ``imagenet_metadata.txt`` pair, else the records' own
  ``image/class/text``, else the label numbers.

Training: random distorted crop (area and aspect-ratio ranges) + horizontal flip, resized to the
input size. Evaluation: central crop of ``crop_fraction`` then bilinear resize. Both scale pixels to
[-1, 1] as the model's ``preprocessing.json`` says. Maps run in parallel and batches are prefetched.
"""
from __future__ import annotations

import dataclasses
import enum
import gzip
import os
import struct
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from train import keras_env  # noqa: F401
from contract.preprocessing import PreprocessingSpec, central_crop_box, read_labels
from contract.tfrecord import glob_files

FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class Source(str, enum.Enum):
    FASHION_MNIST = "fashion_mnist"
    IMAGE_FOLDER = "image_folder"
    IMAGENET = "imagenet"


class ColorDistortion(str, enum.Enum):
    OFF = "off"
    FAST = "fast"  # slim's fast_mode: brightness, saturation
    FULL = "full"  # then hue and contrast


class DataError(ValueError):
    """Bad or missing data; the message says what was found and how to fix it."""


@dataclasses.dataclass
class DataConfig:
    source: Source = Source.FASHION_MNIST
    path: Optional[str] = None  # folder of the data; None: the source's default location
    download: bool = False  # fashion_mnist only: allow Keras' downloader when no local copy
    max_train_examples: Optional[int] = None  # a prefix of the training split (tests, demos)
    max_eval_examples: Optional[int] = None
    area_range: Tuple[float, float] = (0.05, 1.0)  # random distorted crop (paper / TF-slim)
    aspect_range: Tuple[float, float] = (0.75, 1.333)
    flip: bool = True
    # slim's Inception colour distortion on training photos (image_folder, imagenet): "fast"
    # (slim's default, fast_mode): random brightness (32/255) then saturation (0.5-1.5); "full":
    # then hue (0.2) and contrast (0.5-1.5), in that one order (slim also draws among 4 orders)
    color_distortion: ColorDistortion = ColorDistortion.OFF
    crop_fraction: float = 0.875  # evaluation central crop (the paper's); 1.0 keeps the whole image
    shuffle_buffer: int = 10000
    # None: training batches may come out of order (parallel preprocessing, faster), evaluation
    # in order; True: always in order, so a seeded run repeats exactly
    deterministic: Optional[bool] = None
    label_offset: int = 1  # imagenet: TFRecord labels are 1..1000 (0 is background)
    # the held-out split (calibration, the recipe choice): a folder in the source's layout
    holdout_path: Optional[str] = None
    # a flat image folder (class folders only, no train/ test/): the (test, holdout) fractions
    # of each class set aside, by a permutation seeded with split_seed, so training never sees
    # the images that are evaluated (the split is in the run's config.json, so every later
    # stage draws the same one)
    flat_split: Tuple[float, float] = (0.2, 0.1)
    split_seed: int = 0
    num_classes: int = 1000  # imagenet: the labels in the records (after label_offset)

    def __post_init__(self):
        self.source = Source(self.source)
        try:
            self.color_distortion = ColorDistortion(self.color_distortion)
        except ValueError:
            raise ValueError(f"data.color_distortion must be one of "
                             f"{[m.value for m in ColorDistortion]}. Received: "
                             f"{self.color_distortion!r}") from None
        self.area_range = tuple(self.area_range)
        self.aspect_range = tuple(self.aspect_range)
        self.flat_split = tuple(float(v) for v in self.flat_split)
        if len(self.flat_split) != 2 or min(self.flat_split) < 0 or sum(self.flat_split) >= 0.9:
            raise ValueError("data.flat_split is (test, holdout) fractions, each >= 0, summing "
                             f"to under 0.9. Received: {self.flat_split}")


# --------------------------------------------------------------------------------------------
# Fashion-MNIST IDX files (no TensorFlow needed)
# --------------------------------------------------------------------------------------------
def _read_idx(path: str) -> np.ndarray:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        raise DataError(f"{path} is not an IDX file (too short)")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DataError(f"{path} is not a uint8 IDX file (magic {data[:4].hex()})")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise DataError(f"{path} is truncated: header says {shape}, found {arr.size} values")
    return arr.reshape(shape)


def _find_idx(directory: str, stem: str) -> Optional[str]:
    for name in (stem, stem + ".gz"):
        p = os.path.join(directory, name)
        if os.path.isfile(p):
            return p
    return None


def fashion_mnist_dir(path: Optional[str] = None) -> Optional[str]:
    candidates = [path] if path else [os.environ.get("FASHION_MNIST_DIR"), *FASHION_MNIST_DIRS]
    for d in filter(None, candidates):
        if _find_idx(d, "train-images-idx3-ubyte") and _find_idx(d, "t10k-images-idx3-ubyte"):
            return d
    return None


def load_fashion_mnist(split: str, path: Optional[str] = None, download: bool = False
                       ) -> Tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28, 1], labels int32 [N]) of ``split`` ('train' or 'test')."""
    d = fashion_mnist_dir(path)
    if d is None:
        looked = [path] if path else [os.environ.get("FASHION_MNIST_DIR") or "$FASHION_MNIST_DIR",
                                      *FASHION_MNIST_DIRS]
        if download:
            import tf_keras

            (xtr, ytr), (xte, yte) = tf_keras.datasets.fashion_mnist.load_data()
            x, y = (xtr, ytr) if split == "train" else (xte, yte)
            return x[..., None], y.astype(np.int32)
        raise DataError(
            "Fashion-MNIST not found (looked in: " + ", ".join(looked) + "). Install it with "
            "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu), point data.path or "
            "$FASHION_MNIST_DIR at a folder with the four IDX files, or set data.download=true.")
    stem = {"train": "train", "test": "t10k", "validation": "t10k"}[split]
    x = _read_idx(_find_idx(d, f"{stem}-images-idx3-ubyte"))
    y = _read_idx(_find_idx(d, f"{stem}-labels-idx1-ubyte")).astype(np.int32)
    if len(x) != len(y):
        raise DataError(f"Fashion-MNIST {split}: {len(x)} images but {len(y)} labels in {d}")
    return x[..., None], y


# --------------------------------------------------------------------------------------------
# image folders
# --------------------------------------------------------------------------------------------
def scan_image_folder(root: str, verify: bool = True) -> Tuple[List[str], List[int], List[str]]:
    """(files, labels, class_names) of ``root/<class>/*``; a corrupt image is named."""
    if not os.path.isdir(root):
        raise DataError(f"image folder not found: {root}")
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not classes:
        raise DataError(f"{root} has no class sub-folders (expected {root}/<class>/<image>.jpg)")
    files, labels = [], []
    for i, c in enumerate(classes):
        for name in sorted(os.listdir(os.path.join(root, c))):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                files.append(os.path.join(root, c, name))
                labels.append(i)
    if not files:
        raise DataError(f"{root}: no {'/'.join(IMAGE_EXTENSIONS)} images in {classes}")
    if verify:  # every image decoded in full before training starts; every bad one named
        from contract.preprocessing import image_problem

        bad = [(f, why) for f in files for why in [image_problem(f)] if why]
        if bad:
            shown = "\n  ".join(f"{f}: {why}" for f, why in bad[:10])
            more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
            raise DataError(f"{len(bad)} corrupt or unreadable image(s) in {root}:\n  {shown}"
                            f"{more}\nremove or replace them")
    return files, labels, classes


def image_folder_split(path: str, split: str) -> str:
    """The folder of ``split`` (train | test) in a split layout (``train/`` beside ``test/``,
    ``validation/`` or ``val/``); ``path`` itself for a flat folder (class folders only: see
    ``flat_split``). A ``train/`` with nothing to test on is refused: evaluating on the
    training images would be silent."""
    if not os.path.isdir(os.path.join(path, "train")):
        return path
    names = ("train",) if split == "train" else ("test", "validation", "val")
    for name in names:
        if os.path.isdir(os.path.join(path, name)):
            return os.path.join(path, name)
    raise DataError(f"{path} has train/ but no test/, validation/ or val/ folder to evaluate "
                    "on: add one, or give a flat folder of class folders (then a seeded, "
                    "stratified part of each class is set aside for testing)")


def is_flat_folder(path: str) -> bool:
    return not os.path.isdir(os.path.join(path, "train"))


def flat_split(labels: Sequence[int], fractions: Tuple[float, float], seed: int
               ) -> Dict[str, np.ndarray]:
    """Indices of each split of a flat folder: per class, a permutation seeded by (seed, class)
    gives ``round(n * test)`` test images, then ``round(n * holdout)`` held-out ones (each at
    least one when the class has three or more images), the rest train. Stratified and
    deterministic: adding images to one class leaves the other classes' splits as they were."""
    labels = np.asarray(labels)
    out = {"train": [], "test": [], "holdout": []}
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        perm = np.random.default_rng([seed, int(c)]).permutation(idx)
        n = len(perm)
        n_test = max(int(round(n * fractions[0])), 1 if n >= 3 and fractions[0] else 0)
        n_hold = max(int(round(n * fractions[1])), 1 if n >= 3 and fractions[1] else 0)
        out["test"] += list(perm[:n_test])
        out["holdout"] += list(perm[n_test:n_test + n_hold])
        out["train"] += list(perm[n_test + n_hold:])
    return {k: np.sort(np.asarray(v, np.int64)) for k, v in out.items()}


# --------------------------------------------------------------------------------------------
# the dataset facade
# --------------------------------------------------------------------------------------------
SPLITS = ("train", "test", "validation", "holdout")


def _label_names_file(folder: str, num_classes: int) -> Optional[List[str]]:
    """Class names from files beside ImageNet's shards: ``labels.txt`` (one per label), or the
    standard ``imagenet_lsvrc_2015_synsets.txt`` (synsets in label order) with
    ``imagenet_metadata.txt`` (``synset<TAB>words``)."""
    path = os.path.join(folder, "labels.txt")
    if os.path.isfile(path):
        names = read_labels(path)
        if len(names) != num_classes:
            raise DataError(f"{path} has {len(names)} names but the records have {num_classes} "
                            "classes (data.num_classes)")
        return names
    syn, meta = (os.path.join(folder, n) for n in ("imagenet_lsvrc_2015_synsets.txt",
                                                   "imagenet_metadata.txt"))
    if os.path.isfile(syn):
        synsets = read_labels(syn)
        words = {}
        if os.path.isfile(meta):
            for line in read_labels(meta):
                key, _, text = line.partition("\t")
                words[key.strip()] = text.strip()
        if len(synsets) != num_classes:
            raise DataError(f"{syn} lists {len(synsets)} synsets but the records have "
                            f"{num_classes} classes (data.num_classes)")
        return [words.get(s, s) for s in synsets]
    return None


def _shards(folder: str, prefix: Optional[str]) -> List[str]:
    """The shards in ``folder`` (a local folder, or a gs:// ... URL TensorFlow reads)."""
    pattern = f"{prefix}-*" if prefix else "*"
    return [f for f in glob_files(folder.rstrip("/") + "/" + pattern)
            if not os.path.basename(f).startswith(".") and not f.endswith(".txt")]


class Dataset:
    """One split of a source: its class names, size, and tf.data pipelines.

    Splits: ``train``; ``test`` (what reports quote: Fashion-MNIST's t10k, the folder's
    ``test/``, ImageNet's ``validation-*``; ``validation`` is the same); ``holdout`` (what
    calibration and the recipe choice use, never the test split): ``data.holdout_path`` when
    given, else an image folder's ``validation/`` (or ``val/``), else the training images after
    the ``max_train_examples`` that training used, else the training split itself. ``note`` says
    which it is. ``verify=False``: an image folder's files are not decoded up front (the
    evaluation reader skips a corrupt one and says so)."""

    def __init__(self, cfg: DataConfig, split: str, verify: bool = True):
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}: one of {list(SPLITS)}")
        split = "test" if split == "validation" else split
        self.cfg, self.split = cfg, split
        limit = cfg.max_train_examples if split == "train" else cfg.max_eval_examples
        held = split == "holdout"
        if held:
            limit = None
        self.arrays = None
        self.files: Sequence[str] = ()
        self.records = None  # imagenet: contract.tfrecord.ImageRecords
        self._sampled = False
        self._names = None
        self.note = {"train": "the training split", "holdout": None}.get(split, "the test split")
        if cfg.source is Source.FASHION_MNIST:
            x, y = load_fashion_mnist("train" if held else split, cfg.path, cfg.download)
            if held:
                x, y = self._after_training(x, y)
            self.arrays = (x[:limit], y[:limit])
            self._names = list(FASHION_MNIST_CLASSES)
            self.num_examples = len(self.arrays[1])
            self.source_channels = 1
        elif cfg.source is Source.IMAGE_FOLDER:
            if not cfg.path:
                raise DataError("data.path must name the image folder for source=image_folder")
            if is_flat_folder(cfg.path) and not (held and cfg.holdout_path):
                files, labels, self._names = scan_image_folder(cfg.path, verify)
                keep = flat_split(labels, cfg.flat_split, cfg.split_seed)[split]
                files, labels = [files[i] for i in keep], [labels[i] for i in keep]
                frac = {"train": 1 - sum(cfg.flat_split), "test": cfg.flat_split[0],
                        "holdout": cfg.flat_split[1]}[split]
                self.note = (f"a seeded, stratified {100 * frac:.0f} % of each class of the "
                             f"flat folder (data.flat_split={list(cfg.flat_split)}, "
                             f"data.split_seed={cfg.split_seed}; never trained on)"
                             if split != "train" else self.note)
            else:
                root = self._holdout_folder() if held else image_folder_split(cfg.path, split)
                files, labels, self._names = scan_image_folder(root, verify)
                if held and self.note is None:
                    files, labels = self._after_training(files, labels)
            self.files, self.labels = files[:limit], np.asarray(labels[:limit], np.int32)
            self.num_examples = len(self.files)
            self.source_channels = 3
        else:
            if not cfg.path:
                raise DataError("data.path must name the TFRecord folder for source=imagenet")
            from contract import tfrecord

            if held and cfg.holdout_path:
                folder, shards = cfg.holdout_path, _shards(cfg.holdout_path, None)
                self.note = f"the held-out records in {cfg.holdout_path}"
            else:
                prefix = "validation" if split == "test" else "train"
                folder, shards = cfg.path, _shards(cfg.path, prefix)
                if held:
                    self.note = "the training split (trained on: no held-out records named)"
            if not shards:
                raise DataError(f"no TFRecord shards in {folder} (ImageNet layout: train-*, "
                                "validation-*)")
            self.files = shards
            try:
                self.records = tfrecord.ImageRecords(shards, cfg.label_offset)
                self.records.check_keys()
            except tfrecord.RecordError as e:
                raise DataError(str(e)) from None
            self.num_examples = min(limit, len(self.records)) if limit else len(self.records)
            self.source_channels = 3
            self._names_folder = cfg.path

    def _after_training(self, items, labels):
        """The training split's items that training did not use (after its prefix), or all
        of them (noted as trained on) when it used the whole split."""
        n = self.cfg.max_train_examples
        if n and n < len(labels):
            self.note = f"training-split images {n}..{len(labels) - 1} (not trained on)"
            return items[n:], labels[n:]
        self.note = "the training split (trained on: no held-out images)"
        return items, labels

    def _holdout_folder(self) -> str:
        if self.cfg.holdout_path:
            self.note = f"the held-out folder {self.cfg.holdout_path}"
            return self.cfg.holdout_path
        test = image_folder_split(self.cfg.path, "test")
        for name in ("validation", "val"):
            sub = os.path.join(self.cfg.path, name)
            if os.path.isdir(sub) and sub != test:  # never the folder the reports test on
                self.note = f"the {name}/ folder"
                return sub
        return image_folder_split(self.cfg.path, "train")

    @property
    def class_names(self) -> List[str]:
        if self._names is None:  # imagenet, asked for the first time
            from contract import tfrecord

            n = self.cfg.num_classes
            self._names = _label_names_file(self._names_folder, n)
            if self._names is None:
                try:
                    self._names = tfrecord.class_names(self.records, n)
                except tfrecord.RecordError as e:
                    raise DataError(str(e)) from None
            if self._names is None:
                self._names = [str(i) for i in range(n)]
        return self._names

    @class_names.setter
    def class_names(self, names: List[str]) -> None:
        self._names = list(names)

    @property
    def num_classes(self) -> int:
        return self.cfg.num_classes if self.records is not None else len(self.class_names)

    def check_labels(self, num_classes: int) -> None:
        if num_classes != self.num_classes:
            raise DataError(f"the model has {num_classes} classes but the {self.cfg.source.value}"
                            f" data has {self.num_classes} ({self.class_names[:5]}...)")
        if self.arrays is not None and len(self.arrays[1]):
            hi = int(self.arrays[1].max())
            if hi >= num_classes:
                raise DataError(f"label {hi} found, but the model has {num_classes} classes")

    def sample(self, n: int, seed: int) -> "Dataset":
        """A seeded random subset of ``n`` examples (all of them when ``n`` >= the size)."""
        import copy

        sub = copy.copy(self)
        total = self.num_examples
        idx = np.sort(np.random.RandomState(seed).permutation(total)[:n])
        if self.arrays is not None:
            sub.arrays = (self.arrays[0][idx], self.arrays[1][idx])
        elif self.records is not None:
            sub.records = self.records.subset(idx)
            sub._sampled = True
        else:
            sub.files = [self.files[i] for i in idx]
            sub.labels = self.labels[idx]
        sub.num_examples = len(idx)
        return sub

    def item(self, i: int):
        """(uint8 array [h, w, c] or encoded JPEG/PNG bytes, label) of example ``i``, read without
        TensorFlow (the run side's reader)."""
        if self.arrays is not None:
            return self.arrays[0][i], int(self.arrays[1][i])
        if self.records is not None:
            from contract import tfrecord

            try:
                return self.records.item(i)
            except tfrecord.RecordError as e:
                raise DataError(str(e)) from None
        with open(self.files[i], "rb") as f:
            return f.read(), int(self.labels[i])

    def images(self, spec: PreprocessingSpec, batch_size: int = 256) -> np.ndarray:
        """All images through the evaluation preprocessing, as one float32 array."""
        return np.concatenate([x.numpy() for x, _ in
                               self.pipeline(spec, batch_size, training=False)], axis=0)

    def labels_array(self) -> np.ndarray:
        if self.arrays is not None:
            return self.arrays[1]
        if self.records is not None:
            return np.asarray([self.item(i)[1] for i in range(self.num_examples)], np.int32)
        return np.asarray(self.labels)

    # --- pipelines ---------------------------------------------------------------------------
    def _ordered(self, training: bool) -> bool:
        return self.cfg.deterministic if self.cfg.deterministic is not None else not training

    def pipeline(self, spec: PreprocessingSpec, batch_size: int, training: bool,
                 seed: Optional[int] = None, repeat: bool = False, drop_remainder: bool = False):
        """(images float32 [B, H, W, 3] in the spec's range, labels int32 [B]) batches."""
        import tensorflow as tf

        autotune = tf.data.AUTOTUNE
        if self.arrays is not None:
            x, y = self.arrays
            ds = tf.data.Dataset.from_tensor_slices((x, y))
            if training:
                ds = ds.shuffle(min(self.cfg.shuffle_buffer, len(y)) or 1, seed=seed,
                                reshuffle_each_iteration=True)
            if repeat:
                ds = ds.repeat()
            ds = ds.batch(batch_size, drop_remainder=drop_remainder)
            aug = self.cfg if training else None
            ds = ds.enumerate().map(
                lambda i, b: (batch_preprocess(b[0], spec, aug, _element_seed(seed, i)), b[1]),
                num_parallel_calls=autotune, deterministic=self._ordered(training))
            return ds.prefetch(autotune)

        if self._sampled:  # a seeded sample of records: read here, only those records
            encoded, labels = zip(*(self.item(i) for i in range(self.num_examples))) \
                if self.num_examples else ((), ())
            ds = tf.data.Dataset.from_tensor_slices((list(encoded), np.asarray(labels, np.int32)))
            if training:
                ds = ds.shuffle(len(encoded) or 1, seed=seed, reshuffle_each_iteration=True)
        elif self.cfg.source is Source.IMAGE_FOLDER:
            ds = tf.data.Dataset.from_tensor_slices((list(self.files), self.labels))
            if training:
                ds = ds.shuffle(len(self.files), seed=seed, reshuffle_each_iteration=True)
            ds = ds.map(lambda f, lab: (tf.io.read_file(f), lab), num_parallel_calls=autotune)
        else:
            ds = tf.data.Dataset.from_tensor_slices(list(self.files))
            if training:
                ds = ds.shuffle(len(self.files), seed=seed)
            ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=8,
                               num_parallel_calls=autotune, deterministic=self._ordered(training))
            off = self.cfg.label_offset
            feats = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
                     "image/class/label": tf.io.FixedLenFeature([], tf.int64)}

            def parse(rec):
                p = tf.io.parse_single_example(rec, feats)
                return p["image/encoded"], tf.cast(p["image/class/label"], tf.int32) - off

            if training:
                ds = ds.shuffle(self.cfg.shuffle_buffer, seed=seed)
            ds = ds.map(parse, num_parallel_calls=autotune)
            limit = (self.cfg.max_train_examples if self.split == "train"
                     else self.cfg.max_eval_examples)
            if limit:
                ds = ds.take(limit)
        if repeat:
            ds = ds.repeat()
        aug = self.cfg if training else None
        ds = ds.enumerate().map(
            lambda i, b: (image_preprocess(b[0], spec, aug, _element_seed(seed, i)), b[1]),
            num_parallel_calls=autotune, deterministic=self._ordered(training))
        return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(autotune)


def _scale(images, spec: PreprocessingSpec):
    import tensorflow as tf

    images = tf.cast(images, tf.float32)
    if images.shape[-1] == 1 and spec.channels == 3:
        images = tf.repeat(images, 3, axis=-1)
    if spec.color_order == "BGR" and images.shape[-1] == 3:
        images = tf.reverse(images, axis=[-1])
    c = images.shape[-1]
    if c == spec.channels:  # one scale and offset per channel
        return images * tf.constant(spec.scales, tf.float32) + tf.constant(spec.offsets,
                                                                           tf.float32)
    return images * spec.scales[0] + spec.offsets[0]


def _element_seed(seed: Optional[int], index):
    """A stateless seed (seed, index) per batch or image: the augmentation of a seeded run is
    the same every time (stateful seeded random ops were not: two pipelines built with the same
    seed drew different crops), and differs from batch to batch and epoch to epoch."""
    if seed is None:
        return None
    import tensorflow as tf

    return tf.stack([tf.constant(seed, tf.int64), tf.cast(index, tf.int64)])


def _random_boxes(n, cfg: DataConfig, seed=None):
    """Normalised [y0, x0, y1, x1] boxes: area and aspect ratio drawn per image, flipped by
    swapping x0/x1 (crop_and_resize mirrors a box whose x1 < x0)."""
    import tensorflow as tf

    u = tf.random.uniform((n, 5), seed=seed) if seed is None or isinstance(seed, int) \
        else tf.random.stateless_uniform((n, 5), seed=seed)
    area = cfg.area_range[0] + u[:, 0] * (cfg.area_range[1] - cfg.area_range[0])
    lo, hi = np.log(cfg.aspect_range[0]), np.log(cfg.aspect_range[1])
    ratio = tf.exp(lo + u[:, 1] * (hi - lo))  # width / height
    h = tf.minimum(tf.sqrt(area / ratio), 1.0)
    w = tf.minimum(tf.sqrt(area * ratio), 1.0)
    y0 = u[:, 2] * (1.0 - h)
    x0 = u[:, 3] * (1.0 - w)
    y1, x1 = y0 + h, x0 + w
    if cfg.flip:
        flip = u[:, 4] < 0.5
        x0, x1 = tf.where(flip, x1, x0), tf.where(flip, x0, x1)
    return tf.stack([y0, x0, y1, x1], axis=1)


def batch_preprocess(images, spec: PreprocessingSpec, augment: Optional[DataConfig] = None,
                     seed=None):
    """A batch of same-sized uint8 images [B, h, w, c] -> model input [B, H, W, 3]."""
    import tensorflow as tf

    size = spec.input_size
    if augment is not None:
        n = tf.shape(images)[0]
        boxes = _random_boxes(n, augment, seed)
        out = tf.image.crop_and_resize(tf.cast(images, tf.float32), boxes,
                                       tf.range(n), size, method="bilinear")
        return _scale(out, spec)
    h, w = int(images.shape[1]), int(images.shape[2])
    top, left, ch, cw = central_crop_box(h, w, spec.crop_fraction)
    images = tf.cast(images[:, top:top + ch, left:left + cw], tf.float32)
    images = tf.image.resize(images, size, method=spec.resize_method)
    return _scale(images, spec)


def _distort_color(image, mode: str, seed, stateless: bool):
    """slim's ``distort_color`` (ordering 0) on a float [H, W, 3] image in [0, 255]: on [0, 1]
    values, brightness then saturation ("fast"), then hue and contrast ("full"), clipped."""
    import tensorflow as tf

    x = image / 255.0
    ops = [("brightness", dict(max_delta=32.0 / 255.0)),
           ("saturation", dict(lower=0.5, upper=1.5))]
    if mode == "full":
        ops += [("hue", dict(max_delta=0.2)), ("contrast", dict(lower=0.5, upper=1.5))]
    for i, (name, kw) in enumerate(ops):
        if stateless:
            x = getattr(tf.image, f"stateless_random_{name}")(x, seed=seed + 2 + i, **kw)
        else:
            x = getattr(tf.image, f"random_{name}")(
                x, seed=None if seed is None else seed + 2 + i, **kw)
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0


def image_preprocess(encoded, spec: PreprocessingSpec, augment: Optional[DataConfig] = None,
                     seed=None):
    """One encoded JPEG/PNG -> model input [H, W, 3] (the paper's Inception preprocessing)."""
    import tensorflow as tf

    # JPEG with the accurate integer DCT: TF's default (fast DCT) differs from libjpeg-turbo's
    # default -- OpenCV, Android's BitmapFactory -- by ~1 level per pixel; this matches them exactly
    image = tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(encoded, channels=3, expand_animations=False))
    image.set_shape([None, None, 3])
    if augment is not None:
        stateless = seed is not None and not isinstance(seed, int)
        sample = tf.image.stateless_sample_distorted_bounding_box if stateless else \
            tf.image.sample_distorted_bounding_box
        begin, size, _ = sample(
            tf.shape(image), tf.zeros([0, 0, 4], tf.float32), seed=seed,
            min_object_covered=0.1, aspect_ratio_range=augment.aspect_range,
            area_range=augment.area_range, max_attempts=100,
            use_image_if_no_bounding_boxes=True)
        image = tf.slice(image, begin, size)
        image = tf.image.resize(tf.cast(image, tf.float32), spec.input_size, method="bilinear")
        if augment.flip:
            image = (tf.image.stateless_random_flip_left_right(image, seed=seed + 1)
                     if stateless else tf.image.random_flip_left_right(image, seed=seed))
        if augment.color_distortion is not ColorDistortion.OFF:
            image = _distort_color(image, augment.color_distortion.value, seed, stateless)
        return _scale(image, spec)
    shape = tf.shape(image)
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    f = spec.crop_fraction
    top = tf.cast((h - h * f) / 2, tf.int32)
    left = tf.cast((w - w * f) / 2, tf.int32)
    image = image[top:shape[0] - top, left:shape[1] - left]
    image = tf.image.resize(tf.cast(image, tf.float32), spec.input_size,
                            method=spec.resize_method)
    return _scale(image, spec)
