"""The user's runtime: preprocessing fingerprints (each injected fault named), MediaPipe Tasks as
an evaluation runtime, delegation counts, and LiteRT's CompiledModel API."""
import dataclasses
import json
import os

import numpy as np
import pytest

from contract.preprocessing import PreprocessingSpec, central_crop_box, named_spec
from edge_eval import fingerprint as fp

SPECS = {  # the demo's (grey source, no crop) and Inception's (colour, 0.875 crop), smaller
    "demo": dataclasses.replace(named_spec("inception", [75, 75]), source_channels=1,
                                crop_fraction=1.0),
    "inception": named_spec("inception", [64, 48]),
}


def _independent(images, spec, fault):
    """The runtime's tensors with one fault, made by code other than fingerprint.reference
    (PIL's resizers, a hand-written letterbox), so the diagnosis is not checked against itself."""
    from PIL import Image

    h, w = spec.input_size
    scale, offset = spec.scales[0], spec.offsets[0]
    out = []
    for im in images:
        top, left, ch, cw = central_crop_box(im.shape[0], im.shape[1], spec.crop_fraction)
        crop = im[top:top + ch, left:left + cw]
        if fault == "colour order":
            x = fp.harness_tensors([im[..., ::-1]], spec)[0]
        elif fault == "range":  # [0, 1] instead of [-1, 1]: a model exported with x / 255
            x = fp.harness_tensors([im], spec)[0] * 0.5 + 0.5
        elif fault == "resize filter":  # PIL's bicubic (a = -0.5, antialiased)
            x = np.asarray(Image.fromarray(crop).resize((w, h), Image.BICUBIC),
                           np.float32) * scale + offset
        elif fault == "crop fraction":  # the whole image, where the spec crops (or 0.8)
            other = 0.8 if spec.crop_fraction == 1.0 else 1.0
            x = fp.harness_tensors([im], dataclasses.replace(spec, crop_fraction=other))[0]
        elif fault == "letterbox":  # aspect kept, grey bars (114, YOLO's)
            s = min(h / im.shape[0], w / im.shape[1])
            nh, nw = round(im.shape[0] * s), round(im.shape[1] * s)
            canvas = np.full((h, w, 3), 114, np.uint8)
            t, l = (h - nh) // 2, (w - nw) // 2
            canvas[t:t + nh, l:l + nw] = np.asarray(Image.fromarray(im).resize(
                (nw, nh), Image.BILINEAR))
            x = canvas.astype(np.float32) * scale + offset
        out.append(x)
    return out


@pytest.mark.parametrize("spec_name", sorted(SPECS))
@pytest.mark.parametrize("fault", fp.CAUSES)
def test_each_injected_preprocessing_fault_is_named(spec_name, fault):
    spec = SPECS[spec_name]
    grey = spec.source_channels == 1
    if grey and fault == "colour order":
        pytest.skip("a grey-trained model's runtimes grey the image: colour order is moot")
    images = fp.canaries(grey)
    v = fp.compare(_independent(images, spec, fault), images, spec)
    assert v["verdict"] == "differs" and v["cause"] == fault, v
    assert v["fix_in"] == fp.WHERE[fault] and v["error"] > 2 * fp.TOLERANCE


@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_the_real_pipelines_raise_nothing(spec_name):
    """The harness's OpenCV path, train/'s TensorFlow pipeline, the Android core (Java) and a
    Core ML package's scale/bias all match preprocessing.json on the canaries."""
    import shutil

    spec = SPECS[spec_name]
    images = fp.canaries(spec.source_channels == 1)
    runtimes = [fp.Runtime("harness", lambda ims: fp.harness_tensors(ims, spec)),
                fp.Runtime("tensorflow", lambda ims: fp.tensorflow_tensors(ims, spec)),
                fp.Runtime("coreml", lambda ims: fp.coreml_tensors(
                    ims, spec, {"scale": spec.scales[0], "bias": spec.offsets,
                                "color_space": "RGB"}))]
    if shutil.which("javac"):
        import tempfile

        runtimes.append(fp.Runtime("android core", fp.java_tensors(tempfile.mkdtemp(), spec)))
    out = fp.fingerprint(runtimes, spec, images)
    assert len(out) == len(runtimes)
    for name, v in out.items():
        assert v["verdict"] == "match" and v["error"] < 1e-5, (name, v)
    # a Core ML package with the wrong bias (the [0, 1] export) is named
    bad = fp.compare(fp.coreml_tensors(images, spec, {"scale": 1 / 255, "bias": [0, 0, 0]}),
                     images, spec)
    assert bad["cause"] == "range" and "[-0.0, 1.0]" in bad["detail"].replace("[0.0", "[-0.0")


