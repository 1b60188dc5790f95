"""python -m edge_eval {accuracy,bench,android,drift,profile,report} ...

  accuracy ARTIFACTS   top-1/top-5 and drift of every artifact against the float model
  bench ARTIFACTS      host latency (LiteRT, XNNPACK on/off, threads, Edge TPU if present)
  android ARTIFACTS    latency over adb: benchmark_model or the sample app's benchmark mode
  android accuracy ARTIFACTS
                       per-image answers from the phone (the app's accuracy mode, one
                       accelerator per process: cpu, gpu, npu) paired with the host's float
                       model on the same images (run `accuracy` first; same --out)
  export-set ARTIFACTS a board's bundle: the images the host evaluated + its float predictions
  pair ARTIFACTS BOARD_RESULTS
                       a board's per-image predictions paired with the host's float model
                       (board rows in --out/board_accuracy.jsonl)
  drift REF OTHER      paired drift between two runs' per-image predictions (any two of
                       <out>/predictions/*.jsonl: host float vs phone GPU, CPU vs NPU, ...)
  flips ARTIFACTS --artifact NAME
                       why images flipped: each top-1 flip attributed to the block (stem,
                       mixed0-mixed10, head) whose int8 output, fed to the float rest, flips it;
                       blocks ranked; --fix K measures the recipe keeping the top K float
  profile MODEL...     where the milliseconds go: segments of the graph timed on the host
                       (prefix models), fp32 against int8 side by side, CPU-kernel ops named
  report RESULTS       CSV + Markdown + plots from the records; --max-top1-drift gates CI
                       (the main job's report, with its recipe choice and gate, is
                       python -m pipeline.report; its app install, python -m pipeline.app_assets)

Results go to RESULTS (default reports/<artifacts folder name>) as JSON-lines records, one schema
for every device (contract/schema/record.json). Exit 2 on a user error, 1 when a gate fails,
4 when rows failed and --strict is on (the default when $CI is set; --no-strict turns it off).
"""
from __future__ import annotations

import argparse
import os
import sys

from contract import exitcodes
from contract.coreml_runtime import COMPUTE_UNITS as COREML_UNITS


def _csv(s):
    return [v.strip() for v in s.split(",") if v.strip()]


def _out(args):
    return args.out or os.path.join("reports", os.path.basename(os.path.normpath(args.artifacts)))




