"""android_demo/core on the JVM (mvn -o test), fed golden vectors from the Python pipeline.

One source of truth for preprocessing: this test writes what edge_eval.preprocess (itself checked
against train/'s TF pipeline) feeds a float and an int8/uint8-input model for real images, the Java
core must reproduce it (within 1/255 per value, one quantization level), and the record the Java
benchmark runner writes must pass edge_eval's schema validation.
"""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from conftest import ROOT, needs_fmnist

CORE = os.path.join(ROOT, "android_demo", "core")


def _golden_cases(quant_models):
    from edge_eval import preprocess
    from train.data import load_fashion_mnist
    from train.preprocessing import PreprocessingSpec

    x, y = load_fashion_mnist("test")
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
    colour[:, :, 0] = np.linspace(0, 255, 52, dtype=np.uint8)  # channel order matters
    big = rng.integers(0, 256, (151, 120, 3), dtype=np.uint8)
    demo = PreprocessingSpec(input_size=[75, 75], crop_fraction=1.0, source_channels=1)
    cases = [("fashion_mnist_0", x[0], demo), ("fashion_mnist_1", x[1], demo),
             ("colour_enlarge_crop", colour, PreprocessingSpec(input_size=[96, 96])),
             ("colour_shrink_crop", big, PreprocessingSpec(input_size=[75, 75]))]
    out = []
    for name, img, spec in cases:
        f = preprocess.central(img, spec)
        rgb = np.repeat(img, 3, axis=-1) if img.shape[-1] == 1 else img
        quant = []
        for dtype, model in quant_models.items():
            q = model.quantize_input(f[None])[0]  # the harness's own conversion
            scale, zp = model.input_quantization
            quant.append({"dtype": dtype, "scale": scale, "zero_point": int(zp),
                          "values": q.astype(int).ravel().tolist()})
        out.append({"name": name, "height": int(img.shape[0]), "width": int(img.shape[1]),
                    "rgb": rgb.astype(int).ravel().tolist(), "spec": spec.to_dict(),
                    "float": [round(float(v), 7) for v in f.ravel()], "quantized": quant})
    return out


@needs_fmnist
def test_java_core_matches_python(converted, tmp_path):
    mvn = shutil.which("mvn")
    if mvn is None:
        pytest.skip("Maven is not installed (apt-get install maven default-jdk-headless)")
    from convert.litert import TFLiteModel
    from edge_eval import records

    art, manifest = converted
    by = {a["recipe"]: a["file"] for a in manifest["artifacts"]}
    models = {"int8": TFLiteModel(os.path.join(art, by["static_wi8_ai8_int8io"])),
              "uint8": TFLiteModel(os.path.join(art, by["static_wi8_ai8_uint8io"]))}
    golden = tmp_path / "golden.json"
    golden.write_text(json.dumps({"cases": _golden_cases(models)}))
    sample = tmp_path / "sample_record.json"
    p = subprocess.run([mvn, "-o", "-q", "test", f"-Dgolden.path={golden}",
                        f"-Drecord.out={sample}",
                        f"-Dschema.dir={os.path.join(ROOT, 'edge_eval', 'schema')}"],
                       cwd=CORE, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    recs = json.loads(sample.read_text())
    assert [r["kind"] for r in recs] == ["latency", "accuracy", "latency", "accuracy"]
    assert [r["delegate"] for r in recs] == ["xnnpack", "xnnpack", "nnapi", "nnapi"]
    for r in recs:
        assert records.validate(r) == [], records.validate(r)
    assert recs[0]["latency_ms"]["p50"] == pytest.approx(3.0)


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
