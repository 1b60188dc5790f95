"""Running a .tflite model with the LiteRT interpreter: numpy in, float probabilities out.

Run side: imports numpy and ai-edge-litert (or tflite-runtime) only, never TensorFlow, so it can be
copied to a board and so timings are not disturbed by TensorFlow in the process.
"""
from __future__ import annotations

from typing import Optional

import numpy as np


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    """Float values -> an integer tensor of ``dtype`` with TFLite's affine quantization
    (round half to even, then clip): what the harness feeds an integer-input model, and what
    the Android core's ``Preprocessor.quantize`` reproduces (tests/golden_vectors.py)."""
    info = np.iinfo(np.dtype(dtype))
    return np.clip(np.round(x / np.float32(scale) + zero_point), info.min,
                   info.max).astype(dtype)


def runtime():
    """The interpreter module this machine has: ``ai_edge_litert.interpreter`` (LiteRT), else
    ``tflite_runtime.interpreter`` (what Coral boards and older images ship). Everything the run
    side needs - ``Interpreter``, ``load_delegate``, ``OpResolverType`` - comes from it."""
    try:
        from ai_edge_litert import interpreter as mod
    except ImportError:
        try:
            from tflite_runtime import interpreter as mod
        except ImportError:
            raise ImportError("no LiteRT interpreter: pip install ai-edge-litert "
                              "(or tflite-runtime on a board)") from None
    return mod


def runtime_name() -> str:
    """``ai_edge_litert`` or ``tflite_runtime``: the package that runs the models here."""
    return runtime().__name__.split(".")[0]


def interpreter_class():
    return runtime().Interpreter


def load_delegate(library: str, options: Optional[dict] = None):
    return runtime().load_delegate(library, options or {})


def _older_runtime() -> str:
    """What to do when this interpreter does not know an op version the converter wrote."""
    mod = runtime().__name__.split(".")[0]
    try:
        version = __import__(mod).__version__
    except Exception:  # a build without a version: the name says enough
        version = "?"
    return (f"- this runtime ({mod} {version}) is older than the converter that wrote the model: "
            f"run it with ai-edge-litert 2.3 (pip install .[run]), or convert for this runtime")


