"""Accuracy-aware recipe choice: the smallest (or fastest) artifact within a drift budget.

    python -m pipeline.choose artifacts/demo --results reports/demo --budget 0.3 --goal smallest

Reads the evaluation (``accuracy.jsonl``) and host latency (``latency.jsonl``) records of every
artifact, keeps those whose top-1 is within ``--budget`` points of the float model (and, if
asked, whose argmax agreement with it is at least ``--min-agreement``), and picks the smallest or
the fastest. When no full-integer model meets the budget, it does what OpenVINO NNCF's
accuracy-aware quantization does with ``max_drop``: it ranks the Inception blocks by their
quantization error (TFLite's debugger, ``quantize/debug.py``), keeps the worst block in float,
converts, evaluates and benchmarks that model, and adds the next-worst block until the model
fits or ``--max-steps`` is reached. Each step's artifact goes to ``<artifacts>_choice/`` (its own
manifest), its records to ``<results>/choice.jsonl``, and the decision to
``<results>/choice.json``: what was kept in float and what it cost in size and latency.
Exit status: 0 when an artifact was chosen, 3 when none meets the budget, 2 on bad input.
"""
from __future__ import annotations

import argparse
import dataclasses
import enum
import os
import shutil
import sys
import tempfile
from typing import Callable, List, Optional

from contract.exitcodes import BAD_INPUT, NOTHING_CHOSEN  # no artifact fits: still a decision
from contract.recipes import from_entry, get_recipe
from contract import records
from contract.manifest import atomic_write_json, read_manifest


class Goal(str, enum.Enum):
    SMALLEST = "smallest"  # fewest bytes, then faster, then less drift
    FASTEST = "fastest"  # lowest host p50, then smaller


class Device(str, enum.Enum):
    """Where the chosen model will run (the job's ``target``): the app's accelerators and the
    board's delegate. Each admits the graphs that run there whole (``admits``)."""
    CPU = "cpu"  # XNNPACK: any TFLite graph; the fastest is usually what is wanted
    GPU = "gpu"  # LiteRT's GPU accelerator: float graphs (fp32, fp16 weights)
    NPU = "npu"  # NPUs and DSPs: integer-only graphs, no float op inside
    EDGETPU = "edgetpu"  # the Edge TPU: the compiler's int8 models


# the accelerator a device's rows carry (records' "delegate")
DEVICE_DELEGATE = {"cpu": "xnnpack", "gpu": "gpu", "npu": "npu", "edgetpu": "edgetpu"}
# choose's --target: a device, or (older) a runtime: tflite means the CPU, coreml Core ML
RUNTIME_OF = {"cpu": "tflite", "gpu": "tflite", "npu": "tflite", "edgetpu": "edgetpu",
              "tflite": "tflite", "coreml": "coreml"}


def admits(device: Optional[str], c: dict) -> Optional[str]:
    """Why ``device`` cannot run candidate ``c`` whole (None: it can). Judged on the graph's
    op list (``float_ops``: ops computing in floating point, counted from the file), not on
    the recipe's name."""
    if device in (None, "cpu"):
        return None
    if device == "gpu":
        if c.get("weights") not in ("float32", "float16") or c.get("activations") != "float32":
            return "the GPU runs float graphs (fp32, fp16 weights)"
        return None
    fo = c.get("float_ops")
    if fo is None:
        return "its op list could not be read"
    if fo:
        return f"{fo} op(s) compute in float inside the graph"
    if device == "edgetpu" and c.get("activations") != "int8":
        return "the Edge TPU runs 8-bit graphs"
    return None


