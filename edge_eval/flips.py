"""Why did this image flip? ``python -m edge_eval flips ARTIFACTS --artifact NAME``.

The images whose top-1 differs between the float reference and the artifact - from the per-image
records of an accuracy run (``--results``: its ``predictions/``; contract.predictions), else
both models run here on the set - are followed through the network block by block. At each
block boundary (the stem's end, ``mixed0`` ... ``mixed10``: the single-tensor cut points that
``edge_eval profile`` times), the artifact's own output there (its prefix, cut from its
flatbuffer, dequantized) is fed to the float rest of the network (the fp32 .tflite of the same
export, cut at the same tensor). The first boundary whose hybrid answer differs from the
reference's names the block that flipped the image. Where the artifact computes float
probabilities that it then quantizes for its output (full int8 with float I/O: SOFTMAX ->
QUANTIZE -> DEQUANTIZE), its own prefix up to the SOFTMAX is the ``head`` boundary (pooling,
classifier, softmax in int8), and ``output`` takes the images only that last quantization flips
(the probabilities' 1/256 steps tie the top two classes); elsewhere ``head`` takes those no
boundary flips. Images the artifact does not flip here (records from another runtime: a phone's
GPU) and images the fp32 .tflite flips as well are counted as such, never forced into a block.

Blocks are ranked by the flips they explain. ``--fix K`` converts the selective recipe that keeps
the top K blocks (``output`` is not one) (``static_wi8_ai8+float:mixedN``, quantize/selective.py: one
calibration with its fully int8 twin, converted beside it; ``--calib-images`` as the artifact's
conversion had them) and measures both on the whole set: flips against the reference, how many
of the artifact's flips the fix recovers, size, latency, and how closely the twin is the
artifact.

Written to ``<out>/flips/<artifact>.json`` (the per-image attribution keyed by the images'
identities, the ranking, the fix); ``edge_eval report`` shows a per-block bar of it.

Any two runtimes whose per-block outputs can be had work the same way: here the host's LiteRT
runs the prefixes; a phone would run the same prefix files through the app's accuracy mode.
"""
from __future__ import annotations

import os
import re
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from contract import predictions, records
from contract.manifest import atomic_write_json
from contract.litert import TFLiteModel
from contract.preprocessing import PreprocessingSpec
from edge_eval import preprocess
from edge_eval.profile import cut_points, graph, prefix, suffix
from edge_eval.shards import _plain  # an artifact's name as a plain file name

DIRNAME = "flips"
NOT_REPRODUCED = "not flipped here"    # the records' runtime flipped it, this one does not
FLOAT_FLIPS = "fp32 .tflite flips too"  # not quantization: the float graph disagrees as well
HEAD = "head"
OUTPUT = "output"  # the probabilities' own int8 quantization (1/256 steps: near-ties collapse)
_MIXED = re.compile(r"mixed\d+$")


class FlipError(ValueError):
    """What this tool cannot attribute (one clear message)."""


# --------------------------------------------------------------------------------------------
# the blocks: matching cut points of the artifact and of the fp32 .tflite
# --------------------------------------------------------------------------------------------
def _key(g, op: int) -> str:
    """The Keras layer a cut's tensor comes from (``inception_v3/mixed5/concat`` -> mixed5)."""
    name = g.tensors[g.operators[op].outputs[0]].name
    name = name.decode() if isinstance(name, bytes) else str(name)
    parts = name.split(";")[0].split("/")
    return parts[1] if len(parts) > 1 else parts[0]


