"""What a SavedModel's graph would do, read as data before TensorFlow loads or calls any of it.

A SavedModel is a program: loading one and calling its functions runs whatever ops it holds, and
TensorFlow has ops that write files (``WriteFile``, ``SaveV2``), read them (``ReadFile``,
``MatchingFiles``, the ``*Dataset`` readers), run Python (``PyFunc``, ``EagerPyFunc``), print
to files (``PrintV2``) or talk to debuggers (``DebugIdentity*``). ``check_saved_model`` parses
``saved_model.pb`` with a small protobuf wire-format reader (standard library only: no
TensorFlow, so the harness checks a manifest's float source before any worker starts) and
checks every op of every graph node and of every function in the library (nested, control-flow
and gradient functions included: the library is checked whole) against ``ALLOWED``.

An allowlist, not a denylist: TensorFlow registers ~1,500 ops and adds more each release; a
denylist misses the next file-touching op, an allowlist fails closed and names the op, and an
image classifier needs few. ``ALLOWED`` holds the arithmetic, nn, array, image, random,
quantization, control-flow and variable ops of the Keras applications (Inception-v3 from
tf_keras and Keras 3, ResNet50, MobileNetV2/V3, EfficientNetB0, measured) and their near
relatives. The checkpoint ops (``SaveV2``, ``RestoreV2``, ...) are allowed only in the functions
that only the SavedModel's own saver reaches (TensorFlow's loader restores variables itself and
never calls them); anywhere else they are refused like any other file access.
"""
from __future__ import annotations

import os
from typing import Dict, List, Set, Tuple

from contract.protowire import fields