def candidates(rows: List[dict], device: Optional[str] = None,
               float_ops: Optional[Callable[[dict], Optional[int]]] = None) -> List[dict]:
    """One candidate per evaluated artifact: size, top-1, drift, agreement, p50. The host's
    rows, unless ``device`` rows exist for an artifact (a phone's or a board's accuracy rows
    for the device's accelerator, and its latency rows): then that device's drift, agreement
    and latency are the candidate's (``numbers_from``), and a device row flagged as not fully
    accelerated makes the candidate ``not_fully_accelerated``."""
    from edge_eval.report import is_device_row

    want = DEVICE_DELEGATE.get(device or "")
    lat, dev_lat = {}, {}
    for r in rows:
        if r["kind"] == "latency" and r["status"] == "ok" and r.get("latency_ms"):
            on_device = (r.get("device") or {}).get("kind") not in (None, "host")
            if on_device and want and r.get("delegate") == want:
                dev_lat.setdefault(r["artifact"], r["latency_ms"]["p50"])
            elif not on_device and r.get("delegate") == "xnnpack":
                lat.setdefault(r["artifact"], r["latency_ms"]["p50"])
    device_rows = {r["artifact"]: r for r in rows if is_device_row(r) and want
                   and r.get("delegate") == want and r["status"] == "ok" and r.get("drift")}
    device_failed = {r["artifact"]: r for r in rows if is_device_row(r) and want
                     and r.get("delegate") == want and r["status"] == "failed"}
    out = []
    for r in rows:
        if r["kind"] != "accuracy" or r["status"] != "ok" or not r.get("drift") or \
                is_device_row(r):
            continue
        recipe = from_entry(r)  # the structured fields the record carries, not its name
        d = device_rows.get(r["artifact"])
        src = d or r
        dev = (d.get("device") or {}) if d else {}
        c = {"artifact": r["artifact"], "recipe": r.get("recipe"),
             "target": r.get("target"), "bytes": r.get("bytes"),
             "top1": src["accuracy"]["top1"],
             "drift_points": src["drift"]["top1_delta_points"],
             "agreement": src["drift"]["argmax_agreement"],
             "p50_ms": dev_lat.get(r["artifact"]) if d else lat.get(r["artifact"]),
             "numbers_from": (f"{dev.get('name') or dev.get('kind')} {want}"
                              + _images_of(d) if d else "host"),
             "full_integer": bool(recipe and recipe.full_integer),
             "weights": recipe.weights if recipe else None,
             "activations": recipe.activations if recipe else None,
             "float_blocks": ",".join(recipe.float_blocks) if recipe and
             recipe.float_blocks else None}
        if d and (d.get("accelerator") or {}).get("flagged") and device != "cpu":
            # an accelerator that left ops to the CPU; on a CPU target, XNNPACK leaving ops to
            # the built-in kernels is only slower, which its latency says
            c["not_fully_accelerated"] = d["accelerator"].get("fallback_reason") or True
        bad = device_failed.get(r["artifact"])
        if bad and not d:
            where = (bad.get("device") or {}).get("name") or (bad.get("device") or {}).get("kind")
            c["fails_on_device"] = f"it failed on {where} {want}: {bad.get('error')}"
        if float_ops is not None:
            c["float_ops"] = float_ops(r)
        out.append(c)
    return out


def _images_of(r: dict) -> str:
    """" on N <split> images" of a row's evaluation set ("" when it does not say)."""
    es = r.get("eval_set") or {}
    if not es.get("images"):
        return ""
    return f" on {es['images']} {es.get('split') or ''} images".replace("  ", " ")


def float_op_counter(artifacts_dir: str) -> Callable[[dict], Optional[int]]:
    """``float_ops`` of an artifact's file (contract.tflite_file.float_ops; convert/ records the
    same count in the manifest), once per file; None for a file that is not a readable
    .tflite."""
    cache: dict = {}
    try:
        for a in read_manifest(artifacts_dir, required=False).get("artifacts", []):
            if isinstance(a, dict) and isinstance(a.get("float_ops"), int):
                cache[a.get("file")] = a["float_ops"]
    except Exception:  # an unreadable manifest: the files are read instead
        pass

    def count(r: dict) -> Optional[int]:
        name = r.get("artifact") or ""
        if name not in cache:
            path = os.path.join(artifacts_dir, os.path.basename(name))
            try:
                from contract.tflite_file import float_ops

                with open(path, "rb") as f:
                    cache[name] = len(float_ops(f.read())) if name.endswith(".tflite") else None
            except Exception:  # a missing or foreign file: "could not be read"
                cache[name] = None
        return cache[name]
    return count


