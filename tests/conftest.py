import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import pytest  # noqa: E402

from train.data import fashion_mnist_dir  # noqa: E402

needs_fmnist = pytest.mark.skipif(
    fashion_mnist_dir() is None,
    reason="Fashion-MNIST IDX files missing: apt-get install dataset-fashion-mnist")


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
    cfg = resolve("tiny_test", None, ("model.aux_logits=false", "train.epochs=2",
                                      "data.max_train_examples=512"))
    train(cfg, run, log=lambda *a, **k: None)
    return os.path.join(run, "export")
