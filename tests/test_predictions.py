"""The per-image prediction record (contract/predictions.py): one format for the host harness and
the app (Java's PredictionWriter makes the committed golden file, read here), pairing two runs on
the image identity, and paired drift that agrees with the report's statistics."""
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from contract import predictions
from contract.predictions import PredictionError

GOLDEN = os.path.join(ROOT, "android_demo", "core", "src", "test", "resources",
                      "predictions_golden.jsonl")


def _run(path, probs, labels, ids=None, artifact="m.tflite", **kw):
    top, scores = predictions.top_k(probs)
    n = len(labels)
    head = predictions.header(artifact, probs.shape[1], "litert", kw.pop("requested", "cpu"),
                              kw.pop("used", "cpu"), kw.pop("full", True), split="test", **kw)
    ids = ids or [predictions.image_id(f"image {i}".encode()) for i in range(n)]
    return predictions.write(str(path), head, list(range(n)), ids, labels, top, scores)


def test_the_javas_golden_file_reads_as_python_writes_it():
    """The Java writer's committed output: ids are sha256 prefixes of the same bytes, the top-5
    is what Python's top_k picks from the same scores (ties to the lower index)."""
    p = predictions.read(GOLDEN)
    h = p.header
    assert h["accelerator"] == {"requested": "gpu", "used": "gpu", "fully_accelerated": False,
                                "fallback_reason": "AVERAGE_POOL_2D x1 on the CPU"}
    assert (h["classes"], h["top_k"], h["set"]["images"]) == (7, 5, 3)
    assert p.index == [0, 1, 5] and p.labels == [3, 4, 0]
    want_ids = [hashlib.sha256(s.encode()).hexdigest()[:20]
                for s in ("image zero", "image one", "image five")]
    assert p.ids == want_ids
    scores = np.array([[0.01, 0.02, 0.03, 0.7, 0.1, 0.09, 0.05],
                       [0.0, 0.3, 0.1, 0.0, 0.3, 0.2, 0.1],
                       [0.125, 0.125, 0.125, 0.125, 0.125, 0.1875, 0.1875]], np.float32)
    top, s = predictions.top_k(scores)
    assert p.top == top.tolist()
    np.testing.assert_allclose(p.scores, s, atol=1e-6)


def test_a_round_trip_keeps_every_field(tmp_path):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(10), 50).astype(np.float32)
    labels = rng.integers(0, 10, 50).tolist()
    _run(tmp_path / "a.jsonl", probs, labels, requested="gpu", used="cpu", full=False,
         fallback_reason="the GPU accelerator is not available")
    p = predictions.read(str(tmp_path / "a.jsonl"))
    assert len(p) == 50 and p.labels == labels
    assert p.header["accelerator"]["used"] == "cpu" and p.header["set"]["images"] == 50
    assert [t[0] for t in p.top] == probs.argmax(1).tolist()


@pytest.mark.parametrize("damage, message", [
    (lambda ls: ["{not json"] + ls[1:], ":1: not JSON"),
    (lambda ls: [json.dumps(dict(json.loads(ls[0]), kind="records"))] + ls[1:],
     "not a predictions header"),
    (lambda ls: [json.dumps(dict(json.loads(ls[0]), version=2))] + ls[1:], "version 2"),
    (lambda ls: ls[:-1], "the header says 4 images, the file has 3"),
    (lambda ls: ls[:2] + [ls[1]] + ls[3:], "appears twice"),
    (lambda ls: ls[:2] + [ls[2].replace('"k": [', '"k": [99, ')] + ls[3:],
     ":3: not a prediction row"),
])
def test_a_damaged_file_is_one_message_naming_the_line(tmp_path, damage, message):
    probs = np.eye(6, dtype=np.float32)[[0, 1, 2, 3]]
    path = _run(tmp_path / "a.jsonl", probs, [0, 1, 2, 3])
    lines = open(path).read().splitlines()
    open(path, "w").write("\n".join(damage(lines)) + "\n")
    with pytest.raises(PredictionError, match=message):
        predictions.read(path)


