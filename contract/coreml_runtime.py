"""Core ML where it runs: Apple's own runtime through coremltools, per compute unit.

On a Mac (macOS 13+, ``pip install coremltools``), each ``.mlpackage`` is loaded with one of
``COMPUTE_UNITS`` (``load``: Core ML compiles it then) and

- timed by edge_eval.bench.bench_coreml: load + compile time, the first prediction apart, then
  warm runs with the same percentiles as LiteRT's rows;
- asked for its answers (``predict``): Apple's runtime, never the project's ML Program evaluator
  in its place - a ``predict`` that fails is an error with its reason;
- asked where each op runs (``placement``, Core ML's compute plan, macOS 14.4+): how many ops
  the chosen unit runs on the Neural Engine, the GPU and the CPU, and which op types the
  requested accelerator leaves to the CPU - the Core ML side of "was it fully accelerated".

Elsewhere ``missing()`` says, once, what is not there: coremltools' Linux wheels read and write
packages but carry no Core ML runtime (its native ``libcoremlpython`` is macOS-only).
"""
from __future__ import annotations

import platform
import time
from typing import Dict, List, Optional, Sequence  # noqa: F401

import numpy as np

COMPUTE_UNITS = ("CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE", "ALL")
# the accelerators a compute unit asks for (the CPU is always allowed)
ASKS = {"CPU_ONLY": (), "CPU_AND_GPU": ("gpu",), "CPU_AND_NE": ("neural_engine",),
        "ALL": ("gpu", "neural_engine")}
_DEVICES = {"MLNeuralEngineComputeDevice": "neural_engine", "MLGPUComputeDevice": "gpu",
            "MLCPUComputeDevice": "cpu"}


class CoreMLRuntimeError(RuntimeError):
    """Apple's runtime refused or failed (the message is Core ML's)."""


def _ct():
    import coremltools as ct

    return ct


def missing() -> Optional[str]:
    """None where Apple's Core ML runtime can be used, else what is missing (one line)."""
    try:
        ct = _ct()
    except ImportError:
        return "coremltools is not installed (pip install coremltools, on a Mac)"
    try:
        import importlib

        importlib.import_module("coremltools.libcoremlpython")
    except ImportError:
        return (f"Core ML's runtime runs on macOS 13+ only; coremltools {ct.__version__} on "
                f"{platform.system()} reads and writes packages but cannot run them")
    return None


def unit_of(delegate: str) -> str:
    """A row's delegate (``cpu_and_ne``) as Core ML's compute unit (``CPU_AND_NE``)."""
    unit = str(delegate).upper()
    if unit not in COMPUTE_UNITS:
        raise ValueError(f"Core ML compute unit must be one of {list(COMPUTE_UNITS)}, "
                         f"not {delegate!r}")
    return unit


def delegates(units: Sequence[str]) -> List[str]:
    """Compute units as row delegates (lower case), checked."""
    return [unit_of(u).lower() for u in units]


def load(path: str, unit: str):
    """(MLModel with ``unit``, seconds it took: Core ML compiles the package on load)."""
    ct = _ct()
    t = time.perf_counter()
    try:
        model = ct.models.MLModel(path, compute_units=getattr(ct.ComputeUnit, unit_of(unit)))
    except Exception as e:  # noqa: BLE001 - Core ML's own message
        raise CoreMLRuntimeError(f"Core ML could not load {path} for {unit}: {e}") from None
    return model, time.perf_counter() - t


def image_input(model):
    """(the image input's name, the probabilities output's name) of a classifier package."""
    spec = model.get_spec()
    inp = spec.description.input[0]
    return inp.name, spec.description.predictedProbabilitiesName


def predict(model, pixels_nchw: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """Probabilities in ``labels``' order for images given as the pixel values the package's
    image input takes (N, C, H, W, 0-255); CoreMLRuntimeError when Core ML fails."""
    from PIL import Image

    name, key = image_input(model)
    pix = np.clip(np.round(pixels_nchw), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    rows = []
    for p in pix:
        img = Image.fromarray(p[..., 0] if p.shape[-1] == 1 else p)
        try:
            d = model.predict({name: img})[key]
        except Exception as e:  # noqa: BLE001 - Core ML's own message
            raise CoreMLRuntimeError(f"Core ML predict failed: {e}") from None
        rows.append([d[str(label)] for label in labels])
    return np.asarray(rows, np.float32)


def placement(model, unit: str) -> dict:
    """Where the ops run under ``unit`` (Core ML's compute plan, macOS 14.4+), as the record's
    delegation field (contract.litert.delegation_record's shape): ops counted (``nodes``), how
    many run on an accelerator the unit asks for (``delegated``), the op types left to the CPU
    although it asks for one (``cpu_ops``; ``cpu_ops_could_run_on``: whether that accelerator
    could have run them), ops per device and each device's share of the estimated cost."""
    from contract.litert import delegation_record

    ct = _ct()
    unit = unit_of(unit)
    asks = ASKS[unit]
    try:
        from coremltools.models.compute_plan import MLComputePlan

        plan = MLComputePlan.load_from_path(path=model.get_compiled_model_path(),
                                            compute_units=getattr(ct.ComputeUnit, unit))
        ops = plan.model_structure.program.functions["main"].block.operations
    except Exception as e:  # noqa: BLE001 - older macOS: no compute plan
        return dict(delegation_record(unit.lower(), None, None, None, None,
                                      f"no compute plan (macOS 14.4+, coremltools 8+): {e}",
                                      full=False if asks else None))
    devices: Dict[str, int] = {"neural_engine": 0, "gpu": 0, "cpu": 0}
    cost: Dict[str, float] = {"neural_engine": 0.0, "gpu": 0.0, "cpu": 0.0}
    cpu_ops: Dict[str, int] = {}
    could: Dict[str, set] = {}
    counted = 0
    for op in ops:
        if op.operator_name == "const":
            continue
        usage = plan.get_compute_device_usage_for_mlprogram_operation(op)
        if usage is None:
            continue
        counted += 1
        dev = _DEVICES.get(type(usage.preferred_compute_device).__name__, "cpu")
        devices[dev] += 1
        try:
            w = plan.get_estimated_cost_for_mlprogram_operation(op)
            cost[dev] += float(w.weight) if w is not None else 0.0
        except Exception:  # noqa: BLE001 - a cost is optional
            pass
        if asks and dev == "cpu":
            cpu_ops[op.operator_name] = cpu_ops.get(op.operator_name, 0) + 1
            could.setdefault(op.operator_name, set()).update(
                {_DEVICES.get(type(d).__name__, "cpu") for d in usage.supported_compute_devices}
                & set(asks))
    on_accel = sum(devices[d] for d in asks)
    rec = delegation_record(unit.lower(), counted, on_accel if asks else None, None,
                            cpu_ops if asks else None, "Core ML compute plan",
                            full=(counted > 0 and on_accel == counted) if asks else None)
    rec.update(devices=devices, cost_share={k: round(v, 4) for k, v in cost.items()},
               cpu_ops_could_run_on={k: sorted(v) for k, v in could.items()})
    return rec