def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m edge_eval", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[2:]))
    sub = p.add_subparsers(dest="cmd", required=True)

    a = sub.add_parser("accuracy", help="accuracy and drift of every artifact")
    a.add_argument("artifacts", help="folder with manifest.json (python -m convert --out)")
    a.add_argument("--reference", help="float model export (default: the manifest's float "
                                       "source); on a board without TensorFlow: the fp32 .tflite")
    a.add_argument("--reference-predictions", metavar="REFERENCE_JSONL",
                   help="the host float model's per-image predictions (a bundle's "
                        "reference.jsonl, from export-set): every artifact's drift is paired "
                        "with it on the images' identities; no float model runs here")
    a.add_argument("--unsafe-allow-model-code", action="store_true",
                   help="load model files that carry Python code (Lambda layers, arbitrary tf.* calls): "
                        "only for files you trust; refused otherwise")
    a.add_argument("--data-source", choices=["fashion_mnist", "image_folder", "imagenet"],
                   help="evaluation data (default: the reference's training data); imagenet: "
                        "TFRecord shards (read without TensorFlow)")
    a.add_argument("--data-path", help="dataset folder")
    a.add_argument("--split", choices=["test", "holdout"], default="test",
                   help="test: what reports quote (default); holdout: the held-out images the "
                        "recipe choice decides on (never the test split)")
    a.add_argument("--images", type=int, help="evaluate a seeded sample of N images")
    a.add_argument("--crops", type=int, default=1, choices=[1, 10, 144],
                   help="1: central crop; 10 or 144: the paper's multi-crop schemes, streamed "
                        "through each model an image at a time (memory stays flat)")
    a.add_argument("--threads", type=int, default=2, help="threads per worker")
    a.add_argument("--shard-size", type=int,
                   help="sharded, resumable, streamed evaluation (ImageNet scale): shards of N "
                        "images x artifacts, each finished shard kept as per-image records "
                        "(<out>/shards/); a rerun resumes; one thread per worker. Default: "
                        "sets of more than 20,000 images x crops are sharded (2,000 inputs a "
                        "shard), smaller ones evaluated in one batched pass")
    a.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="with --shard-size: local worker processes (default) or Ray tasks "
                        "(pip install .[ray])")
    a.add_argument("--address", help="with --backend ray: the cluster to join (ray start "
                                      "--head prints it; auto: the local one)")
    a.add_argument("--stall-seconds", type=float, default=600,
                   help="sharded: a worker whose image count has not moved for this long "
                        "(its model's load included) is stopped and its shard tried once more")
    a.add_argument("--coreml-units", type=_csv, default=list(COREML_UNITS),
                   help="on a Mac: Apple's runtime scores each .mlpackage once per compute unit "
                        "(default: all of " + ",".join(COREML_UNITS) + ")")
    a.add_argument("--workers", type=int, default=1,
                   help="artifacts evaluated at once, each in its own process")
    a.add_argument("--timeout", type=float, default=900,
                   help="seconds per artifact, unsharded (a sharded run has --stall-seconds)")
    a.add_argument("--bootstrap", type=int, default=2000, help="bootstrap rounds for the CI")
    a.add_argument("--only", type=_csv, help="comma-separated artifact files or recipes")
    a.add_argument("--out")
    a.add_argument("--max-top1-drift", type=float,
                   help="exit 1 if any artifact's top-1 drops more than this many points")
    a.add_argument("--runtime", choices=["auto", "litert", "mediapipe"], default="auto",
                   help="litert: the harness (preprocessing.json + LiteRT); mediapipe: also "
                        "every .tflite through MediaPipe Tasks' ImageClassifier, paired against "
                        "the harness (an error without it: python -m edge_eval.mediapipe_rt "
                        "--setup); auto (default): mediapipe where installed")

    b = sub.add_parser("bench", help="host latency of every artifact")
    b.add_argument("artifacts")
    b.add_argument("--delegates", type=_csv, default=["xnnpack"],
                   help="xnnpack, none (plain CPU kernels), edgetpu (needs libedgetpu)")
    b.add_argument("--threads", type=lambda s: [int(v) for v in _csv(s)], default=[2])
    b.add_argument("--warmup", type=int, default=5)
    b.add_argument("--runs", type=int, default=50)
    b.add_argument("--min-seconds", type=float, default=1.0)
    b.add_argument("--max-seconds", type=float, default=60.0)
    b.add_argument("--only", type=_csv)
    b.add_argument("--out")
    b.add_argument("--runtimes", type=_csv, default=["interpreter"],
                   help="LiteRT APIs to time: interpreter (default), compiled_model "
                        "(CompiledModel, the API LiteRT recommends; XNNPACK rows only)")
    b.add_argument("--require-full-delegation", action="store_true",
                   help="fail a row whose delegate did not take the whole graph (the record "
                        "names the ops left on the CPU kernels; Core ML: ops its compute plan "
                        "leaves to the CPU)")
    b.add_argument("--coreml-units", type=_csv, default=list(COREML_UNITS),
                   help="on a Mac: each .mlpackage timed by Apple's runtime once per compute "
                        "unit (default: all of " + ",".join(COREML_UNITS) + ")")

    d = sub.add_parser("android", help="latency over adb (accuracy: android accuracy)")
    d.add_argument("artifacts")
    d.add_argument("--adb", default="adb", help="adb executable")
    d.add_argument("--serial", help="device serial (adb -s); default: the only device")
    d.add_argument("--delegates", type=_csv, default=["cpu"],
                   help="cpu (XNNPACK), gpu, nnapi: benchmark_model's flag names")
    d.add_argument("--threads", type=int, default=4)
    d.add_argument("--warmup", type=int, default=5)
    d.add_argument("--runs", type=int, default=50)
    d.add_argument("--benchmark-binary",
                   help="TFLite benchmark_model built for the device; without it the sample "
                        "app's benchmark mode is used")
    d.add_argument("--timeout", type=float, default=600)
    d.add_argument("--op-profiling", action="store_true",
                   help="benchmark_model --enable_op_profiling: milliseconds per op type in "
                        "each record (op_profile)")
    d.add_argument("--require-full-delegation", action="store_true",
                   help="fail a row whose delegate did not take the whole graph")
    d.add_argument("--only", type=_csv)
    d.add_argument("--out")

    aa = sub.add_parser("android-accuracy", prog="python -m edge_eval android accuracy",
                        help="python -m edge_eval android accuracy ARTIFACTS: the phone's "
                             "per-image answers paired with the host's float model")
    aa.add_argument("artifacts")
    aa.add_argument("--adb", default="adb", help="adb executable")
    aa.add_argument("--serial", help="device serial (adb -s); default: the only device")
    aa.add_argument("--accelerators", type=_csv, default=["cpu", "gpu", "npu"],
                    help="cpu, gpu, npu (LiteRT 2.x CompiledModel; nnapi: a failed row, LiteRT "
                         "2.x has none), each in a fresh process")
    aa.add_argument("--threads", type=int, default=4, help="CPU threads")
    aa.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    aa.add_argument("--bootstrap", type=int, default=2000, help="bootstrap rounds for the CI")
    aa.add_argument("--data-source", choices=["fashion_mnist", "image_folder", "imagenet"],
                    help="the data the host evaluated, when not the reference's own")
    aa.add_argument("--data-path")
    aa.add_argument("--max-top1-drift", type=float,
                    help="exit 1 if a device row's top-1 drops more than this many points")
    aa.add_argument("--max-score-shift", type=float,
                    help="exit 1 if the reference class's probability moves more than this at "
                         "the 99th percentile of images (a lower-precision accelerator moves "
                         "scores before it flips answers; e.g. 0.02)")
    aa.add_argument("--only", type=_csv)
    aa.add_argument("--out", help="the results folder of the host's accuracy run")

    ex = sub.add_parser("export-set", help="a board's bundle: images + the host's reference")
    ex.add_argument("artifacts")
    ex.add_argument("--results", help="the host's accuracy results (default "
                                      "reports/<artifacts folder name>)")
    ex.add_argument("--out", required=True, help="a new folder for the bundle")
    ex.add_argument("--data-source", choices=["fashion_mnist", "image_folder", "imagenet"])
    ex.add_argument("--data-path")
    pa = sub.add_parser("pair", help="a board's predictions paired with the host's float model")
    pa.add_argument("artifacts")
    pa.add_argument("board_results", help="the board's accuracy --out folder, copied back")
    pa.add_argument("--out", help="the host's results (default reports/<artifacts name>)")
    pa.add_argument("--bootstrap", type=int, default=2000)
    pa.add_argument("--max-top1-drift", type=float)

    dr = sub.add_parser("drift", help="paired drift between two prediction files")
    dr.add_argument("reference", help="predictions of the run to compare against (e.g. "
                                      "<out>/predictions/reference.jsonl, the float model)")
    dr.add_argument("other", help="predictions of the run compared")
    dr.add_argument("--bootstrap", type=int, default=2000, help="bootstrap rounds for the CI")
    dr.add_argument("--json", action="store_true", help="the statistics as JSON")
    dr.add_argument("--max-top1-drift", type=float,
                    help="exit 1 if top-1 drops more than this many points")

    pr = sub.add_parser("profile", help="where the milliseconds go, segment by segment")
    pr.add_argument("models", nargs="+", help=".tflite files (several: side by side)")
    pr.add_argument("--threads", type=int, default=2)
    pr.add_argument("--runs", type=int, default=20, help="interleaved rounds")
    pr.add_argument("--warmup", type=int, default=3)
    pr.add_argument("--no-xnnpack", action="store_true", help="the built-in kernels alone")
    pr.add_argument("--out", help="write the profiles as JSON here")

    fl = sub.add_parser("flips", help="attribute each top-1 flip to the block that caused it")
    fl.add_argument("artifacts", help="folder with manifest.json")
    fl.add_argument("--artifact", required=True, help="the .tflite (file or recipe name)")
    fl.add_argument("--results", help="an accuracy run's folder: the flipped images come from "
                                      "its per-image records (predictions/); without it both "
                                      "models run here, the fp32 .tflite as the reference")
    fl.add_argument("--data-source", help="when the reference export's config.json does not say")
    fl.add_argument("--data-path")
    fl.add_argument("--images", type=int, help="a seeded sample (as accuracy --images)")
    fl.add_argument("--split", choices=["test", "holdout"], default="test")
    fl.add_argument("--fix", type=int, default=1, help="convert and measure the recipe keeping "
                                                        "the top K blocks float (0: none)")
    fl.add_argument("--calib-images", type=int,
                    help="--fix: calibration images, as the artifact's conversion had them")
    fl.add_argument("--threads", type=int, default=2)
    fl.add_argument("--out", help="results folder (default: --results, else reports/<folder>)")

    r = sub.add_parser("report", help="CSV + Markdown + plots from a results folder")
    r.add_argument("results")
    r.add_argument("--title", default="edge_eval report")
    r.add_argument("--max-top1-drift", type=float,
                   help="exit 1 if any artifact's top-1 drops more than this many points")

    for sp in (a, b, d, aa, pa):
        sp.add_argument("--strict", dest="strict", action="store_true", default=None,
                        help=f"exit {exitcodes.ROWS_FAILED} when any row failed or is invalid (the default "
                             "when $CI is set)")
        sp.add_argument("--no-strict", dest="strict", action="store_false",
                        help="exit 0 even when rows failed (they are in the records)")
    return p


