"""The evaluation harness: every artifact of a manifest, in its own worker, on one evaluation set.

Images are decoded and preprocessed once per preprocessing spec (numpy + OpenCV, cached as .npy
keyed by a hash of the data and the spec) and memory-mapped by every worker; each worker batches
its model's inference. The float reference (the manifest's float source, or ``reference``) runs in
a worker too, and every artifact's drift is computed against it on the same images.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from typing import List, NamedTuple, Optional, Sequence

import numpy as np

from contract import predictions, records, workdirs
from contract.litert import delegation_problem
from contract.coreml_runtime import COMPUTE_UNITS as COREML_UNITS
from contract.jobs import WorkerJob, WorkerResult, run as run_job
from contract.manifest import ManifestError, atomic_write_json, read_manifest, verify
from contract.preprocessing import PreprocessingSpec
from edge_eval import bench, preprocess, stats
from train import data as tdata
from train.data import DataConfig, DataError, fashion_mnist_dir
from train.source import ModelError, check_model


class EvalError(ValueError):
    """A user error that stops the whole evaluation (one clear message)."""


# --------------------------------------------------------------------------------------------
# manifest
# --------------------------------------------------------------------------------------------
def load_manifest(artifacts_dir: str) -> dict:
    """The folder's manifest (contract.manifest.read_manifest); EvalError when it is missing or
    damaged."""
    try:
        return read_manifest(artifacts_dir)
    except ManifestError as e:
        raise EvalError(str(e)) from None


def reference_path(manifest: dict, reference: Optional[str] = None) -> str:
    if reference:
        return reference
    sources = manifest.get("sources") or {}
    for src in sources.values() if isinstance(sources, dict) else sources:
        if isinstance(src, dict) and not src.get("qat"):
            if not isinstance(src.get("path"), str) or not src["path"]:
                raise EvalError("the manifest's float source has no path: pass --reference "
                                "EXPORT_DIR")
            return src["path"]
    raise EvalError("the manifest has no float source: pass --reference EXPORT_DIR")


# --------------------------------------------------------------------------------------------
# the evaluation set
# --------------------------------------------------------------------------------------------
def data_config(reference: str, source: Optional[str] = None, path: Optional[str] = None):
    """The evaluation data: the reference export's training data config, overridable."""
    import dataclasses

    cfg_path = os.path.join(reference if os.path.isdir(reference) else
                            os.path.dirname(reference), "config.json")
    data = {}
    if os.path.isfile(cfg_path):
        with open(cfg_path) as f:
            data = json.load(f).get("data", {})
    if source:
        data["source"] = source
    if path:
        data["path"] = path
    if not data:
        raise EvalError(f"no config.json next to {reference}: pass --data-source (and --data-path)")
    known = {f.name for f in dataclasses.fields(DataConfig)}
    return DataConfig(**{k: v for k, v in data.items() if k in known})


def eval_items(data_cfg, split: str = "test", images: Optional[int] = None, seed: int = 0):
    """(the set's Items, class names, which split it is): ``split`` of the data, or a seeded
    sample of ``images`` of it (train.data.Dataset.sample, the rule calibration uses too)."""

    # the whole split (training's max_eval_examples is not the evaluation's; max_train_examples
    # still says which training images are held out)
    data_cfg = dataclasses.replace(data_cfg, max_eval_examples=None)
    ds = tdata.Dataset(data_cfg, split, verify=False)
    if images and images < ds.num_examples:
        ds = ds.sample(images, seed)
    return preprocess.Items.from_dataset(ds), ds.class_names, ds.note


# more model inputs than this (images x crops) are evaluated in shards of SHARD_INPUTS inputs
# unless told otherwise: the batched path's one array of preprocessed inputs would be 54 GB for
# ImageNet's validation set at 299 px, and one unfinished artifact would lose all its work
AUTO_SHARD_INPUTS = 20_000
SHARD_INPUTS = 2_000


def _set_size(data_cfg, split: str, images: Optional[int]) -> int:
    """How many images ``eval_items`` would list (nothing is decoded)."""
    ds = tdata.Dataset(dataclasses.replace(data_cfg, max_eval_examples=None), split,
                       verify=False)
    return min(images, ds.num_examples) if images else ds.num_examples


def _readable(items, channels: int, each=None, ids: Optional[list] = None):
    """(positions of the images that decode, their labels, what was skipped); ``each(i, image)``
    sees every decoded image once; ``ids``, when given, receives each kept image's identity
    (from the same read)."""
    keep, labels, skipped = [], [], []
    for i in range(len(items)):
        try:
            if each is None:  # the check alone: the pixels are not kept
                im, (label, ident) = None, items.check(i, identify=ids is not None)
            else:
                im, label, ident = items.load_identified(i, channels, identify=ids is not None)
        except preprocess.ImageError as e:  # the rest of the set is still evaluated
            skipped.append(str(e))
            continue
        if each is not None:
            each(len(keep), im)
        keep.append(i)
        labels.append(label)
        if ids is not None:
            ids.append(ident)
    return keep, np.asarray(labels, np.int32), skipped


CHECK_PARALLEL_MIN = 2000  # fewer images are checked in this process (a pool costs ~0.3 s)


