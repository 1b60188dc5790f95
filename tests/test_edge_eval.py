"""edge_eval/: statistics against direct computations and known values, preprocessing against TF,
the harness on real tiny artifacts (failures become rows), the host benchmark, the TF-free run side,
and the Android flow against real benchmark_model text with a stand-in adb."""
import json
import math
import os
import time
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import assert_png, ROOT, needs_fmnist
from contract.manifest import sha256_file

# --------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------


def _seeded_probs(n=500, c=10, seed=0, noise=0.0, ref=None):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c)) * 2 if ref is None else np.log(ref) + rng.normal(
        size=(n, c)) * noise
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_accuracy_and_drift_equal_a_direct_computation():
    from edge_eval import stats

    y = np.random.default_rng(1).integers(0, 10, 500)
    ref = _seeded_probs(seed=2)
    cand = _seeded_probs(seed=3, noise=0.7, ref=ref)
    acc = stats.accuracy(cand, y)
    top1 = np.mean([np.argmax(p) == t for p, t in zip(cand, y)])
    top5 = np.mean([t in sorted(range(10), key=lambda k: -p[k])[:5] for p, t in zip(cand, y)])
    assert acc["top1"] == pytest.approx(top1) and acc["top5"] == pytest.approx(top5)
    d = stats.drift(ref, cand, y, bootstrap_rounds=200)
    ref_top1 = np.mean(ref.argmax(1) == y)
    assert d["top1_delta_points"] == pytest.approx(100 * (top1 - ref_top1))
    assert d["argmax_agreement"] == pytest.approx(np.mean(ref.argmax(1) == cand.argmax(1)))
    kl = np.mean([sum(p[k] * math.log(p[k] / q[k]) for k in range(10)) for p, q in zip(ref, cand)])
    assert d["kl_divergence"] == pytest.approx(kl, rel=1e-5)
    overlap = np.mean([len(set(np.argsort(-p)[:5]) & set(np.argsort(-q)[:5])) / 5
                       for p, q in zip(ref, cand)])
    assert d["top5_overlap"] == pytest.approx(overlap)
    b = sum((r.argmax() == t) and (c.argmax() != t) for r, c, t in zip(ref, cand, y))
    assert d["mcnemar"]["b"] == b
    # per-class rows add up to the whole
    pc = d["per_class"]
    assert sum(r["examples"] for r in pc) == 500
    assert sum(r["top1"] * r["examples"] for r in pc) / 500 == pytest.approx(top1)
    assert pc == sorted(pc, key=lambda r: (r["delta_points"], -r["flips"]))


@pytest.mark.parametrize("b,c,p_exact,p_chi2", [
    (10, 2, 158 / 4096, 0.04331),    # 2*sum_{i<=2} C(12,i)/2^12; chi2 = (|10-2|-1)^2/12 = 4.083
    (0, 0, 1.0, 1.0),
    (5, 5, 1.0, 0.7518),             # chi2 = 1/10
    (30, 10, None, 0.002663),        # chi2 = 19^2/40 = 9.025 (n >= 25: chi-square p is used)
])
def test_mcnemar_known_values(b, c, p_exact, p_chi2):
    from edge_eval.stats import mcnemar

    ref = np.array([1] * b + [0] * c + [1] * 50, bool)
    cand = np.array([0] * b + [1] * c + [1] * 50, bool)
    m = mcnemar(ref, cand)
    assert (m["b"], m["c"]) == (b, c)
    if p_exact is not None:
        assert m["p_exact"] == pytest.approx(p_exact, rel=1e-9)
    assert m["p_chi2"] == pytest.approx(p_chi2, rel=2e-3)
    scipy_stats = pytest.importorskip("scipy.stats")
    if b + c:
        assert m["p_exact"] == pytest.approx(scipy_stats.binomtest(min(b, c), b + c).pvalue)


def test_bootstrap_ci_matches_the_normal_approximation():
    from edge_eval.stats import bootstrap_delta_ci

    rng = np.random.default_rng(0)
    n = 4000
    ref = rng.random(n) < 0.85
    cand = ref.copy()
    flip = rng.random(n) < 0.04
    cand[flip] = ~cand[flip]
    ci = bootstrap_delta_ci(ref, cand, rounds=2000, seed=1)
    diff = cand.astype(float) - ref
    se = diff.std(ddof=1) / math.sqrt(n)
    assert ci["delta_points"] == pytest.approx(100 * diff.mean())
    assert ci["ci_low_points"] == pytest.approx(100 * (diff.mean() - 1.96 * se), abs=0.08)
    assert ci["ci_high_points"] == pytest.approx(100 * (diff.mean() + 1.96 * se), abs=0.08)
    same = bootstrap_delta_ci(ref, ref, rounds=100)
    assert same["ci_low_points"] == same["ci_high_points"] == 0.0


# --------------------------------------------------------------------------------------------
# preprocessing: OpenCV run side vs the TF pipeline of train/
# --------------------------------------------------------------------------------------------
PREP_TOL = {"enlarge": 1e-5, "shrink": 2e-3, "jpeg": 2e-3}  # in model-input units ([-1, 1])