def _run(args) -> tuple:
    """The subcommand's rows, report path and gate failures."""
    from edge_eval import harness, report  # the harness imports numpy, OpenCV and train.data

    if args.cmd == "report":
        return [], *report.write(args.results, args.title, args.max_top1_drift)
    out = _out(args)
    if args.cmd == "accuracy":
        rows = harness.evaluate(args.artifacts, out, args.reference, args.data_source,
                                args.data_path, args.images, args.crops, args.threads,
                                args.timeout, args.bootstrap, only=args.only,
                                workers=args.workers, split=args.split, runtime=args.runtime,
                                reference_predictions=args.reference_predictions,
                                shard_size=args.shard_size, backend=args.backend,
                                address=args.address, stall_s=args.stall_seconds,
                                coreml_units=args.coreml_units)
        return rows, *report.write(out, max_top1_drift=args.max_top1_drift)
    if args.cmd == "bench":
        rows = harness.benchmark(args.artifacts, out, args.delegates, args.threads,
                                 args.warmup, args.runs, args.min_seconds, args.max_seconds,
                                 only=args.only,
                                 require_full_delegation=args.require_full_delegation,
                                 runtimes=args.runtimes, coreml_units=args.coreml_units)
        return rows, *report.write(out)
    if args.cmd == "export-set":
        from edge_eval import pairing

        pairing.export_set(args.artifacts, args.results or _out(
            argparse.Namespace(out=None, artifacts=args.artifacts)), args.out,
            args.data_source, args.data_path)
        return [], None, []
    if args.cmd == "pair":
        from edge_eval import pairing

        rows = pairing.pair(args.artifacts, args.board_results, out, args.bootstrap)
        return rows, *report.write(out, max_top1_drift=args.max_top1_drift)
    from edge_eval import android

    if args.cmd == "android-accuracy":
        rows = android.accuracy(args.artifacts, out, adb=args.adb, serial=args.serial,
                                accelerators=args.accelerators, threads=args.threads,
                                timeout=args.timeout, only=args.only,
                                bootstrap_rounds=args.bootstrap, data_source=args.data_source,
                                data_path=args.data_path)
        return rows, *report.write(out, max_top1_drift=args.max_top1_drift,
                                   max_score_shift=args.max_score_shift)
    rows = android.run(args.artifacts, out, adb=args.adb, serial=args.serial,
                       delegates=args.delegates, threads=args.threads, warmup=args.warmup,
                       runs=args.runs, binary=args.benchmark_binary,
                       timeout=args.timeout, only=args.only,
                       op_profiling=args.op_profiling,
                       require_full_delegation=args.require_full_delegation)
    return rows, *report.write(out)


