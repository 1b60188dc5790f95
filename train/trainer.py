"""The trainer: one loop (Keras ``fit``) for one CPU, many GPUs, many workers or a TPU.

Run folder layout::

    RUN/config.json       the resolved config
    RUN/backup/           the latest training state (every N steps and each epoch end): a run
                          started again in RUN resumes from it, also after SIGKILL
    RUN/logs/             TensorBoard
    RUN/metrics.json      final evaluation (EMA weights), wall time, images/s
    RUN/export/           model.keras, saved_model/, labels.txt, preprocessing.json, config.json

QAT (quantize/) reuses this loop through ``model_transform``: the float recipe stays the single
source of truth.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from typing import Callable, Optional

from train import keras_env  # noqa: F401
from train.config import ExperimentConfig, Optimizer, Precision
from train.data import Dataset
from train.distribute import is_chief, make_strategy, resolve_strategy
from contract.preprocessing import PreprocessingSpec

import tensorflow as tf
import tf_keras as keras


def preprocessing_spec(cfg: ExperimentConfig, source_channels: int) -> PreprocessingSpec:
    return PreprocessingSpec(input_size=[cfg.model.input_size] * 2, source_channels=source_channels,
                             crop_fraction=cfg.data.crop_fraction)


class LearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then the paper's staircase exponential decay or a cosine decay."""

    def __init__(self, peak, steps_per_epoch, total_steps, warmup_epochs=0.0, kind="exponential",
                 decay_rate=0.94, decay_epochs=2.0):
        self.peak, self.kind = float(peak), kind
        self.warmup = float(max(warmup_epochs * steps_per_epoch, 0))
        self.decay_steps = float(max(decay_epochs * steps_per_epoch, 1))
        self.total = float(max(total_steps, 1))
        self.decay_rate = float(decay_rate)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        if self.kind == "cosine":
            frac = tf.clip_by_value((step - self.warmup) / max(self.total - self.warmup, 1.0), 0, 1)
            lr = 0.5 * self.peak * (1.0 + tf.cos(math.pi * frac))
        else:
            lr = self.peak * tf.pow(self.decay_rate,
                                    tf.floor(tf.maximum(step - self.warmup, 0) / self.decay_steps))
        if self.warmup > 0:
            lr = tf.where(step < self.warmup, self.peak * (step + 1) / self.warmup, lr)
        return lr

    def get_config(self):
        return dict(peak=self.peak, kind=self.kind)


def ema_decay(momentum: float, step):
    """slim's weight-average decay at ``step`` (updates so far): ``min(momentum, (1 + n) /
    (10 + n))``, so the average forgets its random start within the first few percent of a run
    instead of holding it for ~1 / (1 - momentum) steps (0.9999: 10,000)."""
    n = tf.cast(step, tf.float32)
    return tf.minimum(tf.constant(momentum, tf.float32), (1.0 + n) / (10.0 + n))


_AVERAGED: dict = {}


def averaged(cls):
    """``cls`` (a tf_keras optimizer) with slim's weight average: the warm-up decay
    (``ema_decay``) instead of a fixed one, so the average forgets its random start. The
    averages are optimizer variables: the run's backup saves and restores them. ``fit`` writes
    them into the model at its end (``finalize_variable_values``); the batch-norm statistics
    are then re-estimated for the averaged weights (``reestimate_batch_norm``): the moving
    statistics were gathered on the raw weights' activations, and averaging them as slim does
    cost 9-10 points on the demo's 250-step run (docs/measurements.md). Also, for fine-tuning:
    the backbone's gradients scaled (0 while frozen)."""
    if cls in _AVERAGED:
        return _AVERAGED[cls]

    class Averaged(cls):
        def __init__(self, *args, backbone=(), freeze_steps=0, backbone_multiplier=1.0,
                     **kwargs):
            super().__init__(*args, **kwargs)
            # fine-tuning: the backbone's gradients are 0 for ``freeze_steps``, then scaled
            self._backbone = {id(v) for v in backbone}
            self._freeze_steps, self._multiplier = int(freeze_steps), float(backbone_multiplier)

        def apply_gradients(self, grads_and_vars, *args, **kwargs):
            if self._backbone and (self._freeze_steps or self._multiplier != 1.0):
                factor = tf.where(self.iterations < self._freeze_steps, 0.0, self._multiplier)
                grads_and_vars = [(g * tf.cast(factor, g.dtype)
                                   if g is not None and id(v) in self._backbone else g, v)
                                  for g, v in grads_and_vars]
            return super().apply_gradients(grads_and_vars, *args, **kwargs)

        def _update_model_variables_moving_average(self, var_list):
            if not self.use_ema:
                return
            d = ema_decay(self.ema_momentum, self.iterations)

            def update(average, value):
                average.assign(d * average + (1.0 - d) * tf.cast(value, average.dtype))

            for var in var_list:
                average = self._model_variables_moving_average[
                    self._index_dict[self._var_key(var)]]
                self._distribution_strategy.extended.update(average, update, args=(var,),
                                                            group=False)

    Averaged.__name__ = cls.__name__  # the saved optimizer config names the base class
    _AVERAGED[cls] = Averaged
    return Averaged


