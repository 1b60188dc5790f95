"""Input pipeline / in-memory training throughput, measured in one run on this machine.

    python benchmarks/input_pipeline.py [--preset inception_v3_fashion_mnist_demo] [--steps 60]

Trains the preset's model for N steps fed by the real tf.data pipeline (augmentation included),
then N steps on one pre-made batch already in memory, and prints both rates and their ratio
(goal >= 0.95: the pipeline keeps the training step fed).
"""
import argparse
import os
import sys
import time


from train import keras_env  # noqa: F401,E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="inception_v3_fashion_mnist_demo")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()

    import tensorflow as tf
    from train.config import resolve
    from train.data import Dataset
    from train.trainer import _one_hot, build_for_training, preprocessing_spec

    cfg = resolve(args.preset)
    data = Dataset(cfg.data, "train")
    spec = preprocessing_spec(cfg, data.source_channels)
    model = build_for_training(cfg, steps_per_epoch=1000)
    n_out = len(model.outputs)
    bs = cfg.train.batch_size
    piped = data.pipeline(spec, bs, training=True, seed=0, repeat=True, drop_remainder=True).map(
        _one_hot(n_out, cfg.model.num_classes))
    batch = next(iter(piped))
    memory = tf.data.Dataset.from_tensors(batch).repeat()

    def rate(ds):
        model.fit(ds, steps_per_epoch=args.warmup, epochs=1, verbose=0)
        t = time.perf_counter()
        model.fit(ds, steps_per_epoch=args.steps, epochs=1, verbose=0)
        return args.steps / (time.perf_counter() - t)

    results = {"pipeline": [], "memory": []}
    for _ in range(args.rounds):  # interleaved, so drift in machine load hits both sides
        results["pipeline"].append(rate(piped))
        results["memory"].append(rate(memory))
    pipe, mem = max(results["pipeline"]), max(results["memory"])
    print(f"preset {args.preset}: batch {bs}, {args.steps} steps x {args.rounds} rounds")
    print(f"input pipeline : {pipe:.3f} steps/s ({pipe * bs:.0f} img/s)")
    print(f"in memory      : {mem:.3f} steps/s ({mem * bs:.0f} img/s)")
    print(f"ratio pipeline/in-memory: {pipe / mem:.3f}  (goal >= 0.95)")


if __name__ == "__main__":
    main()
