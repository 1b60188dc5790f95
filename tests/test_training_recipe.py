"""The training recipe's numbers, as data (table-driven: the schedule at chosen steps, the
optimizer's hyper-parameters, clipping, smoothing, the aux weight, the weight average's decay),
and what a run hands on: an average that warms up, a float32 export from mixed precision, a
fine-tune that starts from local ImageNet weights with its backbone frozen first."""
import json
import os

import numpy as np
import pytest

from train import keras_env  # noqa: F401
from train.config import resolve

# --------------------------------------------------------------------------------------------
# the numbers
# --------------------------------------------------------------------------------------------
# (preset, global batch, steps/epoch, epochs, step, expected rate): the paper's staircase decay
# (0.94 every 2 epochs) after a linear warm-up; the demo's cosine
SCHEDULE = [
    # ImageNet preset, batch 256: the rate scales 8x to 0.36 with a 5-epoch warm-up (auto_warmup)
    ("inception_v3_imagenet", 256, 100, 100, 0, 0.36 * 1 / 500),
    ("inception_v3_imagenet", 256, 100, 100, 249, 0.36 * 250 / 500),
    ("inception_v3_imagenet", 256, 100, 100, 500, 0.36),
    ("inception_v3_imagenet", 256, 100, 100, 699, 0.36),
    ("inception_v3_imagenet", 256, 100, 100, 700, 0.36 * 0.94),
    ("inception_v3_imagenet", 256, 100, 100, 2500, 0.36 * 0.94 ** 10),
    # the paper's batch 32: no warm-up, 0.045 decayed 0.94 every 2 epochs
    ("inception_v3_imagenet", 32, 100, 100, 0, 0.045),
    ("inception_v3_imagenet", 32, 100, 100, 200, 0.045 * 0.94),
    # the demo: Adam 0.002 at batch 128, cosine after a 0.1-epoch warm-up
    ("inception_v3_fashion_mnist_demo", 128, 100, 3, 9, 0.002),
    ("inception_v3_fashion_mnist_demo", 128, 100, 3, 10, 0.002),
    ("inception_v3_fashion_mnist_demo", 128, 100, 3, 155, 0.001),
    ("inception_v3_fashion_mnist_demo", 128, 100, 3, 300, 0.0),
]


@pytest.mark.parametrize("preset, batch, spe, epochs, step, want", SCHEDULE)
def test_the_learning_rate_at_chosen_steps(preset, batch, spe, epochs, step, want):
    from train.trainer import make_optimizer

    cfg = resolve(preset, None, (f"train.batch_size={batch}", f"train.epochs={epochs}"))
    lr = make_optimizer(cfg, spe)._learning_rate  # the schedule itself
    assert float(lr(step)) == pytest.approx(want, rel=1e-5, abs=1e-9)


# (preset, optimizer class, {hyper-parameter: value}) as the optimizer holds them
OPTIMIZERS = [
    ("inception_v3_imagenet", "RMSprop", {"rho": 0.9, "momentum": 0.9, "epsilon": 1.0,
                                          "global_clipnorm": 2.0, "use_ema": True,
                                          "ema_momentum": 0.9999}),
    ("inception_v3_fashion_mnist_demo", "Adam", {"epsilon": 1e-7, "global_clipnorm": 2.0,
                                                 "ema_momentum": 0.99, "weight_decay": 1e-5}),
    ("inception_v3_finetune", "SGD", {"momentum": 0.9, "nesterov": True, "use_ema": True,
                                      "ema_momentum": 0.999, "global_clipnorm": 2.0}),
    ("tiny_test", "RMSprop", {"use_ema": False, "epsilon": 1e-3}),
]


@pytest.mark.parametrize("preset, cls, want", OPTIMIZERS)
def test_the_optimizers_hyper_parameters(preset, cls, want):
    from train.trainer import make_optimizer

    opt = make_optimizer(resolve(preset), 100)
    assert type(opt).__name__ == cls
    got = {k: getattr(opt, k) for k in want}
    assert got == pytest.approx(want), got


# (preset, label smoothing, aux loss weight, L2 mode, BN momentum)
LOSSES = [
    ("inception_v3_imagenet", 0.1, 0.4, "l2", 0.9997),  # slim's: 0.9997, not Keras' 0.99
    ("inception_v3_fashion_mnist_demo", 0.1, None, "decoupled", 0.99),
    ("inception_v3_finetune", 0.1, None, "l2", 0.99),
]


@pytest.mark.parametrize("preset, smoothing, aux, decay_mode, bn", LOSSES)
def test_the_losses_as_compiled(preset, smoothing, aux, decay_mode, bn):
    from train.trainer import build_for_training

    cfg = resolve(preset, None, ("model.depth_multiplier=0.1", "model.min_depth=4",
                                 "model.input_size=75", "model.num_classes=5"))
    assert cfg.model.bn_momentum == bn and cfg.optim.weight_decay_mode.value == decay_mode
    model = build_for_training(cfg, 10)
    losses = model.compiled_loss._user_losses
    assert all(l.get_config()["label_smoothing"] == pytest.approx(smoothing) for l in losses)
    weights = model.compiled_loss._user_loss_weights
    assert weights == ([1.0, aux] if aux is not None else [1.0])
    bns = [l for l in model.layers if type(l).__name__.startswith("BatchNormalization")]
    assert bns and all(l.momentum == pytest.approx(bn) for l in bns)


