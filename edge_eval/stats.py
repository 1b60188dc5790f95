"""Accuracy and drift statistics (numpy only: runs on a board as well as on the host).

Everything takes probabilities (N x C) and integer labels (N,), and returns plain Python numbers so
the results go straight into a JSON record.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import numpy as np


def topk_hits(probs: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Boolean (N,): whether the label is among the k highest probabilities (ties: lowest index)."""
    k = min(k, probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return (top == np.asarray(labels)[:, None]).any(axis=1)


def accuracy(probs: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
    return {"top1": float(topk_hits(probs, labels, 1).mean()),
            "top5": float(topk_hits(probs, labels, 5).mean()),
            "examples": int(len(labels))}


def mcnemar(ref_correct: np.ndarray, cand_correct: np.ndarray) -> Dict[str, float]:
    """McNemar's test on paired right/wrong outcomes.

    ``b``: right in the reference, wrong in the candidate; ``c``: the reverse. The exact two-sided
    binomial p-value is used when b + c < 25, the chi-square with continuity correction otherwise
    (both are reported). A small p means the top-1 change is more than noise.
    """
    ref_correct = np.asarray(ref_correct, bool)
    cand_correct = np.asarray(cand_correct, bool)
    b = int(np.sum(ref_correct & ~cand_correct))
    c = int(np.sum(~ref_correct & cand_correct))
    n = b + c
    if n == 0:
        return {"b": 0, "c": 0, "statistic": 0.0, "p_exact": 1.0, "p_chi2": 1.0, "p_value": 1.0}
    k = min(b, c)
    # two-sided exact binomial, p = 0.5: 2 * P(X <= k), capped at 1
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n
    p_exact = min(1.0, 2.0 * tail)
    stat = (abs(b - c) - 1.0) ** 2 / n if n else 0.0
    p_chi2 = math.erfc(math.sqrt(max(stat, 0.0) / 2.0))  # survival of chi-square with 1 dof
    return {"b": b, "c": c, "statistic": float(stat), "p_exact": float(p_exact),
            "p_chi2": float(p_chi2), "p_value": float(p_exact if n < 25 else p_chi2)}


def bootstrap_delta_ci(ref_correct: np.ndarray, cand_correct: np.ndarray, rounds: int = 2000,
                       confidence: float = 0.95, seed: int = 0) -> Dict[str, float]:
    """Paired percentile-bootstrap CI of top-1(candidate) - top-1(reference), in points."""
    ref = np.asarray(ref_correct, np.float64)
    cand = np.asarray(cand_correct, np.float64)
    diff = cand - ref
    n = len(diff)
    rng = np.random.default_rng(seed)
    deltas = np.empty(rounds)
    # chunked: at most ~1M draws at a time, so memory stays flat in n (the draws come out of
    # the generator in the same order whatever the chunks: the same CI)
    step = max(1, min(256, (1 << 20) // max(n, 1)))
    for i in range(0, rounds, step):
        m = min(step, rounds - i)
        idx = rng.integers(0, n, size=(m, n))
        deltas[i:i + m] = diff[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(deltas, [alpha, 1.0 - alpha])
    return {"delta_points": float(100 * diff.mean()), "ci_low_points": float(100 * lo),
            "ci_high_points": float(100 * hi), "confidence": confidence, "rounds": rounds}


def kl_divergence(p_ref: np.ndarray, p_cand: np.ndarray, eps: float = 1e-7) -> float:
    """Mean KL(reference || candidate) over the images, in nats."""
    p = np.clip(np.asarray(p_ref, np.float64), eps, 1.0)
    q = np.clip(np.asarray(p_cand, np.float64), eps, 1.0)
    p /= p.sum(axis=1, keepdims=True)
    q /= q.sum(axis=1, keepdims=True)
    return float(np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=1)))


def top5_overlap(p_ref: np.ndarray, p_cand: np.ndarray) -> float:
    """Mean |top5(ref) ∩ top5(cand)| / 5."""
    k = min(5, p_ref.shape[1])
    a = np.argsort(-p_ref, axis=1, kind="stable")[:, :k]
    b = np.argsort(-p_cand, axis=1, kind="stable")[:, :k]
    inter = [len(set(x) & set(y)) for x, y in zip(a.tolist(), b.tolist())]
    return float(np.mean(inter) / k)


def per_class_drift(p_ref: np.ndarray, p_cand: np.ndarray, labels: np.ndarray,
                    class_names: Optional[Sequence[str]] = None) -> List[dict]:
    """Top-1 per class for both models, sorted by the candidate's loss (worst first)."""
    labels = np.asarray(labels)
    rc = p_ref.argmax(1) == labels
    cc = p_cand.argmax(1) == labels
    rows = []
    for k in np.unique(labels):
        m = labels == k
        rows.append({"class": int(k),
                     "name": class_names[k] if class_names is not None and k < len(class_names)
                     else str(int(k)),
                     "examples": int(m.sum()),
                     "ref_top1": float(rc[m].mean()), "top1": float(cc[m].mean()),
                     "delta_points": float(100 * (cc[m].mean() - rc[m].mean())),
                     "flips": int(np.sum(p_ref[m].argmax(1) != p_cand[m].argmax(1)))})
    rows.sort(key=lambda r: (r["delta_points"], -r["flips"]))
    return rows


def drift(p_ref: np.ndarray, p_cand: np.ndarray, labels: np.ndarray, class_names=None,
          bootstrap_rounds: int = 2000, seed: int = 0) -> dict:
    """Everything the report says about one candidate against the float reference."""
    d = _drift_from(_image_parts(p_ref, p_cand, labels), labels, class_names,
                    bootstrap_rounds, seed)
    d["kl_divergence"] = kl_divergence(p_ref, p_cand)
    return d


def _image_parts(p_ref: np.ndarray, p_cand: np.ndarray, labels: np.ndarray) -> dict:
    """Per image, what ``drift`` aggregates: top-1/top-5 hits of both, argmax agreement, the
    top-5 intersection size, the largest probability difference, the reference's top-1."""
    labels = np.asarray(labels)
    k = min(5, p_ref.shape[1])
    # copies of the first k columns: a view would keep the whole [N, classes] argsort alive
    a = np.argsort(-p_ref, axis=1, kind="stable")[:, :k].copy()
    b = np.argsort(-p_cand, axis=1, kind="stable")[:, :k].copy()
    return {"rc": a[:, 0] == labels, "cc": b[:, 0] == labels,
            "rc5": (a[:, :5] == labels[:, None]).any(axis=1),
            "cc5": (b[:, :5] == labels[:, None]).any(axis=1),
            "agree": a[:, 0] == b[:, 0],
            "inter": np.asarray([len(set(x) & set(y)) for x, y in zip(a.tolist(), b.tolist())],
                                np.int64), "k": k,
            "maxdiff": np.abs(p_ref - p_cand).max(axis=1) if len(labels) else np.zeros(0),
            "ref_top": a[:, 0]}


def _concat_parts(parts: List[dict]) -> dict:
    out = {key: np.concatenate([p[key] for p in parts]) for key in parts[0] if key != "k"}
    out["k"] = parts[0]["k"]
    return out


def _drift_from(parts: dict, labels: np.ndarray, class_names, bootstrap_rounds: int,
                seed: int) -> dict:
    labels = np.asarray(labels)
    rc, cc = parts["rc"], parts["cc"]
    per_class = []
    for k in np.unique(labels):
        m = labels == k
        per_class.append({"class": int(k),
                          "name": class_names[k] if class_names is not None and
                          k < len(class_names) else str(int(k)),
                          "examples": int(m.sum()),
                          "ref_top1": float(rc[m].mean()), "top1": float(cc[m].mean()),
                          "delta_points": float(100 * (cc[m].mean() - rc[m].mean())),
                          "flips": int(np.sum(~parts["agree"][m]))})
    per_class.sort(key=lambda r: (r["delta_points"], -r["flips"]))
    return {
        "top1_delta_points": 100 * (float(cc.mean()) - float(rc.mean())),
        "top5_delta_points": 100 * (float(parts["cc5"].mean()) - float(parts["rc5"].mean())),
        "argmax_agreement": float(np.mean(parts["agree"])),
        "top5_overlap": float(np.mean(parts["inter"]) / parts["k"]),
        "kl_divergence": None,
        "max_abs_prob_diff": float(np.max(parts["maxdiff"])),
        "mcnemar": mcnemar(rc, cc),
        "bootstrap": bootstrap_delta_ci(rc, cc, rounds=bootstrap_rounds, seed=seed),
        "per_class": per_class,
        "worst_classes": per_class[:5],
    }


def sparse_probs(top, scores, classes: int) -> np.ndarray:
    """A probability matrix [N, classes] holding only each row's top-k scores (the rest 0): what a
    predictions file keeps. Top-1, top-5, agreement and flips are exact from it; the KL
    divergence and the largest probability difference are over the kept scores only."""
    top = np.asarray(top, np.int64)
    out = np.zeros((len(top), classes), np.float32)
    if len(top):
        np.put_along_axis(out, top, np.asarray(scores, np.float32), axis=1)
    return out


def records_accuracy(preds, crops: int = 1) -> Dict[str, float]:
    """top-1/top-5 of per-image prediction records (contract.predictions) against their labels."""
    return {"top1": float(np.mean([k[0] == y for k, y in zip(preds.top, preds.labels)])),
            "top5": float(np.mean([y in k[:5] for k, y in zip(preds.top, preds.labels)])),
            "examples": len(preds), "crops": crops}


PAIR_CHUNK = 2000  # images at a time when pairing per-image records


def paired_drift(pairing, class_names=None, bootstrap_rounds: int = 2000, seed: int = 0) -> dict:
    """``drift`` between two prediction files joined on their images (contract.predictions
    ``pair``): the same statistics the report gives, on the images both runs answered, with
    the join's counts. From top-k records, so ``kl_divergence`` is left out."""
    ref, other = pairing.ref, pairing.other
    classes = ref.header["classes"]
    labels = np.asarray([ref.labels[r] for r in pairing.ref_rows], np.int64)
    # in chunks of images: a dense [N, classes] matrix of ImageNet's 50,000 x 1,000 would be
    # 200 MB a copy - memory stays flat in the number of images
    parts, shifts = [], []
    for a in range(0, len(labels), PAIR_CHUNK):
        rows = slice(a, a + PAIR_CHUNK)
        p_ref = sparse_probs([ref.top[r] for r in pairing.ref_rows[rows]],
                             [ref.scores[r] for r in pairing.ref_rows[rows]], classes)
        p_other = sparse_probs([other.top[r] for r in pairing.other_rows[rows]],
                               [other.scores[r] for r in pairing.other_rows[rows]], classes)
        parts.append(_image_parts(p_ref, p_other, labels[rows]))
        # how far the scores moved where the answer did not: the probability of the
        # reference's top-1 class in the other run (0 when it left the other's top-k)
        c, i = parts[-1]["ref_top"], np.arange(len(p_ref))
        shifts.append(np.abs(p_other[i, c] - p_ref[i, c]))
    parts = _concat_parts(parts)
    d = _drift_from(parts, labels, class_names, bootstrap_rounds, seed)
    d["from_top_k"] = int(min(ref.header["top_k"], other.header["top_k"]))
    d["paired_images"] = len(labels)
    d["only_in_reference"], d["only_in_other"] = pairing.only_ref, pairing.only_other
    d["label_conflicts"] = pairing.label_conflicts
    d["reference_top1"] = float(parts["rc"].mean())
    d["top1"] = float(parts["cc"].mean())
    k = d["from_top_k"]
    d["top5"] = float(parts["cc5"].mean()) if k >= 5 else None
    shift = np.concatenate(shifts)
    d["score_shift"] = {"mean": float(shift.mean()), "p99": float(np.quantile(shift, 0.99)),
                        "max": float(shift.max())}
    return d
