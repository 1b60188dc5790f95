"""Input pipelines, the preprocessing contract, and the config layering."""
import json
import os

import numpy as np
import pytest

from conftest import needs_fmnist
from train.config import apply_overrides, resolve
from train.data import (DataConfig, DataError, Dataset, _read_idx, load_fashion_mnist,
                        scan_image_folder)
from contract.preprocessing import PreprocessingSpec, central_crop_box


@needs_fmnist
def test_fashion_mnist_idx_files():
    x, y = load_fashion_mnist("train")
    assert x.shape == (60000, 28, 28, 1) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [6000] * 10
    xt, yt = load_fashion_mnist("test")
    assert xt.shape == (10000, 28, 28, 1) and np.bincount(yt).tolist() == [1000] * 10


def test_missing_fashion_mnist_says_where_and_how(tmp_path):
    with pytest.raises(DataError, match=f"looked in: {tmp_path}.*apt-get install "
                                        "dataset-fashion-mnist"):
        load_fashion_mnist("train", str(tmp_path))


def test_truncated_idx_is_an_error(tmp_path):
    p = tmp_path / "x-idx3-ubyte"
    p.write_bytes(b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
                  + b"\x00" * 100)
    with pytest.raises(DataError, match="truncated"):
        _read_idx(str(p))


@needs_fmnist
def test_eval_preprocessing_matches_a_direct_computation():
    """Central crop + bilinear (half-pixel) resize + x/127.5-1, recomputed in numpy."""
    spec = PreprocessingSpec(input_size=[56, 56], source_channels=1, crop_fraction=0.875)
    ds = Dataset(DataConfig(max_eval_examples=8), "test")
    images, labels = next(iter(ds.pipeline(spec, 8, training=False)))
    images = images.numpy()
    assert images.shape == (8, 56, 56, 3) and labels.numpy().tolist() == ds.arrays[1].tolist()
    assert images.min() >= -1.0 and images.max() <= 1.0

    raw = ds.arrays[0][0, :, :, 0].astype(np.float64)
    top, left, h, w = central_crop_box(28, 28, 0.875)
    assert (top, left, h, w) == (1, 1, 26, 26)
    crop = raw[top:top + h, left:left + w]
    # bilinear with half-pixel centres, edge-clamped: exact for upsampling
    def axis_weights(n_in, n_out):
        c = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
        c = np.clip(c, 0, n_in - 1)
        lo = np.floor(c).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        f = c - lo
        m = np.zeros((n_out, n_in))
        m[np.arange(n_out), lo] += 1 - f
        m[np.arange(n_out), hi] += f
        return m
    ry, rx = axis_weights(h, 56), axis_weights(w, 56)
    want = ry @ crop @ rx.T / 127.5 - 1.0
    for c in range(3):
        np.testing.assert_allclose(images[0, :, :, c], want, atol=1e-4)


@needs_fmnist
def test_training_augmentation_is_seeded_and_in_range():
    spec = PreprocessingSpec(input_size=[75, 75], source_channels=1)
    # in order (deterministic=True): by default training batches may come out of order
    ds = Dataset(DataConfig(max_train_examples=64, deterministic=True), "train")
    a = next(iter(ds.pipeline(spec, 16, training=True, seed=3)))[0].numpy()
    b = next(iter(ds.pipeline(spec, 16, training=True, seed=3)))[0].numpy()
    np.testing.assert_array_equal(a, b)
    assert a.shape == (16, 75, 75, 3) and -1.0 <= a.min() and a.max() <= 1.0


def _write_folder(root, n_per_class=3, size=40):
    from PIL import Image

    rng = np.random.RandomState(0)
    for c in ("cat", "dog"):
        os.makedirs(root / c, exist_ok=True)
        for i in range(n_per_class):
            Image.fromarray(rng.randint(0, 255, (size, size + 8, 3), np.uint8)).save(
                root / c / f"{i}.{'png' if i % 2 else 'jpg'}")


