"""Quantization-aware training: an option of train/'s loop, not a second trainer.

``qat_transform(float_export)`` returns the ``model_transform`` that ``train.trainer.train`` applies
after building the float model: it loads the float weights, then wraps the model with
tensorflow-model-optimization's 8-bit scheme. Two fixes sit at the depth where the faults are:

* tfmot 0.8.1's ``ModelTransformer._get_layers`` returns layers in the model config's order, not in
  the order asked for, so a Concatenate whose inputs are matched by ``ConcatTransform`` gets them
  rewired in config order (tensorflow/model-optimization#1061). In Inception-v3 that reorders
  ``mixed3`` and ``mixed8`` (their max-pool branch comes first in the config) and the QAT model
  computes another function. ``_ordered_get_layers`` keeps the asked order.
* MaxPooling2D has no quantize config in the default registry, so the stem's second max-pool
  feeds ``mixed0``'s three 1x1 convolutions without an output range, and the converter leaves
  them float. ``OutputQuantizeConfig`` gives max-pools their own output quantizer.
"""
from __future__ import annotations

import json
import os

from train import keras_env  # noqa: F401
from train.config import ExperimentConfig
from contract.manifest import sha256_file


def _ordered_get_layers(self, layer_names):
    """Layers by name, in the order asked for (duplicates dropped): see the module docstring."""
    by_name = {layer["config"]["name"]: layer for layer in self._config["layers"]}
    seen, out = set(), []
    for n in layer_names:
        if n in by_name and n not in seen:
            seen.add(n)
            out.append(by_name[n])
    return out


_original_get_layers = None


def patch_tfmot() -> None:
    global _original_get_layers
    from tensorflow_model_optimization.python.core.quantization.keras.graph_transformations \
        import model_transformer

    if model_transformer.ModelTransformer._get_layers is not _ordered_get_layers:
        _original_get_layers = model_transformer.ModelTransformer._get_layers
        model_transformer.ModelTransformer._get_layers = _ordered_get_layers


