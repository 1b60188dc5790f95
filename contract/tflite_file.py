"""Reading and writing a ``.tflite`` file as data, with no TensorFlow: the flatbuffer's buffer
layout and its metadata. Both the converter (which writes them) and the run side (MediaPipe's
input check, the profiler's op table) use it, so it lives in ``contract/``; it imports numpy,
``flatbuffers`` and LiteRT's generated schema only.

Layout: ``.tflite`` buffers every constant buffer 16-byte aligned, so a runtime can use the weights
in place (mmap, zero-copy) instead of copying them to the heap.

TensorFlow's converter writes the ``Buffer.data`` vectors with 1-byte alignment: about three in four
of the demo's buffers start off an 8-byte boundary, and LiteRT (MediaPipe's, for one) then warns
"Read-only tensor ... has an unaligned buffer (required alignment 8); copying to an aligned heap
buffer" and copies them. ``pack`` writes a model with its buffers aligned; ``misaligned``
is the check (the converter's self-check runs it on every artifact it writes). A zip appended
after the flatbuffer (the metadata's packed label file) is kept as it was.

Metadata. TFLite model metadata (the ``TFLITE_METADATA`` flatbuffer, schema ``M001``) written with the
published schema, so Android's Task Library / MediaPipe image classifier can run a model with no
glue: the input's normalization (mean/std), image properties and value range, the output's
label file (``TENSOR_AXIS_LABELS``) packed into the ``.tflite`` as an appended zip, and the
model's name, description, version, author and license.

tflite-support's metadata writers do not install with Python 3.11 + TF 2.21, so the tables are
built here with the ``flatbuffers`` builder, field slots in the order of
``tensorflow_lite_support/metadata/metadata_schema.fbs`` (schema 1.1.0, identifier M001), and
read back with the same slot numbers by ``read_metadata``.
"""
from __future__ import annotations

import io
import zipfile
from typing import Callable, List, Optional, Tuple

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema
from flatbuffers import number_types as N
from flatbuffers.table import Table

ALIGNMENT = 16  # XNNPACK and LiteRT's mmap path need 8 (16 covers SIMD loads of any width)


class _AlignedBuffer:
    """A ``BufferT`` stand-in whose ``Pack`` writes its data vector ``ALIGNMENT``-aligned."""

    def __init__(self, buf):
        self.buf = buf

    def Pack(self, builder):
        b = self.buf
        data = None
        if b.data is not None:
            payload = np.asarray(b.data, np.uint8).tobytes()
            builder.StartVector(1, len(payload), ALIGNMENT)
            builder.head -= len(payload)
            builder.Bytes[builder.head:builder.head + len(payload)] = payload
            builder.vectorNumElems = len(payload)
            data = builder.EndVector()
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        schema.BufferAddOffset(builder, b.offset)
        schema.BufferAddSize(builder, b.size)
        return schema.BufferEnd(builder)


def pack(model, size_hint: int = 1 << 20) -> bytes:
    """A ``schema.ModelT`` as .tflite bytes with every buffer's data ``ALIGNMENT``-aligned."""

    buffers = model.buffers
    model.buffers = [_AlignedBuffer(b) for b in (buffers or [])]
    try:
        b = flatbuffers.Builder(size_hint + 1024)
        b.Finish(model.Pack(b), file_identifier=b"TFL3")
        # the builder aligns the whole buffer to its largest alignment, so offsets counted from
        # the start of the file keep the vectors' alignment
        return bytes(b.Output())
    finally:
        model.buffers = buffers


def io_dtypes(model_bytes: bytes) -> Tuple[List[str], List[str]]:
    """(input dtypes, output dtypes) of the main subgraph, read from the flatbuffer (works for
    a compiled Edge TPU model, which no interpreter without the delegate can open)."""
    m = schema.Model.GetRootAs(strip_zip(model_bytes), 0)
    g = m.Subgraphs(0)

    def name(i):
        t = g.Tensors(i)
        return _TYPES.get(t.Type(), f"type {t.Type()}")
    return ([name(g.Inputs(k)) for k in range(g.InputsLength())],
            [name(g.Outputs(k)) for k in range(g.OutputsLength())])


