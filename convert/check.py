"""The one rule every converted artifact is checked by (TFLite recipes and Core ML variants):
its probabilities against the source model's on the check images, within the recipe's stated
tolerance (``max_abs_diff``, ``min_top1_agreement``, ``max_size_ratio`` on weight bytes).

Top-1 agreement is counted on the *decisive* images only: those whose source top-2 probabilities
are more than ``TIE_MARGIN`` apart. At a near-tie either answer is the model's (an int8 output
has 1/256 resolution; an untrained or very uncertain model is near-uniform on every image, and
there argmax agreement says nothing about the conversion). When fewer than
``MIN_DECISIVE_FRACTION`` of the images are decisive, agreement is not judged and the check says
so; the probability tolerance still applies to every image.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

TIE_MARGIN = 0.02  # source top-1 minus top-2 probability below this: a near-tie
MIN_DECISIVE_FRACTION = 0.25
MIN_DECISIVE_IMAGES = 8


def decisive(ref: np.ndarray, margin: float = TIE_MARGIN) -> np.ndarray:
    """A mask of the images whose source top-1 leads its top-2 by more than ``margin``."""
    if ref.shape[1] < 2:
        return np.ones(len(ref), bool)
    top2 = np.sort(ref, axis=1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]) > margin


def judge(tol, got: np.ndarray, ref: np.ndarray, weight_ratio: Optional[float] = None,
          size_judged: bool = True) -> dict:
    """The check record: what was measured, the tolerance, ``passed`` and the ``problems``.
    ``tol`` has ``max_abs_diff``, ``min_top1_agreement`` and ``max_size_ratio``."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    diff = np.abs(got - ref)
    same = got.argmax(1) == ref.argmax(1)
    mask = decisive(ref)
    n_dec = int(mask.sum())
    judged = n_dec >= max(MIN_DECISIVE_IMAGES, MIN_DECISIVE_FRACTION * len(ref))
    agree = float(same[mask].mean()) if n_dec else None
    problems = []
    if diff.max() > tol.max_abs_diff:
        problems.append(f"max |p - p_source| = {diff.max():.4g} > {tol.max_abs_diff}")
    if judged and agree < tol.min_top1_agreement:
        problems.append(f"top-1 agreement {agree:.3f} < {tol.min_top1_agreement} "
                        f"(on the {n_dec} decisive images)")
    if size_judged and weight_ratio is not None and weight_ratio > tol.max_size_ratio:
        problems.append(f"weight bytes ratio {weight_ratio:.3f} > {tol.max_size_ratio}")
    out = {
        "images": int(len(ref)),
        "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
        "top1_agreement": agree,
        "top1_agreement_all": float(same.mean()),
        "decisive_images": n_dec, "tie_margin": TIE_MARGIN,
        "agreement_judged": bool(judged),
        "weight_ratio_vs_fp32": None if weight_ratio is None else round(weight_ratio, 4),
        "tolerance": {"max_abs_diff": tol.max_abs_diff,
                      "min_top1_agreement": tol.min_top1_agreement,
                      "max_size_ratio": tol.max_size_ratio},
        "passed": not problems, "problems": problems,
    }
    if not judged:
        out["note"] = (f"top-1 agreement not judged: only {n_dec} of {len(ref)} images are "
                       f"decisive (the source's top-2 probabilities within {TIE_MARGIN} on the "
                       "rest: a near-uniform, e.g. untrained, model); the probability tolerance "
                       "was checked on every image")
    return out


def summary(check: dict) -> str:
    """The one-line form for logs."""
    agree = check["top1_agreement"]
    return ((f"top-1 agreement {agree:.3f}" if check["agreement_judged"] else
             f"agreement not judged ({check['decisive_images']}/{check['images']} decisive)")
            + f", max |dp| {check['max_abs_diff']:.2e}")