@pytest.mark.parametrize("src_hw,size,crop,case,order", [
    ((28, 28, 1), 75, 1.0, "enlarge", "RGB"), ((28, 28, 1), 75, 0.875, "enlarge", "RGB"),
    ((40, 52, 3), 96, 0.875, "enlarge", "RGB"), ((151, 120, 3), 96, 0.875, "shrink", "RGB"),
    ((40, 52, 3), 96, 0.875, "enlarge", "BGR")])
def test_opencv_preprocessing_matches_tf(src_hw, size, crop, case, order):
    from edge_eval import preprocess
    from train.data import batch_preprocess
    from contract.preprocessing import PreprocessingSpec

    spec = PreprocessingSpec(input_size=[size, size], crop_fraction=crop,
                             source_channels=src_hw[-1], color_order=order)
    imgs = np.random.default_rng(0).integers(0, 256, (3, *src_hw), dtype=np.uint8)
    tf_out = batch_preprocess(imgs, spec).numpy()
    cv_out = preprocess.preprocess_batch(imgs, spec)
    assert cv_out.shape == tf_out.shape == (3, size, size, 3)
    assert np.max(np.abs(cv_out - tf_out)) <= PREP_TOL[case]
    if order == "BGR":  # a BGR model gets the channels reversed, on both sides
        rgb = preprocess.preprocess_batch(imgs, PreprocessingSpec(
            input_size=[size, size], crop_fraction=crop))
        np.testing.assert_array_equal(cv_out, rgb[..., ::-1])


def test_opencv_decode_and_preprocess_match_tf_on_a_jpeg(tmp_path):
    import cv2
    import tensorflow as tf

    from edge_eval import preprocess
    from train.data import image_preprocess
    from contract.preprocessing import PreprocessingSpec

    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (180, 140, 3), dtype=np.uint8), (9, 9), 3)
    path = str(tmp_path / "a.jpg")
    cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 92])
    spec = PreprocessingSpec(input_size=[150, 150], crop_fraction=0.875)
    tf_out = image_preprocess(tf.io.read_file(path), spec).numpy()
    cv_out = preprocess.central(preprocess.decode(path), spec)
    # the same decoder (accurate integer DCT) on both sides; only resize rounding differs
    assert np.max(np.abs(cv_out - tf_out)) <= PREP_TOL["jpeg"]


def test_multi_crop_schemes():
    from edge_eval import preprocess
    from contract.preprocessing import PreprocessingSpec

    spec = PreprocessingSpec(input_size=[32, 32], crop_fraction=0.875)
    img = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    for scheme in (1, 10, 144):
        c = preprocess.crops(img, spec, scheme)
        assert c.shape == (scheme, 32, 32, 3)
    ten = preprocess.crops(img, spec, 10)
    np.testing.assert_array_equal(ten[1], ten[0][:, ::-1])  # every crop comes with its mirror
    assert len({ten[i].tobytes() for i in range(0, 10, 2)}) == 5
    with pytest.raises(ValueError, match="crop scheme"):
        preprocess.crops(img, spec, 3)


