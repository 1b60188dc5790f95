"""Drift where the model runs: the stand-in phone (tests/standin_android.py) runs the app's
accuracy mode - the Java core's real EvalFolder, Preprocessor, EvaluationLoop and
PredictionWriter, the host's LiteRT for inference - on the images the host evaluated, and
edge_eval pairs its answers with the host's float model. Device faults are injected and each
must be caught: a GPU that computes in float16 and a channel swap in one accelerator's input
path as drift of the size they cause (the gate failing), an accelerator that silently runs on
the CPU as a flagged row."""
import json
import os

import numpy as np
import pytest

from standin_android import ARM_PYTHON, install_adb, install_phone

ART_ONLY = ["fp32"]


def _quiet(*a, **k):
    pass


@pytest.fixture(scope="module")
def colour_set(tmp_path_factory):
    """Fashion-MNIST test images tinted into colour (a channel swap then changes the input),
    as an image folder: the host and the phone evaluate the same PNG files."""
    import cv2

    from train.data import fashion_mnist_dir, load_fashion_mnist

    if fashion_mnist_dir() is None:
        pytest.skip("Fashion-MNIST IDX files missing: apt-get install dataset-fashion-mnist")
    x, y = load_fashion_mnist("test")
    x = x[..., 0]
    root = tmp_path_factory.mktemp("tinted")
    # RGB: luma (0.299 R + 0.587 G + 0.114 B) ~ the grey the model was trained on; red and
    # blue swapped, 22 % darker
    tint = np.array([1.45, 1.0, 0.2], np.float32)
    rng = np.random.default_rng(0)
    for split, per in (("train", 2), ("test", 16)):
        for c in range(10):
            d = root / split / f"c{c}"
            d.mkdir(parents=True)
            picks = rng.choice(np.flatnonzero(y == c), per, replace=False)
            for k, i in enumerate(picks):
                rgb = (x[i].astype(np.float32)[..., None] * tint).clip(0, 255).astype(np.uint8)
                cv2.imwrite(str(d / f"{k}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return str(root)


@pytest.fixture(scope="module")
def host_results(converted, colour_set, tmp_path_factory):
    """The host's float reference and fp32 artifact on the tinted set (predictions/)."""
    from edge_eval import harness

    art, _ = converted
    out = str(tmp_path_factory.mktemp("results"))
    harness.evaluate(art, out, data_source="image_folder", data_path=colour_set,
                     bootstrap_rounds=200, only=ART_ONLY, log=_quiet)
    return out


def _phone_run(converted, tiny_export, colour_set, host_results, tmp_path, monkeypatch, faults,
               accelerators=("cpu", "gpu", "npu"), only=ART_ONLY, arm=False):
    from edge_eval import android

    adb, dev = install_adb(tmp_path, monkeypatch)
    install_phone(tmp_path, monkeypatch, faults,
                  fp16_keras=os.path.join(tiny_export, "model.keras"), arm=arm)
    art, _ = converted
    rows = android.accuracy(art, host_results, adb=adb, accelerators=accelerators, threads=1,
                            timeout=600, only=only, bootstrap_rounds=200,
                            data_source="image_folder", data_path=colour_set, log=_quiet)
    log = (dev / "phone.log").read_text() if (dev / "phone.log").exists() else ""
    if len(only) > 1:
        return {(r["artifact"], r["delegate"]): r for r in rows}, dev, log
    return {r["delegate"]: r for r in rows}, dev, log


def test_a_clean_phone_gives_the_hosts_answers_on_every_accelerator(
        converted, tiny_export, colour_set, host_results, tmp_path, monkeypatch):
    from contract import predictions, records

    rows, dev, log = _phone_run(converted, tiny_export, colour_set, host_results, tmp_path,
                                monkeypatch, {})
    assert set(rows) == {"xnnpack", "gpu", "npu"}, log
    host = [json.loads(line) for line in open(os.path.join(host_results, "accuracy.jsonl"))]
    fp32_host = next(r for r in host if r["recipe"] == "fp32")
    for name, r in rows.items():
        assert records.validate(r) == [] and r["status"] == "ok", (name, r["error"], log)
        d = r["drift"]
        assert d["paired_images"] == 160 and d["only_in_reference"] == 0
        # the Java core's preprocessing and the host's agree to a grey level (their bilinear
        # resizes round apart): the phone's fp32 answers are nearly the host's fp32 answers
        # (the same bytes, the same decode and grey conversion, resizes a grey level apart)
        print("CLEAN", name, d["top1_delta_points"], d["argmax_agreement"], d["score_shift"])
        assert d["argmax_agreement"] >= fp32_host["drift"]["argmax_agreement"] - 0.02, name
        assert abs(d["top1_delta_points"] - fp32_host["drift"]["top1_delta_points"]) <= 1.0
        assert r["accelerator"]["flagged"] is False
        assert r["accelerator"]["fully_accelerated"] is True
        assert r["device"]["name"] == "stand-in phone"
        assert r["inference_ms_mean"] > 0 and r["wall_ms_mean"] >= r["inference_ms_mean"]
        # the phone's file is kept, and it pairs with the host's like any other
        p = predictions.read(os.path.join(host_results, r["predictions"]))
        assert len(p) == 160 and p.header["accelerator"]["requested"] == name
    # every accelerator ran in a fresh process, with the accuracy mode's extras
    starts = [json.loads(x) for x in open(dev / "device_commands.jsonl")]
    starts = [c for c in starts if c[:2] == ["am", "start"]]
    assert len(starts) == 3 and all("-S" in c for c in starts)


def test_device_faults_are_caught(converted, tiny_export, colour_set, host_results, tmp_path,
                                  monkeypatch):
    from edge_eval import report

    rows, _, log = _phone_run(converted, tiny_export, colour_set, host_results, tmp_path,
                              monkeypatch, {"gpu": ["float16"], "npu": ["silent_cpu"]})
    cpu, gpu, npu = rows["xnnpack"], rows["gpu"], rows["npu"]
    print("FAULTS", {k: (r["drift"]["top1_delta_points"], r["drift"]["argmax_agreement"],
                         r["drift"]["mcnemar"]["p_value"], r["drift"]["score_shift"],
                         r["accelerator"]) for k, r in rows.items()})
    assert all(r["status"] == "ok" for r in rows.values()), log
    # float16: on this model it flips no top-1 answer (the size it really causes); it moves the
    # scores, which the score-shift gate catches where the CPU's float32 passes it
    assert gpu["drift"]["score_shift"]["p99"] > 20 * max(cpu["drift"]["score_shift"]["p99"],
                                                        1e-5)
    # a gate between the two precisions' unit roundoff (float16 4.9e-4, float32 6e-8): the
    # float16 run's shift is 1.8e-3 to 7e-3 depending on the TensorFlow kernels that trained
    # the model (oneDNN on/off), the CPU's float32 stays near 1e-6
    failures = report.gate(report.load(host_results), None, max_score_shift=1e-4)
    print("GATE", failures, "\nNPU", npu["accelerator"])
    assert [f for f in failures if "gpu" in f] and not [f for f in failures if "xnnpack" in f]
    # the silent CPU fallback: the same answers, but flagged with LiteRT's reason
    assert npu["accelerator"]["flagged"] is True
    assert npu["accelerator"]["fully_accelerated"] is False
    assert "not fully accelerated on NPU" in npu["accelerator"]["fallback_reason"]
    assert cpu["accelerator"]["flagged"] is False
    md = report.markdown(report.load(host_results))
    assert "FLAGGED" in md and "stand-in phone" in md


def test_a_channel_swap_in_one_accelerators_input_is_drift_and_fails_the_gate(
        converted, tiny_export, colour_set, host_results, tmp_path, monkeypatch):
    from edge_eval import report

    rows, _, log = _phone_run(converted, tiny_export, colour_set, host_results, tmp_path,
                              monkeypatch, {"gpu": ["swap"]}, accelerators=("cpu", "gpu"))
    cpu, gpu = rows["xnnpack"], rows["gpu"]
    print("SWAP", {k: (r["drift"]["top1_delta_points"], r["drift"]["argmax_agreement"],
                       r["drift"]["mcnemar"]["p_value"], r["drift"]["score_shift"])
                   for k, r in rows.items()})
    assert gpu["drift"]["argmax_agreement"] < cpu["drift"]["argmax_agreement"] - 0.05
    failures = report.gate(report.load(host_results), max_top1_drift=1.0)
    print("GATE", failures)
    assert any("on stand-in phone gpu" in f for f in failures), failures


def test_the_phones_cpu_on_arm64_kernels(converted, tiny_export, colour_set, host_results,
                                         tmp_path, monkeypatch):
    """The stand-in phone's CPU on LiteRT's real arm64 kernels (scripts/arm_phone.sh: Debian's
    arm64 Python under qemu-user, the aarch64 ai-edge-litert 1.4.0 wheel; setup builds it):
    the float and the int8 model's answers paired with the host's float model - the drift a
    phone's CPU adds to the host's, from XNNPACK's arm64 paths and the Java preprocessing."""
    if not os.access(ARM_PYTHON, os.X_OK):
        pytest.skip(f"no arm64 Python at {ARM_PYTHON} (bash scripts/arm_phone.sh)")
    host = {r["artifact"]: r for r in map(json.loads, open(os.path.join(
        host_results, "accuracy.jsonl")))}
    rows, _, log = _phone_run(converted, tiny_export, colour_set, host_results, tmp_path,
                              monkeypatch, {}, accelerators=("cpu",),
                              only=["fp32", "static_wi8_ai8_uint8io"], arm=True)
    fp32 = rows[("tiny_test_fp32.tflite", "xnnpack")]
    int8 = rows[("tiny_test_static_wi8_ai8_uint8io.tflite", "xnnpack")]
    print("ARM", {k[0]: (r["drift"]["top1_delta_points"], r["drift"]["argmax_agreement"],
                         r["drift"]["score_shift"]["p99"]) for k, r in rows.items()})
    for r in (fp32, int8):
        assert r["status"] == "ok", (r["error"], log)
        assert r["device"]["abi"].startswith("arm64-v8a"), r["device"]
        assert r["drift"]["paired_images"] == 160 and not r["accelerator"]["flagged"]
    # arm64 float kernels give the host's float answers (to the preprocessing's grey level)
    want = host["tiny_test_fp32.tflite"]["drift"]
    assert fp32["drift"]["argmax_agreement"] >= want["argmax_agreement"] - 0.02
    assert fp32["drift"]["score_shift"]["p99"] < 1e-2
    # the int8 model on arm64 kernels: drift of int8's size, not a broken model
    assert int8["drift"]["argmax_agreement"] >= 0.8
