"""ImageNet-layout TFRecords everywhere data is read: the TF-free reader against TensorFlow's
writer, bad shards, class names, seeded samples, and the user's path (train, calibrate, check,
evaluate with streamed multi-crop) on a set the tests write."""
import json
import os

import numpy as np
import pytest

from conftest import ROOT
from tfrecords import WORDS, write_set


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_set(str(tmp_path_factory.mktemp("tfr")), per_class=(8, 4), classes=4)


def test_the_reader_reads_what_tensorflow_wrote(shards):
    import tensorflow as tf

    from contract import tfrecord

    path = os.path.join(shards, "validation-00000-of-00002")
    ours = list(tfrecord.records(path))
    theirs = [r.numpy() for r in tf.data.TFRecordDataset(path)]
    assert ours == theirs and len(ours) == 8
    for raw in ours:
        mine = tfrecord.parse_example(raw)
        ex = tf.train.Example.FromString(raw).features.feature
        assert mine["image/encoded"] == list(ex["image/encoded"].bytes_list.value)
        assert mine["image/class/label"] == list(ex["image/class/label"].int64_list.value)
        assert mine["image/class/text"][0].decode() in WORDS
    # int64 edge cases through the wire format: negatives, packed lists, floats
    ex = tf.train.Example(features=tf.train.Features(feature={
        "i": tf.train.Feature(int64_list=tf.train.Int64List(value=[-3, 0, 2 ** 40])),
        "f": tf.train.Feature(float_list=tf.train.FloatList(value=[0.5, -1.25]))}))
    got = tfrecord.parse_example(ex.SerializeToString())
    assert got == {"i": [-3, 0, 2 ** 40], "f": [0.5, -1.25]}


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:-7], "truncated"),
    (lambda b: b"\x01" + b[1:], "bad length checksum"),
    (lambda b: b"hello, I am not a record file at all", "bad length checksum"),
    (lambda b: b[:5], "truncated record header"),
])
def test_a_damaged_shard_is_named_with_its_offset(shards, tmp_path, damage, message):
    from train.data import DataConfig, DataError, Dataset

    data = open(os.path.join(shards, "validation-00000-of-00002"), "rb").read()
    (tmp_path / "validation-00000-of-00001").write_bytes(damage(data))
    with pytest.raises(DataError, match=message) as e:
        Dataset(DataConfig(source="imagenet", path=str(tmp_path), num_classes=4), "test")
    assert "validation-00000-of-00001" in str(e.value) and "byte" in str(e.value)


def test_records_without_image_encoded_are_one_message(tmp_path):
    from train.data import DataConfig, DataError, Dataset

    write_set(str(tmp_path), per_class=(1, 1), classes=2, shards=1, drop_encoded=True)
    with pytest.raises(DataError, match="has no 'image/encoded' feature"):
        Dataset(DataConfig(source="imagenet", path=str(tmp_path), num_classes=2), "train")


def test_class_names_words_from_files_or_records(shards, tmp_path):
    from train.data import DataConfig, DataError, Dataset

    cfg = DataConfig(source="imagenet", path=shards, num_classes=4)
    assert Dataset(cfg, "test").class_names == list(WORDS)  # image/class/text
    bare = write_set(str(tmp_path / "bare"), per_class=(2, 2), classes=4, shards=1, text=False)
    cfg = DataConfig(source="imagenet", path=bare, num_classes=4)
    assert Dataset(cfg, "test").class_names == ["0", "1", "2", "3"]
    (tmp_path / "bare" / "imagenet_lsvrc_2015_synsets.txt").write_text(
        "n01440764\nn01443537\nn01484850\nn09999999\n")
    (tmp_path / "bare" / "imagenet_metadata.txt").write_text(
        "n01440764\ttench, Tinca tinca\nn01443537\tgoldfish\nn01484850\tgreat white shark\n")
    assert Dataset(cfg, "test").class_names == ["tench, Tinca tinca", "goldfish",
                                                "great white shark", "n09999999"]
    (tmp_path / "bare" / "labels.txt").write_text("a\nb\nc\n")
    with pytest.raises(DataError, match="labels.txt has 3 names but the records have 4"):
        _ = Dataset(cfg, "test").class_names


