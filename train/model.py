"""Inception-v3 (Szegedy et al., CVPR 2016) as a tf_keras functional model.

The builder reads top to bottom like Table 1 of the paper. Shape comments are for the default
299 x 299 input at depth multiplier 1.0.

Where the paper and the public implementations differ we follow Keras' ``InceptionV3`` so that its
ImageNet weight file loads into this model (same layers, same creation order, same weights):

* The 35 x 35 modules (Fig. 5) keep Keras' extra 5 x 5 branch next to the factorised
  double-3 x 3 branch, as Keras and TF-slim do.
* Table 1 lists "5 x Inception" at 17 x 17; Keras / TF-slim have a grid reduction (``mixed3``,
  Fig. 10) followed by four n = 7 modules (``mixed4`` ... ``mixed7``, Fig. 6).
* The 8 x 8 stage is a reduction (``mixed8``) and two expanded-filter-bank modules (``mixed9``,
  ``mixed10``, Fig. 7).

tf_keras (Keras 2 API) is used because tensorflow-model-optimization's QAT only wraps tf_keras
models; ``TF_USE_LEGACY_KERAS=1`` must be set before TensorFlow is imported (``train/__init__``).
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

from train import keras_env  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tf_keras import layers

# the configuration lives without TensorFlow (train/model_config.py), so planning a job or
# reading a config does not load TensorFlow; re-exported here
from train.model_config import BLOCK_NAMES, ModelConfig, Regime, check_config  # noqa: E402,F401


class _Builder:
    """Holds the options and the block counter; ``conv2d_bn`` is Keras' helper."""

    def __init__(self, cfg: ModelConfig):
        self.cfg = cfg
        self.end_points: Dict[str, tf.Tensor] = {}

    def depth(self, filters: int) -> int:
        if self.cfg.depth_multiplier == 1.0:
            return filters
        return max(int(filters * self.cfg.depth_multiplier), self.cfg.min_depth)

    def conv2d_bn(self, x, filters, num_row, num_col, padding="same", strides=(1, 1)):
        x = layers.Conv2D(self.depth(filters), (num_row, num_col), strides=strides,
                          padding=padding, use_bias=False)(x)
        bn = (layers.experimental.SyncBatchNormalization if self.cfg.sync_batch_norm
              else layers.BatchNormalization)
        x = bn(axis=3, scale=False, momentum=self.cfg.bn_momentum,
               epsilon=self.cfg.bn_epsilon)(x)
        return layers.Activation("relu")(x)

    # --- the three module types of the paper --------------------------------------------------
    def module_35(self, x, pool_filters, name):
        """Fig. 5: 5x5 factorised into two 3x3 (plus Keras' 5x5 branch)."""
        b1 = self.conv2d_bn(x, 64, 1, 1)
        b5 = self.conv2d_bn(x, 48, 1, 1)
        b5 = self.conv2d_bn(b5, 64, 5, 5)
        b3 = self.conv2d_bn(x, 64, 1, 1)
        b3 = self.conv2d_bn(b3, 96, 3, 3)
        b3 = self.conv2d_bn(b3, 96, 3, 3)
        bp = layers.AveragePooling2D((3, 3), strides=(1, 1), padding="same")(x)
        bp = self.conv2d_bn(bp, pool_filters, 1, 1)
        return layers.concatenate([b1, b5, b3, bp], axis=3, name=name)

    def module_17(self, x, c7, name):
        """Fig. 6: n x n factorised into 1 x n and n x 1, n = 7."""
        b1 = self.conv2d_bn(x, 192, 1, 1)
        b7 = self.conv2d_bn(x, c7, 1, 1)
        b7 = self.conv2d_bn(b7, c7, 1, 7)
        b7 = self.conv2d_bn(b7, 192, 7, 1)
        bd = self.conv2d_bn(x, c7, 1, 1)
        bd = self.conv2d_bn(bd, c7, 7, 1)
        bd = self.conv2d_bn(bd, c7, 1, 7)
        bd = self.conv2d_bn(bd, c7, 7, 1)
        bd = self.conv2d_bn(bd, 192, 1, 7)
        bp = layers.AveragePooling2D((3, 3), strides=(1, 1), padding="same")(x)
        bp = self.conv2d_bn(bp, 192, 1, 1)
        return layers.concatenate([b1, b7, bd, bp], axis=3, name=name)

    def module_8(self, x, name):
        """Fig. 7: the expanded filter bank (1x3 and 3x1 side by side)."""
        b1 = self.conv2d_bn(x, 320, 1, 1)
        b3 = self.conv2d_bn(x, 384, 1, 1)
        b3_1 = self.conv2d_bn(b3, 384, 1, 3)
        b3_2 = self.conv2d_bn(b3, 384, 3, 1)
        b3 = layers.concatenate([b3_1, b3_2], axis=3, name=f"{name}_0")
        bd = self.conv2d_bn(x, 448, 1, 1)
        bd = self.conv2d_bn(bd, 384, 3, 3)
        bd_1 = self.conv2d_bn(bd, 384, 1, 3)
        bd_2 = self.conv2d_bn(bd, 384, 3, 1)
        bd = layers.concatenate([bd_1, bd_2], axis=3)
        bp = layers.AveragePooling2D((3, 3), strides=(1, 1), padding="same")(x)
        bp = self.conv2d_bn(bp, 192, 1, 1)
        return layers.concatenate([b1, b3, bd, bp], axis=3, name=name)

    def aux_head(self, x):
        """The BN-auxiliary classifier on the 17 x 17 grid (Fig. 8, section 7)."""
        grid = int(x.shape[1])
        pool = min(5, grid)
        a = layers.AveragePooling2D((pool, pool), strides=3, padding="valid",
                                    name="aux_pool")(x)
        a = layers.Conv2D(self.depth(128), 1, use_bias=False, name="aux_conv1")(a)
        a = layers.BatchNormalization(scale=False, momentum=self.cfg.bn_momentum,
                                      epsilon=self.cfg.bn_epsilon, name="aux_bn1")(a)
        a = layers.Activation("relu", name="aux_relu1")(a)
        k = int(a.shape[1])
        a = layers.Conv2D(self.depth(768), k, padding="valid", use_bias=False,
                          name="aux_conv2")(a)
        a = layers.BatchNormalization(scale=False, momentum=self.cfg.bn_momentum,
                                      epsilon=self.cfg.bn_epsilon, name="aux_bn2")(a)
        a = layers.Activation("relu", name="aux_relu2")(a)
        a = layers.Flatten(name="aux_flatten")(a)
        a = layers.Dense(self.cfg.num_classes, name="aux_logits")(a)
        return layers.Activation("softmax", dtype="float32", name="aux_predictions")(a)


