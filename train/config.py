"""Typed experiment configs, named presets, and layered overrides.

Order of precedence (each layer overrides the one before): the preset -> a JSON/YAML file
(``--config``) -> ``--set section.key=value`` on the command line. The resolved config is saved as
``config.json`` in the run folder and next to the export.
"""
from __future__ import annotations

import dataclasses
import enum
import json
import os
from typing import Any, Callable, Dict, Optional, Tuple

from train.data import DataConfig, Source
from train.model_config import ModelConfig, Regime


class Optimizer(str, enum.Enum):
    RMSPROP = "rmsprop"  # the paper's: decay 0.9, momentum 0.9, epsilon 1.0
    SGD = "sgd"
    ADAM = "adam"


class Strategy(str, enum.Enum):
    AUTO = "auto"  # tpu if asked for, multi_worker if TF_CONFIG has workers, mirrored if >1 GPU
    DEFAULT = "default"
    MIRRORED = "mirrored"
    MULTI_WORKER = "multi_worker"
    TPU = "tpu"


class Schedule(str, enum.Enum):
    EXPONENTIAL = "exponential"  # the paper's: x decay_rate every decay_epochs
    COSINE = "cosine"


class WeightDecayMode(str, enum.Enum):
    L2 = "l2"  # slim's: weight_decay * l2_loss(kernel) added to the loss
    DECOUPLED = "decoupled"  # the optimizer's AdamW-style decay


class Precision(str, enum.Enum):
    FLOAT32 = "float32"
    MIXED_FLOAT16 = "mixed_float16"  # GPUs
    MIXED_BFLOAT16 = "mixed_bfloat16"  # TPUs, recent GPUs/CPUs


@dataclasses.dataclass
class OptimConfig:
    optimizer: Optimizer = Optimizer.RMSPROP
    base_learning_rate: float = 0.045
    base_batch_size: int = 32  # lr = base_learning_rate * global_batch / base_batch_size
    decay_rate: float = 0.94
    decay_epochs: float = 2.0
    warmup_epochs: float = 0.0
    # when the rate is scaled above the paper's (batch > base_batch_size) and warmup_epochs is 0,
    # warm up linearly anyway (Goyal et al. 2017): min(5 epochs, 5 % of the run)
    auto_warmup: bool = True
    schedule: Schedule = Schedule.EXPONENTIAL
    rmsprop_rho: float = 0.9
    momentum: float = 0.9
    epsilon: float = 1.0
    clip_norm: Optional[float] = 2.0  # gradient clipping (global norm)
    label_smoothing: float = 0.1
    aux_loss_weight: float = 0.4
    # on conv/dense kernels only. "l2": slim's Inception recipe, weight_decay * l2_loss(kernel)
    # (sum of squares / 2) added to the loss, so it passes through RMSProp's scaling;
    # "decoupled": the optimizer shrinks the kernels by lr * weight_decay each step (AdamW-style:
    # a different regulariser, tune it apart)
    weight_decay: float = 4e-5
    weight_decay_mode: WeightDecayMode = WeightDecayMode.DECOUPLED  # what earlier configs meant
    # the weight average evaluated and exported (slim's warm-up decay min(d, (1+n)/(10+n)); the
    # batch-norm statistics re-estimated for it after training: train/trainer.averaged); None: off
    ema_momentum: Optional[float] = 0.9999
    # fine-tuning from pretrained weights: the backbone (every layer but the new classifier)
    # is frozen for this many epochs while the head learns, then trains at
    # backbone_lr_multiplier times the rate (gradients scaled; 1.0 and 0: off)
    backbone_freeze_epochs: float = 0.0
    backbone_lr_multiplier: float = 1.0

    def __post_init__(self):
        self.optimizer = Optimizer(self.optimizer)
        self.schedule = _choice(Schedule, self.schedule, "optim.schedule")
        self.weight_decay_mode = _choice(WeightDecayMode, self.weight_decay_mode,
                                         "optim.weight_decay_mode")

    def warmup(self, global_batch: int, epochs: int) -> float:
        """The warm-up in epochs this run uses (``auto_warmup``, see above)."""
        if self.warmup_epochs or not self.auto_warmup or global_batch <= self.base_batch_size:
            return float(self.warmup_epochs)
        return min(5.0, 0.05 * epochs)