def backbone_weights(model) -> list:
    """Every trainable weight but the classifiers' (the Dense layers: the head a fine-tune
    replaces, and the auxiliary head's)."""
    head = {id(w) for l in model.layers if isinstance(l, keras.layers.Dense)
            for w in l.trainable_weights}
    return [w for w in model.trainable_weights if id(w) not in head]


def reestimate_batch_norm(model, batches) -> int:
    """The batch-norm moving statistics of ``model``'s current weights, re-estimated as the
    cumulative mean over ``batches`` (training images, as augmented in training): batch k
    updates with momentum k / (k + 1), so every batch counts equally. Returns the batches used."""
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    saved = [l.momentum for l in bns]
    n = 0
    try:
        for k, (x, _) in enumerate(batches):
            for l in bns:
                l.momentum = k / (k + 1.0)
            model(x, training=True)  # eager: each call reads the momentum it is given
            n = k + 1
    finally:
        for l, m in zip(bns, saved):
            l.momentum = m
    return n


def make_optimizer(cfg: ExperimentConfig, steps_per_epoch: int, model=None):
    o = cfg.optim
    peak = o.base_learning_rate * cfg.train.batch_size / o.base_batch_size
    lr = LearningRate(peak, steps_per_epoch, steps_per_epoch * cfg.train.epochs,
                      o.warmup(cfg.train.batch_size, cfg.train.epochs), o.schedule.value,
                      o.decay_rate, o.decay_epochs)
    decoupled = o.weight_decay if o.weight_decay_mode == "decoupled" else 0.0
    common = dict(global_clipnorm=o.clip_norm, weight_decay=decoupled or None,
                  use_ema=o.ema_momentum is not None, ema_momentum=o.ema_momentum or 0.99,
                  backbone=backbone_weights(model) if model is not None else (),
                  freeze_steps=round(o.backbone_freeze_epochs * steps_per_epoch),
                  backbone_multiplier=o.backbone_lr_multiplier)
    if o.optimizer is Optimizer.RMSPROP:
        opt = averaged(keras.optimizers.RMSprop)(lr, rho=o.rmsprop_rho, momentum=o.momentum,
                                                 epsilon=o.epsilon, **common)
    elif o.optimizer is Optimizer.SGD:
        opt = averaged(keras.optimizers.SGD)(lr, momentum=o.momentum, nesterov=True, **common)
    else:
        opt = averaged(keras.optimizers.Adam)(lr, epsilon=o.epsilon, **common)
    if decoupled:  # decoupled decay on kernels only
        opt.exclude_from_weight_decay(var_names=["batch_normalization", "bias", "beta", "gamma",
                                                 "moving_"])
    return opt


class _Backup(keras.callbacks.BackupAndRestore):
    """Backs up every ``save_freq`` steps *and* at each epoch end, and keeps the backup."""

    def on_epoch_end(self, epoch, logs=None):
        self._batches_count = 0
        self._backup(epoch=epoch)


