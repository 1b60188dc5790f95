""".tflite buffer layout: every constant buffer 16-byte aligned, so a runtime can use the weights
in place (mmap, zero-copy) instead of copying them to the heap.

TensorFlow's converter writes the ``Buffer.data`` vectors with 1-byte alignment: about three in four
of the demo's buffers start off an 8-byte boundary, and LiteRT (MediaPipe's, for one) then warns
"Read-only tensor ... has an unaligned buffer (required alignment 8); copying to an aligned heap
buffer" and copies them. ``pack`` writes a model with its buffers aligned; ``misaligned``
is the check (the converter's self-check runs it on every artifact it writes). A zip appended
after the flatbuffer (the metadata's packed label file) is kept as it was.
"""
from __future__ import annotations

from typing import Callable, List, Tuple

import numpy as np

ALIGNMENT = 16  # XNNPACK and LiteRT's mmap path need 8 (16 covers SIMD loads of any width)


class _AlignedBuffer:
    """A ``BufferT`` stand-in whose ``Pack`` writes its data vector ``ALIGNMENT``-aligned."""

    def __init__(self, buf):
        self.buf = buf

    def Pack(self, builder):
        from ai_edge_litert import schema_py_generated as schema

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
    import flatbuffers

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


def misaligned(model_bytes: bytes, alignment: int = ALIGNMENT) -> List[int]:
    """Indices of the buffers whose data does not start on an ``alignment`` boundary."""
    from ai_edge_litert import schema_py_generated as schema

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
    from ai_edge_litert import schema_py_generated as schema
    from convert.metadata import strip_zip

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
    from convert.metadata import strip_zip

    if not misaligned(strip_zip(model_bytes)):
        return model_bytes
    return rewrite(model_bytes, lambda m: True)[0]


def _reappend(new_flat: bytes, old: bytes, old_flat: bytes) -> bytes:
    """Re-writes the packed files after ``new_flat`` (a zip's central directory holds absolute
    offsets, so the bytes cannot simply be moved)."""
    import io
    import zipfile

    out = io.BytesIO()
    out.write(new_flat)
    with zipfile.ZipFile(io.BytesIO(old)) as src, \
            zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    return out.getvalue()