# --------------------------------------------------------------------------------------------
# MediaPipe Tasks (its own environment: python -m edge_eval.mediapipe_rt --setup)
# --------------------------------------------------------------------------------------------
def _mediapipe():
    from edge_eval import mediapipe_rt

    if mediapipe_rt.interpreter() is None:
        pytest.skip(mediapipe_rt.missing_reason())


def test_mediapipe_lives_apart_from_the_projects_opencv():
    """The main environment keeps one cv2 (opencv-python-headless) and never imports
    mediapipe; MediaPipe's interpreter is another one."""
    import importlib.metadata as md
    import subprocess
    import sys

    from edge_eval import mediapipe_rt

    names = {d.metadata["Name"].lower() for d in md.distributions()}
    assert "opencv-contrib-python" not in names and "mediapipe" not in names
    exe = mediapipe_rt.interpreter()
    if exe is not None:
        prefix = subprocess.run([exe, "-c", "import sys; print(sys.prefix)"],
                                capture_output=True, text=True, check=True).stdout.strip()
        assert os.path.realpath(prefix) != os.path.realpath(sys.prefix)


@pytest.mark.slow
def test_mediapipe_probe_reads_the_tensor_mediapipe_builds(converted, tmp_path):
    """The probe of a float and a uint8-input artifact: MediaPipe's own input tensor, which
    differs from preprocessing.json only by its resize grid (named); fed BGR frames or with
    the crop's region of interest dropped, the fault is named."""
    _mediapipe()
    art, manifest = converted
    spec = PreprocessingSpec.from_dict(manifest["preprocessing"])
    images = fp.canaries(spec.source_channels == 1)
    for recipe in ("fp32", "static_wi8_ai8_uint8io"):
        e = next(a for a in manifest["artifacts"] if a["recipe"] == recipe)
        v = fp.compare(fp.mediapipe_tensors(os.path.join(art, e["file"]), spec,
                                            str(tmp_path))(images), images, spec)
        assert v["verdict"] == "differs" and v["cause"] == "resize filter", v
        assert "bilinear_asymmetric" in v["detail"] and v["explained_error"] < 0.005
    colour = dataclasses.replace(spec, source_channels=3, crop_fraction=0.875)
    images = fp.canaries(False)
    e = next(a for a in manifest["artifacts"] if a["recipe"] == "fp32")
    path = os.path.join(art, e["file"])
    v = fp.compare(fp.mediapipe_tensors(path, colour, str(tmp_path), bgr_frames=True)(images),
                   images, colour)
    assert v["cause"] == "colour order", v
    v = fp.compare(fp.mediapipe_tensors(path, colour, str(tmp_path), roi=False)(images),
                   images, colour)
    assert v["cause"] == "crop fraction" and "1" in v["detail"], v
    v = fp.compare(fp.mediapipe_tensors(path, colour, str(tmp_path))(images), images, colour)
    assert v["cause"] == "resize filter", v  # with the region of interest: only the grid