class _Progress(keras.callbacks.Callback):
    """Console progress every ``every`` steps.

    ``_supports_tf_logs``: Keras otherwise converts the logs to numpy after *every* batch for a
    callback with batch hooks, which syncs host and device each step and cost 46 % of the demo's
    throughput here (466 -> 250 img/s); the logs are read only on the steps that print.
    """

    def __init__(self, every, batch_size, total_steps, log=print):
        super().__init__()
        self._supports_tf_logs = True
        self.every, self.batch_size, self.total, self.log = every, batch_size, total_steps, log
        self.t0 = self.tlast = None
        self.steps = 0

    def on_train_begin(self, logs=None):
        self.t0 = self.tlast = time.time()
        self.start_step = int(self.model.optimizer.iterations.numpy())
        self.log(f"[train] starting at step {self.start_step}/{self.total}", flush=True)

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.steps % self.every == 0:
            now = time.time()
            it = int(self.model.optimizer.iterations.numpy())
            rate = self.every * self.batch_size / max(now - self.tlast, 1e-9)
            self.tlast = now
            logs = logs or {}
            loss = float(logs.get("loss", float("nan")))
            acc = float(logs.get("predictions_accuracy", logs.get("accuracy", 0.0)))
            self.log(f"step {it}/{self.total}  loss {loss:.4f}  acc {acc:.3f}  "
                     f"{rate:.0f} img/s", flush=True)


def build_for_training(cfg: ExperimentConfig, steps_per_epoch: int,
                       model_transform: Optional[Callable] = None):
    """Model + optimizer + losses, compiled (call inside the strategy's scope)."""
    from train.model import build_inception_v3, load_keras_weights

    model = build_inception_v3(cfg.model, training_heads=True)
    if cfg.train.weights:
        load_keras_weights(model, cfg.train.weights)
    if model_transform is not None:
        model = model_transform(model)
    add_l2_loss(model, cfg.optim)
    n_out = len(model.outputs)
    ce = keras.losses.CategoricalCrossentropy(label_smoothing=cfg.optim.label_smoothing)
    model.compile(
        optimizer=make_optimizer(cfg, steps_per_epoch, model),
        loss=[ce] * n_out,
        loss_weights=[1.0] + [cfg.optim.aux_loss_weight] * (n_out - 1),
        metrics=[["accuracy"]] + [[]] * (n_out - 1),
        jit_compile=cfg.train.xla)
    return model


def kernels(model) -> list:
    """The conv and dense kernels (what weight decay applies to; not BN, biases or quantizers)."""
    return [w for w in model.trainable_weights
            if w.name.split("/")[-1].split(":")[0] in ("kernel", "depthwise_kernel")]


def add_l2_loss(model, optim) -> None:
    """slim's weight decay: ``weight_decay * sum(l2_loss(kernel))`` added to the model's loss
    (``weight_decay_mode`` "l2"); Keras scales it for the replicas as any model loss."""
    if optim.weight_decay and optim.weight_decay_mode == "l2":
        ks = kernels(model)
        wd = float(optim.weight_decay)
        model.add_loss(lambda: wd * tf.add_n([tf.nn.l2_loss(k) for k in ks]))


def _one_hot(n_out, num_classes):
    def f(x, y):
        oh = tf.one_hot(y, num_classes)
        return x, tuple([oh] * n_out) if n_out > 1 else oh
    return f


def _atomic_dir(final: str):
    parent = os.path.dirname(os.path.abspath(final))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(final)}.tmp-", dir=parent)
    os.chmod(tmp, 0o755 & ~_umask())  # mkdtemp's 0700 would hide the export from other users
    return tmp


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def commit_dir(tmp: str, final: str) -> None:
    """Replaces ``final`` by ``tmp`` (same filesystem) so readers never see a half-written one."""
    old = None
    if os.path.exists(final):
        old = final + f".old-{os.getpid()}"
        os.replace(final, old)
    os.replace(tmp, final)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def save_serving(model, path: str, batch: Optional[int] = None) -> None:
    """A SavedModel with exactly one signature, ``serving_default``: image -> predictions.

    The module tracks the model's variables, not the model: a tracked Keras model brings every
    layer's traced functions along (10,000 function defs for the QAT demo), and each load by the
    TFLite converter then took 6 s (float) to 23 s (QAT) instead of 1-2 s. ``batch``: None for
    any batch (serving), or a fixed one (convert/ pins 1)."""
    spec = tf.TensorSpec([batch, *model.input_shape[1:]], tf.float32, name="image")
    module = tf.Module()
    module.variables_ = list(model.variables)
    module.serve = tf.function(lambda image: {"predictions": model(image, training=False)},
                               input_signature=[spec])
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})