def _drift(args) -> int:
    import json

    from contract import predictions
    from edge_eval import stats

    try:
        ref, other = predictions.read(args.reference), predictions.read(args.other)
        d = stats.paired_drift(predictions.pair(ref, other), bootstrap_rounds=args.bootstrap)
    except predictions.PredictionError as e:
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.BAD_INPUT
    d["reference"], d["other"] = ref.header, other.header
    if args.json:
        print(json.dumps(d, indent=1))
    else:
        print(drift_text(d))
    if args.max_top1_drift is not None and -d["top1_delta_points"] > args.max_top1_drift:
        print(f"gate failed: top-1 {d['top1_delta_points']:+.2f} points (allowed "
              f"-{args.max_top1_drift})", file=sys.stderr)
        return exitcodes.GATE_FAILED
    return exitcodes.OK


def drift_text(d: dict) -> str:
    def run(h):
        a = h["accelerator"]
        used = a.get("used")
        return (f"{h['artifact']} ({h['runtime']}, {a['requested']}"
                + (f" -> ran on {used}" if used and used != a["requested"] else "")
                + (", fully accelerated" if a.get("fully_accelerated") else
                   f", NOT fully accelerated: {a.get('fallback_reason')}"
                   if a.get("fully_accelerated") is False else "") + ")")

    b, m = d["bootstrap"], d["mcnemar"]
    return "\n".join([
        f"reference: {run(d['reference'])}", f"other:     {run(d['other'])}",
        f"paired images: {d['paired_images']} (only in reference {d['only_in_reference']}, "
        f"only in other {d['only_in_other']}, label conflicts {d['label_conflicts']})",
        f"top-1 {100 * d['reference_top1']:.2f} -> {100 * d['top1']:.2f} %: "
        f"{d['top1_delta_points']:+.2f} points [95 % CI {b['ci_low_points']:+.2f}, "
        f"{b['ci_high_points']:+.2f}]; top-5 {d['top5_delta_points']:+.2f} points",
        f"argmax agreement {100 * d['argmax_agreement']:.2f} %, top-5 overlap "
        f"{100 * d['top5_overlap']:.2f} %; McNemar b={m['b']} c={m['c']} p={m['p_value']:.3g}",
        "worst classes: " + ", ".join(f"{c['name']} {c['delta_points']:+.1f} ({c['flips']} flips)"
                                      for c in d["worst_classes"][:3])])