@pytest.mark.parametrize("momentum, step, want", [
    (0.9999, 0, 0.1), (0.9999, 10, 0.55), (0.9999, 90, 0.91), (0.9999, 990, 0.991),
    (0.9999, 10 ** 7, 0.9999), (0.99, 90, 0.91), (0.99, 10 ** 4, 0.99),
])
def test_the_weight_average_warms_up_as_slims(momentum, step, want):
    from train.trainer import ema_decay

    assert float(ema_decay(momentum, step)) == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("preset, size, regime, stride, pool", [
    ("inception_v3_imagenet", 299, "r299", 2, True),
    ("inception_v3_imagenet_r151", 151, "r151", 1, True),
    ("inception_v3_imagenet_r79", 79, "r79", 1, False),
])
def test_the_papers_low_resolution_regimes_are_presets(preset, size, regime, stride, pool):
    from train.model import build_inception_v3

    cfg = resolve(preset)
    assert (cfg.model.input_size, cfg.model.regime.value) == (size, regime)
    assert (cfg.model.regime.first_stride, cfg.model.regime.first_pool) == (stride, pool)
    m = build_inception_v3(cfg.model, depth_multiplier=0.1, min_depth=4, num_classes=5)
    # every regime reaches mixed10 on an 8x8 grid, as Table 2 sets them up
    assert tuple(m.end_points["mixed10"].shape[1:3]) == (8, 8)


def test_a_half_precision_model_is_refused_with_the_real_reason(tmp_path, capsys):
    import tf_keras as keras

    from contract.preprocessing import PreprocessingSpec
    from convert.__main__ import main

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        inp = keras.Input((8, 8, 3))
        x = keras.layers.Conv2D(4, 3)(keras.layers.Rescaling(1.0)(inp))
        out = keras.layers.Dense(3, activation="softmax", dtype="float32")(
            keras.layers.GlobalAveragePooling2D()(x))
        m = keras.Model(inp, out)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    folder = tmp_path / "m"
    folder.mkdir()
    m.save(str(folder / "model.keras"))
    PreprocessingSpec(input_size=[8, 8]).save(str(folder))
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((4, 8, 8, 3), np.float32))
    rc = main([str(folder), "--out", str(tmp_path / "out"), "--recipes", "fp32",
               "--check-npy", str(x)])
    err = capsys.readouterr().err
    assert rc == 2 and "computes in float16" in err and "Export it in float32" in err, err
    assert "cannot quantize" not in err


# --------------------------------------------------------------------------------------------
# runs (slow)
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_short_run_with_the_imagenet_decay_exports_a_model_as_good_as_no_average(
        tiny_export, tmp_path):
    """The tiny job's training (no average: tiny_export) against the same run with the ImageNet
    preset's 0.9999: slim's warm-up makes the exported average no worse (within a point) on the
    same test images, where tf_keras' plain average was still ~98 % initialisation."""
    from pipeline.job import TINY_TRAIN_SETS
    from train.trainer import train

    plain = json.load(open(os.path.join(tiny_export, "metrics.json")))["top1"]
    cfg = resolve("tiny_test", None, tuple(TINY_TRAIN_SETS) + ("optim.ema_momentum=0.9999",))
    avg = train(cfg, str(tmp_path / "ema"), log=lambda *a, **k: None, export=False)["top1"]
    print(f"tiny run: no average {plain:.4f}, average 0.9999 {avg:.4f}")
    assert avg >= plain - 0.01, (avg, plain)


