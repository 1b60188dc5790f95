"""Puts one converted model into the Android sample app, exactly the one asked for.

    python -m pipeline.app_assets artifacts/demo                      # the main job's choice
    python -m pipeline.app_assets artifacts/demo --model NAME.tflite  # a model by name

Copies the model, the folder's ``labels.txt`` and ``preprocessing.json`` into
``android_demo/app/src/main/assets/model/`` with ``model.json``, the pointer the app reads to load
that model by name (``schema/android_app.json`` "assets"; Java: ``core/AppModel``). Without
``--model`` it takes the artifact the main job chose (``reports/<folder>/choice.json``, or
``--choice REPORT_DIR``), which may be a selective-int8 step in ``<folder>_choice``.

Everything is checked before anything is written: the folder and the model exist, the file is the
one the manifest lists (sha256, a plain name inside the folder), the labels are UTF-8 and as many
as the model's outputs, the preprocessing is valid. The new assets are assembled in a work folder
and swapped in whole, so the app never sees one model with another's labels, and an interrupted
copy leaves the previous assets (or none) and no stale work folder after the next run.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
from typing import List, Optional

from contract import workdirs
from contract.manifest import MANIFEST, ROOT, artifact_path, verify
from contract.preprocessing import (FILENAME as PREPROCESSING, LABELS_FILENAME as LABELS,
                                    PreprocessingError, PreprocessingSpec, read_labels)
from edge_eval.android import AndroidError, protocol
from edge_eval.harness import EvalError, load_manifest

APP_ASSETS = os.path.join(ROOT, "android_demo", "app", "src", "main", "assets")


def default_into() -> str:
    return os.path.join(APP_ASSETS, protocol()["assets"]["dir"])


def _tflite_files(manifest: dict) -> List[str]:
    return sorted(a.get("file") for a in manifest["artifacts"]
                  if a.get("target") == "tflite" and isinstance(a.get("file"), str))


def _chosen(artifacts_dir: str, choice_dir: str) -> tuple:
    """(folder, file name, the folder's manifest) of the artifact the job chose."""
    path = os.path.join(choice_dir, "choice.json")
    try:
        with open(path, encoding="utf-8") as f:
            choice = json.load(f)
    except FileNotFoundError:
        raise AndroidError(f"no recipe choice at {path}: run the main job (bash scripts/main.sh) "
                           "first, or name the model with --model") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise AndroidError(f"{path} is not valid JSON ({e}): run the job again, or name the "
                           "model with --model") from None
    chosen = choice.get("chosen") if isinstance(choice, dict) else None
    if chosen is not None and not isinstance(chosen, dict):
        raise AndroidError(f"{path}: 'chosen' is not an object: run the job again, or name the "
                           "model with --model")
    if not chosen:
        raise AndroidError(f"the job chose no artifact ({path}: "
                           f"{(choice.get('why') if isinstance(choice, dict) else None) or 'none'}"
                           "): name one with --model")
    name = chosen.get("artifact")
    if chosen.get("target", "tflite") != "tflite":
        raise AndroidError(f"the job chose {name!r} for {chosen.get('target')}, not a TFLite "
                           "model: name a .tflite with --model")
    # a selective-int8 step lives in <artifacts>_choice (pipeline/choose.py)
    for folder in (artifacts_dir, os.path.normpath(artifacts_dir) + "_choice"):
        if os.path.isfile(os.path.join(folder, MANIFEST)):
            manifest = load_manifest(folder)
            if name in _tflite_files(manifest):
                return folder, name, manifest
    raise AndroidError(f"the chosen artifact {name!r} ({path}) is in neither {artifacts_dir} nor "
                       f"{os.path.normpath(artifacts_dir)}_choice: run the job again")


def _num_outputs(model_path: str) -> Optional[int]:
    """The model's class count (last dimension of its first output), or None without LiteRT."""
    try:
        from contract.litert import interpreter_class

        interp = interpreter_class()(model_path=model_path)
    except ImportError:
        return None
    except Exception as e:  # noqa: BLE001 - a model LiteRT cannot open: say so
        raise AndroidError(f"{os.path.basename(model_path)} cannot be opened by LiteRT: {e}") \
            from None
    shape = interp.get_output_details()[0]["shape"]
    return int(shape[-1]) if len(shape) else None


def install(artifacts_dir: str, into: Optional[str] = None, model: Optional[str] = None,
            choice_dir: Optional[str] = None, log=print) -> dict:
    """Copies one model + labels + preprocessing into ``into`` (default: the app's assets);
    returns the pointer written. AndroidError (one message, nothing written) on bad input."""
    into = os.path.abspath(into or default_into())
    assets = protocol()["assets"]
    if not os.path.isdir(artifacts_dir):
        raise AndroidError(f"no convert/ output at {os.path.abspath(artifacts_dir)}: run "
                           "`bash scripts/main.sh` (or `python -m convert`) first, or pass the "
                           "folder it wrote")
    if model:
        folder = artifacts_dir
        manifest = load_manifest(folder)
        names = _tflite_files(manifest)
        if model not in names:
            by_recipe = [a["file"] for a in manifest["artifacts"]
                         if a.get("target") == "tflite" and a.get("recipe") == model]
            if len(by_recipe) != 1:
                raise AndroidError(f"{model!r} is not a TFLite model of {artifacts_dir}: choose "
                                   f"one of {names}")
            model = by_recipe[0]
    else:
        choice_dir = choice_dir or os.path.join(
            "reports", os.path.basename(os.path.normpath(artifacts_dir)))
        folder, model, manifest = _chosen(artifacts_dir, choice_dir)
    entry = next(a for a in manifest["artifacts"]
                 if a.get("target") == "tflite" and a.get("file") == model)
    problem = verify(folder, entry)
    if problem:
        raise AndroidError(problem)
    sources = {"model": artifact_path(folder, model)}
    for key, name in (("labels", LABELS), ("preprocessing", PREPROCESSING)):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise AndroidError(f"{folder} has no {name}: convert again (python -m convert "
                               "writes it next to the models)")
        sources[key] = path
    try:
        labels = read_labels(sources["labels"])
        with open(sources["preprocessing"], encoding="utf-8") as f:
            PreprocessingSpec.from_dict(json.load(f), sources["preprocessing"])
    except (ValueError, UnicodeDecodeError) as e:  # PreprocessingError is a ValueError
        raise AndroidError(str(e) if isinstance(e, PreprocessingError) else
                           f"{sources['preprocessing']}: {e}") from None
    if not labels:
        raise AndroidError(f"{sources['labels']} lists no classes")
    n = _num_outputs(sources["model"])
    if n is not None and n != len(labels):
        raise AndroidError(f"{model} has {n} outputs but {sources['labels']} lists {len(labels)} "
                           "labels: they do not belong together")
    pointer = {"schema_version": assets["pointer_schema_version"], "model": model,
               "labels": LABELS, "preprocessing": PREPROCESSING, "sha256": entry.get("sha256"),
               "recipe": entry.get("recipe"), "source": os.path.abspath(folder),
               "copied": datetime.datetime.now(datetime.timezone.utc).isoformat(
                   timespec="seconds")}
    parent = os.path.dirname(into)
    os.makedirs(parent, exist_ok=True)
    workdirs.sweep(parent, log)
    work = workdirs.mkdtemp(".app-", dir=parent)
    old = None
    try:
        for key in ("model", "labels", "preprocessing"):
            shutil.copyfile(sources[key], os.path.join(work, pointer[key]))
        with open(os.path.join(work, assets["pointer"]), "w", encoding="utf-8") as f:
            json.dump(pointer, f, indent=2)
            f.write("\n")
        os.chmod(work, 0o755)
        if os.path.lexists(into):
            old = workdirs.mkdtemp(".old-", dir=parent)
            os.rename(into, os.path.join(old, "assets"))
        try:
            os.rename(work, into)
        except OSError:
            if old:  # put the previous assets back
                os.rename(os.path.join(old, "assets"), into)
            raise
        work = None
    finally:
        if work:
            shutil.rmtree(work, ignore_errors=True)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    log(f"[app-assets] {model} ({entry.get('recipe')}) + {LABELS} + {PREPROCESSING} -> {into}",
        flush=True)
    return pointer


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.app_assets",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("artifacts", help="folder with manifest.json (python -m convert --out)")
    ap.add_argument("--model", help="a .tflite file (or recipe) of the folder; default: the "
                                    "main job's choice")
    ap.add_argument("--choice", help="folder with the job's choice.json (default: "
                                     "reports/<artifacts folder name>)")
    ap.add_argument("--into", help="assets folder to (re)write (default: "
                                   "android_demo/app/src/main/assets/model)")
    args = ap.parse_args(argv)
    try:
        install(args.artifacts, args.into, args.model, args.choice)
    except (EvalError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