def test_image_folder_pipeline(tmp_path):
    _write_folder(tmp_path)
    # a flat folder with nothing set aside: every image trains (the split is tested below)
    cfg = DataConfig(source="image_folder", path=str(tmp_path), flat_split=(0.0, 0.0))
    ds = Dataset(cfg, "train")
    assert ds.class_names == ["cat", "dog"] and ds.num_examples == 6
    spec = PreprocessingSpec(input_size=[32, 32])
    x, y = next(iter(ds.pipeline(spec, 6, training=False)))
    assert x.shape == (6, 32, 32, 3) and sorted(y.numpy().tolist()) == [0, 0, 0, 1, 1, 1]
    x, _ = next(iter(ds.pipeline(spec, 6, training=True, seed=1)))
    assert x.shape == (6, 32, 32, 3)
    with pytest.raises(DataError, match="the model has 5 classes but"):
        ds.check_labels(5)


def test_corrupt_image_is_named(tmp_path):
    _write_folder(tmp_path)
    bad = tmp_path / "dog" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match="broken.jpg"):
        scan_image_folder(str(tmp_path))


def test_imagenet_tfrecords(tmp_path):
    import tensorflow as tf
    from PIL import Image
    import io

    with tf.io.TFRecordWriter(str(tmp_path / "validation-00000-of-00001")) as w:
        for label in (1, 1000):
            buf = io.BytesIO()
            Image.fromarray(np.full((50, 60, 3), label % 255, np.uint8)).save(buf, "JPEG")
            ex = tf.train.Example(features=tf.train.Features(feature={
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(
                    value=[buf.getvalue()])),
                "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(
                    value=[label]))}))
            w.write(ex.SerializeToString())
    ds = Dataset(DataConfig(source="imagenet", path=str(tmp_path)), "validation")
    x, y = next(iter(ds.pipeline(PreprocessingSpec(input_size=[29, 29]), 4, training=False)))
    assert x.shape == (2, 29, 29, 3) and y.numpy().tolist() == [0, 999]


def test_preprocessing_json_round_trip(tmp_path):
    spec = PreprocessingSpec(input_size=[75, 75], source_channels=1, crop_fraction=1.0)
    spec.save(str(tmp_path))
    d = json.loads((tmp_path / "preprocessing.json").read_text())
    assert d["mean"] == [127.5] * 3 and d["std"] == [127.5] * 3 and d["input_range"] == [-1, 1]
    assert PreprocessingSpec.load(str(tmp_path)) == spec
    with pytest.raises(ValueError, match="crop_fraction"):
        PreprocessingSpec.from_dict({**d, "crop_fraction": 1.5})


def test_config_layering(tmp_path):
    f = tmp_path / "over.json"
    f.write_text(json.dumps({"train": {"epochs": 7, "batch_size": 64},
                             "model": {"regime": "r151"}}))
    cfg = resolve("inception_v3_fashion_mnist_demo", str(f), ("train.epochs=3",
                                                               "data.area_range=0.5,1.0"))
    assert cfg.train.epochs == 3 and cfg.train.batch_size == 64  # CLI beats the file
    assert cfg.model.regime.value == "r151" and cfg.data.area_range == (0.5, 1.0)
    cfg.save(str(tmp_path))
    from train.config import from_dict
    again = from_dict(json.loads((tmp_path / "config.json").read_text()))
    assert again.to_dict() == cfg.to_dict()
    with pytest.raises(ValueError, match="presets: inception_v3_imagenet"):
        resolve("nope")
    with pytest.raises(ValueError, match="expected one of r299, r151, r79"):
        resolve("tiny_test", None, ("model.regime=r42",))
    with pytest.raises(ValueError, match="unknown config key 'optim.lr'"):
        apply_overrides(cfg, {"optim.lr": 1})


