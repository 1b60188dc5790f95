"""Where the milliseconds go in a .tflite on the host: ``python -m edge_eval profile A [B ...]``.

LiteRT's Python API has no op profiler (``benchmark_model --enable_op_profiling`` is the phone's,
``python -m edge_eval android --op-profiling``), so the host profile is measured by cutting:
the graph's *cut points* are the tensors that are the only value alive between two ops in
execution order (the stem's layers and every ``mixedN`` block's concatenation in
Inception-v3); for each cut point a prefix model (the ops up to it, that tensor its output) is
built from the artifact's own flatbuffer and timed with LiteRT + XNNPACK at the given threads,
all prefixes interleaved round by round. A segment's time is its prefix's median minus the
previous prefix's: what running those ops adds, partition switches included. Each segment also
lists its op types and the ops the delegate left to the built-in CPU kernels (the full model's
delegation), so an op XNNPACK lacks shows up where its time goes. Several artifacts of one
architecture are profiled side by side (fp32 against int8), their segments matched by name.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from contract.litert import DELEGATE_NODE, TFLiteModel, delegated_nodes


class ProfileError(ValueError):
    """A model this tool cannot profile (one clear message)."""


def graph(model_bytes: bytes):
    """(ModelT, its one subgraph, {op index: op name}) of a .tflite's bytes."""
    from ai_edge_litert import schema_py_generated as schema

    from contract.tflite_file import strip_zip

    m = schema.ModelT.InitFromPackedBuf(bytearray(strip_zip(model_bytes)), 0)
    if len(m.subgraphs or []) != 1:
        raise ProfileError("only single-subgraph models can be cut into prefixes")
    g = m.subgraphs[0]
    names = {}
    for op_i, op in enumerate(g.operators):
        code = m.operatorCodes[op.opcodeIndex]
        names[op_i] = schema_name(max(code.builtinCode, code.deprecatedBuiltinCode))
    return m, g, names


def schema_name(code: int) -> str:
    from ai_edge_litert import schema_py_generated as schema

    for k, v in vars(schema.BuiltinOperator).items():
        if v == code and not k.startswith("_"):
            return k
    return f"op {code}"


def cut_points(g) -> List[int]:
    """Indices of the ops whose output is the only tensor alive after them (a clean cut)."""
    inputs = set(g.inputs)
    produced_at = {}
    for i, op in enumerate(g.operators):
        for t in op.outputs:
            produced_at[t] = i
    last_use = {}
    for i, op in enumerate(g.operators):
        for t in op.inputs:
            if t >= 0 and (t in produced_at or t in inputs):
                last_use[t] = i
    cuts = []
    for i, op in enumerate(g.operators):
        if len(op.outputs) != 1:
            continue
        out = op.outputs[0]
        # alive after op i: computed at or before i (or a graph input) and used after i
        alive = [t for t, j in last_use.items() if j > i and (t in inputs or
                                                            produced_at.get(t, 1 << 30) <= i)]
        if alive == [out] or (not alive and i == len(g.operators) - 1):
            cuts.append(i)
    if not cuts or cuts[-1] != len(g.operators) - 1:
        cuts.append(len(g.operators) - 1)
    return cuts


def prefix(m, g, upto: int) -> bytes:
    """The model of ops ``0..upto``, the output of op ``upto`` its output (a cut point)."""
    return _cut(m, g, g.operators[:upto + 1], list(g.inputs), list(g.operators[upto].outputs))


def suffix(m, g, after: int) -> bytes:
    """The model of the ops after cut point ``after``, fed the tensor op ``after`` writes."""
    return _cut(m, g, g.operators[after + 1:], list(g.operators[after].outputs), list(g.outputs))


def _cut(m, g, ops, inputs, outputs) -> bytes:
    import copy

    from contract.tflite_file import pack

    p = copy.copy(m)
    sg = copy.copy(g)
    sg.operators = ops
    sg.inputs, sg.outputs = inputs, outputs
    p.subgraphs = [sg]
    p.signatureDefs = None
    p.metadata = None
    return pack(p)


def _segment_name(g, ops: Sequence[int]) -> str:
    """The common scope of a segment's output tensor names (``inception_v3/mixed3``)."""
    names = []
    for i in ops:
        for t in g.operators[i].outputs:
            n = g.tensors[t].name
            n = n.decode() if isinstance(n, bytes) else str(n)
            names.append(n.split(";")[0])
    if not names:
        return "?"
    parts = [n.split("/") for n in names]
    common = []
    for level in zip(*parts):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    if len(common) >= 2:
        return "/".join(common[:3])
    return names[-1].split("/")[min(1, len(names[-1].split("/")) - 1)][:40]


TIMER = r"""
import json, sys, time
import numpy as np

from contract.litert import TFLiteModel
job = json.load(open(sys.argv[1]))
models = [TFLiteModel(p, num_threads=job["threads"], xnnpack=job["xnnpack"]) for p in job["paths"]]
x = np.random.RandomState(0).uniform(-1, 1, [int(v) for v in models[0].input["shape"]]).astype(np.float32)
ins = [m.quantize_input(x) for m in models]
for _ in range(job["warmup"]):
    for m, xi in zip(models, ins): m.invoke_raw(xi)
times = [[] for _ in models]
for _ in range(job["runs"]):
    for k, (m, xi) in enumerate(zip(models, ins)):
        t = time.perf_counter(); m.invoke_raw(xi); times[k].append((time.perf_counter() - t) * 1e3)
json.dump({"times": times}, open(job["out"], "w"))
"""