def build_inception_v3(cfg: Optional[ModelConfig] = None, training_heads: bool = False,
                       **overrides):
    """Builds Inception-v3.

    Returns the inference model (one softmax output named ``predictions``). With
    ``training_heads=True`` and ``cfg.aux_logits``, returns a model with two outputs
    ``[predictions, aux_predictions]`` sharing all weights; ``inference_model()`` strips it.
    The block outputs are ``model.end_points`` (``mixed0`` ... ``mixed10``).
    """
    cfg = dataclasses.replace(cfg or ModelConfig(), **overrides)
    check_config(cfg)
    b = _Builder(cfg)
    size = cfg.input_size
    inputs = layers.Input((size, size, 3), name="image")

    # Table 1 stem. 299 x 299 x 3
    s = cfg.regime.first_stride
    x = b.conv2d_bn(inputs, 32, 3, 3, strides=(s, s), padding="valid")  # 149 x 149 x 32
    x = b.conv2d_bn(x, 32, 3, 3, padding="valid")                       # 147 x 147 x 32
    x = b.conv2d_bn(x, 64, 3, 3)                                        # 147 x 147 x 64
    if cfg.regime.first_pool:
        x = layers.MaxPooling2D((3, 3), strides=(2, 2))(x)              # 73 x 73 x 64
    x = b.conv2d_bn(x, 80, 1, 1, padding="valid")                       # 73 x 73 x 80
    x = b.conv2d_bn(x, 192, 3, 3, padding="valid")                      # 71 x 71 x 192
    x = layers.MaxPooling2D((3, 3), strides=(2, 2))(x)                  # 35 x 35 x 192

    # 3 x Inception (Fig. 5) -> 35 x 35 x 256 / 288 / 288
    x = b.module_35(x, 32, "mixed0")
    b.end_points["mixed0"] = x
    x = b.module_35(x, 64, "mixed1")
    b.end_points["mixed1"] = x
    x = b.module_35(x, 64, "mixed2")
    b.end_points["mixed2"] = x

    # mixed 3: grid reduction (Fig. 10) -> 17 x 17 x 768
    r3 = b.conv2d_bn(x, 384, 3, 3, strides=(2, 2), padding="valid")
    rd = b.conv2d_bn(x, 64, 1, 1)
    rd = b.conv2d_bn(rd, 96, 3, 3)
    rd = b.conv2d_bn(rd, 96, 3, 3, strides=(2, 2), padding="valid")
    rp = layers.MaxPooling2D((3, 3), strides=(2, 2))(x)
    x = layers.concatenate([r3, rd, rp], axis=3, name="mixed3")
    b.end_points["mixed3"] = x

    # 4 x Inception (Fig. 6, n = 7) -> 17 x 17 x 768
    for i, c7 in zip(range(4, 8), (128, 160, 160, 192)):
        x = b.module_17(x, c7, f"mixed{i}")
        b.end_points[f"mixed{i}"] = x
    aux_input = x

    # mixed 8: grid reduction (Fig. 10) -> 8 x 8 x 1280
    r3 = b.conv2d_bn(x, 192, 1, 1)
    r3 = b.conv2d_bn(r3, 320, 3, 3, strides=(2, 2), padding="valid")
    r7 = b.conv2d_bn(x, 192, 1, 1)
    r7 = b.conv2d_bn(r7, 192, 1, 7)
    r7 = b.conv2d_bn(r7, 192, 7, 1)
    r7 = b.conv2d_bn(r7, 192, 3, 3, strides=(2, 2), padding="valid")
    rp = layers.MaxPooling2D((3, 3), strides=(2, 2))(x)
    x = layers.concatenate([r3, r7, rp], axis=3, name="mixed8")
    b.end_points["mixed8"] = x

    # 2 x Inception (Fig. 7) -> 8 x 8 x 2048
    for i in (9, 10):
        x = b.module_8(x, f"mixed{i}")
        b.end_points[f"mixed{i}"] = x

    # pool, dropout, classifier (Table 1: pool 8x8, linear, softmax)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(cfg.dropout_rate, name="dropout")(x)
    x = layers.Dense(cfg.num_classes, name="logits")(x)
    out = layers.Activation("softmax", dtype="float32", name="predictions")(x)

    outputs = [out]
    if training_heads and cfg.aux_logits:
        outputs.append(b.aux_head(aux_input))
    model = keras.Model(inputs, outputs if len(outputs) > 1 else out, name="inception_v3")
    model.end_points = b.end_points
    model.inception_config = cfg
    return model