PLUMBING = {
    "Placeholder", "PlaceholderWithDefault", "Const", "Identity", "IdentityN", "NoOp",
    "PartitionedCall", "StatefulPartitionedCall", "If", "StatelessIf", "While", "StatelessWhile",
    "Case", "StatelessCase", "Switch", "Merge", "Enter", "Exit", "NextIteration", "LoopCond",
    "StopGradient", "PreventGradient", "Snapshot", "EnsureShape", "CheckNumerics",
    "CheckNumericsV2", "Assert", "DisableCopyOnRead", "OptionalNone", "OptionalFromValue",
}
VARIABLES = {
    "VarHandleOp", "ReadVariableOp", "AssignVariableOp", "AssignAddVariableOp",
    "AssignSubVariableOp", "VarIsInitializedOp", "VariableV2", "Variable", "Assign", "AssignAdd",
    "AssignSub", "DestroyResourceOp", "ResourceGather",
}
MATH = {
    "Add", "AddV2", "AddN", "Sub", "Mul", "MulNoNan", "Div", "DivNoNan", "RealDiv", "FloorDiv",
    "FloorMod", "TruncateDiv", "Maximum", "Minimum", "Neg", "Abs", "Square", "SquaredDifference",
    "Sqrt", "Rsqrt", "Exp", "Expm1", "Log", "Log1p", "Pow", "Reciprocal", "Inv", "Tanh",
    "Sigmoid", "Erf", "Sign", "Round", "Rint", "Floor", "Ceil", "Cast", "Equal", "NotEqual",
    "Greater", "GreaterEqual", "Less", "LessEqual", "LogicalAnd", "LogicalOr", "LogicalNot",
    "Select", "SelectV2", "ClipByValue", "Sum", "Mean", "Max", "Min", "Prod", "ArgMax", "ArgMin",
    "All", "Any", "Cumsum", "MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum",
    "IsFinite", "IsNan", "IsInf", "SquaredDifference", "Softplus", "Softsign", "Sin", "Cos",
    "Atan2", "L2Loss",
}
NN = {
    "Conv2D", "Conv3D", "DepthwiseConv2dNative", "Conv2DBackpropInput", "BiasAdd", "BiasAddV1",
    "Relu", "Relu6", "LeakyRelu", "Elu", "Selu", "Gelu", "Softmax", "LogSoftmax", "MaxPool",
    "MaxPoolV2", "MaxPool3D", "AvgPool", "AvgPool3D", "FusedBatchNorm", "FusedBatchNormV2",
    "FusedBatchNormV3", "LRN",
}
ARRAY = {
    "Reshape", "Shape", "ShapeN", "Size", "Rank", "Squeeze", "ExpandDims", "Transpose",
    "ConcatV2", "Concat", "Pack", "Unpack", "Split", "SplitV", "Slice", "StridedSlice", "Tile",
    "Pad", "PadV2", "MirrorPad", "Fill", "ZerosLike", "OnesLike", "Range", "GatherV2", "Gather",
    "GatherNd", "Where", "BroadcastTo", "BroadcastArgs", "BroadcastGradientArgs", "ReverseV2",
    "OneHot", "TopKV2", "DepthToSpace", "SpaceToDepth", "SpaceToBatchND", "BatchToSpaceND",
    "ResizeBilinear", "ResizeNearestNeighbor", "ResizeBicubic", "ResizeArea", "CropAndResize",
    "ExtractImagePatches",
}
RANDOM = {  # dropout and augmentation layers trace these in their training branches
    "RandomUniform", "RandomUniformInt", "RandomStandardNormal", "TruncatedNormal",
    "StatelessRandomUniform", "StatelessRandomUniformV2", "StatelessRandomNormal",
    "StatelessRandomNormalV2", "StatelessTruncatedNormal", "StatelessTruncatedNormalV2",
    "StatelessRandomUniformInt", "StatelessRandomUniformIntV2", "StatelessRandomGetKeyCounter",
    "StatelessRandomGetKeyCounterAlg", "StatelessRandomGetAlg",
}
QUANTIZATION = {  # quantization-aware training (tfmot) exports
    "FakeQuantWithMinMaxVars", "FakeQuantWithMinMaxVarsPerChannel", "FakeQuantWithMinMaxArgs",
    "QuantizeAndDequantizeV2", "QuantizeAndDequantizeV3", "QuantizeAndDequantizeV4",
}
ALLOWED = frozenset(PLUMBING | VARIABLES | MATH | NN | ARRAY | RANDOM | QUANTIZATION)
# the SavedModel's own save/restore functions: file access, allowed there only
CHECKPOINT = frozenset({"SaveV2", "RestoreV2", "MergeV2Checkpoints", "ShardedFilename",
                        "StringJoin", "StaticRegexFullMatch"})


class GraphError(ValueError):
    """A ``saved_model.pb`` that cannot be read as a SavedModel."""


# --------------------------------------------------------------------------------------------
# the messages, by field number (contract.protowire reads the wire format)
# --------------------------------------------------------------------------------------------
def _sub(b: bytes, num: int) -> List[bytes]:
    return [v for n, wt, v in fields(b) if n == num and wt == 2]


def _str(b: bytes, num: int) -> str:
    vals = _sub(b, num)
    return vals[-1].decode("utf-8", "replace") if vals else ""


# SavedModel.meta_graphs=2; MetaGraphDef.graph_def=2, saver_def=3; GraphDef.node=1, library=2;
# FunctionDefLibrary.function=1; FunctionDef.signature=1 (OpDef.name=1), node_def=3;
# NodeDef.name=1, op=2, input=3, attr=5 (entry: key=1, value=2); AttrValue.list=1, func=10
# (NameAttrList.name=1, attr=2); AttrValue.ListValue.func=9; SaverDef.save_tensor_name=2,
# restore_op_name=3 (tensorflow/core/protobuf/{saved_model,meta_graph,saver}.proto,
# tensorflow/core/framework/{graph,function,node_def,attr_value}.proto)
class Node:
    __slots__ = ("name", "op", "inputs", "calls")

    def __init__(self, raw: bytes):
        self.name, self.op = _str(raw, 1), _str(raw, 2)
        self.inputs = [v.decode("utf-8", "replace") for v in _sub(raw, 3)]
        self.calls: Set[str] = set()
        for entry in _sub(raw, 5):
            for value in _sub(entry, 2):
                self.calls |= _funcs(value)