def float32_model(model, cfg: ExperimentConfig):
    """``model`` as a float32 model: the same network built under the float32 policy with the
    trained weights copied in (under mixed precision the variables are float32 already; the
    layers compute in float16, which no phone delegate's float path expects and which the
    converter cannot quantize). A float32 model is returned as it is."""
    from train.model import build_inception_v3, computes_in

    if computes_in(model) <= {"float32"}:
        return model

    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        out = build_inception_v3(cfg.model, training_heads=False)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    out.set_weights(model.get_weights())
    return out


def export_model(model, cfg: ExperimentConfig, spec: PreprocessingSpec, class_names, out_dir: str,
                 metrics: Optional[dict] = None, save_keras: bool = True) -> str:
    """Writes the export folder atomically: nothing at ``out_dir`` until everything is written."""
    from train.model import inference_model, is_quantization_aware

    inf = float32_model(inference_model(model), cfg)
    tmp = _atomic_dir(out_dir)
    try:
        if save_keras:
            # tfmot's QAT layers do not round-trip through the .keras format: use HDF5 for them
            qat = is_quantization_aware(inf)
            inf.save(os.path.join(tmp, "model.h5" if qat else "model.keras"))
        save_serving(inf, os.path.join(tmp, "saved_model"))
        with open(os.path.join(tmp, "labels.txt"), "w") as f:
            f.write("\n".join(class_names) + "\n")
        spec.save(tmp)
        cfg.save(tmp)
        if metrics:
            with open(os.path.join(tmp, "metrics.json"), "w") as f:
                json.dump(metrics, f, indent=2)
        commit_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def finished_run(run_dir: str, cfg: ExperimentConfig, code: Optional[str] = None
                 ) -> Optional[dict]:
    """The metrics of a finished run of exactly ``cfg`` in ``run_dir`` (export complete), made
    by this code (``code``: ``code_digest`` of the trainer's closure), or None."""
    exp = os.path.join(run_dir, "export")
    if not same_config(os.path.join(exp, "config.json"), cfg):
        return None
    try:
        with open(os.path.join(exp, "metrics.json")) as f:
            metrics = json.load(f)
    except (OSError, ValueError):
        return None
    if code is not None and metrics.get("code") != code:
        return None
    return metrics


def training_code(model_transform: Optional[Callable] = None) -> str:
    """The digest of the code a run executes: the trainer's import closure, and the module of
    the model transform (quantize/'s QAT) when there is one."""
    from contract.code import code_digest

    return code_digest(["train.trainer"] + ([model_transform.__module__]
                                             if model_transform is not None else []))


def same_config(saved_path: str, cfg: ExperimentConfig) -> bool:
    """Whether the config saved at ``saved_path`` resolves to ``cfg``. Fields added to the
    config classes since it was saved take their defaults, so a code update that only adds
    options does not invalidate finished runs."""
    from train.config import from_dict

    try:
        with open(saved_path) as f:
            saved = from_dict(json.load(f))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return json.loads(json.dumps(saved.to_dict())) == json.loads(json.dumps(cfg.to_dict()))