def meets(c: dict, budget: float, min_agreement: Optional[float] = None) -> bool:
    return c["drift_points"] >= -budget - 1e-9 and (
        min_agreement is None or c["agreement"] >= min_agreement - 1e-12)


def pick(cands: List[dict], budget: float, goal: str, min_agreement: Optional[float] = None,
         integer_only: bool = False, device: Optional[str] = None) -> Optional[dict]:
    """The best candidate that meets the budget and runs whole on ``device`` (None if none
    does). ``smallest``: fewest bytes (then faster, then less drift); ``fastest``: lowest p50
    (then smaller). ``integer_only``: what ``npu`` admits (no float op in the graph)."""
    ok = [c for c in cands if meets(c, budget, min_agreement)
          and admits(device, c) is None and not c.get("not_fully_accelerated")
          and not c.get("fails_on_device")
          and (not integer_only or admits("npu", c) is None)]
    if goal == "fastest":
        ok = [c for c in ok if c["p50_ms"] is not None]
        key = lambda c: (c["p50_ms"], c["bytes"] or 0, -c["drift_points"])  # noqa: E731
    elif goal == "smallest":
        ok = [c for c in ok if c["bytes"]]
        key = lambda c: (c["bytes"], c["p50_ms"] or float("inf"), -c["drift_points"])  # noqa
    else:
        raise ValueError(f"goal must be smallest or fastest. Received: {goal!r}")
    return min(ok, key=key) if ok else None


def _float_source(manifest: dict) -> Optional[dict]:
    for s in manifest.get("sources", {}).values() if isinstance(manifest.get("sources"), dict) \
            else manifest.get("sources", []):
        if not s.get("qat"):
            return s
    return None


def block_order(src, calib) -> List[dict]:
    """Inception blocks, worst quantization error first (``mixed*`` only: the blocks a
    selective recipe can name), measured on the calibration images, whose calibrated model the
    selective steps then reuse."""
    from quantize.debug import layer_error_report

    rep = layer_error_report(src, get_recipe("static_wi8_ai8"), calib)
    return [b for b in rep["blocks"] if b["block"].startswith("mixed")]


def _evidence(rows: List[dict], where: str, artifacts_dir: str) -> dict:
    """The float reference record of an evaluation and which images it was (split, count)."""
    if not any(r["kind"] == "accuracy" for r in rows):
        raise ValueError(f"no accuracy records in {where}: run python -m edge_eval "
                         f"accuracy {artifacts_dir} --out {where} first")
    ref = next((r for r in rows if r["kind"] == "accuracy" and r.get("target") == "keras"
                and r["status"] == "ok"), None)
    if ref is None:
        raise ValueError(f"{where} has no float reference record to measure drift from")
    es = ref.get("eval_set") or {}
    return {"ref": ref, "split": es.get("split", "test"), "images": es.get("images"),
            "split_is": es.get("split_is") or "the test split", "source": es.get("source")}


