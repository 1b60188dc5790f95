"""The convert-model script, TFLite half: every recipe end to end, table-driven; bad input."""
import dataclasses
import json
import os

import numpy as np
import pytest


from conftest import RECIPE_TABLE as TABLE  # noqa: E402


@pytest.mark.parametrize("recipe", sorted(TABLE))
def test_every_recipe_end_to_end(converted, tiny_export, recipe):
    from contract.litert import TFLiteModel
    from train.source import dataset_images, load_source
    from contract.recipes import RECIPES

    out, manifest = converted
    art = {a["recipe"]: a for a in manifest["artifacts"]}[recipe]
    path = os.path.join(out, art["file"])
    assert art["file"] == f"tiny_test_{recipe}.tflite"
    data = open(path, "rb").read()
    import hashlib
    assert art["sha256"] == hashlib.sha256(data).hexdigest() and art["bytes"] == len(data)

    in_dt, out_dt, quant_io, conv_dt = TABLE[recipe]
    m = TFLiteModel(path)
    assert (m.input_dtype.name, m.output_dtype.name) == (in_dt, out_dt)
    assert (art["input"]["dtype"], art["output"]["dtype"]) == (in_dt, out_dt)
    if quant_io:  # the input scale maps [-1, 1] onto the integer range
        scale, zp = m.input_quantization
        assert scale == pytest.approx(2 / 255, rel=0.02)
        assert zp == (-1 if in_dt == "int8" else 127) or abs(zp - (0 if in_dt == "int8" else 128)) <= 1
    else:
        assert m.input_quantization == (0.0, 0)
    # every conv/dense runs in the recipe's arithmetic (no op silently left float)
    assert set(art["conv_input_dtypes"]) == {conv_dt}, art["conv_input_dtypes"]
    assert sum(art["conv_input_dtypes"].values()) == 95  # 94 convolutions + the classifier

    # agreement with the source, recomputed here on fresh evaluation images
    src = load_source(tiny_export)
    x = dataset_images(src, "test", 32, seed=123)
    ref, got = src.predict(x), m.predict(x)
    r = RECIPES[recipe]
    assert np.abs(got - ref).max() <= r.max_abs_diff
    assert np.mean(got.argmax(1) == ref.argmax(1)) >= r.min_top1_agreement
    assert art["check"]["passed"] and art["check"]["weight_ratio_vs_fp32"] <= r.max_size_ratio
    expected_ratio = {"float32": 1.0, "float16": 0.5, "int8": 0.25}[r.weights]
    assert art["check"]["weight_ratio_vs_fp32"] == pytest.approx(expected_ratio, abs=0.06)


def test_manifest_provenance(converted, tiny_export):
    out, manifest = converted
    (sha, source), = manifest["sources"].items()
    from contract.manifest import sha256_file
    assert sha == sha256_file(os.path.join(tiny_export, "model.keras"))
    assert manifest["tools"]["tensorflow"] and manifest["tools"]["ai-edge-litert"]
    assert manifest["preprocessing"]["input_size"] == [75, 75]
    assert open(os.path.join(out, "labels.txt")).read().splitlines()[0] == "T-shirt/top"
    assert manifest["failures"] == []
    assert not [f for f in os.listdir(out) if f.endswith(".partial")]


def test_failed_self_check_writes_no_artifact(tiny_export, tmp_path, monkeypatch, capsys):
    import dataclasses

    from convert.__main__ import main
    from contract import recipes

    strict = dataclasses.replace(recipes.RECIPES["dynamic_wi8_afp32"], max_abs_diff=0.0)
    monkeypatch.setitem(recipes.RECIPES, "dynamic_wi8_afp32", strict)
    # an earlier artifact of the same name from an older version of the model, and failures of
    # that older version and of another model
    stale = "tiny_test_dynamic_wi8_afp32.tflite"
    (tmp_path / stale).write_bytes(b"old")
    json.dump({"sources": {"old": {"name": "tiny_test"}, "other": {"name": "other"}},
               "artifacts": [{"file": stale, "recipe": "dynamic_wi8_afp32",
                              "source_sha256": "old", "sha256": "x"}],
               "failures": [{"recipe": "fp16", "source_sha256": "old", "source_name": "tiny_test"},
                            {"recipe": "fp16", "source_sha256": "other", "source_name": "other"}]},
              open(tmp_path / "manifest.json", "w"))
    rc = main([tiny_export, "--out", str(tmp_path), "--recipes", "dynamic_wi8_afp32",
               "--check-images", "16"])
    assert rc == 3  # partial: some recipes failed their checks (1 is a crash)
    err = capsys.readouterr().err
    assert "dynamic_wi8_afp32: max |p - p_source| = " in err and "> 0.0" in err
    assert not [f for f in os.listdir(tmp_path) if f.endswith((".tflite", ".partial"))]
    m = json.load(open(tmp_path / "manifest.json"))
    assert m["artifacts"] == []  # the superseded artifact is gone with its file
    failure, other = sorted(m["failures"], key=lambda f: f["source_name"] != "tiny_test")
    assert failure["check"]["max_abs_diff"] > 0 and failure["source_sha256"] != "old"
    assert other["source_name"] == "other"  # another model's failure is kept
    assert set(m["sources"]) == {failure["source_sha256"], "other"}


