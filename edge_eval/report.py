"""Reports from result records: CSV, a Markdown summary, plots, and a drift gate for users' CI.

Build side (may use matplotlib); reads every ``*.jsonl`` of a results folder.
"""
from __future__ import annotations

import csv
import glob
import json
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from contract import exitcodes, records
from contract.recipes import from_entry


def load(results_dir: str, app_runtimes: bool = False) -> List[dict]:
    """The folder's records; the rows of runtimes that preprocess on their own (``evaluator:
    mediapipe``) only with ``app_runtimes``: gates and the recipe choice judge the harness's."""
    rows = []
    for path in sorted(glob.glob(os.path.join(results_dir, "*.jsonl"))):
        rows.extend(records.read_jsonl(path))
    return rows if app_runtimes else [r for r in rows if not is_app_runtime(r)]


def is_app_runtime(r: dict) -> bool:
    return r.get("evaluator") == "mediapipe"


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def flat(r: dict) -> dict:
    """One CSV row per record."""
    return {
        "kind": r["kind"], "evaluator": r.get("evaluator") or "harness",
        "artifact": r["artifact"], "recipe": r["recipe"],
        "target": r["target"], "status": r["status"], "runtime": r["runtime"],
        "delegate": r["delegate"], "device": _get(r, "device", "name"), "threads": r["threads"],
        "bytes": r.get("bytes"), "top1": _get(r, "accuracy", "top1"),
        "top5": _get(r, "accuracy", "top5"), "examples": _get(r, "accuracy", "examples"),
        "crops": _get(r, "accuracy", "crops"),
        "top1_delta_points": _get(r, "drift", "top1_delta_points"),
        "top5_delta_points": _get(r, "drift", "top5_delta_points"),
        "argmax_agreement": _get(r, "drift", "argmax_agreement"),
        "top5_overlap": _get(r, "drift", "top5_overlap"),
        "kl_divergence": _get(r, "drift", "kl_divergence"),
        "mcnemar_p": _get(r, "drift", "mcnemar", "p_value"),
        "ci_low_points": _get(r, "drift", "bootstrap", "ci_low_points"),
        "ci_high_points": _get(r, "drift", "bootstrap", "ci_high_points"),
        "images_per_s": r.get("images_per_s"),
        "p50_ms": _get(r, "latency_ms", "p50"), "p90_ms": _get(r, "latency_ms", "p90"),
        "p99_ms": _get(r, "latency_ms", "p99"), "mean_ms": _get(r, "latency_ms", "mean"),
        "std_ms": _get(r, "latency_ms", "std"), "init_ms": r["init_ms"],
        "preprocess_ms": r.get("preprocess_ms"),
        "peak_memory_mb": r["peak_memory_mb"], "runs": r["runs"], "error": r["error"],
        "git_commit": _get(r, "git", "commit"), "git_dirty": _get(r, "git", "dirty"),
    }


def _f(v, fmt="{:.2f}", scale=1.0):
    return "" if v is None else fmt.format(v * scale)


def gate(rows: List[dict], max_top1_drift: Optional[float],
         max_score_shift: Optional[float] = None) -> List[str]:
    """Artifacts whose top-1 dropped by more than ``max_top1_drift`` points, or (rows paired
    from per-image records) whose reference-class probability moved by more than
    ``max_score_shift`` on 1 % of the images (the 99th percentile): a runtime computing at a
    lower precision moves the scores before it flips answers. Empty: pass."""
    bad = []
    for r in rows:
        shift = _get(r, "drift", "score_shift", "p99")
        if max_score_shift is not None and r["kind"] == "accuracy" and r["status"] == "ok" \
                and shift is not None and shift > max_score_shift:
            where = (f" on {_get(r, 'device', 'name')} {r['delegate']}" if is_device_row(r)
                     else "")
            bad.append(f"{r['artifact']}{where}: the reference class's probability moved "
                       f"{shift:.2g} at the 99th percentile (allowed {max_score_shift:g})")
    if max_top1_drift is None:
        return bad
    for r in rows:
        d = _get(r, "drift", "top1_delta_points")
        if r["kind"] == "accuracy" and r["status"] == "ok" and d is not None and \
                -d > max_top1_drift:
            where = (f" on {_get(r, 'device', 'name')} {r['delegate']}" if is_device_row(r)
                     else "")
            bad.append(f"{r['artifact']}{where}: top-1 {d:+.2f} points (allowed "
                       f"-{max_top1_drift})")
    return bad


