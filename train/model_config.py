"""The model's configuration, TensorFlow-free: what a config file or a job plan needs to know
about Inception-v3 without building it (``train/model.py`` builds it)."""
from __future__ import annotations

import dataclasses
import enum


BLOCK_NAMES = tuple(f"mixed{i}" for i in range(11))


class Regime(str, enum.Enum):
    """The receptive-field regimes of the paper's section 9 / Table 2 (the stem's first layers)."""

    #: 299 x 299 receptive field: stride 2 in the first conv, max-pool after the first 3 convs.
    R299 = "r299"
    #: 151 x 151: stride 1 in the first conv, max-pool kept.
    R151 = "r151"
    #: 79 x 79: stride 1 in the first conv, no max-pool after the first layers.
    R79 = "r79"

    @property
    def first_stride(self) -> int:
        return 2 if self is Regime.R299 else 1

    @property
    def first_pool(self) -> bool:
        return self is not Regime.R79

    @property
    def min_input(self) -> int:
        # the smallest input whose 17x17 stage still has a 3x3 grid (Keras' minimum is 75 at r299)
        return {Regime.R299: 75, Regime.R151: 38, Regime.R79: 20}[self]


@dataclasses.dataclass
class ModelConfig:
    num_classes: int = 1000
    input_size: int = 299
    depth_multiplier: float = 1.0
    min_depth: int = 16
    aux_logits: bool = False
    regime: Regime = Regime.R299
    dropout_rate: float = 0.2  # the paper's keep probability 0.8
    sync_batch_norm: bool = False  # cross-replica BN statistics (small per-replica batches)
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3

    def __post_init__(self):
        self.regime = Regime(self.regime)


def check_config(cfg: ModelConfig) -> None:
    if cfg.num_classes < 2:
        raise ValueError(f"num_classes must be >= 2. Received: num_classes={cfg.num_classes}")
    if cfg.input_size < cfg.regime.min_input:
        raise ValueError(
            f"input_size must be >= {cfg.regime.min_input} for regime {cfg.regime.value}. "
            f"Received: input_size={cfg.input_size}")
    if not 0.0 < cfg.depth_multiplier:
        raise ValueError(f"depth_multiplier must be > 0. Received: {cfg.depth_multiplier}")
