"""Pairing a device's per-image answers with the host's float model: the host's reference
file, the same images again (checked by identity), written for a phone (a flat folder and its
list) or a board (an image folder), and the device rows the pairs become. Used by
``edge_eval android accuracy`` and by a board's three commands (``export-set`` on the host,
``accuracy --reference-predictions`` on the board, ``pair`` back on the host)."""
from __future__ import annotations

import os
import re
import shutil
from typing import List, Optional

from contract import predictions, records
from edge_eval.harness import EvalError

DEVICE_PREDICTIONS = "device_predictions"  # <results>/device_predictions/<device>/<acc>/


def reference_items(artifacts_dir: str, manifest: dict, ref: predictions.Predictions,
                    data_source: Optional[str] = None, data_path: Optional[str] = None):
    """(the evaluation set's Items as the host picked them, class names) for ``ref``."""
    from contract.preprocessing import read_labels
    from edge_eval.harness import data_config, eval_items, reference_path

    s = ref.header["set"]
    dcfg = data_config(reference_path(manifest), data_source, data_path)
    items, class_names, _ = eval_items(dcfg, s.get("split") or "test", s.get("sample"),
                                       s.get("seed") or 0)
    labels_file = os.path.join(artifacts_dir, "labels.txt")
    if os.path.isfile(labels_file):
        class_names = read_labels(labels_file)
    return items, class_names


def reference_predictions(results_dir: str) -> predictions.Predictions:
    """The host float model's predictions that ``edge_eval accuracy`` wrote in ``results_dir``."""
    path = os.path.join(results_dir, predictions.DIRNAME, predictions.file_name(None))
    if not os.path.isfile(path):
        raise EvalError(f"{path} does not exist: run python -m edge_eval accuracy ARTIFACTS "
                           f"--out {results_dir} first (the phone is paired with the host's "
                           "float model on the images it evaluated)")
    try:
        ref = predictions.read(path)
    except predictions.PredictionError as e:
        raise EvalError(str(e)) from None
    if (ref.header["set"].get("crops") or 1) != 1:
        raise EvalError(f"{path} averages {ref.header['set']['crops']} crops per image; the "
                           "app classifies the central view: evaluate the host with --crops 1")
    return ref


def write_images(folder: str, ref: predictions.Predictions, items,
                 images_file: Optional[str] = None, class_names: Optional[List[str]] = None
                 ) -> int:
    """The images of ``ref`` as files (their encoded bytes: what the host identified). With
    ``images_file``: flat, plus that list (``file,label,index``: what the app reads); with
    ``class_names``: an image folder, ``<folder>/test/<NNN_class>/`` (sorted = the label
    order) beside an empty ``train/``, what the harness reads as ``--data-source
    image_folder``. Each image's identity is checked against the reference's, so data that
    changed since the host's run is refused, not paired. Returns the number of images."""
    lines = []
    for r, (i, ident, y) in enumerate(zip(ref.index, ref.ids, ref.labels)):
        if not 0 <= i < len(items):
            raise EvalError(f"the reference's image {i} is not in the data (it has "
                               f"{len(items)}): was it evaluated on other data?")
        data, ext = items.encoded(i)
        if predictions.image_id(data) != ident:
            raise EvalError(f"image {i} of the data is not the one the host evaluated (its "
                               "identity differs): evaluate the host again on this data")
        name = f"{r:06d}" + (ext if re.fullmatch(r"\.[a-z0-9]{1,5}", ext) else ".img")
        where = folder
        if class_names is not None:
            where = os.path.join(folder, "test", class_folder(int(y), class_names))
            os.makedirs(where, exist_ok=True)
        with open(os.path.join(where, name), "wb") as f:
            f.write(data)
        lines.append(f"{name},{int(y)},{int(i)}")
    if class_names is not None:
        os.makedirs(os.path.join(folder, "train"), exist_ok=True)
        for c in range(len(class_names)):  # every class, also one with no image here
            os.makedirs(os.path.join(folder, "test", class_folder(c, class_names)),
                        exist_ok=True)
    if images_file:
        with open(os.path.join(folder, images_file), "w") as f:
            f.write("\n".join(lines) + "\n")
    return len(lines)


