import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import pytest  # noqa: E402

from train.data import fashion_mnist_dir  # noqa: E402

# The fast tier (``python -m pytest -m "not slow"``) is every test that neither trains nor
# converts a model: a test that uses one of these fixtures (directly or through another
# fixture) is marked slow here, once, instead of by hand; the few slow tests that build their
# own model carry @pytest.mark.slow themselves.
SLOW_FIXTURES = {"tiny_export", "converted"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def pytest_configure(config):
    """``TEST_TF_THREADS=N`` runs this process's TensorFlow on N threads (scripts/numerics.sh
    uses it to try other numerics; subprocesses get the same through the environment)."""
    n = os.environ.get("TEST_TF_THREADS")
    if n:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(int(n))
        tf.config.threading.set_inter_op_parallelism_threads(int(n))

needs_fmnist = pytest.mark.skipif(
    fashion_mnist_dir() is None,
    reason="Fashion-MNIST IDX files missing: apt-get install dataset-fashion-mnist")


def assert_png(path, min_width=300, min_height=200):
    """``path`` is a PNG of at least that size that shows something: more than a handful of
    distinct colours (a blank or one-colour canvas fails)."""
    import numpy as np
    from PIL import Image

    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width >= min_width and im.height >= min_height, (
            path, im.size)
        px = np.asarray(im.convert("RGB"))
    colours = np.unique(px.reshape(-1, 3), axis=0)
    assert len(colours) > 8, f"{path}: only {len(colours)} colours, nothing drawn"
    # something other than the background covers a real part of the canvas
    background = np.all(px == px[0, 0], axis=-1).mean()
    assert background < 0.97, f"{path}: {100 * background:.1f} % background"


def run_module(args, env_extra=None, timeout=600, **kw):
    """Runs ``python -m ...`` from the repo root; returns the CompletedProcess."""
    import subprocess

    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, timeout=timeout,
                          capture_output=True, text=True, **kw)


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """A briefly trained tiny Inception-v3 export (75 px, depth x0.1), shared by the session."""
    if fashion_mnist_dir() is None:
        pytest.skip("Fashion-MNIST IDX files missing: apt-get install dataset-fashion-mnist")
    from train.config import resolve
    from train.trainer import train

    run = str(tmp_path_factory.mktemp("tiny_run"))
    # the tiny job's training (pipeline.job.TINY_TRAIN_SETS): enough steps for the eval-mode
    # model to compute a real function (59 % top-1, varied probabilities; 512 images at lr 0.01
    # gave a constant or saturated output that made quantized-vs-float comparisons degenerate)
    from pipeline.job import TINY_TRAIN_SETS

    cfg = resolve("tiny_test", None, tuple(TINY_TRAIN_SETS))
    train(cfg, run, log=lambda *a, **k: None)
    return os.path.join(run, "export")


# recipe -> (input dtype, output dtype, quantized I/O, conv input dtype)
RECIPE_TABLE = {
    "fp32": ("float32", "float32", False, "float32"),
    "fp16": ("float32", "float32", False, "float32"),
    "dynamic_wi8_afp32": ("float32", "float32", False, "float32"),
    "static_wi8_ai8": ("float32", "float32", False, "int8"),
    "static_wi8_ai8_int8io": ("int8", "int8", True, "int8"),
    "static_wi8_ai8_uint8io": ("uint8", "uint8", True, "int8"),
    "static_wi8_ai16": ("float32", "float32", False, "int16"),
}


@pytest.fixture(scope="session")
def converted(tiny_export, tmp_path_factory):
    """Every RECIPE_TABLE recipe converted from ``tiny_export`` (read-only: copy to modify)."""
    import json

    from convert.__main__ import main

    out = str(tmp_path_factory.mktemp("artifacts"))
    rc = main([tiny_export, "--out", out, "--recipes", ",".join(RECIPE_TABLE),
               "--calib-images", "32", "--check-images", "48"])
    assert rc == 0
    return out, json.load(open(os.path.join(out, "manifest.json")))
