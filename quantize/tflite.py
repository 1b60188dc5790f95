"""TFLite conversion with a recipe's quantization: the conversion itself (the converter set up by
quantize/converter.py), which names the ops a recipe cannot quantize. Selective recipes
(``+float:``) go through quantize/selective.py.
"""
from __future__ import annotations

import re
from typing import List, Optional

import numpy as np

from contract.recipes import Recipe
from quantize.converter import QuantizeError, configure, converter  # QuantizeError: re-exported
from quantize.selective import convert_selective
from train.source import Source
from contract.litert import TFLiteModel


_OPS_RE = re.compile(r"(?:ops? (?:are|is) not supported|unsupported ops?)[^:]*:\s*(.+)",
                     re.IGNORECASE)


def _unsupported_ops(message: str) -> List[str]:
    ops = set()
    for m in _OPS_RE.finditer(message):
        ops.update(re.findall(r"\b(?:tf|tfl)\.([A-Za-z0-9_]+)", m.group(1)))
    ops.update(re.findall(r"'(?:tf|tfl)\.([A-Za-z0-9_]+)' op", message))
    return sorted(ops)


def convert_bytes(src: Source, recipe: Recipe, calib: Optional[np.ndarray]) -> bytes:
    if recipe.calibrate and calib is None and not src.is_qat:
        raise QuantizeError(f"{recipe.name} needs calibration images")
    if recipe.float_blocks:
        return convert_selective(src, recipe, calib)
    conv = configure(converter(src), recipe, calib, src.is_qat)
    try:
        data = conv.convert()
    except Exception as e:  # noqa: BLE001 - the converter raises many types
        msg = str(e)
        ops = _unsupported_ops(msg)
        if ops:
            raise QuantizeError(f"{recipe.name}: the model has ops this recipe cannot quantize: "
                               f"{', '.join(ops)} (try dynamic_wi8_afp32, or keep them in float)"
                               ) from None
        raise QuantizeError(f"{recipe.name}: conversion failed: {msg.strip().splitlines()[-1][:400]}"
                           ) from None
    if recipe.integer_activations:
        left = float_ops(data)
        if left:
            raise QuantizeError(f"{recipe.name}: the model has ops this recipe cannot quantize: "
                               f"{', '.join(left)} (they stayed float; try dynamic_wi8_afp32, or "
                               "keep their block float with +float:)")
    return data


def float_ops(model_bytes: bytes) -> List[str]:
    """Ops (other than the I/O QUANTIZE/DEQUANTIZE) that compute in float in a .tflite model."""
    m = TFLiteModel(model_content=model_bytes, num_threads=1, xnnpack=False)
    dtypes = {t["index"]: np.dtype(t["dtype"]).kind for t in m.interp.get_tensor_details()}
    return sorted({d["op_name"] for d in m.interp._get_ops_details()
                   if d["op_name"] not in ("QUANTIZE", "DEQUANTIZE")
                   and any(dtypes.get(int(o)) == "f" for o in d["outputs"])})
