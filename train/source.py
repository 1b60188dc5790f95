"""A trained model as the later stages read it: a run's ``export/`` (model.keras or model.h5 +
preprocessing.json + labels.txt + config.json, written by train/ and by quantize/'s QAT), or a model
trained elsewhere (a Keras 3 ``.keras``, a tf_keras ``.keras``/``.h5``, a SavedModel) with its
preprocessing named (``contract.preprocessing.named_spec``). Also the seeded dataset images a
model is calibrated and checked on, through its own evaluation preprocessing.

Every model file goes through ``train.safe_load`` first (a file that carries code is refused unless
the user opted in). QAT models load through the custom-object scopes quantize/ registers
(``train.safe_load.register_custom_objects``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import List, Optional

import numpy as np

from train import keras_env  # noqa: F401
from contract.manifest import sha256_file, sha256_tree, source_name
from contract.preprocessing import FILENAME as PREPROCESSING_FILE
from contract.preprocessing import PreprocessingSpec, named_spec, read_labels
from contract import workdirs
from train.graph_ops import GraphError
from train.safe_load import UnsafeModelError, check_model_file, check_saved_model


class ModelError(ValueError):
    """A model that cannot be read as an image classifier; the message says why."""


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
    """A checked tf_keras model file; one with custom layers (a QAT export) loads under the
    scopes registered for them (``import quantize`` registers tfmot's)."""
    from train.safe_load import UnsafeModelError, custom_scopes, load_keras_model

    try:
        return load_keras_model(path)
    except UnsafeModelError:
        raise
    except (ValueError, TypeError) as e:
        scopes = custom_scopes()
        if not scopes:
            raise ModelError(f"{path} has layers this process cannot build ({e}); a QAT model "
                             "loads once quantize/ is imported") from None
        for i, scope in enumerate(scopes):
            try:
                with scope():
                    return load_keras_model(path)
            except (ValueError, TypeError):
                if i == len(scopes) - 1:
                    raise


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

    from train.safe_load import check_model_file, code_allowed

    check_model_file(path)
    model = keras.saving.load_model(path, compile=False, safe_mode=not code_allowed())
    out = workdirs.mkdtemp("convert-sm-")
    atexit.register(shutil.rmtree, out, True)
    os.rmdir(out)
    model.export(out, format="tf_saved_model", verbose=False)
    return out


def locate(path: str):
    """(kind, model file or folder, the folder its preprocessing.json and labels.txt are in)
    of a MODEL path; ModelError when it is none of the kinds load_source reads."""
    if not os.path.exists(path):
        raise ModelError(f"model not found: {path}")
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    keras_files = [os.path.join(path, n) for n in ("model.keras", "model.h5")
                   if os.path.isdir(path) and os.path.isfile(os.path.join(path, n))]
    if keras_files:
        return "keras", keras_files[0], folder
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "saved_model.pb")):
        folder = path if os.path.isfile(os.path.join(path, PREPROCESSING_FILE)) else \
            os.path.dirname(os.path.normpath(path))
        return "saved_model", path, folder
    if os.path.isfile(path) and path.endswith((".keras", ".h5")):
        return "keras", path, folder
    raise ModelError(f"{path} is not a model: expected an export folder, a .keras/.h5 file "
                     "or a SavedModel folder (with saved_model.pb)")


def check_model(path: str) -> None:
    """The loader's safety checks of a MODEL path, as data, without TensorFlow: a Keras file
    that carries code, or a SavedModel whose graph acts on the machine, is a ModelError (unless
    the user opted in). load_source runs them too; a caller that hands the model to another
    process (the evaluation harness) runs them first, so the refusal is one message up front."""
    kind, model_file, _ = locate(path)
    try:
        (check_model_file if kind == "keras" else check_saved_model)(model_file)
    except (UnsafeModelError, GraphError) as e:
        raise ModelError(str(e)) from None