def choose(artifacts_dir: str, results_dir: str, budget: float, goal: str = "smallest",
           min_agreement: Optional[float] = None, integer_only: bool = False,
           target: str = "cpu",
           max_steps: int = 4, calib_images: int = 200,
           images: Optional[int] = None, data_path: Optional[str] = None, threads: int = 2,
           bench_runs: int = 50, seed: int = 0, log=print, select_on: Optional[str] = None,
           choice_images: Optional[int] = None) -> dict:
    """The choice. ``select_on``: a folder with the accuracy records of held-out images
    (``edge_eval accuracy --split holdout``): candidates and selective steps are judged there,
    and the chosen artifact's test-split numbers (``results_dir``, what the report quotes) are
    reported beside it; without it the choice is made on the test split itself, and
    choice.json says so (optimistic: the same images pick and report).

    ``target``: where the model will run - ``cpu``, ``gpu``, ``npu``, ``edgetpu`` (each admits
    only the graphs it runs whole: ``admits``; with a phone's or a board's rows for that
    accelerator, their drift and latency decide) - or, as before, a runtime (``tflite``: the
    CPU; ``coreml``)."""
    from edge_eval import report

    if target not in RUNTIME_OF:
        raise ValueError(f"--target must be one of {sorted(RUNTIME_OF)}. Received: {target!r}")
    runtime = RUNTIME_OF[target]
    device = target if target in DEVICE_DELEGATE else ("cpu" if target == "tflite" else None)
    counter = float_op_counter(artifacts_dir)

    rows = [r for r in report.load(results_dir) if not r.get("choice_step")]
    test = _evidence(rows, results_dir, artifacts_dir)
    sel_rows = rows
    if select_on:
        # the held-out images decide; a phone's or a board's rows (measured on the images the
        # host evaluated) still decide for their artifacts, and say which images they are
        sel_rows = [r for r in report.load(select_on) if not r.get("choice_step")
                    and r["kind"] == "accuracy"] + [r for r in rows if r["kind"] == "latency"
                                                    or report.is_device_row(r)]
    sel = _evidence(sel_rows, select_on or results_dir, artifacts_dir)
    ref = sel["ref"]
    if sel["split"] == "test":
        log("[choose] deciding on the test split that the report quotes (optimistic): give "
            "--select-on with held-out records (edge_eval accuracy --split holdout)", flush=True)
    else:
        log(f"[choose] deciding on {sel['images']} held-out images ({sel['split_is']}); the "
            f"test split ({test['images']} images) is only reported", flush=True)
    every = candidates(sel_rows, device, counter)
    test_cands = {c["artifact"]: c for c in candidates(rows, device, counter)}
    by_target = sorted({c["target"] for c in every if c["target"]})
    cands = [c for c in every if c["target"] == runtime]  # one runtime's artifacts compete
    if runtime == "edgetpu" and not cands:
        # no compiled model was evaluated (no Coral, no libedgetpu): the int8 graphs the
        # compiler would map whole, on the host's numbers, said so in choice.json
        cands = [dict(c, note="not compiled/evaluated on an Edge TPU: the host's numbers of "
                      "the graph edgetpu_compiler would map") for c in every
                 if c["target"] == "tflite"]
    refused = {c["artifact"]: admits(device, c) or c.get("fails_on_device") or (
        f"not fully accelerated on the device: {c['not_fully_accelerated']}"
        if c.get("not_fully_accelerated") else None) for c in cands}
    full_int = [c for c in cands if c["full_integer"] and not c["float_blocks"]]
    steps: List[dict] = []
    step_rows: List[dict] = []
    best_int = max(full_int, key=lambda c: c["drift_points"], default=None)
    int_fits = any(meets(c, budget, min_agreement) for c in full_int)
    log(f"[choose] budget: top-1 within {budget} points of float ({100 * ref['accuracy']['top1']:.2f} %)"
        + (f", agreement >= {100 * min_agreement:.2f} %" if min_agreement is not None else "")
        + f"; goal: {goal}" + ("; full-integer models only" if integer_only else ""), flush=True)
    order: List[dict] = []
    srcinfo = None
    if not int_fits and max_steps > 0 and device in (None, "cpu"):
        manifest = read_manifest(artifacts_dir)
        srcinfo = _float_source(manifest)
        if srcinfo is None or not os.path.exists(srcinfo.get("path", "")):
            log("[choose] full int8 misses the budget, but the float source model is not at hand: "
                "no selective steps", flush=True)
        else:
            order, measure, step_rows = prepare_steps(
                srcinfo["path"], artifacts_dir, select_on or results_dir, calib_images,
                choice_images if select_on else images, data_path, threads, bench_runs, seed,
                log, split=sel["split"])
            steps = selective_search(order, budget, min_agreement, max_steps, measure, log)
            cands += [_step_candidate(st) for st in steps if st["status"] == "ok"]
    chosen = pick(cands, budget, goal, min_agreement, integer_only, device)
    # the same rule for the other runtimes' artifacts (Core ML: no selective steps)
    others = {t: pick([c for c in every if c["target"] == t], budget, goal, min_agreement,
                      integer_only) for t in by_target if t not in (runtime, "keras")}
    for r in step_rows:
        r["choice_step"] = True
    reported: List[dict] = []  # the chosen step's test-split records
    chosen_test = None
    if chosen is not None and select_on:
        chosen_test = test_cands.get(chosen["artifact"])
        step_file = next((st["file"] for st in steps if st.get("artifact") == chosen["artifact"]
                          and st.get("file")), None)
        if chosen_test is None and step_file:
            reported = _report_step(step_file, srcinfo["path"], results_dir, images, data_path,
                                    threads, bench_runs, log)
            chosen_test = next(iter(candidates(reported)), None)
    elif chosen is not None:
        chosen_test = chosen
    if select_on:
        records.write_jsonl(step_rows, os.path.join(select_on, records.RowsFile.CHOICE))
        records.write_jsonl(reported, os.path.join(results_dir, records.RowsFile.CHOICE))
    else:
        records.write_jsonl(step_rows, os.path.join(results_dir, records.RowsFile.CHOICE))
    base = best_int
    on = lambda e: {k: e[k] for k in ("split", "images", "split_is", "source")}  # noqa: E731
    out = {
        "selected_on": on(sel), "reported_on": on(test),
        "chosen_test": chosen_test,
        "budget_points": budget, "min_agreement": min_agreement, "goal": goal,
        "integer_only": integer_only, "float_top1": ref["accuracy"]["top1"],
        "full_integer_fits": int_fits,
        "best_full_integer": best_int,
        "block_order": [{"block": b["block"], "mean_rmse_over_scale": b["mean_rmse_over_scale"]}
                        for b in order],
        "steps": steps,
        "target": target,
        "runtime": runtime,
        "device": device,
        "numbers_from": chosen.get("numbers_from") if chosen else None,
        "refused_on_target": {k: v for k, v in refused.items() if v},
        "chosen": chosen,
        "chosen_other_targets": others,
        "candidates": sorted(cands, key=lambda c: (c["bytes"] or 0)),
        "why": _why(chosen, budget, goal, int_fits, steps, base)
        + _where(sel, test, chosen, chosen_test, budget),
    }
    atomic_write_json(os.path.join(results_dir, "choice.json"), out)
    log(f"[choose] {out['why']}", flush=True)
    return out


