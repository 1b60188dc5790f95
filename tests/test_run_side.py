"""The run side a board installs (edge_eval.worker and what it imports) needs ``contract/``, numpy
and LiteRT only: it evaluates and times a .tflite with TensorFlow, tf_keras, matplotlib,
coremltools and the project's build-side packages (convert/, quantize/, train/, pipeline/) made
unimportable. The float reference (edge_eval.reference) does need TensorFlow, and says so."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from contract.jobs import HOST_KINDS, JobError, WorkerJob, WorkerResult

BLOCKED = ("tensorflow", "tf_keras", "keras", "matplotlib", "coremltools", "convert", "quantize",
           "train", "pipeline")

# a meta-path finder, installed before anything else runs (sitecustomize), that refuses the
# blocked packages whichever folder holds them
SITECUSTOMIZE = f'''
import sys
BLOCKED = {BLOCKED!r}
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked: the run side must not import it")
        return None
sys.meta_path.insert(0, _Block())
'''


@pytest.fixture(scope="module")
def board_env(tmp_path_factory):
    d = tmp_path_factory.mktemp("board")
    (d / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(d), ROOT]))


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory):
    """A small int8 classifier (conv + pool + dense, 10 classes), converted here in the test
    process, which has TensorFlow."""
    from train import keras_env  # noqa: F401
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    m = tf.keras.Sequential([
        tf.keras.Input((32, 32, 3)), tf.keras.layers.Conv2D(8, 3, activation="relu"),
        tf.keras.layers.GlobalAveragePooling2D(), tf.keras.layers.Dense(10),
        tf.keras.layers.Softmax()])
    conv = tf.lite.TFLiteConverter.from_keras_model(m)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    conv.representative_dataset = lambda: ([rng.uniform(-1, 1, (1, 32, 32, 3)).astype(
        np.float32)] for _ in range(8))
    path = tmp_path_factory.mktemp("model") / "tiny.tflite"
    path.write_bytes(conv.convert())
    x = rng.uniform(-1, 1, (7, 32, 32, 3)).astype(np.float32)
    return str(path), x, m.predict(x, verbose=0)


def _run(module, job: WorkerJob, env, tmp_path):
    job = job.replace(result=str(tmp_path / f"{job.op}.result.json"))
    (tmp_path / "job.json").write_text(json.dumps(job.to_json()))
    p = subprocess.run([sys.executable, "-m", module, str(tmp_path / "job.json")], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=300)
    return p, WorkerResult.from_json(json.load(open(job.result)))


def test_the_blocker_blocks(board_env):
    code = "import convert"
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=board_env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "blocked" in p.stderr


def test_a_tflite_is_evaluated_and_timed_without_the_build_side(board_env, tiny_tflite,
                                                                tmp_path):
    model, x, keras_probs = tiny_tflite
    np.save(tmp_path / "x.npy", x)
    out = str(tmp_path / "p.npy")
    p, res = _run("edge_eval.worker", WorkerJob("predict", model, inputs=str(tmp_path / "x.npy"),
                                                output=out, batch_size=4), board_env, tmp_path)
    assert res.ok, (res.error, p.stderr[-2000:])
    probs = np.load(out)
    assert probs.shape == (7, 10) and res.classes == 10
    assert np.allclose(probs.sum(axis=1), 1.0, atol=0.05)
    # int8 of the same model: close to Keras' own probabilities (the numbers are real)
    assert np.abs(probs - keras_probs).max() < 0.1
    p, res = _run("edge_eval.worker", WorkerJob("bench", model, runs=12, warmup=2,
                                                min_seconds=0.2), board_env, tmp_path)
    assert res.ok and res.measurement["runs"] >= 12, (res, p.stderr[-2000:])
    assert res.measurement["latency_ms"]["p50"] > 0
    # what it imported: no TensorFlow, no build side
    code = ("import sys, edge_eval.worker, edge_eval.bench, edge_eval.preprocess, "
            "edge_eval.stats, contract.jobs, contract.tflite_file, contract.litert; "
            f"bad = [m for m in sys.modules if m.split('.')[0] in {BLOCKED!r}]; "
            "assert not bad, bad; print('ok')")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=board_env,
                       capture_output=True, text=True, timeout=120)
    assert p.stdout.strip() == "ok", p.stderr


def test_the_reference_is_the_hosts_and_says_what_it_lacks(board_env, tiny_tflite, tmp_path):
    model, x, _ = tiny_tflite
    np.save(tmp_path / "x.npy", x)
    job = WorkerJob("predict", str(tmp_path / "float.keras"), kind="keras",
                    inputs=str(tmp_path / "x.npy"), output=str(tmp_path / "q.npy"))
    assert job.entry == "edge_eval.reference"
    assert all(WorkerJob("predict", "m", kind=k).entry == "edge_eval.reference"
               for k in HOST_KINDS)
    p, res = _run(job.entry, job, board_env, tmp_path)
    assert res.status == "failed" and "blocked" in res.error, res
    # the run side refuses host kinds rather than importing TensorFlow
    p, res = _run("edge_eval.worker", job, board_env, tmp_path)
    assert res.status == "failed" and "edge_eval.reference" in res.error, res


@pytest.mark.parametrize("data, match", [
    ({"op": "predict", "model": "m", "colour": 3}, "unknown worker job key"),
    ({"op": "train", "model": "m"}, "worker op must be one of"),
    ({"op": "predict", "model": "m", "kind": "onnx"}, "worker kind must be one of"),
    (["predict"], "JSON object"),
])
def test_a_job_that_is_not_one_this_version_writes_is_refused(data, match):
    with pytest.raises(JobError, match=match):
        WorkerJob.from_json(data)