def boundaries(q_graph, f_graph, q_names: Dict[int, str]) -> List[Tuple[str, int, Optional[int]]]:
    """[(block, the artifact's cut op, the fp32 model's cut op)]: ``stem`` (the last cut before
    ``mixed0``), every ``mixedN`` both graphs have a clean cut after, in order, and ``head``
    with no fp32 cut where the artifact computes float probabilities (its SOFTMAX) that are
    then quantized for its output: the artifact up to there is its own answer before the
    output's int8 steps."""
    fcuts = {_key(f_graph, i): i for i in cut_points(f_graph)}
    qcuts = [(i, _key(q_graph, i)) for i in cut_points(q_graph)]
    first = next((k for k, (_, key) in enumerate(qcuts) if _MIXED.match(key)), None)
    if first is None:
        raise FlipError("the artifact has no mixedN block boundary: flips are attributed to "
                        "Inception-v3's blocks (stem, mixed0-mixed10, head)")
    out = []
    if first > 0 and qcuts[first - 1][1] in fcuts:
        out.append(("stem", qcuts[first - 1][0], fcuts[qcuts[first - 1][1]]))
    for i, key in qcuts[first:]:
        if _MIXED.match(key) and key in fcuts:
            out.append((key, i, fcuts[key]))
    soft = [i for i, _ in qcuts if i > out[-1][1] and q_names[i] == "SOFTMAX"
            and q_graph.tensors[q_graph.operators[i].outputs[0]].type == 0]  # float32
    if soft and "QUANTIZE" in (q_names[j] for j in range(soft[-1] + 1, len(q_names))):
        out.append((HEAD, soft[-1], None))
    return out


def attribute(ref: np.ndarray, art: np.ndarray, flt: np.ndarray,
              hybrids: Sequence[Tuple[str, np.ndarray]]) -> List[str]:
    """Per image: the first block whose hybrid top-1 differs from the reference's; when none
    does but the artifact's own answer does, ``head`` - or ``output`` when the head was a
    boundary (the probabilities' int8 steps tied the top two); NOT_REPRODUCED / FLOAT_FLIPS
    for images quantization here does not explain."""
    last = OUTPUT if hybrids and hybrids[-1][0] == HEAD else HEAD
    out = []
    for i in range(len(ref)):
        if art[i] == ref[i]:
            out.append(NOT_REPRODUCED)
        elif flt[i] != ref[i]:
            out.append(FLOAT_FLIPS)
        else:
            out.append(next((b for b, top in hybrids if top[i] != ref[i]), last))
    return out


def ranking(blocks: Sequence[str]) -> List[dict]:
    """Blocks by the flips they explain, most first (the two unexplained kinds last)."""
    counts: Dict[str, int] = {}
    for b in blocks:
        counts[b] = counts.get(b, 0) + 1
    explained = sum(v for k, v in counts.items() if k not in (NOT_REPRODUCED, FLOAT_FLIPS))
    rows = sorted(((k, v) for k, v in counts.items() if k not in (NOT_REPRODUCED, FLOAT_FLIPS)),
                  key=lambda kv: (-kv[1], kv[0]))
    out = [{"block": k, "flips": v, "share": v / explained} for k, v in rows]
    return out + [{"block": k, "flips": counts[k], "share": None}
                  for k in (NOT_REPRODUCED, FLOAT_FLIPS) if counts.get(k)]


# --------------------------------------------------------------------------------------------
# running models on the set
# --------------------------------------------------------------------------------------------
def _top1(model: TFLiteModel, x: np.ndarray) -> np.ndarray:
    return model.predict(x, 32).argmax(1) if len(x) else np.zeros(0, np.int64)


def _inputs(items, idx: Sequence[int], spec: PreprocessingSpec) -> np.ndarray:
    if not len(idx):
        h, w = spec.input_size
        return np.zeros((0, h, w, spec.channels), np.float32)
    return np.stack([preprocess.central(items.load(int(i), spec.decode_channels)[0], spec)
                     for i in idx])


def _set_top1(models: Sequence[TFLiteModel], items, spec, batch: int = 256) -> List[np.ndarray]:
    """Every model's top-1 on the whole set, ``batch`` images preprocessed at a time."""
    out: List[list] = [[] for _ in models]
    for a in range(0, len(items), batch):
        x = _inputs(items, range(a, min(a + batch, len(items))), spec)
        for k, m in enumerate(models):
            out[k].append(_top1(m, x))
    return [np.concatenate(o) if o else np.zeros(0, np.int64) for o in out]