def _where(sel: dict, test: dict, chosen, chosen_test, budget: float) -> str:
    if chosen is not None and chosen.get("numbers_from") not in (None, "host"):
        # a phone's or a board's rows decided: they are measured on the images the host
        # evaluated (the test split), not on the held-out ones
        return (f". Chosen on the device's own rows ({chosen['numbers_from']}); the host's "
                f"held-out images judged the artifacts that device has no rows for")
    if sel["split"] == "test":
        return ". Chosen on the test split the report quotes (no held-out records given)"
    s = f". Chosen on {sel['images']} held-out images ({sel['split_is']})"
    if chosen is not None and chosen_test is not None:
        d = chosen_test["drift_points"]
        s += (f"; on the {test['images']} test images: top-1 {d:+.2f} points"
              + ("" if d >= -budget - 1e-9 else f" - outside the {budget}-point budget"))
    return s


def _report_step(step_file: str, src_path: str, results_dir: str, images, data_path, threads,
                 bench_runs, log) -> List[dict]:
    """The chosen selective step on the test split (it was judged on held-out images): its
    accuracy and latency records, for the report and the gate."""
    rows = measure_file(step_file, src_path, results_dir, images, data_path, threads,
                        bench_runs, log, split="test")
    for r in rows:
        r["choice_step"] = True
    return rows