def test_seeded_samples_read_only_their_records(shards):
    """A sample is the same records every time and its pixels are what TensorFlow's own
    pipeline makes of those records."""
    from train.data import DataConfig, Dataset
    from contract.preprocessing import PreprocessingSpec

    cfg = DataConfig(source="imagenet", path=shards, num_classes=4)
    ds = Dataset(cfg, "train")
    assert ds.num_examples == 32 and ds.note == "the training split"
    a, b = ds.sample(6, 3), ds.sample(6, 3)
    assert a.records.refs == b.records.refs and len(a.records) == 6
    spec = PreprocessingSpec(input_size=[29, 29])
    x = a.images(spec)
    assert x.shape == (6, 29, 29, 3) and -1 <= x.min() < x.max() <= 1
    whole = Dataset(cfg, "train")
    full = {tuple(r): i for i, r in enumerate(whole.records.refs)}
    labels = whole.labels_array()
    assert a.labels_array().tolist() == [labels[full[tuple(r)]] for r in a.records.refs]


def test_the_holdout_split_is_never_the_test_split(tmp_path):
    from train.data import DataConfig, Dataset

    cfg = DataConfig(max_train_examples=1000)
    held = Dataset(cfg, "holdout")
    assert held.num_examples == 59000 and "not trained on" in held.note
    assert (held.arrays[0][0] == Dataset(DataConfig(), "train").arrays[0][1000]).all()
    assert "trained on: no held-out" in Dataset(DataConfig(), "holdout").note
    for c in ("a", "b"):
        for split in ("train", "test", "validation"):
            d = tmp_path / "f" / split / c
            d.mkdir(parents=True)
            import cv2

            cv2.imwrite(str(d / "0.png"), np.full((8, 8, 3), 40 if split == "validation" else 9,
                                                  np.uint8))
    ds = Dataset(DataConfig(source="image_folder", path=str(tmp_path / "f")), "holdout")
    assert ds.note == "the validation/ folder"
    assert all("/validation/" in f for f in ds.files)


