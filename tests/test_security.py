"""Untrusted files stay data: model files that would run code are refused unless the user opts in."""
import os

import numpy as np
import pytest

from contract.preprocessing import PreprocessingSpec


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
    x = keras.layers.Conv2D(64, 3, padding="same")(x)  # weights enough for fp16 to halve
    x = keras.layers.Conv2D(64, 3, padding="same")(x)
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


def _hostile_h5(tmp_path, name="m.h5"):
    """An .h5 model whose Lambda layer creates ``marker`` when the model is rebuilt on load."""
    marker = str(tmp_path / "RAN")
    path = str(tmp_path / name)
    _model("lambda", marker).save(path)
    os.remove(marker)  # building it here ran the code once, on purpose
    return path, marker


def test_the_opt_in_is_explicit_and_then_the_file_loads(tmp_path, monkeypatch):
    from train import safe_load

    path, marker = _hostile_h5(tmp_path)
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

    path, marker = _hostile_h5(tmp_path, "model.h5")
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
    """contract.preprocessing.read_labels applies the Java core's Labels.parse rule."""
    from contract.preprocessing import read_labels

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


# --------------------------------------------------------------------------------------------
# interrupted and concurrent conversions
# --------------------------------------------------------------------------------------------
def _plain_model_folder(tmp_path):
    folder = tmp_path / "model"
    if not folder.exists():
        folder.mkdir()
        _model("plain", str(tmp_path / "m")).save(str(folder / "small.keras"))
        PreprocessingSpec(input_size=[8, 8]).save(str(folder))
    return str(folder / "small.keras")