@pytest.mark.slow
def test_mixed_precision_reaches_the_phone(tmp_path):
    """mixed_float16 trains (here on a CPU, with oneDNN off: see the next test); the export
    computes in float32; convert gives fp32 and int8 that pass their checks; QAT fine-tunes it
    in float32."""
    import subprocess
    import sys

    from conftest import ROOT
    from train.source import load_source
    from train.model import computes_in

    run = tmp_path / "mixed"
    env = dict(os.environ, PYTHONPATH=ROOT)
    t = subprocess.run([sys.executable, "-m", "train", "--preset", "tiny_test", "--run-dir",
                        str(run), "--set", "train.precision=mixed_float16", "--set",
                        "train.epochs=1", "--set", "data.max_train_examples=256", "--set",
                        "model.aux_logits=false"], cwd=ROOT, capture_output=True, text=True,
                       env=dict(env, TF_ENABLE_ONEDNN_OPTS="0"), timeout=600)
    assert t.returncode == 0, t.stdout[-2000:] + t.stderr[-2000:]
    assert json.load(open(run / "export" / "config.json"))["train"]["precision"] == \
        "mixed_float16"  # it trained in half precision
    src = load_source(str(run / "export"))
    assert computes_in(src.keras_model) == {"float32"}
    p = subprocess.run([sys.executable, "-m", "convert", str(run / "export"), "--out",
                        str(tmp_path / "art"), "--recipes", "fp32,static_wi8_ai8",
                        "--calib-images", "16", "--check-images", "32"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    manifest = json.load(open(tmp_path / "art" / "manifest.json"))
    assert sorted(a["recipe"] for a in manifest["artifacts"]) == ["fp32", "static_wi8_ai8"]
    q = subprocess.run([sys.executable, "-m", "quantize", "qat", "--settings", "finetune",
                        "--float", str(run / "export"), "--run-dir", str(tmp_path / "qat"),
                        "--set", "data.max_train_examples=64"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert q.returncode == 0, q.stdout[-2000:] + q.stderr[-2000:]
    qcfg = json.load(open(tmp_path / "qat" / "export" / "config.json"))
    assert qcfg["train"]["precision"] == "float32" and qcfg["quantization"]["enabled"]


def test_float16_training_without_a_gpu_is_refused_before_it_crashes(tmp_path, monkeypatch):
    from train.trainer import train

    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
    cfg = resolve("tiny_test", None, ("train.precision=mixed_float16",))
    with pytest.raises(ValueError, match="mixed_float16 is for GPUs"):
        train(cfg, str(tmp_path / "run"), log=lambda *a, **k: None)
    assert not (tmp_path / "run").exists()


def test_qat_in_half_precision_is_refused(tmp_path):
    from train.trainer import train

    cfg = resolve("tiny_test_qat", None, ("train.precision=mixed_bfloat16",))
    with pytest.raises(ValueError, match="quantization-aware training runs in float32"):
        train(cfg, str(tmp_path / "run"), model_transform=lambda m: m,
              log=lambda *a, **k: None)


@pytest.mark.slow
def test_the_finetune_preset_starts_from_local_imagenet_weights(tmp_path):
    """README's own job: inception_v3_finetune with Keras' ImageNet file (here one saved from a
    randomly initialised InceptionV3: no weights are downloaded). The backbone comes from the
    file, the new head learns while the backbone is frozen, then the backbone trains too."""
    import cv2
    import tf_keras

    from train.trainer import train

    weights = str(tmp_path / "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5")
    ref = tf_keras.applications.InceptionV3(weights=None, include_top=False)
    ref.save_weights(weights)
    rng = np.random.default_rng(0)
    for c in range(3):
        (tmp_path / "photos" / f"c{c}").mkdir(parents=True)
        for i in range(12):
            img = rng.integers(0, 60, (90, 90, 3)).astype(np.uint8) + np.uint8(60 * c)
            cv2.imwrite(str(tmp_path / "photos" / f"c{c}" / f"{i}.png"), img)
    first_conv = ref.layers[1].get_weights()[0]

    def run(name, freeze):
        cfg = resolve("inception_v3_finetune", None, (
            f"data.path={tmp_path / 'photos'}", "model.num_classes=3", f"train.weights={weights}",
            "model.input_size=75", "train.batch_size=8", "train.epochs=2",
            f"optim.backbone_freeze_epochs={freeze}", "train.eval_batch_size=8"))
        m = train(cfg, str(tmp_path / name), log=lambda *a, **k: None, export=False)["model"]
        conv = [l for l in m.layers if l.weights][0].get_weights()[0]
        head = m.get_layer("logits").get_weights()[0]
        return conv, head

    # frozen for the whole run: the backbone is the file's (up to the average's float32
    # rounding of identical values, ~1 ulp)
    conv, head = run("frozen", 2)
    np.testing.assert_allclose(conv, first_conv, rtol=1e-6, atol=1e-7)
    assert np.abs(head).sum() > 0
    conv, _ = run("thawed", 1)  # one epoch frozen, then a tenth of the rate: it moves, a little
    moved = np.abs(conv - first_conv).max()
    assert 1e-5 < moved < 0.05 * np.abs(first_conv).max(), moved


def test_a_finished_run_is_reused_only_for_the_code_that_made_it(tmp_path):
    """A rerun of the same config reuses the export only when the trainer's code (its import
    closure) is the one that made it: an edit to what training computes trains again."""
    from train.trainer import finished_run, training_code

    cfg = resolve("tiny_test")
    exp = tmp_path / "export"
    cfg.save(str(exp))
    code = training_code()
    (exp / "metrics.json").write_text(json.dumps({"top1": 0.5, "code": code}))
    assert finished_run(str(tmp_path), cfg, code)["top1"] == 0.5
    assert finished_run(str(tmp_path), cfg, "another" + code[7:]) is None
    (exp / "metrics.json").write_text(json.dumps({"top1": 0.5}))  # made before code keys
    assert finished_run(str(tmp_path), cfg, code) is None
    assert finished_run(str(tmp_path), resolve("tiny_test", None, ("train.epochs=9",)),
                        code) is None
    # the digest follows the files: QAT's transform adds its own module's closure
    from quantize import qat

    assert training_code(qat.load_float_weights) != code