def _memory(r: dict) -> str:
    """Peak MB with what it measures: a process's peak RSS and benchmark_model's footprint
    delta are different quantities and are marked so in one column."""
    v = _f(r.get("peak_memory_mb"), "{:.0f}")
    what = (r.get("peak_memory_is") or "").lower()
    return v and v + (" (Δ)" if "delta" in what else " (RSS)" if "rss" in what else "")


def is_device_row(r: dict) -> bool:
    """An accuracy row measured where the model runs (a phone's accelerator, a board), paired
    with the host's float reference: it carries what really ran (``accelerator``)."""
    return r["kind"] == "accuracy" and isinstance(r.get("accelerator"), dict)


def device_section(rows: List[dict]) -> str:
    dev = [r for r in rows if is_device_row(r)]
    if not dev:
        return ""
    out = ["On the device: each accelerator's per-image answers paired with the host's float "
           "model on the same images (the join on image identity). LiteRT ms: inside the "
           "runtime's call; wall ms: read, decode, preprocess, classify, write. A row whose "
           "accelerator did not run the whole model is FLAGGED with the runtime's reason.", "",
           "| artifact | device | accelerator | fully accelerated | top-1 | Δ top-1 (pts) [95 % CI]"
           " | Δ top-5 | agreement | McNemar p | score shift p99 | images | LiteRT ms | wall ms |"
           " status |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in dev:
        f = flat(r)
        a = r["accelerator"]
        ran = a.get("requested") or r["delegate"]
        if a.get("used") and a.get("used") != a.get("requested"):
            ran += f" -> {a['used']}"
        fully = {True: "yes", False: "no", None: "unknown"}[a.get("fully_accelerated")]
        ci = "" if f["ci_low_points"] is None else \
            f" [{f['ci_low_points']:+.2f}, {f['ci_high_points']:+.2f}]"
        status = r["status"] + (f": {r['error']}" if r["error"] else "")
        if a.get("flagged"):
            status = f"FLAGGED: {a.get('fallback_reason')}"
        out.append(
            f"| {r['artifact']} | {f['device']} | {ran} | {fully} | {_f(f['top1'], scale=100)} |"
            f" {_f(f['top1_delta_points'], '{:+.2f}')}{ci} | "
            f"{_f(f['top5_delta_points'], '{:+.2f}')} | {_f(f['argmax_agreement'], scale=100)} |"
            f" {_f(f['mcnemar_p'], '{:.3g}')} | "
            f"{_f(_get(r, 'drift', 'score_shift', 'p99'), '{:.2g}')} | {f['examples'] or ''} | "
            f"{_f(r.get('inference_ms_mean'))} | {_f(r.get('wall_ms_mean'))} | {status} |")
    return "\n".join(out + [""])


def markdown(rows: List[dict], title: str = "edge_eval report") -> str:
    acc = [r for r in rows if r["kind"] == "accuracy" and not is_device_row(r)]
    lat = [r for r in rows if r["kind"] == "latency"]
    out = [f"# {title}", ""]
    if acc:
        es = acc[0].get("eval_set") or {}
        out += [f"Accuracy on {es.get('images', '?')} images ({es.get('source', '?')}, "
                f"{es.get('crops', 1)} crop(s)); drift against the float reference on the same "
                f"images. Δ top-1 with its 95 % bootstrap interval; McNemar p < 0.05 means the "
                f"change is more than noise. Whole evaluation: {es.get('wall_s', 0):.1f} s.", "",
                "| artifact | recipe | top-1 | top-5 | Δ top-1 (pts) [95 % CI] | agreement | "
                "top-5 overlap | KL | McNemar p | MB | img/s | status |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in acc:
            f = flat(r)
            ci = "" if f["ci_low_points"] is None else \
                f" [{f['ci_low_points']:+.2f}, {f['ci_high_points']:+.2f}]"
            out.append(
                f"| {r['artifact']} | {r['recipe']} | {_f(f['top1'], scale=100)} | "
                f"{_f(f['top5'], scale=100)} | {_f(f['top1_delta_points'], '{:+.2f}')}{ci} | "
                f"{_f(f['argmax_agreement'], scale=100)} | {_f(f['top5_overlap'], scale=100)} | "
                f"{_f(f['kl_divergence'], '{:.4f}')} | {_f(f['mcnemar_p'], '{:.3g}')} | "
                f"{_f(f['bytes'], '{:.3f}', 1e-6)} | {_f(f['images_per_s'], '{:.0f}')} | "
                f"{r['status']}{': ' + r['error'] if r['error'] else ''} |")
        worst = [r for r in acc if r.get("drift") and r["drift"].get("worst_classes")]
        if worst:
            w = min(worst, key=lambda r: r["drift"]["top1_delta_points"])
            out += ["", f"Classes that drift most in {w['artifact']}:", "",
                    "| class | images | float top-1 | top-1 | Δ (pts) | flips |",
                    "|---|---|---|---|---|---|"]
            for c in w["drift"]["worst_classes"]:
                out.append(f"| {c['name']} | {c['examples']} | {100 * c['ref_top1']:.2f} | "
                           f"{100 * c['top1']:.2f} | {c['delta_points']:+.2f} | {c['flips']} |")
        out.append("")
    if any(is_device_row(r) for r in rows):
        out.append(device_section(rows))
    if lat:
        out += ["Latency per inference (ms), batch 1; preprocessing (decoded frame to model "
                "input, timed apart) in its own column.", "",
                "| artifact | recipe | runtime | delegate | device | threads | p50 | p90 | p99 | "
                "min | init | preprocess | peak MB (RSS: process peak; Δ: growth in the tool) | runs | "
                "status |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in lat:
            f = flat(r)
            out.append(
                f"| {r['artifact']} | {r['recipe']} | {r['runtime']} | {r['delegate']} | "
                f"{f['device']} | {r['threads'] or ''} | {_f(f['p50_ms'])} | {_f(f['p90_ms'])} | "
                f"{_f(f['p99_ms'])} | {_f(_get(r, 'latency_ms', 'min'))} | {_f(f['init_ms'])} | "
                f"{_f(f['preprocess_ms'], '{:.3f}')} | "
                f"{_memory(r)} | {r['runs'] or ''} | "
                f"{r['status']}{': ' + r['error'] if r['error'] else ''} |")
        out.append("")
    return "\n".join(out)


def mediapipe_section(rows: List[dict]) -> str:
    """Harness vs MediaPipe: each .tflite's top-1 both ways on the same images, the paired
    difference with its interval, and MediaPipe's preprocessing fingerprint."""
    app = [r for r in rows if is_app_runtime(r)]
    if not app:
        return ""
    harness = {r["artifact"]: r for r in rows if r["kind"] == "accuracy"
               and not is_app_runtime(r)}
    out = ["", "## Harness vs MediaPipe", "",
           "Each .tflite through MediaPipe Tasks' ImageClassifier (it reads the model's metadata "
           "and preprocesses the image itself, as an app does) on the same images as the "
           "harness. Δ is MediaPipe minus harness, paired, with its 95 % bootstrap interval; "
           "the fingerprint compares the tensor MediaPipe builds with preprocessing.json.", "",
           "| artifact | harness top-1 | MediaPipe top-1 | Δ (pts) [95 % CI] | agreement | "
           "fingerprint | status |", "|---|---|---|---|---|---|---|"]
    for r in app:
        h = harness.get(r["artifact"]) or {}
        v = r.get("vs_harness") or {}
        b = v.get("bootstrap") or {}
        fp = r.get("fingerprint") or {}
        verdict = ("" if not fp else "matches" if fp.get("verdict") == "match" else
                   f"differs: {fp.get('cause')} ({fp.get('detail')})"
                   if fp.get("verdict") == "differs" else fp.get("verdict", ""))
        warn = _get(r, "mediapipe", "unaligned_buffer_warnings")
        out.append(
            f"| {r['artifact']} | {_f(_get(h, 'accuracy', 'top1'), scale=100)} | "
            f"{_f(_get(r, 'accuracy', 'top1'), scale=100)} | "
            f"{_f(v.get('top1_delta_points'), '{:+.2f}')}"
            + (f" [{b['ci_low_points']:+.2f}, {b['ci_high_points']:+.2f}]" if b else "")
            + f" | {_f(v.get('argmax_agreement'), scale=100)} | {verdict} | "
            f"{r['status']}{': ' + r['error'] if r['error'] else ''}"
            + (f"; {warn} unaligned-buffer warning(s)" if warn else "") + " |")
    return "\n".join(out) + "\n"


def fingerprint_section(results_dir: str) -> str:
    fps = read_json(os.path.join(results_dir, "fingerprints.json"))
    if not fps:
        return ""
    out = ["", "## Preprocessing fingerprints", "",
           "Canary images through each runtime's real preprocessing, against preprocessing.json "
           f"(mean |difference| as a fraction of the input range; tolerance "
           f"{fps.get('tolerance')}). A difference names its likely cause.", "",
           "| runtime | verdict | mean abs diff | likely cause | where it lies |",
           "|---|---|---|---|---|"]
    for name, v in (fps.get("runtimes") or {}).items():
        cause = "" if v.get("verdict") != "differs" else f"{v.get('cause')}: {v.get('detail')}"
        if v.get("verdict") == "unavailable":
            cause = v.get("reason", "")
        out.append(f"| {name} | {v.get('verdict')} | {_f(v.get('error'), '{:.4f}')} | "
                   f"{cause} | {v.get('fix_in') or ''} |")
    return "\n".join(out) + "\n"


def _latency_by_artifact(rows) -> Dict[str, float]:
    best = {}
    for r in rows:
        if r["kind"] == "latency" and r["status"] == "ok" and r["delegate"] in ("xnnpack",
                                                                                 "none"):
            p50 = r["latency_ms"]["p50"]
            if r["delegate"] == "xnnpack" or r["artifact"] not in best:
                best[r["artifact"]] = p50
    return best


def plots(rows: List[dict], out_dir: str) -> List[str]:
    """The report's figures; none (said once) where matplotlib is not installed - a board's
    ``pip install .[run]`` has no plotting: the tables and records are the results."""
    try:
        import matplotlib
    except ImportError:
        print("[report] matplotlib is not installed: no plots (the tables and records are "
              "complete; pip install matplotlib, or .[eval], for the figures)", file=sys.stderr)
        return []

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    written = []
    acc = [r for r in rows if r["kind"] == "accuracy" and r["status"] == "ok"]
    lat = _latency_by_artifact(rows)
    pts = [(r, lat[r["artifact"]]) for r in acc if r["artifact"] in lat]
    if pts:
        fig, ax = plt.subplots(figsize=(8, 5.5))
        sizes = [max((r.get("bytes") or 0) / 1e6, 0.05) for r, _ in pts]
        scale = 600.0 / max(sizes)
        colors = ["tab:red" if (lambda s: s is not None and s.bits <= 8)(from_entry(r))
                  else "tab:blue" for r, _ in pts]  # 8 bits or fewer: red
        ax.scatter([p for _, p in pts], [100 * r["accuracy"]["top1"] for r, _ in pts],
                   s=[s * scale for s in sizes], c=colors, alpha=0.5, edgecolors="k")
        # labels of nearby points fan out left and right instead of printing over each other
        order = sorted(range(len(pts)), key=lambda i: (pts[i][1], pts[i][0]["accuracy"]["top1"]))
        for k, i in enumerate(order):
            (r, p), s = pts[i], sizes[i]
            dx = 34 if k % 2 else -34
            ax.annotate(f"{r['recipe']}{' (QAT)' if r.get('qat') else ''} {s:.2f} MB",
                        (p, 100 * r["accuracy"]["top1"]), fontsize=7,
                        ha="left" if dx > 0 else "right", va="center", xytext=(dx, 0),
                        textcoords="offset points",
                        arrowprops=dict(arrowstyle="-", lw=0.5, color="0.5"))
        ax.set_xscale("log")
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

        lo, hi = min(p for _, p in pts), max(p for _, p in pts)
        ticks = [t * 10.0 ** e for e in range(-3, 5) for t in (1, 2, 3, 5)
                 if lo / 1.5 <= t * 10.0 ** e <= hi * 1.5] or [lo]
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("host latency p50 (ms, LiteRT, batch 1, log scale)")
        ax.set_ylabel("top-1 (%)")
        ax.set_title("accuracy vs latency (bubble area: model size)")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = os.path.join(out_dir, "accuracy_vs_latency.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    def per_class(r):
        return r["drift"].get("per_class") or r["drift"].get("worst_classes") or []

    drifted = [r for r in acc if r.get("drift") and per_class(r)]
    if drifted:
        classes = sorted({c["class"] for r in drifted for c in per_class(r)})
        names = {c["class"]: c["name"] for r in drifted for c in per_class(r)}
        m = np.full((len(drifted), len(classes)), np.nan)
        for i, r in enumerate(drifted):
            for c in per_class(r):
                m[i, classes.index(c["class"])] = c["delta_points"]
        lim = max(0.5, float(np.nanmax(np.abs(m))) if np.isfinite(m).any() else 0.5)
        fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(classes), 1.2 + 0.4 * len(drifted)))
        im = ax.imshow(m, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_xticks(range(len(classes)), [names[c] for c in classes], rotation=45, ha="right",
                      fontsize=8)
        names_ = [r["artifact"] for r in drifted]
        prefix = os.path.commonprefix(names_) if len(names_) > 1 else ""
        ax.set_yticks(range(len(drifted)), [n[len(prefix):] or n for n in names_], fontsize=7)
        if prefix:
            ax.set_ylabel(prefix + "…", fontsize=7)
        for (i, j), v in np.ndenumerate(m):
            if np.isfinite(v):
                ax.text(j, i, f"{v:+.1f}", ha="center", va="center", fontsize=6)
        fig.colorbar(im, ax=ax, label="Δ top-1 vs float (points)")
        ax.set_title("per-class drift against the float model")
        fig.tight_layout()
        path = os.path.join(out_dir, "per_class_drift.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def flips_section(results_dir: str) -> str:
    """Per artifact with flips (``edge_eval flips``): a bar per block of the flips it explains,
    what no block explains, and the measured fix."""
    folder = os.path.join(results_dir, "flips")
    found = [read_json(os.path.join(folder, n)) for n in sorted(os.listdir(folder))
             if n.endswith(".json")] if os.path.isdir(folder) else []
    found = [f for f in found if isinstance(f, dict) and "ranking" in f]
    if not found:
        return ""
    out = ["", "## Why images flip", "",
           "Each image whose top-1 differs from the float reference, attributed to the first "
           "block whose int8 output, fed to the float rest of the network, flips it "
           "(`python -m edge_eval flips`)."]
    for f in found:
        try:
            out += _flips_lines(f)
        except (KeyError, TypeError, ValueError, ZeroDivisionError):  # a damaged file
            out += ["", f"(a flips file that does not read: {str(f.get('artifact'))[:80]})"]
    return "\n".join(out) + "\n"


def _flips_lines(f: dict) -> List[str]:
    out = ["", f"**{f['artifact']}**: {f['flips']} flipped image(s) of {f.get('paired_images')}"
           + (f"; the top three blocks explain {100 * f['top3_share']:.0f} %"
              if f["flips"] else " - nothing to attribute") + "."]
    if not f["flips"]:
        return out
    top = max(r["flips"] for r in f["ranking"])
    out += ["", "| block | flips | share | |", "|---|---|---|---|"]
    for r in f["ranking"]:
        share = "" if r["share"] is None else f"{100 * r['share']:.0f} %"
        out.append(f"| {r['block']} | {r['flips']} | {share} | "
                   f"{'█' * max(1, round(20 * r['flips'] / top))} |")
    fix = f.get("fix") or {}
    if fix.get("status") == "ok":
        lat = f", latency x{fix['latency_ratio']:.2f}" if fix.get("latency_ratio") else ""
        out += ["", f"Keeping it float, `{fix['recipe']}`: {fix['recovered']} of "
                f"{fix['artifact_flips']} flips recovered, {fix['new_flips']} new; size "
                f"x{fix['size_ratio']:.2f}{lat} (measured on the same images)."]
    elif fix:
        out += ["", f"Fix: {fix.get('status')}: {fix.get('error')}"]
    return out


def read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write(results_dir: str, title: str = "edge_eval report",
          max_top1_drift: Optional[float] = None,
          sections: Sequence[str] = (),
          gates: Sequence[Tuple[str, List[str]]] = (),
          max_score_shift: Optional[float] = None) -> Tuple[str, List[str]]:
    """Writes results.json, results.csv, report.md and the plots; returns (report, gate
    failures): artifacts over ``max_top1_drift``, and each of ``gates`` ((what it checks,
    its failures), e.g. the main job's choice gate in pipeline.report). ``sections``: further
    Markdown appended (the caller's: edge_eval knows only its own records)."""
    every = load(results_dir, app_runtimes=True)
    rows = [r for r in every if not is_app_runtime(r)]
    if not every:
        raise ValueError(f"no result records (*.jsonl) in {results_dir}")
    with open(os.path.join(results_dir, "results.json"), "w") as f:
        json.dump(every, f, indent=1)
    with open(os.path.join(results_dir, "results.csv"), "w", newline="") as f:
        flats = [flat(r) for r in every]
        w = csv.DictWriter(f, fieldnames=list(flats[0]))
        w.writeheader()
        w.writerows(flats)
    written = plots([r for r in rows if not is_device_row(r)], results_dir)
    md = markdown(rows, title)
    if written:
        md += "\n" + "\n".join(f"![{os.path.basename(p)}]({os.path.basename(p)})"
                               for p in written) + "\n"
    md += (mediapipe_section(every) + fingerprint_section(results_dir)
           + flips_section(results_dir) + "".join(sections))
    failures = gate(rows, max_top1_drift, max_score_shift)
    if max_top1_drift is not None or max_score_shift is not None:
        md += (f"\nDrift gate (top-1 may drop at most {max_top1_drift} points"
               + (f"; the reference class's probability may move at most {max_score_shift} at "
                  "the 99th percentile" if max_score_shift is not None else "") + "): "
               + ("FAILED\n\n" + "\n".join(f"- {b}" for b in failures) if failures else "passed")
               + "\n")
    for what, bad in gates:
        md += (f"\nGate ({what}): "
               + ("FAILED\n\n" + "\n".join(f"- {b}" for b in bad) if bad else "passed") + "\n")
        failures = failures + list(bad)
    path = os.path.join(results_dir, "report.md")
    with open(path, "w") as f:
        f.write(md)
    return path, failures


def announce(path: str, failures: List[str]) -> int:
    """Says where the report is and which gates failed; the exit status (GATE_FAILED or OK)."""
    if path:
        print(f"report: {path}")
    if failures:
        print("gate failed:\n  " + "\n  ".join(failures), file=sys.stderr)
        return exitcodes.GATE_FAILED
    return exitcodes.OK