def misaligned(model_bytes: bytes, alignment: int = ALIGNMENT) -> List[int]:
    """Indices of the buffers whose data does not start on an ``alignment`` boundary."""
    m = schema.Model.GetRootAs(model_bytes, 0)
    bad = []
    for i in range(m.BuffersLength()):
        buf = m.Buffers(i)
        if buf.DataLength() > 0:
            start = buf._tab.Vector(buf._tab.Offset(4))  # Buffer.data is field 0 (vtable slot 4)
            if start % alignment:
                bad.append(i)
    return bad


def rewrite(model_bytes: bytes, edit: Callable) -> Tuple[bytes, object]:
    """(the model after ``edit(schema.ModelT)``, what ``edit`` returned), written by ``pack``
    with its buffers aligned and an appended zip kept; a falsy result leaves the bytes as
    they were. The one way a pass here changes a .tflite (``align``, convert/islands.py)."""
    flat = strip_zip(model_bytes)
    m = schema.ModelT.InitFromPackedBuf(bytearray(flat), 0)
    result = edit(m)
    if not result:
        return model_bytes, result
    out = pack(m, len(flat))
    if len(flat) < len(model_bytes):  # a zip's central directory holds absolute offsets
        out = _reappend(out, model_bytes, flat)
    return out, result


def align(model_bytes: bytes) -> bytes:
    """The same model with its buffers aligned (an appended zip kept byte for byte)."""

    if not misaligned(strip_zip(model_bytes)):
        return model_bytes
    return rewrite(model_bytes, lambda m: True)[0]


def _reappend(new_flat: bytes, old: bytes, old_flat: bytes) -> bytes:
    """Re-writes the packed files after ``new_flat`` (a zip's central directory holds absolute
    offsets, so the bytes cannot simply be moved)."""

    out = io.BytesIO()
    out.write(new_flat)
    with zipfile.ZipFile(io.BytesIO(old)) as src, \
            zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    return out.getvalue()


METADATA_NAME = "TFLITE_METADATA"
FILE_IDENTIFIER = b"M001"
MIN_PARSER_VERSION = "1.0.0"  # only fields of schema 1.0.0 are written
# enums of the schema
CONTENT_FEATURE, CONTENT_IMAGE = 1, 2  # ContentProperties union
PROCESS_NORMALIZATION = 1  # ProcessUnitOptions union
COLOR_RGB, COLOR_GRAYSCALE = 1, 2
FILE_TENSOR_AXIS_LABELS = 2


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------
def _offsets(b, offs):
    b.StartVector(4, len(offs), 4)
    for o in reversed(offs):
        b.PrependUOffsetTRelative(o)
    return b.EndVector()


def _floats(b, values):
    b.StartVector(4, len(values), 4)
    for v in reversed(values):
        b.PrependFloat32(float(v))
    return b.EndVector()


def _table(b, nfields, fields):
    """fields: [(slot, kind, value)] with kind in offset|uint8|uint32|int32|float32."""
    b.StartObject(nfields)
    for slot, kind, value in fields:
        if value is None:
            continue
        if kind == "offset":
            b.PrependUOffsetTRelativeSlot(slot, value, 0)
        elif kind == "uint8":
            b.PrependUint8Slot(slot, value, 0)
        elif kind == "uint32":
            b.PrependUint32Slot(slot, value, 0)
        elif kind == "int32":
            b.PrependInt32Slot(slot, value, 0)
    return b.EndObject()