def inference_model(model):
    """The single-output (``predictions``) model that shares ``model``'s weights."""
    if len(model.outputs) == 1:
        return model
    inf = keras.Model(model.inputs, model.outputs[0], name=model.name)
    inf.end_points = getattr(model, "end_points", {})
    inf.inception_config = getattr(model, "inception_config", None)
    return inf


def computes_in(model) -> set:
    """The compute dtypes of ``model``'s layers (``{"float32"}`` for a float32 model;
    ``float16``/``bfloat16`` among them when it was built under a mixed-precision policy)."""
    return {str(getattr(l, "compute_dtype", None) or "float32") for l in model.layers}


def is_quantization_aware(model) -> bool:
    """True for a tfmot QAT model (its layers are QuantizeWrapper / QuantizeLayer)."""
    return any(type(l).__name__ in ("QuantizeWrapperV2", "QuantizeWrapper", "QuantizeLayer")
               for l in model.layers)


def layer_blocks(model) -> Dict[str, str]:
    """{layer name: block}: ``stem`` up to the tensor that feeds ``mixed0``, ``mixedK`` for the
    layers of module K (its branches and its concatenation), ``head`` after ``mixed10``. Lets a
    quantization error measured on a tensor be traced to a block. QAT wrappers map too."""
    model = inference_model(model)
    unwrap = lambda l: getattr(l, "layer", l)  # noqa: E731
    # mixed0's pool branch reads the stem's output directly
    first_pool = next(l for l in model.layers
                      if isinstance(unwrap(l), layers.AveragePooling2D))
    stem_end = first_pool.inbound_nodes[0].inbound_layers
    stem_end = getattr(stem_end, "name", None) or stem_end[0].name
    out: Dict[str, str] = {}
    block, k = "stem", 0
    for layer in model.layers:
        name = unwrap(layer).name
        out[layer.name] = out[name] = block if block == "stem" else (
            f"mixed{k}" if k <= 10 else "head")
        if block == "stem":
            if layer.name == stem_end:
                block = "modules"
        elif name == f"mixed{k}":
            k += 1
    return out