@pytest.mark.slow  # a real conversion (the fast tier has none)
def test_two_conversions_into_one_folder_both_end_up_listed(tmp_path):
    import json
    import subprocess
    import sys

    from conftest import ROOT

    model, x = _plain_model_folder(tmp_path), _npy(tmp_path)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=ROOT)
    procs = [subprocess.Popen([sys.executable, "-m", "convert", model, "--out", str(out),
                               "--recipes", r, "--check-npy", x, "--calib-npy", x], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for r in ("fp32", "fp16")]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stdout.read()[-2000:]
    listed = sorted(a["file"] for a in json.load(open(out / "manifest.json"))["artifacts"])
    on_disk = sorted(f for f in os.listdir(out) if f.endswith(".tflite"))
    assert listed == on_disk == ["small_fp16.tflite", "small_fp32.tflite"]
    assert not [f for f in os.listdir(out) if f.startswith(".") and f != ".manifest.lock"]


def test_an_interrupted_conversion_lists_what_it_finished(tmp_path, monkeypatch):
    import json

    from convert import tflite
    from convert.__main__ import main

    model, x = _plain_model_folder(tmp_path), _npy(tmp_path)
    real = tflite.convert_bytes

    def stop_at_fp16(src, recipe, calib):
        if recipe.name == "fp16":
            raise KeyboardInterrupt  # Ctrl-C in the middle of the second recipe
        return real(src, recipe, calib)

    monkeypatch.setattr(tflite, "convert_bytes", stop_at_fp16)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        main([model, "--out", str(out), "--recipes", "fp32,fp16", "--check-npy", x,
              "--calib-npy", x, "--no-metadata"])
    listed = [a["file"] for a in json.load(open(out / "manifest.json"))["artifacts"]]
    assert listed == ["small_fp32.tflite"] == sorted(f for f in os.listdir(out)
                                                     if f.endswith(".tflite"))
    monkeypatch.setattr(tflite, "convert_bytes", real)  # the rerun finishes
    assert main([model, "--out", str(out), "--recipes", "fp32,fp16", "--check-npy", x,
                 "--calib-npy", x, "--no-metadata"]) == 0
    listed = [a["file"] for a in json.load(open(out / "manifest.json"))["artifacts"]]
    assert listed == ["small_fp16.tflite", "small_fp32.tflite"]


def test_work_files_of_dead_runs_are_swept_and_live_ones_kept(tmp_path):
    import subprocess
    import sys

    from contract import workdirs

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        made = {f".coreml-{dead}-abc": "dir", f".old-{dead}-x": "dir",
                f".m_fp32.tflite.{dead}.k2j3.partial": "file",
                f"convert-sm-{dead}-q": "dir", f".coreml-{live.pid}-abc": "dir",
                f".m_fp16.tflite.{live.pid}.zz.partial": "file", "m_fp32.tflite": "file",
                ".manifest.lock": "file",
                # the evaluation cache's files being written (inputs, multi-crop item lists,
                # a grey set's pixels, a shortened inputs file) and the finished ones
                f"inputs-ab12.npy.tmp-{dead}.npy": "file", f"items-ab12.json.tmp-{dead}": "file",
                f"items-ab12.meta.json.tmp-{dead}": "file", f"raw-ab12.npy.tmp-{dead}.npy": "file",
                f"inputs-ab12.npy.tmp-{dead}.npy.short.npy": "file",
                f"items-cd34.json.tmp-{live.pid}": "file", "items-ab12.json": "file",
                "raw-ab12.npy": "file"}
        for name, kind in made.items():
            (tmp_path / name).mkdir() if kind == "dir" else (tmp_path / name).write_text("x")
        gone = workdirs.sweep(str(tmp_path))
        assert sorted(gone) == sorted(n for n in made if dead in n)
        assert sorted(os.listdir(tmp_path)) == sorted(n for n in made if dead not in n)
    finally:
        live.kill()
        live.wait()


def test_every_bad_image_is_named_by_one_rule_for_training_and_evaluation(tmp_path):
    import cv2

    from edge_eval import preprocess
    from train.data import DataError, scan_image_folder

    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    img = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    cv2.imwrite(str(root / "a" / "good.jpg"), img)
    cv2.imwrite(str(root / "b" / "good.png"), img)
    jpg = (root / "a" / "good.jpg").read_bytes()
    garbled = bytearray(jpg)  # scan bytes overwritten, markers and end-of-image intact
    mid = len(jpg) // 2
    garbled[mid:mid + 40] = bytes((b * 7 + 13) & 0x7f for b in jpg[mid:mid + 40])
    bad = {"a/truncated.jpg": jpg[:len(jpg) // 2], "b/empty.jpg": b"",
           "a/garbled.jpg": bytes(garbled),
           "b/not_an_image.png": b"\x89PNG\r\n\x1a\n" + b"garbage" * 10,
           "a/cut_png.png": (root / "b" / "good.png").read_bytes()[:200]}
    for name, data in bad.items():
        (root / name).write_bytes(data)
    with pytest.raises(DataError) as e:
        scan_image_folder(str(root))
    msg = str(e.value)
    assert f"{len(bad)} corrupt or unreadable image(s)" in msg
    for name in bad:
        assert str(root / name) in msg
    assert "good" not in msg
    assert "corrupt JPEG data (libjpeg: Corrupt JPEG data" in msg
    for name in bad:  # edge_eval's reader refuses exactly those
        with pytest.raises(preprocess.ImageError, match="corrupt image|cannot decode"):
            preprocess.decode(str(root / name))
    assert preprocess.decode(str(root / "a" / "good.jpg")).shape == (40, 40, 3)
    assert preprocess.decode(str(root / "b" / "good.png")).shape == (40, 40, 3)


def test_a_full_disk_is_one_message_and_leaves_nothing(tmp_path, monkeypatch):
    import collections
    import shutil

    import cv2

    from convert import tflite
    from edge_eval import harness
    from train.data import DataConfig, Source

    folder = tmp_path / "imgs" / "a"
    folder.mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((20, 20, 3), 9 * i, np.uint8))
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10 << 20, 10 << 20, 1 << 20))
    cache = tmp_path / "cache"
    with pytest.raises(harness.EvalError, match="only 1 MB are free"):
        harness.eval_inputs(DataConfig(source=Source.IMAGE_FOLDER, path=str(tmp_path / "imgs")),
                            PreprocessingSpec(input_size=[16, 16]), str(cache),
                            log=lambda *a, **k: None)
    assert os.listdir(cache) == []

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, mode="r", *a, **k: (
        _FullFile(real_fdopen(fd, mode, *a, **k)) if "w" in mode else real_fdopen(fd, mode)))
    from contract.manifest import ManifestError, atomic_write_bytes

    with pytest.raises(ManifestError, match="the disk is full: could not write"):
        atomic_write_bytes(str(tmp_path / "m.tflite"), b"x" * 1000)
    assert sorted(os.listdir(tmp_path)) == ["cache", "imgs"]


class _FullFile:
    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, data):
        raise OSError(28, "No space left on device")


@pytest.mark.parametrize("text", ["{cut off", "[1]", '{"artifacts": "x"}', '{"artifacts": [3]}',
                                  "\xff\xfe"])
def test_convert_and_edge_eval_read_a_manifest_by_one_rule(tmp_path, text):
    """One reader (contract.manifest.read_manifest): the same message from both stages (edge_eval
    in its own error type); a folder without a manifest is empty to a writer (convert) and an
    error to a reader (edge_eval)."""
    from contract.manifest import ManifestError, read_manifest
    from edge_eval.harness import EvalError, load_manifest as eval_reads

    convert_reads = lambda d: read_manifest(d, required=False)  # noqa: E731
    ConvertError = ManifestError
    assert convert_reads(str(tmp_path)) == {}
    with pytest.raises(EvalError, match="has no manifest.json"):
        eval_reads(str(tmp_path))
    (tmp_path / "manifest.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(ConvertError) as c:
        convert_reads(str(tmp_path))
    with pytest.raises(EvalError) as e:
        eval_reads(str(tmp_path))
    assert str(c.value) == str(e.value)
    assert "is not valid JSON" in str(c.value) or "lists no artifacts" in str(c.value)
