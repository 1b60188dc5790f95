"""Selective quantization: named blocks (``mixed3`` ...) stay float in an otherwise int8 model, and
the per-tensor map from a .tflite tensor name to its Inception block."""
from __future__ import annotations

import re
from typing import Dict, Optional

import numpy as np

from quantize.converter import QuantizeError, configure, converter
from contract.litert import TFLiteModel


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

    conv = configure(converter(src), recipe, x, src.is_qat)

    def data():
        for i in range(len(x)):
            yield [x[i:i + 1]]

    opts = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=denylisted_nodes or None)
    return tf.lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=data,
                                                     debug_options=opts)


class SelectiveQuantizer:
    """One calibration of the float model, then any number of int8 models with chosen blocks
    kept float (the denylisted nodes are re-quantized from the same calibrated model, which is
    what makes the choice's step-by-step search affordable)."""

    def __init__(self, src, base, calib: np.ndarray):
        from train.model import layer_blocks

        if src.keras_model is None:
            raise QuantizeError("selective quantization needs a Keras model (block names)")
        self.src, self.base = src, base
        self.dbg = debugger(src, base, calib)
        self.full = self.dbg.get_nondebug_quantized_model()
        m = TFLiteModel(model_content=self.full, num_threads=1, xnnpack=False)
        names = {t["index"]: t["name"] for t in m.interp.get_tensor_details()}
        blocks = layer_blocks(src.keras_model)
        # an op whose tensor names no layer (the classifier's softmax, the converter's own
        # quantize ops) belongs to the block of the op before it: blocks are contiguous in
        # execution order, and the head's softmax is what quantizes the logits
        self.node_block, last = {}, None
        for d in m.interp._get_ops_details():
            for o in d["outputs"]:
                last = tensor_block(names[o], blocks) or last
                self.node_block[names[o]] = last
        self._stats = None

    def layer_statistics_csv(self) -> str:
        """TFLite's per-tensor statistics of the fully quantized model (computed once)."""
        if self._stats is None:
            import io

            import tensorflow as tf

            self.dbg.options = tf.lite.experimental.QuantizationDebugOptions()
            self.dbg.run()
            buf = io.StringIO()
            self.dbg.layer_statistics_dump(buf)
            self._stats = buf.getvalue()
        return self._stats

    def convert(self, float_blocks) -> bytes:
        import tensorflow as tf

        keep = set(float_blocks)
        nodes = sorted(n for n, b in self.node_block.items() if b in keep)
        if not nodes:
            raise QuantizeError(f"{self.base.name}+float:{','.join(sorted(keep))}: no tensor of "
                               f"{sorted(keep)} found in the model")
        self.dbg.options = tf.lite.experimental.QuantizationDebugOptions(
            denylisted_nodes=nodes)
        return self.dbg.get_nondebug_quantized_model()


_QUANTIZERS: dict = {}


def selective_quantizer(src, base, calib: np.ndarray) -> SelectiveQuantizer:
    """The process's one ``SelectiveQuantizer`` per (model, recipe, calibration images)."""
    import hashlib

    key = (src.sha256, base.name, hashlib.sha256(np.ascontiguousarray(calib).tobytes()).hexdigest())
    if key not in _QUANTIZERS:
        _QUANTIZERS.clear()  # one model at a time: each holds a calibrated model in memory
        _QUANTIZERS[key] = SelectiveQuantizer(src, base, calib)
    return _QUANTIZERS[key]


def convert_selective(src, recipe, calib: np.ndarray) -> bytes:
    """Int8 everywhere except the tensors of ``recipe.float_blocks``."""
    import dataclasses

    base = dataclasses.replace(recipe, float_blocks=(), name=recipe.name.split("+")[0])
    return selective_quantizer(src, base, calib).convert(recipe.float_blocks)