def hybrid_top1(q_bytes: bytes, f_bytes: bytes, x: np.ndarray, threads: int = 2,
                log=print) -> List[Tuple[str, np.ndarray]]:
    """[(block, top-1 of the artifact's prefix up to the block -> float rest)] for inputs x."""
    qm, qg, qnames = graph(q_bytes)
    fm, fg, _ = graph(f_bytes)
    out = []
    for block, qi, fi in boundaries(qg, fg, qnames):
        if not len(x):  # nothing flipped: the boundaries alone
            out.append((block, np.zeros(0, np.int64)))
            continue
        head = TFLiteModel(model_content=prefix(qm, qg, qi), num_threads=threads)
        mid = head.predict(x, 32)
        if fi is None:  # the artifact's own float probabilities, before its output's int8
            out.append((block, mid.argmax(1)))
            continue
        rest = TFLiteModel(model_content=suffix(fm, fg, fi), num_threads=threads)
        out.append((block, rest.predict(mid, 32).argmax(1)))
    log(f"[flips] {len(out)} block boundaries: " + ", ".join(b for b, _ in out), flush=True)
    return out


# --------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------
def _entry(manifest: dict, name: str) -> dict:
    hits = [e for e in manifest["artifacts"] if name in (e.get("file"), e.get("recipe"))]
    if not hits:
        raise FlipError(f"no artifact {name!r} in the manifest (a file or a recipe name)")
    e = hits[0]
    if not str(e.get("file", "")).endswith(".tflite") or e.get("target") != "tflite":
        raise FlipError(f"{e['file']}: flips are attributed for .tflite artifacts (cut into "
                        "prefixes); this one is not")
    return e


def _float_entry(manifest: dict, entry: dict) -> dict:
    """The fp32 .tflite that is the float rest of the network: of the float (non-QAT)
    source, else of the artifact's own source."""
    fp32 = [e for e in manifest["artifacts"] if e.get("recipe") == "fp32"
            and e.get("target") == "tflite"]
    sources = manifest.get("sources") or {}
    plain = [e for e in fp32 if not (sources.get(e.get("source_sha256")) or {}).get("qat")]
    same = [e for e in fp32 if e.get("source_sha256") == entry.get("source_sha256")]
    pick = (plain or same)
    if not pick:
        raise FlipError("the manifest has no fp32 .tflite: convert with --recipes fp32,... "
                        "(it is the float rest of the network the blocks are fed into)")
    return pick[0]


def _flipped_from_records(results: str, artifact: str, items, log):
    """(positions in the set, the reference's top-1 there) of the images the records say
    flipped; None when there are no records for this artifact."""
    folder = os.path.join(results, predictions.DIRNAME)
    ref_p = os.path.join(folder, predictions.file_name(None))
    art_p = os.path.join(folder, predictions.file_name(artifact))
    if not (os.path.isfile(ref_p) and os.path.isfile(art_p)):
        return None
    p = predictions.pair(predictions.read(ref_p), predictions.read(art_p))
    flipped = {p.ref.ids[r]: int(p.ref.top[r][0]) for r, o in zip(p.ref_rows, p.other_rows)
               if p.ref.top[r][0] != p.other.top[o][0]}
    where = {}
    for k in range(len(items)):
        ident = items.identity(k)
        if ident in flipped:
            where[ident] = k
    missing = len(flipped) - len(where)
    if missing:
        log(f"[flips] {missing} of {len(flipped)} flipped images in the records are not in this "
            "set (pass the records' --images/--split/--data-path): left out", flush=True)
    ids = sorted(where, key=where.get)
    return [where[i] for i in ids], np.asarray([flipped[i] for i in ids], np.int64), ids, \
        len(p.ref_rows), missing