def measure_file(path: str, src_path: str, results_dir: str, images, data_path, threads,
                 bench_runs, log, split: str) -> List[dict]:
    """One artifact's accuracy records on ``split`` (drift against ``src_path``) and its host
    latency records, measured in a work folder under ``results_dir`` that is then removed."""
    from edge_eval import harness

    folder, name = os.path.split(path)
    work = tempfile.mkdtemp(prefix=".choice-", dir=results_dir)
    try:
        acc = harness.evaluate(folder, work, reference=src_path, data_path=data_path,
                               images=images, threads=threads, seed=0, only=[name], log=log,
                               split=split)
        lat = harness.benchmark(folder, work, threads=(threads,), runs=bench_runs,
                                only=[name], log=log)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [r for r in acc if r.get("target") != "keras"] + lat


def _step_candidate(step: dict) -> dict:
    """A measured step as the candidate it competes as (the fields ``candidates`` makes)."""
    c = {k: v for k, v in step.items() if k not in ("step", "status", "meets_budget", "file")}
    c["float_blocks"] = ",".join(step["float_blocks"])
    return c


def _why(chosen, budget, goal, int_fits, steps, base) -> str:
    if chosen is None:
        s = f"no artifact is within {budget} points of float: nothing chosen"
    else:
        s = (f"chose {chosen['artifact']} ({chosen['recipe']}): the {goal} artifact within the "
             f"budget, top-1 {chosen['drift_points']:+.2f} points, {chosen['bytes'] / 1e6:.3f} MB"
             + (f", p50 {chosen['p50_ms']:.3f} ms" if chosen.get("p50_ms") else ""))
    if not int_fits and base is not None:
        s += (f". Full int8 missed the budget (best {base['artifact']}: "
              f"{base['drift_points']:+.2f} points)")
        if steps:
            last = steps[-1]
            s += (f"; {len(steps)} selective step(s), last keeping {last['float_blocks']} in "
                  f"float: " + (f"{last['drift_points']:+.2f} points" if last["status"] == "ok"
                                else f"failed ({last['error']})")
                  + (" - fits" if last["meets_budget"] else " - still outside"))
    return s


def selective_search(order: List[dict], budget: float, min_agreement: Optional[float],
                     max_steps: int, measure: Callable[[List[str]], dict],
                     log=print) -> List[dict]:
    """The selective steps' decision rule, apart from how a step is measured: step k keeps the
    k worst blocks of ``order`` in float; ``measure(blocks)`` returns the step's candidate (as
    ``candidates`` makes them, plus ``file``) or ``{"error": ...}``; the search stops at the
    first step that meets the budget. A failed step is recorded and the next one is tried."""
    steps: List[dict] = []
    for k in range(1, min(max_steps, len(order)) + 1):
        blocks = [b["block"] for b in order[:k]]
        recipe = "static_wi8_ai8+float:" + ",".join(blocks)
        log(f"[choose] step {k}: {recipe}", flush=True)
        c = measure(blocks)
        if "error" in c:
            steps.append({"step": k, "float_blocks": blocks, "recipe": recipe,
                          "status": "failed", "error": c["error"], "meets_budget": False})
            log(f"[choose] step {k} failed: {c['error']}", flush=True)
            continue
        fits = meets(c, budget, min_agreement)
        steps.append(dict(c, step=k, float_blocks=blocks, status="ok", meets_budget=fits))
        log(f"[choose] step {k}: {c['drift_points']:+.2f} points, agreement "
            f"{100 * c['agreement']:.2f} %, {c['bytes'] / 1e6:.3f} MB"
            + (f", p50 {c['p50_ms']:.3f} ms" if c.get("p50_ms") else "")
            + (" - fits" if fits else ""), flush=True)
        if fits:
            break
    return steps


