"""Choosing the tf.distribute strategy from a flag or the environment."""
from __future__ import annotations

import json
import os
from typing import Optional

from train import keras_env  # noqa: F401
from train.config import Strategy

import tensorflow as tf


def _tf_config() -> dict:
    try:
        return json.loads(os.environ.get("TF_CONFIG", "") or "{}")
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from None


def resolve_strategy(kind: Strategy, tpu: Optional[str] = None) -> Strategy:
    """``auto``: TPU if one is named, multi-worker if TF_CONFIG lists several workers, mirrored
    if more than one GPU is visible, else the default strategy."""
    kind = Strategy(kind)
    if kind is not Strategy.AUTO:
        return kind
    if tpu or os.environ.get("TPU_NAME"):
        return Strategy.TPU
    cluster = _tf_config().get("cluster", {})
    if sum(len(v) for k, v in cluster.items() if k in ("worker", "chief")) > 1:
        return Strategy.MULTI_WORKER
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return Strategy.MIRRORED
    return Strategy.DEFAULT


def make_strategy(kind: Strategy = Strategy.AUTO, tpu: Optional[str] = None, devices=None):
    kind = resolve_strategy(kind, tpu)
    if kind is Strategy.MIRRORED:
        return tf.distribute.MirroredStrategy(devices)
    if kind is Strategy.MULTI_WORKER:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind is Strategy.TPU:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu or os.environ.get("TPU_NAME", ""))
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    return tf.distribute.get_strategy()


def is_chief(strategy) -> bool:
    """True where this process writes checkpoints, logs and the export."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    has_chief = "chief" in (resolver.cluster_spec().as_dict() or {})
    return task_type in (None, "worker") and task_id == 0 and not has_chief