def _profile(args) -> int:
    from edge_eval import profile

    try:
        return profile.main(args.models, args.threads, args.runs, args.warmup,
                            not args.no_xnnpack, args.out)
    except (profile.ProfileError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.BAD_INPUT


def _flips(args) -> int:
    from edge_eval import flips
    from edge_eval.harness import EvalError
    from contract.predictions import PredictionError

    try:
        flips.flips(args.artifacts, args.artifact, args.out or args.results or _out(args),
                    args.results, args.data_source, args.data_path, args.images, args.split,
                    fix=args.fix, threads=args.threads, calib_images=args.calib_images)
    except (flips.FlipError, EvalError, PredictionError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.BAD_INPUT
    return exitcodes.OK


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["android", "accuracy"]:  # `android accuracy ARTIFACTS`, its own parser
        argv = ["android-accuracy", *argv[2:]]
    args = parser().parse_args(argv)
    if getattr(args, "unsafe_allow_model_code", False):
        from train.safe_load import allow_code  # standard library only

        allow_code()  # for this process and the workers it starts
    if args.cmd == "profile":
        return _profile(args)
    if args.cmd == "drift":
        return _drift(args)
    if args.cmd == "flips":
        return _flips(args)
    from edge_eval.harness import EvalError

    try:
        rows, path, failures = _run(args)
    except (EvalError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.BAD_INPUT
    from edge_eval.report import announce

    if announce(path, failures) != exitcodes.OK:
        return exitcodes.GATE_FAILED
    bad = [r for r in rows if r.get("status") in ("failed", "invalid")
           or (r.get("accelerator") or {}).get("flagged")]
    strict = args.strict if getattr(args, "strict", None) is not None else _ci()
    if bad and strict:
        print(f"{len(bad)} of {len(rows)} rows failed or are flagged:\n  " + "\n  ".join(
            f"{r.get('artifact')} ({r.get('delegate') or r.get('kind')}): "
            + (r.get("error") or "not fully accelerated: "
               + str((r.get("accelerator") or {}).get("fallback_reason"))) for r in bad),
            file=sys.stderr)
        return exitcodes.ROWS_FAILED
    return exitcodes.OK


def _ci() -> bool:
    """CI-style use: $CI set to anything but an empty/false value (GitHub, GitLab and most
    CI services set CI=true)."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


if __name__ == "__main__":
    sys.exit(main())