def prepare_steps(src_path, artifacts_dir, results_dir, calib_images, images, data_path,
                  threads, bench_runs, seed, log, split: str = "test"):
    """The block order (worst quantization error first) and the ``measure`` function that
    converts, evaluates and benchmarks one selective step for real; the step's records are
    appended to the returned list."""
    from convert import api

    out_dir = os.path.normpath(artifacts_dir) + "_choice"
    # the conversion's own request: calibration and check images drawn as convert draws them
    req = api.Request(model=src_path, out=out_dir, recipes=[get_recipe("static_wi8_ai8")],
                      calib_images=calib_images, data_path=data_path, seed=seed,
                      check_split=split, metadata=None)
    src = api.load(req, log)
    given = api.inputs(req, src)
    order = block_order(src, given.calib)
    log("[choose] blocks by quantization error (mean rmse/scale): " + ", ".join(
        f"{b['block']} {b['mean_rmse_over_scale']:.2f}" for b in order), flush=True)
    step_rows: List[dict] = []

    def measure(blocks: List[str]) -> dict:
        recipe = get_recipe("static_wi8_ai8+float:" + ",".join(blocks))
        manifest = api.convert(dataclasses.replace(req, recipes=[recipe]), src, log, given)
        entry = next((a for a in manifest["artifacts"] if a["recipe"] == recipe.name
                      and a["source_sha256"] == src.sha256), None)
        if entry is None:
            return {"error": next((f["error"] for f in manifest["failures"]
                                   if f["recipe"] == recipe.name), "conversion failed")}
        new = measure_file(os.path.join(out_dir, entry["file"]), src_path, results_dir, images,
                           data_path, threads, bench_runs, log, split)
        step_rows.extend(new)
        c = next(iter(candidates(new)), None)
        if c is None:
            return {"error": "evaluation failed"}
        return dict(c, file=os.path.join(out_dir, entry["file"]))

    return order, measure, step_rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.choose",
                                description=__doc__.splitlines()[0],
                                epilog="\n".join(__doc__.splitlines()[2:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifacts", help="folder with manifest.json")
    p.add_argument("--results", required=True, help="folder with accuracy.jsonl/latency.jsonl")
    p.add_argument("--budget", type=float, default=0.3, help="allowed top-1 drop, points")
    p.add_argument("--goal", choices=[g.value for g in Goal], default=Goal.SMALLEST.value)
    p.add_argument("--target", default="cpu", choices=sorted(RUNTIME_OF),
                   help="where the model will run: cpu (XNNPACK), gpu (float graphs), npu "
                        "(integer-only graphs, no float op inside), edgetpu (the compiler's "
                        "int8 models); tflite means cpu, coreml chooses among Core ML packages. "
                        "A phone's or board's rows for that accelerator decide when present")
    p.add_argument("--min-agreement", type=float,
                   help="also require this argmax agreement with float (0-1)")
    p.add_argument("--integer-only", action="store_true",
                   help="only integer-only graphs, checked on the op list (no float op "
                        "inside: what --target npu admits)")
    p.add_argument("--max-steps", type=int, default=4, help="selective steps at most")
    p.add_argument("--calib-images", type=int, default=200,
                   help="images that calibrate int8 and rank the blocks by error")
    p.add_argument("--select-on", metavar="DIR",
                   help="accuracy records of held-out images (edge_eval accuracy --split "
                        "holdout --out DIR): the choice is made there and the test split "
                        "(--results) only reported; without it the test split decides")
    p.add_argument("--images", type=int, help="test images a chosen selective step is "
                                              "reported on (all when not given)")
    p.add_argument("--choice-images", type=int,
                   help="held-out images each selective step is judged on")
    p.add_argument("--data-path")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bench-runs", type=int, default=50)
    args = p.parse_args(argv)
    if args.budget < 0:
        print(f"error: --budget must be >= 0. Received: {args.budget}", file=sys.stderr)
        return BAD_INPUT
    if args.min_agreement is not None and not 0 <= args.min_agreement <= 1:
        print(f"error: --min-agreement is a fraction in [0, 1]. Received: {args.min_agreement}",
              file=sys.stderr)
        return BAD_INPUT
    try:
        out = choose(args.artifacts, args.results, args.budget, args.goal, args.min_agreement,
                     args.integer_only, args.target, args.max_steps, args.calib_images,
                     args.images, args.data_path, args.threads, args.bench_runs,
                     select_on=args.select_on, choice_images=args.choice_images)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return BAD_INPUT
    return 0 if out["chosen"] else NOTHING_CHOSEN


if __name__ == "__main__":
    sys.exit(main())
