"""The TFLite target: one ``.tflite`` per recipe (converted by quantize/tflite.py), with its TFLite
metadata embedded and read back, checked against its source on the check images, through the one
conversion loop (convert/loop.py) into ``manifest.json``."""
from __future__ import annotations

import os
from typing import Callable, Dict, Optional, Sequence

import numpy as np

from contract.manifest import atomic_write_bytes, sha256_file
from contract.tflite_file import ALIGNMENT, align, misaligned
from convert.loop import Adapter, Built, ConvertError, run
from contract.tflite_file import mediapipe_problem, strip_zip
from contract.recipes import RECIPES, Recipe, file_name
from quantize.tflite import QuantizeError, convert_bytes
from train.source import Source
from contract.litert import TFLiteModel


def describe_tflite(model_bytes: bytes) -> dict:
    """I/O dtypes, shapes and quantization, and the op counts, read back with LiteRT."""
    # without the default XNNPACK delegate, which would fold the graph into DELEGATE nodes
    m = TFLiteModel(model_content=model_bytes, num_threads=1, xnnpack=False)
    ops = m.op_names()
    counts: Dict[str, int] = {}
    for o in ops:
        counts[o] = counts.get(o, 0) + 1
    details = m.interp._get_ops_details()
    tensors = {t["index"]: t for t in m.interp.get_tensor_details()}
    conv_dtypes = {}
    for d in details:
        if d["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            dt = np.dtype(tensors[d["inputs"][0]]["dtype"]).name
            conv_dtypes[dt] = conv_dtypes.get(dt, 0) + 1
    io = lambda d: {"name": d["name"], "dtype": np.dtype(d["dtype"]).name,  # noqa: E731
                    "shape": [int(s) for s in d["shape"]],
                    "quantization": {"scale": float(d["quantization"][0]),
                                     "zero_point": int(d["quantization"][1])}}
    return {"input": io(m.input), "output": io(m.output), "op_counts": counts,
            "conv_input_dtypes": conv_dtypes}


def weight_bytes(model_bytes: bytes) -> int:
    """Bytes of the constant buffers (weights, biases, scales) of a .tflite flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(model_bytes, 0)
    total = 0
    for i in range(model.BuffersLength()):
        buf = model.Buffers(i)
        total += buf.DataLength() or int(buf.Size())  # Size(): data stored past the 2 GB mark
    return total


def self_check(recipe: Recipe, model_bytes: bytes, x: np.ndarray, ref: np.ndarray,
               fp32_bytes: Optional[int], fp32_weight_bytes: Optional[int] = None) -> dict:
    """Agreement with the source on ``x`` and the size reduction, against the recipe's stated
    tolerances (convert/check.py, the rule Core ML variants are held to too). The size limit
    applies to the weights (constant tensors): a small graph's per-tensor metadata would
    otherwise hide the compression; the file ratio is reported too."""
    from convert.check import judge

    got = TFLiteModel(model_content=model_bytes, num_threads=2).predict(x)
    wbytes = weight_bytes(model_bytes)
    ratio = len(model_bytes) / fp32_bytes if fp32_bytes else None
    out = judge(recipe, got, ref, wbytes / fp32_weight_bytes if fp32_weight_bytes else None)
    out.update(size_ratio_vs_fp32=None if ratio is None else round(ratio, 4),
               weight_bytes=wbytes)
    bad = misaligned(strip_zip(model_bytes))
    out["unaligned_buffers"] = len(bad)
    if bad:  # a runtime would copy these to the heap instead of using the file in place
        out["problems"].append(f"{len(bad)} buffer(s) not {ALIGNMENT}-byte aligned "
                               f"(first: #{bad[0]})")
        out["passed"] = False
    return out


class TFLiteAdapter(Adapter):
    target = "tflite"

    def __init__(self, src: Source, calib: Optional[np.ndarray], metadata: Optional[dict]):
        self.src, self.calib, self.metadata = src, calib, metadata
        self.fp32_bytes = self.fp32_wbytes = None

    def digest(self, path: str) -> str:
        return sha256_file(path)

    def prepare(self, recipes, artifacts: dict, out_dir: str) -> None:
        fp32 = artifacts.get(file_name(self.src.name, RECIPES["fp32"]))
        if (fp32 and os.path.isfile(os.path.join(out_dir, fp32["file"]))
                and fp32.get("source_sha256") == self.src.sha256):
            self.fp32_bytes, self.fp32_wbytes = fp32["bytes"], fp32["check"]["weight_bytes"]
        elif not any(r.name == "fp32" for r in recipes):  # the size baseline, not written
            base = self._convert(RECIPES["fp32"])
            self.fp32_bytes, self.fp32_wbytes = len(base), weight_bytes(base)

    def _convert(self, recipe: Recipe) -> bytes:
        try:
            return convert_bytes(self.src, recipe, self.calib)
        except QuantizeError as e:
            raise ConvertError(str(e)) from None

    def build(self, recipe: Recipe, ref: np.ndarray, check_x: np.ndarray) -> Built:
        data = self._convert(recipe)
        islands = 0
        if recipe.float_islands:  # XNNPACK takes the whole int8 graph (convert/islands.py)
            from convert.islands import float_islands

            data, islands = float_islands(data)
        data = align(data)  # zero-copy: every buffer 16-byte aligned
        desc = describe_tflite(data)
        if recipe.name == "fp32":
            self.fp32_bytes, self.fp32_wbytes = len(data), weight_bytes(data)
        check = self_check(recipe, data, check_x, ref, self.fp32_bytes, self.fp32_wbytes)
        meta = None
        if check["passed"] and self.metadata is not None:
            data, meta = self._with_metadata(recipe, data)
        why = mediapipe_problem(data)  # MediaPipe Tasks reads the metadata: after it is in
        from contract.tflite_file import float_ops

        # ops computing in float inside the graph (0: integer-only, what NPUs and the Edge TPU
        # run whole; pipeline.choose admits by it, not by the recipe's name)
        desc["float_ops"] = len(float_ops(data))
        return Built(check, dict(desc, metadata=meta, float_islands=islands,
                                 mediapipe={"runs": why is None, "reason": why}),
                     place=lambda path: atomic_write_bytes(path, data))

    def _with_metadata(self, recipe: Recipe, data: bytes):
        from contract.tflite_file import add_metadata, read_metadata

        src = self.src
        data = add_metadata(data, src.spec, src.labels, **_metadata_fields(src, recipe,
                                                                             self.metadata))
        back = read_metadata(data)  # verify what a Task Library / MediaPipe reader sees
        meta = {"embedded": True, "name": back["name"], "version": back["version"],
                "normalization": back["inputs"][0]["normalization"],
                "labels": len((back["packed_files"].get("labels.txt") or b"").decode()
                              .splitlines()),
                "min_parser_version": back["min_parser_version"]}
        if meta["labels"] != len(src.labels or []) or not np.allclose(
                meta["normalization"]["mean"], src.spec.mean, rtol=1e-6):
            raise ConvertError(f"{recipe.name}: embedded metadata does not read back as written")
        return data, meta


def convert_tflite(src: Source, recipes: Sequence[Recipe], out_dir: str,
                   calib: Optional[np.ndarray], check_x: np.ndarray,
                   log: Callable = print, check_from: str = "evaluation split, seeded",
                   metadata: Optional[dict] = None) -> dict:
    """Converts, checks and writes every recipe; returns the manifest (also written). Each
    artifact is listed in the manifest as soon as it is in place."""
    return run(src, TFLiteAdapter(src, calib, metadata), recipes, out_dir, check_x, check_from,
               log)


def _metadata_fields(src: Source, recipe: Recipe, given: dict) -> dict:
    return {"name": f"{src.name}_{recipe.name}",
            "description": given.get("description") or (
                f"Inception-v3 image classifier ({src.name}), TFLite recipe {recipe.name}: "
                f"{recipe.description}"),
            "version": given.get("version") or f"{src.name}@{src.sha256[:12]}",
            "author": given.get("author") or "convert/ of the Inception-v3 edge pipeline",
            "license_": given.get("license") or "the source model's license"}
