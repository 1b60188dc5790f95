"""Core ML targets of convert/: every variant of the tiny model, spec checks, the ML Program
reference evaluator against Keras and its own op semantics, W8A8 calibrated on Linux."""
import json
import os
import sys

import numpy as np
import pytest

from conftest import needs_fmnist, run_module
from convert import mil_eval


@pytest.fixture(scope="module")
def coreml_converted(tiny_export, tmp_path_factory):
    from convert.__main__ import main

    out = str(tmp_path_factory.mktemp("coreml"))
    rc = main([tiny_export, "--out", out, "--targets", "coreml", "--calib-images", "32",
               "--check-images", "48", "--author", "tests", "--license", "MIT",
               "--model-version", "1.2"])
    assert rc == 0
    return out, json.load(open(os.path.join(out, "manifest.json")))


# variant -> (weight storage that must appear, spec version, quantize ops expected)
VARIANT_TABLE = {
    "fp16": ("float16", 7, False),
    "fp32": ("float32", 7, False),
    "wi8_afp16": ("constexpr_affine_dequantize", 7, False),
    "wlut6_afp16": ("constexpr_lut_to_dense", 7, False),
    "wlut4_afp16": ("constexpr_lut_to_dense", 7, False),
    "wi8_ai8": ("constexpr_affine_dequantize", 8, True),
}


@needs_fmnist
@pytest.mark.parametrize("variant", list(VARIANT_TABLE))
def test_every_variant_converts_and_meets_its_spec(coreml_converted, tiny_export, variant):
    from train.source import dataset_images, load_source

    out, manifest = coreml_converted
    by = {a["recipe"]: a for a in manifest["artifacts"]}
    a = by[f"coreml_{variant}"]
    storage, spec_version, quantized_acts = VARIANT_TABLE[variant]
    c = a["coreml"]
    assert a["target"] == "coreml" and a["file"].endswith(".mlpackage")
    assert c["input"]["name"] == "image" and (c["input"]["width"], c["input"]["height"]) == (75, 75)
    # the model's own scaling, read from preprocessing.json: x/127.5 - 1
    assert c["input"]["scale"] == pytest.approx(1 / 127.5) and c["input"]["bias"] == [-1.0] * 3
    assert c["classifier"] == "classLabel" and c["labels"] == 10
    md = c["metadata"]
    assert (md["author"], md["license"], md["version"]) == ("tests", "MIT", "1.2")
    assert json.loads(md["user_defined"]["preprocessing"])["scale"] == pytest.approx(1 / 127.5)
    assert md["user_defined"]["variant"] == variant
    assert c["specification_version"] == spec_version
    assert storage in c["weight_storage"]
    assert ("quantize" in c["op_counts"]) == quantized_acts
    ck = a["check"]
    # Core ML predicts only on macOS; elsewhere the ML Program reference evaluator checks
    assert ck["passed"] and ck["runtime"] == ("coreml" if sys.platform == "darwin"
                                              else "mil_reference")
    assert ck["weight_ratio_vs_fp32"] <= (ck["tolerance"]["max_size_ratio"] + 0.1
                                          if variant != "fp32" else 1.0)  # small-model slack
    # an independent check: the package on other images, against Keras
    src = load_source(tiny_export)
    x = dataset_images(src, "test", 16, 99)
    from convert.coreml import predict_package

    got, _ = predict_package(os.path.join(out, a["file"]), x, src)
    ref = src.predict(x)
    assert np.abs(got - ref).max() <= ck["tolerance"]["max_abs_diff"]
    if variant == "fp32":  # the evaluator computes what Keras computes
        assert np.abs(got - ref).max() < 1e-5
        rel = np.abs(got - ref) / np.maximum(np.abs(ref), 1e-2)
        assert rel.max() < 1e-4


@needs_fmnist
def test_compressed_variants_are_smaller_in_order(coreml_converted):
    _, manifest = coreml_converted
    w = {a["recipe"]: a["check"]["weight_bytes"] for a in manifest["artifacts"]}
    assert w["coreml_fp32"] > w["coreml_fp16"] > w["coreml_wi8_afp16"] > \
        w["coreml_wlut6_afp16"] > w["coreml_wlut4_afp16"]
    assert w["coreml_fp16"] / w["coreml_fp32"] == pytest.approx(0.5, abs=0.02)