def _choice(kind, value, key: str):
    """``value`` as the enum ``kind``; ValueError naming the key and the choices."""
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{key} must be one of {[m.value for m in kind]}. Received: "
                         f"{value!r}") from None


@dataclasses.dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 32  # global batch (all replicas)
    steps_per_checkpoint: int = 1000
    log_every_steps: int = 100
    seed: int = 0
    strategy: Strategy = Strategy.AUTO
    tpu: Optional[str] = None  # TPU name/address for TPUStrategy
    precision: Precision = Precision.FLOAT32
    xla: bool = False
    weights: Optional[str] = None  # a local Keras InceptionV3 .h5 to start from
    eval_batch_size: int = 256

    def __post_init__(self):
        self.strategy = Strategy(self.strategy)
        self.precision = Precision(self.precision)


@dataclasses.dataclass
class QuantizationConfig:
    """Present when the run is quantization-aware training (quantize/)."""

    enabled: bool = False
    float_checkpoint: Optional[str] = None  # the float run folder (or its export) to start from
    # sha256 of the float model file, filled in by quantize/: a finished QAT run is reused only
    # when it was fine-tuned from this very float model
    float_sha256: Optional[str] = None
    # run batch normalization in inference mode (moving statistics and gamma/beta frozen) during
    # the QAT fine-tune, so the quantizers learn ranges for the statistics the exported model uses
    freeze_batch_norm: bool = False


@dataclasses.dataclass
class ExperimentConfig:
    name: str = "custom"
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    quantization: QuantizationConfig = dataclasses.field(default_factory=QuantizationConfig)

    def to_dict(self) -> Dict[str, Any]:
        def conv(v):
            if isinstance(v, enum.Enum):
                return v.value
            if isinstance(v, tuple):
                return list(v)
            return v

        return {sec: {k: conv(v) for k, v in dataclasses.asdict(getattr(self, sec)).items()}
                if dataclasses.is_dataclass(getattr(self, sec)) else getattr(self, sec)
                for sec in [f.name for f in dataclasses.fields(self)]}

    def save(self, directory: str) -> str:
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, "config.json")
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2)
            f.write("\n")
        return path


# --------------------------------------------------------------------------------------------
# presets
# --------------------------------------------------------------------------------------------
PRESETS: Dict[str, Callable[[], ExperimentConfig]] = {}


def preset(fn):
    PRESETS[fn.__name__] = fn
    return fn


@preset
def inception_v3_imagenet() -> ExperimentConfig:
    """The paper's ImageNet recipe: 299 px, BN-auxiliary, RMSProp, label smoothing, EMA."""
    return ExperimentConfig(
        name="inception_v3_imagenet",
        # slim's batch-norm decay (0.9997: statistics over ~3,000 steps of a 100-epoch run;
        # Keras' 0.99 follows only the last ~100 steps)
        model=ModelConfig(num_classes=1000, input_size=299, aux_logits=True, bn_momentum=0.9997),
        data=DataConfig(source=Source.IMAGENET, area_range=(0.05, 1.0), color_distortion="fast"),
        # slim's decay (4e-5 as an L2 loss term); batch 256 scales the rate 8x, so a warm-up
        # (auto_warmup: 5 epochs) precedes the paper's exponential decay
        optim=OptimConfig(weight_decay_mode="l2"),
        train=TrainConfig(epochs=100, batch_size=32 * 8, steps_per_checkpoint=2000))


def _low_resolution(size: int, regime: Regime) -> ExperimentConfig:
    cfg = inception_v3_imagenet()
    cfg.name = f"inception_v3_imagenet_{regime.value}"
    cfg.model = dataclasses.replace(cfg.model, input_size=size, regime=regime)
    return cfg


