"""Per-layer quantization error, by block (TFLite's QuantizationDebugger).

For each quantized tensor: RMSE between the float and the quantized value, divided by the
tensor's quantization scale (``rmse/scale``; ~0.29 = the error of ideal rounding, larger = the
tensor's range or its inputs hurt it). Averaged per Inception block so a user sees which of
``mixed0`` ... ``mixed10`` drift.
"""
from __future__ import annotations

import csv
import io
from typing import Dict, List

import numpy as np


def layer_error_report(src, recipe, x: np.ndarray) -> dict:
    """Per-tensor and per-block error of ``recipe`` on images ``x`` (which also calibrate it;
    the calibrated model is kept for selective conversions on the same images)."""
    from quantize.selective import selective_quantizer, tensor_block
    from train.model import layer_blocks

    buf = io.StringIO(selective_quantizer(src, recipe, x).layer_statistics_csv())
    blocks = layer_blocks(src.keras_model) if src.keras_model is not None else {}
    tensors: List[dict] = []
    for row in csv.DictReader(buf):
        scale = float(row.get("scale") or 0)
        mse = float(row.get("mean_squared_error") or 0)
        if scale <= 0:
            continue
        tensors.append({"tensor": row["tensor_name"], "op": row.get("op_name"),
                        "block": tensor_block(row["tensor_name"], blocks) or "other",
                        "rmse_over_scale": float(np.sqrt(mse) / scale),
                        "mean_abs_error": float(row.get("mean_abs_error") or 0)})
    per: Dict[str, List[float]] = {}
    for t in tensors:
        per.setdefault(t["block"], []).append(t["rmse_over_scale"])
    summary = sorted(({"block": b, "tensors": len(v), "mean_rmse_over_scale": float(np.mean(v)),
                       "max_rmse_over_scale": float(np.max(v))} for b, v in per.items()),
                     key=lambda r: -r["mean_rmse_over_scale"])
    return {"recipe": recipe.name, "images": int(len(x)), "tensors": tensors, "blocks": summary}