def _output_quantize_config_class():
    import tensorflow_model_optimization as tfmot

    class OutputQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
        """No weights, no activation: an 8-bit moving-average range on the layer's output.

        ``quantize_output`` is serialised: tfmot's ConcatTransform turns it off for layers that
        feed a Concatenate (the range is taken after the concatenation), and a reloaded model
        must build the same variables."""

        def __init__(self, quantize_output=True):
            self.quantize_output = quantize_output

        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            if not self.quantize_output:
                return []
            return [tfmot.quantization.keras.quantizers.MovingAverageQuantizer(
                num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

        def get_config(self):
            return {"quantize_output": self.quantize_output}

    return OutputQuantizeConfig


def custom_objects() -> dict:
    return {"OutputQuantizeConfig": _output_quantize_config_class()}


def quantize_model(model):
    """The tfmot 8-bit QAT model of a float tf_keras Inception-v3 (same function, fake-quant)."""
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    patch_tfmot()
    qk = tfmot.quantization.keras
    config_cls = _output_quantize_config_class()

    def annotate(layer):
        if isinstance(layer, keras.layers.MaxPooling2D):
            return qk.quantize_annotate_layer(layer, quantize_config=config_cls())
        # every layer, as tfmot's quantize_annotate_model does: the Conv+BN+ReLU folding
        # transforms only match annotated layers (BN has no registry entry of its own)
        return qk.quantize_annotate_layer(layer)

    annotated = keras.models.clone_model(model, clone_function=annotate)
    annotated.set_weights(model.get_weights())
    with qk.quantize_scope(custom_objects()):
        qat = qk.quantize_apply(annotated)
    qat._name = model.name
    return qat


def float_model_file(float_export: str) -> str:
    """The float model file of a train/ export folder (or the .keras file itself)."""
    path = os.path.join(float_export, "model.keras") if os.path.isdir(float_export) \
        else float_export
    if not os.path.isfile(path):
        raise FileNotFoundError(f"float model not found: {path} (run `python -m train` first)")
    return path


def load_float_weights(model, float_export: str):
    """Float weights from a train/ export folder (or a .keras file) into ``model``."""
    from train.safe_load import load_keras_model

    path = float_model_file(float_export)
    src = load_keras_model(path)
    from train.model import inference_model

    target = inference_model(model)
    if len(src.weights) != len(target.weights) or any(
            a.shape != b.shape for a, b in zip(src.weights, target.weights)):
        raise ValueError(f"{path} does not match the QAT preset's model (different architecture)")
    target.set_weights(src.get_weights())
    return model


def _as_trained(var, lo, hi):
    """A weight as the QAT model computed with it: through its 8-bit fake quantizer when it has
    one (tfmot's default weight quantizer: symmetric, narrow range, per channel for convolutions)."""
    if lo is None or hi is None:
        return var.numpy()
    import tensorflow as tf

    if len(lo.shape) and lo.shape[0] > 1:
        q = tf.quantization.fake_quant_with_min_max_vars_per_channel(
            var, lo, hi, num_bits=8, narrow_range=True)
    else:
        q = tf.quantization.fake_quant_with_min_max_vars(
            var, tf.reshape(lo, []), tf.reshape(hi, []), num_bits=8, narrow_range=True)
    return q.numpy()


def float_from_qat(qat_model, config: dict):
    """The float model (train/'s architecture) carrying a QAT model's fine-tuned weights, each
    passed through its fake quantizer (the values the QAT model computed with, on the int8 grid
    it learned). For targets that quantize float weights their own way (Core ML)."""
    from train.config import from_dict
    from train.model import build_inception_v3

    if not config:
        raise ValueError("the QAT model's config.json is needed to rebuild its float architecture")
    cfg = from_dict(config)
    model = build_inception_v3(cfg.model)
    # the same architecture in the same layer order (tfmot clones it): pair the layers in order
    # by class (Keras' automatic names differ by process) and take each float weight from the
    # wrapper's variable of that short name (kernel, bias, beta, moving_mean, ...; the wrapper
    # holds the variables, and its quantizer variables have other names: kernel_min, ...)
    theirs = [layer for layer in qat_model.layers
              if type(layer).__name__ not in ("QuantizeLayer", "InputLayer")]
    ours = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    if [type(a).__name__ for a in ours] != \
            [type(getattr(b, "layer", None) or b).__name__ for b in theirs]:
        raise ValueError("the QAT model's layers do not follow its float architecture")
    for a, b in zip(ours, theirs):
        held = {}
        for v in b.weights:
            held.setdefault(v.name.split("/")[-1].split(":")[0], v)
        values = []
        for w in a.weights:
            attr = w.name.split("/")[-1].split(":")[0]
            v = held.get(attr)
            if v is None or tuple(v.shape) != tuple(w.shape):
                raise ValueError(f"QAT layer {b.name} has no {attr} of shape {tuple(w.shape)}")
            values.append(_as_trained(v, held.get(f"{attr}_min"), held.get(f"{attr}_max")))
        if values:
            a.set_weights(values)
    return model


def qat_transform(float_export: str, freeze_batch_norm: bool = False):
    def transform(model):
        import tf_keras

        from train.model import inference_model

        model = load_float_weights(inference_model(model), float_export)
        if freeze_batch_norm:  # Keras 2: a BN layer that is not trainable runs in inference mode
            for layer in model.layers:
                if isinstance(layer, tf_keras.layers.BatchNormalization):
                    layer.trainable = False
        return quantize_model(model)
    return transform


def qat_config_from_float(float_export: str, settings: str = "finetune",
                          config_file: Optional[str] = None, sets=()) -> ExperimentConfig:
    """The QAT config of a float export: the float run's resolved config (``config.json``
    beside the model: model, data, preprocessing), ``QAT_SETTINGS[settings]`` on top, named
    ``<float name>_qat``, then the user's file and ``--set`` overrides."""
    from train.config import from_dict, qat_config, resolve

    folder = float_export if os.path.isdir(float_export) else os.path.dirname(float_export)
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        raise ValueError(f"{float_export} has no config.json beside it: QAT needs the model and "
                         f"data config the float model was trained with; give --preset (a QAT "
                         f"preset) instead")
    try:
        with open(path, encoding="utf-8") as f:
            base = from_dict(json.load(f))
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a readable run config: {e}") from None
    base = qat_config(base, settings)
    base.quantization.float_checkpoint = float_export
    return resolve(None, config_file, tuple(sets), base=base)


def train_qat(cfg: ExperimentConfig, run_dir: str, float_export: str = None, log=print):
    """Fine-tunes ``cfg`` with QAT from the float export, through train/'s loop."""
    from train.trainer import train

    float_export = float_export or cfg.quantization.float_checkpoint
    if not float_export:
        raise ValueError("QAT needs the float model: set quantization.float_checkpoint "
                         "(a train/ export folder)")
    cfg.quantization.enabled = True
    cfg.quantization.float_checkpoint = float_export

    cfg.quantization.float_sha256 = sha256_file(float_model_file(float_export))
    import tensorflow_model_optimization  # noqa: F401  (registers the QAT layers)

    return train(cfg, run_dir, model_transform=qat_transform(
        float_export, cfg.quantization.freeze_batch_norm), log=log)