def _no_artifacts(d):
    return not os.path.isdir(d) or not [f for f in os.listdir(d)
                                        if f.endswith((".tflite", ".partial"))]


@pytest.mark.parametrize("case", ["missing", "not_a_model", "bad_recipe", "calib_shape",
                                  "calib_few"])
def test_bad_input_is_one_clear_error(case, tiny_export, tmp_path, capsys):
    from convert.__main__ import main

    out = str(tmp_path / "out")
    model, extra, message = tiny_export, [], None
    if case == "missing":
        model, message = str(tmp_path / "nope"), "model not found"
    elif case == "not_a_model":
        (tmp_path / "junk").mkdir()
        (tmp_path / "junk" / "model.keras").write_bytes(b"not a zip")
        (tmp_path / "junk" / "preprocessing.json").write_text(
            open(os.path.join(tiny_export, "preprocessing.json")).read())
        model, message = str(tmp_path / "junk"), "could not be loaded as a model"
    elif case == "bad_recipe":
        extra, message = ["--recipes", "int3"], "unknown recipe 'int3'. Valid names follow the grammar"
    elif case == "calib_shape":
        np.save(tmp_path / "c.npy", np.zeros((20, 32, 32, 3), np.float32))
        extra = ["--recipes", "static_wi8_ai8", "--calib-npy", str(tmp_path / "c.npy"),
                 "--calib-images", "20"]
        message = "has shape [20, 32, 32, 3] but the model takes [N, 75, 75, 3]"
    elif case == "calib_few":
        np.save(tmp_path / "c.npy", np.zeros((3, 75, 75, 3), np.float32))
        extra = ["--recipes", "static_wi8_ai8", "--calib-npy", str(tmp_path / "c.npy"),
                 "--calib-images", "50"]  # without it the file is used whole
        message = "has 3 images"
    assert main([model, "--out", out, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err[-2000:]
    assert _no_artifacts(out)


def test_ops_a_recipe_cannot_quantize_are_named(tmp_path):
    """A model with an op that has no int8 kernel (SIN): the error names it."""
    import tensorflow as tf

    from convert.__main__ import main
    from contract.preprocessing import PreprocessingSpec

    class M(tf.Module):
        def __init__(self):
            self.w = tf.Variable(np.random.RandomState(0).normal(size=(3, 4)).astype("float32"))

        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32, name="image")])
        def serve(self, image):
            h = tf.sin(tf.reduce_mean(image, axis=[1, 2]) @ self.w)
            return {"predictions": tf.nn.softmax(h)}

    m = M()
    sm = tmp_path / "sm"
    tf.saved_model.save(m, str(sm), signatures={"serving_default": m.serve})
    PreprocessingSpec(input_size=[8, 8]).save(str(sm))
    np.save(tmp_path / "c.npy", np.random.RandomState(0).uniform(-1, 1, (10, 8, 8, 3))
            .astype("float32"))
    out = tmp_path / "out"
    rc = main([str(sm), "--out", str(out), "--recipes", "static_wi8_ai8", "--calib-npy",
               str(tmp_path / "c.npy"), "--calib-images", "10", "--check-images", "4"])
    assert rc == 3  # partial: some recipes failed their checks (1 is a crash)
    failure, = json.load(open(out / "manifest.json"))["failures"]
    assert "ops this recipe cannot quantize: SIN" in failure["error"], failure["error"]
    assert _no_artifacts(str(out))


def test_layer_blocks_trace_every_layer():
    from train.model import build_inception_v3, layer_blocks

    m = build_inception_v3(input_size=75, depth_multiplier=0.1, min_depth=4, num_classes=10)
    blocks = layer_blocks(m)
    seq = [blocks[l.name] for l in m.layers]
    assert seq[0] == "stem" and seq[-1] == "head"
    order = ["stem"] + [f"mixed{i}" for i in range(11)] + ["head"]
    assert sorted(set(seq), key=order.index) == order
    assert [order.index(b) for b in seq] == sorted(order.index(b) for b in seq)  # contiguous
    convs = [l for l in m.layers if type(l).__name__ == "Conv2D"]
    assert sum(blocks[c.name] == "stem" for c in convs) == 5
    assert sum(blocks[c.name] == "mixed0" for c in convs) == 7


