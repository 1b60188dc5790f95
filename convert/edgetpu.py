"""Edge TPU readiness of a full-integer ``.tflite``: a compatibility report against the Edge TPU's
supported-op table, the predicted split, the on-chip memory budget, and ``edgetpu_compiler`` when
it is installed (its log parsed into the manifest).

The compiler maps one contiguous run of supported ops from the graph's start; the first op it
cannot map (an unsupported type, a float tensor, a dynamic shape) ends the Edge TPU part and
everything after it runs on the CPU. The Edge TPU caches parameters in about 8 MB of on-chip
SRAM; a model whose weights do not fit streams the rest from host memory on every inference
(slower, but it runs): Inception-v3 at 299 px (~23 MB of int8 weights) is such a model.

Sources: Coral's "TensorFlow models on the Edge TPU" (supported operations) and "Edge TPU
Compiler" pages.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Dict, Optional

import numpy as np

from contract import recipes
from contract.recipes import from_entry
from contract.litert import TFLiteModel
from contract.manifest import read_manifest, sha256_file, update_manifest

# op -> known limitation (Coral's table); any op not here runs on the CPU
SUPPORTED: Dict[str, str] = {
    "ADD": "", "AVERAGE_POOL_2D": "no fused activation",
    "CONCATENATION": "no fused activation; a constant input must be all zeros",
    "CONV_2D": "", "DEPTHWISE_CONV_2D": "", "DEQUANTIZE": "", "EXP": "",
    "FULLY_CONNECTED": "default weight format; 1-D output", "GATHER": "",
    "HARD_SWISH": "", "L2_NORMALIZATION": "", "LOGISTIC": "", "LSTM": "unidirectional",
    "MAXIMUM": "", "MAX_POOL_2D": "no fused activation",
    "MEAN": "reduction along x and/or y only", "MINIMUM": "", "MUL": "", "PACK": "",
    "PAD": "padding along x and/or y only", "PRELU": "", "QUANTIZE": "",
    "REDUCE_MAX": "", "RELU": "", "RELU6": "", "RELU_N1_TO_1": "", "RESHAPE": "",
    "RESIZE_BILINEAR": "3-D input/output", "RESIZE_NEAREST_NEIGHBOR": "3-D input/output",
    "RSQRT": "", "SLICE": "", "SOFTMAX": "1-D input, at most 16,000 values",
    "SPACE_TO_DEPTH": "", "SPLIT": "", "SQRT": "", "SQUARED_DIFFERENCE": "", "SQUEEZE": "",
    "STRIDED_SLICE": "", "SUB": "", "SUM": "", "TANH": "", "TRANSPOSE": "",
    "TRANSPOSE_CONV": "", "UNPACK": "",
}
ON_CHIP_BYTES = 8 * 1024 * 1024  # SRAM for parameter caching (a little is reserved)
COMPILER = "edgetpu_compiler"
INSTALL_HINT = ("edgetpu_compiler is not on PATH: it runs on x86-64 Debian/Ubuntu; install it "
                "from Coral's apt repository (https://coral.ai/docs/edgetpu/compiler/: "
                "'apt-get install edgetpu-compiler' after adding "
                "packages.cloud.google.com/apt coral-edgetpu-stable)")
_INTEGER = {"int8", "uint8", "int32"}  # int32: biases


def compatibility_report(tflite_path: str) -> dict:
    """Every op in execution order against the supported-op table; the predicted split."""
    m = TFLiteModel(tflite_path, num_threads=1, xnnpack=False)
    tensors = {t["index"]: t for t in m.interp.get_tensor_details()}
    ops = m.interp._get_ops_details()
    rows, first_cpu, dyn_batch = [], None, False
    for i, d in enumerate(ops):
        name = d["op_name"]
        reason = None
        if name not in SUPPORTED:
            reason = f"{name} is not in the Edge TPU's supported-op table"
        else:
            for t in list(d["inputs"]) + list(d["outputs"]):
                if t < 0:
                    continue
                dt = np.dtype(tensors[t]["dtype"]).name
                if dt not in _INTEGER and not (name == "QUANTIZE" and t in d["inputs"]) and \
                        not (name == "DEQUANTIZE" and t in d["outputs"]):
                    reason = f"{name} has a {dt} tensor ({tensors[t]['name'][:60]})"
                    break
                sig = tensors[t].get("shape_signature")
                if sig is not None and len(sig) and any(int(s) < 0 for s in sig[1:]):
                    reason = f"{name} has a dynamic shape"
                    break
                dyn_batch = dyn_batch or (sig is not None and len(sig) > 0 and int(sig[0]) < 0)
        if reason and first_cpu is None:
            first_cpu = i
        rows.append({"index": i, "op": name, "supported": reason is None, "reason": reason})
    # the compiler maps the run of ops before the first one it cannot map (QUANTIZE/DEQUANTIZE
    # at the float I/O boundary of a float-I/O model run on the CPU without splitting it)
    for r in rows:
        r["predicted"] = "edgetpu" if first_cpu is None or r["index"] < first_cpu else "cpu"
    counts: Dict[str, Dict[str, int]] = {}
    for r in rows:
        c = counts.setdefault(r["op"], {"edgetpu": 0, "cpu": 0})
        c[r["predicted"]] += 1
    from convert.tflite import weight_bytes

    with open(tflite_path, "rb") as f:
        wbytes = weight_bytes(f.read())
    split = None
    if first_cpu is not None:
        r = rows[first_cpu]
        split = {"index": first_cpu, "op": r["op"], "reason": r["reason"],
                 "edgetpu_ops": first_cpu, "cpu_ops": len(rows) - first_cpu}
    return {
        "ops": len(rows),
        "edgetpu_ops": sum(r["predicted"] == "edgetpu" for r in rows),
        "cpu_ops": sum(r["predicted"] == "cpu" for r in rows),
        "operators": [{"op": k, **v, "limitation": SUPPORTED.get(k)} for k, v in counts.items()],
        "split": split,
        "unsupported": sorted({r["op"] for r in rows if r["reason"] and r["op"] not in SUPPORTED}),
        "warnings": ["the batch dimension is dynamic (-1) in the shape signature: "
                     "edgetpu_compiler 16 refuses dynamic-sized tensors (google-coral/edgetpu#829);"
                     " convert with a fixed batch (python -m convert pins 1)"]
        if dyn_batch else [],
        "parameter_bytes": int(wbytes),
        "on_chip_bytes": ON_CHIP_BYTES,
        "fits_on_chip": wbytes <= ON_CHIP_BYTES,
        "memory_note": (f"{wbytes / 2**20:.2f} MiB of parameters fit the ~8 MiB on-chip cache"
                        if wbytes <= ON_CHIP_BYTES else
                        f"{wbytes / 2**20:.2f} MiB of parameters exceed the ~8 MiB on-chip "
                        f"cache: the rest streams from host memory on every inference "
                        f"(slower; co-compiling models shares the cache)"),
    }


# --------------------------------------------------------------------------------------------
# the compiler and its log
# --------------------------------------------------------------------------------------------
_SIZE = re.compile(r"([\d.]+)\s*(B|KiB|MiB|GiB)")
_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3}
_FIELDS = {
    "Input size": "input_bytes", "Output size": "output_bytes",
    "On-chip memory used for caching model parameters": "on_chip_used_bytes",
    "On-chip memory remaining for caching model parameters": "on_chip_remaining_bytes",
    "Off-chip memory used for streaming uncached model parameters": "off_chip_bytes",
}


def _bytes(text: str) -> Optional[int]:
    m = _SIZE.search(text)
    return int(round(float(m.group(1)) * _UNITS[m.group(2)])) if m else None


def parse_compiler_log(text: str) -> dict:
    """edgetpu_compiler's console output -> numbers: sizes, on-/off-chip memory, subgraphs, ops
    mapped and not mapped, per-operator status."""
    out: dict = {"compiled": "Model compiled successfully" in text, "operators": []}
    m = re.search(r"Edge TPU Compiler version (\S+)", text)
    out["compiler_version"] = m.group(1) if m else None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in _FIELDS:
            out[_FIELDS[key]] = _bytes(value)
        elif key == "Number of Edge TPU subgraphs":
            out["subgraphs"] = int(value)
        elif key == "Total number of operations":
            out["total_ops"] = int(value)
        elif key == "Number of operations that will run on Edge TPU":
            out["edgetpu_ops"] = int(value)
        elif key == "Number of operations that will run on CPU":
            out["cpu_ops"] = int(value)
        elif key in ("Input model", "Output model", "Operation log"):
            out[key.lower().replace(" ", "_")] = value.strip()
    table = re.search(r"Operator\s+Count\s+Status\s*\n(.*)", text, re.S)
    if table:
        for line in table.group(1).splitlines():
            mm = re.match(r"^([A-Z][A-Z0-9_]+)\s+(\d+)\s+(.+?)\s*$", line)
            if mm:
                out["operators"].append({"op": mm.group(1), "count": int(mm.group(2)),
                                         "status": mm.group(3)})
    if "edgetpu_ops" not in out and "total_ops" in out and out["compiled"]:
        # the compiler omits the split lines when every op is mapped
        out["edgetpu_ops"], out["cpu_ops"] = out["total_ops"], 0
    m = re.search(r"(Compilation failed[^\n]*|Internal compiler error[^\n]*)", text)
    out["error"] = m.group(1).strip() if m else None
    if "total_ops" in out and "edgetpu_ops" in out:
        from contract.litert import delegation_record

        left: dict = {}
        for row in out["operators"]:
            if not row["status"].startswith("Mapped to Edge TPU"):
                left[row["op"]] = left.get(row["op"], 0) + row["count"]
        out["delegation"] = delegation_record("edgetpu", out["total_ops"], out["edgetpu_ops"],
                                              out.get("subgraphs"), left,
                                              "edgetpu_compiler's operation log")
    return out


def compile_model(tflite_path: str, out_dir: str, compiler: str = COMPILER,
                  timeout: float = 600.0, segments: int = 1) -> dict:
    """Runs edgetpu_compiler (argument list, no shell) and parses its log; when the compiler is
    not installed, says where to get it. ``segments`` > 1: ``--num_segments`` (a model larger
    than one Edge TPU's on-chip cache, pipelined over several: the compiler writes
    ``<name>_segment_<k>_of_<n>_edgetpu.tflite``)."""
    exe = shutil.which(compiler)
    if exe is None:
        return {"status": "unavailable", "error": INSTALL_HINT}
    os.makedirs(out_dir, exist_ok=True)
    args = [exe, "-s", "-o", out_dir] + ([f"--num_segments={segments}"] if segments > 1
                                         else []) + [tflite_path]
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "error": f"{compiler} ran past {timeout:.0f} s"}
    log = r.stdout + ("\n" + r.stderr if r.stderr else "")
    parsed = parse_compiler_log(log)
    base = os.path.splitext(os.path.basename(tflite_path))[0]
    if segments > 1:
        files = [f"{base}_segment_{k}_of_{segments}_edgetpu.tflite" for k in range(segments)]
    else:
        files = [f"{base}_edgetpu.tflite"]
    ok = r.returncode == 0 and parsed["compiled"] and all(
        os.path.isfile(os.path.join(out_dir, f)) for f in files)
    return {"status": "ok" if ok else "failed",
            "error": None if ok else (parsed.get("error") or f"exit code {r.returncode}"),
            "file": files[0] if ok and segments == 1 else None,
            "segments": files if ok and segments > 1 else None, "log": parsed,
            "log_text": log[-20000:]}


def check_compiled(data: bytes, spec) -> dict:
    """The converter's self-checks that apply to a compiled model (its arithmetic runs on the
    TPU, so no host comparison): its I/O types are the recipe's, its buffers aligned."""
    from contract.tflite_file import io_dtypes, misaligned

    ins, outs = io_dtypes(data)
    problems = [f"input {t}, the recipe's I/O is {spec.io}" for t in ins if t != spec.io] + [
        f"output {t}, the recipe's I/O is {spec.io}" for t in outs if t != spec.io]
    bad = misaligned(data)
    if bad:
        problems.append(f"{len(bad)} buffer(s) not 16-byte aligned")
    return {"passed": not problems, "problems": problems, "input_dtypes": ins,
            "output_dtypes": outs, "misaligned_buffers": len(bad),
            "what": "I/O types and buffer alignment (the TPU's arithmetic is checked by "
                    "evaluating it under the Edge TPU delegate)"}


