"""QAT: the wrapped model computes the float function, every convolution becomes int8, and the
exported int8 TFLite agrees with the QAT Keras model."""
import json
import os

import numpy as np
import pytest


def _concat_input_channels(model):
    """{concat name: [channels of each input, in order]} for the mixed blocks."""
    out = {}
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        if type(inner).__name__ == "Concatenate" and inner.name.startswith("mixed"):
            ins = layer.input if isinstance(layer.input, list) else [layer.input]
            out[inner.name] = [int(t.shape[-1]) for t in ins]
    return out


@pytest.fixture(scope="module")
def float_model_and_images(tiny_export):
    from train.source import dataset_images, load_source

    src = load_source(tiny_export)
    return src.keras_model, dataset_images(src, "test", 64, seed=5)


def test_qat_model_computes_the_float_function_before_finetuning(float_model_and_images):
    import tensorflow_model_optimization as tfmot

    from quantize.qat import quantize_model

    model, x = float_model_and_images
    want = _concat_input_channels(model)
    assert want["mixed3"] == [38, 9, 27] and want["mixed8"] == [32, 19, 76]

    qat = quantize_model(model)
    assert _concat_input_channels(qat) == want

    # the guard is real: tfmot's own transformer (unpatched) rewires mixed3 and mixed8
    from tensorflow_model_optimization.python.core.quantization.keras.graph_transformations \
        import model_transformer
    from quantize import qat as qat_module

    patched = model_transformer.ModelTransformer._get_layers
    model_transformer.ModelTransformer._get_layers = qat_module._original_get_layers
    try:
        buggy = tfmot.quantization.keras.quantize_model(model)
    finally:
        model_transformer.ModelTransformer._get_layers = patched
    got_buggy = _concat_input_channels(buggy)
    assert got_buggy["mixed3"] != want["mixed3"] and got_buggy["mixed8"] != want["mixed8"]

    # functionally: the block outputs stay the float ones up to quantization noise. Compared with
    # batch statistics (training=True) so the untrained fake-quant ranges' EMA state does not
    # matter (seen: mixed3 0.46 fixed vs 1.15 buggy, mixed8 0.66 vs 0.94 on this tiny model).
    def rel_err(m, name):
        import tf_keras

        layer = [l for l in m.layers if getattr(l, "layer", l).name == name][0]
        ref_layer = model.get_layer(name)
        got = tf_keras.Model(m.input, layer.output)(x, training=True).numpy()
        want_ = tf_keras.Model(model.input, ref_layer.output)(x, training=True).numpy()
        return np.linalg.norm(got - want_) / np.linalg.norm(want_)

    for block in ("mixed3", "mixed8"):
        fixed, broken = rel_err(qat, block), rel_err(buggy, block)
        assert fixed < 0.75 and broken > 1.3 * fixed, (block, fixed, broken)


@pytest.fixture(scope="module")
def qat_export(tiny_export, tmp_path_factory):
    from quantize.qat import train_qat
    from train.config import resolve

    run = str(tmp_path_factory.mktemp("qat_run"))
    cfg = resolve("tiny_test_qat", None, ("train.epochs=1", "data.max_train_examples=96"))
    metrics = train_qat(cfg, run, tiny_export, log=lambda *a, **k: None)
    assert metrics["global_step"] == 3
    return os.path.join(run, "export")


def test_qat_exports_int8_that_agrees_with_the_qat_keras_model(qat_export, tmp_path):
    from convert.__main__ import main
    from contract.litert import TFLiteModel
    from train.source import dataset_images, load_source

    out = str(tmp_path / "art")
    assert main([qat_export, "--out", out, "--recipes", "static_wi8_ai8_int8io",
                 "--check-images", "32"]) == 0
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    art, = [a for a in manifest["artifacts"] if a["recipe"] == "static_wi8_ai8_int8io"]
    assert art["qat"] and art["file"] == "tiny_test_qat_static_wi8_ai8_int8io.tflite"
    # all 94 convolutions and the classifier run in int8 (max-pool outputs carry ranges)
    assert art["conv_input_dtypes"] == {"int8": 95}

    src = load_source(qat_export)
    assert src.is_qat
    x = dataset_images(src, "test", 48, seed=9)
    ref = src.predict(x)
    got = TFLiteModel(os.path.join(out, art["file"])).predict(x)
    # the collapse this guards against scores like another model (0.39 vs 0.91 in the field);
    # here every probability stays within 0.15 of the QAT Keras model's (0.106 on a Xeon with
    # AMX, ~0.07 on EPYCs: int8 rounding differs by CPU), so only images whose top-2 classes
    # are within 0.3 of each other can change their answer (the tiny model has many: its top-1
    # is 27 %)
    assert np.abs(got - ref).max() < 0.15
    assert np.mean(got.argmax(1) == ref.argmax(1)) >= 0.85
    top2 = np.sort(ref, axis=1)[:, -2:]
    sure = top2[:, 1] - top2[:, 0] > 0.3
    assert np.all(got.argmax(1)[sure] == ref.argmax(1)[sure])