@needs_fmnist
def test_edge_eval_scores_coreml_artifacts(coreml_converted, tmp_path):
    from edge_eval import harness

    art, _ = coreml_converted
    rows = harness.evaluate(art, str(tmp_path), images=100, bootstrap_rounds=50,
                            only=["coreml_fp32", "coreml_wi8_ai8"], log=lambda *a, **k: None)
    by = {r["recipe"]: r for r in rows}
    assert by["coreml_fp32"]["status"] == "ok" and by["coreml_fp32"]["runtime"] == "mil_reference"
    assert by["coreml_fp32"]["drift"]["argmax_agreement"] == 1.0
    assert by["coreml_wi8_ai8"]["status"] == "ok"
    assert 0.8 <= by["coreml_wi8_ai8"]["drift"]["argmax_agreement"] <= 1.0


# --------------------------------------------------------------------------------------------
# the evaluator's op semantics, table-driven against direct computations
# --------------------------------------------------------------------------------------------
def test_affine_and_blockwise_dequantize():
    q = np.array([[-128, 0, 127], [5, -5, 10]], np.int8)
    got = mil_eval.affine_dequantize(q, np.array([0, 1], np.int8), np.array([0.5, 2.0]), 0)
    np.testing.assert_allclose(got, [[-64, 0, 63.5], [8, -12, 18]])
    scale = np.array([[0.5], [2.0]])
    np.testing.assert_allclose(mil_eval.blockwise_shift_scale(q, scale), q * scale)


@pytest.mark.parametrize("nbits", [1, 2, 4, 6, 8])
def test_packed_lut_indices(nbits):
    rng = np.random.RandomState(nbits)
    idx = rng.randint(0, 2 ** nbits, size=37)
    bits = ((idx[:, None] >> np.arange(nbits)) & 1).astype(np.uint8).ravel()  # LSB first
    packed = np.packbits(bits, bitorder="little")
    np.testing.assert_array_equal(mil_eval.unpack_indices(packed, nbits, 37), idx)
    lut = rng.randn(2 ** nbits).astype(np.float32)
    np.testing.assert_allclose(mil_eval.lut_to_dense_ios16(lut, packed, [37]), lut[idx])


def _op(name, args):
    """One op of the evaluator's table on NCHW numpy inputs (activations as NCHW tensors)."""
    import tensorflow as tf

    ops = mil_eval._tf_ops(tf, {})
    args = {k: mil_eval._V(tf.constant(v)) if k in ("x", "input") else v for k, v in args.items()}
    return mil_eval._logical(tf, ops[name](args)).numpy()


def test_quantize_dequantize_round_trip():
    x = np.linspace(-3, 3, 13, dtype=np.float32)
    q = _op("quantize", {"input": x, "scale": np.float32(0.02), "zero_point": np.int8(3),
                         "output_dtype": "int8", "axis": None})
    assert q.dtype == np.int8 and q.min() == -128 and q.max() == 127  # saturates both ends
    assert q[6] == 3  # 0.0 -> the zero point
    back = _op("dequantize", {"input": q, "scale": np.float32(0.02),
                              "zero_point": np.int8(3), "axis": None})
    np.testing.assert_allclose(back, (np.clip(np.round(x / 0.02) + 3, -128, 127) - 3) * 0.02,
                               atol=1e-6)


# --- an independent numpy oracle of the MIL semantics (NCHW), for the layout table -----------
def _windows(x, k, s, pads, fill):
    xp = np.pad(x, [(0, 0), (0, 0), tuple(pads[0]), tuple(pads[1])], constant_values=fill)
    w = np.lib.stride_tricks.sliding_window_view(xp, k, axis=(2, 3))
    return w[:, :, ::s[0], ::s[1]]