@preset
def inception_v3_imagenet_r151() -> ExperimentConfig:
    """The paper's section 9 (Table 2): a 151 x 151 receptive field at 151 px - stride 1 in the
    first convolution, the first max-pool kept - at about the cost of the 299 px network."""
    return _low_resolution(151, Regime.R151)


@preset
def inception_v3_imagenet_r79() -> ExperimentConfig:
    """Section 9's 79 x 79 regime at 79 px: stride 1 in the first convolution and no max-pool
    after the first layers (the paper: 75.2 % top-1, against 76.6 % at 151 and 78.0 % at 299)."""
    return _low_resolution(79, Regime.R79)


@preset
def inception_v3_finetune() -> ExperimentConfig:
    """Fine-tuning Keras' ImageNet Inception-v3 (``train.weights``: the local
    ``inception_v3_weights_tf_dim_ordering_tf_kernels[_notop].h5``) on your images: a new
    classifier, the backbone frozen for the first 2 epochs while it learns, then everything at
    a tenth of the rate; 299 px, slim's augmentation, 10 epochs of cosine decay, the weight
    average on. Set ``data.path`` and ``model.num_classes`` (and ``train.weights``)."""
    return ExperimentConfig(
        name="inception_v3_finetune",
        model=ModelConfig(num_classes=2, input_size=299, aux_logits=False, dropout_rate=0.2),
        data=DataConfig(source=Source.IMAGE_FOLDER, area_range=(0.25, 1.0),
                        color_distortion="fast"),
        optim=OptimConfig(optimizer=Optimizer.SGD, base_learning_rate=0.01, base_batch_size=32,
                          momentum=0.9, schedule="cosine", warmup_epochs=0.0, auto_warmup=False,
                          clip_norm=2.0, label_smoothing=0.1, weight_decay=4e-5,
                          weight_decay_mode="l2", ema_momentum=0.999,
                          backbone_freeze_epochs=2.0, backbone_lr_multiplier=0.1),
        train=TrainConfig(epochs=10, batch_size=32, steps_per_checkpoint=500))


@preset
def inception_v3_fashion_mnist_demo() -> ExperimentConfig:
    """Fashion-MNIST in minutes on 2 CPU cores: 75 px, depth x0.25, 3 epochs, Adam."""
    return ExperimentConfig(
        name="inception_v3_fashion_mnist_demo",
        model=ModelConfig(num_classes=10, input_size=75, depth_multiplier=0.25, min_depth=8,
                          aux_logits=False, dropout_rate=0.2),
        # 28-px images are already tight crops: evaluate on the whole image
        data=DataConfig(source=Source.FASHION_MNIST, area_range=(0.75, 1.0),
                        aspect_range=(0.8, 1.25), flip=True, crop_fraction=1.0),
        # Adam: the deep, narrow x0.25 network learns far faster with it than with the paper's
        # RMSProp in a 2-epoch budget (100-step probe: 47 % vs 11 % training accuracy)
        optim=OptimConfig(optimizer=Optimizer.ADAM, base_learning_rate=0.002,
                          base_batch_size=128, epsilon=1e-7, schedule="cosine",
                          warmup_epochs=0.1, clip_norm=2.0, label_smoothing=0.1,
                          weight_decay=1e-5, ema_momentum=0.99),
        train=TrainConfig(epochs=3, batch_size=128, steps_per_checkpoint=100,
                          log_every_steps=50))


@preset
def tiny_test() -> ExperimentConfig:
    """Seconds-long runs for the test suite: 75 px, depth x0.1, a few hundred images."""
    return ExperimentConfig(
        name="tiny_test",
        model=ModelConfig(num_classes=10, input_size=75, depth_multiplier=0.1, min_depth=4,
                          aux_logits=True, dropout_rate=0.0),
        data=DataConfig(source=Source.FASHION_MNIST, max_train_examples=256,
                        max_eval_examples=128, area_range=(0.65, 1.0), crop_fraction=1.0),
        optim=OptimConfig(base_learning_rate=0.01, base_batch_size=32, epsilon=1e-3,
                          schedule="exponential", ema_momentum=None, weight_decay=0.0),
        train=TrainConfig(epochs=2, batch_size=32, steps_per_checkpoint=4, log_every_steps=4))