def test_core_ml_int8_from_the_qat_weights(qat_export, tmp_path):
    """Core ML quantizes float weights itself: the QAT model's fine-tuned weights, stripped of
    their wrappers, give a float model that computes what the QAT model computes (up to its fake
    quantization), and its Core ML W8A8 package is checked against the QAT Keras model."""
    from convert.__main__ import main
    from train.source import dataset_images, load_source
    from quantize.qat import float_from_qat

    src = load_source(qat_export)
    flt = float_from_qat(src.keras_model, src.config)
    x = dataset_images(src, "test", 32, seed=3)
    ref = src.predict(x)
    got = flt.predict(x, verbose=0)
    # the weights are the QAT model's own, on its learned int8 grid: at most 255 levels each
    convs = [w for w in src.keras_model.weights if w.name.endswith("/kernel:0")]
    ours = [w for w in flt.weights if w.name.endswith("/kernel:0")]
    assert len(convs) == len(ours) == 95
    for a, b in zip(convs, ours):
        k = b.numpy().reshape(-1, b.shape[-1])
        assert all(len(np.unique(k[:, c])) <= 255 for c in range(k.shape[1]))
        assert np.abs(a.numpy() - b.numpy()).max() <= np.abs(a.numpy()).max() / 100 + 1e-6
    # and compute the QAT model's function up to its fake quantization: close on a typical
    # image (a wrong weight transfer moves every image). Not image by image: the activations'
    # fake quantization moves single images of this tiny model a lot, and how much depends on
    # the CPU's kernels (max |dp| 0.25 held on an EPYC; 0.36 on one image of 32 on a Xeon,
    # also at the commit that set the bound; median 0.047, agreement 0.875 there)
    dp = np.abs(got - ref).max(axis=1)
    assert np.median(dp) < 0.1, np.median(dp)
    assert np.mean(got.argmax(1) == ref.argmax(1)) >= 0.75
    out = str(tmp_path / "cm")
    # 64 calibration images: with 16 the activation ranges missed outliers and the check's
    # max |p - p_source| sat at 0.298-0.303 against its 0.3 tolerance, passing or failing
    # with the CPU's kernels; with 64 it was 0.140 (oneDNN on, 1 thread) on an EPYC, and
    # 0.36-0.44 on one of 32 images on a Xeon (also at the commit that set it; 200 images:
    # 0.39). The converter's check is right to report that; what this test holds on any CPU
    # is that the package answers as the QAT model does (the agreement), and that a bound it
    # misses is reported as a failed check, not a crash.
    rc = main([qat_export, "--out", out, "--targets", "coreml", "--coreml-variants",
               "wi8_ai8", "--calib-images", "64", "--check-images", "32"])
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    if rc == 0:
        arts = {a["recipe"]: a for a in manifest["artifacts"]}
        assert set(arts) == {"coreml_wi8_ai8"}
        a = arts["coreml_wi8_ai8"]
        assert a["qat"] and a["file"].startswith("tiny_test_qat_coreml_")
        check = a["check"]
        assert check["passed"]
    else:
        assert rc == 3 and not manifest["artifacts"]  # PARTIAL: the check failed, said so
        (f,) = manifest["failures"]
        check = f["check"]
        assert f["recipe"] == "coreml_wi8_ai8" and all(
            p.startswith("max |p - p_source|") for p in check["problems"]), check["problems"]
    assert check["top1_agreement"] >= 0.85, check
