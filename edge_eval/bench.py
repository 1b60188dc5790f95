"""Host latency benchmark of one .tflite (run side: numpy + LiteRT (+ OpenCV), no TensorFlow).

Measures like TFLite's ``benchmark_model``: model load + delegate init, the first inference,
warm-up runs, then timed runs until both ``runs`` and ``min_seconds`` are reached (capped by
``max_seconds``). Peak memory is the process's max RSS, so each benchmark runs in its own worker
process (``edge_eval.worker``). A result with fewer than ``MIN_VALID_RUNS`` runs or under
``MIN_VALID_SECONDS`` of timed runs is marked invalid and reports no latency.
"""
from __future__ import annotations

import os
import resource
import sys
import time
from typing import Optional

import numpy as np

from contract.litert import TFLiteModel, delegation_record, load_delegate, runtime_name

MIN_VALID_RUNS = 10
MIN_VALID_SECONDS = 0.2

EDGETPU_LIBRARY = {"linux": "libedgetpu.so.1", "darwin": "libedgetpu.1.dylib",
                   "win32": "edgetpu.dll"}
EDGETPU_HELP = ("the Edge TPU runtime (libedgetpu) is not installed on this machine: install it "
                "from https://coral.ai/software/#edgetpu-runtime (Debian: apt-get install "
                "libedgetpu1-std) and attach a Coral device")


class DelegateUnavailable(RuntimeError):
    """The delegate's runtime is not on this machine: the row says so (status 'unavailable')."""


def latency_stats(times_ms) -> dict:
    t = np.asarray(times_ms, np.float64)
    return {"min": float(t.min()), "p50": float(np.percentile(t, 50)),
            "p90": float(np.percentile(t, 90)), "p99": float(np.percentile(t, 99)),
            "mean": float(t.mean()), "std": float(t.std()), "max": float(t.max())}


def validity(runs: int, seconds: float, min_runs: int = MIN_VALID_RUNS,
             min_seconds: float = MIN_VALID_SECONDS) -> Optional[str]:
    """None when a timing is trustworthy, else why not."""
    if runs < min_runs or seconds < min_seconds:
        return (f"only {runs} timed runs in {seconds:.3f} s (a valid result needs >= {min_runs} "
                f"runs and >= {min_seconds} s): raise --runs or --min-seconds")
    return None


def _runtime_label() -> str:
    return "litert" if runtime_name() == "ai_edge_litert" else runtime_name()


def timed_runs(invoke, x, runs: int, min_seconds: float, max_seconds: float) -> list:
    """Per-run milliseconds of ``invoke(x)``, until both ``runs`` runs and ``min_seconds`` of
    timed runs are reached (or ``max_seconds``). Stopping and ``validity`` count the same
    seconds - the timed runs' own - so a run that stops on ``min_seconds`` is valid."""
    times: list = []
    timed = 0.0
    while True:
        t = time.perf_counter()
        invoke(x)
        dt = time.perf_counter() - t
        times.append(dt * 1e3)
        timed += dt
        if (len(times) >= runs and timed >= min_seconds) or timed >= max_seconds:
            return times


def _results(times, warmup, threads, batch, delegate, runtime, init_ms, first_ms, delegation):
    why = validity(len(times), sum(t / 1e3 for t in times))
    out = {"status": "ok" if why is None else "invalid", "error": why,
           "latency_ms": None if why else latency_stats(times), "init_ms": init_ms,
           "first_inference_ms": first_ms, "warmup_runs": warmup, "runs": len(times),
           "duration_s": sum(times) / 1e3, "threads": threads, "batch_size": batch,
           "delegate": delegate, "runtime": runtime, "peak_memory_mb": peak_rss_mb(),
           "peak_memory_is": PEAK_MEMORY_IS, "delegation": delegation}
    if why:
        out["raw_latency_ms"] = latency_stats(times)  # kept for debugging, never reported
    return out


def bench_compiled(path: str, threads: int = 2, delegate: str = "xnnpack", warmup: int = 5,
                   runs: int = 50, min_seconds: float = 1.0, max_seconds: float = 60.0,
                   seed: int = 0) -> dict:
    """``bench_tflite`` through LiteRT's CompiledModel API (ai_edge_litert.compiled_model):
    the CPU accelerator with ``threads`` threads, input/output TensorBuffers made once, timed
    as the Interpreter is. ``delegation`` comes from the model's own ``is_fully_accelerated``."""
    if delegate != "xnnpack":
        raise ValueError("the CompiledModel runtime runs on its CPU accelerator (XNNPACK): "
                         f"delegate {delegate!r} is the Interpreter's")
    try:
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator
        from ai_edge_litert.options import CpuOptions, Options
    except ImportError as e:
        raise DelegateUnavailable(f"LiteRT's CompiledModel API is not installed ({e}): pip "
                                  "install ai-edge-litert>=2") from None
    t = time.perf_counter()
    model = CompiledModel.from_file(path, options=Options(
        hardware_accelerators=HardwareAccelerator.CPU,
        cpu_options=CpuOptions(num_threads=threads)))
    init_ms = (time.perf_counter() - t) * 1e3
    sig = list(model.get_signature_list())[0]
    idx = model.get_signature_index(sig)
    ins, outs = model.create_input_buffers(idx), model.create_output_buffers(idx)
    details = list(model.get_input_tensor_details(sig).values())
    rng = np.random.default_rng(seed)
    for buf, d in zip(ins, details):
        dt = np.dtype(d.get("dtype", "float32"))
        shape = d.get("shape", [1])
        data = rng.uniform(-1, 1, shape).astype(dt) if dt.kind == "f" else \
            rng.integers(-128 if dt.kind == "i" else 0, 128, shape).astype(dt)
        buf.write(data)
    run = lambda _: model.run_by_index(idx, ins, outs)  # noqa: E731
    t = time.perf_counter()
    run(None)
    first_ms = (time.perf_counter() - t) * 1e3
    for _ in range(warmup):
        run(None)
    times = timed_runs(run, None, runs, min_seconds, max_seconds)
    full = bool(model.is_fully_accelerated())

    deleg = delegation_record("compiled_model_cpu", None, None, None, None,
                              "CompiledModel.is_fully_accelerated (a yes/no: no counts)", full)
    shape = details[0].get("shape", [1]) if details else [1]
    return _results(times, warmup, threads, int(shape[0]), delegate,
                    "litert compiled_model", init_ms, first_ms, deleg)