def build_metadata(name: str, description: str, version: str, author: str, license_: str,
                   input_name: str, input_description: str, mean: List[float],
                   std: List[float], width: int, height: int, channels: int,
                   value_min: float, value_max: float, output_name: str,
                   output_description: str, labels_file: Optional[str]) -> bytes:
    b = flatbuffers.Builder(1024)
    s = b.CreateString
    # input tensor: image content, normalization, stats
    size = _table(b, 2, [(0, "uint32", int(width)), (1, "uint32", int(height))])
    image = _table(b, 2, [(0, "uint8", COLOR_GRAYSCALE if channels == 1 else COLOR_RGB),
                          (1, "offset", size)])
    content_in = _table(b, 3, [(0, "uint8", CONTENT_IMAGE), (1, "offset", image)])
    mean_v, std_v = _floats(b, mean), _floats(b, std)
    norm = _table(b, 2, [(0, "offset", mean_v), (1, "offset", std_v)])
    unit = _table(b, 2, [(0, "uint8", PROCESS_NORMALIZATION), (1, "offset", norm)])
    units = _offsets(b, [unit])
    smax, smin = _floats(b, [value_max]), _floats(b, [value_min])
    stats = _table(b, 2, [(0, "offset", smax), (1, "offset", smin)])
    in_name, in_desc = s(input_name), s(input_description)
    tin = _table(b, 7, [(0, "offset", in_name), (1, "offset", in_desc), (3, "offset", content_in),
                        (4, "offset", units), (5, "offset", stats)])
    # output tensor: feature content, probabilities in [0, 1], the label file
    feature = _table(b, 0, [])
    content_out = _table(b, 3, [(0, "uint8", CONTENT_FEATURE), (1, "offset", feature)])
    omax, omin = _floats(b, [1.0]), _floats(b, [0.0])
    ostats = _table(b, 2, [(0, "offset", omax), (1, "offset", omin)])
    files = None
    if labels_file:
        fname, fdesc = s(labels_file), s("Labels for the classes the model outputs.")
        af = _table(b, 4, [(0, "offset", fname), (1, "offset", fdesc),
                           (2, "uint8", FILE_TENSOR_AXIS_LABELS)])
        files = _offsets(b, [af])
    out_name, out_desc = s(output_name), s(output_description)
    tout = _table(b, 7, [(0, "offset", out_name), (1, "offset", out_desc),
                         (3, "offset", content_out), (5, "offset", ostats), (6, "offset", files)])
    ins, outs = _offsets(b, [tin]), _offsets(b, [tout])
    sg_name = s(name)
    sg = _table(b, 7, [(0, "offset", sg_name), (2, "offset", ins), (3, "offset", outs)])
    sgs = _offsets(b, [sg])
    fields = [(0, s(name)), (1, s(description)), (2, s(version)), (3, sgs), (4, s(author)),
              (5, s(license_)), (7, s(MIN_PARSER_VERSION))]
    root = _table(b, 8, [(slot, "offset", off) for slot, off in fields])
    b.Finish(root, file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())


def attach(model_bytes: bytes, metadata: bytes, files: dict) -> bytes:
    """The model with ``metadata`` as its TFLITE_METADATA buffer (replacing an earlier one) and
    ``files`` ({name: bytes}) packed as a zip appended to the flatbuffer."""
    model_bytes = strip_zip(model_bytes)
    m = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    buf = schema.BufferT()
    buf.data = list(metadata)
    m.buffers = list(m.buffers or [])
    m.metadata = [md for md in (m.metadata or []) if _name(md.name) != METADATA_NAME]
    m.buffers.append(buf)
    md = schema.MetadataT()
    md.name = METADATA_NAME
    md.buffer = len(m.buffers) - 1
    m.metadata.append(md)
    out = io.BytesIO()
    out.write(pack(m, len(model_bytes) + len(metadata)))  # buffers 16-byte aligned
    if files:
        with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as z:
            for fname, data in files.items():
                z.writestr(fname, data)
    return out.getvalue()


def _name(v) -> str:
    return v.decode() if isinstance(v, (bytes, bytearray)) else str(v)


def strip_zip(data: bytes) -> bytes:
    """The flatbuffer part of a .tflite (a packed zip, if any, removed)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = z.infolist()
        if infos:
            return data[:min(i.header_offset for i in infos)]
    except zipfile.BadZipFile:
        pass
    return data


def add_metadata(model_bytes: bytes, spec, labels: List[str], name: str, description: str,
                 version: str, author: str, license_: str) -> bytes:
    """Metadata for an image classifier from the model's preprocessing contract."""
    m = schema.Model.GetRootAs(strip_zip(model_bytes), 0)
    g = m.Subgraphs(0)
    tin, tout = g.Tensors(g.Inputs(0)), g.Tensors(g.Outputs(0))
    h, w = spec.input_size
    meta = build_metadata(
        name=name, description=description, version=version, author=author, license_=license_,
        input_name="image", input_description=(
            f"{spec.channels}-channel image, {h}x{w}, after a central crop of "
            f"{spec.crop_fraction:g} and {spec.resize_method} resizing; normalized as "
            f"(x - mean) / std"),
        mean=list(spec.mean), std=list(spec.std), width=w, height=h, channels=spec.channels,
        value_min=float(spec.input_range[0]), value_max=float(spec.input_range[1]),
        output_name="probability", output_description=(
            f"Probabilities of the {len(labels)} labels in labels.txt"),
        labels_file="labels.txt" if labels else None)
    del tin, tout
    return attach(model_bytes, meta, {"labels.txt": ("\n".join(labels) + "\n").encode()}
                  if labels else {})


