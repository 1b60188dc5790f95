"""Android over adb: TFLite's ``benchmark_model`` or the sample app's benchmark mode (latency),
and the app's accuracy mode (``accuracy``): per-image answers from the phone, per accelerator,
paired with the host's float reference on the same images.

adb is always called with argument lists (never a shell string on the host). Results become the
same records as host runs. The app's side of the protocol is ``schema/android_app.json``.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
import uuid
from typing import Dict, List, Optional, Sequence

from contract import predictions, records
from contract.litert import delegation_problem
from edge_eval.harness import EvalError, load_manifest, selected_artifacts, verify
from edge_eval.pairing import (DEVICE_PREDICTIONS, device_folder, device_row, failed_device_row,
                               reference_items, reference_predictions, write_images)

PROTOCOL_PATH = os.path.join(os.path.dirname(records.SCHEMA_PATH), "android_app.json")
REMOTE_TMP = "/data/local/tmp"
# benchmark_model's flag per delegate (the same names the app's extras use, lower-cased)
DELEGATE_FLAGS = {"cpu": ["--use_xnnpack=true"], "gpu": ["--use_gpu=true"],
                  "nnapi": ["--use_nnapi=true"]}
RECORD_DELEGATE = {"cpu": "xnnpack", "gpu": "gpu", "nnapi": "nnapi"}
# the accuracy mode's accelerators (LiteRT 2.x CompiledModel): command-line name -> the app's
ACCELERATORS = {"cpu": "CPU", "gpu": "GPU", "npu": "NPU", "nnapi": "NNAPI"}


class AndroidError(EvalError):
    """adb missing, no device, a device command failing: one clear message."""


def protocol() -> dict:
    with open(PROTOCOL_PATH) as f:
        return json.load(f)


# --------------------------------------------------------------------------------------------
# benchmark_model output
# --------------------------------------------------------------------------------------------
_NUM = r"([0-9][0-9.eE+\-]*)"
_COUNT = re.compile(r"count=(\d+)(?P<rest>(?: \w+=" + _NUM + r")*)")
_TIMINGS = re.compile(r"Inference timings in us: Init: " + _NUM + r", First inference: " + _NUM
                      + r", Warmup \(avg\): " + _NUM + r", Inference \(avg\): " + _NUM)
_MEM = [re.compile(r"Peak memory footprint \(MB\): init=" + _NUM + r" overall=" + _NUM),
        re.compile(r"Memory footprint delta from the start of the tool \(MB\): init=" + _NUM
                   + r" overall=" + _NUM)]
_MEM_PEAK = re.compile(r"Overall peak memory footprint \(MB\) via periodic monitoring: " + _NUM)
_REPLACED = re.compile(r"Replacing (\d+) out of (\d+) node\(s\) with delegate \(([^)]*)\) node"
                       r"(?:, yielding (\d+) partitions)?")
# benchmark_model --enable_op_profiling: the "Summary by node type" table of TFLite's stats
# calculator ([Node type] [count] [avg ms] [avg %] [cdf %] [mem KB] [times called])
_PROFILE_HEAD = re.compile(r"=+ Summary by node type =+")
_PROFILE_ROW = re.compile(r"^\s*(\S+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)%\s+([\d.]+)%")
_FALLBACK = re.compile(r"(will not be executed by the delegate|Failed to apply .* delegate|"
                       r"falling back to CPU|Delegate .* failed)", re.IGNORECASE)


def parse_benchmark_model(text: str) -> dict:
    """TFLite ``benchmark_model`` console output -> the record's latency fields.

    The last ``count=... avg=... std=...`` line is the timed runs (the one before it is the
    warm-up; the op profiler's "Timings (microseconds)" lines are not runs). benchmark_model prints no p90/p99: those stay None. Raises ValueError when the text
    has no timed-run line (the tool failed; the message carries its last lines).
    """
    runs = []
    for line in text.splitlines():
        m = _COUNT.search(line)
        # (the op profiler's tables end in "Timings (microseconds): count=...": its sums)
        if m and "avg=" in line and "Timings (microseconds)" not in line:
            fields = dict(re.findall(r"(\w+)=" + _NUM, line))
            runs.append({k: float(v) for k, v in fields.items()})
    timings = _TIMINGS.search(text)
    if not runs or not timings:
        tail = " | ".join(text.strip().splitlines()[-3:])
        raise ValueError(f"benchmark_model printed no timed runs: {tail or '(no output)'}")
    r = runs[-1]
    us = 1e-3
    out = {
        "runs": int(r["count"]),
        "latency_ms": {"min": r.get("min", 0) * us, "p50": r["median"] * us if "median" in r
                       else None, "p90": None, "p99": None, "mean": r["avg"] * us,
                       "std": r.get("std", 0) * us, "max": r.get("max", 0) * us,
                       "p5": r["p5"] * us if "p5" in r else None,
                       "p95": r["p95"] * us if "p95" in r else None},
        "init_ms": float(timings.group(1)) * us,
        "first_inference_ms": float(timings.group(2)) * us,
        "warmup_avg_ms": float(timings.group(3)) * us,
        "duration_s": r["avg"] * r["count"] * 1e-6,
        "warmup_runs": int(runs[-2]["count"]) if len(runs) > 1 else None,
    }
    peak = _MEM_PEAK.search(text)
    mem = next((m for m in (p.search(text) for p in _MEM) if m), None)
    out["peak_memory_mb"] = float(peak.group(1)) if peak else (
        float(mem.group(2)) if mem else None)
    out["peak_memory_is"] = (
        "benchmark_model: the process's peak footprint by periodic monitoring (RSS)" if peak
        else "benchmark_model: footprint delta from the tool's start" if mem else None)
    rep = _REPLACED.search(text)
    out["delegated_nodes"] = [int(rep.group(1)), int(rep.group(2))] if rep else None
    if rep:
        from contract.litert import delegation_record

        out["delegation"] = delegation_record(
            rep.group(3), int(rep.group(2)), int(rep.group(1)),
            int(rep.group(4)) if rep.group(4) else None, None, "benchmark_model's log")
    out["op_profile"] = parse_op_profile(text)
    fb = _FALLBACK.search(text)
    out["fallback"] = fb.group(0) if fb else None
    return out


def parse_op_profile(text: str) -> Optional[List[dict]]:
    """The last "Summary by node type" table (the timed runs; benchmark_model prints the
    warm-up's first) -> [{op, count, avg_ms, percent}], slowest first; None without one."""
    heads = list(_PROFILE_HEAD.finditer(text))
    if not heads:
        return None
    rows = []
    for line in text[heads[-1].end():].splitlines()[1:]:
        m = _PROFILE_ROW.match(line)
        if m is None:
            if rows and not line.strip():
                break
            continue
        rows.append({"op": m.group(1), "count": int(m.group(2)), "avg_ms": float(m.group(3)),
                     "percent": float(m.group(4))})
    return sorted(rows, key=lambda r: -r["avg_ms"])


# --------------------------------------------------------------------------------------------
# adb
# --------------------------------------------------------------------------------------------
def device_command(args: Sequence[str]) -> str:
    """One command line for the device's POSIX shell (mksh/toybox sh), each argument quoted."""
    return " ".join(shlex.quote(str(a)) for a in args)


class Adb:
    def __init__(self, adb: str = "adb", serial: Optional[str] = None, timeout: float = 600):
        exe = adb if os.path.sep in adb else shutil.which(adb)
        if not exe or not os.path.isfile(exe):
            raise AndroidError(f"adb not found ({adb!r}): install Android platform-tools "
                               f"(apt-get install adb, or the SDK's platform-tools) or pass --adb")
        self.exe, self.timeout = exe, timeout
        self.serial = serial or self._only_device()

    def _raw(self, args: List[str], timeout: Optional[float] = None) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([self.exe, *args], capture_output=True, text=True,
                                  timeout=timeout or self.timeout)
        except subprocess.TimeoutExpired:
            raise AndroidError(f"adb {' '.join(args[:3])} timed out") from None

    def _only_device(self) -> str:
        p = self._raw(["devices"], timeout=30)
        devs = [line.split("\t")[0] for line in p.stdout.splitlines()[1:]
                if line.strip().endswith("\tdevice")]
        if not devs:
            raise AndroidError("no Android device attached (`adb devices` lists none in state "
                               "'device'): connect one with USB debugging on, or pass --serial")
        if len(devs) > 1:
            raise AndroidError(f"{len(devs)} devices attached ({', '.join(devs)}): pass --serial")
        return devs[0]

    def run(self, *args: str, check: bool = True, timeout: Optional[float] = None) -> str:
        p = self._raw(["-s", self.serial, *args], timeout)
        if check and p.returncode != 0:
            raise AndroidError(f"adb {' '.join(args[:2])} failed ({p.returncode}): "
                               f"{(p.stderr or p.stdout).strip()[-300:]}")
        return p.stdout

    def shell(self, *args: str, **kw) -> str:
        """Runs a command on the device. ``adb shell`` joins its arguments with spaces and the
        device's shell splits them again, so each argument is quoted for that shell here, the
        one place every device command goes through: an empty value stays an argument, and a
        space, ``;`` or ``$()`` in a file name stays text."""
        return self.run("shell", device_command(args), **kw)

    def push(self, local: str, remote: str) -> None:
        self.run("push", local, remote)

    def pull(self, remote: str, local: str) -> None:
        self.run("pull", remote, local)

    def exists(self, remote: str) -> bool:
        return self._raw(["-s", self.serial, "shell", device_command(["ls", remote])],
                         30).returncode == 0

    def device_info(self) -> dict:
        def prop(k):
            return self.shell("getprop", k, check=False).strip() or None

        return {"kind": "android", "name": prop("ro.product.model"), "serial": self.serial,
                "manufacturer": prop("ro.product.manufacturer"),
                "sdk": prop("ro.build.version.sdk"), "abi": prop("ro.product.cpu.abi"),
                "soc": prop("ro.soc.model")}


# --------------------------------------------------------------------------------------------
# the two ways to run on the device
# --------------------------------------------------------------------------------------------
def benchmark_model_args(binary_remote: str, model_remote: str, delegate: str, threads: int,
                         warmup: int, runs: int, op_profiling: bool = False) -> List[str]:
    if delegate not in DELEGATE_FLAGS:
        raise AndroidError(f"unknown delegate {delegate!r}: choose from {sorted(DELEGATE_FLAGS)}")
    return [binary_remote, f"--graph={model_remote}", f"--num_threads={threads}",
            f"--warmup_runs={warmup}", f"--num_runs={runs}", *DELEGATE_FLAGS[delegate]] + (
        ["--enable_op_profiling=true"] if op_profiling else [])


def app_start_args(extras: Dict[str, object]) -> List[str]:
    """``am start`` arguments for the app's modes, typed from the protocol file: ``-S`` stops
    the app first (every run in a fresh process), ``-W`` waits for the launch."""
    proto = protocol()
    args = ["am", "start", "-S", "-W", "-n", proto["package"] + "/" + proto["activity"]]
    for k, v in extras.items():
        if k not in proto["extras"]:
            raise AndroidError(f"the app's benchmark mode has no extra {k!r}")
        if v is None or v == "":
            continue  # an extra not given is left out (the app reads it as absent)
        args += [proto["extras"][k]["flag"], k, str(v)]
    return args


def _fill(rec: dict, fields: dict) -> dict:
    for k, v in fields.items():
        rec[k] = v
    return rec


def run(artifacts_dir: str, out_dir: str, adb: str = "adb", serial: Optional[str] = None,
        delegates: Sequence[str] = ("cpu",), threads: int = 4, warmup: int = 5, runs: int = 50,
        binary: Optional[str] = None, timeout: float = 600,
        only: Optional[Sequence[str]] = None, log=print, op_profiling: bool = False,
        require_full_delegation: bool = False) -> List[dict]:
    """Latency per artifact x delegate -> ``android.jsonl`` (accuracy on the phone:
    ``accuracy``).
    With benchmark_model, each record says how many nodes the delegate took (its "Replacing N
    out of M node(s)" line) and with ``op_profiling`` where the milliseconds went per op type;
    ``require_full_delegation`` fails a record whose delegate did not take the whole graph."""
    for d in delegates:
        if d not in DELEGATE_FLAGS:
            raise AndroidError(f"unknown delegate {d!r}: choose from {sorted(DELEGATE_FLAGS)}")
    if binary and not os.path.isfile(binary):
        raise AndroidError(f"--benchmark-binary {binary} does not exist")
    manifest = load_manifest(artifacts_dir)
    dev = Adb(adb, serial, timeout)
    info = dev.device_info()
    os.makedirs(out_dir, exist_ok=True)
    out: List[dict] = []
    proto = protocol()
    if binary:
        bin_remote = f"{REMOTE_TMP}/benchmark_model"
        dev.push(binary, bin_remote)
        dev.shell("chmod", "755", bin_remote)
        remote_dir = REMOTE_TMP
    else:
        remote_dir = proto["device_dir"]
        dev.shell("mkdir", "-p", remote_dir)
        for name in ("labels.txt", "preprocessing.json"):
            if os.path.isfile(os.path.join(artifacts_dir, name)):
                dev.push(os.path.join(artifacts_dir, name), f"{remote_dir}/{name}")
    for e in selected_artifacts(manifest, only):
        if e.get("target") != "tflite":
            continue
        problem = verify(artifacts_dir, e)
        model_remote = f"{remote_dir}/{e['file']}"
        if not problem:
            dev.push(os.path.join(artifacts_dir, e["file"]), model_remote)
        if binary:
            for d in delegates:
                rec = records.new_record("latency", **records.artifact_fields(e),
                                         runtime="benchmark_model", delegate=RECORD_DELEGATE[d],
                                         device=info, threads=threads, batch_size=1)
                if problem:
                    out.append(_fill(rec, {"status": "failed", "error": problem}))
                    continue
                text = dev.shell(*benchmark_model_args(bin_remote, model_remote, d, threads,
                                                       warmup, runs, op_profiling), check=False)
                try:
                    parsed = parse_benchmark_model(text)
                    rec.update(parsed)
                    if parsed["fallback"]:
                        rec["error"] = None
                        rec["note"] = f"delegate fallback: {parsed['fallback']}"
                    why = delegation_problem(parsed.get("delegation"))
                    if require_full_delegation and why:
                        rec.update(status="failed", error=f"not fully delegated: {why}")
                except ValueError as ex:
                    rec.update(status="failed", error=str(ex))
                log(f"[android] {e['file']} {d}: " + (
                    f"mean {rec['latency_ms']['mean']:.2f} ms" if rec["status"] == "ok"
                    else rec["error"]), flush=True)
                out.append(rec)
        else:
            if problem:
                out.append(_app_failure(e, info, problem))
                continue
            out.extend(_run_app(dev, e, model_remote, remote_dir, delegates, threads, warmup,
                                runs, timeout, info, log))
    records.write_jsonl(out, os.path.join(out_dir, records.RowsFile.ANDROID))
    return out


def _run_app(dev, entry, model_remote, remote_dir, delegates, threads, warmup, runs,
             timeout, info, log) -> List[dict]:
    proto = protocol()
    run_id = uuid.uuid4().hex[:12]
    output = f"{remote_dir}/result-{run_id}.json"
    app_delegates = {v: k for k, v in proto["delegates"].items()}
    extras = {"model": model_remote, "labels": f"{remote_dir}/labels.txt",
              "preprocessing": f"{remote_dir}/preprocessing.json",
              "delegates": ",".join(app_delegates[RECORD_DELEGATE[d]] for d in delegates),
              "threads": threads, "warmup": warmup, "runs": runs, "output": output,
              "run_id": run_id, "mode": "benchmark"}
    not_started = _start(dev, extras)
    if not_started:
        return [_app_failure(entry, info, not_started)]
    done = _wait_done(dev, output, timeout)
    # the app rewrites its records after every delegate: without the done marker, what it
    # wrote before stopping (a delegate that crashed the process) is still its result
    got = _pull_json(dev, output) if done or dev.exists(output) else None
    if not isinstance(got, (list, dict)):
        return [_app_failure(entry, info, (
            f"the app wrote no result in {timeout:.0f} s (see `adb logcat -s "
            "InceptionEdgeBench`)" if not done else "the app's result is not valid JSON"))]
    out = []
    for r in got if isinstance(got, list) else [got]:
        problems = records.validate(r)
        if problems:
            out.append(_app_failure(entry, info, "the app's record breaks the schema: "
                                    + "; ".join(problems), kind=r.get("kind") or "latency"))
            continue
        r.update({k: v for k, v in records.artifact_fields(entry).items() if v is not None})
        r["git"] = dict(records.git_state())
        r["device"] = dict(info, **(r.get("device") or {}))
        log(f"[android] {entry['file']} {r['delegate']} ({r['kind']}): {r['status']}", flush=True)
        out.append(r)
    if not done:  # the delegates the app never reported
        seen = {r.get("requested_delegate") or r.get("delegate") for r in out
                if r.get("kind") == "latency"}
        for d in delegates:
            if RECORD_DELEGATE[d] not in seen:
                out.append(_app_failure(entry, info, (
                    f"the app stopped before reporting {d} (no {proto['done_suffix']} marker "
                    f"in {timeout:.0f} s: it may have crashed on this delegate; see `adb "
                    "logcat -s InceptionEdgeBench`)"), delegate=RECORD_DELEGATE[d],
                    threads=threads))
    return out


def _start(dev: Adb, extras: dict) -> Optional[str]:
    """Starts the app's mode; why it did not start, or None."""
    started = dev.shell(*app_start_args(extras), check=False)
    if re.search(r"^\s*(Error|Exception|java\.lang\.\w+)", started, re.M):
        return (f"the app's {extras.get('mode', 'benchmark')} mode did not start "
                f"({started.strip()[-200:]}): build and install it (android_demo: ./gradlew "
                "copyModel installDebug)")
    return None


def _wait_done(dev: Adb, output: str, timeout: float) -> bool:
    deadline = time.time() + timeout
    while not dev.exists(output + protocol()["done_suffix"]):
        if time.time() > deadline:
            return False
        time.sleep(1.0)
    return True


def _app_failure(entry: dict, info: dict, error: str, kind: str = "latency", **fields) -> dict:
    """A failed record of the app's benchmark mode for ``entry`` on this device."""
    rec = records.new_record(kind, **records.artifact_fields(entry), runtime="android-app",
                             device=info, **fields)
    return _fill(rec, {"status": "failed", "error": error})


def _pull_json(dev: Adb, remote: str):
    tmp = tempfile.mkdtemp(prefix="pull-")
    try:
        local = os.path.join(tmp, "result.json")
        dev.pull(remote, local)
        with open(local, encoding="utf-8") as f:
            return json.load(f)
    except (AndroidError, OSError, ValueError):
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# the app's accuracy mode: per-image answers from the phone, paired with the host's float model
# --------------------------------------------------------------------------------------------
def accuracy(artifacts_dir: str, results_dir: str, adb: str = "adb",
             serial: Optional[str] = None, accelerators: Sequence[str] = ("cpu", "gpu", "npu"),
             threads: int = 4, timeout: float = 3600, only: Optional[Sequence[str]] = None,
             bootstrap_rounds: int = 2000, data_source: Optional[str] = None,
             data_path: Optional[str] = None, log=print) -> List[dict]:
    """Every .tflite x accelerator through the app's accuracy mode on the phone, paired with
    the host's float reference (``results_dir/predictions/reference.jsonl``) on the same
    images: rows with Δ top-1/top-5 [95 % CI], agreement, McNemar and what really ran, in
    ``results_dir/android_accuracy.jsonl``; the phone's predictions in
    ``results_dir/device_predictions/<device>/<accelerator>/``.

    The images pushed are the host's own (their encoded bytes, identities checked). Each
    accelerator runs in a fresh process; one that LiteRT cannot give is a failed row with the
    runtime's words, one that ran the model only in part is a flagged row
    (``accelerator.flagged``)."""
    for a in accelerators:
        if a not in ACCELERATORS:
            raise AndroidError(f"unknown accelerator {a!r}: choose from {sorted(ACCELERATORS)}")
    if threads < 1:
        raise AndroidError(f"--threads must be >= 1. Received: {threads}")
    manifest = load_manifest(artifacts_dir)
    ref = reference_predictions(results_dir)
    items, class_names = reference_items(artifacts_dir, manifest, ref, data_source, data_path)
    proto = protocol()
    dev = Adb(adb, serial, timeout)
    info = dev.device_info()
    remote_dir = proto["device_dir"]
    eval_remote = f"{remote_dir}/eval"
    tmp = tempfile.mkdtemp(prefix="android-eval-")
    try:
        folder = os.path.join(tmp, "eval")
        os.makedirs(folder)
        n = write_images(folder, ref, items, protocol()["images_file"])
        dev.shell("mkdir", "-p", remote_dir)
        for name in ("labels.txt", "preprocessing.json"):
            if os.path.isfile(os.path.join(artifacts_dir, name)):
                dev.push(os.path.join(artifacts_dir, name), f"{remote_dir}/{name}")
        dev.shell("rm", "-rf", eval_remote, check=False)
        dev.push(folder, eval_remote)
        log(f"[android] pushed the host's {n} evaluation images to {eval_remote}", flush=True)
        out_root = os.path.join(results_dir, DEVICE_PREDICTIONS, device_folder(info))
        rows: List[dict] = []
        for e in selected_artifacts(manifest, only):
            if e.get("target") != "tflite":
                continue
            rows.extend(_accuracy_artifact(dev, e, artifacts_dir, remote_dir, eval_remote,
                                           accelerators, threads, timeout, info, ref,
                                           class_names, bootstrap_rounds, out_root, tmp, log))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    records.write_jsonl(rows, os.path.join(results_dir, records.RowsFile.ANDROID_ACCURACY))
    return rows


def _accuracy_artifact(dev, e, artifacts_dir, remote_dir, eval_remote, accelerators, threads,
                       timeout, info, ref, class_names, rounds, out_root, tmp, log) -> List[dict]:
    proto = protocol()

    def failed(acc, error):
        row = failed_device_row(_app_failure(e, info, error, kind="accuracy",
                                             delegate=proto["delegates"][ACCELERATORS[acc]],
                                             threads=threads))
        log(f"[android] {e['file']} {acc}: failed: {error}", flush=True)
        return row

    problem = verify(artifacts_dir, e)
    if problem:
        return [failed(a, problem) for a in accelerators]
    model_remote = f"{remote_dir}/{e['file']}"
    dev.push(os.path.join(artifacts_dir, e["file"]), model_remote)
    header_local = os.path.join(tmp, "header.json")
    s = ref.header["set"]
    with open(header_local, "w") as f:
        json.dump({"artifact": e["file"], "sha256": e.get("sha256"), "recipe": e.get("recipe"),
                   "split": s.get("split"), "source": s.get("source"), "note": s.get("note")}, f)
    header_remote = f"{remote_dir}/header.json"
    dev.push(header_local, header_remote)
    rows = []
    for acc in accelerators:
        run_id = uuid.uuid4().hex[:12]
        output = f"{remote_dir}/result-{run_id}.json"
        preds_remote = f"{remote_dir}/predictions-{run_id}.jsonl"
        extras = {"model": model_remote, "labels": f"{remote_dir}/labels.txt",
                  "preprocessing": f"{remote_dir}/preprocessing.json",
                  "delegates": ACCELERATORS[acc], "threads": threads, "eval_dir": eval_remote,
                  "output": output, "run_id": run_id, "mode": "accuracy",
                  "header": header_remote, "predictions": preds_remote}
        why = _start(dev, extras)
        if why:
            rows.append(failed(acc, why))
            continue
        if not _wait_done(dev, output, timeout):
            rows.append(failed(acc, f"no result in {timeout:.0f} s: the app stopped or is still "
                                    "running (see `adb logcat -s InceptionEdgeBench`)"))
            continue
        got = _pull_json(dev, output)
        rec = got[0] if isinstance(got, list) and len(got) == 1 and isinstance(got[0], dict) \
            else None
        if rec is None or records.validate(rec):
            rows.append(failed(acc, "the app's result is not one valid record" + (
                ": " + "; ".join(records.validate(rec)) if rec else "")))
            continue
        if rec.get("status") != "ok":
            rows.append(failed(acc, f"the app: {rec.get('error')}"))
            continue
        local = os.path.join(tmp, f"predictions-{run_id}.jsonl")
        try:
            dev.pull(preds_remote, local)
            phone = predictions.read(local)
            if phone.header.get("sha256") not in (None, e.get("sha256")):
                raise predictions.PredictionError(
                    f"the phone's file answers for sha256 {phone.header['sha256']}, not "
                    f"{e.get('sha256')}")
            from edge_eval import stats

            d = stats.paired_drift(predictions.pair(ref, phone), class_names, rounds)
        except (AndroidError, predictions.PredictionError) as ex:
            rows.append(failed(acc, f"the phone's predictions: {ex}"))
            continue
        finally:
            dev.shell("rm", "-f", output, output + proto["done_suffix"], preds_remote,
                      check=False)
        rows.append(device_row(e, info, threads, rec, phone, d, acc, out_root, local, log))
    return rows