def test_pairing_joins_on_identity_not_position(tmp_path):
    """The other run answered the images in another order, missed one, and has one of its own:
    the join pairs by identity and counts what it left out."""
    from edge_eval import stats

    rng = np.random.default_rng(1)
    n, c = 400, 10
    labels = rng.integers(0, c, n)
    ref = rng.dirichlet(np.ones(c) * 0.3, n).astype(np.float32)
    ref[np.arange(n), labels] += 1.0  # a model that is mostly right
    ref /= ref.sum(1, keepdims=True)
    other = ref.copy()
    flip = rng.choice(n, 40, replace=False)
    other[flip] = np.roll(other[flip], 1, axis=1)  # 40 images answered differently
    ids = [predictions.image_id(f"img{i}".encode()) for i in range(n)]
    _run(tmp_path / "ref.jsonl", ref, labels.tolist(), ids=ids, artifact="reference")
    order = rng.permutation(n)[:-1]  # shuffled, one image missing
    top, scores = predictions.top_k(other[order])
    extra_top, extra_s = predictions.top_k(np.eye(c, dtype=np.float32)[:1])
    head = predictions.header("other.tflite", c, "litert", "gpu", "gpu", True, split="test")
    predictions.write(str(tmp_path / "other.jsonl"), head, list(order) + [n],
                      [ids[i] for i in order] + [predictions.image_id(b"not in ref")],
                      labels[order].tolist() + [0], np.vstack([top, extra_top]),
                      np.vstack([scores, extra_s]))
    pairing = predictions.pair(predictions.read(str(tmp_path / "ref.jsonl")),
                               predictions.read(str(tmp_path / "other.jsonl")))
    assert (len(pairing.ref_rows), pairing.only_ref, pairing.only_other) == (n - 1, 1, 1)
    got = stats.paired_drift(pairing, bootstrap_rounds=200)
    keep = np.sort(order)
    want = stats.drift(ref[keep], other[keep], labels[keep], bootstrap_rounds=200)
    for k in ("top1_delta_points", "top5_delta_points", "argmax_agreement", "top5_overlap"):
        assert got[k] == pytest.approx(want[k], abs=1e-9), k
    assert got["mcnemar"] == want["mcnemar"]
    assert got["bootstrap"] == want["bootstrap"]
    assert got["argmax_agreement"] == pytest.approx(1 - np.mean(
        ref[keep].argmax(1) != other[keep].argmax(1)))


def test_runs_of_different_tasks_or_sets_are_not_paired(tmp_path):
    a = _run(tmp_path / "a.jsonl", np.eye(4, dtype=np.float32), [0, 1, 2, 3])
    b = _run(tmp_path / "b.jsonl", np.eye(6, dtype=np.float32)[:4], [0, 1, 2, 3])
    with pytest.raises(PredictionError, match="not the same task"):
        predictions.pair(predictions.read(a), predictions.read(b))
    c = _run(tmp_path / "c.jsonl", np.eye(4, dtype=np.float32), [0, 1, 2, 3],
             ids=[predictions.image_id(f"other {i}".encode()) for i in range(4)])
    with pytest.raises(PredictionError, match="share no image"):
        predictions.pair(predictions.read(a), predictions.read(c))


def test_the_drift_command_pairs_two_files_and_gates(tmp_path):
    probs = np.eye(5, dtype=np.float32)[[0, 1, 2, 3, 4] * 4]
    labels = [0, 1, 2, 3, 4] * 4
    ids = [predictions.image_id(f"i{i}".encode()) for i in range(20)]
    ref = _run(tmp_path / "reference.jsonl", probs, labels, ids=ids, artifact="float.keras")
    worse = probs.copy()
    worse[:4] = np.roll(worse[:4], 1, axis=1)  # 4 of 20 wrong: -20 points
    other = _run(tmp_path / "gpu.jsonl", worse, labels, ids=ids, requested="gpu", used="cpu",
                 full=False, fallback_reason="no OpenCL")
    env = dict(os.environ, PYTHONPATH=ROOT)
    p = subprocess.run([sys.executable, "-m", "edge_eval", "drift", ref, other,
                        "--max-top1-drift", "5", "--bootstrap", "100"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and "-20.00 points" in p.stdout, p.stdout + p.stderr
    assert "gpu -> ran on cpu" in p.stdout and "NOT fully accelerated: no OpenCL" in p.stdout
    q = subprocess.run([sys.executable, "-m", "edge_eval", "drift", ref, other, "--json",
                        "--bootstrap", "100"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=120)
    d = json.loads(q.stdout)
    assert q.returncode == 0 and d["top1_delta_points"] == pytest.approx(-20.0)
    assert d["argmax_agreement"] == pytest.approx(0.8) and d["mcnemar"]["b"] == 4
    bad = subprocess.run([sys.executable, "-m", "edge_eval", "drift", ref,
                          str(tmp_path / "missing.jsonl")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("error:") == 1
