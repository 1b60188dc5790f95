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


def _spec_dict(**change):
    d = PreprocessingSpec(input_size=[8, 8]).to_dict()
    for k, v in change.items():
        if v is _DROP:
            d.pop(k)
        else:
            d[k] = v
    return d


_DROP = object()


@pytest.mark.parametrize("write, message", [
    (lambda f: f.write_text(__import__("json").dumps(_spec_dict(channels=_DROP))),
     "lacks ['channels']"),
    (lambda f: f.write_text(__import__("json").dumps(_spec_dict(input_size=299))),
     "field 'input_size' must be [height, width]"),
    (lambda f: f.write_text(__import__("json").dumps(_spec_dict(crop_fraction="0.875"))),
     "field 'crop_fraction' must be a finite number. Received: '0.875'"),
    (lambda f: f.write_text(__import__("json").dumps(_spec_dict(scale=0))),
     "field 'scale' must not be 0"),
    (lambda f: f.write_text(__import__("json").dumps(_spec_dict(crop_fraction=1.5))),
     "field 'crop_fraction' must be in (0.0, 1.0]"),
    (lambda f: f.write_text(__import__("json").dumps(_spec_dict(channels=4))),
     "field 'channels' must be one of [1, 3]"),
    (lambda f: f.write_text("{cut off"), "is not valid JSON"),
    (lambda f: f.write_text("[1, 2]"), "expected a JSON object"),
])
def test_bad_preprocessing_json_is_one_message(tmp_path, capsys, write, message):
    """convert and edge_eval read preprocessing.json through one validator: a message naming
    the field and the value, never a traceback."""
    import json

    from convert.__main__ import main as convert_main
    from edge_eval.__main__ import main as eval_main

    folder = tmp_path / "model"
    folder.mkdir()
    _model("plain", str(tmp_path / "m")).save(str(folder / "m.keras"))
    write(folder / "preprocessing.json")
    assert convert_main([str(folder / "m.keras"), "--out", str(tmp_path / "out"),
                         "--recipes", "fp32"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    # edge_eval: the manifest carries the spec
    art = tmp_path / "art"
    art.mkdir()
    spec = json.loads((folder / "preprocessing.json").read_text()) \
        if "JSON" not in message and "object" not in message else [1]
    (art / "manifest.json").write_text(json.dumps({
        "artifacts": [], "preprocessing": spec,
        "sources": {"s": {"path": str(folder / "m.keras")}}}))
    assert eval_main(["accuracy", str(art), "--out", str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and ("preprocessing" in err), err


@pytest.mark.parametrize("content, message", [
    ("T-shirt\nTrouser\nPullover\n".encode("latin-1") + "Kleid für Damen\n".encode("latin-1"),
     "is not UTF-8 text"),
    (b"a\nb\n", "labels.txt has 2 labels but the model has 3 outputs"),
])
def test_bad_labels_are_one_message(tmp_path, capsys, content, message):
    from convert.__main__ import main

    folder = tmp_path / "model"
    folder.mkdir()
    _model("plain", str(tmp_path / "m")).save(str(folder / "m.keras"))
    PreprocessingSpec(input_size=[8, 8]).save(str(folder))
    (folder / "labels.txt").write_bytes(content)
    assert main([str(folder / "m.keras"), "--out", str(tmp_path / "out"), "--recipes",
                 "fp32"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err


@pytest.mark.parametrize("text, want", [
    ("a\nb\nc\n", ["a", "b", "c"]),
    ("a\nb\nc\n\n", ["a", "b", "c"]),  # a trailing blank line is not an 11th class
    ("\ufeffa\r\nb \r\n\r\n c\n", ["a", "b", "c"]),  # BOM, CRLF, stray spaces
])
def test_one_labels_rule_for_python_and_java(tmp_path, text, want):
    """train.preprocessing.read_labels applies the Java core's Labels.parse rule."""
    from train.preprocessing import read_labels

    p = tmp_path / "labels.txt"
    p.write_bytes(text.encode("utf-8"))
    assert read_labels(str(p)) == want


@pytest.mark.parametrize("manifest, message", [
    ("{not json", "is not valid JSON"),
    ('{"artifacts": [], "sources": {"s": {"qat": false}}}', "float source has no path"),
    ('{"artifacts": "x"}', "lists no artifacts"),
    ('[1]', "lists no artifacts"),
    ('{"artifacts": [3]}', "lists no artifacts"),
])
def test_bad_manifest_is_one_message(tmp_path, capsys, manifest, message):
    from edge_eval.__main__ import main

    (tmp_path / "manifest.json").write_text(manifest)
    assert main(["accuracy", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