def flips(artifacts_dir: str, artifact: str, out_dir: str, results: Optional[str] = None,
          data_source: Optional[str] = None, data_path: Optional[str] = None,
          images: Optional[int] = None, split: str = "test", seed: int = 0, fix: int = 1,
          threads: int = 2, log=print, calib_images: Optional[int] = None) -> dict:
    """The attribution of ``artifact``'s flips (see the module's docstring); written to
    ``out_dir/flips/<artifact>.json`` and returned."""
    from edge_eval.harness import (data_config, datetime_now, eval_items, load_manifest,
                                   reference_path)

    t0 = time.perf_counter()
    artifacts_dir = os.path.abspath(artifacts_dir)
    manifest = load_manifest(artifacts_dir)
    entry = _entry(manifest, artifact)
    fentry = _float_entry(manifest, entry)
    spec = PreprocessingSpec.from_dict(manifest["preprocessing"])
    dcfg = data_config(reference_path(manifest), data_source, data_path)
    items, names, note = eval_items(dcfg, split, images, seed)
    q_path = os.path.join(artifacts_dir, entry["file"])
    f_path = os.path.join(artifacts_dir, fentry["file"])
    with open(q_path, "rb") as f:
        q_bytes = f.read()
    with open(f_path, "rb") as f:
        f_bytes = f.read()
    qm = TFLiteModel(model_content=q_bytes, num_threads=threads)
    fm = TFLiteModel(model_content=f_bytes, num_threads=threads)

    got = _flipped_from_records(results, entry["file"], items, log) if results else None
    if got is not None:
        idx, ref_top, ids, paired, missing = got
        source = {"records": os.path.join(os.path.abspath(results), predictions.DIRNAME),
                  "reference": "the records' float reference", "paired_images": paired,
                  "flipped_not_in_set": missing}
    else:  # no records: both models here, the fp32 .tflite as the reference
        f_top, q_top = _set_top1([fm, qm], items, spec)
        idx = [int(i) for i in np.flatnonzero(f_top != q_top)]
        ref_top = f_top[idx]
        ids = [items.identity(i) for i in idx]
        source = {"records": None, "reference": fentry["file"], "paired_images": len(items)}
    log(f"[flips] {entry['file']}: {len(idx)} flipped image(s) of {source['paired_images']}",
        flush=True)
    x = _inputs(items, idx, spec)
    art_top, flt_top = _top1(qm, x), _top1(fm, x)
    hybrids = hybrid_top1(q_bytes, f_bytes, x, threads, log)
    blocks = attribute(ref_top, art_top, flt_top, hybrids)
    rank = ranking(blocks)
    labels = [int(items.load(i, spec.decode_channels)[1]) for i in idx]
    result = {
        "artifact": entry["file"], "recipe": entry.get("recipe"), "sha256": entry.get("sha256"),
        "float_rest": fentry["file"], "set": {"split": split, "note": note, "images": images,
                                              "seed": seed, "source": dcfg.source.value},
        **source, "flips": len(idx), "boundaries": [b for b, _ in hybrids], "ranking": rank,
        "top3_share": sum(r["flips"] for r in rank[:3] if r["share"] is not None)
        / max(sum(r["flips"] for r in rank if r["share"] is not None), 1),
        "images": [{"i": int(i), "id": ident, "label": lab, "reference": int(r),
                    "artifact": int(a), "block": b}
                   for i, ident, lab, r, a, b in zip(idx, ids, labels, ref_top, art_top, blocks)],
        "created": datetime_now(), "device": records.host_device(),
    }
    for r in rank:
        log(f"[flips]   {r['block']:>18}: {r['flips']} flip(s)"
            + (f" ({100 * r['share']:.0f} %)" if r["share"] is not None else ""), flush=True)
    # what a selective recipe can keep float (the output's quantization is not a block)
    explained = [r["block"] for r in rank if r["share"] is not None and r["block"] != OUTPUT]
    if fix and explained:
        result["fix"] = _fix(manifest, entry, explained[:fix], q_path, items, spec, dcfg,
                             (idx, ref_top), fm, out_dir, threads, log, calib_images)
    result["seconds"] = time.perf_counter() - t0
    path = os.path.join(out_dir, DIRNAME, _plain(entry["file"]) + ".json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_json(path, result)
    log(f"[flips] -> {path}", flush=True)
    return result


def _fix(manifest, entry, blocks, q_path, items, spec, dcfg, flipped, f_model, out_dir, threads,
         log, calib_images=None) -> dict:
    """The selective recipe keeping ``blocks`` float, converted beside its fully int8 twin
    (one calibration), both measured on the whole set against the reference: the fp32
    .tflite's answers, with the records' reference answers where the artifact flipped."""
    from contract.recipes import get_recipe
    from edge_eval.bench import bench_tflite

    base = str(entry.get("recipe") or "").split("+")[0]
    sources = manifest.get("sources") or {}
    src = sources.get(entry.get("source_sha256")) or {}
    if not base.startswith("static_wi8_ai8") or src.get("qat") or not src.get("path"):
        return {"status": "unavailable", "error": f"no selective recipe for {entry['recipe']} "
                "(full int8 of a float Keras export only)"}
    try:
        from convert import api
    except ImportError as e:
        return {"status": "unavailable", "error": f"converting needs the build side: {e}"}
    name = f"{base}+float:{','.join(blocks)}"
    folder = os.path.join(out_dir, DIRNAME, "fix-" + _plain(entry["file"]))
    req = api.Request(model=src["path"], out=folder, recipes=[get_recipe(base), get_recipe(name)],
                      data_path=dcfg.path, metadata=None, check_images=16,
                      calib_images=calib_images)
    log(f"[flips] converting {name} beside {base} (one calibration) ...", flush=True)
    try:
        loaded = api.load(req, log)
        made = api.convert(req, loaded, log, api.inputs(req, loaded))
    except Exception as e:  # noqa: BLE001 - the conversion's own message
        return {"status": "failed", "error": f"{type(e).__name__}: {e}"}
    files = {a["recipe"]: os.path.join(folder, a["file"]) for a in made["artifacts"]}
    if name not in files or base not in files:
        return {"status": "failed", "error": "; ".join(f.get("error", "") for f in
                                                       made.get("failures", []))[:400]}
    twin = TFLiteModel(files[base], num_threads=threads)
    fixm = TFLiteModel(files[name], num_threads=threads)
    art = TFLiteModel(q_path, num_threads=threads)
    ref_all, art_top, twin_top, fix_top = _set_top1([f_model, art, twin, fixm], items, spec)
    idx, ref_top = flipped
    ref_all[list(idx)] = ref_top
    # two rounds, alternating, the better median of each (a noisy neighbour hits one round)
    lat: Dict[str, Optional[float]] = {"artifact": None, "fix": None}
    for _ in range(2):
        for k, p in (("artifact", q_path), ("fix", files[name])):
            got = (bench_tflite(p, threads=threads, runs=30, max_seconds=20).get("latency_ms")
                   or {}).get("p50")
            if got is not None:
                lat[k] = got if lat[k] is None else min(lat[k], got)
    art_flips = set(np.flatnonzero(art_top != ref_all).tolist())
    fix_flips = set(np.flatnonzero(fix_top != ref_all).tolist())
    out = {"status": "ok", "recipe": name, "file": files[name],
           # how closely the twin re-made here is the artifact (1.0: the same calibration)
           "twin_artifact_agreement": float(np.mean(twin_top == art_top)),
           "artifact_flips": len(art_flips), "twin_flips": int((twin_top != ref_all).sum()),
           "fix_flips": len(fix_flips), "recovered": len(art_flips - fix_flips),
           "new_flips": len(fix_flips - art_flips),
           "bytes": os.path.getsize(files[name]), "artifact_bytes": os.path.getsize(q_path),
           "latency_ms_p50": lat}
    out["size_ratio"] = out["bytes"] / out["artifact_bytes"]
    if lat["artifact"] and lat["fix"]:
        out["latency_ratio"] = lat["fix"] / lat["artifact"]
    log(f"[flips] {name}: {out['recovered']} of {out['artifact_flips']} flips recovered, "
        f"{out['new_flips']} new; size x{out['size_ratio']:.2f}"
        + (f", latency x{out['latency_ratio']:.2f}" if "latency_ratio" in out else ""),
        flush=True)
    return out