class TFLiteModel:
    """One interpreter over one model; ``predict`` handles int8/uint8/int16 I/O."""

    def __init__(self, model_path: Optional[str] = None, model_content: Optional[bytes] = None,
                 num_threads: int = 2, xnnpack: bool = True, delegates=None):
        Interpreter = interpreter_class()
        kw = dict(num_threads=num_threads)
        if delegates:
            kw["experimental_delegates"] = delegates
        if not xnnpack:  # the built-in kernels alone (tflite-runtime has the same enum)
            kw["experimental_op_resolver_type"] = \
                runtime().OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            if model_content is not None:
                self.interp = Interpreter(model_content=model_content, **kw)
            else:
                self.interp = Interpreter(model_path=model_path, **kw)
        except (ValueError, RuntimeError) as e:
            if "Didn't find op for builtin opcode" not in str(e):
                raise
            raise ValueError(f"{str(e).splitlines()[0]} {_older_runtime()}") from None
        self.interp.allocate_tensors()
        self.input = self.interp.get_input_details()[0]
        self.output = self.interp.get_output_details()[0]
        self._batch = int(self.input["shape"][0])

    @property
    def input_dtype(self):
        return np.dtype(self.input["dtype"])

    @property
    def output_dtype(self):
        return np.dtype(self.output["dtype"])

    @property
    def input_quantization(self):
        return tuple(float(v) for v in self.input["quantization"])  # (scale, zero_point)

    @property
    def output_quantization(self):
        return tuple(float(v) for v in self.output["quantization"])

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """Float model input (the preprocessing's range) -> the model's input dtype."""
        dt = self.input_dtype
        if dt.kind == "f":
            return x.astype(dt, copy=False)
        scale, zp = self.input_quantization
        return quantize(x, scale, zp, dt)

    def dequantize_output(self, y: np.ndarray) -> np.ndarray:
        if self.output_dtype.kind == "f":
            return y.astype(np.float32)
        scale, zp = self.output_quantization
        return ((y.astype(np.float32) - zp) * scale).astype(np.float32)

    def _resize(self, n: int):
        if n != self._batch:
            self.interp.resize_tensor_input(self.input["index"], [n, *self.input["shape"][1:]])
            self.interp.allocate_tensors()
            self.input = self.interp.get_input_details()[0]
            self.output = self.interp.get_output_details()[0]
            self._batch = n

    def invoke_raw(self, x_q: np.ndarray) -> np.ndarray:
        """One invoke on already-quantized input of the current batch size."""
        self.interp.set_tensor(self.input["index"], x_q)
        self.interp.invoke()
        return self.interp.get_tensor(self.output["index"])

    def predict(self, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
        out = []
        for i in range(0, len(x), batch_size):
            chunk = x[i:i + batch_size]
            self._resize(len(chunk))
            out.append(self.dequantize_output(self.invoke_raw(self.quantize_input(chunk))))
        return np.concatenate(out, axis=0)

    def predict_batches(self, batches) -> np.ndarray:
        """Float probabilities for an iterable of input batches, each written straight into the
        interpreter's input tensor (one copy; a one-channel batch is broadcast to the model's
        channels on the way, quantized inputs converted on the way)."""
        out = []
        for x in batches:
            self._resize(len(x))
            if self.input_dtype.kind != "f":
                x = self.quantize_input(x)
            view = self.interp.tensor(self.input["index"])()
            np.copyto(view, x, casting="unsafe")
            del view  # the interpreter refuses to run while its buffers are referenced
            self.interp.invoke()
            out.append(self.dequantize_output(self.interp.get_tensor(self.output["index"])))
        return np.concatenate(out, axis=0)

    def op_names(self):
        """The builtin op names of the model, in execution order."""
        return [d["op_name"] for d in self.interp._get_ops_details()]

    def delegation(self, delegate: str) -> Optional[dict]:
        """Which nodes ``delegate`` took (see ``graph_delegation``); None from an interpreter
        that does not list its nodes."""
        ops = getattr(self.interp, "_get_ops_details", None)
        return graph_delegation(ops(), delegate) if ops is not None else None


DELEGATE_NODE = "DELEGATE"  # the op name LiteRT gives a delegate kernel's node


def delegated_nodes(ops) -> set:
    """Indices of the model's nodes a delegate replaced, from the interpreter's node list after
    it was applied: the model's own nodes plus one ``DELEGATE`` node per partition, whose
    inputs and outputs are the partition's boundary tensors. Walking back from each
    partition's outputs through the producers, stopping at its inputs, visits exactly the
    nodes it replaced."""
    model = [o for o in ops if o["op_name"] != DELEGATE_NODE]
    producer = {t: o for o in model for t in o["outputs"] if t >= 0}
    taken = set()
    for d in (o for o in ops if o["op_name"] == DELEGATE_NODE):
        stop, stack = set(d["inputs"]), [t for t in d["outputs"] if t >= 0]
        while stack:
            t = stack.pop()
            n = producer.get(t)
            if t in stop or n is None or n["index"] in taken:
                continue
            taken.add(n["index"])
            stack.extend(t for t in n["inputs"] if t >= 0)
    return taken


def graph_delegation(ops, delegate: str) -> dict:
    """How much of the graph a delegate took (``delegated_nodes``); the rest run on the
    built-in CPU kernels (``cpu_ops``, by op name)."""
    model = [o for o in ops if o["op_name"] != DELEGATE_NODE]
    taken = delegated_nodes(ops)
    cpu: dict = {}
    for o in model:
        if o["index"] not in taken:
            cpu[o["op_name"]] = cpu.get(o["op_name"], 0) + 1
    return delegation_record(delegate, len(model), len(taken),
                             sum(o["op_name"] == DELEGATE_NODE for o in ops), cpu,
                             "interpreter graph after delegation")


def delegation_record(delegate: str, nodes: Optional[int], delegated: Optional[int],
                      partitions: Optional[int], cpu_ops: Optional[dict], how: str,
                      full: Optional[bool] = None) -> dict:
    """The record's ``delegation`` field, one shape for the host interpreter, benchmark_model,
    the Edge TPU compiler and CompiledModel (which says only ``full``, no counts)."""
    if full is None:
        full = bool(nodes) and delegated == nodes
    return {"delegate": delegate, "nodes": nodes, "delegated": delegated,
            "partitions": partitions, "cpu_ops": cpu_ops, "full": full, "how": how}


def delegation_problem(d: Optional[dict]) -> Optional[str]:
    """Why a record fails ``--require-full-delegation`` (None: the delegate took every node)."""
    if not d:
        return "no delegation information (the delegate's node counts were not reported)"
    if d["full"]:
        return None
    if d.get("nodes") is None:
        return f"{d['delegate']} did not take the whole graph ({d.get('how')})"
    left = ", ".join(f"{k} x{v}" for k, v in sorted((d.get("cpu_ops") or {}).items()))
    return (f"{d['delegate']} took {d['delegated']} of {d['nodes']} nodes"
            + (f" in {d['partitions']} partition(s)" if d.get("partitions") is not None else "")
            + (f"; left on the CPU: {left}" if left else ""))