def _whole_int8(entry: dict) -> bool:
    """A full-integer recipe with no op kept float (no ``+float:`` block, no XNNPACK float
    islands): what the Edge TPU compiler maps whole."""
    r = from_entry(entry)
    return bool(r and r.integer_only)


def annotate(out_dir: str, source_sha256: str, require_compiler: bool = False,
             log=print, segments: int = 1) -> dict:
    """Adds the compatibility report (and the compiler's result, when it is installed) to every
    full-integer artifact of a source in ``out_dir/manifest.json``; a compiled model becomes an
    artifact of its own (target ``edgetpu``)."""
    from convert.loop import ConvertError

    manifest = read_manifest(out_dir, required=False)
    arts = {a["file"]: a for a in manifest.get("artifacts", [])}
    todo = [a for a in arts.values() if a.get("source_sha256") == source_sha256
            and a.get("target") == "tflite" and _whole_int8(a)]
    if not todo:
        raise ConvertError("no full-integer TFLite artifact of this model to prepare for the "
                           "Edge TPU: convert static_wi8_ai8_uint8io first")
    if require_compiler and shutil.which(COMPILER) is None:
        raise ConvertError(INSTALL_HINT)
    for a in todo:
        path = os.path.join(out_dir, a["file"])
        rep = compatibility_report(path)
        comp = compile_model(path, out_dir, segments=segments)
        text = comp.pop("log_text", None)
        if comp["status"] == "ok":
            spec = from_entry(a).compiled_for_edgetpu()
            for k, cfile in enumerate(comp["segments"] or [comp["file"]]):
                with open(os.path.join(out_dir, os.path.splitext(cfile)[0] + ".log.txt"),
                          "w") as f:
                    f.write(text or "")
                with open(os.path.join(out_dir, cfile), "rb") as f:
                    check = check_compiled(f.read(), spec)
                if not check["passed"]:
                    log(f"[convert] {cfile}: check FAILED: {'; '.join(check['problems'])}",
                        flush=True)
                arts[cfile] = {"file": cfile, "target": "edgetpu", "recipe": spec.key,
                               "recipe_spec": recipes.fields(spec),
                               "source_sha256": source_sha256,
                               "source_name": a.get("source_name"),
                               "sha256": sha256_file(os.path.join(out_dir, cfile)),
                               "bytes": os.path.getsize(os.path.join(out_dir, cfile)),
                               "compiled_from": a["file"], "edgetpu_compiler": comp["log"],
                               "check": check}
                if comp["segments"]:
                    arts[cfile]["segment"] = {"index": k, "of": len(comp["segments"]),
                                              "runs_with": comp["segments"]}
        elif require_compiler:
            raise ConvertError(f"edgetpu_compiler failed on {a['file']}: {comp['error']}")
        a["edgetpu"] = {"report": rep, "compiler": comp}
        log(f"[convert] {a['file']}: Edge TPU: {rep['edgetpu_ops']}/{rep['ops']} ops predicted "
            f"on the TPU" + (f", split at #{rep['split']['index']} {rep['split']['op']}"
                             if rep["split"] else "") + f"; {rep['memory_note']}; compiler: "
            f"{comp['status']}" + (f" ({comp['error']})" if comp.get("error") else ""),
            flush=True)
    def change(current):  # this run's entries over what is listed now (merged under the lock)
        now = {x["file"]: x for x in current.get("artifacts", [])}
        now.update({k: v for k, v in arts.items()
                    if k in now or v.get("target") == "edgetpu"})
        return dict(current, artifacts=sorted(now.values(), key=lambda x: x["file"]))
    return update_manifest(out_dir, change)