@pytest.mark.slow
def test_a_model_trained_on_tfrecords_calibrates_checks_and_evaluates_from_them(tmp_path):
    """The user's ImageNet path, small: train on TFRecords, convert (calibration from train-*,
    checks from validation-*, no .npy), evaluate from the records with one crop and with the
    144-crop scheme streamed through each model; the 144-crop worker's peak memory stays flat
    as the image count grows, and its numbers equal a direct computation."""
    from conftest import run_module

    data = write_set(str(tmp_path / "tfr"), per_class=(24, 12), classes=4, size=(60, 72))
    run = tmp_path / "run"
    r = run_module(["train", "--preset", "tiny_test", "--run-dir", str(run),
                    "--set", "data.source=imagenet", "--set", f"data.path={data}",
                    "--set", "data.num_classes=4", "--set", "model.num_classes=4",
                    "--set", "model.aux_logits=false", "--set", "train.epochs=3",
                    "--set", "optim.base_learning_rate=0.002", "--set", "model.bn_momentum=0.9",
                    "--set", "data.deterministic=true"], timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    export = run / "export"
    assert (export / "labels.txt").read_text().splitlines() == list(WORDS)  # words, not "417"
    art = tmp_path / "art"
    r = run_module(["convert", str(export), "--out", str(art), "--recipes",
                    "fp32,static_wi8_ai8", "--calib-images", "40", "--check-images", "24"],
                   timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    m = json.load(open(art / "manifest.json"))
    assert (art / "labels.txt").read_text().splitlines() == list(WORDS)
    int8 = next(a for a in m["artifacts"] if a["recipe"] == "static_wi8_ai8")

    from edge_eval import harness, preprocess
    from contract.litert import TFLiteModel

    quiet = lambda *a, **k: None  # noqa: E731
    one = harness.evaluate(str(art), str(tmp_path / "r1"), images=None, log=quiet)
    assert [r_["status"] for r_ in one] == ["ok"] * 3
    assert all(r_["accuracy"]["examples"] == 48 for r_ in one)  # all of validation-*
    assert all(r_["eval_set"]["source"] == "imagenet" for r_ in one)
    peaks = {}
    for n in (4, 16):
        rows = harness.evaluate(str(art), str(tmp_path / f"r144-{n}"), images=n, crops=144,
                                only=["static_wi8_ai8"], log=quiet)
        ok = {r_["recipe"]: r_ for r_ in rows}
        assert all(r_["status"] == "ok" for r_ in rows), rows
        assert ok["static_wi8_ai8"]["accuracy"]["examples"] == n
        assert ok["static_wi8_ai8"]["eval_set"]["inputs"] == n * 144
        peaks[n] = {k: v["peak_memory_mb"] for k, v in ok.items()}
    # storing the crops would grow the peak by 12 images x 144 crops x 75 x 75 x 3 x 4 B = 117 MB
    for k in peaks[4]:
        assert peaks[16][k] - peaks[4][k] < 40, peaks
    # the streamed scheme's numbers are the mean of each image's 144 crops' outputs
    from train.data import DataConfig

    items, _, _ = harness.eval_items(
        DataConfig(source="imagenet", path=data, num_classes=4), "test", 4, 0)
    spec = harness.PreprocessingSpec.load(str(export))
    model = TFLiteModel(str(art / int8["file"]))
    probs, labels = [], []
    for i in range(len(items)):
        im, lab = items.load(i)
        probs.append(model.predict(preprocess.crops(im, spec, 144), 48).mean(0))
        labels.append(lab)
    top1 = np.mean(np.argmax(probs, 1) == np.asarray(labels))
    rows = [json.loads(line) for line in open(tmp_path / "r144-4" / "accuracy.jsonl")]
    got = next(r_ for r_ in rows if r_["recipe"] == "static_wi8_ai8")
    assert got["accuracy"]["top1"] == pytest.approx(top1)
    print("peak MB (4 vs 16 images x 144 crops):", peaks)


def test_shards_at_a_url_are_read_through_tensorflows_file_systems(shards):
    """gs://, s3://, hdfs:// ... on the TF side go through tf.io.gfile; TensorFlow's in-memory
    ram:// file system stands in for a bucket here."""
    import tensorflow as tf

    from train.data import DataConfig, Dataset
    from contract.preprocessing import PreprocessingSpec

    url = "ram://bucket/imagenet"
    tf.io.gfile.makedirs(url)
    for name in os.listdir(shards):
        tf.io.gfile.copy(os.path.join(shards, name), f"{url}/{name}", overwrite=True)
    local = Dataset(DataConfig(source="imagenet", path=shards, num_classes=4), "train")
    remote = Dataset(DataConfig(source="imagenet", path=url, num_classes=4), "train")
    assert remote.num_examples == local.num_examples > 0
    assert all(f.startswith(url) for f in remote.files)
    assert remote.item(3) == local.item(3)
    spec = PreprocessingSpec(input_size=[32, 32])
    x, y = next(iter(remote.pipeline(spec, 4, training=False)))
    assert x.shape == (4, 32, 32, 3)


def test_without_tensorflow_a_url_needs_fsspec_and_says_so(tmp_path):
    import subprocess
    import sys

    code = ("import sys; sys.modules['tensorflow'] = None; sys.modules['fsspec'] = None\n"
            "from contract.tfrecord import RecordError, glob_files\n"
            "try:\n    glob_files('gs://bucket/train-*')\nexcept RecordError as e:\n"
            "    print(e)\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, PYTHONPATH=ROOT))
    assert "needs fsspec" in p.stdout and "copy the shards to a local folder" in p.stdout, \
        p.stdout + p.stderr