def _funcs(attr_value: bytes) -> Set[str]:
    out = set()
    for f in _sub(attr_value, 10):
        out.add(_str(f, 1))
        for entry in _sub(f, 2):
            for value in _sub(entry, 2):
                out |= _funcs(value)
    for lst in _sub(attr_value, 1):
        for f in _sub(lst, 9):
            out.add(_str(f, 1))
    return out


def read_graphs(path: str) -> List[Tuple[List[Node], Dict[str, List[Node]], Set[str]]]:
    """Per meta graph of the SavedModel folder ``path``: its graph's nodes, its library's
    functions (name -> nodes) and the names of the graph nodes its saver runs."""
    pb = os.path.join(path, "saved_model.pb")
    try:
        with open(pb, "rb") as f:
            data = f.read()
    except OSError as e:
        raise GraphError(f"{pb} cannot be read: {e}") from None
    try:
        out = _graphs(data)
    except ValueError as e:
        raise GraphError(f"{pb} is not a SavedModel's protobuf: {e}") from None
    if not out:
        raise GraphError(f"{pb} holds no meta graph: not a SavedModel")
    return out


def _graphs(data: bytes):
    out = []
    for mg in _sub(data, 2):
        graphs = _sub(mg, 2)
        nodes = [Node(n) for g in graphs for n in _sub(g, 1)]
        funcs = {}
        for g in graphs:
            for lib in _sub(g, 2):
                for fd in _sub(lib, 1):
                    sig = _sub(fd, 1)
                    funcs[_str(sig[-1], 1) if sig else ""] = [Node(n) for n in _sub(fd, 3)]
        saver = set()
        for sd in _sub(mg, 3):
            saver |= {_str(sd, 2).split(":")[0], _str(sd, 3).split(":")[0]} - {""}
        out.append((nodes, funcs, saver))
    return out


def _reach(roots: Set[str], funcs: Dict[str, List[Node]]) -> Set[str]:
    seen, todo = set(), list(roots)
    while todo:
        f = todo.pop()
        if f in seen or f not in funcs:
            continue
        seen.add(f)
        todo += [c for n in funcs[f] for c in n.calls]
    return seen


def _input_closure(names: Set[str], nodes: List[Node]) -> Set[str]:
    by = {n.name: n for n in nodes}
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop().lstrip("^").split(":")[0]
        if name in seen or name not in by:
            continue
        seen.add(name)
        todo += by[name].inputs
    return seen


def refused_ops(path: str) -> List[str]:
    """Every op of the SavedModel at ``path`` outside the allowlist, as ``Op (in where)``
    (empty: it computes only)."""
    bad: Dict[str, Set[str]] = {}
    for nodes, funcs, saver in read_graphs(path):
        saver_nodes = _input_closure(saver, nodes)
        # functions only the saver reaches: the checkpoint ops are allowed there
        saver_funcs = _reach({c for n in nodes if n.name in saver_nodes for c in n.calls}, funcs)
        others = {c for n in nodes if n.name not in saver_nodes for c in n.calls}
        others |= set(funcs) - saver_funcs  # functions the object graph exposes, say
        checkpoint_only = saver_funcs - _reach(others, funcs)
        for n in nodes:
            ok = ALLOWED | (CHECKPOINT if n.name in saver_nodes else frozenset())
            if n.op not in ok:
                bad.setdefault(n.op, set()).add(f"graph node {n.name}")
        for fname, fnodes in funcs.items():
            ok = ALLOWED | (CHECKPOINT if fname in checkpoint_only else frozenset())
            for n in fnodes:
                if n.op not in ok:
                    bad.setdefault(n.op, set()).add(f"function {fname}")
    return [f"{op} (in {', '.join(sorted(w)[:2])}{' and more' if len(w) > 2 else ''})"
            for op, w in sorted(bad.items())]
