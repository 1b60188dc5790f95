"""The project's compass in one run on one machine: int8/fp32 latency and size of the 299-px model,
harness/bare-interpreter throughput, input pipeline/in-memory training steps, and the main
job's wall time per stage.

    python benchmarks/pipeline.py                      # after the main job (scripts/main.sh)
    python benchmarks/pipeline.py --skip fullsize      # the quick ones only

Each measurement runs in its own process (the existing benchmark scripts); this prints their
ratios side by side with the goals, and the stage times from reports/<job>/pipeline.json.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, timeout):
    t = time.perf_counter()
    r = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=timeout)
    return r, time.perf_counter() - t


def _grab(text, pattern):
    m = re.search(pattern, text)
    return float(m.group(1)) if m else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--job", default="demo", help="main job name (reports/<job>, artifacts/<job>)")
    p.add_argument("--skip", default="", help="comma-separated: fullsize, harness, input")
    p.add_argument("--timeout", type=float, default=1800)
    args = p.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    rows = []  # (measure, value, goal, seconds)

    if "fullsize" not in skip:
        r, s = _run(["benchmarks/quantization.py", "fullsize", "--runs", "20"], args.timeout)
        out = r.stdout + r.stderr
        rows.append(("299-px int8/fp32 latency (XNNPACK, 2 threads)",
                     _grab(out, r"latency ratio:\s*([\d.]+)"), "<= 0.40", s))
        rows.append(("299-px int8/fp32 size", _grab(out, r"size ratio\s*:\s*([\d.]+)"),
                     "<= 0.255", 0.0))
    art = os.path.join("artifacts", args.job)
    if "harness" not in skip and os.path.isdir(os.path.join(ROOT, art)):
        r, s = _run(["benchmarks/harness_throughput.py", art], args.timeout)
        ratios = [float(v) for v in re.findall(r"\|\s*([\d.]+)\s*\|\s*$", r.stdout, re.M)]
        rows.append(("harness/bare-interpreter throughput (median of artifacts)",
                     sorted(ratios)[len(ratios) // 2] if ratios else None, ">= 0.9", s))
    if "input" not in skip:
        r, s = _run(["benchmarks/input_pipeline.py"], args.timeout)
        rows.append(("input pipeline/in-memory training steps/s",
                     _grab(r.stdout, r"ratio pipeline/in-memory:\s*([\d.]+)"), ">= 0.95", s))

    print("\n| measure | value | goal | measured in (s) |\n|---|---|---|---|")
    for name, v, goal, s in rows:
        print(f"| {name} | {'failed' if v is None else f'{v:.3f}'} | {goal} | {s:.0f} |")

    state = os.path.join(ROOT, "reports", args.job, "pipeline.json")
    if os.path.isfile(state):
        st = json.load(open(state))["stages"]
        total = sum(r["wall_s"] for r in st.values())
        print(f"\nmain job ({args.job}), wall time per stage when it last ran:\n"
              "| stage | status | wall s | share |\n|---|---|---|---|")
        for name, r in st.items():
            print(f"| {name} | {r['status']} | {r['wall_s']:.1f} | "
                  f"{100 * r['wall_s'] / max(total, 1e-9):.0f} % |")
        print(f"| sum of stages | | {total:.1f} | |")
        full = json.load(open(state)).get("last_job_every_stage_ran")
        if full:  # stages may run side by side: the job's own wall time
            print(f"| the last job that ran every stage, start to end | | {full['wall_s']:.0f} "
                  f"| goal <= 900 s from scratch |")
    else:
        print(f"\n(no {os.path.relpath(state, ROOT)}: run the main job first for stage times)")
    return 0 if all(v is not None for _, v, _, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