def count_multiply_adds(model) -> int:
    """Multiply-adds of one forward pass, counted from the layers (conv and dense)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            _, h, w, cout = layer.output_shape
            kh, kw = layer.kernel_size
            cin = layer.input_shape[-1]
            total += h * w * cout * kh * kw * cin // (layer.groups or 1)
        elif isinstance(layer, layers.Dense):
            total += int(layer.input_shape[-1]) * layer.units
    return int(total)


def load_keras_weights(model, path: str) -> List[str]:
    """Loads Keras' InceptionV3 ImageNet weight file (legacy HDF5, by layer order) from a path;
    returns the names of the layers left as initialised.

    Accepts the full file (``inception_v3_weights_tf_dim_ordering_tf_kernels.h5``, 1000 classes)
    and the ``_notop`` file (every layer but the classifier). A model with another number of
    classes (a fine-tune) takes every layer but the classifier from either: its new head starts
    from its initialisation. Nothing is downloaded.
    """
    import os

    if not os.path.isfile(path):
        raise FileNotFoundError(f"Keras weight file not found: {path}")
    cfg = getattr(model, "inception_config", None)
    if cfg is not None and cfg.depth_multiplier != 1.0:
        raise ValueError("Keras' InceptionV3 weights need depth_multiplier=1.0. "
                         f"Received: depth_multiplier={cfg.depth_multiplier}")
    import h5py

    model = inference_model(model)
    weighted = [l for l in model.layers if l.weights]
    with h5py.File(path, "r") as f:
        group = f["model_weights"] if "model_weights" in f else f
        names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["layer_names"]]
        arrays = []
        for n in names:
            wn = [w.decode() if isinstance(w, bytes) else w
                  for w in group[n].attrs.get("weight_names", [])]
            if wn:
                arrays.append([np.asarray(group[n][w]) for w in wn])
    if len(arrays) not in (len(weighted), len(weighted) - 1):
        raise ValueError(f"{path} holds {len(arrays)} weighted layers; this model has "
                         f"{len(weighted)} (is it Keras' InceptionV3 weight file?)")
    fresh = [l.name for l in weighted[len(arrays):]]  # the _notop file: the classifier
    for layer, values in zip(weighted, arrays):
        shapes = [tuple(w.shape) for w in layer.weights]
        if shapes != [v.shape for v in values]:
            if layer is weighted[-1]:  # another number of classes: a new head
                fresh.append(layer.name)
                continue
            raise ValueError(f"{path}: layer {layer.name} has weights {shapes} but the file's "
                             f"{len(fresh) + weighted.index(layer)}th weighted layer has "
                             f"{[v.shape for v in values]}")
        layer.set_weights(values)
    return fresh