# --------------------------------------------------------------------------------------------
# QAT presets, derived from the float ones (as Model Garden derives its _qat experiments)
# --------------------------------------------------------------------------------------------
# QAT fine-tune settings as data, applied on top of a float config (its model and data, any
# preset, any dataset): quantize/ trains with them
QAT_SETTINGS: Dict[str, Dict[str, Any]] = {
    # a short fine-tune: one epoch at a low rate, batch norm frozen (on the demo, BN training
    # cost 1.1 points, frozen gained 0.13), no EMA (it would lag the quantizer ranges)
    "finetune": {"model.aux_logits": False, "quantization.freeze_batch_norm": True,
                 "optim.base_learning_rate": 1e-4, "optim.warmup_epochs": 0.0,
                 "optim.ema_momentum": None, "train.epochs": 1, "train.weights": None,
                 # tfmot's quantizers run in float32 (a mixed-precision float run exports float32)
                 "train.precision": "float32"},
}
# <float preset>_qat = the float preset + QAT_SETTINGS[settings] + its own measured overrides
QAT_PRESETS: Dict[str, Tuple[str, str, Dict[str, Any]]] = {
    # measured on the demo (float 88.97 %): 20k images with BN training 87.85 %, 20k with BN
    # frozen 88.75 %, 60k with BN frozen 89.10 % (the QAT Keras model, 10,000 test images);
    # from a float model at 88.73 %: 30k with BN frozen 88.82 % in 135 s (60k: 222 s), which
    # keeps the main job within 15 minutes on 2 cores
    "inception_v3_fashion_mnist_demo_qat": (
        "inception_v3_fashion_mnist_demo", "finetune",
        {"data.max_train_examples": 30000, "quantization.float_checkpoint": "runs/demo/export"}),
    "tiny_test_qat": ("tiny_test", "finetune", {}),
}


def qat_config(base: ExperimentConfig, settings: str = "finetune",
               extra: Optional[Dict[str, Any]] = None) -> ExperimentConfig:
    """``base`` made a QAT fine-tune: ``QAT_SETTINGS[settings]``, then ``extra``, named
    ``<name>_qat``, ``quantization.enabled``."""
    if settings not in QAT_SETTINGS:
        raise ValueError(f"unknown QAT settings {settings!r}; choose from {sorted(QAT_SETTINGS)}")
    cfg = apply_overrides(base, {**QAT_SETTINGS[settings], **(extra or {})})
    cfg.name = cfg.name if cfg.name.endswith("_qat") else cfg.name + "_qat"
    cfg.quantization.enabled = True
    return cfg


def _derived(name: str, float_name: str, settings: str, extra: Dict[str, Any]):
    def make() -> ExperimentConfig:
        return qat_config(PRESETS[float_name](), settings, extra)
    make.__name__ = name
    make.__doc__ = (f"QAT fine-tune of {float_name} ({settings}"
                    + (", " + ", ".join(f"{k}={v}" for k, v in extra.items()) if extra else "")
                    + "): quantize/ trains it")
    return make


for _name, (_float, _settings, _extra) in QAT_PRESETS.items():
    PRESETS[_name] = _derived(_name, _float, _settings, _extra)


