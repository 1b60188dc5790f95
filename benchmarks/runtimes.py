"""LiteRT's two host APIs against its own CLI, same model, same threads (ratios in one run).

    python benchmarks/runtimes.py MODEL.tflite [MODEL ...] [--rounds 3] [--runs 50]

For each model, ``--rounds`` interleaved rounds of: edge_eval's Interpreter benchmark, its
CompiledModel benchmark (``edge_eval.bench``, each in a fresh process as the harness runs them),
and the ``litert-benchmark`` CLI that ships with ai-edge-litert (``--result_json``). Prints each
one's median of the per-round medians and its ratio to the CLI's: within a few percent means
our numbers are LiteRT's numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OURS = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from edge_eval.bench import bench_tflite
r = bench_tflite(sys.argv[2], threads=int(sys.argv[3]), runs=int(sys.argv[4]), min_seconds=0.5,
                 runtime=sys.argv[5])
print(json.dumps({"p50": r["latency_ms"]["p50"], "full": r["delegation"]["full"]}))
"""


def cli(model: str, threads: int, runs: int) -> float:
    exe = shutil.which("litert-benchmark")
    if exe is None:
        raise SystemExit("litert-benchmark is not on PATH (it ships with ai-edge-litert >= 2)")
    out = os.path.join(tempfile.mkdtemp(), "r.json")
    subprocess.run([exe, "--model", model, "--num_threads", str(threads), "--num_runs",
                    str(runs), "--warmup_runs", "5", "--result_json", out], check=True,
                   capture_output=True, text=True)
    return float(json.load(open(out))["latency"]["median_ms"])


def ours(model: str, threads: int, runs: int, runtime: str) -> float:
    r = subprocess.run([sys.executable, "-c", OURS, ROOT, model, str(threads), str(runs),
                        runtime], check=True, capture_output=True, text=True)
    return float(json.loads(r.stdout.strip().splitlines()[-1])["p50"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    print(f"{a.threads} threads, {a.runs} runs, {a.rounds} interleaved rounds (median of the "
          "rounds' medians)")
    print("| model | Interpreter ms | CompiledModel ms | litert-benchmark ms | "
          "Interpreter / CLI | CompiledModel / CLI |")
    print("|---|---|---|---|---|---|")
    for m in a.models:
        got = {"interpreter": [], "compiled_model": [], "cli": []}
        for _ in range(a.rounds):
            got["interpreter"].append(ours(m, a.threads, a.runs, "interpreter"))
            got["compiled_model"].append(ours(m, a.threads, a.runs, "compiled_model"))
            got["cli"].append(cli(m, a.threads, a.runs))
        med = {k: statistics.median(v) for k, v in got.items()}
        print(f"| {os.path.basename(m)} | {med['interpreter']:.2f} | "
              f"{med['compiled_model']:.2f} | {med['cli']:.2f} | "
              f"{med['interpreter'] / med['cli']:.3f} | {med['compiled_model'] / med['cli']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