def edgetpu_delegate():
    """The Edge TPU delegate, or raises DelegateUnavailable saying where to get the runtime."""
    lib = os.environ.get("EDGETPU_LIBRARY") or EDGETPU_LIBRARY.get(sys.platform,
                                                                    "libedgetpu.so.1")
    try:
        return load_delegate(lib)
    except (OSError, ValueError, RuntimeError) as e:
        raise DelegateUnavailable(f"{EDGETPU_HELP} (loading {lib} failed: {e})") from None


PEAK_MEMORY_IS = "the worker process's peak RSS (ru_maxrss)"


def peak_rss_mb() -> float:
    """This process's peak resident memory (ru_maxrss), in MB."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024.0 * 1024.0) if sys.platform == "darwin" else r / 1024.0


PREPROCESS_FRAME = (480, 640)  # the decoded image the host preprocessing is timed on (VGA)


def time_preprocessing(spec, image: Optional[np.ndarray] = None, repeats: int = 20) -> float:
    """Median ms to turn one decoded uint8 image (default: a seeded ``PREPROCESS_FRAME``, a
    camera frame's size) into model input (OpenCV path: crop, resize, scale)."""
    from edge_eval import preprocess

    if image is None:
        rng = np.random.default_rng(0)
        image = rng.integers(0, 256, (*PREPROCESS_FRAME, spec.source_channels), dtype=np.uint8)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        preprocess.central(image, spec)
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


RUNTIMES = ("interpreter", "compiled_model")


def bench_tflite(path: str, threads: int = 2, delegate: str = "xnnpack", warmup: int = 5,
                 runs: int = 50, min_seconds: float = 1.0, max_seconds: float = 60.0,
                 seed: int = 0, runtime: str = "interpreter") -> dict:
    """Times one model; returns the record's measurement fields (status, latency_ms, ...).
    ``runtime``: LiteRT's ``interpreter`` (the Interpreter API) or ``compiled_model`` (the
    CompiledModel API LiteRT now recommends: CPU accelerator, XNNPACK inside)."""
    if runtime == "compiled_model":
        return bench_compiled(path, threads, delegate, warmup, runs, min_seconds, max_seconds,
                              seed)
    if runtime != "interpreter":
        raise ValueError(f"runtime must be one of {RUNTIMES}, not {runtime!r}")

    delegates = None
    if delegate == "edgetpu":
        delegates = [edgetpu_delegate()]
    elif delegate not in ("xnnpack", "none"):
        raise ValueError(f"the host benchmark runs delegates xnnpack, none and edgetpu; "
                         f"{delegate!r} needs a device (python -m edge_eval android)")
    t = time.perf_counter()
    model = TFLiteModel(path, num_threads=threads, xnnpack=delegate == "xnnpack",
                        delegates=delegates)
    init_ms = (time.perf_counter() - t) * 1e3
    rng = np.random.default_rng(seed)
    shape = [int(v) for v in model.input["shape"]]
    lo, hi = -1.0, 1.0
    x = model.quantize_input(rng.uniform(lo, hi, shape).astype(np.float32))
    t = time.perf_counter()
    model.invoke_raw(x)
    first_ms = (time.perf_counter() - t) * 1e3
    for _ in range(warmup):
        model.invoke_raw(x)
    times = timed_runs(model.invoke_raw, x, runs, min_seconds, max_seconds)
    return _results(times, warmup, threads, shape[0], delegate, _runtime_label(), init_ms,
                    first_ms, model.delegation(delegate))


def bench_coreml(path: str, unit: str, pixels_nchw: np.ndarray, warmup: int = 5,
                 runs: int = 50, min_seconds: float = 1.0, max_seconds: float = 60.0) -> dict:
    """One latency measurement of a Core ML package under compute ``unit`` (Apple's runtime,
    contract.coreml_runtime), in the fields of LiteRT's rows: load + compile time
    (``init_ms``), the first prediction apart (``first_inference_ms``), ``warmup`` more, then
    the timed runs' percentiles; its delegation record is where the ops run (the compute plan).
    ``pixels_nchw``: one image as the package's image input takes it."""
    from PIL import Image

    from contract.coreml_runtime import CoreMLRuntimeError, image_input, load, placement

    model, load_s = load(path, unit)
    name, _ = image_input(model)
    p = np.clip(np.round(pixels_nchw[0]), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    feed = {name: Image.fromarray(p[..., 0] if p.shape[-1] == 1 else p)}

    def once(_=None):
        try:
            model.predict(feed)
        except Exception as e:  # noqa: BLE001 - Core ML's own message
            raise CoreMLRuntimeError(f"Core ML predict failed: {e}") from None

    t = time.perf_counter()
    once()
    first_ms = (time.perf_counter() - t) * 1e3
    for _ in range(warmup):
        once()
    times = timed_runs(once, None, runs, min_seconds, max_seconds)
    return _results(times, warmup, None, 1, unit.lower(), "coreml", load_s * 1e3, first_ms,
                    placement(model, unit))