# --------------------------------------------------------------------------------------------
# the harness on real tiny artifacts
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def evaluated(converted, tmp_path_factory):
    """A copy of the tiny artifacts with one corrupt (hash updated) and one tampered file."""
    from edge_eval import harness

    src, _ = converted
    art = str(tmp_path_factory.mktemp("eval_artifacts"))
    shutil.copytree(src, art, dirs_exist_ok=True)
    m = json.load(open(os.path.join(art, "manifest.json")))
    keep = {"fp32", "static_wi8_ai8", "static_wi8_ai8_uint8io", "fp16"}
    m["artifacts"] = [a for a in m["artifacts"] if a["recipe"] in keep]
    by = {a["recipe"]: a for a in m["artifacts"]}
    corrupt = os.path.join(art, by["fp16"]["file"])  # truncated, manifest hash updated to match
    data = open(corrupt, "rb").read()
    open(corrupt, "wb").write(data[:len(data) // 3])
    by["fp16"]["sha256"] = sha256_file(corrupt)
    with open(os.path.join(art, by["static_wi8_ai8_uint8io"]["file"]), "ab") as f:
        f.write(b"tampered")  # no longer matches the manifest
    json.dump(m, open(os.path.join(art, "manifest.json"), "w"))
    out = str(tmp_path_factory.mktemp("eval_out"))
    rows = harness.evaluate(art, out, images=300, bootstrap_rounds=200, timeout=300,
                            log=lambda *a, **k: None)
    return art, out, {r["recipe"]: r for r in rows}


@needs_fmnist
def test_harness_numbers_equal_a_direct_computation(evaluated, tiny_export):
    from contract.litert import TFLiteModel
    from train.source import load_source
    from contract import records
    from edge_eval import harness, stats

    art, out, rows = evaluated
    assert set(rows) == {"float", "fp32", "static_wi8_ai8", "static_wi8_ai8_uint8io", "fp16"}
    for r in rows.values():
        assert records.validate(r) == [], (r["artifact"], records.validate(r))
    # the same 300 images, preprocessed by the run side, through the models directly
    spec = load_source(tiny_export).spec
    dcfg = harness.data_config(tiny_export)
    raw, labels, _, _ = harness.load_raw(dcfg, "test", 300, seed=0)
    from edge_eval import preprocess

    x = preprocess.preprocess_batch(raw, spec)
    ref = load_source(tiny_export).predict(x)
    m = json.load(open(os.path.join(art, "manifest.json")))
    f_int8 = {a["recipe"]: a for a in m["artifacts"]}["static_wi8_ai8"]["file"]
    p = TFLiteModel(os.path.join(art, f_int8)).predict(x, 50)
    assert rows["float"]["accuracy"]["top1"] == pytest.approx(np.mean(ref.argmax(1) == labels))
    r = rows["static_wi8_ai8"]
    assert r["status"] == "ok" and r["accuracy"]["examples"] == 300
    assert r["accuracy"]["top1"] == pytest.approx(np.mean(p.argmax(1) == labels))
    assert r["accuracy"]["top5"] == pytest.approx(stats.accuracy(p, labels)["top5"])
    assert r["drift"]["argmax_agreement"] == pytest.approx(np.mean(p.argmax(1) == ref.argmax(1)))
    assert rows["fp32"]["drift"]["argmax_agreement"] >= 0.99


@needs_fmnist
def test_per_image_predictions_pair_to_the_reports_drift(evaluated):
    """accuracy writes one predictions file per run (the float reference's reference.jsonl);
    pairing the int8 file with the reference gives the report's own drift, and the images'
    identities are those of the canonical PNGs a phone would be sent."""
    from contract import predictions
    from edge_eval import harness, stats

    art, out, rows = evaluated
    folder = os.path.join(out, predictions.DIRNAME)
    names = sorted(os.listdir(folder))
    ok = [r["artifact"] for r in rows.values() if r["status"] == "ok" and r["recipe"] != "float"]
    assert names == sorted(["reference.jsonl"] + [f"{a}.jsonl" for a in ok])
    ref = predictions.read(os.path.join(folder, "reference.jsonl"))
    r = rows["static_wi8_ai8"]
    other = predictions.read(os.path.join(folder, f"{r['artifact']}.jsonl"))
    assert other.header["sha256"] == r["sha256"] and len(other) == 300
    assert other.header["accelerator"]["requested"] == "xnnpack"
    d = stats.paired_drift(predictions.pair(ref, other), bootstrap_rounds=200)
    assert d["paired_images"] == 300
    for k in ("top1_delta_points", "top5_delta_points", "argmax_agreement"):
        assert d[k] == pytest.approx(r["drift"][k], abs=1e-9), k
    assert d["mcnemar"] == r["drift"]["mcnemar"]
    items, _, _ = harness.eval_items(harness.data_config(harness.reference_path(
        harness.load_manifest(art))), "test", 300, 0)
    assert ref.ids[:3] == [items.identity(i) for i in ref.index[:3]]


@needs_fmnist
def test_two_workers_give_the_same_rows_in_manifest_order(evaluated, tmp_path):
    """Two artifacts at a time (slowest first): the same rows, in the same order, as one at a
    time; the failed artifacts are still failed rows."""
    from edge_eval import harness

    art, out, rows = evaluated
    got = harness.evaluate(art, str(tmp_path), images=300, bootstrap_rounds=200, timeout=300,
                           threads=1, workers=2, log=lambda *a, **k: None)
    once = [json.loads(line) for line in open(os.path.join(out, "accuracy.jsonl"))]
    assert [r["artifact"] for r in got] == [r["artifact"] for r in once]
    assert [r["status"] for r in got] == [r["status"] for r in once]
    for a, b in zip(got, once):
        assert a["workers"] == 2 and a["threads"] == 1
        if a["status"] == "ok":  # 1 vs 2 threads may flip an argmax at a float tie, no more
            assert a["accuracy"]["top1"] == pytest.approx(b["accuracy"]["top1"], abs=1 / 300)
    with pytest.raises(harness.EvalError, match="workers"):
        harness.evaluate(art, str(tmp_path), workers=0)


@needs_fmnist
def test_corrupt_and_tampered_artifacts_are_failed_rows(evaluated):
    _, out, rows = evaluated
    assert rows["fp16"]["status"] == "failed" and rows["fp16"]["error"]
    assert rows["static_wi8_ai8_uint8io"]["status"] == "failed"
    assert "sha256" in rows["static_wi8_ai8_uint8io"]["error"]
    assert rows["fp32"]["status"] == rows["static_wi8_ai8"]["status"] == "ok"


@needs_fmnist
def test_report_and_plots_from_real_records(evaluated):
    from edge_eval.__main__ import main

    _, out, rows = evaluated
    assert main(["report", out]) == 0
    for name in ("report.md", "results.csv", "results.json"):
        assert os.path.getsize(os.path.join(out, name)) > 0
    plots = sorted(f for f in os.listdir(out) if f.endswith(".png"))
    assert "per_class_drift.png" in plots
    for name in plots:
        assert_png(os.path.join(out, name))
    md = open(os.path.join(out, "report.md")).read()
    assert "static_wi8_ai8" in md and "failed" in md
    for name in plots:
        assert f"]({name})" in md  # every plot is shown in the report
    got = json.load(open(os.path.join(out, "results.json")))
    assert len(got) == sum(1 for _ in open(os.path.join(out, "results.csv"))) - 1


def _drift_records(tmp_path, drifts):
    from contract import records

    rows = [records.new_record("accuracy", artifact=name, recipe=name, target="tflite",
                               runtime="ai_edge_litert", delegate="xnnpack", threads=2,
                               bytes=1000, accuracy={"top1": 0.9 + d / 100, "top5": 1.0,
                                                     "examples": 1000},
                               drift={"top1_delta_points": d, "argmax_agreement": 0.99})
            for name, d in drifts.items()]
    assert all(records.validate(r) == [] for r in rows), records.validate(rows[0])
    records.write_jsonl(rows, str(tmp_path / "accuracy.jsonl"))
    return str(tmp_path)


@pytest.mark.parametrize("gate, rc, named", [
    (0.5, 1, ["int8"]),  # int8 dropped 0.6 points: it fails a 0.5 gate, fp16 does not
    (0.1, 1, ["fp16", "int8"]),
    (0.6, 0, []),  # exactly on the gate passes
    (0.7, 0, []),
])
def test_drift_gate_on_known_drifts(tmp_path, capsys, gate, rc, named):
    from edge_eval.__main__ import main

    out = _drift_records(tmp_path, {"fp32": 0.0, "fp16": -0.2, "int8": -0.6, "better": +0.3})
    assert main(["report", out, "--max-top1-drift", str(gate)]) == rc
    md = open(os.path.join(out, "report.md")).read()
    assert ("Drift gate" in md) and (("FAILED" in md) == bool(named))
    for name in ("fp32", "fp16", "int8", "better"):
        assert (f"- {name}: top-1" in md) == (name in named)


@needs_fmnist
def test_unreadable_eval_images_and_label_mismatch(converted, tmp_path):
    import cv2

    from edge_eval import harness

    art, _ = converted
    folder = tmp_path / "imgs"
    for k in range(3):
        (folder / "test" / f"class{k}").mkdir(parents=True)
        (folder / "train" / f"class{k}").mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(folder / "test" / f"class{k}" / f"{i}.png"),
                        np.full((30, 30, 3), 40 * (k + i), np.uint8))
    (folder / "test" / "class0" / "broken.jpg").write_bytes(b"not a jpeg")
    rows = harness.evaluate(art, str(tmp_path / "out"), data_source="image_folder",
                            data_path=str(folder), bootstrap_rounds=10, only=["fp32"],
                            log=lambda *a, **k: None)
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert all("10 outputs but the evaluation set has 3 classes" in r["error"] for r in rows)
    assert "broken.jpg" in rows[0]["eval_set"]["skipped_images"][0]
    assert rows[0]["eval_set"]["images"] == 6


def test_bad_inputs_are_one_clear_error(tmp_path, capsys):
    from edge_eval.__main__ import main

    assert main(["accuracy", str(tmp_path)]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    (tmp_path / "manifest.json").write_text("{not json")
    assert main(["bench", str(tmp_path)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# host benchmark
# --------------------------------------------------------------------------------------------
# (the run side without TensorFlow or the build side: tests/test_run_side.py)


def test_host_benchmark_records(converted, tmp_path):
    from contract import records
    from edge_eval import harness

    art, _ = converted
    rows = harness.benchmark(art, str(tmp_path), delegates=["xnnpack", "edgetpu"], threads=[1],
                             warmup=1, runs=10, min_seconds=0.3, only=["static_wi8_ai8"],
                             log=lambda *a, **k: None)
    by = {r["delegate"]: r for r in rows}
    ok = by["xnnpack"]
    assert records.validate(ok) == [] and ok["status"] == "ok", ok
    lat = ok["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"]
    assert ok["init_ms"] > 0 and ok["peak_memory_mb"] > 10 and ok["runs"] >= 10
    # preprocessing of a VGA frame, timed apart from inference: a real, positive number, the
    # same for every row of the folder (one spec)
    assert 0 < ok["preprocess_ms"] < 1000 and ok["preprocess_frame"] == [480, 640]
    # an uncompiled model never runs under the Edge TPU label (tests/test_edgetpu.py times
    # the compiler's output there, and says what is missing without libedgetpu)
    assert set(by) == {"xnnpack"}


def test_too_short_a_benchmark_is_invalid_not_a_number():
    from edge_eval.bench import validity

    assert validity(3, 5.0) and "only 3 timed runs" in validity(3, 5.0)
    assert validity(50, 0.01)
    assert validity(50, 2.0) is None


# --------------------------------------------------------------------------------------------
# Android: benchmark_model output and the adb flow with a stand-in adb
# --------------------------------------------------------------------------------------------
# Output text in the format TensorFlow documents for benchmark_model (three generations of it).
BENCHMARK_MODEL_OUTPUTS = {
    "plain": """STARTING!
Log parameter values verbosely: [0]
Min num runs: [50]
Num threads: [4]
Graph: [/data/local/tmp/model.tflite]
#threads used for CPU inference: [4]
Loaded model /data/local/tmp/model.tflite
The input model file size (MB): 23.9
Initialized session in 61.5ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=5 first=153622 curr=121047 min=119562 max=153622 avg=127880 std=12876

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=118432 curr=117960 min=116802 max=125117 avg=118940 std=1527

Inference timings in us: Init: 61500, First inference: 153622, Warmup (avg): 127880, Inference (avg): 118940
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Peak memory footprint (MB): init=4.92969 overall=138.809
""",
    "info_percentiles": """INFO: STARTING!
INFO: Graph: [/data/local/tmp/model.tflite]
INFO: Use gpu: [1]
INFO: Created TensorFlow Lite delegate for GPU.
INFO: Replacing 126 out of 126 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 1 partitions for subgraph 0.
INFO: The input model file size (MB): 95.3
INFO: Initialized session in 1180.6ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=27 first=40210 curr=18117 min=17842 max=40210 avg=18898.4 std=4201 p5=17842 median=18150 p95=19377

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=56 first=18204 curr=17990 min=17761 max=19903 avg=18102.2 std=311 p5=17801 median=18050 p95=18877

INFO: Inference timings in us: Init: 1180600, First inference: 40210, Warmup (avg): 18898.4, Inference (avg): 18102.2
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=112.117 overall=161.043
INFO: Overall peak memory footprint (MB) via periodic monitoring: 168.734
""",
    "nnapi_fallback": """INFO: Use NNAPI: [1]
INFO: Created TensorFlow Lite delegate for NNAPI.
WARNING: NNAPI SL driver did not implement SL_ANeuralNetworksDiagnostic_registerCallbacks!
INFO: Replacing 94 out of 126 node(s) with delegate (TfLiteNnapiDelegate) node, yielding 4 partitions for subgraph 0.
INFO: Initialized session in 312.1ms.
INFO: count=3 first=220000 curr=180000 min=180000 max=220000 avg=193333 std=18856
INFO: count=50 first=101000 curr=99000 min=97000 max=130000 avg=1.01e+05 std=5000
INFO: Inference timings in us: Init: 312100, First inference: 220000, Warmup (avg): 193333, Inference (avg): 1.01e+05
""",
    # --enable_op_profiling=true: TFLite's stats calculator prints a table for the
    # initialization and then for the regular runs; the regular runs' is the one to read
    "op_profiling": """INFO: Use xnnpack: [1]
INFO: Replacing 117 out of 127 node(s) with delegate (TfLiteXNNPackDelegate) node, yielding 11 partitions for subgraph 0.
INFO: count=5 first=16000 curr=14000 min=13900 max=16000 avg=14500 std=700
INFO: count=50 first=13900 curr=13800 min=13700 max=14900 avg=13850 std=210
INFO: Inference timings in us: Init: 90100, First inference: 16000, Warmup (avg): 14500, Inference (avg): 13850
Profiling Info for Benchmark Initialization:
============================== Summary by node type ==============================
	             [Node type]	  [count]	  [avg ms]	    [avg %]	    [cdf %]	  [mem KB]	[times called]
	         ModifyGraphWithDelegate	        1	    60.100	    70.000%	    70.000%	  8000.000	        1
	         AllocateTensors	        1	    25.800	    30.000%	   100.000%	     0.000	        1

Operator-wise Profiling Info for Regular Benchmark Runs:
============================== Summary by node type ==============================
	             [Node type]	  [count]	  [avg ms]	    [avg %]	    [cdf %]	  [mem KB]	[times called]
	   TfLiteXNNPackDelegate	       11	    10.400	    75.362%	    75.362%	     0.000	       11
	         AVERAGE_POOL_2D	        9	     3.300	    23.913%	    99.275%	     0.000	        9
	                 SOFTMAX	        1	     0.100	     0.725%	   100.000%	     0.000	        1

Timings (microseconds): count=50 first=13000 curr=13800 min=13700 max=14900 avg=13800 std=200
""",
}


@pytest.mark.parametrize("name", sorted(BENCHMARK_MODEL_OUTPUTS))
def test_benchmark_model_parser(name):
    from edge_eval.android import parse_benchmark_model

    r = parse_benchmark_model(BENCHMARK_MODEL_OUTPUTS[name])
    expect = {"plain": (50, 118.940, 1.527, 61.5, 138.809, None),
              "info_percentiles": (56, 18.1022, 0.311, 1180.6, 168.734, 18.050),
              "nnapi_fallback": (50, 101.0, 5.0, 312.1, None, None),
              "op_profiling": (50, 13.85, 0.21, 90.1, None, None)}[name]
    runs, mean, std, init, peak, p50 = expect
    assert r["runs"] == runs
    assert r["latency_ms"]["mean"] == pytest.approx(mean)
    assert r["latency_ms"]["std"] == pytest.approx(std)
    assert r["init_ms"] == pytest.approx(init)
    assert r["peak_memory_mb"] == (None if peak is None else pytest.approx(peak))
    assert r["latency_ms"]["p50"] == (None if p50 is None else pytest.approx(p50))
    from contract.litert import delegation_problem

    d = r.get("delegation")
    if name == "nnapi_fallback":
        assert r["delegated_nodes"] == [94, 126]
        assert (d["delegated"], d["nodes"], d["partitions"], d["full"]) == (94, 126, 4, False)
        assert delegation_problem(d) == "TfLiteNnapiDelegate took 94 of 126 nodes in 4 partition(s)"
    elif name == "info_percentiles":
        assert d["full"] and delegation_problem(d) is None
    elif name == "op_profiling":
        assert (d["delegated"], d["nodes"], d["partitions"]) == (117, 127, 11)
        assert [(p["op"], p["count"], p["avg_ms"]) for p in r["op_profile"]] == [
            ("TfLiteXNNPackDelegate", 11, 10.4), ("AVERAGE_POOL_2D", 9, 3.3), ("SOFTMAX", 1, 0.1)]
    else:
        assert d is None and r["op_profile"] is None
        assert delegation_problem(d).startswith("no delegation information")
    with pytest.raises(ValueError, match="no timed runs"):
        parse_benchmark_model("ERROR: Failed to load model /data/local/tmp/x.tflite\n")


@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    from standin_android import install_adb

    exe, dev = install_adb(tmp_path, monkeypatch)
    (tmp_path / "bench.txt").write_text(BENCHMARK_MODEL_OUTPUTS["info_percentiles"])
    monkeypatch.setenv("FAKE_BENCH_OUTPUT", str(tmp_path / "bench.txt"))
    return exe, dev


def _calls(dev):
    return [json.loads(line) for line in open(dev / "calls.jsonl")]


def _device_commands(dev):
    """Each command as the device's shell split it."""
    path = dev / "device_commands.jsonl"
    return [json.loads(line) for line in open(path)] if path.exists() else []


def test_adb_flow_with_benchmark_model(converted, fake_adb, tmp_path):
    from contract import records
    from edge_eval import android

    adb, dev = fake_adb
    art, manifest = converted
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF fake")
    rows = android.run(art, str(tmp_path / "out"), adb=adb, delegates=["cpu", "gpu"],
                       binary=str(binary), only=["fp32"], log=lambda *a, **k: None)
    assert [r["delegate"] for r in rows] == ["xnnpack", "gpu"]
    for r in rows:
        assert records.validate(r) == [] and r["status"] == "ok"
        assert r["device"]["name"] == "Pixel 8" and r["device"]["serial"] == "emulator-5554"
        assert r["latency_ms"]["mean"] == pytest.approx(18.1022)
    calls = _calls(dev)
    assert all(c[:2] == ["-s", "emulator-5554"] for c in calls if c[:1] != ["devices"])
    # every shell call is one quoted command line
    assert all(len(c) == 4 for c in calls if c[2:3] == ["shell"])
    bench = [c for c in _device_commands(dev) if c[0].endswith("benchmark_model")]
    assert len(bench) == 2
    assert "--use_xnnpack=true" in bench[0] and "--use_gpu=true" in bench[1]
    assert "--graph=/data/local/tmp/tiny_test_fp32.tflite" in bench[0]
    assert ["-s", "emulator-5554", "push", str(binary), "/data/local/tmp/benchmark_model"] in calls


def test_adb_flow_with_the_app(converted, fake_adb, tmp_path, monkeypatch):
    from contract import records
    from edge_eval import android

    adb, dev = fake_adb
    art, _ = converted
    rec = records.new_record("latency", runtime="android-app", delegate="xnnpack", threads=4,
                             warmup_runs=5, runs=50, batch_size=1,
                             latency_ms={"min": 9.0, "p50": 10.0, "p90": 11.0, "p99": 12.0,
                                         "mean": 10.2, "std": 0.5})
    (tmp_path / "app_record.json").write_text(json.dumps(rec))
    monkeypatch.setenv("FAKE_APP_RECORD", str(tmp_path / "app_record.json"))
    rows = android.run(art, str(tmp_path / "out"), adb=adb, delegates=["cpu", "nnapi"],
                       only=["static_wi8_ai8"], timeout=30, log=lambda *a, **k: None)
    assert [r["delegate"] for r in rows] == ["xnnpack", "nnapi"]
    assert all(r["artifact"] == "tiny_test_static_wi8_ai8.tflite" for r in rows)
    start = [c for c in _device_commands(dev) if c[:2] == ["am", "start"]][0]
    proto = android.protocol()
    # -S: a fresh process for the run
    assert start[2:6] == ["-S", "-W", "-n", proto["package"] + "/" + proto["activity"]]
    ex = {start[i + 1]: (start[i], start[i + 2]) for i in range(6, len(start), 3)}
    # the benchmark mode's extras; the accuracy mode's are left out, not sent empty (an empty
    # argument vanishes in the device's shell and shifts every extra after it)
    assert set(ex) == set(proto["extras"]) - {"eval_dir", "header", "predictions"}
    assert ex["mode"][1] == "benchmark"
    assert all(flag == proto["extras"][k]["flag"] for k, (flag, _) in ex.items())
    assert ex["delegates"][1] == "CPU,NNAPI" and ex["threads"][1] == "4"
    assert ex["output"][1].endswith(".json") and ex["run_id"][1]


def test_adb_missing_or_no_device(converted, fake_adb, tmp_path, monkeypatch):
    from edge_eval import android

    adb, _ = fake_adb
    art, _ = converted
    with pytest.raises(android.AndroidError, match="adb not found"):
        android.run(art, str(tmp_path), adb=str(tmp_path / "nope" / "adb"))
    monkeypatch.setenv("FAKE_SERIALS", "")
    with pytest.raises(android.AndroidError, match="no Android device attached"):
        android.run(art, str(tmp_path), adb=adb)
    monkeypatch.setenv("FAKE_SERIALS", "a b")
    with pytest.raises(android.AndroidError, match="pass --serial"):
        android.run(art, str(tmp_path), adb=adb)


@pytest.mark.parametrize("hostile", [
    "evil;touch${IFS}PWNED;.tflite",
    "a b $(touch PWNED).tflite",
    "`touch PWNED`.tflite",
    "q'uote\"d.tflite",
])
def test_file_names_reach_the_device_as_text(converted, fake_adb, tmp_path, monkeypatch,
                                             hostile):
    """An artifact whose name is shell syntax: the device's shell sees it as one argument."""
    from contract import records
    from edge_eval import android

    adb, dev = fake_adb
    src, manifest = converted
    art = tmp_path / "art"
    shutil.copytree(src, art)
    entry = next(dict(a) for a in manifest["artifacts"] if a["recipe"] == "fp32")
    os.rename(art / entry["file"], art / hostile)
    entry["file"] = hostile
    (art / "manifest.json").write_text(json.dumps(dict(manifest, artifacts=[entry])))
    rec = records.new_record("latency", runtime="android-app", delegate="xnnpack", threads=4,
                             warmup_runs=5, runs=50, batch_size=1,
                             latency_ms={k: 1.0 for k in ("min", "p50", "p90", "p99", "mean",
                                                          "std")})
    (tmp_path / "app_record.json").write_text(json.dumps(rec))
    monkeypatch.setenv("FAKE_APP_RECORD", str(tmp_path / "app_record.json"))
    rows = android.run(str(art), str(tmp_path / "out"), adb=adb, timeout=20,
                       log=lambda *a, **k: None)
    assert [r["status"] for r in rows] == ["ok"], rows
    assert not list(dev.rglob("PWNED"))
    extras = json.loads((dev / "app_extras.json").read_text())
    assert extras["model"].endswith("/" + hostile)  # one argument, as written
    assert (dev / extras["model"].lstrip("/")).is_file()


@pytest.mark.parametrize("name", ["../../../etc/passwd", "/etc/hostname", "../outside/real.tflite",
                                  "sub/../../outside/real.tflite", "link.tflite", "", None])
def test_manifest_entries_stay_inside_the_artifacts_folder(tmp_path, fake_adb, name):
    """Every path read from a manifest resolves inside the artifacts folder, or its row fails
    with the reason; nothing outside is opened, benchmarked or pushed."""
    from edge_eval import android, harness

    adb, dev = fake_adb
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "real.tflite").write_bytes(b"TFL3 not ours")
    art = tmp_path / "art" / "a"
    art.mkdir(parents=True)
    os.symlink(outside / "real.tflite", art / "link.tflite")
    entry = {"file": name, "recipe": "fp32", "target": "tflite", "sha256": None}
    (art / "manifest.json").write_text(json.dumps({"artifacts": [entry], "sources": {}}))
    problem = harness.verify(str(art), entry)
    assert problem and ("not a file name inside" in problem or "links outside" in problem)
    rows = harness.benchmark(str(art), str(tmp_path / "res"), runs=1, log=lambda *a, **k: None)
    assert [(r["status"], r["error"]) for r in rows] == [("failed", problem)]
    rows = android.run(str(art), str(tmp_path / "res2"), adb=adb, log=lambda *a, **k: None)
    assert [(r["status"], r["error"]) for r in rows] == [("failed", problem)]
    assert not [c for c in _calls(dev) if c[2:3] == ["push"]]


def test_the_input_cache_follows_the_images_not_their_folder(tmp_path):
    """Replacing every image under the same names gives new inputs (the cache is keyed by the
    data's contents); a damaged labels file in the cache is a miss, not an error."""
    import cv2

    from edge_eval import harness
    from train.data import DataConfig, Source
    from contract.preprocessing import PreprocessingSpec

    folder = tmp_path / "imgs"
    for k in range(2):
        (folder / f"class{k}").mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(folder / f"class{k}" / f"{i}.png"),
                        np.full((20, 20, 3), 60 * k + 10 * i, np.uint8))
    cfg = DataConfig(source=Source.IMAGE_FOLDER, path=str(folder))
    spec = PreprocessingSpec(input_size=[16, 16])
    cache = str(tmp_path / "cache")
    quiet = lambda *a, **k: None  # noqa: E731
    x1, y1 = harness.eval_inputs(cfg, spec, cache, log=quiet)[:2]
    x1 = x1["inputs"]
    before = np.load(x1).copy()
    assert harness.eval_inputs(cfg, spec, cache, log=quiet).path == x1  # a hit
    rng = np.random.default_rng(0)
    for p in sorted(folder.rglob("*.png")):
        cv2.imwrite(str(p), rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))
    x2, y2 = harness.eval_inputs(cfg, spec, cache, log=quiet)[:2]
    x2 = x2["inputs"]
    assert x2 != x1 and (y2 == y1).all()
    assert np.abs(np.load(x2) - before).max() > 0.5  # the noise, not the old inputs
    meta = x2[:-len(".npy")] + ".json"
    with open(meta, "w") as f:
        f.write('{"labels": [0, 1')  # cut off mid-write
    logs = []
    got = harness.eval_inputs(cfg, spec, cache, log=lambda *a, **k: logs.append(a))
    x3, y3 = got.path, got.labels
    assert x3 == x2 and (y3 == y2).all() and any("damaged" in str(a) for a in logs)
    assert not [f for f in os.listdir(cache) if ".tmp" in f]


@pytest.mark.parametrize("runs, seconds, valid", [
    (10, 0.2, True), (1562, 0.2, True), (1562, 0.2000001, True),  # on the boundary: valid
    (9, 5.0, False), (1562, 0.1999, False), (0, 0.0, False),
])
def test_benchmark_validity_boundary(runs, seconds, valid):
    from edge_eval.bench import validity

    assert (validity(runs, seconds) is None) == valid


def test_a_run_that_stops_on_min_seconds_is_valid():
    """The loop stops on the seconds the validity rule counts: a fast model timed for exactly
    the minimum is valid (it was marked invalid when the loop counted wall time with overhead
    and the rule counted only the runs)."""
    from edge_eval.bench import MIN_VALID_SECONDS, timed_runs, validity

    sleep = lambda x: time.sleep(x)  # noqa: E731
    times = timed_runs(sleep, 1e-4, runs=10, min_seconds=MIN_VALID_SECONDS, max_seconds=5.0)
    assert len(times) >= 10
    assert validity(len(times), sum(t / 1e3 for t in times)) is None


@pytest.mark.parametrize("flags, ci, rc", [
    (["--strict"], None, 4), (["--no-strict"], "true", 0),
    ([], "true", 4), ([], None, 0), ([], "false", 0),
])
def test_failed_rows_give_an_exit_status(tmp_path, monkeypatch, capsys, flags, ci, rc):
    from edge_eval.__main__ import main

    art = tmp_path / "art"
    art.mkdir()
    (art / "manifest.json").write_text(json.dumps({"artifacts": [
        {"file": "missing.tflite", "recipe": "fp32", "target": "tflite", "sha256": None}]}))
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    assert main(["bench", str(art), "--out", str(tmp_path / "res"), *flags]) == rc
    err = capsys.readouterr().err
    assert ("1 of 1 rows failed" in err) == (rc == 4)
    assert ("missing.tflite" in err) == (rc == 4)


BOARD = r"""
import importlib.abc, json, sys, types
sys.path.insert(0, {root!r})
# a stand-in tflite_runtime: the board's package, here backed by LiteRT's kernels
from ai_edge_litert import interpreter as real
board = types.ModuleType("tflite_runtime")
board_interp = types.ModuleType("tflite_runtime.interpreter")
for name in ("Interpreter", "load_delegate", "OpResolverType"):
    setattr(board_interp, name, getattr(real, name))
board.interpreter = board_interp
sys.modules.update({{"tflite_runtime": board, "tflite_runtime.interpreter": board_interp}})
# ... and ai_edge_litert made unimportable, as on a Coral board
for m in [m for m in sys.modules if m.split(".")[0] == "ai_edge_litert"]:
    del sys.modules[m]
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "ai_edge_litert":
            raise ImportError("no ai_edge_litert on this board")
sys.meta_path.insert(0, Block())
from contract.litert import TFLiteModel, runtime_name
from edge_eval.bench import bench_tflite
import numpy as np
out = {{"runtime": runtime_name()}}
for xnn in (True, False):
    m = TFLiteModel({model!r}, xnnpack=xnn)
    x = np.random.default_rng(0).uniform(-1, 1, (2, *m.input["shape"][1:])).astype("float32")
    out[f"p_{{xnn}}"] = m.predict(x).tolist()
r = bench_tflite({model!r}, delegate="none", runs=10, min_seconds=0.2)
out.update(status=r["status"], rec_runtime=r["runtime"])
print(json.dumps(out))
"""


def test_the_board_path_runs_on_tflite_runtime_alone(converted):
    """With only tflite_runtime (no ai_edge_litert), the interpreter, the XNNPACK-off resolver
    and the benchmark all work, and the records say which runtime ran."""
    import subprocess

    art, manifest = converted
    model = os.path.join(art, next(a["file"] for a in manifest["artifacts"]
                                   if a["recipe"] == "static_wi8_ai8"))
    r = subprocess.run([sys.executable, "-c", BOARD.format(root=ROOT, model=model)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["runtime"] == "tflite_runtime" and out["rec_runtime"] == "tflite_runtime"
    assert out["status"] == "ok"
    a, b = np.asarray(out["p_True"]), np.asarray(out["p_False"])
    assert a.shape == (2, 10) and np.abs(a - b).max() < 0.05  # XNNPACK on and off agree
