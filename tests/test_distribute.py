"""tf.distribute: MirroredStrategy on 2 logical CPUs, MultiWorkerMirroredStrategy on localhost."""
import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import ROOT, needs_fmnist

pytestmark = pytest.mark.slow  # each test trains in fresh processes

# Runs in a fresh process: logical devices must be set before TensorFlow initialises.
MIRRORED_CHECK = r"""
import json, sys
from train import keras_env
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from train.config import resolve
from train.trainer import build_for_training
cfg = resolve("tiny_test", None, ("model.aux_logits=false", "model.sync_batch_norm=true",
              "optim.optimizer=sgd", "optim.base_learning_rate=0.002",
              "optim.clip_norm=none"))
rng = np.random.RandomState(0)
x = rng.uniform(-1, 1, (96, 75, 75, 3)).astype("float32")
y = tf.one_hot(rng.randint(0, 10, 96), 10).numpy()

class Losses(tf.keras.callbacks.Callback):
    def on_train_begin(self, logs=None): self.seen = []
    def on_train_batch_end(self, batch, logs=None): self.seen.append(float(logs["loss"]))

def run(strategy):
    tf.keras.utils.set_random_seed(1)
    with strategy.scope():
        model = build_for_training(cfg, steps_per_epoch=3)
    cb = Losses()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    model.fit(ds, epochs=1, verbose=0, callbacks=[cb])
    return cb.seen, strategy.num_replicas_in_sync

single, n1 = run(tf.distribute.get_strategy())
mirrored, n2 = run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
print(json.dumps({"single": single, "mirrored": mirrored, "replicas": [n1, n2]}))
"""


def test_mirrored_two_cpus_first_step_matches_single_device_loss():
    env = dict(os.environ, PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, "-c", MIRRORED_CHECK], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["replicas"] == [1, 2]
    assert len(out["single"]) == len(out["mirrored"]) == 3
    # the same global batch of 32 split 16 + 16, gradients all-reduced, synced BN statistics:
    # The first step's loss (forward pass, synced BN statistics over the two halves) is equal up
    # to float summation order (seen: 4e-5 relative). After the first update the two runs drift
    # apart by ~1 % (seen: 2.5419 vs 2.5668 at step 2, running means): the updates are not yet
    # identical -- an open finding noted on the issue, bounded loosely here.
    assert out["mirrored"][0] == pytest.approx(out["single"][0], rel=5e-4), out
    for a, b in zip(out["single"][1:], out["mirrored"][1:]):
        assert b == pytest.approx(a, rel=0.03), (out["single"], out["mirrored"])


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@needs_fmnist
def test_multi_worker_two_local_processes(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    run = str(tmp_path / "run")
    procs = []
    for i in range(2):
        env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1",
                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker",
                                                                      "index": i}}))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "train", "--preset", "tiny_test", "--run-dir", run,
             "--set", "train.epochs=1", "--set", "train.batch_size=32"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=400)[0])
    finally:
        for p in procs:
            p.kill()
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    assert "2 replica(s) (multi_worker)" in outs[0]
    assert "2 replica(s) (multi_worker)" in outs[1]
    metrics = json.load(open(os.path.join(run, "metrics.json")))
    assert metrics["global_step"] == 8  # 256 images / global batch 32, shared by both workers
    assert os.path.isdir(os.path.join(run, "export", "saved_model"))  # the chief exported
    assert "exported to" in outs[0] and "exported to" not in outs[1]