def profile(path: str, threads: int = 2, runs: int = 20, warmup: int = 3,
            xnnpack: bool = True, log=print) -> dict:
    """The segment profile of one .tflite (see the module's docstring)."""
    import subprocess

    with open(path, "rb") as f:
        data = f.read()
    try:
        m, g, names = graph(data)
    except ProfileError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged flatbuffer raises many types
        raise ProfileError(f"{path} is not a readable .tflite model ({type(e).__name__})") \
            from None
    cuts = cut_points(g)
    full = TFLiteModel(model_content=data, num_threads=threads, xnnpack=xnnpack)
    deleg = full.delegation("xnnpack" if xnnpack else "none")
    cpu_nodes = _cpu_nodes(full)
    work = tempfile.mkdtemp(prefix="profile-")
    paths = []
    try:
        for k, i in enumerate(cuts):
            p = os.path.join(work, f"prefix{k}.tflite")
            with open(p, "wb") as f:
                f.write(data if i == len(g.operators) - 1 and k == len(cuts) - 1
                        else prefix(m, g, i))
            paths.append(p)
        job = os.path.join(work, "job.json")
        out = os.path.join(work, "times.json")
        with open(job, "w") as f:
            json.dump({"paths": paths, "threads": threads, "xnnpack": xnnpack, "runs": runs,
                       "warmup": warmup, "out": out}, f)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-c", TIMER, job], cwd=root, capture_output=True,
                           text=True, env=dict(os.environ, PYTHONPATH=root))
        if r.returncode:
            raise ProfileError(f"timing the prefixes failed: {r.stderr.strip()[-400:]}")
        with open(out) as f:
            times = json.load(f)["times"]
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    med = [float(np.median(t)) for t in times]
    segments, prev, start = [], 0.0, 0
    for k, i in enumerate(cuts):
        ops = list(range(start, i + 1))
        kinds: Dict[str, int] = {}
        for j in ops:
            kinds[names[j]] = kinds.get(names[j], 0) + 1
        cpu = {}
        for j in ops:
            if j in cpu_nodes:
                cpu[names[j]] = cpu.get(names[j], 0) + 1
        segments.append({"segment": _segment_name(g, ops), "ops": kinds, "cpu_ops": cpu,
                         "ms": med[k] - prev, "cumulative_ms": med[k]})
        prev, start = med[k], i + 1
    log(f"[profile] {os.path.basename(path)}: {len(segments)} segments timed in "
        f"{time.perf_counter() - t:.0f} s; whole model {med[-1]:.2f} ms", flush=True)
    return {"artifact": os.path.basename(path), "threads": threads, "runs": runs,
            "delegate": "xnnpack" if xnnpack else "none", "delegation": deleg,
            "total_ms": med[-1], "segments": segments,
            "method": "prefix models cut at single-tensor boundaries, interleaved medians; a "
                      "segment's time is its prefix's minus the previous prefix's"}


def _cpu_nodes(model) -> set:
    """Indices of the model's nodes the delegate did not take."""
    ops = model.interp._get_ops_details()
    taken = delegated_nodes(ops)
    return {o["index"] for o in ops if o["op_name"] != DELEGATE_NODE and o["index"] not in taken}


def _fmt(counts: dict) -> str:
    return ", ".join(f"{n} x{c}" for n, c in sorted(counts.items()))


def table(profiles: Sequence[dict]) -> str:
    """Markdown: one row per segment name (in the first artifact's order, others' extra
    segments where they fall), one time column and one CPU-kernel column per artifact."""
    order: List[str] = []
    for p in profiles:
        at = 0
        for s in p["segments"]:
            if s["segment"] in order:
                at = order.index(s["segment"]) + 1
            else:
                order.insert(at, s["segment"])
                at += 1
    by = [{s["segment"]: s for s in p["segments"]} for p in profiles]
    labels = [f"#{k + 1}" for k in range(len(profiles))]
    out = [f"{lab}: {p['artifact']}" for lab, p in zip(labels, profiles)] + [""]
    out += ["| segment | ops | " + " | ".join(f"{lab} ms" for lab in labels)
            + " | " + " | ".join(f"{lab} CPU-kernel ops" for lab in labels) + " |",
            "|---|---|" + "---|" * (2 * len(profiles))]
    for name in order:
        first = next(b[name] for b in by if name in b)
        times = [f"{b[name]['ms']:.2f}" if name in b else "" for b in by]
        cpu = [_fmt(b[name]["cpu_ops"]) if name in b else "" for b in by]
        out.append(f"| {name} | {_fmt(first['ops'])} | " + " | ".join(times) + " | "
                   + " | ".join(cpu) + " |")
    out.append("| **whole model** | | " + " | ".join(f"**{p['total_ms']:.2f}**"
                                                  for p in profiles) + " |" + " |" * len(profiles))
    for lab, p in zip(labels, profiles):
        d = p["delegation"]
        out.append(f"\n{lab} {p['artifact']}: {d['delegate']} took {d['delegated']} of "
                   f"{d['nodes']} nodes in {d['partitions']} partition(s); whole model "
                   f"{p['total_ms']:.2f} ms")
    return "\n".join(out)


def main(paths: Sequence[str], threads: int = 2, runs: int = 20, warmup: int = 3,
         xnnpack: bool = True, out: Optional[str] = None) -> int:
    profiles = [profile(p, threads, runs, warmup, xnnpack) for p in paths]
    print(table(profiles))
    if out:
        from contract.manifest import atomic_write_json

        atomic_write_json(out, {"profiles": profiles})
        print(f"profile: {out}")
    return 0