def _checked(items, ids: list, workers: int):
    """``_readable``'s check of every image (no pixels kept), in ``workers`` processes over
    consecutive ranges: the same positions, labels, identities and messages, in order."""
    n = len(items)
    if workers < 2 or n < CHECK_PARALLEL_MIN:
        return _readable(items, 3, ids=ids)
    import concurrent.futures

    bounds = list(range(0, n, -(-n // (4 * workers)))) + [n]
    parts = [items.subset(range(a, b)) for a, b in zip(bounds, bounds[1:])]
    with concurrent.futures.ProcessPoolExecutor(workers) as pool:
        got = list(pool.map(_check_part, parts))
    keep, labels, skipped = [], [], []
    for a, (k, lab, ident, sk) in zip(bounds, got):
        keep += [a + i for i in k]
        labels += lab
        ids += ident
        skipped += sk
    return keep, np.asarray(labels, np.int32), skipped


def _check_part(items):
    ids: list = []
    keep, labels, skipped = _readable(items, 3, ids=ids)
    return keep, labels.tolist(), ids, skipped


def load_raw(data_cfg, split: str = "test", images: Optional[int] = None, seed: int = 0):
    """(list of uint8 images, labels int32 [N], class names, skipped) of a small set."""
    items, names, _ = eval_items(data_cfg, split, images, seed)
    imgs: list = []
    keep, labels, skipped = _readable(items, 3, lambda k, im: imgs.append(im))
    if not keep:
        raise EvalError("no readable image in the evaluation set: " + "; ".join(skipped[:3]))
    return imgs, labels, names, skipped


def data_fingerprint(data_cfg) -> str:
    """What the evaluation data is, cheaply: every file under the data's folder (or the file
    itself) by relative path, size and modification time in ns. Replacing the images changes
    it, so a cache keyed by it never serves the old images' inputs."""
    path = data_cfg.path
    if path is None and data_cfg.source.value == "fashion_mnist":

        path = fashion_mnist_dir()
    h = hashlib.sha256()
    if path is None or not os.path.exists(path):
        h.update(f"missing:{path}".encode())
        return h.hexdigest()
    path = os.path.realpath(path)
    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(root, n) for root, dirs, names in os.walk(path) for n in names)
    for f in files:
        try:
            st = os.stat(f)
        except OSError:
            continue
        h.update(f"{os.path.relpath(f, path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


SPACE_MARGIN = 64 << 20  # kept free beyond what a write needs


def ensure_free_space(folder: str, need: int, what: str) -> None:
    """EvalError before a large write that the disk cannot hold: a memory-mapped file on a full
    disk dies with SIGBUS, not with an error that can be reported."""
    free = shutil.disk_usage(folder).free
    if free < need + SPACE_MARGIN:
        raise EvalError(f"{what} need {need / 1e6:.0f} MB in {folder}, but only "
                        f"{free / 1e6:.0f} MB are free: free some space, or evaluate fewer "
                        f"images (--images) or crops")


class EvalSet(NamedTuple):
    """What ``eval_inputs`` prepared: ``job`` (the worker's ``inputs`` or ``items`` key), the
    labels, class names, seconds spent, images skipped, which split it is (in words), and per
    image its position in the set and its identity (contract.predictions)."""
    job: dict
    labels: np.ndarray
    class_names: list
    seconds: float
    skipped: list
    split_is: str
    index: list = []
    ids: list = []

    @property
    def path(self) -> str:
        return next(iter(self.job.values()))


def eval_inputs(data_cfg, spec: PreprocessingSpec, cache_dir: str, images: Optional[int] = None,
                crops: int = 1, seed: int = 0, log=print, split: str = "test",
                streamed: Optional[bool] = None, workers: int = 1):
    """The EvalSet a worker reads: ``{"inputs": .npy}`` or ``{"items": .json}``.

    One crop: a cached float32 .npy of model inputs, shared by every worker, written one image
    at a time (nothing else is held in memory). Multi-crop: the readable images' list (files,
    records or a small uint8 array), from which each worker crops one image at a time and
    averages its crops' outputs (``edge_eval.worker``): memory stays flat however many images
    and crops there are. The cache is keyed by the data's contents (``data_fingerprint``), the
    split, the sample, the crops and the preprocessing; its labels file is committed before the
    inputs file, each atomically, and an unreadable one is a cache miss, never an error.
    ``streamed=True``: the images' list even for one crop (runtimes that preprocess on their
    own, as MediaPipe, are handed the images themselves); its one check of every image runs in
    ``workers`` processes."""
    key = hashlib.sha256(json.dumps(
        {"data": {"source": data_cfg.source.value, "path": data_cfg.path,
                  "holdout_path": data_cfg.holdout_path,
                  "contents": data_fingerprint(data_cfg)}, "images": images, "split": split,
         "seed": seed, "crops": crops, "spec": spec.to_dict(), "v": 7},
        sort_keys=True).encode()).hexdigest()[:16]
    os.makedirs(cache_dir, exist_ok=True)
    streamed = crops > 1 if streamed is None else streamed
    x_path = os.path.join(cache_dir, f"{'items' if streamed else 'inputs'}-{key}."
                          + ("json" if streamed else "npy"))
    meta_path = os.path.join(cache_dir, f"inputs-{key}.json" if not streamed
                             else f"items-{key}.meta.json")
    what = {"items" if streamed else "inputs": x_path}
    t = time.perf_counter()
    if os.path.isfile(x_path) and os.path.isfile(meta_path):
        try:
            with open(meta_path) as f:
                meta = json.load(f)
            return EvalSet(what, np.asarray(meta["labels"], np.int32), meta["class_names"],
                           0.0, meta["skipped"], meta["note"], meta["index"], meta["ids"])
        except (ValueError, KeyError, TypeError, OSError):
            log(f"[eval] the cached inputs' labels ({meta_path}) are damaged: preprocessing "
                "again", flush=True)
    items, names, note = eval_items(data_cfg, split, images, seed)

    workdirs.sweep(cache_dir)  # what a killed run was writing
    h, w = spec.input_size
    # grey sources are stored before the grey -> RGB repeat (a third of the bytes); the workers
    # expand them batch by batch
    grey = items.kind == "array" and items.array.ndim == 4 and items.array.shape[-1] == 1 \
        and spec.channels == 3 and spec.uniform
    stored = dataclasses.replace(spec, channels=1, scale=spec.scales[0],
                                 offset=spec.offsets[0]) if grey else spec
    ids: list = []  # what the prediction records join on, taken as each image is read
    tmp = x_path + f".tmp-{os.getpid()}" + ("" if streamed else ".npy")
    try:
        if streamed:  # each image decoded once here, to settle the set the workers all use
            keep, labels, skipped = _checked(items, ids, workers)
            kept = items.subset(keep)
            kept.checked = True  # the workers decode without checking each image again
            with open(tmp, "w") as f:
                json.dump(kept.to_json(
                    os.path.join(cache_dir, f"raw-{key}.npy")), f)
        else:
            need = len(items) * h * w * stored.channels * 4
            ensure_free_space(cache_dir, need, "the evaluation inputs")
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                            shape=(len(items), h, w, stored.channels))

            def write(k, im):
                out[k] = preprocess.central(np.asarray(im), stored)

            keep, labels, skipped = _readable(items, spec.decode_channels, write, ids)
            out.flush()
            del out
            if len(keep) < len(items):  # some did not decode: the file holds the rest only
                whole = np.load(tmp, mmap_mode="r")
                short = tmp + ".short.npy"
                np.save(short, whole[:len(keep)])
                del whole
                os.replace(short, tmp)
        if not keep:
            raise EvalError("no readable image in the evaluation set: " + "; ".join(skipped[:3]))
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    for msg in skipped:
        log(f"[eval] skipped: {msg}", flush=True)
    meta_tmp = meta_path + f".tmp-{os.getpid()}"
    with open(meta_tmp, "w") as f:
        json.dump({"labels": labels.tolist(), "class_names": names, "skipped": skipped,
                   "note": note, "index": [int(i) for i in keep], "ids": ids}, f)
    os.replace(meta_tmp, meta_path)
    os.replace(tmp, x_path)  # the inputs last: both files are there only when both are whole
    took = time.perf_counter() - t
    log(f"[eval] {len(labels)} images of {note} "
        + ("checked (crops are made by each worker)" if streamed else "preprocessed")
        + f" in {took:.1f} s", flush=True)
    return EvalSet(what, labels, names, took, skipped, note, [int(i) for i in keep], ids)


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------
def _tensorflow_here() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):
        return False


def _expected_cost(job: Optional[WorkerJob], manifest: dict) -> int:
    """A rank (lower: start sooner) of how long a job runs: LiteRT's int16-activation kernels
    are reference code (~20x slower than XNNPACK's int8), Core ML programs run through the
    evaluator, the float reference through TensorFlow, other TFLite models through XNNPACK."""
    if job is None:
        return 9
    if job.kind == "tflite":
        entry = next((e for e in manifest["artifacts"]
                      if os.path.basename(job.model) == e.get("file")), {})
        return 0 if (entry.get("recipe_spec") or {}).get("activations") == "int16" else 3
    return {"coreml": 1, "keras": 2, "savedmodel": 2}.get(job.kind, 3)


class Planned(NamedTuple):
    """One accuracy row to produce: its artifact fields, the worker job (None when ``preset``
    already says the row's status and error)."""
    fields: dict
    job: Optional[WorkerJob]
    preset: Optional[tuple] = None


def _accuracy_jobs(ref_path: str, checked, artifacts_dir: str, spec: PreprocessingSpec,
                   threads: int, coreml_units: Sequence[str] = ()) -> List[Planned]:
    """The float reference first, then one job per artifact of ``checked`` (a row with its
    status already set for one that did not verify or that no evaluator here runs). A Core ML
    package: the project's ML Program evaluator, then Apple's runtime once per compute unit
    of ``coreml_units`` (row delegates: ``cpu_and_ne`` ...; empty where Core ML is missing)."""
    if ref_path is None:  # the host's float predictions file decides the drift (a board)
        plans = [Planned({"artifact": "reference.jsonl", "recipe": "float", "target": "keras",
                          "sha256": None}, None, ("ok", None))]
    elif ref_path.endswith(".tflite"):  # a board without TensorFlow: the fp32 .tflite
        plans = [Planned({"artifact": os.path.basename(ref_path), "recipe": "float (fp32 .tflite)",
                          "target": "keras", "sha256": None},
                         WorkerJob("predict", ref_path, kind="tflite", threads=threads,
                                   delegate="xnnpack", batch_size=50, channels=spec.channels))]
    else:
        ref_kind = "savedmodel" if os.path.isdir(ref_path) else "keras"
        plans = [Planned({"artifact": os.path.basename(os.path.normpath(ref_path)),
                          "recipe": "float", "target": "keras", "sha256": None},
                         WorkerJob("predict", ref_path, kind=ref_kind, channels=spec.channels,
                                   threads=threads))]
    for e, problem in checked:
        fields = records.artifact_fields(e)
        path = os.path.join(artifacts_dir, e["file"])
        if problem:
            plans.append(Planned(fields, None, ("failed", problem)))
        elif e.get("target") == "coreml":
            if evaluator_missing() and not coreml_units:  # a board: one row saying where
                plans.append(Planned(dict(fields, delegate="none"), None,
                                     ("unavailable", evaluator_missing())))
                continue
            for unit in ["none", *coreml_units]:
                plans.append(Planned(dict(fields, delegate=unit), WorkerJob(
                    "predict", path, kind="coreml", batch_size=100, channels=spec.channels,
                    threads=threads, scale=list(spec.scales), offset=list(spec.offsets),
                    delegate=unit)))
        elif e.get("target") not in ("tflite", "edgetpu"):
            plans.append(Planned(fields, None, (
                "unavailable", f"no evaluator for {e.get('target')} artifacts")))
        elif e.get("segment"):
            plans.append(Planned(dict(fields, delegate="edgetpu"), None, (
                "unavailable", SEGMENT_NOTE.format(**e["segment"]))))
        else:
            # a compiled Edge TPU model runs only under the Edge TPU delegate (its row says what
            # is missing where libedgetpu is not installed); an uncompiled file never does
            plans.append(Planned(dict(fields, delegate=delegate_for(e),
                                      compiler_delegation=compiled_delegation(e)), WorkerJob(
                "predict", path, kind="tflite", threads=threads, delegate=delegate_for(e),
                batch_size=50 if delegate_for(e) == "xnnpack" else 1, channels=spec.channels)))
    return plans


SEGMENT_NOTE = ("segment {index} of a model compiled for {of} pipelined Edge TPUs: the segments "
                "run together (pycoral's PipelinedModelRunner), not one at a time")


def delegate_for(entry: dict) -> str:
    """The one delegate an artifact is evaluated under: ``edgetpu`` for the Edge TPU compiler's
    output, XNNPACK for every other .tflite."""
    return "edgetpu" if entry.get("target") == "edgetpu" else "xnnpack"


def compiled_delegation(entry: dict) -> Optional[dict]:
    """A compiled model's delegation record: the compiler's mapped-op count (its log)."""
    return ((entry.get("edgetpu_compiler") or {}).get("delegation")
            if entry.get("target") == "edgetpu" else None)


def _with_set(plan: Planned, what: dict, spec: PreprocessingSpec, crops: int,
              output: str) -> Planned:
    """``plan``'s job pointed at the evaluation set (``what``: eval_inputs' inputs or items)."""
    if plan.job is None:
        return plan
    return plan._replace(job=plan.job.replace(**what, output=output, spec=spec.to_dict(),
                                              scheme=crops))


def _accuracy_row(rec: dict, job: WorkerJob, res: WorkerResult, labels, names,
                  crops: int) -> Optional[np.ndarray]:
    """Fills ``rec`` from the worker's result; the probabilities (one row per image, crops
    averaged) when it ran and its classes match the labels, else None."""
    rec.update(runtime=res.runtime, wall_s=res.wall_s, images_per_s=res.images_per_s,
               batch_size=job.batch_size, peak_memory_mb=res.peak_memory_mb,
               peak_memory_is=bench.PEAK_MEMORY_IS, delegation=res.delegation)
    if not res.ok:
        rec.update(status=res.status, error=res.error)
        return None
    if res.classes != len(names):
        rec.update(status="failed", error=(
            f"the model has {res.classes} outputs but the evaluation set has "
            f"{len(names)} classes: labels do not match the model"))
        return None
    p = np.load(job.output)
    rec["accuracy"] = dict(stats.accuracy(p, labels), crops=crops)
    return p


def _resolve_reference(manifest: dict, artifacts_dir: str, reference: Optional[str],
                       reference_predictions: Optional[str], data_source: Optional[str],
                       data_path: Optional[str]):
    """(the float reference's path or None, the host's predictions or None, the preprocessing,
    the data config), each refused up front with one message (nothing written yet)."""
    host_ref = None
    if reference_predictions:
        try:
            host_ref = predictions.read(reference_predictions)
        except predictions.PredictionError as e:
            raise EvalError(f"--reference-predictions: {e}") from None
        ref_path = None
    else:
        ref_path = os.path.abspath(reference_path(manifest, reference))
        if not os.path.exists(ref_path):
            raise EvalError(f"float reference {ref_path} does not exist: pass --reference (on a "
                            "board without TensorFlow: the fp32 .tflite, or "
                            "--reference-predictions with the host's reference.jsonl)")
        if not ref_path.endswith(".tflite"):
            if not _tensorflow_here():
                raise EvalError("the float reference is a Keras/SavedModel export, which needs "
                                "TensorFlow, and this install has none (a board's .[run]): pass "
                                "--reference <fp32>.tflite, or --reference-predictions with the "
                                "host's predictions/reference.jsonl")
            try:  # refused up front (one message, nothing written), not as a failed worker row
                check_model(ref_path)
            except ModelError as e:
                raise EvalError(f"float reference: {e}") from None
    if manifest.get("preprocessing"):
        spec = PreprocessingSpec.from_dict(manifest["preprocessing"])
    elif ref_path and not ref_path.endswith(".tflite"):
        spec = PreprocessingSpec.load(ref_path)
    else:
        raise EvalError("the manifest has no preprocessing: it cannot be evaluated here")
    dcfg = data_config(ref_path or os.path.join(artifacts_dir, "no-reference"), data_source,
                       data_path)
    return ref_path, host_ref, spec, dcfg


def evaluator_missing() -> Optional[str]:
    """Why the project's ML Program evaluator (convert.mil_eval: it computes with TensorFlow)
    cannot score Core ML packages here - a board's run side has no TensorFlow - or None."""
    try:
        if importlib.util.find_spec("tensorflow") is not None:
            return None
    except (ImportError, ValueError):  # a finder that refuses it: not importable either
        pass
    return ("Core ML packages are scored on the host (the project's ML Program evaluator "
            "needs TensorFlow: pip install .[convert]) or by Apple's runtime on a Mac")


def _coreml_units(checked, units: Sequence[str], log) -> List[str]:
    """The compute units Apple's runtime scores the packages with: none where it is missing
    (said once: the project's evaluator scores them alone, or, without TensorFlow, nothing)."""
    from contract import coreml_runtime

    if not any(e.get("target") == "coreml" for e, _ in checked):
        return []
    missing = coreml_runtime.missing()
    if missing:
        log(f"[eval] {evaluator_missing()}: their rows are 'unavailable'" if evaluator_missing()
            else f"[eval] Core ML packages are scored by the project's ML Program evaluator "
            f"alone: {missing}", flush=True)
        return []
    return coreml_runtime.delegates(units)


def row_key(r: dict) -> str:
    """A row's name among the predictions files: its artifact, and for Apple's runtime the
    compute unit too (``x.mlpackage@cpu_and_ne``: one package, a row per unit)."""
    unit = str(r.get("delegate") or "").upper()
    return f"{r['artifact']}@{unit.lower()}" if r.get("target") == "coreml" and \
        unit in COREML_UNITS else r["artifact"]


def _pair_with_host(rows: List[dict], probs_of: dict, es: EvalSet, host_ref, names,
                    rounds: int, seed: int) -> None:
    """Each artifact row's drift, paired with the host's float predictions on the images'
    identities (the reference row: the host's own accuracy on the images paired)."""
    rows[0]["note"] = ("the float reference is the host's predictions file "
                       f"({host_ref.header.get('artifact')}, {len(host_ref)} images)")
    for r in rows[1:]:
        p = probs_of.get(row_key(r))
        if p is None or r["status"] != "ok":
            continue
        top, scores = predictions.top_k(p)
        mine = predictions.Predictions(
            header=predictions.header(row_key(r), p.shape[1], r.get("runtime") or "unknown",
                                      r.get("delegate") or "none", r.get("delegate"), None),
            index=list(es.index), ids=list(es.ids), labels=[int(v) for v in es.labels],
            top=top.tolist(), scores=scores.tolist())
        try:
            d = stats.paired_drift(predictions.pair(host_ref, mine), names, rounds, seed)
        except predictions.PredictionError as e:
            r.update(status="failed", error=f"pairing with the host's reference: {e}")
            continue
        r["drift"] = d
        r.pop("note", None)
        if rows[0].get("accuracy") is None:
            rows[0]["accuracy"] = {"top1": d["reference_top1"], "top5": None,
                                   "examples": d["paired_images"], "crops": 1}


def write_predictions(out_dir: str, rows: List[dict], probs_of: dict, es: EvalSet, split: str,
                      source: str, work: str, sample: Optional[dict] = None,
                      reference_from: Optional[str] = None) -> str:
    """``out_dir/predictions/``: one contract.predictions file per row that ran (the float
    reference's ``reference.jsonl``), swapped in whole so no file of an earlier run is left
    beside them. ``sample`` ({images, seed, crops}) goes into each header's set: with the
    split and the data, it says how to pick the same images again (edge_eval android
    accuracy pushes them to a phone)."""
    tmp = tempfile.mkdtemp(prefix="predictions-", dir=work)
    if reference_from:  # the host's file, kept beside the board's own
        os.makedirs(tmp, exist_ok=True)
        shutil.copyfile(reference_from, os.path.join(tmp, predictions.file_name(None)))
    for k, r in enumerate(rows):
        p = probs_of.get(row_key(r))
        if p is None or r["status"] != "ok":
            continue
        d = r.get("delegation") or {}
        head = predictions.header(
            row_key(r), p.shape[1], r.get("runtime") or "unknown", r.get("delegate") or "none",
            used=d.get("delegate") or r.get("delegate"), fully_accelerated=d.get("full"),
            fallback_reason=delegation_problem(d) if d and not d.get("full") else None,
            sha256=r.get("sha256"), recipe=r.get("recipe"), device=r.get("device"),
            split=split, source=source, note=es.split_is)
        head["set"].update(sample or {})
        top, scores = predictions.top_k(p)
        predictions.write(os.path.join(tmp, predictions.file_name(
            None if k == 0 else row_key(r))), head, es.index, es.ids, es.labels, top, scores)
    return _swap_in_predictions(out_dir, tmp, work)


def _swap_in_predictions(out_dir: str, tmp: str, work: str) -> str:
    """``tmp`` becomes ``out_dir/predictions/`` whole (the earlier one moved into ``work``,
    which the caller removes): no file of an earlier run is left beside the new ones."""
    final = os.path.join(out_dir, predictions.DIRNAME)
    if os.path.isdir(final):
        os.replace(final, os.path.join(tempfile.mkdtemp(prefix="predictions-old-", dir=work),
                                       "p"))
    os.replace(tmp, final)
    return final


def _log_row(rec: dict, log) -> None:
    if rec["status"] == "ok":
        d = rec.get("drift") or {}
        log(f"[eval] {rec['artifact']}: top-1 {100 * rec['accuracy']['top1']:.2f} "
            f"top-5 {100 * rec['accuracy']['top5']:.2f}"
            + (f" drift {d['top1_delta_points']:+.2f} pts agreement "
               f"{100 * d['argmax_agreement']:.2f} %" if d else " (reference)")
            + (f"  {rec['images_per_s']:.0f} img/s" if rec.get("images_per_s") else
               "  (read from a predictions file)" if not d else ""), flush=True)
    else:
        log(f"[eval] {rec['artifact']}: {rec['status']}: {rec['error']}", flush=True)


def _mediapipe_python(runtime: str, crops: int, log=print) -> Optional[str]:
    """MediaPipe's interpreter when ``runtime`` asks for it and it can run (None: the harness
    alone); EvalError when ``mediapipe`` is asked for and cannot be had."""
    if runtime == "litert":
        return None
    from edge_eval import mediapipe_rt

    mp_python = mediapipe_rt.interpreter()
    if mp_python is None and runtime == "mediapipe":
        raise EvalError(mediapipe_rt.missing_reason())
    if mp_python is not None and crops != 1:
        if runtime == "mediapipe":
            raise EvalError("MediaPipe classifies one view of each image: --crops 1")
        return None
    if mp_python is not None:
        try:  # which models MediaPipe can run is read from each file (LiteRT's TFLite schema)
            import contract.tflite_file  # noqa: F401
        except ImportError as e:  # a board with tflite-runtime: no schema, no MediaPipe rows
            why = (f"MediaPipe's rows need ai-edge-litert's TFLite schema to check each model "
                   f"({e}): pip install ai-edge-litert")
            if runtime == "mediapipe":
                raise EvalError(why)
            log(f"[eval] {why}; evaluating with LiteRT alone", flush=True)
            return None
    return mp_python


def _mediapipe_problems(checked, artifacts_dir: str) -> dict:
    """MediaPipe's verdict per intact .tflite of ``checked``: None (it runs it) or why not."""
    out = {}
    for e, problem in checked:
        if e.get("target") == "tflite" and problem is None:
            with open(os.path.join(artifacts_dir, e["file"]), "rb") as f:
                from contract.tflite_file import mediapipe_problem  # flatbuffers: build side

                out[e["file"]] = mediapipe_problem(f.read())
    return out


def evaluate(artifacts_dir: str, out_dir: str, reference: Optional[str] = None,
             data_source: Optional[str] = None, data_path: Optional[str] = None,
             images: Optional[int] = None, crops: int = 1, threads: int = 2,
             timeout: float = 900.0, bootstrap_rounds: int = 2000, seed: int = 0,
             only: Optional[Sequence[str]] = None, workers: int = 1, log=print,
             split: str = "test", runtime: str = "litert",
             reference_predictions: Optional[str] = None, shard_size: Optional[int] = None,
             backend: str = "local", address: Optional[str] = None,
             stall_s: float = 600.0, coreml_units: Sequence[str] = COREML_UNITS) -> List[dict]:
    """Accuracy + drift records for the reference and every artifact on ``split`` of the data
    (``test``: what reports quote; ``holdout``: what the recipe choice decides on); written to
    ``out_dir/accuracy.jsonl``. Failures are rows, not exceptions.

    ``workers`` artifacts are evaluated at once, each in its own process with ``threads``
    threads (on 2 cores, 2 workers x 1 thread beat 1 x 2: process start-up and single-threaded
    kernels - LiteRT's int16 ones - overlap); rows come out in manifest order either way.

    ``runtime``: ``litert`` (the harness: preprocessing.json + LiteRT), ``mediapipe`` (also
    every metadata-carrying .tflite through MediaPipe Tasks' ImageClassifier, which
    preprocesses on its own: rows with ``evaluator: mediapipe`` in ``mediapipe.jsonl``, paired
    against the harness's row of the same artifact; an error when MediaPipe is not installed)
    or ``auto`` (mediapipe where installed; the command line's default, this function's is
    ``litert``). Preprocessing fingerprints of every runtime go to
    ``fingerprints.json`` (edge_eval.fingerprint).

    A board without TensorFlow: ``reference`` may be the fp32 ``.tflite``, or
    ``reference_predictions`` the host's ``predictions/reference.jsonl`` (the drift of every
    artifact is then paired with it on the images' identities; the data is what
    ``edge_eval export-set`` wrote).

    ``shard_size``: the sharded, resumable, streamed evaluation (edge_eval.shards): shards of
    that many images x artifacts on ``backend`` (``local`` processes or ``ray``, ``address``
    to join a cluster), each finished shard kept, a shard whose worker makes no progress for
    ``stall_s`` stopped. A set of more than ``AUTO_SHARD_INPUTS`` model inputs (images x
    crops: ImageNet's validation set) is evaluated that way even without ``shard_size`` -
    unless MediaPipe was asked for or the reference is a predictions file.

    Core ML packages: the project's ML Program evaluator everywhere, and on a Mac Apple's
    runtime once per compute unit of ``coreml_units`` (rows and predictions files
    ``<package>@<unit>``; a failing predict is a failed row, never the evaluator's answer)."""
    if shard_size is not None:
        return evaluate_sharded(artifacts_dir, out_dir, reference, data_source, data_path,
                                images, crops, bootstrap_rounds, seed, only, workers, log,
                                split, shard_size, backend, address, stall_s)
    if workers < 1 or threads < 1:
        raise EvalError(f"--workers and --threads must be >= 1. Received: {workers}, {threads}")
    if crops not in preprocess.CROP_SCHEMES:
        raise EvalError(f"--crops must be one of {preprocess.CROP_SCHEMES}. Received: {crops}")
    if runtime not in RUNTIMES:
        raise EvalError(f"--runtime must be one of {list(RUNTIMES)}. Received: {runtime!r}")
    mp_python = _mediapipe_python(runtime, crops, log)
    # workers run from the repository root: every path they are handed is absolute
    artifacts_dir, out_dir = os.path.abspath(artifacts_dir), os.path.abspath(out_dir)
    manifest = load_manifest(artifacts_dir)
    ref_path, host_ref, spec, dcfg = _resolve_reference(
        manifest, artifacts_dir, reference, reference_predictions, data_source, data_path)
    if reference_predictions is None and runtime != "mediapipe":
        n = _set_size(dcfg, split, images)
        if n * crops > AUTO_SHARD_INPUTS:
            size = max(1, SHARD_INPUTS // crops)
            log(f"[eval] {n} images x {crops} crop(s): evaluated in shards of {size} images "
                "(streamed, resumable; --shard-size sets the size"
                + (", MediaPipe rows are not part of it" if runtime == "auto" else "") + ")",
                flush=True)
            return evaluate_sharded(artifacts_dir, out_dir, reference, data_source, data_path,
                                    images, crops, bootstrap_rounds, seed, only, workers, log,
                                    split, size, backend, address, stall_s)
    os.makedirs(out_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".work-", dir=out_dir)
    t_all = time.perf_counter()
    futures: List[Optional[concurrent.futures.Future]] = []
    try:
        try:
            es = eval_inputs(dcfg, spec, os.path.join(out_dir, "cache"), images, crops, seed,
                             log, split)
        except (DataError, preprocess.ImageError, FileNotFoundError) as e:
            raise EvalError(str(e)) from None
        what, labels, names, prep_s, skipped, note = es[:6]
        n_inputs = len(labels) * crops
        # the artifacts evaluated, each with its verification problem (None: intact), checked
        # once here for the harness, the fingerprints and MediaPipe alike
        checked = [(e, verify(artifacts_dir, e)) for e in selected_artifacts(manifest, only)]
        units = _coreml_units(checked, coreml_units, log)
        jobs = [_with_set(j, what, spec, crops, os.path.join(work, f"p{i}.npy"))
                for i, j in enumerate(_accuracy_jobs(ref_path, checked, artifacts_dir, spec,
                                                     threads, units))]
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
        futures = [None] * len(jobs)
        # the slowest first, so that with several workers none is left running alone at the end
        for i in sorted(range(len(jobs)), key=lambda i: _expected_cost(jobs[i].job, manifest)):
            if jobs[i].job is not None:
                futures[i] = pool.submit(run_job, jobs[i].job, timeout, work)
        pool.shutdown(wait=False)  # the submitted jobs still run
        out, ref_probs, probs_of = [], None, {}
        for i, (j, fut) in enumerate(zip(jobs, futures)):
            fields = {k: v for k, v in j.fields.items() if k != "compiler_delegation"}
            fields.setdefault("delegate", "xnnpack" if fields["target"] == "tflite" else "none")
            rec = records.new_record("accuracy", **fields, threads=threads, batch_size=None,
                                     workers=workers)
            if j.preset:
                rec.update(status=j.preset[0], error=j.preset[1])
                if i == 0 and host_ref is not None:  # the host's float model, from its file
                    rec["images_per_s"] = None
                    rec["accuracy"] = stats.records_accuracy(host_ref, 1)
            else:
                p = _accuracy_row(rec, j.job, fut.result(), labels, names, crops)
                if j.fields.get("compiler_delegation"):  # what the compiler mapped to the TPU
                    rec["delegation"] = j.fields["compiler_delegation"]
                if p is not None:
                    probs_of[row_key(rec)] = p
                    if i == 0:  # the reference (always the first job)
                        ref_probs = p
                    rec["drift"] = None if i == 0 or ref_probs is None else stats.drift(
                        ref_probs, p, labels, names, bootstrap_rounds, seed)
                    if i and ref_probs is None:
                        rec["note"] = "no drift: the float reference failed"
            if host_ref is None or i == 0:  # (paired with the host's file below)
                _log_row(rec, log)
            out.append(rec)
        # MediaPipe's verdict per intact .tflite: None (it runs it) or why it cannot
        mp_problem = _mediapipe_problems(checked, artifacts_dir) if mp_python else {}
        prints = _fingerprints(checked, artifacts_dir, spec, work, mp_problem, log)
        atomic_write_json(os.path.join(out_dir, "fingerprints.json"), prints)
        for r in out:  # the reference and the .tflite models are fed the harness's tensors
            r["fingerprint"] = prints["runtimes"].get(
                f"coreml: {r['artifact']}" if r["target"] == "coreml" else "harness")
        app_rows = []
        if mp_python is not None:
            app_rows = _mediapipe_rows(checked, mp_problem, artifacts_dir, dcfg, spec, out_dir,
                                       work, images, seed, split, labels, names, ref_probs,
                                       probs_of, prints, timeout, workers, bootstrap_rounds, log)
        summary = {"images": len(labels), "inputs": n_inputs, "crops": crops, "split": split,
                   "split_is": note,
                   "preprocess_s": prep_s, "wall_s": time.perf_counter() - t_all,
                   "skipped_images": skipped}
        for r in out + app_rows:
            r["eval_set"] = dict(summary, source=dcfg.source.value)
        mp_path = os.path.join(out_dir, records.RowsFile.MEDIAPIPE)
        if app_rows:
            records.write_jsonl(app_rows, mp_path)
        elif os.path.exists(mp_path):  # an earlier run's rows would pair with these
            os.remove(mp_path)
        if host_ref is not None:
            _pair_with_host(out, probs_of, es, host_ref, names, bootstrap_rounds, seed)
            for r in out[1:]:
                _log_row(r, log)
        records.write_jsonl(out, os.path.join(out_dir, records.RowsFile.ACCURACY))
        write_predictions(out_dir, out, probs_of, es, split, dcfg.source.value, work,
                          {"sample": images, "seed": seed, "crops": crops},
                          reference_from=reference_predictions)
        log(f"[eval] {len(out)} rows in {summary['wall_s']:.1f} s -> "
            f"{os.path.join(out_dir, 'accuracy.jsonl')}", flush=True)
        return out + app_rows
    finally:
        for f in futures:  # an error part-way: jobs not yet started do not start
            if f is not None:
                f.cancel()
        shutil.rmtree(work, ignore_errors=True)


RUNTIMES = ("auto", "litert", "mediapipe")


def selected_artifacts(manifest: dict, only: Optional[Sequence[str]]) -> List[dict]:
    """The manifest's artifacts that ``--only`` names by file or recipe (all without it)."""
    return [e for e in manifest["artifacts"]
            if not only or e.get("file") in only or e.get("recipe") in only]


def _fingerprints(checked, artifacts_dir: str, spec: PreprocessingSpec, work: str,
                  mp_problem: dict, log) -> dict:
    """Every runtime's preprocessing of the canaries against preprocessing.json: the harness's
    OpenCV path, the Android core (Java), each intact Core ML package's image input and each
    .tflite MediaPipe runs (``mp_problem`` None) through ImageClassifier
    (edge_eval.fingerprint). ``checked``: [(manifest entry, verification problem)]."""
    from edge_eval import fingerprint as fp

    rts = [fp.Runtime("harness", lambda ims: fp.harness_tensors(ims, spec)),
           fp.Runtime("android core", fp.java_tensors(tempfile.mkdtemp(dir=work), spec))]
    for e, problem in checked:
        if problem is not None:
            continue
        if e.get("target") == "coreml" and isinstance(e.get("coreml"), dict) and \
                isinstance(e["coreml"].get("input"), dict):
            # the scale/bias convert/ read back from this very package (its tree is verified)
            rts.append(fp.Runtime(f"coreml: {e['file']}", lambda ims, i=e["coreml"]["input"]:
                                  fp.coreml_tensors(ims, spec, i)))
        elif e.get("file") in mp_problem and mp_problem[e["file"]] is None:
            rts.append(fp.Runtime(f"mediapipe: {e['file']}", fp.mediapipe_tensors(
                os.path.join(artifacts_dir, e["file"]), spec, tempfile.mkdtemp(dir=work))))
    verdicts = fp.fingerprint(rts, spec)
    for name, v in verdicts.items():
        if v["verdict"] != "unavailable":
            log(f"[fingerprint] {fp.verdict_line(name, v)}", flush=True)
        else:
            log(f"[fingerprint] {name}: unavailable: {v['reason']}", flush=True)
    return {"preprocessing": spec.to_dict(), "tolerance": fp.TOLERANCE, "runtimes": verdicts}


def _mediapipe_rows(checked, mp_problem: dict, artifacts_dir, dcfg, spec, out_dir, work, images,
                    seed, split, labels, names, ref_probs, probs_of, prints, timeout, workers,
                    rounds, log) -> List[dict]:
    """One ``evaluator: mediapipe`` accuracy row per .tflite of ``checked``: its top-1 through
    ImageClassifier on the same images, drift against float and the paired difference against
    the harness's row of the same artifact (``vs_harness``); ``unavailable`` with the reason
    for a model MediaPipe cannot run (``mp_problem``), ``failed`` for one that did not verify."""
    from edge_eval import mediapipe_rt

    es = eval_inputs(dcfg, spec, os.path.join(out_dir, "cache"), images, 1, seed, log, split,
                     streamed=True)
    if not np.array_equal(es.labels, labels):
        raise EvalError("the image list for MediaPipe does not match the evaluated images")
    exe, env = mediapipe_rt.interpreter(), mediapipe_rt.worker_env()
    todo = []
    for e, problem in checked:
        if e.get("target") != "tflite":
            continue
        rec = records.new_record("accuracy", **records.artifact_fields(e), threads=None,
                                 batch_size=1, delegate="xnnpack", evaluator="mediapipe",
                                 runtime="mediapipe")
        status, why = ("failed", problem) if problem else ("unavailable", mp_problem[e["file"]])
        if why:
            rec.update(status=status, error=why)
            todo.append((rec, None))
            continue
        job = WorkerJob("predict", os.path.join(artifacts_dir, e["file"]), kind="mediapipe",
                        items=es.path, spec=spec.to_dict(), classes=len(names), roi=True,
                        output=os.path.join(work, f"mp-{len(todo)}.npy"))
        todo.append((rec, job))
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
    futs = [pool.submit(run_job, job, timeout, work, exe, env) if job else None
            for _, job in todo]
    pool.shutdown(wait=False)
    rows = []
    for (rec, job), fut in zip(todo, futs):
        if fut is not None:
            res = fut.result()
            warn = (res.stderr_tail or "").count("unaligned buffer")
            rec.update(runtime=res.runtime or "mediapipe", wall_s=res.wall_s,
                       images_per_s=res.images_per_s,
                       mediapipe={"region_of_interest": spec.crop_fraction < 1.0,
                                  "unaligned_buffer_warnings": warn})
            harness_p = probs_of.get(rec["artifact"])
            if not res.ok:
                rec.update(status=res.status, error=res.error)
            else:
                p = np.load(job.output)
                rec["accuracy"] = dict(stats.accuracy(p, labels), crops=1)
                rec["drift"] = None if ref_probs is None else stats.drift(
                    ref_probs, p, labels, names, rounds, seed)
                rec["vs_harness"] = None if harness_p is None else stats.drift(
                    harness_p, p, labels, names, rounds, seed)
            rec["fingerprint"] = prints["runtimes"].get(f"mediapipe: {rec['artifact']}")
        v = rec.get("vs_harness")
        log(f"[mediapipe] {rec['artifact']}: " + (
            f"top-1 {100 * rec['accuracy']['top1']:.2f}"
            + (f", {v['top1_delta_points']:+.2f} pts vs the harness (agreement "
               f"{100 * v['argmax_agreement']:.2f} %)" if v else "")
            if rec["status"] == "ok" else f"{rec['status']}: {rec['error']}"), flush=True)
        rows.append(rec)
    return rows


# --------------------------------------------------------------------------------------------
# host latency
# --------------------------------------------------------------------------------------------
def benchmark(artifacts_dir: str, out_dir: str, delegates: Sequence[str] = ("xnnpack",),
              threads: Sequence[int] = (2,), warmup: int = 5, runs: int = 50,
              min_seconds: float = 1.0, max_seconds: float = 60.0, timeout: float = 300.0,
              only: Optional[Sequence[str]] = None, log=print,
              require_full_delegation: bool = False,
              runtimes: Sequence[str] = ("interpreter",),
              coreml_units: Sequence[str] = COREML_UNITS) -> List[dict]:
    """One latency record per (artifact, delegate, threads), each timed in its own worker
    (no TensorFlow in the process); written to ``out_dir/latency.jsonl``. Each record also
    carries the host's preprocessing time for one camera-sized frame (``preprocess_ms``, the
    manifest's spec, timed here once: every artifact of a folder shares it), apart from
    inference, as the app reports the two apart. Each record says how much of the graph the
    delegate took (``delegation``: nodes, partitions, the ops left on the CPU kernels); with
    ``require_full_delegation`` a record whose delegate did not take every node fails.
    ``runtimes``: LiteRT's ``interpreter`` and/or ``compiled_model`` API (XNNPACK rows only).
    Core ML packages are timed by Apple's runtime once per compute unit of ``coreml_units``
    (macOS), their delegation being where the ops ran; elsewhere one row per package says what
    is missing."""
    from contract import coreml_runtime
    from edge_eval.bench import RUNTIMES as BENCH_RUNTIMES

    bad = [r for r in runtimes if r not in BENCH_RUNTIMES]
    if bad:
        raise EvalError(f"--runtimes must be among {list(BENCH_RUNTIMES)}. Received: {bad}")

    from edge_eval.bench import PREPROCESS_FRAME, time_preprocessing

    artifacts_dir, out_dir = os.path.abspath(artifacts_dir), os.path.abspath(out_dir)
    manifest = load_manifest(artifacts_dir)
    prep_ms = None
    if manifest.get("preprocessing"):
        try:
            prep_ms = time_preprocessing(PreprocessingSpec.from_dict(manifest["preprocessing"]))
        except ValueError as e:
            raise EvalError(f"the manifest's preprocessing: {e}") from None
    units = coreml_runtime.delegates(coreml_units)
    os.makedirs(out_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".work-", dir=out_dir)
    out = []
    no_coreml = None
    try:
        for e in selected_artifacts(manifest, only):
            problem = verify(artifacts_dir, e)
            compiled = e.get("target") == "edgetpu"
            if e.get("target") == "coreml":
                if no_coreml is None:
                    no_coreml = coreml_runtime.missing() or ""
                    if no_coreml:  # said once for every package
                        log(f"[bench] Core ML packages are not timed here: {no_coreml}",
                            flush=True)
                out += _bench_coreml(e, artifacts_dir, problem, no_coreml, units, warmup, runs,
                                     min_seconds, max_seconds, timeout, work,
                                     require_full_delegation, log)
                continue
            for delegate, rt in [(d, r) for d in delegates for r in runtimes
                                 if r == "interpreter" or d == "xnnpack"]:
                # the Edge TPU delegate times compiled models only, and a compiled model is
                # timed only under it: no CPU-kernel time is ever labelled "edgetpu"
                if (delegate == "edgetpu") != compiled:
                    continue
                for n in threads:
                    rec = records.new_record("latency", **records.artifact_fields(e),
                                             delegate=delegate, threads=n, warmup_runs=warmup,
                                             preprocess_ms=prep_ms,
                                             preprocess_frame=list(PREPROCESS_FRAME))
                    if problem:
                        rec.update(status="failed", error=problem)
                    elif e.get("segment"):
                        rec.update(status="unavailable", error=SEGMENT_NOTE.format(**e["segment"]))
                    elif e.get("target") not in ("tflite", "edgetpu"):
                        continue
                    else:
                        res = run_job(WorkerJob(
                            "bench", os.path.join(artifacts_dir, e["file"]), threads=n,
                            delegate=delegate, warmup=warmup, runs=runs,
                            min_seconds=min_seconds, max_seconds=max_seconds, runtime=rt),
                            timeout, work)
                        rec.update(res.measurement or {"status": res.status,
                                                       "error": res.error})
                        rec["delegate"], rec["threads"] = delegate, n
                        if compiled_delegation(e):  # what the compiler mapped to the TPU
                            rec["delegation"] = compiled_delegation(e)
                        why = delegation_problem(rec.get("delegation"))
                        if require_full_delegation and delegate != "none" and why and \
                                rec["status"] == "ok":
                            rec.update(status="failed", error=f"not fully delegated: {why}")
                    lat = rec.get("latency_ms")
                    d = rec.get("delegation") or {}
                    log(f"[bench] {e.get('file')} {rt} {delegate} x{n}: " + (
                        f"p50 {lat['p50']:.2f} ms p90 {lat['p90']:.2f} ms ({rec['runs']} runs)"
                        if lat and rec["status"] == "ok" else f"{rec['status']}: {rec['error']}")
                        + (f"; {delegate} took {d['delegated']}/{d['nodes']} nodes in "
                           f"{d['partitions']} partition(s)" if d.get("nodes") and
                           delegate != "none" and rec["status"] == "ok" else ""),
                        flush=True)
                    out.append(rec)
        records.write_jsonl(out, os.path.join(out_dir, records.RowsFile.LATENCY))
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _bench_coreml(e: dict, artifacts_dir: str, problem: Optional[str], missing: str,
                  units: Sequence[str], warmup: int, runs: int, min_seconds: float,
                  max_seconds: float, timeout: float, work: str, require_full: bool,
                  log) -> List[dict]:
    """A package's latency rows: one per compute unit, timed by Apple's runtime in a worker
    (edge_eval.reference); one 'unavailable' row saying what is missing where it is not."""
    rows = []
    for unit in ([None] if missing or problem else units):
        rec = records.new_record("latency", **records.artifact_fields(e), runtime="coreml",
                                 delegate=unit or "coreml", threads=None, warmup_runs=warmup)
        if problem:
            rec.update(status="failed", error=problem)
        elif missing:
            rec.update(status="unavailable", error=missing)
        else:
            res = run_job(WorkerJob("bench", os.path.join(artifacts_dir, e["file"]),
                                    kind="coreml", delegate=unit, warmup=warmup, runs=runs,
                                    min_seconds=min_seconds, max_seconds=max_seconds),
                          timeout, work)
            rec.update(res.measurement or {"status": res.status, "error": res.error})
            rec["delegate"], rec["threads"] = unit, None
            why = delegation_problem(rec.get("delegation"))
            if require_full and unit != "cpu_only" and why and rec["status"] == "ok":
                rec.update(status="failed", error=f"not fully accelerated: {why}")
        lat = rec.get("latency_ms")
        d = rec.get("delegation") or {}
        if not missing:
            log(f"[bench] {e.get('file')} coreml {rec['delegate']}: " + (
                f"p50 {lat['p50']:.2f} ms p90 {lat['p90']:.2f} ms ({rec['runs']} runs), "
                f"ops on {d.get('devices')}" if lat and rec["status"] == "ok"
                else f"{rec['status']}: {rec['error']}"), flush=True)
        rows.append(rec)
    return rows


def evaluate_sharded(artifacts_dir: str, out_dir: str, reference: Optional[str],
                     data_source: Optional[str], data_path: Optional[str],
                     images: Optional[int], crops: int, bootstrap_rounds: int, seed: int,
                     only: Optional[Sequence[str]], workers: int, log, split: str,
                     shard_size: int, backend: str, address: Optional[str],
                     stall_s: float) -> List[dict]:
    """``evaluate`` at scale (edge_eval.shards): images streamed one at a time (no whole-set
    array), every artifact's answers kept as per-image records shard by shard under
    ``out_dir/shards/`` (a rerun resumes), rows and paired statistics from the merged records.
    Each worker runs one thread (``workers`` of them at once)."""
    from edge_eval import shards

    if workers < 1:
        raise EvalError(f"--workers must be >= 1. Received: {workers}")
    if crops not in preprocess.CROP_SCHEMES:
        raise EvalError(f"--crops must be one of {preprocess.CROP_SCHEMES}. Received: {crops}")
    artifacts_dir, out_dir = os.path.abspath(artifacts_dir), os.path.abspath(out_dir)
    manifest = load_manifest(artifacts_dir)
    ref_path, _, spec, dcfg = _resolve_reference(manifest, artifacts_dir, reference, None,
                                                 data_source, data_path)
    os.makedirs(out_dir, exist_ok=True)
    t_all = time.perf_counter()
    try:
        es = eval_inputs(dcfg, spec, os.path.join(out_dir, "cache"), images, crops, seed, log,
                         split, streamed=True, workers=workers)
    except (DataError, preprocess.ImageError, FileNotFoundError) as e:
        raise EvalError(str(e)) from None
    with open(es.path) as f:
        items = preprocess.Items.from_json(json.load(f))
    labels, names = es.labels, es.class_names
    checked = [(e, verify(artifacts_dir, e)) for e in selected_artifacts(manifest, only)]
    plans = _accuracy_jobs(ref_path, checked, artifacts_dir, spec, 1)
    key = shards.set_key({"data": dcfg.source.value, "path": dcfg.path,
                          "contents": data_fingerprint(dcfg), "split": split, "images": images,
                          "seed": seed, "crops": crops, "spec": spec.to_dict(),
                          "shard_size": shard_size})
    root = os.path.join(out_dir, shards.SHARDS, key)
    arts, heads, folders = [], {}, {}
    for i, p in enumerate(plans):
        name = p.fields["artifact"]
        if p.job is None:
            continue
        job = p.job.replace(spec=spec.to_dict(), scheme=crops, threads=1, batch_size=1
                            if p.job.delegate == "edgetpu" else p.job.batch_size)
        # the reference has no manifest sha256: its files' own (another model, another folder)
        sha = p.fields.get("sha256") or (_files_digest(ref_path) if i == 0 else None)
        arts.append({"artifact": name, "sha256": sha, "job": job})
        delegate = p.fields.get("delegate") or "none"
        heads[name] = predictions.header(
            name, len(names), "tensorflow" if job.kind in ("keras", "savedmodel") else "litert",
            delegate, delegate, None, sha256=p.fields.get("sha256"),
            recipe=p.fields.get("recipe"), device=records.host_device(), split=split,
            source=dcfg.source.value, note=es.split_is)
        heads[name]["set"].update({"sample": images, "seed": seed, "crops": crops})
        heads[name]["created"] = None  # the same shard is the same bytes on any backend
    units = shards.plan_units(arts, len(labels), shard_size, root)
    for a in arts:
        folders[a["artifact"]] = shards.artifact_folder(root, a["artifact"], a.get("sha256"))
    total = len(arts) * (-(-len(labels) // shard_size))
    log(f"[shards] {len(labels)} images in shards of {shard_size}: {total - len(units)} of "
        f"{total} unit(s) already done, {len(units)} to run on {backend} x{workers}",
        flush=True)
    failed = shards.run_units(units, items, heads, es.index, es.ids,
                              [int(v) for v in labels], len(names), backend, workers, stall_s,
                              address, log, work_in=out_dir) if units else {}
    out, merged = [], {}
    for i, p in enumerate(plans):
        fields = {k: v for k, v in p.fields.items() if k != "compiler_delegation"}
        fields.setdefault("delegate", "xnnpack" if fields["target"] == "tflite" else "none")
        rec = records.new_record("accuracy", **fields, threads=1, batch_size=None,
                                 workers=workers, backend=backend, shard_size=shard_size)
        name = fields["artifact"]
        m = shards.merge(folders[name]) if name in folders else None
        if p.preset:
            rec.update(status=p.preset[0], error=p.preset[1])
        elif name in failed:
            rec.update(status="failed", error=failed[name])
        elif m is None or len(m) != len(labels):
            rec.update(status="failed", error=f"{0 if m is None else len(m)} of {len(labels)} "
                       "images have records")
        else:
            merged[name] = m
            rec["accuracy"] = stats.records_accuracy(m, crops)
            ref = merged.get(plans[0].fields["artifact"])
            if i and ref is not None:
                rec["drift"] = stats.paired_drift(predictions.pair(ref, m), names,
                                                  bootstrap_rounds, seed)
            elif i:
                rec["note"] = "no drift: the float reference failed"
        if p.fields.get("compiler_delegation"):
            rec["delegation"] = p.fields["compiler_delegation"]
        rec["images_per_s"] = None
        _log_row(rec, log)
        out.append(rec)
    summary = {"images": len(labels), "inputs": len(labels) * crops, "crops": crops,
               "split": split, "split_is": es.split_is, "preprocess_s": es.seconds,
               "wall_s": time.perf_counter() - t_all, "skipped_images": es.skipped,
               "source": dcfg.source.value, "shards": os.path.relpath(root, out_dir),
               "record_bytes_per_image": shards.record_bytes(root)}
    for r in out:
        r["eval_set"] = summary
    records.write_jsonl(out, os.path.join(out_dir, records.RowsFile.ACCURACY))
    work = tempfile.mkdtemp(prefix=".work-", dir=out_dir)
    try:  # the merged records, as every other evaluation writes them
        tmp = os.path.join(work, predictions.DIRNAME)
        os.makedirs(tmp)
        for i, p in enumerate(plans):
            m = merged.get(p.fields["artifact"])
            if m is not None:
                predictions.write(os.path.join(tmp, predictions.file_name(
                    None if i == 0 else p.fields["artifact"])), dict(
                    m.header, created=datetime_now()), m.index, m.ids, m.labels, m.top,
                    m.scores)
        _swap_in_predictions(out_dir, tmp, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"[eval] {len(out)} rows in {summary['wall_s']:.1f} s -> "
        f"{os.path.join(out_dir, 'accuracy.jsonl')}", flush=True)
    return out


def _files_digest(path: str) -> str:
    """sha256 of a model file, or of a model folder's files (relative path and contents)."""
    h = hashlib.sha256()
    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(r, n) for r, _, ns in os.walk(path) for n in ns)
    for f in files:
        h.update(os.path.relpath(f, path).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def datetime_now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
