"""A reference evaluator of Core ML ML Programs, for Linux (Core ML's own ``predict`` exists only on
macOS).

One op table (``_tf_ops``: every op as TensorFlow computes it) and one walker (``walk``) over the
program's operations in order. The walker runs eagerly for calibration (``Evaluator.run``, which
records activation ranges) and traced into one ``tf.function`` for scoring (``compile_program``,
~3x faster): the same ops, values and errors either way. Constexpr weight decompression (affine /
blockwise int8, palettized look-up tables with packed indices) runs once, in numpy. Rank-4
activations stay NHWC inside (TensorFlow's CPU kernels' layout): each value carries a flag, and
layout-sensitive ops map their axes instead of transposing at every convolution. It runs a whole
batch at once whatever the program's declared batch size. An op it does not know is an error
that names it: never a silent wrong answer.

Precision: a program converted with FP16 compute has ``cast`` ops to fp16; from there every op's
output is rounded to fp16 (fp32 accumulation inside an op, as Core ML's GPU and Neural Engine do),
so fp16 artifacts show their own rounding, not float32 results.

It also records activation ranges (``ranges=``), which is how W8A8 calibration runs on Linux.
"""
from __future__ import annotations

import os
from typing import Callable, Dict, Optional

import numpy as np


class MILError(ValueError):
    pass