# --------------------------------------------------------------------------------------------
# what MediaPipe Tasks can run
# --------------------------------------------------------------------------------------------
MEDIAPIPE_INPUTS = ("float32", "uint8")  # what MediaPipe's ImageClassifier feeds
_TYPES = {0: "float32", 3: "uint8", 9: "int8", 7: "int16", 2: "int32"}


def input_tensor(model_bytes: bytes) -> dict:
    """The first input's shape, dtype and quantization."""
    m = schema.Model.GetRootAs(strip_zip(model_bytes), 0)
    g = m.Subgraphs(0)
    t = g.Tensors(g.Inputs(0))
    q = t.Quantization()
    scale = float(q.ScaleAsNumpy()[0]) if q is not None and q.ScaleLength() else None
    zp = int(q.ZeroPointAsNumpy()[0]) if q is not None and q.ZeroPointLength() else None
    return {"shape": [int(v) for v in t.ShapeAsNumpy()],
            "dtype": _TYPES.get(t.Type(), f"type {t.Type()}"), "scale": scale, "zero_point": zp}


def mediapipe_problem(model_bytes: bytes) -> Optional[str]:
    """None when ImageClassifier can run the model, else why not (in words)."""
    try:
        tin = input_tensor(model_bytes)
    except Exception as e:  # noqa: BLE001 - a damaged flatbuffer raises many types
        return f"not a readable .tflite model ({type(e).__name__})"
    if tin["dtype"] not in MEDIAPIPE_INPUTS:
        return (f"MediaPipe Tasks' ImageClassifier accepts {' or '.join(MEDIAPIPE_INPUTS)} input "
                f"tensors only; this model's input is {tin['dtype']}")
    if len(tin["shape"]) != 4 or tin["shape"][-1] not in (1, 3):
        return f"MediaPipe needs a [1, H, W, 1|3] image input; this model's is {tin['shape']}"
    try:
        md = read_metadata(model_bytes)
    except Exception as e:  # noqa: BLE001
        return f"its metadata does not read ({type(e).__name__})"
    if tin["dtype"] == "float32" and not (md and md["inputs"] and
                                          md["inputs"][0].get("normalization")):
        return "a float-input model needs normalization metadata for MediaPipe (none embedded)"
    return None


# --------------------------------------------------------------------------------------------
# reading back
# --------------------------------------------------------------------------------------------
def _field(t: Table, slot: int) -> int:
    return t.Offset(4 + 2 * slot)


def _str(t: Table, slot: int) -> Optional[str]:
    o = _field(t, slot)
    return t.String(o + t.Pos).decode() if o else None


def _sub(t: Table, slot: int) -> Optional[Table]:
    o = _field(t, slot)
    return Table(t.Bytes, t.Indirect(o + t.Pos)) if o else None


def _vec_tables(t: Table, slot: int) -> List[Table]:
    o = _field(t, slot)
    if not o:
        return []
    start, n = t.Vector(o), t.VectorLen(o)
    return [Table(t.Bytes, t.Indirect(start + 4 * i)) for i in range(n)]


def _vec_floats(t: Table, slot: int) -> List[float]:
    o = _field(t, slot)
    if not o:
        return []
    start, n = t.Vector(o), t.VectorLen(o)
    return [t.Get(N.Float32Flags, start + 4 * i) for i in range(n)]


def _u8(t: Table, slot: int) -> int:
    o = _field(t, slot)
    return t.Get(N.Uint8Flags, o + t.Pos) if o else 0


def _u32(t: Table, slot: int) -> int:
    o = _field(t, slot)
    return t.Get(N.Uint32Flags, o + t.Pos) if o else 0