def _same(n, k, s):
    p = max((-(-n // s) - 1) * s + k - n, 0)
    return [p // 2, p - p // 2]


def _pool_oracle(kind):
    def f(a):
        x, k, s = a["x"], list(a["kernel_sizes"]), list(a["strides"])
        pt = a["pad_type"]
        pads = ([_same(x.shape[2], k[0], s[0]), _same(x.shape[3], k[1], s[1])] if pt == "same"
                else [list(a["pad"][:2]), list(a["pad"][2:])] if pt == "custom"
                else [[0, 0], [0, 0]])
        if kind == "max":
            return _windows(x, k, s, pads, -np.inf).max(axis=(-2, -1))
        total = _windows(x, k, s, pads, 0).sum(axis=(-2, -1))
        if a.get("exclude_padding_from_average"):
            ones = np.ones_like(x[:1, :1])
            return total / _windows(ones, k, s, pads, 0).sum(axis=(-2, -1))
        return total / (k[0] * k[1])
    return f


def _bn_oracle(a):
    shp = (1, -1, 1, 1)
    return ((a["x"] - a["mean"].reshape(shp)) / np.sqrt(a["variance"].reshape(shp) + a["epsilon"])
            * a["gamma"].reshape(shp) + a["beta"].reshape(shp))


def _softmax_oracle(a):
    e = np.exp(a["x"] - a["x"].max(axis=a["axis"], keepdims=True))
    return e / e.sum(axis=a["axis"], keepdims=True)


def _quantize_oracle(a):
    x, dt, axis = a["input"], np.dtype(a["output_dtype"]), a["axis"]
    shp = [1] * x.ndim
    if axis is not None:
        shp[axis] = -1
    scale = np.reshape(a["scale"], shp)
    zp = np.reshape(np.asarray(a["zero_point"]).astype(np.float32), shp)
    info = np.iinfo(dt)
    return np.clip(np.round(x / scale + zp), info.min, info.max).astype(dt)


def _pad_oracle(a):
    p = a["pad"]
    return np.pad(a["x"], [(0, 0), (0, 0), (p[0], p[1]), (p[2], p[3])],
                  constant_values=a["constant_val"])


ORACLE = {
    "transpose": lambda a: np.transpose(a["x"], a["perm"]),
    "reduce_mean": lambda a: a["x"].mean(axis=tuple(a["axes"]), keepdims=a["keep_dims"]),
    "reduce_max": lambda a: a["x"].max(axis=tuple(a["axes"]), keepdims=a["keep_dims"]),
    "reduce_sum": lambda a: a["x"].sum(axis=tuple(a["axes"]), keepdims=a["keep_dims"]),
    "softmax": _softmax_oracle, "pad": _pad_oracle, "batch_norm": _bn_oracle,
    "add": lambda a: a["x"] + a["y"], "mul": lambda a: a["x"] * a["y"],
    "reshape": lambda a: a["x"].reshape(a["shape"]),
    "squeeze": lambda a: np.squeeze(a["x"]), "relu": lambda a: np.maximum(a["x"], 0),
    "avg_pool": _pool_oracle("avg"), "max_pool": _pool_oracle("max"),
    "quantize": _quantize_oracle,
}


_X = np.random.RandomState(3).randn(2, 4, 5, 6).astype(np.float32)
_C = np.random.RandomState(4).rand(4).astype(np.float32) + 0.5

# layout-sensitive ops: (op, args besides the activation, the activation's argument name)
LAYOUT_TABLE = [
    ("transpose", {"perm": np.array([0, 2, 1, 3])}, "x"),
    ("transpose", {"perm": np.array([0, 2, 3, 1])}, "x"),
    ("reduce_mean", {"axes": np.array([2, 3]), "keep_dims": False}, "x"),
    ("reduce_mean", {"axes": np.array([-1]), "keep_dims": False}, "x"),
    ("reduce_max", {"axes": np.array([1]), "keep_dims": True}, "x"),
    ("reduce_sum", {"axes": np.array([1, 3]), "keep_dims": False}, "x"),
    ("softmax", {"axis": 1}, "x"),
    ("pad", {"pad": np.array([1, 0, 2, 3]), "mode": "constant", "constant_val": 0.5}, "x"),
    ("batch_norm", {"mean": _C, "variance": _C, "gamma": _C, "beta": -_C, "epsilon": 1e-3}, "x"),
    ("add", {"y": _C.reshape(1, 4, 1, 1)}, "x"),
    ("mul", {"y": np.float32(0.5)}, "x"),
    ("reshape", {"shape": np.array([1, 4, 30])}, "x"),
    ("squeeze", {"axes": None}, "x"),
    ("relu", {}, "x"),
    ("avg_pool", {"kernel_sizes": np.array([3, 3]), "strides": np.array([2, 2]),
                  "pad_type": "same", "exclude_padding_from_average": False}, "x"),
    ("avg_pool", {"kernel_sizes": np.array([3, 3]), "strides": np.array([1, 1]),
                  "pad_type": "custom", "pad": np.array([1, 1, 1, 1]),
                  "exclude_padding_from_average": True}, "x"),
    ("max_pool", {"kernel_sizes": np.array([2, 2]), "strides": np.array([2, 2]),
                  "pad_type": "valid"}, "x"),
    ("quantize", {"scale": _C / 50, "zero_point": np.array([1, -2, 0, 3], np.int8),
                  "output_dtype": "int8", "axis": 1}, "input"),
    ("quantize", {"scale": np.float32(0.02), "zero_point": np.uint8(128),
                  "output_dtype": "uint8", "axis": None}, "input"),
]


@pytest.mark.parametrize("op, args, key", LAYOUT_TABLE,
                         ids=[f"{t[0]}-{i}" for i, t in enumerate(LAYOUT_TABLE)])
def test_ops_match_the_mil_semantics_in_either_layout(op, args, key):
    """The walk keeps rank-4 activations NHWC; each op must give the MIL (NCHW) answer of an
    independent numpy computation from an NHWC input and from an NCHW one."""
    import tensorflow as tf

    x = _X[:1] if op == "reshape" else _X
    want = np.asarray(ORACLE[op]({key: x, **args}))
    if want.dtype.kind == "f":
        want = want.astype(np.float32)
    ops = mil_eval._tf_ops(tf, {})
    for v in (mil_eval._V(tf.constant(x.transpose(0, 2, 3, 1)), True),
              mil_eval._V(tf.constant(x), False)):
        got = mil_eval._logical(tf, ops[op]({key: v, **args})).numpy()
        assert got.dtype == np.asarray(want).dtype
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@needs_fmnist
def test_the_traced_walk_computes_what_the_eager_walk_computes(coreml_converted):
    out, manifest = coreml_converted
    x = np.random.RandomState(0).uniform(0, 255, (24, 3, 75, 75)).astype(np.float32)
    for a in manifest["artifacts"]:
        ev = mil_eval.Evaluator(os.path.join(out, a["file"]))
        ref = ev.predict(x, batch_size=8, compiled=False)
        got = ev.predict(x, batch_size=16)
        # one walk, eager and traced: Grappler's graph rewrites must not change the values;
        # fp16 programs may differ by one fp16 rounding step where TensorFlow's fused kernels
        # differ from the eager ones by one float32 ulp
        tol = 1e-3 if "fp16" in a["recipe"] else 1e-6
        assert np.abs(got - ref).max() <= tol, a["recipe"]
        assert (got.argmax(1) == ref.argmax(1)).all(), a["recipe"]


def test_unknown_op_is_named():
    class Op:
        op_type = "einsum"
        outputs = []
        inputs = {}

    class Fn:
        operations = [Op()]
        inputs = {"image": None}

    class Prog:
        functions = {"main": Fn()}

    with pytest.raises(mil_eval.MILError, match="einsum"):
        mil_eval.Evaluator(program=Prog())


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--targets", "coreml", "--coreml-variants", "fp8"], "unknown Core ML variant"),
    (["--targets", "coreml", "--coreml-target", "iOS9"], "unknown deployment target"),
    (["--targets", "coreml", "--coreml-variants", "wi8_ai8", "--coreml-target", "iOS16"],
     "needs iOS17"),
    (["--targets", "onnx"], "unknown target"),
])
def test_bad_coreml_input_is_one_clear_error(tmp_path, args, message):
    r = run_module(["convert", str(tmp_path / "no_model"), "--out", str(tmp_path / "o"), *args])
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not os.path.exists(tmp_path / "o")
