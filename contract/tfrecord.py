"""TFRecord files of ``tf.train.Example`` images, read without TensorFlow (the run side reads
ImageNet's shards on a board, where only numpy and LiteRT are installed).

A record is ``uint64 length | uint32 masked CRC-32C of the length | data | uint32 masked CRC-32C
of the data`` (little-endian). ``index()`` walks a shard by its length fields only (a seek per
record, no payload read) and checks each length's CRC, so a truncated or mis-framed shard is
named with the byte offset where it breaks; the payload's CRC is checked when the ``crc32c``
package is installed (a damaged payload otherwise shows as an unparsable Example or an image
that does not decode, both reported). ``parse_example()`` decodes the protobuf wire format of
``Example -> Features -> map<string, Feature>`` for the keys asked for.

ImageNet's standard shards (``build_imagenet_data.py``) carry ``image/encoded`` (JPEG bytes),
``image/class/label`` (1..1000), ``image/class/synset`` (``n01440764``) and
``image/class/text`` (``tench, Tinca tinca``).
"""
from __future__ import annotations

import glob
import os
import struct
import sys
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from contract.protowire import fields as _fields, varint as _varint

ENCODED = "image/encoded"
LABEL = "image/class/label"
SYNSET = "image/class/synset"
TEXT = "image/class/text"


class RecordError(ValueError):
    """A shard or record that cannot be read; the message names the file and offset."""


# --- CRC-32C (Castagnoli), as TFRecord frames use it ---------------------------------------------
def _table() -> List[int]:
    out = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        out.append(c)
    return out


_CRC_TABLE = _table()

try:  # a C implementation, when installed, checks every payload too
    import crc32c as _crc32c_mod  # type: ignore
except ImportError:  # pragma: no cover - depends on the environment
    _crc32c_mod = None


def crc32c(data: bytes) -> int:
    if _crc32c_mod is not None:
        return _crc32c_mod.crc32c(data)
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# --- files: local, or a URL (gs://, s3://, hdfs://, ...) ----------------------------------------
def is_url(path: str) -> bool:
    return "://" in path


def _remote():
    """The file system for URLs: TensorFlow's ``tf.io.gfile`` in a process that has TensorFlow
    (training, conversion: gs://, s3://, hdfs:// as TensorFlow reads them), else ``fsspec``
    (gcsfs, s3fs, ...) where installed; else RecordError saying what to install."""
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        g = tf.io.gfile
        return (lambda p: g.GFile(p, "rb"), lambda p: g.stat(p).length,
                lambda pattern: g.glob(pattern))
    try:
        import fsspec
    except ImportError:
        raise RecordError("reading TFRecords from a URL without TensorFlow needs fsspec and its "
                          "file system (pip install fsspec gcsfs, or s3fs, ...), or copy the "
                          "shards to a local folder") from None
    def matches(pattern):
        fs = fsspec.core.url_to_fs(pattern)[0]
        return [fs.unstrip_protocol(m) for m in fs.glob(pattern)]

    return (lambda p: fsspec.open(p, "rb").open(),
            lambda p: fsspec.core.url_to_fs(p)[0].size(p), matches)


def open_file(path: str):
    return _remote()[0](path) if is_url(path) else open(path, "rb")


def file_size(path: str) -> int:
    return int(_remote()[1](path)) if is_url(path) else os.path.getsize(path)


def glob_files(pattern: str) -> List[str]:
    """Files matching ``pattern`` (a local glob, or a URL's), sorted."""
    if is_url(pattern):
        return sorted(_remote()[2](pattern))
    return sorted(f for f in glob.glob(pattern) if os.path.isfile(f))


# --- framing -------------------------------------------------------------------------------------
def index(path: str) -> List[Tuple[int, int]]:
    """(offset of the payload, its length) of every record of one shard."""
    out = []
    size = file_size(path)
    with open_file(path) as f:
        pos = 0
        while pos < size:
            head = f.read(12)
            if len(head) < 12:
                raise RecordError(f"{path}: truncated record header at byte {pos}")
            (length,), (crc,) = struct.unpack("<Q", head[:8]), struct.unpack("<I", head[8:])
            if masked_crc(head[:8]) != crc:
                raise RecordError(f"{path}: bad length checksum at byte {pos} "
                                  "(not a TFRecord file, or damaged)")
            end = pos + 12 + length + 4
            if end > size:
                raise RecordError(f"{path}: record at byte {pos} says {length} bytes, but the "
                                  f"file ends {size - pos - 12} bytes later (truncated)")
            out.append((pos + 12, length))
            pos = end
            f.seek(pos)
    return out


def read_record(path: str, offset: int, length: int, f=None) -> bytes:
    """One record's payload (its CRC checked when ``crc32c`` is installed)."""
    own = f is None
    f = open_file(path) if own else f
    try:
        f.seek(offset)
        data = f.read(length + 4)
    finally:
        if own:
            f.close()
    if len(data) < length + 4:
        raise RecordError(f"{path}: record at byte {offset - 12} is truncated")
    if _crc32c_mod is not None and masked_crc(data[:length]) != struct.unpack(
            "<I", data[length:])[0]:
        raise RecordError(f"{path}: record at byte {offset - 12} fails its checksum (damaged)")
    return data[:length]


def records(path: str) -> Iterable[bytes]:
    with open_file(path) as f:
        for off, n in index(path):
            yield read_record(path, off, n, f)