@pytest.mark.parametrize("mode", ["fast", "full"])
def test_colour_distortion_as_slims_inception_preprocessing(tmp_path, mode):
    """Training photos get slim's distort_color when asked (the ImageNet preset: "fast"): the
    same crop and flip with other colours, still pixels in the model's range, repeatable from a
    seed; evaluation is never distorted."""
    import cv2
    import tensorflow as tf

    from train.config import PRESETS
    from train.data import DataConfig, image_preprocess
    from contract.preprocessing import PreprocessingSpec

    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8), (5, 5), 2)
    path = str(tmp_path / "a.png")
    cv2.imwrite(path, img)
    enc = tf.io.read_file(path)
    spec = PreprocessingSpec(input_size=[32, 32])
    seed = tf.constant([3, 4], tf.int64)
    plain = image_preprocess(enc, spec, DataConfig(source="image_folder"), seed).numpy()
    cfg = DataConfig(source="image_folder", color_distortion=mode)
    a = image_preprocess(enc, spec, cfg, seed).numpy()
    b = image_preprocess(enc, spec, cfg, seed).numpy()
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - plain).mean() > 0.01  # the colours moved ...
    assert a.min() >= -1.0 - 1e-6 and a.max() <= 1.0 + 1e-6  # ... inside [-1, 1]
    other = image_preprocess(enc, spec, cfg, tf.constant([5, 6], tf.int64)).numpy()
    assert np.abs(other - a).mean() > 0.01
    np.testing.assert_array_equal(image_preprocess(enc, spec, None).numpy(),
                                  image_preprocess(enc, spec, None).numpy())
    assert PRESETS["inception_v3_imagenet"]().data.color_distortion == "fast"
    with pytest.raises(ValueError, match="color_distortion must be one of"):
        DataConfig(color_distortion="strong")


def _flat(root, counts):
    import cv2

    for c, n in counts.items():
        (root / c).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(root / c / f"{i}.png"), np.full((8, 8, 3), i % 250, np.uint8))


@pytest.mark.parametrize("counts, fractions, seed", [
    ({"a": 50, "b": 30, "c": 7}, (0.2, 0.1), 0),
    ({"a": 50, "b": 30, "c": 7}, (0.2, 0.1), 1),
    ({"a": 3, "b": 3}, (0.2, 0.1), 0),  # tiny classes still give each split an image
    ({"a": 20, "b": 10}, (0.3, 0.0), 0),
])
def test_a_flat_folder_is_split_seeded_stratified_and_disjoint(tmp_path, counts, fractions,
                                                               seed):
    _flat(tmp_path / "f", counts)
    cfg = DataConfig(source="image_folder", path=str(tmp_path / "f"), flat_split=fractions,
                     split_seed=seed)
    parts = {s: Dataset(cfg, s) for s in ("train", "test", "holdout")}
    files = {s: set(d.files) for s, d in parts.items()}
    assert not files["train"] & files["test"] and not files["train"] & files["holdout"]
    assert not files["test"] & files["holdout"]
    assert set().union(*files.values()) == {str(p) for p in (tmp_path / "f").rglob("*.png")}
    for c, n in counts.items():  # stratified: each class in its proportion
        k = sum(1 for f in files["test"] if f"/{c}/" in f)
        assert k == max(round(n * fractions[0]), 1 if n >= 3 and fractions[0] else 0)
    assert "never trained on" in parts["test"].note and f"split_seed={seed}" in parts["test"].note
    again = Dataset(cfg, "test")  # the same split every time (config.json records it)
    assert again.files == parts["test"].files
    other = Dataset(DataConfig(source="image_folder", path=str(tmp_path / "f"),
                               flat_split=fractions, split_seed=seed + 7), "test")
    assert other.files != parts["test"].files or len(parts["test"].files) <= 2


def test_a_train_folder_with_nothing_to_test_on_is_refused(tmp_path):
    _flat(tmp_path / "f" / "train", {"a": 3, "b": 3})
    with pytest.raises(DataError, match="has train/ but no test/, validation/ or val/"):
        Dataset(DataConfig(source="image_folder", path=str(tmp_path / "f")), "test")
    _flat(tmp_path / "f" / "validation", {"a": 2, "b": 2})
    test = Dataset(DataConfig(source="image_folder", path=str(tmp_path / "f")), "test")
    assert all("/validation/" in f for f in test.files)
    # validation/ is what the reports test on, so the held-out split is never it
    held = Dataset(DataConfig(source="image_folder", path=str(tmp_path / "f")), "holdout")
    assert not any("/validation/" in f for f in held.files)


@pytest.mark.parametrize("bad", [(0.5, 0.5), (-0.1, 0.1), (0.2,)])
def test_flat_split_fractions_are_checked(bad):
    with pytest.raises(ValueError, match="data.flat_split"):
        DataConfig(flat_split=bad)
