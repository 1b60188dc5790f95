"""The TFLite half of the convert-model script: one ``.tflite`` per recipe, each checked against its
source on the same seeded images, written atomically, and listed in ``manifest.json``."""
from __future__ import annotations

import contextlib
import errno
import dataclasses
import datetime
import hashlib
import json
import os
import re
import tempfile
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from train import keras_env  # noqa: F401
from train.preprocessing import FILENAME as PREPROCESSING_FILE
from train.preprocessing import PreprocessingSpec, read_labels
from train.safe_load import UnsafeModelError
from convert.provenance import MANIFEST, ManifestError, read_manifest  # noqa: F401
from convert.provenance import tool_versions as provenance_tool_versions
from convert.provenance import (git_state, sha256_file, sha256_tree,  # noqa: F401 (re-exported)
                                source_name)
from quantize.recipes import Recipe



class ConvertError(ValueError):
    """A user-facing conversion failure; the message has the numbers."""


# --------------------------------------------------------------------------------------------
# the source model
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Source:
    path: str
    kind: str  # "keras" | "saved_model"
    model_file: str  # the file or folder converted
    spec: PreprocessingSpec
    labels: List[str]
    config: Optional[dict]
    sha256: str
    keras_model: object = None
    saved_model: object = None
    is_qat: bool = False
    num_outputs: Optional[int] = None  # classes
    labels_generated: bool = False  # no labels.txt was given: class_0 .. class_{n-1}

    @property
    def name(self) -> str:
        return source_name((self.config or {}).get("name"), self.path, self.is_qat)

    @property
    def input_shape(self):
        return [*self.spec.input_size, self.spec.channels]

    def __call__(self, image):
        """The model's function, image batch -> predictions: the Keras model in inference mode,
        or the SavedModel's serving signature (whatever its input is named)."""
        if self.keras_model is not None:
            return self.keras_model(image, training=False)
        fn = self.saved_model.signatures["serving_default"]
        name = next(iter(fn.structured_input_signature[1]))
        return list(fn(**{name: image}).values())[0]

    def predict(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        return np.concatenate([np.asarray(self(x[i:i + batch_size]), np.float32)
                               for i in range(0, len(x), batch_size)], axis=0)


def load_keras(path: str):
    from train.safe_load import UnsafeModelError, load_keras_model

    try:
        return load_keras_model(path)
    except UnsafeModelError:
        raise
    except (ValueError, TypeError):  # a QAT model: its layers live in tfmot's scope
        import tensorflow_model_optimization as tfmot

        from quantize.qat import custom_objects

        with tfmot.quantization.keras.quantize_scope(custom_objects()):
            return load_keras_model(path)


def is_keras3_file(path: str) -> bool:
    """A ``.keras`` archive written by Keras 3 (tf_keras cannot read those)."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        if "metadata.json" not in z.namelist():
            return False
        try:
            meta = json.loads(z.read("metadata.json").decode("utf-8"))
        except ValueError:
            return False
    return str(meta.get("keras_version", "")).startswith("3")


def _keras3_as_saved_model(path: str) -> str:
    """A Keras 3 model file, loaded in safe mode, exported as a SavedModel the converters read
    (its serving signature is the model's function). The folder is removed at exit."""
    import atexit
    import shutil

    import keras  # Keras 3: the package itself, whatever TF_USE_LEGACY_KERAS says

    from convert import workdirs
    from train.safe_load import check_model_file, code_allowed

    check_model_file(path)
    model = keras.saving.load_model(path, compile=False, safe_mode=not code_allowed())
    out = workdirs.mkdtemp("convert-sm-")
    atexit.register(shutil.rmtree, out, True)
    os.rmdir(out)
    model.export(out, format="tf_saved_model", verbose=False)
    return out


def load_source(path: str, preprocessing: Optional[dict] = None,
                labels_file: Optional[str] = None) -> Source:
    """MODEL: an export folder (model.keras + preprocessing.json), a ``.keras``/``.h5`` file
    (tf_keras or Keras 3), or a SavedModel folder. The preprocessing is the file beside it, or
    ``preprocessing`` ({"name": "inception", ...overrides}: ``train.preprocessing.named_spec``)
    for a model trained elsewhere; the labels are labels.txt beside it, or ``labels_file``."""
    if not os.path.exists(path):
        raise ConvertError(f"model not found: {path}")
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    keras_files = [os.path.join(path, n) for n in ("model.keras", "model.h5")
                   if os.path.isdir(path) and os.path.isfile(os.path.join(path, n))]
    if keras_files:
        kind, model_file = "keras", keras_files[0]
    elif os.path.isdir(path) and os.path.isfile(os.path.join(path, "saved_model.pb")):
        kind, model_file = "saved_model", path
        folder = path if os.path.isfile(os.path.join(path, PREPROCESSING_FILE)) else \
            os.path.dirname(os.path.normpath(path))
    elif os.path.isfile(path) and path.endswith((".keras", ".h5")):
        kind, model_file = "keras", path
    else:
        raise ConvertError(f"{path} is not a model: expected an export folder, a .keras/.h5 file "
                           "or a SavedModel folder (with saved_model.pb)")
    labels_path = labels_file or os.path.join(folder, "labels.txt")
    if labels_file and not os.path.isfile(labels_file):
        raise ConvertError(f"--labels {labels_file}: no such file")
    try:
        labels = read_labels(labels_path) if os.path.isfile(labels_path) else []
    except ValueError as e:
        raise ConvertError(str(e)) from None
    cfg_path = os.path.join(folder, "config.json")
    try:
        config = json.load(open(cfg_path, encoding="utf-8")) if os.path.isfile(cfg_path) else None
    except (ValueError, UnicodeDecodeError) as e:
        raise ConvertError(f"{cfg_path} is not valid JSON: {e}") from None
    if config is not None and not isinstance(config, dict):
        raise ConvertError(f"{cfg_path} is not a JSON object")
    src = Source(path, kind, model_file, None, labels, config,
                 sha256_file(model_file) if kind == "keras" else sha256_tree(model_file))
    try:
        src.name  # noqa: B018 - a name from config.json must be a safe file name
    except ValueError as e:
        raise ConvertError(f"{path}: {e}") from None
    try:
        if kind == "keras" and is_keras3_file(model_file):
            import tensorflow as tf

            src.saved_model = tf.saved_model.load(_keras3_as_saved_model(model_file))
            kind = src.kind = "keras3"
        elif kind == "keras":
            src.keras_model = load_keras(model_file)
            from train.model import is_quantization_aware

            src.is_qat = is_quantization_aware(src.keras_model)
        else:
            import tensorflow as tf

            src.saved_model = tf.saved_model.load(model_file)
        if src.keras_model is not None:
            shape = list(src.keras_model.input_shape[1:])
            n_out = int(src.keras_model.output_shape[-1])
        else:
            fn = src.saved_model.signatures["serving_default"]
            inputs = fn.structured_input_signature[1]
            if len(inputs) != 1:
                raise ConvertError(f"{model_file} has {len(inputs)} inputs "
                                   f"({sorted(inputs)}): an image classifier takes one image")
            shape = list(list(inputs.values())[0].shape[1:])
            n_out = int(list(fn.structured_outputs.values())[0].shape[-1])
    except ConvertError:
        raise
    except UnsafeModelError as e:
        raise ConvertError(str(e)) from None
    except Exception as e:  # noqa: BLE001 - any loader failure: not a readable model
        raise ConvertError(f"{model_file} could not be loaded as a model: "
                           f"{type(e).__name__}: {str(e).splitlines()[0][:300]}") from None
    if len(shape) != 3 or shape[-1] not in (1, 3) or None in shape:
        raise ConvertError(f"{model_file} takes input {shape}: expected one image, [height, "
                           "width, 1 or 3 channels] with a fixed size")
    src.spec = _source_spec(path, folder, preprocessing, shape)
    if shape != src.input_shape:
        raise ConvertError(f"the model takes {shape} but {PREPROCESSING_FILE} says "
                           f"{src.input_shape}")
    src.num_outputs = n_out
    if not labels:  # clear names rather than none: the app and the metadata show these
        src.labels = [f"class_{i}" for i in range(n_out)]
        src.labels_generated = True
    if labels and len(labels) != n_out:
        raise ConvertError(f"{os.path.basename(labels_path)} has {len(labels)} labels but the "
                           f"model has {n_out} outputs")
    return src


def _source_spec(path, folder, preprocessing, shape) -> PreprocessingSpec:
    from train.preprocessing import named_spec

    try:
        if preprocessing:
            opts = dict(preprocessing)
            return named_spec(opts.pop("name", None) or "inception", shape[:2], shape[2], **opts)
        return PreprocessingSpec.load(os.path.join(folder, PREPROCESSING_FILE))
    except ValueError as e:  # PreprocessingError: names the field
        raise ConvertError(str(e)) from None
    except FileNotFoundError:
        raise ConvertError(f"no {PREPROCESSING_FILE} next to {path}: name the model's "
                           "preprocessing (--preprocessing inception for [-1, 1] inputs, as "
                           "keras.applications.InceptionV3 expects), give --scale/--offset, or "
                           "write the file (see train/preprocessing.py)") from None


# --------------------------------------------------------------------------------------------
# calibration and check images
# --------------------------------------------------------------------------------------------
def dataset_images(src: Source, split: str, n: int, seed: int,
                   data_overrides: Optional[dict] = None) -> np.ndarray:
    """``n`` seeded images of ``split`` through the model's own evaluation preprocessing."""
    from train.config import from_dict
    from train.data import Dataset

    cfg = from_dict({"data": {**((src.config or {}).get("data") or {}), **(data_overrides or {})}})
    cfg.data.max_train_examples = cfg.data.max_eval_examples = None
    ds = Dataset(cfg.data, split)
    return ds.sample(n, seed).images(src.spec)


def check_images_array(x: np.ndarray, src: Source, n_min: int, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4 or list(x.shape[1:]) != src.input_shape:
        raise ConvertError(f"{what} has shape {list(x.shape)} but the model takes "
                           f"[N, {', '.join(map(str, src.input_shape))}]")
    if len(x) < n_min:
        raise ConvertError(f"{what} has {len(x)} images; at least {n_min} are needed")
    return x.astype(np.float32)


# --------------------------------------------------------------------------------------------
# conversion
# --------------------------------------------------------------------------------------------
_IO_TYPES = {"float32": None, "int8": "int8", "uint8": "uint8", "int16": "int16"}


def conversion_dir(src: Source) -> str:
    """The SavedModel every recipe converts from, written once per source: one signature, the
    model's variables, and the batch pinned to 1.

    A batch of -1 in the .tflite's shape signature makes ``edgetpu_compiler`` refuse the model
    ("a delegate that only supports static-sized tensors with a graph that has dynamic-sized
    tensors", google-coral/edgetpu#829), and phones run batch 1; LiteRT still resizes the input
    for batched evaluation. (The export's own ``saved_model/`` keeps its dynamic batch for
    serving.)"""
    if getattr(src, "_lean_dir", None) is None:
        import atexit
        import shutil

        import tensorflow as tf

        from train.trainer import save_serving

        from convert import workdirs

        workdirs.sweep(tempfile.gettempdir())  # what a killed run left
        path = workdirs.mkdtemp("convert-sm-")
        atexit.register(shutil.rmtree, path, True)
        if src.keras_model is not None:
            save_serving(src.keras_model, path, batch=1)
        else:  # a user's SavedModel: its serving signature, called at batch 1
            spec = tf.TensorSpec([1, *src.input_shape], tf.float32, name="image")
            module = tf.Module()
            module.source = src.saved_model
            module.serve = tf.function(lambda image: {"predictions": src(image)},
                                       input_signature=[spec])
            tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
        src._lean_dir = path
    return src._lean_dir


def _converter(src: Source):
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_saved_model(conversion_dir(src))


def configure(converter, recipe: Recipe, calib: Optional[np.ndarray], is_qat: bool):
    import tensorflow as tf

    if recipe.weights == "float32":
        return converter
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if recipe.weights == "float16":
        converter.target_spec.supported_types = [tf.float16]
        return converter
    if not recipe.integer_activations:
        return converter  # dynamic range
    if calib is not None and not is_qat:
        def representative():
            for i in range(len(calib)):
                yield [calib[i:i + 1]]
        converter.representative_dataset = representative
    if recipe.activations == "int16":
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    elif not is_qat:  # a QAT model carries its ranges: the converter needs no int8-only flag
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if _IO_TYPES[recipe.io]:
        converter.inference_input_type = getattr(tf, recipe.io)
        converter.inference_output_type = getattr(tf, recipe.io)
    return converter


_OPS_RE = re.compile(r"(?:ops? (?:are|is) not supported|unsupported ops?)[^:]*:\s*(.+)",
                     re.IGNORECASE)


def _unsupported_ops(message: str) -> List[str]:
    ops = set()
    for m in _OPS_RE.finditer(message):
        ops.update(re.findall(r"\b(?:tf|tfl)\.([A-Za-z0-9_]+)", m.group(1)))
    ops.update(re.findall(r"'(?:tf|tfl)\.([A-Za-z0-9_]+)' op", message))
    return sorted(ops)


def convert_bytes(src: Source, recipe: Recipe, calib: Optional[np.ndarray]) -> bytes:
    if recipe.calibrate and calib is None and not src.is_qat:
        raise ConvertError(f"{recipe.name} needs calibration images")
    if recipe.float_blocks:
        from quantize.selective import convert_selective

        return convert_selective(src, recipe, calib)
    conv = configure(_converter(src), recipe, calib, src.is_qat)
    try:
        data = conv.convert()
    except Exception as e:  # noqa: BLE001 - the converter raises many types
        msg = str(e)
        ops = _unsupported_ops(msg)
        if ops:
            raise ConvertError(f"{recipe.name}: the model has ops this recipe cannot quantize: "
                               f"{', '.join(ops)} (try dynamic_wi8_afp32, or keep them in float)"
                               ) from None
        raise ConvertError(f"{recipe.name}: conversion failed: {msg.strip().splitlines()[-1][:400]}"
                           ) from None
    if recipe.integer_activations:
        left = float_ops(data)
        if left:
            raise ConvertError(f"{recipe.name}: the model has ops this recipe cannot quantize: "
                               f"{', '.join(left)} (they stayed float; try dynamic_wi8_afp32, or "
                               "keep their block float with +float:)")
    return data


def float_ops(model_bytes: bytes) -> List[str]:
    """Ops (other than the I/O QUANTIZE/DEQUANTIZE) that compute in float in a .tflite model."""
    from convert.litert import TFLiteModel

    m = TFLiteModel(model_content=model_bytes, num_threads=1, xnnpack=False)
    dtypes = {t["index"]: np.dtype(t["dtype"]).kind for t in m.interp.get_tensor_details()}
    return sorted({d["op_name"] for d in m.interp._get_ops_details()
                   if d["op_name"] not in ("QUANTIZE", "DEQUANTIZE")
                   and any(dtypes.get(int(o)) == "f" for o in d["outputs"])})


def describe_tflite(model_bytes: bytes) -> dict:
    """I/O dtypes, shapes and quantization, and the op counts, read back with LiteRT."""
    from convert.litert import TFLiteModel

    # without the default XNNPACK delegate, which would fold the graph into DELEGATE nodes
    m = TFLiteModel(model_content=model_bytes, num_threads=1, xnnpack=False)
    ops = m.op_names()
    counts: Dict[str, int] = {}
    for o in ops:
        counts[o] = counts.get(o, 0) + 1
    details = m.interp._get_ops_details()
    tensors = {t["index"]: t for t in m.interp.get_tensor_details()}
    conv_dtypes = {}
    for d in details:
        if d["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            dt = np.dtype(tensors[d["inputs"][0]]["dtype"]).name
            conv_dtypes[dt] = conv_dtypes.get(dt, 0) + 1
    io = lambda d: {"name": d["name"], "dtype": np.dtype(d["dtype"]).name,  # noqa: E731
                    "shape": [int(s) for s in d["shape"]],
                    "quantization": {"scale": float(d["quantization"][0]),
                                     "zero_point": int(d["quantization"][1])}}
    return {"input": io(m.input), "output": io(m.output), "op_counts": counts,
            "conv_input_dtypes": conv_dtypes}


def weight_bytes(model_bytes: bytes) -> int:
    """Bytes of the constant buffers (weights, biases, scales) of a .tflite flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(model_bytes, 0)
    total = 0
    for i in range(model.BuffersLength()):
        buf = model.Buffers(i)
        total += buf.DataLength() or int(buf.Size())  # Size(): data stored past the 2 GB mark
    return total


def self_check(recipe: Recipe, model_bytes: bytes, x: np.ndarray, ref: np.ndarray,
               fp32_bytes: Optional[int], fp32_weight_bytes: Optional[int] = None) -> dict:
    """Agreement with the source on ``x`` and the size reduction, against the recipe's stated
    tolerances (convert/check.py, the rule Core ML variants are held to too). The size limit
    applies to the weights (constant tensors): a small graph's per-tensor metadata would
    otherwise hide the compression; the file ratio is reported too."""
    from convert.check import judge
    from convert.litert import TFLiteModel

    got = TFLiteModel(model_content=model_bytes, num_threads=2).predict(x)
    wbytes = weight_bytes(model_bytes)
    ratio = len(model_bytes) / fp32_bytes if fp32_bytes else None
    out = judge(recipe, got, ref, wbytes / fp32_weight_bytes if fp32_weight_bytes else None)
    out.update(size_ratio_vs_fp32=None if ratio is None else round(ratio, 4),
               weight_bytes=wbytes)
    return out


def atomic_write_bytes(path: str, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.{os.getpid()}.",
                               suffix=".partial", dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ConvertError(f"the disk is full: could not write {path} ({len(data) / 1e6:.1f} "
                               f"MB); nothing was left half-written") from None
        raise


def atomic_write_json(path: str, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


CONVERT_TOOLS = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert",
                 "coremltools", "numpy")


def tool_versions() -> dict:
    """The converters' versions, as every manifest records them."""
    return provenance_tool_versions(CONVERT_TOOLS)


def load_manifest(out_dir: str) -> dict:
    """The folder's manifest, ``{}`` when there is none yet (ConvertError when it is damaged)."""
    try:
        return read_manifest(out_dir, required=False)
    except ManifestError as e:
        raise ConvertError(str(e)) from None


@contextlib.contextmanager
def manifest_lock(out_dir: str):
    """Serializes read-modify-write of ``out_dir/manifest.json`` between processes (flock):
    two conversions into one folder both end up listed."""
    import fcntl

    fd = os.open(os.path.join(out_dir, ".manifest.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def update_manifest(out_dir: str, change: Callable[[dict], Optional[dict]]) -> dict:
    """Applies ``change`` to the manifest as it is on disk now, under the lock; ``change``
    returns the new manifest, or None for no change (nothing is written)."""
    with manifest_lock(out_dir):
        current = load_manifest(out_dir)
        new = change(current)
        if new is None:
            return current
        atomic_write_json(os.path.join(out_dir, MANIFEST), new)
        return new


def _source_entry(src: Source) -> dict:
    return {"path": os.path.abspath(src.path), "kind": src.kind, "name": src.name,
            "qat": src.is_qat}


def commit_artifact(out_dir: str, src: Source, entry: dict) -> None:
    """Lists one artifact (already in place) in the manifest at once: a run killed later
    leaves no file that no manifest lists."""
    def change(m):
        arts = {a["file"]: a for a in m.get("artifacts", [])}
        arts[entry["file"]] = entry
        return dict(m, schema_version=1, artifacts=sorted(arts.values(), key=lambda a: a["file"]),
                    sources={**m.get("sources", {}), src.sha256: _source_entry(src)})
    update_manifest(out_dir, change)


def start_run(out_dir: str, log: Callable = print) -> None:
    """Before converting into ``out_dir``: the folder exists, what killed runs left is gone."""
    from convert import workdirs

    os.makedirs(out_dir, exist_ok=True)
    workdirs.sweep(out_dir, log)


def convert_tflite(src: Source, recipes: Sequence[Recipe], out_dir: str,
                   calib: Optional[np.ndarray], check_x: np.ndarray,
                   log: Callable = print, check_from: str = "evaluation split, seeded",
                   metadata: Optional[dict] = None) -> dict:
    """Converts, checks and writes every recipe; returns the manifest (also written). Each
    artifact is listed in the manifest as soon as it is in place."""
    start_run(out_dir, log)
    manifest = load_manifest(out_dir)
    ref = src.predict(check_x)
    artifacts = {a["file"]: a for a in manifest.get("artifacts", [])}
    failures = []

    fp32_bytes = fp32_wbytes = None
    fp32_name = f"{src.name}_fp32.tflite"
    if (fp32_name in artifacts and os.path.isfile(os.path.join(out_dir, fp32_name))
            and artifacts[fp32_name].get("source_sha256") == src.sha256):
        fp32_bytes = artifacts[fp32_name]["bytes"]
        fp32_wbytes = artifacts[fp32_name]["check"]["weight_bytes"]
    ordered = sorted(recipes, key=lambda r: r.name != "fp32")  # fp32 first: the size baseline
    if fp32_bytes is None and not any(r.name == "fp32" for r in ordered):
        base = convert_bytes(src, _fp32(), None)
        fp32_bytes, fp32_wbytes = len(base), weight_bytes(base)
    for recipe in ordered:
        fname = f"{src.name}_{recipe.name.replace('+float:', '_float-').replace(',', '-')}.tflite"
        prev = artifacts.get(fname)
        if (prev and prev.get("source_sha256") == src.sha256 and prev["recipe"] == recipe.name
                and prev.get("recipe_spec") == json.loads(json.dumps(dataclasses.asdict(recipe)))
                and os.path.isfile(os.path.join(out_dir, fname))
                and sha256_file(os.path.join(out_dir, fname)) == prev["sha256"]):
            log(f"[convert] {fname}: up to date (same source, recipe and file hash)", flush=True)
            continue
        log(f"[convert] {fname} ...", flush=True)
        try:
            data = convert_bytes(src, recipe, calib)
            desc = describe_tflite(data)
            if recipe.name == "fp32":
                fp32_bytes, fp32_wbytes = len(data), weight_bytes(data)
            check = self_check(recipe, data, check_x, ref, fp32_bytes, fp32_wbytes)
        except ConvertError as e:
            failures.append({"recipe": recipe.name, "source_sha256": src.sha256,
                             "source_name": src.name, "error": str(e)})
            log(f"[convert]   FAILED: {e}", flush=True)
            _drop_superseded(out_dir, artifacts, fname, log)
            continue
        if not check["passed"]:
            failures.append({"recipe": recipe.name, "source_sha256": src.sha256,
                             "source_name": src.name, "error": "; ".join(check["problems"]),
                             "check": check})
            log(f"[convert]   FAILED self-check: {'; '.join(check['problems'])}", flush=True)
            _drop_superseded(out_dir, artifacts, fname, log)
            continue
        meta = None
        if metadata is not None:
            from convert.metadata import add_metadata, read_metadata

            data = add_metadata(data, src.spec, src.labels, **_metadata_fields(src, recipe,
                                                                                 metadata))
            back = read_metadata(data)  # verify what a Task Library / MediaPipe reader sees
            meta = {"embedded": True, "name": back["name"], "version": back["version"],
                    "normalization": back["inputs"][0]["normalization"],
                    "labels": len((back["packed_files"].get("labels.txt") or b"").decode()
                                  .splitlines()),
                    "min_parser_version": back["min_parser_version"]}
            if meta["labels"] != len(src.labels or []) or not np.allclose(
                    meta["normalization"]["mean"], src.spec.mean, rtol=1e-6):
                raise ConvertError(f"{fname}: embedded metadata does not read back as written")
        atomic_write_bytes(os.path.join(out_dir, fname), data)
        artifacts[fname] = {
            "file": fname, "target": "tflite", "recipe": recipe.name,
            "source_sha256": src.sha256, "source_name": src.name,
            "recipe_spec": dataclasses.asdict(recipe),
            "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
            "qat": src.is_qat, **desc, "check": check, "metadata": meta,
        }
        commit_artifact(out_dir, src, artifacts[fname])
        log(f"[convert]   ok: {len(data) / 1e6:.2f} MB, {check_summary(check)}", flush=True)

    return finish_manifest(out_dir, manifest, src, artifacts, failures,
                           {r.name for r in recipes}, check_x, check_from)


def check_summary(check: dict) -> str:
    from convert.check import summary

    return summary(check)


def _metadata_fields(src: Source, recipe: Recipe, given: dict) -> dict:
    return {"name": f"{src.name}_{recipe.name}",
            "description": given.get("description") or (
                f"Inception-v3 image classifier ({src.name}), TFLite recipe {recipe.name}: "
                f"{recipe.description}"),
            "version": given.get("version") or f"{src.name}@{src.sha256[:12]}",
            "author": given.get("author") or "convert/ of the Inception-v3 edge pipeline",
            "license_": given.get("license") or "the source model's license"}


def finish_manifest(out_dir: str, manifest: dict, src: Source, artifacts: dict,
                    failures: List[dict], ran: set, check_x: np.ndarray, check_from: str) -> dict:
    """Writes preprocessing.json, labels.txt and the manifest after a conversion run (TFLite or
    Core ML): this run's artifacts and failures replace the earlier ones of the same recipes.
    The manifest is merged with what is on disk now, under the lock (another conversion may
    have listed its artifacts meanwhile; ``manifest`` and ``artifacts`` are this run's view). An
    unchanged manifest is not rewritten, so a rerun leaves later stages' inputs as they were."""
    atomic_write_json(os.path.join(out_dir, PREPROCESSING_FILE), src.spec.to_dict())
    if src.labels:
        atomic_write_bytes(os.path.join(out_dir, "labels.txt"),
                           ("\n".join(src.labels) + "\n").encode())

    def change(current: dict) -> Optional[dict]:
        # this run's artifacts were listed as they were committed (commit_artifact) and its
        # superseded ones unlisted (_drop_superseded): the disk's list is the merged one
        arts = {a["file"]: a for a in current.get("artifacts", [])}
        new = {
            "schema_version": 1,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "sources": {**current.get("sources", {}), src.sha256: _source_entry(src)},
            "preprocessing": src.spec.to_dict(),
            "labels": "labels.txt" if src.labels else None,
            "labels_generated": src.labels_generated,
            "check_inputs": {"images": int(len(check_x)), "source": check_from},
            "tools": tool_versions(), "git": dict(git_state()),
            "artifacts": sorted(arts.values(), key=lambda a: a["file"]),
            # this run supersedes earlier failures of the same model (by name: a retrained
            # model has a new hash) for the recipes it ran, and any of an older version of it
            "failures": [f for f in current.get("failures", [])
                         if f.get("source_name", src.name) != src.name
                         or (f.get("source_sha256") == src.sha256
                             and f.get("recipe") not in ran)] + failures,
        }
        used = {a.get("source_sha256") for a in new["artifacts"]} | {
            f.get("source_sha256") for f in new["failures"]}
        new["sources"] = {k: v for k, v in new["sources"].items() if k in used}
        volatile = ("created", "git", "tools")
        if current and {k: v for k, v in current.items() if k not in volatile} == \
                json.loads(json.dumps({k: v for k, v in new.items() if k not in volatile})):
            return None  # nothing changed: keep the file (and its provenance) as it was
        return new

    return update_manifest(out_dir, change)


def _drop_superseded(out_dir: str, artifacts: dict, fname: str, log: Callable) -> None:
    """A failed (re)conversion removes the earlier artifact of that name: it was made from
    another version of the model or recipe, and must not be evaluated as if it were current."""
    old = artifacts.pop(fname, None)
    if old is not None:
        # unlisted first, then removed: the manifest never lists a missing file
        update_manifest(out_dir, lambda m: dict(m, artifacts=[
            a for a in m.get("artifacts", []) if a["file"] != fname]))
        path = os.path.join(out_dir, fname)
        if os.path.isdir(path):
            import shutil

            shutil.rmtree(path)
        elif os.path.isfile(path):
            os.remove(path)
        log(f"[convert]   removed the earlier {fname} (from source "
            f"{old.get('source_sha256', '')[:12]}): superseded by this failed conversion",
            flush=True)


def _fp32() -> Recipe:
    from quantize.recipes import RECIPES

    return RECIPES["fp32"]
