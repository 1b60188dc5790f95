"""A board: the run side from ``pip install .[run]`` / ``.[board]`` with no TensorFlow and no
matplotlib, and the three commands - the host exports the images and its float reference,
the board evaluates, the host pairs the board's per-image records with its own.

The boards are the fresh environments scripts/setup.sh builds - ``pip install .[board]`` on
Python 3.9 (tflite-runtime 2.14, numpy 1.x: the oldest the run side claims) and ``pip install
.[run]`` (ai-edge-litert) - and, always, this Python with TensorFlow and matplotlib made
unimportable."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# scripts/setup.sh: fresh virtual environments with .[board] (Python 3.9) and .[run]
BOARDS = os.path.expanduser("~/.cache/inception-edge/boards")
BLOCKER = '''import importlib.abc, sys
class _Run(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("tensorflow", "tf_keras", "keras", "matplotlib"):
            raise ModuleNotFoundError("No module named %r" % name)
sys.meta_path.insert(0, _Run())
'''


def _boards(tmp_path):
    """(name, python, extra environment) of each board this machine can stand in for."""
    block = tmp_path / "run_only"
    block.mkdir()
    (block / "sitecustomize.py").write_text(BLOCKER)
    out = [("run-only (ai-edge-litert, no TensorFlow/matplotlib)", sys.executable,
            {"PYTHONPATH": os.pathsep.join([str(block), ROOT])})]
    for name, folder in (("pip install .[board] on Python 3.9 (tflite-runtime)", "py39-board"),
                         ("pip install .[run] (ai-edge-litert)", "run")):
        py = os.path.join(BOARDS, folder, "bin", "python")
        if os.path.isfile(py):  # the repository's code over the installed copy of it
            out.append((name, py, {"PYTHONPATH": ROOT}))
    return out


def _run(python, env_extra, args, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.update(env_extra, PYTHONUNBUFFERED="1")
    return subprocess.run([python, "-m", "edge_eval", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def host(converted, tmp_path_factory):
    """The host's evaluation (float reference + two artifacts) and the board's bundle."""
    from edge_eval import harness, pairing

    art, _ = converted
    res = str(tmp_path_factory.mktemp("host"))
    harness.evaluate(art, res, images=80, bootstrap_rounds=200,
                     only=["fp32", "static_wi8_ai8_uint8io"], log=lambda *a, **k: None)
    bundle = os.path.join(str(tmp_path_factory.mktemp("b")), "bundle")
    pairing.export_set(art, res, bundle, log=lambda *a, **k: None)
    return art, res, bundle


def test_the_bundle_is_the_hosts_images_and_reference(host):
    from contract import predictions

    art, res, bundle = host
    ref = predictions.read(os.path.join(bundle, "reference.jsonl"))
    files = [os.path.join(r, f) for r, _, fs in os.walk(os.path.join(bundle, "images", "test"))
             for f in fs]
    assert len(files) == len(ref) == 80
    ids = {predictions.image_id(open(f, "rb").read()) for f in files}
    assert ids == set(ref.ids)  # the same bytes the host identified
    classes = sorted(os.listdir(os.path.join(bundle, "images", "test")))
    assert len(classes) == 10 and classes[0].startswith("000_")
    with pytest.raises(Exception, match="exists"):  # never written over
        from edge_eval import pairing

        pairing.export_set(art, res, bundle, log=lambda *a, **k: None)


def test_a_board_evaluates_without_tensorflow_and_the_host_pairs_it(host, tmp_path):
    from contract import records
    from edge_eval import pairing, report

    art, res, bundle = host
    host_rows = {r["artifact"]: r for r in records.read_jsonl(os.path.join(res, "accuracy.jsonl"))}
    for name, python, env in _boards(tmp_path):
        out = tmp_path / ("board-" + str(abs(hash(name))))
        b = _run(python, env, ["bench", art, "--out", str(out / "bench"), "--runs", "12",
                               "--only", "fp32", "--no-strict"], ROOT)
        assert b.returncode == 0 and "Traceback" not in b.stderr, (name, b.stderr[-2000:])
        assert b.stderr.count("matplotlib is not installed") == 1
        lat = records.read_jsonl(str(out / "bench" / "latency.jsonl"))
        assert lat and lat[0]["status"] == "ok", (name, lat)
        a = _run(python, env, ["accuracy", art, "--data-source", "image_folder", "--data-path",
                               os.path.join(bundle, "images"), "--reference-predictions",
                               os.path.join(bundle, "reference.jsonl"), "--out",
                               str(out / "acc"), "--only",
                               "fp32,static_wi8_ai8_uint8io,dynamic_wi8_afp32", "--bootstrap",
                               "200", "--no-strict"], ROOT)
        assert a.returncode == 0 and "Traceback" not in a.stderr, (name, a.stderr[-2000:])
        rows = {r["artifact"]: r for r in records.read_jsonl(str(out / "acc" / "accuracy.jsonl"))}
        # tflite-runtime 2.14 does not know the FULLY_CONNECTED version TF 2.21 writes into
        # dynamic-range models: a failed row that says so and what to do
        dyn = rows["tiny_test_dynamic_wi8_afp32.tflite"]
        if "tflite-runtime" in name:
            assert dyn["status"] == "failed" and "older than the converter" in dyn["error"], dyn
        else:
            assert dyn["status"] == "ok", (name, dyn["error"])
        for art_name in ("tiny_test_fp32.tflite", "tiny_test_static_wi8_ai8_uint8io.tflite"):
            d = rows[art_name]["drift"]
            # the board's drift against the host's float model, paired on 80 images: the
            # host's own numbers, to the kernels' rounding
            assert d["paired_images"] == 80, name
            assert abs(d["top1_delta_points"]
                       - host_rows[art_name]["drift"]["top1_delta_points"]) <= 2.5, name
        # back on the host: the board's per-image records become device rows
        paired = pairing.pair(art, str(out / "acc"), res, 200, log=lambda *a, **k: None)
        # every model the board ran is a device row, and so is the one it could not load
        assert {r["artifact"] for r in paired} == {
            "tiny_test_fp32.tflite", "tiny_test_static_wi8_ai8_uint8io.tflite",
            "tiny_test_dynamic_wi8_afp32.tflite"}
        dyn = next(r for r in paired if r["artifact"] == "tiny_test_dynamic_wi8_afp32.tflite")
        assert (dyn["status"] == "failed") == ("tflite-runtime" in name), (name, dyn["error"])
        assert report.is_device_row(dyn) and dyn["device"]["role"] == "board"
        paired = [r for r in paired if r["status"] == "ok"]
        for r in paired:
            assert r["device"]["role"] == "board" and r["drift"]["paired_images"] == 80
            assert records.validate(r) == []
        fp32 = next(r for r in paired if r["artifact"] == "tiny_test_fp32.tflite")
        assert fp32["drift"]["argmax_agreement"] >= 0.97
        assert "On the device" in report.markdown(report.load(res))


def test_every_run_side_module_imports_on_each_board(tmp_path):
    """contract/ and edge_eval/ import on each board with what its extra installs - all but
    contract.tflite_file where LiteRT's TFLite schema is missing (tflite-runtime has none; the
    build side and MediaPipe's op check read models with it, and the harness goes on without
    MediaPipe there: test_a_board_evaluates_...)."""
    mods = sorted(f"{pkg}.{f[:-3]}" for pkg in ("contract", "edge_eval")
                  for f in os.listdir(os.path.join(ROOT, pkg))
                  if f.endswith(".py") and f not in ("__init__.py", "__main__.py"))
    assert "contract.tflite_file" in mods and "edge_eval.harness" in mods
    code = ("import importlib, sys\nbad = []\nfor m in sys.argv[1:]:\n    try:\n"
            "        importlib.import_module(m)\n    except ImportError as e:\n"
            "        bad.append(f'{m}: {e}')\nprint('\\n'.join(bad))\nsys.exit(len(bad))")
    for name, python, env in _boards(tmp_path):
        e = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        e.update(env)
        r = subprocess.run([python, "-c", code, *mods], env=e, capture_output=True, text=True,
                           timeout=300)
        bad = {line.split(":")[0] for line in r.stdout.split("\n") if line}
        has_schema = subprocess.run([python, "-c", "import ai_edge_litert.schema_py_generated"],
                                    env=e, capture_output=True).returncode == 0
        assert bad == (set() if has_schema else {"contract.tflite_file"}), \
            (name, r.stdout, r.stderr[-2000:])


def test_a_board_without_tensorflow_is_told_how_to_get_a_reference(host, tmp_path):
    art, res, bundle = host
    name, python, env = _boards(tmp_path)[0]
    r = _run(python, env, ["accuracy", art, "--out", str(tmp_path / "o"), "--images", "10"],
             ROOT)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "--reference-predictions" in r.stderr and "TensorFlow" in r.stderr