def _tensor(t: Table) -> dict:
    content = _sub(t, 3)
    props = {}
    if content is not None:
        kind = _u8(content, 0)
        props["content"] = {CONTENT_IMAGE: "image", CONTENT_FEATURE: "feature"}.get(kind, kind)
        if kind == CONTENT_IMAGE:
            img = _sub(content, 1)
            size = _sub(img, 1)
            props["color_space"] = {COLOR_RGB: "RGB", COLOR_GRAYSCALE: "GRAYSCALE"}.get(
                _u8(img, 0))
            props["size"] = [_u32(size, 0), _u32(size, 1)] if size else None
    norm = None
    for u in _vec_tables(t, 4):
        if _u8(u, 0) == PROCESS_NORMALIZATION:
            n = _sub(u, 1)
            norm = {"mean": _vec_floats(n, 0), "std": _vec_floats(n, 1)}
    stats = _sub(t, 5)
    files = [{"name": _str(f, 0), "description": _str(f, 1), "type": _u8(f, 2)}
             for f in _vec_tables(t, 6)]
    return {"name": _str(t, 0), "description": _str(t, 1), **props, "normalization": norm,
            "stats": {"max": _vec_floats(stats, 0), "min": _vec_floats(stats, 1)} if stats else None,
            "associated_files": files}


def read_metadata(model_bytes: bytes) -> Optional[dict]:
    """The model's TFLITE_METADATA as a dict, and the files packed in it; None if it has none."""
    m = schema.Model.GetRootAs(model_bytes, 0)
    buf = None
    for i in range(m.MetadataLength()):
        if _name(m.Metadata(i).Name()) == METADATA_NAME:
            buf = m.Buffers(m.Metadata(i).Buffer()).DataAsNumpy().tobytes()
    if buf is None:
        return None
    if buf[4:8] != FILE_IDENTIFIER:
        raise ValueError(f"metadata identifier {buf[4:8]!r}, expected {FILE_IDENTIFIER!r}")
    root = Table(bytearray(buf), flatbuffers.encode.Get(N.UOffsetTFlags.packer_type, buf, 0))
    sgs = _vec_tables(root, 3)
    packed = {}
    try:
        with zipfile.ZipFile(io.BytesIO(model_bytes)) as z:
            packed = {n: z.read(n) for n in z.namelist()}
    except zipfile.BadZipFile:
        pass
    return {
        "name": _str(root, 0), "description": _str(root, 1), "version": _str(root, 2),
        "author": _str(root, 4), "license": _str(root, 5),
        "min_parser_version": _str(root, 7),
        "inputs": [_tensor(t) for t in _vec_tables(sgs[0], 2)] if sgs else [],
        "outputs": [_tensor(t) for t in _vec_tables(sgs[0], 3)] if sgs else [],
        "packed_files": packed,
    }


def float_ops(model_bytes: bytes) -> List[dict]:
    """The ops that compute in floating point, from the op list: any op with a float32/float16
    tensor among its non-constant inputs and outputs, except the QUANTIZE that takes a float
    graph input and the DEQUANTIZE that writes a float graph output (the model's float I/O
    edges). Empty: an integer-only graph, what an NPU or the Edge TPU runs whole. Each entry:
    {subgraph, index, op}."""
    m = schema.ModelT.InitFromPackedBuf(bytearray(strip_zip(model_bytes)), 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    floating = {schema.TensorType.FLOAT32, schema.TensorType.FLOAT16}
    out = []
    for g_i, g in enumerate(m.subgraphs or []):
        g_in, g_out = set(g.inputs if g.inputs is not None else []), set(
            g.outputs if g.outputs is not None else [])

        def const(t):
            b = m.buffers[g.tensors[t].buffer] if m.buffers else None
            return b is not None and b.data is not None and len(b.data) > 0

        for k, op in enumerate(g.operators or []):
            c = m.operatorCodes[op.opcodeIndex]
            name = names.get(max(c.builtinCode, c.deprecatedBuiltinCode), "CUSTOM")
            if name == "CUSTOM" and c.customCode:
                name = c.customCode.decode() if isinstance(c.customCode, bytes) else c.customCode
            ins = [t for t in (op.inputs if op.inputs is not None else []) if t >= 0]
            outs = [t for t in (op.outputs if op.outputs is not None else []) if t >= 0]
            if name == "QUANTIZE" and ins and all(t in g_in for t in ins):
                continue
            if name == "DEQUANTIZE" and outs and all(t in g_out for t in outs):
                continue
            if any(g.tensors[t].type in floating for t in ins + outs if not const(t)):
                out.append({"subgraph": g_i, "index": k, "op": name})
    return out
