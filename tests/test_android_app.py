"""The Android app's path outside the APK: the model copy step (pipeline.app_assets, what
`./gradlew copyModel` runs), the Gradle wrapper and build files, and edge_eval's side of the
benchmark mode when the app is missing or dies on a delegate. The app's logic itself is tested on
the JVM (android_demo/core, tests/test_android_core.py)."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import zipfile

import pytest

from conftest import ROOT, run_module
from test_edge_eval import fake_adb  # noqa: F401 - the stand-in adb fixture

ANDROID = os.path.join(ROOT, "android_demo")


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory):
    """A real 3-class .tflite (mean over the image -> 3x3 matmul -> softmax), made in seconds."""
    import tensorflow as tf

    w = tf.constant([[1.0, 0.0, -1.0], [0.5, 1.0, 0.0], [0.0, -0.5, 1.0]])

    @tf.function(input_signature=[tf.TensorSpec([1, 4, 4, 3], tf.float32)])
    def f(x):
        return tf.nn.softmax(tf.matmul(tf.reduce_mean(x, axis=[1, 2]), w))

    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    path = tmp_path_factory.mktemp("tfl") / "tiny.tflite"
    path.write_bytes(conv.convert())
    return str(path)


def _folder(root, models, tflite, labels=("a", "b", "c"), spec=None):
    """A convert/-style folder: the given model names (copies of ``tflite``), labels.txt,
    preprocessing.json and a manifest with their sha256."""
    from contract.preprocessing import PreprocessingSpec

    root.mkdir(parents=True, exist_ok=True)
    arts = []
    for name, recipe in models:
        shutil.copy(tflite, root / name)
        arts.append({"file": name, "recipe": recipe, "target": "tflite",
                     "sha256": _sha(root / name), "bytes": os.path.getsize(root / name)})
    (root / "labels.txt").write_text("\n".join(labels) + "\n")
    (root / "preprocessing.json").write_text(json.dumps(
        spec if spec is not None else PreprocessingSpec(input_size=[4, 4]).to_dict()))
    (root / "manifest.json").write_text(json.dumps({"artifacts": arts, "sources": {}}))
    return root


def _contents(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else None


def _quiet(*a, **k):
    pass


# --------------------------------------------------------------------------------------------
# the model copy step
# --------------------------------------------------------------------------------------------
def test_copies_exactly_the_named_model_and_replaces_the_last_one(tmp_path, tiny_tflite):
    from pipeline import app_assets

    art = _folder(tmp_path / "artifacts" / "demo", [("m_fp32.tflite", "fp32"),
                                                    ("m_dyn.tflite", "dynamic_wi8_afp32")],
                  tiny_tflite)
    into = tmp_path / "app" / "assets" / "model"
    p = app_assets.install(str(art), str(into), model="m_dyn.tflite", log=_quiet)
    assert _contents(into) == ["labels.txt", "m_dyn.tflite", "model.json", "preprocessing.json"]
    pointer = json.loads((into / "model.json").read_text())
    assert pointer == p and pointer["model"] == "m_dyn.tflite"
    assert pointer["sha256"] == _sha(into / "m_dyn.tflite") == _sha(art / "m_dyn.tflite")
    assert pointer["recipe"] == "dynamic_wi8_afp32" and pointer["schema_version"] == 1
    # by recipe, and the previous model is gone (no second .tflite for the app to pick up)
    app_assets.install(str(art), str(into), model="fp32", log=_quiet)
    assert _contents(into) == ["labels.txt", "m_fp32.tflite", "model.json", "preprocessing.json"]
    assert _contents(into.parent) == ["model"]  # no work folder left


def test_default_is_the_main_jobs_choice_including_a_selective_step(tmp_path, tiny_tflite,
                                                                    monkeypatch):
    from pipeline import app_assets

    monkeypatch.chdir(tmp_path)
    art = _folder(tmp_path / "artifacts" / "demo", [("m_int8.tflite", "static_wi8_ai8")],
                  tiny_tflite)
    _folder(tmp_path / "artifacts" / "demo_choice",
            [("m_step.tflite", "static_wi8_ai8+float:mixed_5b")], tiny_tflite)
    rep = tmp_path / "reports" / "demo"
    rep.mkdir(parents=True)
    for chosen, folder in (("m_int8.tflite", art), ("m_step.tflite", art.parent / "demo_choice")):
        (rep / "choice.json").write_text(json.dumps(
            {"chosen": {"artifact": chosen, "target": "tflite"}, "why": "test"}))
        p = app_assets.install("artifacts/demo", str(tmp_path / "model"), log=_quiet)
        assert p["model"] == chosen and p["source"] == str(folder)
        assert (tmp_path / "model" / chosen).is_file()


def _hostile_manifest(art):
    m = json.loads((art / "manifest.json").read_text())
    m["artifacts"][0]["file"] = "../../outside.tflite"
    (art / "manifest.json").write_text(json.dumps(m))


def _tampered(art):
    with open(art / "m.tflite", "ab") as f:
        f.write(b"x")


@pytest.mark.parametrize("case,setup,kw,message", [
    ("no folder", lambda t, a: shutil.rmtree(a), {"model": "m.tflite"}, "no convert/ output at"),
    ("unknown model", None, {"model": "other.tflite"}, r"choose one of \['m.tflite'\]"),
    ("tampered", lambda t, a: _tampered(a), {"model": "m.tflite"}, "does not match the manifest"),
    ("hostile name", lambda t, a: _hostile_manifest(a), {"model": "../../outside.tflite"},
     "not a file name inside"),
    ("labels mismatch", lambda t, a: (a / "labels.txt").write_text("a\nb\nc\nd\n"),
     {"model": "m.tflite"}, "has 3 outputs but .* lists 4 labels"),
    ("labels not utf-8", lambda t, a: (a / "labels.txt").write_bytes(b"\xff\xfe\x00a"),
     {"model": "m.tflite"}, "not UTF-8"),
    ("bad preprocessing", lambda t, a: (a / "preprocessing.json").write_text(
        json.dumps({"input_size": [4, 4], "channels": 3, "crop_fraction": 2, "scale": 1,
                    "offset": 0})), {"model": "m.tflite"}, "crop_fraction"),
    ("no preprocessing", lambda t, a: os.remove(a / "preprocessing.json"),
     {"model": "m.tflite"}, "has no preprocessing.json"),
    ("no choice", None, {"choice_dir": "nowhere"}, "no recipe choice at"),
    ("nothing chosen", lambda t, a: (t / "choice.json").write_text(json.dumps(
        {"chosen": None, "why": "no artifact is within 0.3 points"})), {"choice_dir": "T"},
     "chose no artifact .*within 0.3 points"),
    ("chosen not an object", lambda t, a: (t / "choice.json").write_text(json.dumps(
        {"chosen": "m.tflite"})), {"choice_dir": "T"}, "'chosen' is not an object"),
    ("chosen elsewhere", lambda t, a: (t / "choice.json").write_text(json.dumps(
        {"chosen": {"artifact": "gone.tflite", "target": "tflite"}})), {"choice_dir": "T"},
     "is in neither"),
])
def test_bad_input_gets_one_message_and_leaves_the_previous_assets(tmp_path, tiny_tflite, case,
                                                                   setup, kw, message):
    from pipeline import app_assets
    from edge_eval.harness import EvalError

    good = _folder(tmp_path / "good", [("g.tflite", "fp32")], tiny_tflite)
    into = tmp_path / "assets" / "model"
    app_assets.install(str(good), str(into), model="g.tflite", log=_quiet)
    before = {n: _sha(into / n) for n in os.listdir(into)}
    art = _folder(tmp_path / "art", [("m.tflite", "fp32")], tiny_tflite)
    if setup:
        setup(tmp_path, art)
    kw = {k: (str(tmp_path) if v == "T" else v) for k, v in kw.items()}
    with pytest.raises(EvalError, match=message):
        app_assets.install(str(art), str(into), log=_quiet, **kw)
    assert {n: _sha(into / n) for n in os.listdir(into)} == before, case
    assert _contents(into.parent) == ["model"]
    assert not (tmp_path / "outside.tflite").exists()


def test_an_interrupted_copy_leaves_the_previous_assets_and_the_rerun_finishes(
        tmp_path, tiny_tflite, monkeypatch):
    from pipeline import app_assets

    art = _folder(tmp_path / "art", [("a.tflite", "fp32"), ("b.tflite", "dynamic")], tiny_tflite)
    into = tmp_path / "assets" / "model"
    app_assets.install(str(art), str(into), model="a.tflite", log=_quiet)
    # a copy killed with -9 by an earlier run: its work folder names a dead pid
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = into.parent / f".app-{dead.pid}-x1"
    stale.mkdir()
    (stale / "b.tflite").write_bytes(b"half")
    real = shutil.copyfile
    calls = []

    def dies_on_the_second_file(src, dst, *a, **k):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the copy
        return real(src, dst, *a, **k)

    monkeypatch.setattr(shutil, "copyfile", dies_on_the_second_file)
    with pytest.raises(KeyboardInterrupt):
        app_assets.install(str(art), str(into), model="b.tflite", log=_quiet)
    assert json.loads((into / "model.json").read_text())["model"] == "a.tflite"
    assert _contents(into) == ["a.tflite", "labels.txt", "model.json", "preprocessing.json"]
    assert _contents(into.parent) == ["model"]  # the stale folder swept, its own removed
    monkeypatch.setattr(shutil, "copyfile", real)
    app_assets.install(str(art), str(into), model="b.tflite", log=_quiet)
    assert json.loads((into / "model.json").read_text())["model"] == "b.tflite"


def test_command_line(tmp_path, tiny_tflite):
    art = _folder(tmp_path / "art", [("m.tflite", "fp32")], tiny_tflite)
    into = tmp_path / "model"
    p = run_module(["pipeline.app_assets", str(art), "--model", "m.tflite",
                    "--into", str(into)])
    assert p.returncode == 0, p.stderr
    assert "m.tflite (fp32) + labels.txt + preprocessing.json ->" in p.stdout
    assert (into / "model.json").is_file()
    p = run_module(["pipeline.app_assets", str(tmp_path / "nope"), "--into", str(into)])
    assert p.returncode == 2 and p.stderr.startswith("error: no convert/ output at"), p.stderr
    assert "Traceback" not in p.stderr


# --------------------------------------------------------------------------------------------
# the Gradle project, read (no Android SDK or Maven here to build it)
# --------------------------------------------------------------------------------------------
# AGP line -> the oldest Gradle it runs on (developer.android.com's compatibility table)
AGP_MIN_GRADLE = {"8.5": (8, 7), "8.6": (8, 7), "8.7": (8, 9), "8.8": (8, 10), "8.9": (8, 11)}


def _wrapper_props():
    text = open(os.path.join(ANDROID, "gradle", "wrapper", "gradle-wrapper.properties")).read()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_the_wrapper_is_committed_and_pins_a_gradle_the_plugin_supports():
    props = _wrapper_props()
    gradle = re.search(r"gradle-(\d+)\.(\d+)(?:\.\d+)?-bin\.zip$", props["distributionUrl"])
    assert gradle, props["distributionUrl"]
    agp = re.search(r'"com.android.application" version "(\d+\.\d+)\.\d+"',
                    open(os.path.join(ANDROID, "build.gradle")).read()).group(1)
    assert (int(gradle.group(1)), int(gradle.group(2))) >= AGP_MIN_GRADLE[agp]
    assert re.fullmatch(r"[0-9a-f]{64}", props["distributionSha256Sum"])
    assert os.access(os.path.join(ANDROID, "gradlew"), os.X_OK)
    assert os.path.isfile(os.path.join(ANDROID, "gradlew.bat"))
    with zipfile.ZipFile(os.path.join(ANDROID, "gradle", "wrapper", "gradle-wrapper.jar")) as z:
        assert "org/gradle/wrapper/GradleWrapperMain.class" in z.namelist()


def test_the_wrapper_refuses_a_download_that_is_not_the_pinned_gradle(tmp_path):
    """The committed wrapper jar checks distributionSha256Sum: pointed at another zip (a local
    file, nothing is downloaded) it stops before running anything."""
    java = shutil.which("java")
    if java is None:
        pytest.skip("no java on this machine")
    proj = tmp_path / "p"
    shutil.copytree(os.path.join(ANDROID, "gradle"), proj / "gradle")
    shutil.copy(os.path.join(ANDROID, "gradlew"), proj / "gradlew")
    fake = tmp_path / "gradle-8.9-bin.zip"
    with zipfile.ZipFile(fake, "w") as z:
        z.writestr("gradle-8.9/bin/gradle", "#!/bin/sh\necho should not run\n")
    props = proj / "gradle" / "wrapper" / "gradle-wrapper.properties"
    props.write_text(re.sub(r"distributionUrl=.*", "distributionUrl=" + fake.as_uri().replace(
        ":", "\\:"), props.read_text()))
    p = subprocess.run(["sh", str(proj / "gradlew"), "--version"], cwd=proj,
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, GRADLE_USER_HOME=str(tmp_path / "home")))
    out = p.stdout + p.stderr
    assert p.returncode != 0 and "Verification of Gradle distribution failed" in out, out
    assert _wrapper_props()["distributionSha256Sum"] in out
    assert "should not run" not in out


def test_build_files_copy_on_request_and_check_every_build():
    gradle = open(os.path.join(ANDROID, "app", "build.gradle")).read()
    from edge_eval.android import protocol

    assets = protocol()["assets"]
    # the copy is the pipeline's own command, run from the repository root, only when asked
    assert '"-m", "pipeline.app_assets"' in gradle and "workingDir repoRoot" in gradle
    assert 'preBuild.dependsOn("checkModel")' in gradle
    assert 'preBuild.dependsOn("copyModel")' not in gradle
    assert f'file("src/main/assets/{assets["dir"]}")' in gradle
    assert f'"{assets["pointer"]}"' in gradle
    litert = set(re.findall(r'"com\.google\.ai\.edge\.litert:[\w-]+:\$(\w+)"', gradle))
    assert litert == {"litert"}, "one LiteRT version for every LiteRT artifact"
    version = re.search(r'def litert = "(\d+)\.(\d+)\.(\d+)"', gradle)
    # LiteRT 2.x's CompiledModel (GPU, NPU); from 2.3 the GPU accelerator is its own artifact
    assert (int(version.group(1)), int(version.group(2))) >= (2, 3)
    artifacts = set(re.findall(r'"com\.google\.ai\.edge\.litert:([\w-]+):', gradle))
    assert artifacts == {"litert", "litert-gpu"}, artifacts
    assert 'buildConfigField "String", "LITERT_VERSION", "\\"$litert\\""' in gradle
    ignore = open(os.path.join(ANDROID, ".gitignore")).read().split()
    for p in ("build/", "app/build/", ".gradle/", "local.properties",
              f"app/src/main/assets/{assets['dir']}/"):
        assert p in ignore, p


def test_the_benchmark_activity_needs_the_shells_permission():
    import xml.etree.ElementTree as ET

    from edge_eval.android import protocol

    ns = "{http://schemas.android.com/apk/res/android}"
    root = ET.parse(os.path.join(ANDROID, "app", "src", "main", "AndroidManifest.xml")).getroot()
    acts = {a.get(ns + "name"): a for a in root.iter("activity")}
    bench = acts[protocol()["activity"]]
    assert bench.get(ns + "permission") == protocol()["permission"] == "android.permission.DUMP"
    assert acts[".MainActivity"].get(ns + "permission") is None
    # rotation and dark mode do not recreate a running benchmark; the GPU sees OpenCL
    assert {"orientation", "screenSize", "uiMode"} <= set(bench.get(ns + "configChanges").split("|"))
    libs = {u.get(ns + "name"): u.get(ns + "required") for u in root.iter("uses-native-library")}
    assert libs.get("libOpenCL.so") == "false"


# --------------------------------------------------------------------------------------------
# edge_eval's side of the benchmark mode: the app missing, or dying on one delegate
# --------------------------------------------------------------------------------------------
def _fake_models(root):
    """A folder android.run accepts (it pushes the files, it does not open them)."""
    root.mkdir(parents=True)
    (root / "m.tflite").write_bytes(b"TFL3 test bytes")
    (root / "labels.txt").write_text("a\nb\n")
    (root / "preprocessing.json").write_text("{}")
    (root / "manifest.json").write_text(json.dumps({"artifacts": [
        {"file": "m.tflite", "recipe": "fp32", "target": "tflite",
         "sha256": _sha(root / "m.tflite")}], "sources": {}}))
    return root


def _app_record(tmp_path, monkeypatch):
    from contract import records

    rec = records.new_record("latency", runtime="android-app", delegate="xnnpack", threads=4,
                             warmup_runs=5, runs=50, batch_size=1,
                             latency_ms={k: 1.0 for k in ("min", "p50", "p90", "p99", "mean",
                                                          "std")})
    (tmp_path / "app_record.json").write_text(json.dumps(rec))
    monkeypatch.setenv("FAKE_APP_RECORD", str(tmp_path / "app_record.json"))


def test_an_app_that_is_not_installed_is_said_at_once(tmp_path, fake_adb, monkeypatch):  # noqa: F811
    from edge_eval import android

    adb, _ = fake_adb
    _app_record(tmp_path, monkeypatch)
    monkeypatch.setenv("FAKE_APP_MISSING", "1")
    art = _fake_models(tmp_path / "art")
    rows = android.run(str(art), str(tmp_path / "out"), adb=adb, timeout=600, log=_quiet)
    assert [r["status"] for r in rows] == ["failed"]
    assert "did not start" in rows[0]["error"] and "installDebug" in rows[0]["error"]
    assert "does not exist" in rows[0]["error"]


def test_a_delegate_that_kills_the_app_loses_only_itself(tmp_path, fake_adb, monkeypatch):  # noqa: F811
    from contract import records
    from edge_eval import android

    adb, _ = fake_adb
    _app_record(tmp_path, monkeypatch)
    monkeypatch.setenv("FAKE_APP_CRASH_ON", "GPU")
    art = _fake_models(tmp_path / "art")
    rows = android.run(str(art), str(tmp_path / "out"), adb=adb, delegates=["cpu", "gpu"],
                       timeout=2, log=_quiet)
    assert [(r["delegate"], r["status"]) for r in rows] == [("xnnpack", "ok"), ("gpu", "failed")]
    assert "stopped before reporting gpu" in rows[1]["error"]
    assert all(records.validate(r) == [] for r in rows)