@pytest.mark.slow
def test_mediapipe_runtime_rows_pair_with_the_harness(converted, tmp_path):
    """``--runtime mediapipe``: a row per .tflite through ImageClassifier with its paired
    difference from the harness, the int8-input model unavailable with the reason (also in
    the manifest), no alignment warning, and the report's two sections."""
    _mediapipe()
    import shutil

    from edge_eval import harness, report

    art, manifest = converted
    local = str(tmp_path / "art")
    shutil.copytree(art, local)
    out = str(tmp_path / "rep")
    rows = harness.evaluate(local, out, images=60, only=["fp32", "static_wi8_ai8_int8io",
                                                         "static_wi8_ai8_uint8io"],
                            runtime="mediapipe", log=lambda *a, **k: None)
    mp = {r["recipe"]: r for r in rows if r.get("evaluator") == "mediapipe"}
    assert set(mp) == {"fp32", "static_wi8_ai8_int8io", "static_wi8_ai8_uint8io"}
    assert mp["static_wi8_ai8_int8io"]["status"] == "unavailable"
    assert "int8" in mp["static_wi8_ai8_int8io"]["error"]
    entry = next(a for a in manifest["artifacts"] if a["recipe"] == "static_wi8_ai8_int8io")
    assert entry["mediapipe"] == {"runs": False, "reason": mp["static_wi8_ai8_int8io"]["error"]}
    for r in ("fp32", "static_wi8_ai8_uint8io"):
        row = mp[r]
        assert row["status"] == "ok" and row["accuracy"]["examples"] == 60
        assert row["runtime"].startswith("mediapipe ")
        v = row["vs_harness"]
        b = v["bootstrap"]
        assert b["ci_low_points"] <= v["top1_delta_points"] <= b["ci_high_points"]
        assert 0.5 < v["argmax_agreement"] <= 1.0
        assert row["mediapipe"]["unaligned_buffer_warnings"] == 0
        assert row["fingerprint"]["cause"] == "resize filter"
    harness_rows = report.load(out)
    assert not any(r.get("evaluator") == "mediapipe" for r in harness_rows)
    path, _ = report.write(out)
    md = open(path).read()
    assert "## Harness vs MediaPipe" in md and "## Preprocessing fingerprints" in md
    assert "accepts float32 or uint8 input tensors only" in md
    prints = json.load(open(os.path.join(out, "fingerprints.json")))["runtimes"]
    assert prints["harness"]["verdict"] == "match"


def test_runtime_mediapipe_without_mediapipe_is_one_clear_error(tmp_path, monkeypatch):
    from edge_eval import harness, mediapipe_rt

    monkeypatch.setenv("MEDIAPIPE_PYTHON", str(tmp_path / "nope" / "python"))
    mediapipe_rt.interpreter.cache_clear()
    try:
        (tmp_path / "art").mkdir()
        with pytest.raises(harness.EvalError, match="edge_eval.mediapipe_rt --setup"):
            harness.evaluate(str(tmp_path / "art"), str(tmp_path / "out"), runtime="mediapipe")
    finally:
        mediapipe_rt.interpreter.cache_clear()


# --------------------------------------------------------------------------------------------
# delegation and the CompiledModel API
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_delegation_is_counted_and_the_flag_fails_a_split_graph(converted, tmp_path):
    """XNNPACK takes every node of the float model and - with its pools and softmax made float
    islands (convert/islands.py) - of the full-int8 one; the Edge TPU's uint8 recipe keeps its
    int8 AVERAGE_POOL_2D, which XNNPACK lacks, so its graph splits; with XNNPACK off nothing is
    delegated. --require-full-delegation fails exactly the split rows."""
    from edge_eval import harness

    art, manifest = converted
    by_recipe = {a["recipe"]: a for a in manifest["artifacts"]}
    assert by_recipe["static_wi8_ai8"]["float_islands"] == 10  # 9 pools + the softmax
    assert by_recipe["static_wi8_ai8_uint8io"]["float_islands"] == 0
    rows = harness.benchmark(art, str(tmp_path), delegates=("xnnpack",), runs=10,
                             min_seconds=0.2, only=["fp32", "static_wi8_ai8",
                                                    "static_wi8_ai8_uint8io"],
                             require_full_delegation=True,
                             runtimes=("interpreter", "compiled_model"),
                             log=lambda *a, **k: None)
    by = {(r["recipe"], r["runtime"]): r for r in rows}
    for recipe in ("fp32", "static_wi8_ai8"):
        f = by[(recipe, "litert")]
        assert f["status"] == "ok" and f["delegation"]["full"], f
        assert f["delegation"]["delegated"] == f["delegation"]["nodes"] > 100
        assert f["delegation"]["partitions"] == 1
        cm = by[(recipe, "litert compiled_model")]
        assert cm["status"] == "ok" and cm["delegation"]["full"] and cm["latency_ms"]["p50"] > 0
    q = by[("static_wi8_ai8_uint8io", "litert")]
    assert q["status"] == "failed" and "not fully delegated" in q["error"]
    d = q["delegation"]
    assert d["cpu_ops"].get("AVERAGE_POOL_2D") == 9 and d["partitions"] > 1
    assert d["delegated"] == d["nodes"] - sum(d["cpu_ops"].values())
    assert by[("static_wi8_ai8_uint8io", "litert compiled_model")]["status"] == "failed"
    off = harness.benchmark(art, str(tmp_path / "off"), delegates=("none",), runs=10,
                            min_seconds=0.2, only=["fp32"], log=lambda *a, **k: None)[0]
    assert off["status"] == "ok" and off["delegation"]["delegated"] == 0


