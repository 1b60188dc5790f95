"""Sharded evaluation at scale, measured in one run (ratios, not timed tests).

    python benchmarks/shards.py artifacts/demo --images 2000 --scale 10 [--only static_wi8_ai8]
        [--backends local,ray] [--shard-size 500]

For each backend: the sharded harness (``edge_eval accuracy --shard-size``, float reference =
the fp32 .tflite, so every unit is a LiteRT worker) with 1 and with 2 workers (1 thread each),
and the same models run bare (one interpreter each, 1 thread, the same images already
preprocessed in memory; once alone and once as two such processes side by side on half the
images each). Printed: harness (1 worker) / bare images/s (goal >= 0.95) and harness (2 workers)
/ two bare processes, 2 workers / 1 worker (goal >= 1.8), the peak RSS of the run's processes and
the disk under the results at N and at scale x N images (goal: < 5 % growth; ``--scale 1``
skips that run), and the records' bytes per image (goal <= 200). The harness's figures are
whole runs (start, the set's check, every unit, the report), not a steady state.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BARE = r"""
import json, sys, time
import numpy as np
from contract.litert import TFLiteModel
from contract.preprocessing import PreprocessingSpec
from edge_eval.harness import data_config, eval_items, load_manifest, reference_path
from edge_eval import preprocess
art, model, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
m = load_manifest(art)
spec = PreprocessingSpec.from_dict(m["preprocessing"])
src = sys.argv[sys.argv.index("--data-source") + 1] if "--data-source" in sys.argv else None
path = sys.argv[sys.argv.index("--data-path") + 1] if "--data-path" in sys.argv else None
items, _, _ = eval_items(data_config(reference_path(m), src, path), "test", n, 0)
x = np.stack([preprocess.central(items.load(i, spec.decode_channels)[0], spec)
              for i in range(len(items))])
if len(sys.argv) > 4 and sys.argv[4] in ("0", "1"):  # one half of the images: side by side
    x = x[int(sys.argv[4])::2]
tf = TFLiteModel(model, num_threads=1)
tf.predict(x[:1], 1)
t = time.perf_counter()
for i in range(len(x)):
    tf.predict(x[i:i + 1], 1)
print(json.dumps({"images_per_s": len(x) / (time.perf_counter() - t)}))
"""


def _du(path):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def sharded(art, fp32, only, images, shard, workers, backend, data=()):
    out = tempfile.mkdtemp(prefix="shards-bench-")
    cmd = [sys.executable, "-c", "import resource, runpy, sys; sys.argv = sys.argv[1:]; "
           "runpy.run_module('edge_eval', run_name='__main__', alter_sys=True)",
           "python -m edge_eval", "accuracy", art, "--reference", fp32, "--out", out,
           "--images", str(images), "--shard-size", str(shard), "--workers", str(workers),
           "--backend", backend, "--runtime", "litert", "--only", only, "--bootstrap", "200",
           "--no-strict", *data]
    # in a process of its own, which reports the peak RSS of the run's processes (the driver
    # and its workers: RUSAGE_CHILDREN covers every descendant it waited for)
    wrap = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
            "print('RSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
            "sys.exit(r.returncode)")
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", wrap, *cmd], cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(r.stderr[-2000:])
    rss = int(r.stdout.strip().splitlines()[-1].split()[1]) / 1024
    rows = [json.loads(x) for x in open(os.path.join(out, "accuracy.jsonl"))]
    records = _du(os.path.join(out, "shards")) + _du(os.path.join(out, "predictions"))
    disk = _du(out) - records  # the working files: no whole-set array
    per = rows[0]["eval_set"]["record_bytes_per_image"]
    shutil.rmtree(out, ignore_errors=True)
    # two models (the fp32 reference and ``only``) went through the units
    return {"images_per_s": 2 * images / wall, "wall_s": wall, "peak_rss_mb": rss,
            "disk_mb": disk / 1e6, "records_mb": records / 1e6, "record_bytes": per}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("artifacts")
    p.add_argument("--only", default="static_wi8_ai8")
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--scale", type=int, default=10)
    p.add_argument("--shard-size", type=int, default=500)
    p.add_argument("--backends", default="local,ray")
    p.add_argument("--data-source", help="when the reference export's config.json does not say")
    p.add_argument("--data-path")
    a = p.parse_args()
    data = (["--data-source", a.data_source] if a.data_source else []) + (
        ["--data-path", a.data_path] if a.data_path else [])
    art = os.path.abspath(a.artifacts)
    m = json.load(open(os.path.join(art, "manifest.json")))
    fp32 = next(os.path.join(art, e["file"]) for e in m["artifacts"] if e["recipe"] == "fp32")
    only = next(e["file"] for e in m["artifacts"] if e["recipe"] == a.only)
    def bare_rates(model, halves=False):
        procs = [subprocess.Popen(
            [sys.executable, "-c", BARE, art, model, str(a.images),
             str(h) if halves else "-"] + data, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            for h in ((0, 1) if halves else (None,))]
        return [json.loads(p.communicate()[0].strip().splitlines()[-1])["images_per_s"]
                for p in procs]

    def both(r32, rq):  # the sharded run puts every image through fp32 and ``only``
        return 2 / (1 / r32 + 1 / rq)

    (b32,), (bq,) = bare_rates(fp32), bare_rates(os.path.join(art, only))
    bare = both(b32, bq)
    pair = sum(both(x, y) for x, y in zip(bare_rates(fp32, True),
                                            bare_rates(os.path.join(art, only), True)))
    print(f"bare interpreter, 1 thread, one image at a time: fp32 {b32:.2f} img/s, {only} "
          f"{bq:.2f} img/s; both, one after the other: {bare:.2f} model-images/s; two such "
          f"processes side by side: {pair:.2f}")
    for backend in a.backends.split(","):
        one = sharded(art, fp32, a.only, a.images, a.shard_size, 1, backend, data)
        two = sharded(art, fp32, a.only, a.images, a.shard_size, 2, backend, data)
        print(f"[{backend}] 1 worker {one['images_per_s']:.2f} img/s, 2 workers "
              f"{two['images_per_s']:.2f} img/s: x{two['images_per_s'] / one['images_per_s']:.2f}"
              f" (goal >= 1.8); harness / bare: 1 worker {one['images_per_s'] / bare:.3f} "
              f"(goal >= 0.95), 2 workers / two bare {two['images_per_s'] / pair:.3f}",
              flush=True)
        if a.scale == 1:
            continue
        big = sharded(art, fp32, a.only, a.images * a.scale, a.shard_size, 2, backend, data)
        print(f"[{backend}] {a.images} -> {a.images * a.scale} images: peak RSS "
              f"{two['peak_rss_mb']:.0f} -> {big['peak_rss_mb']:.0f} MB "
              f"({100 * (big['peak_rss_mb'] / two['peak_rss_mb'] - 1):+.1f} %); working disk "
              f"(the image list, caches) {two['disk_mb']:.2f} -> {big['disk_mb']:.2f} MB; "
              f"the records themselves {two['records_mb']:.2f} -> {big['records_mb']:.2f} MB, "
              f"{big['record_bytes']:.0f} B/image (goal <= 200)")


if __name__ == "__main__":
    main()