def _set_aside_stale_backup(run_dir: str, backup_dir: str, cfg: ExperimentConfig, log) -> None:
    """A backup made under another config (e.g. QAT from a retrained float model) must not be
    resumed: it is renamed aside (kept, never deleted) and the run starts over."""
    saved = os.path.join(run_dir, "config.json")
    if not os.path.isdir(backup_dir) or not os.path.isfile(saved):
        return
    try:
        with open(saved, encoding="utf-8") as f:
            json.load(f)
    except (OSError, ValueError) as e:  # damaged, not different: keep the progress
        raise ValueError(f"{saved} is damaged ({e}); the training state in {backup_dir} is "
                         f"kept. Restore config.json (or delete it to resume under the current "
                         f"config), or train into a new run folder") from None
    if not same_config(saved, cfg):
        aside = f"{backup_dir}.stale-{time.strftime('%Y%m%d-%H%M%S')}"
        os.replace(backup_dir, aside)
        log(f"[train] the config changed since the backup in {backup_dir}: starting over "
            f"(old backup kept as {aside})", flush=True)


def train(cfg: ExperimentConfig, run_dir: str, model_transform: Optional[Callable] = None,
          log=print, export: bool = True) -> dict:
    """Trains (or resumes) ``cfg`` in ``run_dir``; evaluates with the EMA weights; exports.
    A QAT config (``quantization.enabled``) needs its ``model_transform`` (quantize/ supplies
    it): without one it would train a float model under a QAT name, so it is refused."""
    if cfg.quantization.enabled and model_transform is None:
        raise ValueError(f"{cfg.name} is a quantization-aware config (quantization.enabled): "
                         f"run it with `python -m quantize qat --preset {cfg.name} --float "
                         "FLOAT_EXPORT` (or set quantization.enabled=false to train in float)")
    t_start = time.time()
    code = training_code(model_transform)
    done = finished_run(run_dir, cfg, code)
    if done is not None:
        log(f"[train] {run_dir} already holds this config's finished export (top-1 "
            f"{done['top1']:.4f}); reusing it", flush=True)
        return done
    if cfg.quantization.enabled and cfg.train.precision is not Precision.FLOAT32:
        raise ValueError(f"{cfg.name}: quantization-aware training runs in float32 (tfmot's "
                         f"quantizers do not support {cfg.train.precision.value}); set "
                         "train.precision=float32 (a mixed-precision float run's export is "
                         "float32 already)")
    if cfg.train.precision is Precision.MIXED_FLOAT16 and not tf.config.list_physical_devices(
            "GPU") and os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0":
        # measured with TF 2.21 on x86 CPUs: the first float16 training step segfaults in
        # oneDNN's kernels; with them off it runs (slowly)
        raise ValueError("train.precision=mixed_float16 is for GPUs: on this machine (no GPU) "
                         "TensorFlow's oneDNN float16 kernels crash the process. Train in "
                         "float32 here (or mixed_bfloat16), or set TF_ENABLE_ONEDNN_OPTS=0 to "
                         "run float16 without oneDNN")
    tf.keras.utils.set_random_seed(cfg.train.seed)
    keras.mixed_precision.set_global_policy(cfg.train.precision.value)
    try:
        return _train(cfg, run_dir, model_transform, log, export, t_start, code)
    finally:  # the policy is the process's: later models (export, QAT, tests) build in float32
        keras.mixed_precision.set_global_policy("float32")


