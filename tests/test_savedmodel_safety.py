"""A SavedModel is a program: one whose graph acts on the machine (writes or reads files, runs
Python) is refused before TensorFlow loads any of it - by convert, and as a manifest's float
source by edge_eval - with one message naming the ops, exit 2 and nothing written, unless the
user passes --unsafe-allow-model-code. A plain classifier's SavedModel converts with no flag."""
import collections
import json
import os

import numpy as np
import pytest

from contract.preprocessing import PreprocessingSpec

SIZE, CLASSES = 75, 10


def _saved_model(folder, act=None):
    """A 75x75x3 -> 10 classifier as a SavedModel (``serving_default``), with the demo's
    preprocessing.json and labels.txt beside it; ``act(image)`` runs inside its serving
    function and returns a tensor added (times zero) to the logits."""
    from train import keras_env  # noqa: F401
    import tensorflow as tf

    rng = np.random.default_rng(0)
    module = tf.Module()
    module.w = tf.Variable(rng.normal(0, 1, (3, CLASSES)).astype(np.float32))
    spec = tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32, name="image")

    @tf.function(input_signature=[spec])
    def serve(image):
        logits = tf.matmul(tf.reduce_mean(image, axis=[1, 2]), module.w)
        if act is not None:
            logits += 0.0 * tf.cast(act(image), tf.float32)
        return {"predictions": tf.nn.softmax(logits)}

    module.serve = serve
    tf.saved_model.save(module, str(folder), signatures={"serving_default": serve})
    PreprocessingSpec(input_size=[SIZE, SIZE]).save(str(folder))
    (folder / "labels.txt").write_text("\n".join(f"c{i}" for i in range(CLASSES)) + "\n")
    return str(folder)


def _then_zero(effect):
    """An ``act`` that runs ``effect(image)`` for what it does (tf.function keeps a stateful op
    in the graph by its automatic control dependencies) and adds nothing."""
    import tensorflow as tf

    return lambda image: (effect(image), tf.constant(0))[1]


def _hostile(kind, tmp_path):
    """(model folder, the op the refusal must name, the file a run would have written)."""
    import tensorflow as tf

    marker = str(tmp_path / "WRITTEN")
    secret = tmp_path / "secret.txt"
    secret.write_text("a private key")
    acts = {
        "write_file": (_then_zero(lambda image: tf.io.write_file(marker, "written by a model")),
                       "WriteFile"),
        "read_file": (lambda image: tf.strings.length(tf.io.read_file(str(secret))), "ReadFile"),
        "py_function": (lambda image: tf.py_function(
            lambda: np.float32(len(open(str(secret)).read())), [], tf.float32), "EagerPyFunc"),
        # a checkpoint op, but in the serving function rather than the model's own saver
        "save_v2": (_then_zero(lambda image: tf.raw_ops.SaveV2(
            prefix=marker, tensor_names=["t"], shape_and_slices=[""], tensors=[image])),
            "SaveV2"),
    }
    act, op = acts[kind]
    folder = tmp_path / f"{kind}_model"
    path = _saved_model(folder, act)
    if os.path.exists(marker):
        os.remove(marker)  # tracing may have run it once, here, on purpose
    return path, op, marker


HOSTILE = ["write_file", "read_file", "py_function", "save_v2"]


@pytest.fixture
def no_opt_in(monkeypatch):
    from train.safe_load import ENV

    monkeypatch.delenv(ENV, raising=False)


def _npy(tmp_path):
    p = tmp_path / "x.npy"
    np.save(p, np.random.default_rng(0).uniform(-1, 1, (8, SIZE, SIZE, 3)).astype(np.float32))
    return str(p)


@pytest.mark.parametrize("kind", HOSTILE)
def test_convert_refuses_a_savedmodel_that_acts_on_the_machine(tmp_path, capsys, no_opt_in,
                                                               kind):
    from convert.__main__ import main

    path, op, marker = _hostile(kind, tmp_path)
    out = tmp_path / "out"
    rc = main([path, "--out", str(out), "--recipes", "fp32", "--check-npy", _npy(tmp_path),
               "--calib-npy", _npy(tmp_path)])
    err = capsys.readouterr().err
    print(f"[{kind}] exit {rc}: {err.strip()}")  # the note quotes these
    assert rc == 2 and err.count("error:") == 1, err
    assert f"{op} (in function " in err and "--unsafe-allow-model-code" in err, err
    assert "Traceback" not in err and "cannot quantize" not in err
    assert not os.path.exists(marker)  # nothing of the graph ran
    assert not out.exists()  # nothing written