def test_per_block_error_report_and_selective_float_blocks(tiny_export, tmp_path):
    from contract.litert import TFLiteModel
    from quantize.tflite import convert_bytes
    from train.source import dataset_images, load_source
    from quantize.debug import layer_error_report
    from contract.recipes import get_recipe
    from quantize.selective import tensor_block
    from train.model import layer_blocks

    src = load_source(tiny_export)
    x = dataset_images(src, "train", 16, seed=0)
    report = layer_error_report(src, get_recipe("static_wi8_ai8"), x)
    names = {b["block"] for b in report["blocks"]}
    assert {"stem", "mixed0", "mixed5", "mixed10"} <= names
    errs = [b["mean_rmse_over_scale"] for b in report["blocks"]]
    assert errs == sorted(errs, reverse=True) and all(e > 0 for e in errs)

    data = convert_bytes(src, get_recipe("static_wi8_ai8+float:mixed10"), x)
    m = TFLiteModel(model_content=data, xnnpack=False)
    blocks = layer_blocks(src.keras_model)
    tensors = {t["index"]: t for t in m.interp.get_tensor_details()}
    conv_dtype = {}
    for d in m.interp._get_ops_details():
        if d["op_name"] == "CONV_2D":
            out = tensors[d["outputs"][0]]
            conv_dtype.setdefault(tensor_block(out["name"], blocks), set()).add(
                np.dtype(out["dtype"]).name)
    assert conv_dtype["mixed10"] == {"float32"}
    assert conv_dtype["mixed9"] == {"int8"} and conv_dtype["stem"] == {"int8"}


def _probs(rows):
    p = np.asarray(rows, np.float64)
    return p / p.sum(1, keepdims=True)


@pytest.mark.parametrize("ref, got, passed, judged, agree", [
    # decisive images that disagree: a failed check
    ([[0.9, 0.1]] * 10, [[0.1, 0.9]] * 10, False, True, 0.0),
    # a near-uniform (untrained) model: every image a near-tie; argmax flips say nothing, the
    # probability tolerance still holds
    ([[0.501, 0.499]] * 10, [[0.499, 0.501]] * 10, True, False, None),
    ([[0.501, 0.499]] * 10, [[0.2, 0.8]] * 10, False, False, None),
    # ties are left out of the agreement; the decisive ones agree
    ([[0.9, 0.1]] * 8 + [[0.505, 0.495]] * 4, [[0.85, 0.15]] * 8 + [[0.49, 0.51]] * 4,
     True, True, 1.0),
])
def test_the_check_counts_agreement_on_decisive_images(ref, got, passed, judged, agree):
    from convert.check import judge
    from contract.recipes import get_recipe

    tol = dataclasses.replace(get_recipe("static_wi8_ai8"), max_abs_diff=0.25,
                              min_top1_agreement=0.9)
    c = judge(tol, _probs(got), _probs(ref))
    assert (c["passed"], c["agreement_judged"], c["top1_agreement"]) == (passed, judged, agree)
    assert ("not judged" in c.get("note", "")) == (not judged)


@pytest.mark.parametrize("recipe, integer_only", [
    ("fp32", False), ("dynamic_wi8_afp32", False),
    ("static_wi8_ai8_uint8io", True),  # the Edge TPU recipe: no float island
    ("static_wi8_ai16", True),
])
def test_float_ops_come_from_the_op_list(converted, recipe, integer_only):
    """Integer-only is read from the graph: float ops inside (XNNPACK's float islands, float
    kernels) are counted, the float I/O edges are not; the manifest records the count."""
    from contract.tflite_file import float_ops

    art, manifest = converted
    entry = next(a for a in manifest["artifacts"] if a["recipe"] == recipe)
    found = float_ops(open(os.path.join(art, entry["file"]), "rb").read())
    assert (not found) == integer_only, found[:5]
    assert entry["float_ops"] == len(found)


def test_float_islands_are_float_ops(converted):
    from contract.tflite_file import float_ops

    art, manifest = converted
    for entry in manifest["artifacts"]:
        if entry.get("float_islands"):
            ops = {o["op"] for o in float_ops(open(os.path.join(art, entry["file"]), "rb").read())}
            assert {"DEQUANTIZE", "QUANTIZE"} <= ops, entry["file"]
