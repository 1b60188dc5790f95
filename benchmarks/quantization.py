"""Quantization figures, measured in one run on this machine.

    python benchmarks/quantization.py accuracy --float runs/demo/export --artifacts artifacts
    python benchmarks/quantization.py fullsize [--runs 20]

``accuracy``: top-1 of the float Keras model and of every .tflite in the manifest on the whole
evaluation split (Fashion-MNIST test: 10,000 images), and each one's drift against float.
``fullsize``: the 299-px, 1000-class Inception-v3 (random weights, seeded), converted to fp32 and
static int8; prints int8/fp32 size and latency ratios, timed with LiteRT + XNNPACK at 2 threads in
a process without TensorFlow, the two models interleaved run by run.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time



def accuracy(args):
    import numpy as np

    from contract.litert import TFLiteModel
    from train.source import load_source
    from train.config import from_dict
    from train.data import Dataset

    src = load_source(args.float_export)
    cfg = from_dict({"data": src.config["data"]})
    cfg.data.max_eval_examples = args.images
    ds = Dataset(cfg.data, "test")
    t = time.time()
    x, y = ds.images(src.spec), ds.labels_array()
    print(f"{len(y)} evaluation images preprocessed in {time.time() - t:.1f} s")
    ref = src.predict(x, batch_size=256)
    rows = [("float (Keras)", "-", ref, None)]
    manifest = json.load(open(os.path.join(args.artifacts, "manifest.json")))
    for a in manifest["artifacts"]:
        if a["target"] != "tflite":
            continue
        t = time.time()
        p = TFLiteModel(os.path.join(args.artifacts, a["file"]), num_threads=2).predict(x, 250)
        rows.append((a["file"], a["recipe"], p, a["bytes"]))
        print(f"  {a['file']}: {len(x) / (time.time() - t):.0f} img/s", flush=True)
    top1_f = float(np.mean(ref.argmax(1) == y))
    print(f"\n| artifact | top-1 | top-5 | drift vs float (points) | top-1 agreement | size (MB) |")
    print("|---|---|---|---|---|---|")
    out = []
    for name, recipe, p, size in rows:
        top1 = float(np.mean(p.argmax(1) == y))
        top5 = float(np.mean([yy in row for yy, row in zip(y, np.argsort(-p, 1)[:, :5])]))
        agree = float(np.mean(p.argmax(1) == ref.argmax(1)))
        drift = 100 * (top1 - top1_f)
        print(f"| {name} | {100 * top1:.2f} | {100 * top5:.2f} | {drift:+.2f} | {100 * agree:.2f} | "
              f"{'' if size is None else f'{size / 1e6:.3f}'} |")
        out.append(dict(artifact=name, recipe=recipe, top1=top1, top5=top5, drift_points=drift,
                        agreement=agree, bytes=size))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


TIMER = r"""
import json, sys, time
import numpy as np
assert "tensorflow" not in sys.modules
from contract.litert import TFLiteModel
paths, runs, warmup = sys.argv[1:3], int(sys.argv[3]), int(sys.argv[4])
models = []
for p in paths:
    t = time.perf_counter(); m = TFLiteModel(p, num_threads=2, xnnpack=True)
    models.append((m, time.perf_counter() - t))
x = np.random.RandomState(0).uniform(-1, 1, (1, 299, 299, 3)).astype(np.float32)
inputs = [m.quantize_input(x) for m, _ in models]
for _ in range(warmup):
    for (m, _), xi in zip(models, inputs): m.invoke_raw(xi)
times = [[], []]
for _ in range(runs):
    for i, ((m, _), xi) in enumerate(zip(models, inputs)):
        t = time.perf_counter(); m.invoke_raw(xi); times[i].append(time.perf_counter() - t)
print(json.dumps({"load_s": [l for _, l in models], "times": times,
                  "tf_loaded": "tensorflow" in sys.modules}))
