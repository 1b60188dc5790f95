"""The main job's report: edge_eval's report of the results folder, plus what only the job knows
(the recipe choice, ``choice.json``, and the stage times, ``pipeline.json``) and its gate.

    python -m pipeline.report reports/demo --require-choice

Exit 1 when a gate fails (the chosen artifact is not within the job's budget, or an artifact is
over ``--max-top1-drift``), 2 on a user error.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional, Tuple

from contract import exitcodes
from edge_eval import report as records_report
from edge_eval.report import read_json


def choice_section(results_dir: str) -> str:
    """The accuracy-aware recipe choice (``pipeline.choose``'s choice.json), if made."""
    c = read_json(os.path.join(results_dir, "choice.json"))
    if not c:
        return ""
    mb = lambda v: "" if v is None else f"{v / 1e6:.3f}"  # noqa: E731
    ms = lambda v: "" if v is None else f"{v:.3f}"  # noqa: E731
    out = ["", "## Recipe choice", "",
           f"Budget: top-1 within {c['budget_points']} points of float "
           f"({100 * c['float_top1']:.2f} %)"
           + (f", argmax agreement >= {100 * c['min_agreement']:.2f} %"
              if c.get("min_agreement") is not None else "")
           + f"; goal: {c['goal']}" + ("; integer-only graphs only" if c.get("integer_only")
                                       else "")
           + (f"; target: {c['device']} (only the graphs it runs whole; numbers from "
              f"{c.get('numbers_from') or 'the host'})" if c.get("device")
              else f"; among {c.get('target', 'tflite')} artifacts") + ".", "",
           f"**{c['why']}**", ""]
    refused = c.get("refused_on_target") or {}
    if refused:
        out += [f"Not admitted on {c.get('device')}: " + "; ".join(
            f"{a}: {why}" for a, why in sorted(refused.items())) + ".", ""]
    sel, rep = c.get("selected_on") or {}, c.get("reported_on") or {}
    if sel.get("split") and sel["split"] != "test":
        ct = c.get("chosen_test")
        out += [f"Decided on {sel.get('images')} held-out images ({sel.get('split_is')}); the "
                f"steps and candidates below are those images' numbers. The accuracy table "
                f"above is the test split ({rep.get('images')} images), which played no part "
                "in the choice" + (f"; there the chosen artifact is {ct['drift_points']:+.2f} "
                                   f"points from float (agreement {100 * ct['agreement']:.2f} %)"
                                   if ct else "") + ".", ""]
    elif sel:
        out += ["Decided on the test split itself (no held-out records were given), so the "
                "chosen artifact's drift is an optimistic estimate.", ""]
    for t, o in (c.get("chosen_other_targets") or {}).items():
        out += [f"Same rule among {t} artifacts: " + (
            f"{o['artifact']} ({o['drift_points']:+.2f} points, {o['bytes'] / 1e6:.3f} MB)"
            if o else "none within the budget") + ".", ""]
    if c.get("steps"):
        base = c.get("best_full_integer") or {}
        out += ["Selective steps (blocks kept in float, worst quantization error first; cost "
                "against full int8):", "",
                "| step | float blocks | Δ top-1 (pts) | agreement | MB | +MB | p50 ms | +ms | "
                "fits |", "|---|---|---|---|---|---|---|---|---|"]
        for s in c["steps"]:
            if s.get("status") != "ok":
                out.append(f"| {s['step']} | {','.join(s['float_blocks'])} | failed: "
                           f"{s.get('error')} | | | | | | no |")
                continue
            dmb = (s["bytes"] - base["bytes"]) / 1e6 if base.get("bytes") else None
            dms = (s["p50_ms"] - base["p50_ms"]) if s.get("p50_ms") and base.get("p50_ms") \
                else None
            out.append(f"| {s['step']} | {','.join(s['float_blocks'])} | "
                       f"{s['drift_points']:+.2f} | {100 * s['agreement']:.2f} | "
                       f"{mb(s['bytes'])} | {'' if dmb is None else f'{dmb:+.3f}'} | "
                       f"{ms(s.get('p50_ms'))} | {'' if dms is None else f'{dms:+.3f}'} | "
                       f"{'yes' if s['meets_budget'] else 'no'} |")
        out.append("")
    out += ["| candidate | recipe | Δ top-1 (pts) | agreement | MB | p50 ms |",
            "|---|---|---|---|---|---|"]
    for k in c.get("candidates", []):
        out.append(f"| {k['artifact']} | {k['recipe']} | {k['drift_points']:+.2f} | "
                   f"{100 * k['agreement']:.2f} | {mb(k['bytes'])} | {ms(k.get('p50_ms'))} |")
    return "\n".join(out) + "\n"


def pipeline_section(results_dir: str) -> str:
    """Per-stage wall times of the main job (``pipeline.json``), when the job wrote the folder."""
    st = read_json(os.path.join(results_dir, "pipeline.json"))
    if not st or not st.get("stages"):
        return ""
    out = ["", "## Main job stages", "", "Wall time of each stage when it last ran (a skipped "
           "stage keeps its time; stages whose times overlap ran side by side).", "",
           "| stage | status | wall s | started | finished |", "|---|---|---|---|---|"]
    for name, r in st["stages"].items():
        out.append(f"| {name} | {r['status']} | {r['wall_s']:.1f} | {r.get('started', '')} "
                   f"| {r['finished']} |")
    return "\n".join(out) + "\n"


def choice_gate(rows: List[dict], choice: Optional[dict]) -> List[str]:
    """The main job's gate: the recipe choice picked an artifact, and that artifact's own
    accuracy record (the evaluation's or a selective step's) is within the choice's budget.
    Empty: pass; else why not."""
    if not choice:
        return ["no recipe choice (choice.json) in the results: run pipeline.choose first"]
    budget = choice["budget_points"]
    chosen = choice.get("chosen")
    if not chosen:
        return [f"no artifact is within {budget} points of float top-1"
                + (f" with argmax agreement >= {choice['min_agreement']}"
                   if choice.get("min_agreement") is not None else "")
                + (" among full-integer models" if choice.get("integer_only") else "")]
    from edge_eval.report import is_device_row

    rec = next((r for r in rows if r["kind"] == "accuracy" and r["status"] == "ok"
                and r["artifact"] == chosen["artifact"] and r.get("drift")
                and not is_device_row(r)), None)
    if rec is None:
        return [f"the chosen artifact {chosen['artifact']} has no accuracy record"]
    d = rec["drift"]["top1_delta_points"]
    if -d > budget + 1e-9:
        return [f"the chosen artifact {chosen['artifact']}: top-1 {d:+.2f} points "
                f"(allowed -{budget})"]
    return []


def write(results_dir: str, title: str = "edge_eval report",
          max_top1_drift: Optional[float] = None,
          require_choice: bool = False) -> Tuple[str, List[str]]:
    """edge_eval.report.write with the choice and stage sections; with ``require_choice`` the
    recipe choice's own gate (``choice_gate``)."""
    gates = []
    if require_choice:
        gates.append(("the chosen artifact meets the job's budget", choice_gate(
            records_report.load(results_dir), read_json(os.path.join(results_dir, "choice.json")))))
    return records_report.write(
        results_dir, title, max_top1_drift,
        sections=[choice_section(results_dir), pipeline_section(results_dir)], gates=gates)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.report",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("results", help="the job's results folder (reports/<job>)")
    ap.add_argument("--title", default="edge_eval report")
    ap.add_argument("--max-top1-drift", type=float,
                    help="exit 1 if any artifact's top-1 drops more than this many points")
    ap.add_argument("--require-choice", action="store_true",
                    help="exit 1 unless the recipe choice (choice.json) picked an artifact "
                         "whose own record meets its budget (the main job's gate)")
    args = ap.parse_args(argv)
    try:
        path, failures = write(args.results, args.title, args.max_top1_drift,
                               args.require_choice)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.BAD_INPUT
    return records_report.announce(path, failures)


if __name__ == "__main__":
    sys.exit(main())