# --------------------------------------------------------------------------------------------
# overrides
# --------------------------------------------------------------------------------------------
def coerce(current: Any, field_type: Any, text: Any):
    """A ``--set`` value (text) as the field's type: the one rule for train/'s configs and the
    main job's (pipeline/job.py). ``current`` is the field's present value, ``field_type`` its
    annotation (a string under ``from __future__ import annotations``)."""
    if not isinstance(text, str):
        return text
    t = str(field_type)
    if text.lower() in ("none", "null"):
        return None
    if isinstance(current, bool) or field_type is bool or t in ("bool", "Optional[bool]"):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean. Received: {text!r}")
    if isinstance(current, enum.Enum):
        try:
            return type(current)(text)
        except ValueError:
            valid = [e.value for e in type(current)]
            raise ValueError(f"must be one of {valid}: expected one of {', '.join(valid)}. "
                             f"Received: {text!r}") from None
    if isinstance(current, tuple):
        return tuple(float(v) for v in text.split(","))
    if isinstance(current, list) or t.startswith(("List", "list")):
        if text.strip().startswith("["):  # a YAML/JSON list: items may hold commas
            import yaml

            items = yaml.safe_load(text)
            if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
                raise ValueError(f"expected a list of strings. Received: {text!r}")
            return [v.strip() for v in items]
        return [v.strip() for v in text.split(",") if v.strip()]
    if isinstance(current, int) or (current is None and "int" in t):
        return int(text)
    if isinstance(current, float) or (current is None and "float" in t):
        return float(text)
    return text


def parse_sets(sets, form: str = "key=value") -> Dict[str, str]:
    """``["key=value", ...]`` (``--set``) -> ``{key: value}``, later ones winning."""
    out: Dict[str, str] = {}
    for s in sets:
        if "=" not in s:
            raise ValueError(f"--set expects {form}. Received: {s!r}")
        k, v = s.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def apply_overrides(cfg: ExperimentConfig, overrides: Dict[str, Any]) -> ExperimentConfig:
    """``{"optim.base_learning_rate": "0.01", "model": {...}}`` -> a new config."""
    flat: Dict[str, Any] = {}
    for k, v in overrides.items():
        if isinstance(v, dict):
            for k2, v2 in v.items():
                flat[f"{k}.{k2}"] = v2
        else:
            flat[k] = v
    cfg = dataclasses.replace(cfg)
    for key, value in flat.items():
        if key == "name":
            cfg.name = value
            continue
        section, _, field = key.partition(".")
        if section not in {f.name for f in dataclasses.fields(cfg)} or not field:
            raise ValueError(f"unknown config key {key!r}; sections: model, data, optim, train, "
                             "quantization (e.g. optim.base_learning_rate=0.01)")
        sub = dataclasses.replace(getattr(cfg, section))
        fields = {f.name: f for f in dataclasses.fields(sub)}
        if field not in fields:
            raise ValueError(f"unknown config key {key!r}; {section} has: {', '.join(fields)}")
        try:
            setattr(sub, field, coerce(getattr(sub, field), fields[field].type, value))
        except ValueError as e:
            raise ValueError(f"{key} {e}") from None
        sub.__post_init__() if hasattr(sub, "__post_init__") else None
        setattr(cfg, section, sub)
    return cfg


def load_file(path: str) -> Dict[str, Any]:
    with open(path) as f:
        text = f.read()
    if path.endswith((".yaml", ".yml")):
        import yaml

        return yaml.safe_load(text) or {}
    return json.loads(text)


def resolve(preset_name: Optional[str], config_file: Optional[str] = None,
            sets: Tuple[str, ...] = (), base: Optional[ExperimentConfig] = None
            ) -> ExperimentConfig:
    """preset (or ``base``, a config already made) -> ``config_file`` -> ``--set`` overrides."""
    if base is not None:
        cfg = base
    elif preset_name is None:
        cfg = ExperimentConfig()
    elif preset_name not in PRESETS:
        raise ValueError(f"unknown preset {preset_name!r}; presets: {', '.join(PRESETS)}")
    else:
        cfg = PRESETS[preset_name]()
    if config_file:
        cfg = apply_overrides(cfg, load_file(config_file))
    return apply_overrides(cfg, parse_sets(sets, "section.key=value"))


def from_dict(d: Dict[str, Any]) -> ExperimentConfig:
    """The inverse of ``to_dict`` (reads a saved ``config.json``)."""
    cfg = ExperimentConfig()
    return apply_overrides(cfg, d)
