"""Sharded, resumable, streamed evaluation (edge_eval.shards): a killed run resumes to the
records of an uninterrupted one, the local and Ray backends write the same records, and 1-crop
evaluation keeps no whole-set array."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _args(art, out, images, shard, *extra):
    fp32 = os.path.join(art, "tiny_test_fp32.tflite")
    return [sys.executable, "-m", "edge_eval", "accuracy", art, "--reference", fp32,
            "--data-source", "fashion_mnist", "--out", out, "--images", str(images),
            "--shard-size", str(shard), "--workers", "2", "--runtime", "litert",
            "--only", "static_wi8_ai8_uint8io", "--bootstrap", "100", "--no-strict", *extra]


def _rows(out):
    """Each artifact's per-image rows (the lines after the header) of the merged records."""
    folder = os.path.join(out, "predictions")
    return {n: open(os.path.join(folder, n)).read().splitlines()[1:]
            for n in sorted(os.listdir(folder))}


def _shard_files(out):
    return sorted(os.path.join(r, n) for r, _, ns in os.walk(os.path.join(out, "shards"))
                  for n in ns if n.endswith(".jsonl"))


def test_a_killed_run_resumes_to_the_records_of_an_uninterrupted_one(converted, tmp_path):
    art, _ = converted
    env = dict(os.environ, PYTHONPATH=ROOT)
    whole = str(tmp_path / "whole")
    r = subprocess.run(_args(art, whole, 400, 50), cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    killed = str(tmp_path / "killed")
    p = subprocess.Popen(_args(art, killed, 400, 50), cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    deadline = time.time() + 300
    while len(_shard_files(killed)) < 3 and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)  # the driver and its workers, mid-run
    p.wait()
    kept = _shard_files(killed)
    assert 3 <= len(kept) < 16, len(kept)  # 2 models x 8 shards: some, not all, finished
    r = subprocess.run(_args(art, killed, 400, 50), cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"{len(kept)} of 16 unit(s) already done" in r.stdout
    assert _rows(killed) == _rows(whole)
    # the killed run's work folder was swept by the rerun: nothing stale is left
    assert not [n for n in os.listdir(killed) if n.startswith(".work-")]
    acc = [json.loads(x) for x in open(os.path.join(killed, "accuracy.jsonl"))]
    ref = [json.loads(x) for x in open(os.path.join(whole, "accuracy.jsonl"))]
    assert [(a.get("drift") or {}).get("top1_delta_points") for a in acc] == \
        [(a.get("drift") or {}).get("top1_delta_points") for a in ref]


def test_local_and_ray_backends_write_the_same_records(converted, tmp_path):
    pytest.importorskip("ray", reason="pip install .[ray]")
    art, _ = converted
    env = dict(os.environ, PYTHONPATH=ROOT)
    outs = {}
    for backend in ("local", "ray"):
        out = str(tmp_path / backend)
        r = subprocess.run(_args(art, out, 200, 100, "--backend", backend), cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, (backend, r.stderr[-2000:])
        outs[backend] = out
    assert _rows(outs["local"]) == _rows(outs["ray"])
    local, ray = _shard_files(outs["local"]), _shard_files(outs["ray"])
    assert len(local) == len(ray) == 4
    for a, b in zip(local, ray):  # the shard files themselves, byte for byte
        assert open(a, "rb").read() == open(b, "rb").read()


def test_streamed_1_crop_keeps_no_whole_set_array_and_small_records(converted, tmp_path,
                                                                    monkeypatch):
    """A set above the size the batched path is for is sharded without being asked (ImageNet's
    validation set: 50,000 x 1 crop > 20,000; here the limits are scaled down to 300 images)."""
    from edge_eval import harness

    monkeypatch.setattr(harness, "AUTO_SHARD_INPUTS", 250)
    monkeypatch.setattr(harness, "SHARD_INPUTS", 100)
    art, _ = converted
    out = str(tmp_path / "o")
    said = []
    rows = harness.evaluate(art, out, reference=os.path.join(art, "tiny_test_fp32.tflite"),
                            data_source="fashion_mnist", images=300, workers=2,
                            only=["static_wi8_ai8_uint8io"], bootstrap_rounds=100,
                            log=lambda *a, **k: said.append(" ".join(map(str, a))))
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert [r["shard_size"] for r in rows] == [100, 100]
    assert "300 images x 1 crop(s): evaluated in shards of 100 images" in said[0]
    # a progress line per artifact as its units end: images done, rate, time left
    assert any(line.startswith("[shards] tiny_test_fp32.tflite: 300/300 images,")
               for line in said)
    big = [os.path.join(r, n) for r, _, ns in os.walk(out) for n in ns
           if os.path.getsize(os.path.join(r, n)) > 2_000_000]
    assert not big, big  # 300 images x 75 x 75 x 3 float32 would be 20 MB
    assert rows[0]["eval_set"]["record_bytes_per_image"] <= 200
    assert rows[1]["drift"]["paired_images"] == 300


def test_a_torn_shard_file_is_redone_and_a_whole_one_is_kept(tmp_path):
    """Resume trusts only shard files that read whole: a half-written one (a kill during a
    write that bypassed the rename, a full disk) is removed and its unit planned again."""
    from contract import predictions
    from edge_eval import shards

    root = str(tmp_path)
    art = {"artifact": "m.tflite", "sha256": "ab" * 32, "job": None}
    first = shards.plan_units([art], 250, 100, root)
    assert [(u.start, u.stop) for u in first] == [(0, 100), (100, 200), (200, 250)]
    head = predictions.header("m.tflite", 3, "litert", "xnnpack", "xnnpack", True)
    u0, u1 = first[0], first[1]
    os.makedirs(os.path.dirname(u0.final))
    predictions.write(u0.final, head, [0], ["a" * 20], [1], [[1, 0, 2]], [[0.7, 0.2, 0.1]])
    whole = open(u0.final).read()
    with open(u1.final, "w") as f:
        f.write(whole[: len(whole) // 2])  # torn in the middle of a line
    again = shards.plan_units([art], 250, 100, root)
    assert [u.shard for u in again] == [1, 2]
    assert os.path.isfile(u0.final) and not os.path.exists(u1.final)
    with pytest.raises(shards.ShardError, match="shard-size"):
        shards.plan_units([art], 250, 0, root)


_FAKE_WORKER = r'''
import json, sys, time
job = json.load(open(sys.argv[1]))
mode, n = job["model"].split(":")
for k in range(1, int(n) + 1):
    with open(job["progress"], "w") as f:
        f.write(str(k))
    if mode == "stall" and k == 2:
        time.sleep(3600)  # hangs: a wedged delegate, a dead network mount
    time.sleep(0.3)
with open(job["result"], "w") as f:
    json.dump({"status": "ok", "seconds": 1.0}, f)
'''


@pytest.mark.parametrize("mode,ok", [("slow", True), ("stall", False)])
def test_a_worker_is_stopped_when_its_image_count_stops_moving_not_when_it_is_slow(
        tmp_path, monkeypatch, mode, ok):
    """The stall detector replaces the per-artifact wall-clock timeout: a unit that keeps
    counting images runs however long it takes (here 2.4 s against a 1.5 s stall limit), one whose
    count stops is stopped within the limit and says at which image."""
    from contract import jobs

    (tmp_path / "fake_unit_worker.py").write_text(_FAKE_WORKER)
    monkeypatch.setattr(jobs.WorkerJob, "entry", property(lambda self: "fake_unit_worker"))
    seen = []
    job = jobs.WorkerJob("predict", f"{mode}:8", progress=str(tmp_path / "progress"))
    t = time.perf_counter()
    res = jobs.run(job, None, str(tmp_path), env=dict(os.environ, PYTHONPATH=str(tmp_path)),
                   stall_s=1.5, on_progress=seen.append)
    took = time.perf_counter() - t
    assert res.ok is ok, res.error
    if ok:
        assert took > 2.2 and seen == sorted(seen) and seen[-1] >= 6
    else:
        assert res.error == "no progress for 1.5 s (stalled at image 2)"
        assert took < 6


def test_a_group_decodes_each_image_once_and_one_bad_model_fails_alone(converted, tmp_path,
                                                                      monkeypatch):
    """The models of one shard run in one worker (edge_eval.worker.stream): each image is
    decoded and cropped once for all of them, each model's answers are the bytes it gives run
    alone, and a model that does not load fails its own member, not the group."""
    import numpy as np

    from contract.jobs import WorkerJob
    from edge_eval import preprocess, worker

    art, manifest = converted
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 40, 36, 3), np.uint8)  # colour, not the model's size
    items = preprocess.Items("array", array=images, labels=np.arange(12) % 10)
    path = str(tmp_path / "items.json")
    with open(path, "w") as f:
        json.dump(items.to_json(str(tmp_path / "px.npy")), f)
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"TFL3" + bytes(range(200)))
    models = [os.path.join(art, "tiny_test_fp32.tflite"), str(bad),
              os.path.join(art, "tiny_test_static_wi8_ai8.tflite")]
    base = WorkerJob("predict", "", kind="tflite", threads=1, batch_size=1, items=path,
                     spec=manifest["preprocessing"], scheme=10)
    jobs = [base.replace(model=m, output=str(tmp_path / f"g{k}.npy"))
            for k, m in enumerate(models)]
    loads = []
    real = preprocess.Items.load
    monkeypatch.setattr(preprocess.Items, "load",
                        lambda self, i, c=3: loads.append(i) or real(self, i, c))
    res = worker.predict(base.replace(model="group", group=[j.to_json() for j in jobs],
                                      progress=str(tmp_path / "progress")),
                         worker.tflite_runner)
    assert loads == list(range(12))  # once per image, for all three models
    assert [m["status"] for m in res.members] == ["ok", "failed", "ok"] and not res.ok
    assert res.members[1]["error"] == "ValueError: The model is not a valid Flatbuffer buffer"
    assert open(tmp_path / "progress").read() == "12"
    for k in (0, 2):  # alone, the same bytes
        alone = str(tmp_path / f"a{k}.npy")
        assert worker.predict(jobs[k].replace(output=alone), worker.tflite_runner).ok
        assert np.load(alone).tobytes() == np.load(jobs[k].output).tobytes()


def test_the_sets_check_in_several_processes_settles_the_same_set(tmp_path, monkeypatch):
    """A streamed set's one check of every image runs in ``workers`` processes over ranges:
    the same kept positions, labels, identities and skip messages, in order."""
    import cv2
    import numpy as np

    from edge_eval import harness, preprocess

    rng = np.random.default_rng(1)
    files = []
    for i in range(23):
        path = str(tmp_path / f"{i:02d}.jpg")
        cv2.imwrite(path, rng.integers(0, 256, (20 + i, 30, 3), np.uint8))
        files.append(path)
    for bad in (4, 17):  # truncated: no end-of-image marker
        data = open(files[bad], "rb").read()
        open(files[bad], "wb").write(data[: len(data) // 2])
    items = preprocess.Items("files", files=files, labels=[i % 3 for i in range(23)])
    monkeypatch.setattr(harness, "CHECK_PARALLEL_MIN", 10)
    got = {}
    for workers in (1, 2):
        ids = []
        keep, labels, skipped = harness._checked(items, ids, workers)
        got[workers] = (keep, labels.tolist(), ids, skipped)
    assert got[1] == got[2]
    assert got[1][0] == [i for i in range(23) if i not in (4, 17)]
    assert len(got[1][3]) == 2 and "04.jpg" in got[1][3][0] and "17.jpg" in got[1][3][1]


def test_a_shards_models_share_a_worker_by_kind_and_at_most_eight(tmp_path):
    """Units of one shard go to one worker when one loader runs them all (every .tflite; the
    float Keras reference and a Core ML package each apart), at most GROUP_MAX at a time."""
    from contract.jobs import WorkerJob
    from edge_eval import shards

    def unit(name, kind, start=0):
        return shards.Unit(name, start // 10, start, start + 10,
                           WorkerJob("predict", name, kind=kind), str(tmp_path / name))

    units = [unit(f"m{i}.tflite", "tflite") for i in range(10)] + [
        unit("ref.keras", "keras"), unit("a.mlpackage", "coreml"), unit("m0.tflite", "tflite", 10)]
    tasks = shards.tasks_of(units)
    kinds = [(t[0].start, t[0].job.kind, len(t)) for t in tasks]
    assert sorted(kinds) == [(0, "coreml", 1), (0, "keras", 1), (0, "tflite", 2),
                             (0, "tflite", 8), (10, "tflite", 1)]
    assert [t[0].start for t in tasks] == sorted(t[0].start for t in tasks)