def load_source(path: str, preprocessing: Optional[dict] = None,
                labels_file: Optional[str] = None) -> Source:
    """MODEL: an export folder (model.keras + preprocessing.json), a ``.keras``/``.h5`` file
    (tf_keras or Keras 3), or a SavedModel folder. The preprocessing is the file beside it, or
    ``preprocessing`` ({"name": "inception", ...overrides}: ``contract.preprocessing.named_spec``)
    for a model trained elsewhere; the labels are labels.txt beside it, or ``labels_file``."""
    kind, model_file, folder = locate(path)
    labels_path = labels_file or os.path.join(folder, "labels.txt")
    if labels_file and not os.path.isfile(labels_file):
        raise ModelError(f"--labels {labels_file}: no such file")
    try:
        labels = read_labels(labels_path) if os.path.isfile(labels_path) else []
    except ValueError as e:
        raise ModelError(str(e)) from None
    cfg_path = os.path.join(folder, "config.json")
    try:
        config = json.load(open(cfg_path, encoding="utf-8")) if os.path.isfile(cfg_path) else None
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelError(f"{cfg_path} is not valid JSON: {e}") from None
    if config is not None and not isinstance(config, dict):
        raise ModelError(f"{cfg_path} is not a JSON object")
    src = Source(path, kind, model_file, None, labels, config,
                 sha256_file(model_file) if kind == "keras" else sha256_tree(model_file))
    try:
        src.name  # noqa: B018 - a name from config.json must be a safe file name
    except ValueError as e:
        raise ModelError(f"{path}: {e}") from None
    try:
        if kind == "keras" and is_keras3_file(model_file):
            import tensorflow as tf

            src.saved_model = tf.saved_model.load(_keras3_as_saved_model(model_file))
            kind = src.kind = "keras3"
        elif kind == "keras":
            src.keras_model = load_keras(model_file)
            from train.model import computes_in, is_quantization_aware

            half = sorted(computes_in(src.keras_model) & {"float16", "bfloat16"})
            if half:
                raise ModelError(
                    f"{model_file} computes in {'/'.join(half)} (built under a mixed-precision "
                    "policy): a TFLite or Core ML model of it would compute in half precision "
                    "whatever the recipe. Export it in float32 (train/'s export does; in your "
                    "own code: build the model under the float32 policy and copy the weights "
                    "in), then convert")
            src.is_qat = is_quantization_aware(src.keras_model)
        else:
            check_saved_model(model_file)  # before TensorFlow reads any of it
            import tensorflow as tf

            src.saved_model = tf.saved_model.load(model_file)
        if src.keras_model is not None:
            shape = list(src.keras_model.input_shape[1:])
            n_out = int(src.keras_model.output_shape[-1])
        else:
            fn = src.saved_model.signatures["serving_default"]
            inputs = fn.structured_input_signature[1]
            if len(inputs) != 1:
                raise ModelError(f"{model_file} has {len(inputs)} inputs "
                                   f"({sorted(inputs)}): an image classifier takes one image")
            shape = list(list(inputs.values())[0].shape[1:])
            n_out = int(list(fn.structured_outputs.values())[0].shape[-1])
    except ModelError:
        raise
    except (UnsafeModelError, GraphError) as e:
        raise ModelError(str(e)) from None
    except Exception as e:  # noqa: BLE001 - any loader failure: not a readable model
        raise ModelError(f"{model_file} could not be loaded as a model: "
                           f"{type(e).__name__}: {str(e).splitlines()[0][:300]}") from None
    if len(shape) != 3 or shape[-1] not in (1, 3) or None in shape:
        raise ModelError(f"{model_file} takes input {shape}: expected one image, [height, "
                           "width, 1 or 3 channels] with a fixed size")
    src.spec = _source_spec(path, folder, preprocessing, shape)
    if shape != src.input_shape:
        raise ModelError(f"the model takes {shape} but {PREPROCESSING_FILE} says "
                           f"{src.input_shape}")
    src.num_outputs = n_out
    if not labels:  # clear names rather than none: the app and the metadata show these
        src.labels = [f"class_{i}" for i in range(n_out)]
        src.labels_generated = True
    if labels and len(labels) != n_out:
        raise ModelError(f"{os.path.basename(labels_path)} has {len(labels)} labels but the "
                           f"model has {n_out} outputs")
    return src


def _source_spec(path, folder, preprocessing, shape) -> PreprocessingSpec:
    try:
        if preprocessing:
            opts = dict(preprocessing)
            return named_spec(opts.pop("name", None) or "inception", shape[:2], shape[2], **opts)
        return PreprocessingSpec.load(os.path.join(folder, PREPROCESSING_FILE))
    except ValueError as e:  # PreprocessingError: names the field
        raise ModelError(str(e)) from None
    except FileNotFoundError:
        raise ModelError(f"no {PREPROCESSING_FILE} next to {path}: name the model's "
                           "preprocessing (--preprocessing inception for [-1, 1] inputs, as "
                           "keras.applications.InceptionV3 expects), give --scale/--offset, or "
                           "write the file (see contract/preprocessing.py)") from None


# --------------------------------------------------------------------------------------------
# calibration and check images
# --------------------------------------------------------------------------------------------
def dataset_images(src: Source, split: str, n: int, seed: int,
                   data_overrides: Optional[dict] = None) -> np.ndarray:
    """``n`` seeded images of ``split`` through the model's own evaluation preprocessing."""
    from train.config import from_dict
    from train.data import Dataset

    cfg = from_dict({"data": {**((src.config or {}).get("data") or {}), **(data_overrides or {})}})
    cfg.data.max_eval_examples = None
    if split != "holdout":  # the holdout split needs it: the images after it are held out
        cfg.data.max_train_examples = None
    ds = Dataset(cfg.data, split)
    return ds.sample(n, seed).images(src.spec)


def check_images_array(x: np.ndarray, src: Source, n_min: int, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4 or list(x.shape[1:]) != src.input_shape:
        raise ModelError(f"{what} has shape {list(x.shape)} but the model takes "
                           f"[N, {', '.join(map(str, src.input_shape))}]")
    if len(x) < n_min:
        raise ModelError(f"{what} has {len(x)} images; at least {n_min} are needed")
    return x.astype(np.float32)