def load_program(mlpackage: str):
    """The MIL program (coremltools' pymil) of a saved ``.mlpackage``."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load as milproto_load

    spec = ct.utils.load_spec(mlpackage)
    weights = os.path.join(mlpackage, "Data", "com.apple.CoreML", "weights")
    return milproto_load(spec, spec.specificationVersion, weights), spec


# --------------------------------------------------------------------------------------------
# weight decompression (constexpr ops)
# --------------------------------------------------------------------------------------------
def _bcast(v: np.ndarray, shape, axis: int) -> np.ndarray:
    v = np.asarray(v)
    if v.ndim == 0 or v.ndim == len(shape):
        return v
    s = [1] * len(shape)
    s[axis] = v.size
    return v.reshape(s)


def affine_dequantize(q, zero_point, scale, axis) -> np.ndarray:
    q = np.asarray(q).astype(np.float32)
    return (q - _bcast(zero_point, q.shape, axis).astype(np.float32)) * \
        _bcast(scale, q.shape, axis).astype(np.float32)


def _repeat_blocks(v: np.ndarray, shape) -> np.ndarray:
    """Expand a per-block tensor (same rank as ``shape``, each dim dividing it) to ``shape``."""
    v = np.asarray(v)
    for ax, (n, m) in enumerate(zip(shape, v.shape)):
        if n != m:
            v = np.repeat(v, n // m, axis=ax)
    return v


def blockwise_shift_scale(data, scale, offset=None) -> np.ndarray:
    d = np.asarray(data).astype(np.float32)
    if offset is not None:
        d = d - _repeat_blocks(np.asarray(offset).astype(np.float32), d.shape)
    return d * _repeat_blocks(np.asarray(scale).astype(np.float32), d.shape)


def unpack_indices(packed: np.ndarray, nbits: int, count: int) -> np.ndarray:
    """iOS16 ``constexpr_lut_to_dense``: indices packed little-endian, LSB first, ``nbits`` each."""
    bits = np.unpackbits(np.asarray(packed, np.uint8), bitorder="little")[:count * nbits]
    w = (1 << np.arange(nbits)).astype(np.int64)
    return bits.reshape(count, nbits).astype(np.int64) @ w


def lut_to_dense_ios16(lut, packed, shape) -> np.ndarray:
    lut = np.asarray(lut)
    n = int(np.prod(shape))
    nbits = int(np.log2(lut.shape[0]))
    return lut[unpack_indices(packed, nbits, n)].reshape(shape).astype(np.float32)


def lut_to_dense_ios18(indices, lut, vector_axis=None) -> np.ndarray:
    """iOS18: ``indices`` (uintN, the weight's shape), ``lut`` [blocks..., 2^N, vector]."""
    idx = np.asarray(indices).astype(np.int64)
    lut = np.asarray(lut)
    rank = idx.ndim
    if lut.shape[-1] != 1:
        raise MILError("vector palettization (lut vector size > 1) is not supported")
    table = lut[..., 0]  # [b0, ..., b_{r-1}, K]
    out = np.empty(idx.shape, np.float32)
    blocks = table.shape[:rank]
    step = [s // b for s, b in zip(idx.shape, blocks)]
    for bidx in np.ndindex(*blocks):
        sl = tuple(slice(i * st, (i + 1) * st) for i, st in zip(bidx, step))
        out[sl] = table[bidx][idx[sl]]
    return out


# --------------------------------------------------------------------------------------------
# the interpreter
# --------------------------------------------------------------------------------------------
def _value(env: dict, v):
    """An op argument: a computed value, a constant's value, or a list of either."""
    if v is None:
        return None
    if isinstance(v, (list, tuple)):
        return [_value(env, t) for t in v]
    if v.name in env:
        return env[v.name]
    if v.val is not None:
        return v.val
    raise MILError(f"{v.name} is used before it is computed")


class Evaluator:
    """``Evaluator(path).predict(images_nchw_0_255)`` -> the classifier's probabilities."""

    def __init__(self, mlpackage: str = None, program=None, spec=None):
        if program is None:
            program, spec = load_program(mlpackage)
        self.program, self.spec = program, spec
        self.fn = program.functions["main"]
        self.ops = list(self.fn.operations)
        self.input_name = next(iter(self.fn.inputs))
        self._consts: Dict[str, np.ndarray] = {}
        self._compiled = None
        self._ops = None  # the op table, built with TensorFlow on first use
        self._holder: dict = {}
        unknown = sorted({o.op_type for o in self.ops} - set(OP_TYPES))
        if unknown:
            raise MILError(f"the reference evaluator has no implementation of {unknown}")

    def op_types(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        for o in self.ops:
            out[o.op_type] = out.get(o.op_type, 0) + 1
        return out

    def table(self) -> dict:
        if self._ops is None:
            self._ops = _tf_ops(_tf(), self._holder)
        return self._ops

    def run(self, x: np.ndarray, ranges: Optional[Dict[str, list]] = None) -> Dict[str, np.ndarray]:
        """The program op by op, eagerly (``walk``): the outputs by name (a classifier's as
        ``probabilities`` and ``classes``); ``ranges`` collects each float value's [min, max]
        (W8A8 calibration)."""
        tf = _tf()
        out = walk(self, tf.constant(np.asarray(x, np.float32)), self.table(), ranges)
        return {k: (v if isinstance(v, list) else np.asarray(v)) for k, v in out.items()}

    def predict(self, x: np.ndarray, batch_size: int = 64, compiled: bool = True) -> np.ndarray:
        """Probabilities [N, classes] for images x (NCHW, the program's input scale): through
        the compiled graph (``compile_program``), or op by op (``compiled=False``)."""
        parts = []
        if compiled and self._compiled is None:
            self._compiled = compile_program(self)
        for i in range(0, len(x), batch_size):
            chunk = np.asarray(x[i:i + batch_size], np.float32)
            if compiled:
                parts.append(self._compiled(chunk).numpy().reshape(len(chunk), -1))
                continue
            r = self.run(chunk)
            probs = r["probabilities"] if "probabilities" in r else \
                r[self.fn.outputs[0].name]
            parts.append(np.asarray(probs).reshape(len(chunk), -1))
        return np.concatenate(parts, axis=0)


# --------------------------------------------------------------------------------------------
# ops
# --------------------------------------------------------------------------------------------
def _tf():
    import tensorflow as tf

    return tf


def _pads(args, rank: int = 2):
    pt = str(args.get("pad_type", "valid"))
    if pt == "custom":
        p = [int(v) for v in np.asarray(args["pad"]).ravel()]
        return [[0, 0], [p[0], p[1]], [p[2], p[3]], [0, 0]]
    if pt in ("same", "same_lower"):
        if pt == "same_lower":
            raise MILError("pad_type same_lower is not supported")
        return "SAME"
    return "VALID"


def _pool_params(a):
    """Kernel size, strides and padding of a pooling op (TensorFlow's form)."""
    if a.get("ceil_mode"):
        raise MILError("ceil_mode pooling is not supported")
    return ([int(v) for v in np.asarray(a["kernel_sizes"]).ravel()],
            [int(v) for v in np.asarray(a["strides"]).ravel()], _pads(a))


def _same_pads(h: int, w: int, k, s):
    """SAME padding as explicit NHWC widths (the extra pixel after, as TensorFlow pads)."""
    ph = max((-(-h // s[0]) - 1) * s[0] + k[0] - h, 0)
    pw = max((-(-w // s[1]) - 1) * s[1] + k[1] - w, 0)
    return [[0, 0], [ph // 2, ph - ph // 2], [pw // 2, pw - pw // 2], [0, 0]]


def _lut(a):
    if "shape" in a and a.get("shape") is not None:  # iOS16: packed indices
        return lut_to_dense_ios16(a["lut"], a["indices"], [int(v) for v in a["shape"]])
    return lut_to_dense_ios18(a["indices"], a["lut"], a.get("vector_axis"))


# ops whose outputs are some of their inputs' values (already fp16 values): no rounding needed
_EXACT_IN_FP16 = {"relu", "max_pool", "concat", "transpose", "reshape", "squeeze", "expand_dims",
                  "reduce_max", "maximum", "minimum", "pad"}

_CAST = {"fp16": np.float16, "fp32": np.float32, "int32": np.int32, "int8": np.int8,
         "uint8": np.uint8, "bool": np.bool_}

# weight decompression, run once per program in numpy (its results are constants)
_CONSTEXPR: Dict[str, Callable[[dict], np.ndarray]] = {
    "constexpr_affine_dequantize": lambda a: affine_dequantize(
        a["quantized_data"], a["zero_point"], a["scale"], int(a["axis"])),
    "constexpr_blockwise_shift_scale": lambda a: blockwise_shift_scale(
        a["data"], a["scale"], a.get("offset")),
    "constexpr_lut_to_dense": _lut,
}


# --------------------------------------------------------------------------------------------
# the op table (TensorFlow) and its value type
# --------------------------------------------------------------------------------------------
_TO_NHWC = (0, 2, 3, 1)  # physical axis i holds logical (NCHW) axis _TO_NHWC[i]
_TO_NCHW = (0, 3, 1, 2)
_PHYS_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}  # logical axis -> its physical position in NHWC


class _V:
    """A value in the compiled walk: a tensor (or numpy constant) and whether it is NHWC."""
    __slots__ = ("t", "nhwc")

    def __init__(self, t, nhwc: bool = False):
        self.t, self.nhwc = t, nhwc


def _logical(tf, v: "_V"):
    return tf.transpose(v.t, _TO_NCHW) if v.nhwc else v.t


def _physical(tf, v: "_V"):
    if v.nhwc:
        return v.t
    if isinstance(v.t, np.ndarray):
        return np.transpose(v.t, _TO_NHWC)
    return tf.transpose(v.t, _TO_NHWC)


def _rank(t) -> int:
    return t.ndim if isinstance(t, np.ndarray) else t.shape.rank


def _tf_ops(tf, holder: dict):
    """Compiled implementations: ``f(args) -> _V``; ``args`` maps names to ``_V`` (tensors) or
    plain numpy/python values (constants). Variables the graph captures go into ``holder``."""

    def unary(fn):
        def f(a):
            x = a["x"]
            return _V(fn(x.t), x.nhwc)
        return f

    def binary(fn):
        def f(a):
            x, y = a["x"], a["y"]
            xs = x if isinstance(x, _V) else _V(np.asarray(x, np.float32))
            ys = y if isinstance(y, _V) else _V(np.asarray(y, np.float32))
            if xs.nhwc or ys.nhwc:
                ok = all(v.nhwc or _rank(v.t) == 0 or _rank(v.t) == 4 for v in (xs, ys))
                if ok:
                    return _V(fn(_physical(tf, xs) if _rank(xs.t) == 4 else xs.t,
                                 _physical(tf, ys) if _rank(ys.t) == 4 else ys.t), True)
                return _V(fn(_logical(tf, xs), _logical(tf, ys)))
            return _V(fn(xs.t, ys.t))
        return f

    def conv(a):
        x = a["x"]
        w = np.asarray(a["weight"], np.float32).transpose(2, 3, 1, 0)  # [kh, kw, Cin/g, Cout]
        groups = int(a.get("groups", 1) if a.get("groups") is not None else 1)
        strides = [1, *[int(s) for s in np.asarray(a.get("strides", [1, 1])).ravel()], 1]
        dil = [1, *[int(d) for d in np.asarray(a.get("dilations", [1, 1])).ravel()], 1]
        pads = _pads(a)
        xt = _physical(tf, x)
        if groups == 1:
            y = tf.nn.conv2d(xt, w, strides=strides, padding=pads, dilations=dil)
        else:
            y = tf.concat([tf.nn.conv2d(xi, wi, strides=strides, padding=pads, dilations=dil)
                           for xi, wi in zip(tf.split(xt, groups, axis=3),
                                             np.split(w, groups, axis=3))], axis=3)
        if a.get("bias") is not None:
            y = y + np.asarray(a["bias"], np.float32)
        return _V(y, True)

    def pool(kind):
        def f(a):
            x = _physical(tf, a["x"])
            k, s, pads = _pool_params(a)
            if kind == "max":
                if isinstance(pads, list):
                    x = tf.pad(x, pads, constant_values=-np.inf)
                    pads = "VALID"
                return _V(tf.nn.max_pool2d(x, k, s, pads), True)
            exclude = bool(a.get("exclude_padding_from_average", False))
            if pads == "VALID" or (pads == "SAME" and exclude):
                return _V(tf.nn.avg_pool2d(x, k, s, pads), True)
            h, w = int(x.shape[1]), int(x.shape[2])
            if pads == "SAME":
                pads = _same_pads(h, w, k, s)
            y = tf.nn.avg_pool2d(tf.pad(x, pads), k, s, "VALID")
            if exclude:  # the share of real pixels in each window: a constant, in numpy
                ones = np.pad(np.ones((h, w), np.float32), [pads[1], pads[2]])
                win = np.lib.stride_tricks.sliding_window_view(ones, k)[::s[0], ::s[1]]
                cnt = win.mean(axis=(-2, -1))[None, :, :, None]
                y = y / np.maximum(cnt, 1e-12)
            return _V(y, True)
        return f

    def concat(a):
        vals = a["values"]
        axis = int(a["axis"])
        vs = [v if isinstance(v, _V) else _V(np.asarray(v)) for v in vals]
        rank = _rank(vs[0].t)
        axis = axis + rank if axis < 0 else axis
        if rank == 4 and any(v.nhwc for v in vs):
            return _V(tf.concat([_physical(tf, v) for v in vs], axis=_PHYS_AXIS[axis]), True)
        return _V(tf.concat([v.t for v in vs], axis=axis))

    def transpose(a):
        x, perm = a["x"], [int(v) for v in a["perm"]]
        if x.nhwc:  # compose: logical = transpose(physical, _TO_NCHW)
            return _V(tf.transpose(x.t, [_TO_NCHW[p] for p in perm]))
        return _V(tf.transpose(x.t, perm))

    def reduce(fn):
        def f(a):
            x = a["x"]
            rank = _rank(x.t)
            axes = a.get("axes")
            axes = list(range(rank)) if axes is None else \
                [int(v) + rank if int(v) < 0 else int(v) for v in np.asarray(axes).ravel()]
            keep = bool(a.get("keep_dims"))
            if x.nhwc:
                left = [ax for ax in _TO_NHWC if ax not in axes]  # physical order, logical ids
                if keep or left == sorted(left):
                    return _V(fn(x.t, axis=[_PHYS_AXIS[ax] for ax in axes], keepdims=keep),
                              keep)
                return _V(fn(_logical(tf, x), axis=axes, keepdims=keep))
            return _V(fn(x.t, axis=axes, keepdims=keep))
        return f

    def softmax(a):
        x, ax = a["x"], int(a.get("axis", -1))
        if x.nhwc:
            ax = _PHYS_AXIS[ax % 4]
        return _V(tf.nn.softmax(x.t, axis=ax), x.nhwc)

    def batch_norm(a):
        x = a["x"]
        shp = [1, 1, 1, -1] if x.nhwc else [1, -1] + [1] * (_rank(x.t) - 2)

        def p(name):
            return np.reshape(np.asarray(a[name], np.float32), shp)
        y = (x.t - p("mean")) / np.sqrt(p("variance") + np.float32(a.get("epsilon", 1e-5)))
        if a.get("gamma") is not None:
            y = y * p("gamma")
        if a.get("beta") is not None:
            y = y + p("beta")
        return _V(y, x.nhwc)

    def reshape(a):
        x = _logical(tf, a["x"])
        shape = [int(v) for v in np.asarray(a["shape"]).ravel()]
        if shape and shape[0] == 1:  # the program's batch is 1: keep the batch we run with
            shape[0] = -1 if -1 not in shape[1:] else tf.shape(x)[0]
        return _V(tf.reshape(x, shape))

    def squeeze(a):
        x = _logical(tf, a["x"])
        axes = a.get("axes")
        return _V(tf.squeeze(x, axis=None if axes is None else [int(v) for v in axes]))

    def expand_dims(a):
        y = _logical(tf, a["x"])
        for ax in sorted(int(v) for v in a["axes"]):
            y = tf.expand_dims(y, ax)
        return _V(y)

    def linear(a):
        y = tf.matmul(_logical(tf, a["x"]), np.asarray(a["weight"], np.float32), transpose_b=True)
        return _V(y if a.get("bias") is None else y + np.asarray(a["bias"], np.float32))

    def matmul(a):
        def t(v):
            return _logical(tf, v) if isinstance(v, _V) else np.asarray(v, np.float32)
        return _V(tf.matmul(t(a["x"]), t(a["y"]), transpose_a=bool(a.get("transpose_x")),
                            transpose_b=bool(a.get("transpose_y"))))

    def pad(a):
        x = a["x"]
        if str(a.get("mode", "constant")) != "constant":
            raise MILError(f"pad mode {a.get('mode')} is not supported")
        rank = _rank(x.t)
        p = [int(v) for v in np.asarray(a["pad"]).ravel()]
        widths = [[0, 0]] * (rank - len(p) // 2) + [[p[i], p[i + 1]] for i in range(0, len(p), 2)]
        if x.nhwc:
            widths = [widths[ax] for ax in _TO_NHWC]
        return _V(tf.pad(x.t, widths, constant_values=float(a.get("constant_val", 0.0))),
                  x.nhwc)

    def per_axis(v: "_V", param, axis):
        """A quantization parameter broadcast against ``v`` (per-tensor or along ``axis``).

        It enters the graph as a variable, not a constant: Grappler's constant folding would
        otherwise fold a dequantize's scale into the next convolution's weights (and reorder
        additions), which moves values across int8 rounding boundaries - the graph must compute
        what the interpreter computes."""
        param = np.asarray(param, np.float32)
        if param.ndim:
            rank = _rank(v.t)
            axis = axis + rank if axis < 0 else axis
            s = [1] * rank
            s[_PHYS_AXIS[axis] if v.nhwc else axis] = param.size
            param = param.reshape(s)
        key = (param.shape, param.tobytes())  # tf.function traces twice: create once
        if key not in holder:
            with tf.init_scope():
                holder[key] = tf.Variable(param, trainable=False)
        return holder[key]

    def quantize(a):
        x = a["input"]
        dt = np.dtype(str(a["output_dtype"]))
        axis = int(a["axis"]) if a.get("axis") is not None else 0
        scale = per_axis(x, a["scale"], axis)
        zp = 0 if a.get("zero_point") is None else per_axis(x, a["zero_point"], axis)
        info = np.iinfo(dt)
        q = tf.clip_by_value(tf.round(x.t / scale + zp), float(info.min), float(info.max))
        return _V(tf.cast(q, tf.as_dtype(dt)), x.nhwc)

    def dequantize(a):
        x = a["input"]
        axis = int(a["axis"]) if a.get("axis") is not None else 0
        zp = 0 if a.get("zero_point") is None else per_axis(x, a["zero_point"], axis)
        return _V((tf.cast(x.t, tf.float32) - zp) * per_axis(x, a["scale"], axis), x.nhwc)

    def cast(a):
        x, dt = a["x"], str(a["dtype"])
        if dt not in _CAST:
            raise MILError(f"cast to {dt} is not supported")
        y = tf.cast(x.t, tf.as_dtype(_CAST[dt]))
        return _V(tf.cast(y, tf.float32) if dt in ("fp16", "fp32") else y, x.nhwc)

    return {
        "add": binary(tf.add), "sub": binary(tf.subtract), "mul": binary(tf.multiply),
        "real_div": binary(tf.divide), "maximum": binary(tf.maximum),
        "minimum": binary(tf.minimum),
        "relu": unary(tf.nn.relu), "relu6": unary(tf.nn.relu6), "sigmoid": unary(tf.sigmoid),
        "cast": cast, "conv": conv, "max_pool": pool("max"), "avg_pool": pool("avg"),
        "concat": concat, "transpose": transpose, "reshape": reshape, "squeeze": squeeze,
        "expand_dims": expand_dims, "reduce_mean": reduce(tf.reduce_mean),
        "reduce_max": reduce(tf.reduce_max), "reduce_sum": reduce(tf.reduce_sum),
        "linear": linear, "matmul": matmul, "softmax": softmax, "batch_norm": batch_norm,
        "pad": pad, "quantize": quantize, "dequantize": dequantize,
        "clip": lambda a: _V(tf.clip_by_value(a["x"].t, float(a["alpha"]), float(a["beta"])),
                             a["x"].nhwc),
    }


# every op type the evaluator runs (the table above, the constexprs, and the two it handles)
OP_TYPES = ("add", "sub", "mul", "real_div", "maximum", "minimum", "relu", "relu6", "sigmoid",
            "cast", "conv", "max_pool", "avg_pool", "concat", "transpose", "reshape", "squeeze",
            "expand_dims", "reduce_mean", "reduce_max", "reduce_sum", "linear", "matmul",
            "softmax", "batch_norm", "pad", "quantize", "dequantize", "clip",
            *_CONSTEXPR, "const", "classify")


def walk(ev: "Evaluator", x, ops: dict, ranges: Optional[Dict[str, list]] = None) -> dict:
    """The one walk over ``ev``'s program: eager (``Evaluator.run``, which also records
    ``ranges``) or traced inside ``tf.function`` (``compile_program``). Constants and
    decompressed weights are numpy values (each constexpr runs once); every other op runs
    through ``ops``; a value the program holds in fp16 is rounded to fp16 after each op that
    computes (not after those that only move values). Returns the outputs by name (tensors in
    the program's NCHW layout; a classifier's as ``probabilities`` and ``classes``)."""
    import tensorflow as tf

    env: Dict[str, object] = {ev.input_name: _V(x)}
    fp16 = False
    out: Dict[str, object] = {}

    def val(v):
        return _value(env, v)

    for op in ev.ops:
        name = op.outputs[0].name
        if op.op_type == "const":
            env[name] = op.outputs[0].val
            continue
        if op.op_type in _CONSTEXPR:  # decompressed once, in numpy
            if name not in ev._consts:
                args = {k: val(v) for k, v in op.inputs.items()}
                ev._consts[name] = np.asarray(_CONSTEXPR[op.op_type](args), np.float32)
            env[name] = ev._consts[name]
            continue
        args = {k: val(v) for k, v in op.inputs.items()}
        if op.op_type == "classify":
            out["probabilities"] = _logical(tf, args["probabilities"])
            out["classes"] = list(args["classes"])
            continue
        if op.op_type == "cast":
            fp16 = fp16 or str(args["dtype"]) == "fp16"
        for k in ("x", "y", "input"):  # numpy constants as operands of tensor ops
            if k in args and isinstance(args[k], np.ndarray) and op.op_type not in (
                    "add", "sub", "mul", "real_div", "maximum", "minimum", "matmul"):
                c = args[k]
                args[k] = _V(tf.constant(c.astype(np.float32) if c.dtype.kind == "f" else c))
        r = ops[op.op_type](args)
        var = op.outputs[0]
        if fp16 and var.dtype.__name__ == "fp16" and op.op_type not in _EXACT_IN_FP16 \
                and r.t.dtype == tf.float32:
            r = _V(tf.cast(tf.cast(r.t, tf.float16), tf.float32), r.nhwc)
        env[name] = r
        if ranges is not None and tf.as_dtype(r.t.dtype).is_floating:
            lo, hi = float(tf.reduce_min(r.t)), float(tf.reduce_max(r.t))
            prev = ranges.get(name)
            ranges[name] = [min(lo, prev[0]), max(hi, prev[1])] if prev else [lo, hi]
    for o in ev.fn.outputs:
        if o.name in env and o.name not in out:
            v = env[o.name]
            out[o.name] = _logical(tf, v) if isinstance(v, _V) else v
    return out


def compile_program(ev: "Evaluator"):
    """A ``tf.function`` images (NCHW, float32) -> probabilities: ``walk`` traced once, so the
    whole program runs as one graph."""
    import tensorflow as tf

    ops = ev.table()
    in_shape = list(ev.fn.inputs[ev.input_name].shape)

    def probabilities(x):
        out = walk(ev, x, ops)
        p = out.get("probabilities")
        if p is None:
            p = out[next(iter(o.name for o in ev.fn.outputs))]
        return tf.cast(p, tf.float32)

    sig = tf.TensorSpec([None, *in_shape[1:]], tf.float32)
    fn = tf.function(probabilities, input_signature=[sig], autograph=False,
                     reduce_retracing=True)
    fn.variables_ = ev._holder  # the variables the graph captures: kept alive with it
    return fn
