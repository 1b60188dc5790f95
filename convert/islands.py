"""Float islands: keep the int8 graph in one XNNPACK partition.

XNNPACK's quantized operator set has no AVERAGE_POOL_2D and no SOFTMAX, so in a full-int8
Inception-v3 the nine branch-pool average pools (3x3, stride 1, SAME) and the final softmax run
on LiteRT's built-in int8 kernels and cut the graph into eleven XNNPACK partitions (measured with
``python -m edge_eval bench``: "xnnpack took 117 of 127 nodes in 11 partition(s)"). Each cut
costs a partition switch, a single-threaded kernel and the tensors materialised around it.

This pass rewrites each such op, in place in the converted flatbuffer, into the equivalent
``DEQUANTIZE -> op in float32 -> QUANTIZE`` (the op's own int8 output tensor, scale and zero
point kept), which XNNPACK does run: the whole graph becomes one partition. The arithmetic is
the same average (or softmax) of the same dequantized values, rounded once to the same output
grid, so results change by at most one quantization step where the int8 kernel's integer
rounding differs (measured on the demo: see docs/measurements.md).

The Edge TPU compiler maps int8 AVERAGE_POOL_2D itself and would leave float ops on the CPU, so
the pass is a recipe property (``Recipe.float_islands``), off for the Edge TPU recipe.
"""
from __future__ import annotations

from typing import Sequence, Tuple

ISLAND_OPS = ("AVERAGE_POOL_2D", "SOFTMAX")  # int8 ops XNNPACK lacks, with float versions it has


def float_islands(model_bytes: bytes, ops: Sequence[str] = ISLAND_OPS) -> Tuple[bytes, int]:
    """(the model with every int8/uint8 ``ops`` node run in float between a DEQUANTIZE and a
    QUANTIZE, how many nodes were rewritten)."""
    from contract.tflite_file import rewrite

    out, done = rewrite(model_bytes, lambda m: _wrap(m, ops))
    return out, done


def _wrap(m, ops: Sequence[str]) -> int:
    """Rewrites ``m`` (a schema.ModelT) in place; returns how many nodes it wrapped."""
    from ai_edge_litert import schema_py_generated as schema

    B = schema.BuiltinOperator
    wanted = {getattr(B, name) for name in ops}
    integer = (schema.TensorType.INT8, schema.TensorType.UINT8)

    def code_of(op):
        c = m.operatorCodes[op.opcodeIndex]
        return max(c.builtinCode, c.deprecatedBuiltinCode)

    def new_code(builtin: int, version: int) -> int:
        for i, c in enumerate(m.operatorCodes):
            if max(c.builtinCode, c.deprecatedBuiltinCode) == builtin and c.version == version:
                return i
        c = schema.OperatorCodeT()
        c.builtinCode = builtin
        c.deprecatedBuiltinCode = min(builtin, 127)
        c.version = version
        m.operatorCodes.append(c)
        return len(m.operatorCodes) - 1

    done = 0
    for g in m.subgraphs:
        out_ops = []
        for op in g.operators:
            if code_of(op) not in wanted or len(op.inputs) < 1 or len(op.outputs) != 1:
                out_ops.append(op)
                continue
            x, y = g.tensors[op.inputs[0]], g.tensors[op.outputs[0]]
            if x.type not in integer or y.type not in integer:
                out_ops.append(op)
                continue

            def float_tensor(like, suffix):
                t = schema.TensorT()
                name = like.name.decode() if isinstance(like.name, bytes) else str(like.name)
                t.name = f"{name}/{suffix}"
                t.shape = list(like.shape)
                t.shapeSignature = None if like.shapeSignature is None else \
                    list(like.shapeSignature)
                t.type = schema.TensorType.FLOAT32
                t.buffer = 0
                g.tensors.append(t)
                return len(g.tensors) - 1

            fx, fy = float_tensor(x, "float_in"), float_tensor(y, "float_out")
            deq = schema.OperatorT()
            deq.opcodeIndex = new_code(B.DEQUANTIZE, 2)
            deq.inputs, deq.outputs = [op.inputs[0]], [fx]
            q = schema.OperatorT()
            q.opcodeIndex = new_code(B.QUANTIZE, 2)
            q.inputs, q.outputs = [fy], [op.outputs[0]]
            op.opcodeIndex = new_code(code_of(op), 1)  # the float kernel's version
            op.inputs = [fx] + list(op.inputs[1:])
            op.outputs = [fy]
            out_ops += [deq, op, q]
            done += 1
        g.operators = out_ops
    return done
