"""Untrusted files stay data: model files that would run code are refused unless the user opts in."""
import os

import numpy as np
import pytest

from train.preprocessing import PreprocessingSpec


def _model(kind, marker):
    import tf_keras as keras

    inp = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(2, 3)(inp)
    if kind == "lambda":
        # the code a hostile file carries: it runs when the model is rebuilt on load
        x = keras.layers.Lambda(lambda t: (open(marker, "a").close(), t)[1])(x)
    elif kind in ("safe_op", "tf_call"):  # arithmetic in a functional model: a TFOpLambda that is harmless
        import tensorflow as tf

        x = tf.math.multiply(x, 2.0)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(3, activation="softmax")(x)
    return keras.Model(inp, out)


@pytest.mark.parametrize("kind, ext, refused, names", [
    ("lambda", ".h5", True, "Lambda: Python code"),  # the legacy loader has no safe mode
    ("lambda", ".keras", True, "Lambda: Python code"),
    ("tf_call", ".h5", True, "TFOpLambda calling tf.io.write_file"),
    ("safe_op", ".h5", False, None),
    ("plain", ".keras", False, None),
])
def test_model_files_that_carry_code_are_refused(tmp_path, capsys, kind, ext, refused, names):
    from convert.__main__ import main
    from train.safe_load import ENV

    marker = str(tmp_path / "PWNED")
    folder = tmp_path / "model"
    folder.mkdir()
    path = str(folder / f"m{ext}")
    _model(kind, marker).save(path)
    if kind == "tf_call":  # a crafted file: the harmless op renamed to one that writes files
        _rename_tf_op(path, "math.multiply", "io.write_file")
    if os.path.exists(marker):
        os.remove(marker)  # building the model ran it once, here, on purpose
    PreprocessingSpec(input_size=[8, 8]).save(str(folder))
    out = tmp_path / "out"
    os.environ.pop(ENV, None)
    rc = main([path, "--out", str(out), "--recipes", "fp32", "--check-npy",
               _npy(tmp_path), "--calib-npy", _npy(tmp_path)])
    err = capsys.readouterr().err
    if refused:
        assert rc == 2 and names in err and "--unsafe-allow-model-code" in err, err
        assert "Traceback" not in err
        assert not os.path.exists(marker)  # nothing ran
        assert not out.exists() or not [f for f in os.listdir(out) if f.endswith(".tflite")]
    else:
        assert rc == 0, err


def _rename_tf_op(path, old, new):
    import h5py

    with h5py.File(path, "r+") as f:
        cfg = f.attrs["model_config"]
        cfg = cfg.decode() if isinstance(cfg, bytes) else cfg
        assert f'"function": "{old}"' in cfg
        f.attrs["model_config"] = cfg.replace(f'"function": "{old}"', f'"function": "{new}"')


def _npy(tmp_path):
    p = tmp_path / "x.npy"
    if not p.exists():
        np.save(p, np.random.default_rng(0).uniform(-1, 1, (8, 8, 8, 3)).astype(np.float32))
    return str(p)


def test_the_opt_in_is_explicit_and_then_the_file_loads(tmp_path, monkeypatch):
    from train import safe_load

    marker = str(tmp_path / "RAN")
    path = str(tmp_path / "m.h5")
    _model("lambda", marker).save(path)
    os.remove(marker)
    monkeypatch.delenv(safe_load.ENV, raising=False)
    with pytest.raises(safe_load.UnsafeModelError, match="Lambda"):
        safe_load.load_keras_model(path)
    assert not os.path.exists(marker)
    monkeypatch.setenv(safe_load.ENV, "1")
    safe_load.load_keras_model(path)
    assert os.path.exists(marker)  # opted in: the file's code ran, as the user asked


def test_qat_float_weights_go_through_the_same_check(tmp_path, monkeypatch):
    from quantize.qat import load_float_weights
    from train import safe_load

    marker = str(tmp_path / "RAN")
    path = str(tmp_path / "model.h5")
    _model("lambda", marker).save(path)
    os.remove(marker)
    monkeypatch.delenv(safe_load.ENV, raising=False)
    with pytest.raises(safe_load.UnsafeModelError):
        load_float_weights(_model("plain", marker), path)
    assert not os.path.exists(marker)


def test_an_unreadable_architecture_is_refused_not_loaded(tmp_path, monkeypatch):
    from train import safe_load

    p = tmp_path / "m.h5"
    p.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)  # an HDF5 signature, nothing behind it
    monkeypatch.delenv(safe_load.ENV, raising=False)
    with pytest.raises(safe_load.UnsafeModelError, match="cannot be read as data"):
        safe_load.check_model_file(str(p))


@pytest.mark.parametrize("name", ["../escaped", "/tmp/absolute", "a/b"])
def test_a_config_name_cannot_write_outside_out(tmp_path, capsys, name):
    """An export whose config.json names it ``../escaped`` is refused before anything is
    written: artifact names come from the name, and a name never picks a folder."""
    import json

    from convert.__main__ import main

    folder = tmp_path / "export"
    folder.mkdir()
    _model("plain", str(tmp_path / "m")).save(str(folder / "model.keras"))
    PreprocessingSpec(input_size=[8, 8]).save(str(folder))
    (folder / "config.json").write_text(json.dumps({"name": name}))
    out = tmp_path / "deep" / "out"
    rc = main([str(folder), "--out", str(out), "--recipes", "fp32", "--check-npy",
               _npy(tmp_path), "--calib-npy", _npy(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot be used in a file name" in err and "Traceback" not in err
    assert not list(tmp_path.rglob("*.tflite"))