@pytest.mark.slow
def test_float_islands_change_no_more_than_rounding(converted):
    """The rewritten int8 graph against the same conversion without the pass: the same output
    grid, and on the check images at most a couple of quantization steps apart."""
    from contract.litert import TFLiteModel
    from convert.islands import float_islands

    art, manifest = converted
    e = next(a for a in manifest["artifacts"] if a["recipe"] == "static_wi8_ai8_uint8io")
    data = open(os.path.join(art, e["file"]), "rb").read()  # no islands: the Edge TPU recipe
    fixed, n = float_islands(data)
    assert n == 10 and float_islands(fixed)[1] == 0  # idempotent: nothing int8 is left to wrap
    a, b = TFLiteModel(model_content=data), TFLiteModel(model_content=fixed)
    assert b.delegation("xnnpack")["cpu_ops"] == {"QUANTIZE": 2}  # only the uint8 I/O converts
    x = np.random.RandomState(0).uniform(-1, 1, (32, 75, 75, 3)).astype(np.float32)
    pa, pb = a.predict(x), b.predict(x)
    step = a.output_quantization[0]
    assert np.abs(pa - pb).max() <= 32 * step  # a few steps through the rest of the network
    assert np.mean(pa.argmax(1) == pb.argmax(1)) >= 0.9


@pytest.mark.slow
def test_profile_cuts_the_tiny_model_into_its_blocks(converted, tmp_path):
    """python -m edge_eval profile: the stem's layers and the eleven mixed blocks as segments,
    whose times add up to the whole model's; the Edge TPU recipe's int8 pools named as the
    CPU-kernel ops of the blocks they sit in; fp32 and int8 side by side in one table."""
    from edge_eval import profile

    art, manifest = converted
    by = {a["recipe"]: os.path.join(art, a["file"]) for a in manifest["artifacts"]
          if a["target"] == "tflite"}
    f = profile.profile(by["fp32"], runs=5, warmup=1, log=lambda *a, **k: None)
    q = profile.profile(by["static_wi8_ai8_uint8io"], runs=5, warmup=1,
                        log=lambda *a, **k: None)
    names = [s["segment"] for s in f["segments"]]
    assert [n for n in names if n.startswith("mixed")] == [f"mixed{i}" for i in range(11)]
    assert sum(s["ms"] for s in f["segments"]) == pytest.approx(f["total_ms"], rel=1e-9)
    assert sum(sum(s["ops"].values()) for s in f["segments"]) == f["delegation"]["nodes"]
    assert not any(s["cpu_ops"] for s in f["segments"])
    pools = {s["segment"]: s["cpu_ops"].get("AVERAGE_POOL_2D") for s in q["segments"]
             if s["cpu_ops"].get("AVERAGE_POOL_2D")}
    assert sorted(pools) == sorted(f"mixed{i}" for i in (0, 1, 2, 4, 5, 6, 7, 9, 10))
    md = profile.table([f, q])
    assert "| mixed3 |" in md and "xnnpack took" in md and "#2 CPU-kernel ops" in md
    from edge_eval.__main__ import main

    out = str(tmp_path / "p.json")
    assert main(["profile", by["fp32"], "--runs", "3", "--out", out]) == 0
    assert len(json.load(open(out))["profiles"][0]["segments"]) == len(f["segments"])
    assert main(["profile", str(tmp_path / "missing.tflite")]) == 2
