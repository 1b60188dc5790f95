"""quantize/: post-training quantization recipes and TFLite quantizing, calibration, selective
quantization, QAT (an option of train/'s loop). Imports train/ and contract/ only.

Importing it makes QAT exports loadable (``train.source`` loads them under tfmot's scope with the
QAT layer classes of quantize/qat.py)."""
from train.safe_load import register_custom_objects


def _qat_scope():
    import tensorflow_model_optimization as tfmot

    from quantize.qat import custom_objects

    return tfmot.quantization.keras.quantize_scope(custom_objects())


register_custom_objects(_qat_scope)