"""


def _time(paths, runs, warmup):
    import numpy as np

    r = subprocess.run([sys.executable, "-c", TIMER, *paths, str(runs), str(warmup)],
                       capture_output=True, text=True, check=True)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    return [float(np.median(t)) * 1e3 for t in res["times"]], res


def time_only(args):
    """Times two .tflite files (fp32, int8) interleaved, in a process without TensorFlow: for
    machines where the models were carried, not converted."""
    import platform

    p50, res = _time([args.fp32, args.int8], args.runs, args.warmup)
    cpu = platform.processor()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                   if l.startswith("model name"))
        flags = next(l for l in open("/proc/cpuinfo") if l.startswith("flags")).split()
        cpu += " [" + ",".join(f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni",
                                            "amx_int8") if f in flags) + "]"
    except (OSError, StopIteration):
        pass
    print(f"cpu: {cpu}")
    print(f"latency p50 (LiteRT, XNNPACK, 2 threads, {args.runs} interleaved runs, TF loaded in "
          f"timer: {res['tf_loaded']}): fp32 {p50[0]:.1f} ms, int8 {p50[1]:.1f} ms")
    print(f"int8/fp32 size ratio   : {os.path.getsize(args.int8) / os.path.getsize(args.fp32):.3f}")
    print(f"int8/fp32 latency ratio: {p50[1] / p50[0]:.3f}  (goal <= 0.40)")


def fullsize(args):
    import numpy as np

    from train import keras_env  # noqa: F401
    from convert.tflite import weight_bytes
    from quantize.tflite import convert_bytes
    from train.source import Source
    from contract.recipes import RECIPES
    from train.model import build_inception_v3
    from contract.preprocessing import PreprocessingSpec

    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    model = build_inception_v3()  # 299 px, 1000 classes, Keras' layout
    if args.grid_weights:
        # weights on a 15-level grid per output channel: the same kernels run (XNNPACK's speed
        # does not depend on the values), but the files compress ~4x, so they can be carried to
        # another machine for timing (benchmarks/quantization.py time)
        rng = np.random.RandomState(0)
        for w in model.weights:
            if len(w.shape) >= 2:
                v = w.numpy()
                scale = np.abs(v).reshape(-1, v.shape[-1]).max(0) / 7 + 1e-12
                w.assign((rng.randint(-7, 8, v.shape) * scale).astype(np.float32))
    spec = PreprocessingSpec()
    src = Source("inception_v3_299", "keras", "", spec, [], None, "", keras_model=model)
    calib = np.random.RandomState(1).uniform(-1, 1, (8, 299, 299, 3)).astype(np.float32)
    tmp = tempfile.mkdtemp()
    paths = []
    for name in ("fp32", "static_wi8_ai8"):
        t = time.time()
        data = convert_bytes(src, RECIPES[name], calib)
        path = os.path.join(tmp, f"inception_v3_299_{name}.tflite")
        open(path, "wb").write(data)
        paths.append(path)
        print(f"{name}: {len(data) / 1e6:.2f} MB (weights {weight_bytes(data) / 1e6:.2f} MB), "
              f"converted in {time.time() - t:.0f} s", flush=True)
    s32, s8 = (os.path.getsize(p) for p in paths)
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        for p in paths:
            shutil.copy(p, args.keep)
    p50, res = _time(paths, args.runs, args.warmup)
    print(f"latency p50 (LiteRT, XNNPACK, 2 threads, {args.runs} interleaved runs, TF loaded in "
          f"timer: {res['tf_loaded']}): fp32 {p50[0]:.1f} ms, int8 {p50[1]:.1f} ms")
    print(f"int8/fp32 size ratio   : {s8 / s32:.3f}  (goal <= 0.255)")
    print(f"int8/fp32 latency ratio: {p50[1] / p50[0]:.3f}  (goal <= 0.40)")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("accuracy")
    a.add_argument("--float", dest="float_export", default="runs/demo/export")
    a.add_argument("--artifacts", default="artifacts")
    a.add_argument("--images", type=int, default=None)
    a.add_argument("--json")
    f = sub.add_parser("fullsize")
    f.add_argument("--runs", type=int, default=20)
    f.add_argument("--warmup", type=int, default=3)
    f.add_argument("--keep", help="copy the two .tflite files here")
    f.add_argument("--grid-weights", action="store_true",
                   help="weights on a 15-level grid (compressible files, same kernels)")
    tm = sub.add_parser("time", help="time two carried .tflite files (fp32, int8)")
    tm.add_argument("fp32")
    tm.add_argument("int8")
    tm.add_argument("--runs", type=int, default=20)
    tm.add_argument("--warmup", type=int, default=3)
    args = p.parse_args()
    {"accuracy": accuracy, "fullsize": fullsize, "time": time_only}[args.cmd](args)


if __name__ == "__main__":
    main()