def class_folder(c: int, class_names: List[str]) -> str:
    """``NNN_name``: sorted, the folders are the label order; the name made a plain one."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(class_names[c]))[:60].strip("._") or "class"
    return f"{c:03d}_{name}"


def device_folder(info: dict) -> str:
    """A folder name for the device (its serial and model are untrusted text)."""
    raw = f"{info.get('name') or 'android'}-{info.get('serial') or ''}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", raw).strip("._")[:80] or "android"


def device_row(e, info, threads, rec, phone, d, acc, out_root, local, log,
               runtime: str = "android-app") -> dict:
    """An accuracy row measured on a device (``phone``: its predictions; ``d``: their drift
    against the host's float reference; ``rec``: the device's own record of the run, if any),
    its predictions file moved under ``out_root/<acc>/``."""
    a = phone.header["accelerator"]
    flagged = a.get("used") != a.get("requested") or a.get("fully_accelerated") is False
    row = records.new_record(
        "accuracy", **records.artifact_fields(e), runtime=runtime,
        delegate=rec.get("delegate"), device=dict(info, **(rec.get("device") or {})),
        threads=threads, batch_size=1, runs=rec.get("runs"),
        duration_s=rec.get("duration_s"), peak_memory_mb=rec.get("peak_memory_mb"),
        tools=rec.get("tools") or {})
    row.update(
        accuracy={"top1": d["top1"], "top5": d["top5"], "examples": d["paired_images"],
                  "crops": 1},
        drift=d, peak_memory_is=rec.get("peak_memory_is"),
        accelerator=dict(a, flagged=flagged),
        inference_ms_mean=rec.get("inference_ms_mean"), wall_ms_mean=rec.get("wall_ms_mean"),
        images_skipped=rec.get("images_skipped"),
        eval_set={"images": d["paired_images"], "source": phone.header["set"].get("source"),
                  "split": phone.header["set"].get("split"), "crops": 1})
    folder = os.path.join(out_root, acc)
    os.makedirs(folder, exist_ok=True)
    final = os.path.join(folder, predictions.file_name(e["file"]))
    shutil.move(local, final + ".tmp")
    os.replace(final + ".tmp", final)
    row["predictions"] = os.path.relpath(final, os.path.dirname(os.path.dirname(out_root)))
    b = d["bootstrap"]
    log(f"[{'android' if runtime == 'android-app' else 'pair'}] {e['file']} {acc}: Δ top-1 {d['top1_delta_points']:+.2f} pts "
        f"[{b['ci_low_points']:+.2f}, {b['ci_high_points']:+.2f}], agreement "
        f"{100 * d['argmax_agreement']:.2f} %, McNemar p {d['mcnemar']['p_value']:.3g}"
        + (f"; FLAGGED: ran on {a.get('used')}, fully accelerated "
           f"{a.get('fully_accelerated')}: {a.get('fallback_reason')}" if flagged else ""),
        flush=True)
    return row


# --------------------------------------------------------------------------------------------
# a board: export on the host, evaluate on the board, pair on the host
# --------------------------------------------------------------------------------------------
def export_set(artifacts_dir: str, results_dir: str, out_dir: str,
               data_source: Optional[str] = None, data_path: Optional[str] = None,
               log=print) -> str:
    """The board's bundle: the images the host evaluated (their bytes, identities checked) as
    an image folder (``images/``), and the host's float predictions (``reference.jsonl``).
    Written beside ``out_dir`` and renamed into place: whole or not at all."""
    import json
    import tempfile

    from edge_eval.harness import load_manifest

    manifest = load_manifest(artifacts_dir)
    ref = reference_predictions(results_dir)
    items, class_names = reference_items(artifacts_dir, manifest, ref, data_source, data_path)
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir):
        raise EvalError(f"{out_dir} exists: give a new folder for the bundle")
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".bundle-", dir=parent)
    try:
        n = write_images(os.path.join(tmp, "images"), ref, items, class_names=class_names)
        shutil.copyfile(os.path.join(results_dir, predictions.DIRNAME,
                                     predictions.file_name(None)),
                        os.path.join(tmp, "reference.jsonl"))
        with open(os.path.join(tmp, "bundle.json"), "w") as f:
            json.dump({"images": n, "classes": len(class_names),
                       "set": ref.header.get("set"), "reference": ref.header.get("artifact"),
                       "board_command": "python -m edge_eval accuracy ARTIFACTS "
                       "--data-source image_folder --data-path BUNDLE/images "
                       "--reference-predictions BUNDLE/reference.jsonl --out RESULTS"}, f,
                      indent=1)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"[export-set] {n} images + the host's float predictions -> {out_dir}", flush=True)
    return out_dir


def pair(artifacts_dir: str, board_results: str, results_dir: str,
         bootstrap_rounds: int = 2000, log=print) -> List[dict]:
    """Every per-image predictions file a board wrote (``board_results/predictions/``, its
    own reference excepted) paired with the host's float reference (``results_dir``): device
    rows in ``results_dir/board_accuracy.jsonl``, the board's files kept under
    ``results_dir/device_predictions/<board>/<delegate>/``."""
    import glob
    import tempfile

    from contract.preprocessing import read_labels
    from edge_eval import stats
    from edge_eval.harness import load_manifest

    manifest = load_manifest(artifacts_dir)
    by_file = {a["file"]: a for a in manifest.get("artifacts", [])}
    ref = reference_predictions(results_dir)
    names_file = os.path.join(artifacts_dir, "labels.txt")
    names = read_labels(names_file) if os.path.isfile(names_file) else None
    files = sorted(p for p in glob.glob(os.path.join(board_results, predictions.DIRNAME,
                                                     "*.jsonl"))
                   if os.path.basename(p) != predictions.file_name(None))
    if not files:
        raise EvalError(f"no per-image predictions in {board_results}/{predictions.DIRNAME}/: "
                        "run the board's accuracy command first")
    rows = []
    tmp = tempfile.mkdtemp(prefix="pair-")
    try:
        for path in files:
            try:
                board = predictions.read(path)
            except predictions.PredictionError as e:
                raise EvalError(str(e)) from None
            e = by_file.get(board.header.get("artifact"))
            if e is None:
                raise EvalError(f"{path} answers for {board.header.get('artifact')!r}, which "
                                f"is not in {artifacts_dir}/manifest.json")
            if board.header.get("sha256") not in (None, e.get("sha256")):
                raise EvalError(f"{path}: the board ran sha256 {board.header['sha256']}, the "
                                f"manifest has {e.get('sha256')} for {e['file']}")
            try:
                d = stats.paired_drift(predictions.pair(ref, board), names, bootstrap_rounds)
            except predictions.PredictionError as ex:
                raise EvalError(f"{path}: {ex}") from None
            acc = board.header["accelerator"].get("requested") or "none"
            dev = dict(board.header.get("device") or {}, role="board")
            local = os.path.join(tmp, os.path.basename(path))
            shutil.copyfile(path, local)
            rows.append(device_row(e, dev, None, {"delegate": acc}, board, d, acc,
                                   os.path.join(results_dir, DEVICE_PREDICTIONS,
                                                device_folder(dev)), local, log,
                                   runtime=board.header.get("runtime") or "board"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows += _board_failures(board_results, by_file, {r["artifact"] for r in rows}, log)
    records.write_jsonl(rows, os.path.join(results_dir, records.RowsFile.BOARD_ACCURACY))
    return rows


def failed_device_row(row: dict) -> dict:
    """``row`` (a failed record of a run on a device) as a device row: what was asked for (its
    delegate), that nothing ran - the report's device table and the recipe choice see that it
    failed there."""
    return dict(row, accelerator={"requested": row.get("delegate"), "used": None,
                                  "fully_accelerated": None, "flagged": False,
                                  "fallback_reason": None})


def _board_failures(board_results: str, by_file: dict, paired: set, log) -> List[dict]:
    """The board's failed rows (a model its runtime could not load or run) of the manifest's
    models it wrote no predictions for: device rows too."""
    path = os.path.join(board_results, records.RowsFile.ACCURACY)
    if not os.path.isfile(path):
        return []
    out = []
    for r in records.read_jsonl(path):
        if r.get("status") != "failed" or r.get("artifact") not in by_file or \
                r["artifact"] in paired:
            continue
        r = failed_device_row(dict(r, device=dict(r.get("device") or {}, role="board"),
                                   delegate=r.get("delegate") or "xnnpack"))
        log(f"[pair] {r['artifact']} {r['accelerator']['requested']}: failed on the board: "
            f"{r.get('error')}", flush=True)
        out.append(r)
    return out
