"""Evaluation harness throughput / bare interpreter throughput, measured in one run.

    python benchmarks/harness_throughput.py artifacts/demo [--images 10000] [--only fp32,static_wi8_ai8]

Harness: ``edge_eval.harness.evaluate`` from a cold cache, per artifact: its worker's wall time
(process start, model load, reading the shared inputs, batched inference, writing the outputs)
plus its share of the one-off preprocessing (split over every model of the run, the float
reference included). Bare: the same interpreter, threads and batch size on the same inputs already
in memory, in a process without TensorFlow. Goal: harness / bare >= 0.9.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile


BARE = r"""
import json, sys, time
import numpy as np
from contract.litert import TFLiteModel
path, inputs, threads, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
x = np.array(np.load(inputs, mmap_mode="r"))  # in memory before the clock starts
if x.shape[-1] == 1:  # the harness stores grey inputs unexpanded; the model takes 3 channels
    x = np.repeat(x, 3, axis=-1)
m = TFLiteModel(path, num_threads=threads)
m.predict(x[:batch], batch)  # warm-up
t = time.perf_counter()
m.predict(x, batch)
print(json.dumps({"images_per_s": len(x) / (time.perf_counter() - t),
                  "tensorflow_loaded": "tensorflow" in sys.modules}))
"""


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("artifacts")
    p.add_argument("--images", type=int, default=10000)
    p.add_argument("--only", default="fp32,static_wi8_ai8")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    from edge_eval import harness

    only = args.only.split(",")
    out = tempfile.mkdtemp(prefix="harness-bench-")
    rows = harness.evaluate(args.artifacts, out, images=args.images, threads=args.threads,
                            only=only, bootstrap_rounds=200, log=lambda *a, **k: None)
    es = rows[0]["eval_set"]
    share = es["preprocess_s"] / len(rows)
    cache = [f for f in os.listdir(os.path.join(out, "cache")) if f.endswith(".npy")][0]
    inputs = os.path.join(out, "cache", cache)
    m = harness.load_manifest(args.artifacts)
    files = {a["file"]: a for a in m["artifacts"]}
    print(f"{es['images']} images; preprocessing {es['preprocess_s']:.2f} s once, shared by "
          f"{len(rows)} models ({share:.2f} s each); whole evaluation {es['wall_s']:.1f} s")
    print("| artifact | harness img/s | bare img/s | ratio |")
    print("|---|---|---|---|")
    for r in rows[1:]:
        if r["status"] != "ok" or r["artifact"] not in files:
            print(f"| {r['artifact']} | {r['status']}: {r['error']} | | |")
            continue
        harness_rate = es["images"] / (r["wall_s"] + share)
        res = subprocess.run([sys.executable, "-c", BARE, os.path.join(args.artifacts,
                              r["artifact"]), inputs, str(args.threads), str(r["batch_size"])],
                             capture_output=True, text=True, check=True)
        bare = json.loads(res.stdout.strip().splitlines()[-1])
        assert not bare["tensorflow_loaded"]
        print(f"| {r['artifact']} | {harness_rate:.0f} | {bare['images_per_s']:.0f} | "
              f"{harness_rate / bare['images_per_s']:.3f} |")
    print("goal: harness / bare >= 0.9")


if __name__ == "__main__":
    main()