def _train(cfg: ExperimentConfig, run_dir: str, model_transform, log, export: bool,
           t_start: float, code: str) -> dict:
    strategy = make_strategy(cfg.train.strategy, cfg.train.tpu)
    chief = is_chief(strategy)
    work_dir = run_dir if chief else tempfile.mkdtemp(prefix="worker-")

    train_ds = Dataset(cfg.data, "train")
    eval_ds = Dataset(cfg.data, "test")
    train_ds.check_labels(cfg.model.num_classes)
    eval_ds.check_labels(cfg.model.num_classes)
    spec = preprocessing_spec(cfg, train_ds.source_channels)
    gb = cfg.train.batch_size
    steps_per_epoch = train_ds.num_examples // gb
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size {gb} exceeds the {train_ds.num_examples} training examples")
    total_steps = steps_per_epoch * int(cfg.train.epochs)
    backup_dir = os.path.join(run_dir, "backup")
    if chief:
        _set_aside_stale_backup(run_dir, backup_dir, cfg, log)
        cfg.save(run_dir)
    log(f"[train] {cfg.name}: {train_ds.num_examples} images, {train_ds.num_classes} classes, "
        f"{int(cfg.train.epochs)} epochs x {steps_per_epoch} steps, global batch {gb}, "
        f"{strategy.num_replicas_in_sync} replica(s) "
        f"({resolve_strategy(cfg.train.strategy, cfg.train.tpu).value})", flush=True)

    with strategy.scope():
        model = build_for_training(cfg, steps_per_epoch, model_transform)
    n_out = len(model.outputs)
    ds = train_ds.pipeline(spec, gb, training=True, seed=cfg.train.seed, repeat=True,
                           drop_remainder=True).map(_one_hot(n_out, cfg.model.num_classes))
    opts = tf.data.Options()
    # across workers: each reads its own TFRecord files (FILE), not every file to keep every
    # n-th element (DATA: each worker would read and decode all of ImageNet); in-memory
    # sources (Fashion-MNIST) have no files, and AUTO falls back to DATA for them
    opts.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.FILE if train_ds.records is not None
        and len(train_ds.files) > 1 else tf.data.experimental.AutoShardPolicy.AUTO)
    ds = ds.with_options(opts)

    if tf.train.latest_checkpoint(os.path.join(backup_dir, "chief")) or tf.train.latest_checkpoint(
            backup_dir):
        log(f"[train] resuming from the backup in {backup_dir}", flush=True)
    progress = _Progress(cfg.train.log_every_steps, gb, total_steps, log)
    callbacks = [
        _Backup(backup_dir, save_freq=cfg.train.steps_per_checkpoint, delete_checkpoint=False),
        progress,
    ]
    if chief:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"),
                                                     update_freq=cfg.train.log_every_steps,
                                                     profile_batch=0))
    t_fit = time.time()
    hist = model.fit(ds, epochs=int(cfg.train.epochs), steps_per_epoch=steps_per_epoch,
                     callbacks=callbacks, verbose=0)
    fit_s = time.time() - t_fit
    steps_run = len(hist.epoch) * steps_per_epoch  # upper bound on a resumed run
    if cfg.optim.ema_momentum is not None and int(cfg.train.epochs) > 0:
        # fit wrote the average in (also when it resumed a finished backup and ran no epoch)
        bn_batches = max(1, min(16, 2048 // gb))
        used = reestimate_batch_norm(model, ds.take(bn_batches))
        log(f"[train] batch-norm statistics re-estimated for the averaged weights on "
            f"{used} x {gb} training images", flush=True)

    from train.model import inference_model

    inf = inference_model(model)
    inf.compile(metrics=[keras.metrics.SparseCategoricalAccuracy(name="top1"),
                         keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5")],
                jit_compile=False)
    ev = inf.evaluate(eval_ds.pipeline(spec, cfg.train.eval_batch_size, training=False),
                      verbose=0, return_dict=True)
    metrics = {"top1": float(ev["top1"]), "top5": float(ev["top5"]),
               "eval_examples": eval_ds.num_examples, "fit_seconds": round(fit_s, 1),
               "epochs_run_this_call": len(hist.epoch),
               "images_per_second": round(steps_run * gb / fit_s, 1) if steps_run else None,
               "total_seconds": round(time.time() - t_start, 1),
               "global_step": progress.start_step + progress.steps,
               "code": code}  # finished_run reuses the export only for this code
    log(f"[train] eval on {eval_ds.num_examples} images: top-1 {metrics['top1']:.4f} "
        f"top-5 {metrics['top5']:.4f}  (fit {fit_s:.0f} s)", flush=True)
    if chief:
        with open(os.path.join(run_dir, "metrics.json"), "w") as f:
            json.dump(metrics, f, indent=2)
    if export:
        export_model(model, cfg, spec, train_ds.class_names, os.path.join(work_dir, "export"),
                     metrics)
        if chief:
            log(f"[train] exported to {os.path.join(run_dir, 'export')}", flush=True)
    if not chief:
        shutil.rmtree(work_dir, ignore_errors=True)
    metrics["model"] = model
    return metrics