# --- the Example protobuf ------------------------------------------------------------------------
def _feature(buf: bytes):
    """A Feature's values: a list of bytes, floats or ints."""
    for field, wire, value in _fields(buf):
        if wire != 2:
            continue
        if field == 1:  # BytesList
            return [v for f, w, v in _fields(value) if f == 1 and w == 2]
        if field == 2:  # FloatList (packed or not)
            out: List[float] = []
            for f, w, v in _fields(value):
                if f == 1 and w == 2:
                    out.extend(struct.unpack(f"<{len(v) // 4}f", v))
                elif f == 1 and w == 5:
                    out.append(struct.unpack("<f", v)[0])
            return out
        if field == 3:  # Int64List (packed or not); two's complement for negatives
            out_i: List[int] = []
            for f, w, v in _fields(value):
                if f == 1 and w == 2:
                    j = 0
                    while j < len(v):
                        x, j = _varint(v, j)
                        out_i.append(x - (1 << 64) if x >= 1 << 63 else x)
                elif f == 1 and w == 0:
                    out_i.append(v - (1 << 64) if v >= 1 << 63 else v)
            return out_i
    return []


def parse_example(data: bytes, keys: Optional[Sequence[str]] = None) -> Dict[str, list]:
    """{key: values} of a serialised ``tf.train.Example`` (only ``keys``, when given)."""
    out: Dict[str, list] = {}
    try:
        for field, wire, features in _fields(data):
            if field != 1 or wire != 2:
                continue
            for f, w, entry in _fields(features):
                if f != 1 or w != 2:
                    continue
                key, value = None, b""
                for ef, ew, ev in _fields(entry):
                    if ef == 1 and ew == 2:
                        key = ev.decode("utf-8", "replace")
                    elif ef == 2 and ew == 2:
                        value = ev
                if key is not None and (keys is None or key in keys):
                    out[key] = _feature(value)
    except (ValueError, struct.error) as e:
        raise RecordError(f"not a tf.train.Example ({e})") from None
    return out


# --- image records ---------------------------------------------------------------------------------
class ImageRecords:
    """The records of some shards, addressable by position: ``item(i)`` (encoded bytes, label
    with ``label_offset`` subtracted), built from the shards' length fields."""

    def __init__(self, shards: Sequence[str], label_offset: int = 1,
                 refs: Optional[Sequence[Tuple[int, int, int]]] = None):
        self.shards = list(shards)
        self.label_offset = label_offset
        if refs is None:
            refs = [(s, off, n) for s, path in enumerate(self.shards) for off, n in index(path)]
        self.refs = list(refs)  # (shard number, payload offset, length)

    def __len__(self) -> int:
        return len(self.refs)

    def subset(self, positions: Iterable[int]) -> "ImageRecords":
        return ImageRecords(self.shards, self.label_offset, [self.refs[i] for i in positions])

    def where(self, i: int) -> str:
        """Record ``i`` in words, for messages: its shard and byte offset."""
        s, off, _ = self.refs[i]
        return f"{self.shards[s]} (record at byte {off - 12})"

    def check_keys(self) -> None:
        """The first Example of every shard has the image keys (RecordError otherwise): one
        record read per shard."""
        seen = set()
        for i, (s, _, _) in enumerate(self.refs):
            if s not in seen:
                seen.add(s)
                self.example(i)

    def example(self, i: int, keys=(ENCODED, LABEL)) -> Dict[str, list]:
        s, off, n = self.refs[i]
        where = self.where(i)
        data = read_record(self.shards[s], off, n)  # its message names shard and offset
        try:
            ex = parse_example(data, keys)
        except RecordError as e:
            raise RecordError(f"{where}: {e}") from None
        for k in (ENCODED, LABEL):
            if k in keys and not ex.get(k):
                raise RecordError(f"{where} has no {k!r} feature: expected ImageNet-style "
                                  f"Examples with {ENCODED!r} (JPEG/PNG bytes) and {LABEL!r}")
        return ex

    def item(self, i: int) -> Tuple[bytes, int]:
        ex = self.example(i)
        return ex[ENCODED][0], int(ex[LABEL][0]) - self.label_offset

    def to_json(self) -> dict:
        return {"shards": self.shards, "label_offset": self.label_offset,
                "refs": [list(r) for r in self.refs]}

    @classmethod
    def from_json(cls, d: dict) -> "ImageRecords":
        return cls(d["shards"], int(d["label_offset"]), [tuple(r) for r in d["refs"]])


def class_names(recs: ImageRecords, num_classes: int) -> Optional[List[str]]:
    """Human-readable names by label from the records' ``image/class/text`` (or synset), read
    until every label has one; None when the records carry no names."""
    names: Dict[int, str] = {}
    for i in range(len(recs)):
        ex = recs.example(i, keys=(LABEL, TEXT, SYNSET))
        if not ex.get(LABEL):
            continue
        label = int(ex[LABEL][0]) - recs.label_offset
        text = ex.get(TEXT) or ex.get(SYNSET)
        if text is None:
            if i >= 32 and not names:  # the first records carry no names: none do
                return None
            continue
        if 0 <= label < num_classes and label not in names:
            names[label] = text[0].decode("utf-8", "replace")
            if len(names) == num_classes:
                break
    if not names:
        return None
    return [names.get(i, str(i)) for i in range(num_classes)]
