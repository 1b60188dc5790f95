"""Loading a Keras model file without running code from it, unless the user opts in.

A Keras model file can carry Python: a ``Lambda`` layer stores marshalled bytecode that the loader
executes, and a ``TFOpLambda`` layer names any ``tf.*`` function to call (``io.write_file``
included). Keras 3's and tf_keras' ``.keras`` loaders refuse ``Lambda`` in their safe mode, but the
legacy HDF5 loader has no safe mode at all. So every model file the project loads goes through
``check_model_file`` first: it reads the architecture (the HDF5 ``model_config`` attribute, or the
``.keras`` archive's ``config.json``) as data, walks every layer (nested models and QAT wrappers
too) and refuses the code-carrying ones with one message naming them. A SavedModel is a program too: ``check_saved_model`` reads
its graph as data and refuses ops outside an image classifier's (train.graph_ops). The opt-in is
loud on purpose: ``--unsafe-allow-model-code`` on the command lines, which sets
``UNSAFE_ALLOW_MODEL_CODE=1`` for the process and the workers it starts.
"""
from __future__ import annotations

import json
import os
import zipfile
from typing import Iterator, List, Optional, Tuple

ENV = "UNSAFE_ALLOW_MODEL_CODE"
# tf.* functions a TFOpLambda may call: arithmetic on tensors, nothing that touches files,
# processes or the Python runtime
SAFE_TF_OPS = ("math.", "nn.", "__operators__.", "image.resize", "clip_by_value", "concat",
               "reshape", "transpose", "expand_dims", "squeeze", "cast", "identity", "stack",
               "compat.v1.transpose", "split", "compat.v1.nn.")


class UnsafeModelError(ValueError):
    """A model file that would run code when loaded (the message names the layers)."""


def code_allowed() -> bool:
    return os.environ.get(ENV, "") == "1"


def allow_code() -> None:
    """The user's explicit opt-in (``--unsafe-allow-model-code``): this process and its
    workers may load model files that run code."""
    os.environ[ENV] = "1"


def read_architecture(path: str) -> Optional[dict]:
    """The model's architecture as JSON data, without building the model (None when the file
    holds none: a weights-only file)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if "config.json" not in z.namelist():
                return None
            return json.loads(z.read("config.json").decode("utf-8"))
    import h5py

    with h5py.File(path, "r") as f:
        raw = f.attrs.get("model_config")
    if raw is None:
        return None
    return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)


def _layers(cfg, where: str = "") -> Iterator[Tuple[str, dict]]:
    """(path, layer config dict) of every layer config in a Keras config tree."""
    if isinstance(cfg, dict):
        if "class_name" in cfg and isinstance(cfg.get("config"), dict):
            name = cfg["config"].get("name", "?")
            yield f"{where}/{name}" if where else str(name), cfg
            where = f"{where}/{name}" if where else str(name)
        for v in cfg.values():
            yield from _layers(v, where)
    elif isinstance(cfg, list):
        for v in cfg:
            yield from _layers(v, where)


def code_layers(architecture: dict) -> List[str]:
    """The layers of ``architecture`` that would run code on load or call: ``Lambda`` (Python
    bytecode or a named function), and ``TFOpLambda`` calling something outside
    ``SAFE_TF_OPS``."""
    bad = []
    for where, layer in _layers(architecture):
        cls = str(layer.get("class_name", "")).split(">")[-1]
        if cls == "Lambda":
            bad.append(f"{where} (Lambda: Python code)")
        elif cls in ("TFOpLambda", "SlicingOpLambda"):
            fn = str(layer["config"].get("function", ""))
            if cls == "TFOpLambda" and not fn.startswith(SAFE_TF_OPS):
                bad.append(f"{where} (TFOpLambda calling tf.{fn})")
    return bad


def check_model_file(path: str) -> None:
    """Raises UnsafeModelError if loading ``path`` would run code and the user has not opted in."""
    if code_allowed():
        return
    try:
        arch = read_architecture(path)
    except (OSError, ValueError, KeyError, UnicodeDecodeError, zipfile.BadZipFile) as e:
        raise UnsafeModelError(f"{path} could not be loaded as a model: its architecture "
                               f"cannot be read as data ({type(e).__name__}: {e})") from None
    bad = code_layers(arch) if arch else []
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise UnsafeModelError(
            f"{path} carries code that loading it would run: {shown}. Not loaded. If you trust "
            f"this file, pass --unsafe-allow-model-code (or set {ENV}=1)")


def check_saved_model(path: str) -> None:
    """Raises UnsafeModelError if the SavedModel folder ``path`` holds an op that acts on the
    machine (train.graph_ops: read as data, nothing of it loaded) and the user has not opted
    in; GraphError if its saved_model.pb cannot be read as one."""
    if code_allowed():
        return
    from train.graph_ops import refused_ops  # standard library only

    bad = refused_ops(path)
    if bad:
        shown = "; ".join(bad[:6]) + (f"; and {len(bad) - 6} more" if len(bad) > 6 else "")
        raise UnsafeModelError(
            f"{path} is a SavedModel whose graph holds ops an image classifier does not need "
            f"(they read or write files, run Python or reach outside the model): {shown}. Not "
            f"loaded, nothing of it ran. If you trust this model, pass "
            f"--unsafe-allow-model-code (or set {ENV}=1)")


# context-manager factories that make custom layers loadable (quantize/ registers tfmot's QAT
# scope with its own classes): a QAT export is read by whoever imported quantize/
_SCOPES: List = []


def register_custom_objects(scope) -> None:
    """``scope()`` is a context manager under which a model with custom layers loads."""
    if scope not in _SCOPES:
        _SCOPES.append(scope)


def custom_scopes() -> List:
    return list(_SCOPES)


def load_keras_model(path: str, custom_objects: Optional[dict] = None):
    """tf_keras ``load_model`` of a checked file (``check_model_file``), never compiled; a
    ``.keras`` file also keeps Keras' own safe mode unless the user opted in."""
    import tf_keras

    check_model_file(path)
    kw = {}
    if zipfile.is_zipfile(path):
        kw["safe_mode"] = not code_allowed()
    return tf_keras.models.load_model(path, compile=False, custom_objects=custom_objects, **kw)