@pytest.mark.parametrize("kind", HOSTILE)
def test_edge_eval_refuses_it_as_a_manifests_float_source(tmp_path, capsys, no_opt_in, kind):
    from edge_eval.__main__ import main

    path, op, marker = _hostile(kind, tmp_path)
    art = tmp_path / "art"
    art.mkdir()
    (art / "manifest.json").write_text(json.dumps({
        "artifacts": [{"file": "m_fp32.tflite", "recipe": "fp32", "target": "tflite",
                       "sha256": "0" * 64}],
        "sources": [{"path": path, "qat": False}]}))
    res = tmp_path / "res"
    rc = main(["accuracy", str(art), "--out", str(res), "--runtime", "litert"])
    err = capsys.readouterr().err
    print(f"[{kind}] exit {rc}: {err.strip()}")
    assert rc == 2 and "float reference:" in err and f"{op} (in function " in err, err
    assert not os.path.exists(marker) and not res.exists()


def test_the_opt_in_lets_the_user_load_what_they_trust(tmp_path, monkeypatch):
    from train import safe_load
    from train.source import ModelError, check_model

    path, op, _ = _hostile("read_file", tmp_path)
    monkeypatch.delenv(safe_load.ENV, raising=False)
    with pytest.raises(ModelError, match="ReadFile"):
        check_model(path)
    monkeypatch.setenv(safe_load.ENV, "1")
    check_model(path)  # no error: the user said they trust it


def test_the_reader_sees_every_op_tensorflow_sees(tmp_path):
    """The wire-format reader against TensorFlow's own protobuf parse: the same ops, graph and
    function library alike."""
    from tensorflow.core.protobuf import saved_model_pb2

    from train.graph_ops import read_graphs, refused_ops

    path = _saved_model(tmp_path / "plain")
    assert refused_ops(path) == []
    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString(open(os.path.join(path, "saved_model.pb"), "rb").read())
    want = collections.Counter(n.op for mg in sm.meta_graphs for n in list(mg.graph_def.node) + [
        n for f in mg.graph_def.library.function for n in f.node_def])
    got = collections.Counter(n.op for nodes, funcs, _ in read_graphs(path)
                              for n in nodes + [n for fn in funcs.values() for n in fn])
    assert got == want and "SaveV2" in got  # the model's own saver: allowed there only


@pytest.mark.parametrize("data, match", [
    (b"", "holds no meta graph"),
    (b"\x12\xff\xff\xff\xff\x0f", "truncated"),
    (b"\x0f", "wire type 7"),
])
def test_a_saved_model_pb_that_is_not_one_is_one_message(tmp_path, no_opt_in, data, match):
    from train.source import ModelError, check_model

    (tmp_path / "saved_model.pb").write_bytes(data)
    with pytest.raises(ModelError, match=match):
        check_model(str(tmp_path))


@pytest.mark.slow
def test_a_keras_inception_v3_savedmodel_converts_with_no_flag(tmp_path, capsys, no_opt_in):
    from train import keras_env  # noqa: F401
    import tensorflow as tf
    import tf_keras

    from convert.__main__ import main

    m = tf_keras.applications.InceptionV3(weights=None, input_shape=(SIZE, SIZE, 3),
                                          classes=CLASSES)
    folder = tmp_path / "inception"
    tf.saved_model.save(m, str(folder))
    PreprocessingSpec(input_size=[SIZE, SIZE]).save(str(folder))
    out = tmp_path / "out"
    rc = main([str(folder), "--out", str(out), "--recipes", "fp32", "--check-npy",
               _npy(tmp_path), "--calib-npy", _npy(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 0, err
    manifest = json.load(open(out / "manifest.json"))
    assert [a["recipe"] for a in manifest["artifacts"]] == ["fp32"]


def test_a_folder_where_an_artifact_goes_is_one_message(tmp_path, capsys, no_opt_in):
    from contract.recipes import file_name, get_recipe
    from convert.__main__ import main
    from train.source import load_source

    path = _saved_model(tmp_path / "plain")
    out = tmp_path / "out"
    (out / file_name(load_source(path).name, get_recipe("fp32"))).mkdir(parents=True)
    rc = main([path, "--out", str(out), "--recipes", "fp32", "--check-npy", _npy(tmp_path),
               "--calib-npy", _npy(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("error:") == 1 and "Traceback" not in err, err
    assert "Is a directory" in err or "directory" in err.lower(), err


@pytest.mark.slow  # a real conversion (the fast tier has none)
def test_a_killed_conversion_leaves_a_work_folder_the_next_run_removes(tmp_path, no_opt_in):
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT

    path = _saved_model(tmp_path / "plain")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONPATH=ROOT)
    args = [sys.executable, "-m", "convert", path, "--out", str(tmp_path / "out"), "--recipes",
            "fp32", "--check-npy", _npy(tmp_path), "--calib-npy", _npy(tmp_path)]
    p = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    left = []
    while time.time() < deadline and p.poll() is None:
        left = [n for n in os.listdir(tmp) if n.startswith("convert-sm-")]
        if left:
            break
        time.sleep(0.05)
    assert left, "the conversion made no work folder"
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert os.path.isdir(tmp / left[0])  # kill -9: no clean-up ran
    done = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "removed 1 work file(s) left by stopped runs" in done.stdout + done.stderr
    assert not [n for n in os.listdir(tmp) if n.startswith("convert-sm-")]
