"""android_demo/core on the JVM (mvn -o test), fed golden vectors from the Python pipeline.

One source of truth for preprocessing: the committed golden vectors (tests/golden_vectors.py) are
what edge_eval.preprocess (itself checked against train/'s TF pipeline) feeds a float and an
int8/uint8-input model; this file checks the pipeline still makes exactly them, the Java core must
reproduce them (within 1/255 per value, one quantization level), and the record the Java
benchmark runner writes must pass edge_eval's schema validation.
"""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from conftest import ROOT

CORE = os.path.join(ROOT, "android_demo", "core")


def test_golden_vectors_are_what_the_pipeline_makes():
    """The committed golden.json is what tests/golden_vectors.py makes today: the same images
    and specs, the same float inputs (to the 7 digits stored), and integer inputs that are
    exactly the harness's quantization of those floats."""
    import golden_vectors
    from contract.litert import quantize

    with open(golden_vectors.PATH) as f:
        committed = json.load(f)["cases"]
    fresh = golden_vectors.cases()
    assert [c["name"] for c in committed] == [c["name"] for c in fresh]
    for old, new in zip(committed, fresh):
        for key in ("height", "width", "rgb", "spec"):
            assert old[key] == new[key], (old["name"], key)
        want = np.asarray(old["float"], np.float32)
        got = np.asarray(new["float"], np.float32)
        assert want.shape == got.shape == (np.prod(new["spec"]["input_size"]) * 3,)
        # stored to 7 decimals: a value may round the other way on another CPU's resize
        assert np.abs(want - got).max() <= 2e-7, old["name"]
        assert len(old["quantized"]) == 2
        for q in old["quantized"]:
            again = quantize(want, q["scale"], q["zero_point"], q["dtype"])
            assert again.astype(int).tolist() == q["values"], (old["name"], q["dtype"])


def test_java_core_matches_python(tmp_path):
    """mvn -o test on the committed golden vectors (as on a fresh clone), plus the Java
    benchmark runner's record checked against edge_eval's schema."""
    mvn = shutil.which("mvn")
    if mvn is None:
        pytest.skip("Maven is not installed (apt-get install maven default-jdk-headless)")
    from contract import records

    sample = tmp_path / "sample_record.json"
    p = subprocess.run([mvn, "-o", "-q", "test", f"-Drecord.out={sample}",
                        f"-Dschema.dir={os.path.join(ROOT, 'contract', 'schema')}"],
                       cwd=CORE, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    recs = json.loads(sample.read_text())
    assert [r["kind"] for r in recs] == ["latency", "accuracy", "latency", "accuracy"]
    assert [r["delegate"] for r in recs] == ["xnnpack", "xnnpack", "nnapi", "nnapi"]
    for r in recs:
        assert records.validate(r) == [], records.validate(r)
    assert recs[0]["latency_ms"]["p50"] == pytest.approx(3.0)


@pytest.mark.slow
def test_converted_integer_models_take_the_golden_quantization(converted):
    """The golden vectors' int8/uint8 input quantization is the one our converter gives a
    [-1, 1] input: the Java core is checked at the parameters real models carry."""
    import golden_vectors
    from contract.litert import TFLiteModel

    art, manifest = converted
    by = {a["recipe"]: a["file"] for a in manifest["artifacts"]}
    for (dtype, scale, zp), recipe in zip(golden_vectors.QUANTIZATION,
                                          ("static_wi8_ai8_int8io", "static_wi8_ai8_uint8io")):
        m = TFLiteModel(os.path.join(art, by[recipe]))
        assert str(m.input_dtype) == dtype
        got_scale, got_zp = m.input_quantization
        assert got_scale == pytest.approx(scale, rel=1e-3) and abs(got_zp - zp) <= 1, recipe


def _debian_android_jar():
    import glob

    jars = sorted(glob.glob("/usr/lib/android-sdk/platforms/*/android.jar"))
    return jars[-1] if jars else None


def test_app_sources_compile_against_a_debian_android_jar(tmp_path):
    """The app's classes that need only the Android framework compile against Debian's
    android.jar (package android-sdk-platform-*), when that package can be had."""
    jar = _debian_android_jar()
    javac = shutil.which("javac")
    if jar is None or javac is None:
        pytest.skip("no android.jar from Debian packages on this machine (android-sdk-platform-* "
                    "has no installation candidate here); the rest of the app also needs the "
                    "AndroidX and LiteRT AARs, which no Debian package provides")
    app = os.path.join(ROOT, "android_demo", "app", "src", "main", "java", "org", "inceptionedge",
                       "demo")
    core = os.path.join(CORE, "src", "main", "java")
    p = subprocess.run([javac, "-d", str(tmp_path), "-cp", jar, "-sourcepath", core,
                        os.path.join(app, "Pixels.java")], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_app_classes_compile_against_litert_2_signatures(tmp_path):
    """The app's LiteRT 2.x classes (CompiledModelClassifier, BenchmarkActivity's modes,
    ModelFiles) compile against stand-ins of the Android framework and of LiteRT's Java-visible
    API as its Kotlin sources declare it (tests/android_stubs): a renamed method, a checked
    LiteRtException left unhandled or a wrong overload fails here, not first on a user's
    machine. It does not show they run: that takes the real AARs and a phone."""
    javac = shutil.which("javac")
    if javac is None:
        pytest.skip("no JDK (apt-get install default-jdk-headless)")
    app = os.path.join(ROOT, "android_demo", "app", "src", "main", "java", "org", "inceptionedge",
                       "demo")
    src = os.pathsep.join([os.path.join(ROOT, "tests", "android_stubs"),
                           os.path.join(CORE, "src", "main", "java")])
    files = [os.path.join(app, f) for f in ("CompiledModelClassifier.java",
                                            "BenchmarkActivity.java", "ModelFiles.java",
                                            "Pixels.java")]
    p = subprocess.run([javac, "-Xlint:unchecked", "-Werror", "-d", str(tmp_path), "-sourcepath",
                        src, *files], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    built = {os.path.basename(f) for _, _, fs in os.walk(tmp_path) for f in fs}
    assert {"CompiledModelClassifier.class", "BenchmarkActivity.class"} <= built
