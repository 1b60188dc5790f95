"""A stand-in for Apple's Core ML runtime behind coremltools, for tests on Linux (on PYTHONPATH,
active when $STANDIN_COREML is set; without it nothing changes).

When coremltools is imported, the stand-in gives it what only its macOS wheels have: the native
``libcoremlpython``, an ``MLModel`` that loads a package for a compute unit and predicts, and
``MLComputePlan``. What it does, as Core ML does:

- ``MLModel(path, compute_units=...)`` reads the package (its spec and ML Program) and keeps
  the unit; ``predict({input: PIL image})`` answers ``{probabilities: {label: p}}``, computed
  by the project's ML Program evaluator on the image's pixels (this stand-in's numbers are that
  evaluator's, whatever the unit: the real runtime's fp16 on GPU/ANE is what a Mac measures);
- the compute plan places each op of the program's main function on the Neural Engine, the GPU
  or the CPU by the unit: CPU_ONLY all on the CPU; CPU_AND_NE the ANE except the op types this
  stand-in's ANE lacks (``NE_LACKS``), which fall back to the CPU; CPU_AND_GPU the GPU; ALL the
  ANE, and the GPU for what it lacks. Each op's estimated cost is its share of the ops;
- ``$STANDIN_COREML_NE_REFUSES``: packages whose file name contains it are refused by the ANE
  entirely (their ops run on the CPU under CPU_AND_NE, the GPU under ALL), as Core ML does
  silently for a model the ANE cannot take;
- ``$STANDIN_COREML_PREDICT_FAILS``: packages whose file name contains it raise from
  ``predict`` with Core ML's message.

Loads, units and predictions are appended to $STANDIN_COREML (a log the tests read).
"""
import importlib.abc
import importlib.machinery
import os
import sys
import types

NE_LACKS = {"softmax", "classify"}


def _log(line: str) -> None:
    with open(os.environ["STANDIN_COREML"], "a") as f:
        f.write(line + "\n")


def _patch(ct) -> None:
    import numpy as np

    native = types.ModuleType("coremltools.libcoremlpython")
    sys.modules["coremltools.libcoremlpython"] = native
    ct.libcoremlpython = native

    class MLCPUComputeDevice:
        pass

    class MLGPUComputeDevice:
        pass

    class MLNeuralEngineComputeDevice:
        pass

    def unit_name(u):
        return getattr(u, "name", str(u))

    def refused(path):
        key = os.environ.get("STANDIN_COREML_NE_REFUSES")
        return bool(key) and key in os.path.basename(os.path.normpath(path))

    class MLModel:
        def __init__(self, path, compute_units=ct.ComputeUnit.ALL, **kw):
            from convert.mil_eval import Evaluator

            self.path, self.unit = str(path), unit_name(compute_units)
            self._spec = ct.utils.load_spec(self.path)
            self._ev = Evaluator(self.path)
            self._labels = [str(c) for c in self._ev.ops[-2].outputs[0].val]
            _log(f"load {os.path.basename(os.path.normpath(self.path))} {self.unit}")

        def get_spec(self):
            return self._spec

        def get_compiled_model_path(self):
            return self.path

        def predict(self, data):
            key = os.environ.get("STANDIN_COREML_PREDICT_FAILS")
            if key and key in os.path.basename(os.path.normpath(self.path)):
                raise RuntimeError("Error computing NN outputs. (stand-in: the package's "
                                   "prediction fails)")
            (name, img), = data.items()
            pix = np.asarray(img, np.float32)
            pix = pix[None, None] if pix.ndim == 2 else pix.transpose(2, 0, 1)[None]
            p = self._ev.predict(pix, 1)[0]
            out = self._spec.description.predictedProbabilitiesName
            return {out: {label: float(v) for label, v in zip(self._labels, p)}}

    class _Op:
        def __init__(self, op_type):
            self.operator_name = op_type

    class _Usage:
        def __init__(self, preferred, supported):
            self.preferred_compute_device = preferred
            self.supported_compute_devices = supported

    class _Cost:
        def __init__(self, weight):
            self.weight = weight

    class MLComputePlan:
        def __init__(self, path, unit):
            from convert.mil_eval import Evaluator

            ops = [_Op(o.op_type) for o in Evaluator(path).ops]
            main = types.SimpleNamespace(block=types.SimpleNamespace(operations=ops))
            self.model_structure = types.SimpleNamespace(
                program=types.SimpleNamespace(functions={"main": main}))
            self.unit, self.refused, self._n = unit, refused(path), sum(
                o.operator_name != "const" for o in ops)
            _log(f"plan {os.path.basename(os.path.normpath(path))} {unit}")

        @classmethod
        def load_from_path(cls, path, compute_units=ct.ComputeUnit.ALL):
            return cls(str(path), unit_name(compute_units))

        def get_compute_device_usage_for_mlprogram_operation(self, op):
            ne_ok = not self.refused and op.operator_name not in NE_LACKS
            supported = [MLCPUComputeDevice(), MLGPUComputeDevice()] + (
                [MLNeuralEngineComputeDevice()] if ne_ok else [])
            asks_ne = self.unit in ("CPU_AND_NE", "ALL")
            asks_gpu = self.unit in ("CPU_AND_GPU", "ALL")
            pref = (MLNeuralEngineComputeDevice() if asks_ne and ne_ok else
                    MLGPUComputeDevice() if asks_gpu else MLCPUComputeDevice())
            return _Usage(pref, supported)

        def get_estimated_cost_for_mlprogram_operation(self, op):
            return _Cost(1.0 / max(self._n, 1))

    ct.models.MLModel = MLModel
    ct.models.compute_plan.MLComputePlan = MLComputePlan
    ct.models.compute_device.MLCPUComputeDevice = MLCPUComputeDevice
    ct.models.compute_device.MLGPUComputeDevice = MLGPUComputeDevice
    ct.models.compute_device.MLNeuralEngineComputeDevice = MLNeuralEngineComputeDevice


class _Finder(importlib.abc.MetaPathFinder):
    """Patches coremltools right after its own import, in whichever process imports it."""

    def find_spec(self, name, path=None, target=None):
        if name != "coremltools":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        real = spec.loader.exec_module

        def exec_module(module):
            real(module)
            _patch(module)

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get("STANDIN_COREML"):
    sys.meta_path.insert(0, _Finder())
