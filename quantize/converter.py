"""The TFLite converter set up for a recipe: the lean batch-1 SavedModel every recipe converts
from, and the converter's options for the recipe (float16, dynamic range, int8 or 16x8
activations, integer I/O, calibration). quantize/tflite.py and quantize/selective.py both
convert through it.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from train import keras_env  # noqa: F401
from contract.recipes import Recipe
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

        # (what a killed run left here is swept when a conversion starts: convert.api.load)
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


def converter(src: Source):
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


