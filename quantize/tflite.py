"""TFLite conversion with a recipe's quantization: the lean batch-1 SavedModel every recipe
converts from, the converter configured for the recipe (float16, dynamic range, int8 or 16x8
activations, integer I/O, calibration), and the conversion itself, which names the ops a recipe
cannot quantize. Selective recipes (``+float:``) go through quantize/selective.py.
"""
from __future__ import annotations

import re
import tempfile
from typing import List, Optional

import numpy as np

from train import keras_env  # noqa: F401
from quantize.recipes import Recipe
from train.source import Source


class QuantizeError(ValueError):
    """A recipe that cannot be applied to the model; the message says why and what to try."""


_IO_TYPES = {"float32": None, "int8": "int8", "uint8": "uint8", "int16": "int16"}


def conversion_dir(src: Source) -> str:
    """The SavedModel every recipe converts from, written once per source: one signature, the
    model's variables, and the batch pinned to 1.

    A batch of -1 in the .tflite's shape signature makes ``edgetpu_compiler`` refuse the model
    ("a delegate that only supports static-sized tensors with a graph that has dynamic-sized
    tensors", google-coral/edgetpu#829), and phones run batch 1; LiteRT still resizes the input
    for batched evaluation. (The export's own ``saved_model/`` keeps its dynamic batch for
    serving.)"""
    if getattr(src, "_lean_dir", None) is None:
        import atexit
        import shutil

        import tensorflow as tf

        from train.trainer import save_serving

        from contract import workdirs

        workdirs.sweep(tempfile.gettempdir())  # what a killed run left
        path = workdirs.mkdtemp("convert-sm-")
        atexit.register(shutil.rmtree, path, True)
        if src.keras_model is not None:
            save_serving(src.keras_model, path, batch=1)
        else:  # a user's SavedModel: its serving signature, called at batch 1
            spec = tf.TensorSpec([1, *src.input_shape], tf.float32, name="image")
            module = tf.Module()
            module.source = src.saved_model
            module.serve = tf.function(lambda image: {"predictions": src(image)},
                                       input_signature=[spec])
            tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
        src._lean_dir = path
    return src._lean_dir


def _converter(src: Source):
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_saved_model(conversion_dir(src))


def configure(converter, recipe: Recipe, calib: Optional[np.ndarray], is_qat: bool):
    import tensorflow as tf

    if recipe.weights == "float32":
        return converter
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if recipe.weights == "float16":
        converter.target_spec.supported_types = [tf.float16]
        return converter
    if not recipe.integer_activations:
        return converter  # dynamic range
    if calib is not None and not is_qat:
        def representative():
            for i in range(len(calib)):
                yield [calib[i:i + 1]]
        converter.representative_dataset = representative
    if recipe.activations == "int16":
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    elif not is_qat:  # a QAT model carries its ranges: the converter needs no int8-only flag
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if _IO_TYPES[recipe.io]:
        converter.inference_input_type = getattr(tf, recipe.io)
        converter.inference_output_type = getattr(tf, recipe.io)
    return converter


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
        from quantize.selective import convert_selective

        return convert_selective(src, recipe, calib)
    conv = configure(_converter(src), recipe, calib, src.is_qat)
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
    from contract.litert import TFLiteModel

    m = TFLiteModel(model_content=model_bytes, num_threads=1, xnnpack=False)
    dtypes = {t["index"]: np.dtype(t["dtype"]).kind for t in m.interp.get_tensor_details()}
    return sorted({d["op_name"] for d in m.interp._get_ops_details()
                   if d["op_name"] not in ("QUANTIZE", "DEQUANTIZE")
                   and any(dtypes.get(int(o)) == "f" for o in d["outputs"])})
