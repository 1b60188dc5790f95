"""Selective quantization: named blocks (``mixed3`` ...) stay float in an otherwise int8 model, and
the per-tensor map from a .tflite tensor name to its Inception block."""
from __future__ import annotations

import re
from typing import Dict, Optional

import numpy as np


def tensor_block(tensor_name: str, blocks: Dict[str, str]) -> Optional[str]:
    """The block of a .tflite tensor, from the Keras layer names inside its (fused) name, e.g.
    ``inception_v3/activation_60/Relu;inception_v3/conv2d_60/Conv2D1`` -> ``mixed6``."""
    for part in re.split(r"[;]", tensor_name):
        for token in part.split("/"):
            if token in blocks:
                return blocks[token]
    return None


def debugger(src, recipe, x: np.ndarray, denylisted_nodes=None):
    """TFLite's QuantizationDebugger over the recipe's converter and images ``x``."""
    import tensorflow as tf

    from convert.tflite import _converter, configure

    conv = configure(_converter(src), recipe, x, src.is_qat)

    def data():
        for i in range(len(x)):
            yield [x[i:i + 1]]

    opts = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=denylisted_nodes or None)
    return tf.lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=data,
                                                     debug_options=opts)


def convert_selective(src, recipe, calib: np.ndarray) -> bytes:
    """Int8 everywhere except the tensors of ``recipe.float_blocks``."""
    import dataclasses

    from convert.litert import TFLiteModel
    from convert.tflite import ConvertError, configure, _converter
    from train.model import layer_blocks

    if src.keras_model is None:
        raise ConvertError("selective quantization needs a Keras model (block names)")
    base = dataclasses.replace(recipe, float_blocks=(), name=recipe.name.split("+")[0])
    full = configure(_converter(src), base, calib, src.is_qat).convert()
    m = TFLiteModel(model_content=full, num_threads=1, xnnpack=False)
    names = {t["index"]: t["name"] for t in m.interp.get_tensor_details()}
    blocks = layer_blocks(src.keras_model)
    keep = set(recipe.float_blocks)
    nodes = sorted({names[o] for d in m.interp._get_ops_details() for o in d["outputs"]
                    if tensor_block(names[o], blocks) in keep})
    if not nodes:
        raise ConvertError(f"{recipe.name}: no tensor of {sorted(keep)} found in the model")
    dbg = debugger(src, base, calib, denylisted_nodes=nodes)
    return dbg.get_nondebug_quantized_model()
