"""The main job's stage runner (skipping, failing, blocking) and the recipe choice's rules.

The runner tests use small Python commands as stages (no TensorFlow): what is tested is the
bookkeeping, which is the same for a 6-minute training stage."""
import json
import os
import sys

import pytest

from pipeline import choose, job
from pipeline.runner import Stage, fingerprint, load_state, run_stages

WRITE = "import sys; open(sys.argv[1], 'w').write(open(sys.argv[2]).read() + sys.argv[3])"


def _stage(name, src, dst, tag="", after=(), config=None, fail=False):
    code = "import sys; sys.exit(3)" if fail else WRITE
    return Stage(name, [sys.executable, "-c", code, dst, src, tag], inputs=[src], outputs=[dst],
                 after=list(after), config=config or {})


def _chain(tmp_path, tag_b="b", fail_b=False):
    if not (tmp_path / "data.txt").exists():
        (tmp_path / "data.txt").write_text("data")
    return [_stage("a", "data.txt", "a.txt", "a"),
            _stage("b", "a.txt", "b.txt", tag_b, after=["a"], fail=fail_b),
            _stage("c", "b.txt", "c.txt", "c", after=["b"]),
            _stage("d", "a.txt", "d.txt", "d", after=["a"])]


def _run(tmp_path, stages, **kw):
    logs = []
    rows = run_stages(stages, str(tmp_path / "state.json"), cwd=str(tmp_path),
                      log=lambda *a, **k: logs.append(" ".join(map(str, a))), **kw)
    return {r["stage"]: r["status"] for r in rows}, logs


def test_second_run_skips_everything(tmp_path):
    assert _run(tmp_path, _chain(tmp_path))[0] == dict(a="ok", b="ok", c="ok", d="ok")
    assert (tmp_path / "c.txt").read_text() == "dataabc"
    mtime = os.stat(tmp_path / "c.txt").st_mtime_ns
    status, logs = _run(tmp_path, _chain(tmp_path))
    assert status == dict(a="skipped", b="skipped", c="skipped", d="skipped")
    assert os.stat(tmp_path / "c.txt").st_mtime_ns == mtime
    assert any("up to date" in line for line in logs)
    # the job's own record: the rerun ran nothing; the from-scratch run is kept beside it
    st = load_state(str(tmp_path / "state.json"))
    first, rerun = st["last_job_every_stage_ran"], st["last_job"]
    assert first["ran"] == ["a", "b", "c", "d"] and rerun["ran"] == []
    assert set(rerun["statuses"].values()) == {"skipped"}
    assert rerun["started"] >= first["finished"] and rerun["wall_s"] >= 0


@pytest.mark.parametrize("change, expect", [
    # the input data changes: everything downstream runs again
    ("data", dict(a="ok", b="ok", c="ok", d="ok")),
    # b's command changes: b runs, c reads b's new output and runs, a and d are skipped
    ("argv", dict(a="skipped", b="ok", c="ok", d="skipped")),
    # an output is deleted: its stage runs; c's input is back as it was, so c is skipped
    ("delete", dict(a="skipped", b="ok", c="skipped", d="skipped")),
    # the stage's config changes
    ("config", dict(a="skipped", b="skipped", c="skipped", d="ok")),
])
def test_reruns_exactly_what_changed(tmp_path, change, expect):
    _run(tmp_path, _chain(tmp_path))
    stages = _chain(tmp_path, tag_b="B" if change == "argv" else "b")
    if change == "data":
        (tmp_path / "data.txt").write_text("new data")
    elif change == "delete":
        os.remove(tmp_path / "b.txt")
    elif change == "config":
        stages[3].config = {"threads": 4}
    assert _run(tmp_path, stages)[0] == expect


def test_failed_stage_blocks_dependents_and_keeps_finished_outputs(tmp_path):
    _run(tmp_path, _chain(tmp_path))
    before = {n: (tmp_path / n).read_text() for n in ("a.txt", "b.txt", "c.txt", "d.txt")}
    (tmp_path / "data.txt").write_text("changed")
    status, logs = _run(tmp_path, _chain(tmp_path, fail_b=True))
    assert status == dict(a="ok", b="failed", c="blocked", d="ok")
    # finished stages' outputs are the new ones, the failed/blocked stages' are untouched
    assert (tmp_path / "a.txt").read_text() == "changeda"
    assert (tmp_path / "d.txt").read_text() == "changedad"
    assert (tmp_path / "b.txt").read_text() == before["b.txt"]
    assert (tmp_path / "c.txt").read_text() == before["c.txt"]
    state = load_state(str(tmp_path / "state.json"))["stages"]
    assert state["b"]["status"] == "failed" and state["b"]["exit_code"] == 3
    assert any("blocked" in line and "needs b" in line for line in logs)
    # fixed: only the failed stage and what it blocked run again
    assert _run(tmp_path, _chain(tmp_path))[0] == dict(a="skipped", b="ok", c="ok", d="skipped")


def test_stage_that_writes_nothing_fails(tmp_path):
    (tmp_path / "data.txt").write_text("x")
    s = Stage("quiet", [sys.executable, "-c", "pass"], inputs=["data.txt"],
              outputs=["never.txt"])
    status, _ = _run(tmp_path, [s])
    assert status == {"quiet": "failed"}
    assert "never.txt" in load_state(str(tmp_path / "state.json"))["stages"]["quiet"]["error"]


def test_partial_stage_goes_on_but_reruns(tmp_path):
    (tmp_path / "data.txt").write_text("x")
    code = "import sys; open('out.txt', 'w').write('some'); sys.exit(1)"
    s = Stage("convert", [sys.executable, "-c", code], inputs=["data.txt"], outputs=["out.txt"],
              partial_codes=(1,))
    t = _stage("eval", "out.txt", "eval.txt", after=["convert"])
    assert _run(tmp_path, [s, t])[0] == dict(convert="partial", eval="ok")
    assert _run(tmp_path, [s, t])[0] == dict(convert="partial", eval="skipped")
    # an artifact that failed its check is not written: the stage is still partial, and what
    # needs the stage goes on with what it wrote (the manifest lists the failure); that is
    # the same out.txt as before, so eval is up to date
    s.outputs = ["out.txt", "failed_artifact.tflite"]
    status, _ = _run(tmp_path, [s, t])
    assert status == dict(convert="partial", eval="skipped")


SPAN = ("import sys, time; t0 = time.time(); print('working'); time.sleep(float(sys.argv[2]));"
        " open(sys.argv[1], 'w').write(f'{t0} {time.time()}'); sys.exit(int(sys.argv[3]))")


def _span(name, seconds, after=(), exclusive=False, rc=0):
    return Stage(name, [sys.executable, "-c", SPAN, f"{name}.span", str(seconds), str(rc)],
                 outputs=[f"{name}.span"], after=list(after), exclusive=exclusive)


def _overlap(tmp_path, x, y):
    (a0, a1), (b0, b1) = [map(float, (tmp_path / f"{n}.span").read_text().split()) for n in (x, y)]
    return min(a1, b1) - max(a0, b0) > 0


@pytest.mark.parametrize("parallel, exclusive, overlaps", [
    (2, False, True),   # b does not need a: it runs beside it
    (1, False, False),  # one at a time
    (2, True, False),   # b must run alone
])
def test_independent_stages_run_side_by_side(tmp_path, parallel, exclusive, overlaps, capsys):
    stages = [_span("a", 1.0), _span("b", 0.5, exclusive=exclusive), _span("c", 0.1, after=["a"])]
    status, logs = _run(tmp_path, stages, parallel=parallel)
    assert status == dict(a="ok", b="ok", c="ok")
    assert _overlap(tmp_path, "a", "b") == overlaps
    assert not _overlap(tmp_path, "a", "c")  # c needs a's output
    if parallel > 1:  # side by side, every line says which stage wrote it
        out = capsys.readouterr().out
        assert "[a] working" in out and "[b] working" in out
    rows = load_state(str(tmp_path / "state.json"))["stages"]
    assert rows["a"]["wall_s"] >= 1.0 and rows["b"]["wall_s"] >= 0.5


def test_a_stage_is_keyed_when_it_starts_not_while_it_waits(tmp_path):
    """c needs only a, but reads what the exclusive stage b writes: c waits for b to finish,
    and must be keyed on b's output as c then finds it, or the next run would not skip c."""
    code = ("import sys, time; time.sleep(float(sys.argv[3])); "
            "open(sys.argv[1], 'w').write(open(sys.argv[2]).read() + '+')")
    (tmp_path / "data.txt").write_text("d")

    def stages():
        return [Stage("a", [sys.executable, "-c", code, "a.txt", "data.txt", "0.3"],
                      inputs=["data.txt"], outputs=["a.txt"]),
                Stage("b", [sys.executable, "-c", code, "b.txt", "a.txt", "0.5"],
                      inputs=["a.txt"], outputs=["b.txt"], after=["a"], exclusive=True),
                Stage("c", [sys.executable, "-c", code, "c.txt", "b.txt", "0"],
                      inputs=["a.txt", "b.txt"], outputs=["c.txt"], after=["a"])]
    (tmp_path / "b.txt").write_text("stale")  # what c would have hashed while b ran
    assert _run(tmp_path, stages(), parallel=2)[0] == dict(a="ok", b="ok", c="ok")
    assert (tmp_path / "c.txt").read_text() == "d+++"
    assert _run(tmp_path, stages(), parallel=2)[0] == dict(a="skipped", b="skipped",
                                                           c="skipped")


def test_failure_beside_a_running_stage_blocks_only_its_dependents(tmp_path):
    stages = [_span("a", 0.8), _span("b", 0.1, rc=5), _span("c", 0.1, after=["b"]),
              _span("d", 0.1, after=["a"])]
    status, logs = _run(tmp_path, stages, parallel=2)
    assert status == dict(a="ok", b="failed", c="blocked", d="ok")
    assert _overlap(tmp_path, "a", "b")
    assert load_state(str(tmp_path / "state.json"))["stages"]["b"]["exit_code"] == 5


@pytest.mark.parametrize("line, noise", [
    ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
     True),
    ("I0000 00:00:1796175901.865101   24621 port.cc:153] oneDNN custom operations are on. You "
     "may see slightly different numerical results\n", True),
    ("I0000 00:00:1796175901.865481   24621 cudart_stub.cc:31] Could not find cuda drivers on "
     "your machine, GPU will not be used.\n", True),
    ("E0000 00:00:1796175905.039236   24621 cuda_platform.cc:52] failed call to cuInit: "
     "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n", True),
    ("E0000 00:00:1796179266.436594   11231 util.cc:131] oneDNN supports DT_HALF only on "
     "platforms with AVX-512. Falling back to the default Eigen-based implementation\n", True),
    # what users must still see
    ("W0000 00:00:1796175905.1   24621 tf_tfl_flatbuffer_helpers.cc:365] Ignored "
     "output_format.\n", False),
    ("E0000 00:00:1796175905.2   24621 op_level_cost_estimator.cc:1] out of memory\n", False),
    ("[convert] fp16: max |p - p_source| = 0.002\n", False),
    ("Traceback (most recent call last):\n", False),
    ("WARNING:tensorflow:Callback method `on_train_batch_end` is slow\n", False),
])
def test_tensorflow_start_up_noise_is_dropped_and_real_lines_kept(line, noise):
    from pipeline.runner import is_noise

    assert is_noise(line) == noise


def test_stage_output_reaches_the_user_without_noise(tmp_path, capsys):
    code = ("import sys; print('I0000 00:00:1.5   7 port.cc:153] oneDNN custom operations are on');"
            "print('real line'); print('W0000 00:00:1.5   7 x.cc:1] a real warning', "
            "file=sys.stderr); open('o.txt', 'w').write('x')")
    for parallel in (1, 2):
        s = Stage("s", [sys.executable, "-c", code], outputs=["o.txt"])
        assert _run(tmp_path, [s], parallel=parallel, force=["s"])[0] == {"s": "ok"}
        out = capsys.readouterr().out
        head = "[s] " if parallel > 1 else ""
        assert f"{head}real line" in out and f"{head}W0000" in out and "oneDNN" not in out


def test_bad_stage_graph_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not earlier stages"):
        run_stages([_stage("a", "x", "y", after=["b"]), _stage("b", "x", "z")],
                   str(tmp_path / "s.json"), cwd=str(tmp_path))


@pytest.mark.parametrize("config_name, path, qat, want", [
    ("inception_v3_fashion_mnist_demo", "runs/demo/export", False, "inception_v3_fashion_mnist_demo"),
    ("inception_v3_fashion_mnist_demo", "runs/demo_qat/export", True,
     "inception_v3_fashion_mnist_demo_qat"),
    ("tiny_test_qat", "runs/tiny_qat/export", True, "tiny_test_qat"),  # not _qat_qat
    (None, "runs/demo/export/", False, "demo"),  # an export folder: its run's name
    (None, "models/my_model.keras", False, "my_model"),
    (None, "/data/saved_models/flowers", False, "flowers"),
])
def test_artifact_names_the_job_predicts_are_the_ones_convert_writes(config_name, path, qat, want):
    from contract.manifest import source_name
    from train.source import Source

    assert source_name(config_name, path, qat) == want
    src = Source(path, "keras", path, None, [], {"name": config_name} if config_name else None,
                 "0", is_qat=qat)
    assert src.name == want


@pytest.mark.parametrize("config_name, path", [
    ("../escaped", "runs/x/export"), ("/abs/olute", "runs/x/export"), ("a/b", "m.keras"),
    ("..", "m.keras"), (None, "/data/../.."), ("", "runs/x y/export"), (None, "x" * 200 + ".h5"),
])
def test_names_from_inputs_never_choose_where_files_go(config_name, path):
    from contract.manifest import source_name

    with pytest.raises(ValueError, match="cannot be used in a file name"):
        source_name(config_name, path)


def test_fingerprint_is_content_based(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "f").write_text("1")
    h = fingerprint(str(d))
    os.utime(d / "f", (0, 0))
    assert fingerprint(str(d)) == h
    (d / "f").write_text("2")
    assert fingerprint(str(d)) != h
    assert fingerprint(str(tmp_path / "missing")) is None


# --------------------------------------------------------------------------------------------
# the job config
# --------------------------------------------------------------------------------------------
def test_job_takes_user_config_without_code(tmp_path):
    f = tmp_path / "job.yaml"
    f.write_text("name: mine\ntrain_sets: [data.path=/data/shoes]\nrecipes: [fp32, fp16]\n"
                 "budget_points: 0.5\n")
    j = job.resolve("fashion_mnist_demo", str(f), ("goal=fastest", "qat=false"))
    assert (j.name, j.recipes, j.budget_points, j.goal, j.qat) == (
        "mine", ["fp32", "fp16"], 0.5, "fastest", False)
    stages = {s.name: s for s in job.plan(j)}
    assert "qat" not in stages and "convert_qat" not in stages
    assert stages["train"].argv[-2:] == ["--set", "data.path=/data/shoes"]
    assert stages["convert"].outputs == [  # + the Edge TPU-ready model (edgetpu: true)
        "artifacts/mine/inception_v3_fashion_mnist_demo_fp32.tflite",
        "artifacts/mine/inception_v3_fashion_mnist_demo_fp16.tflite",
        "artifacts/mine/inception_v3_fashion_mnist_demo_static_wi8_ai8_uint8io.tflite"]
    assert "tflite,edgetpu" in stages["convert"].argv
    assert stages["convert_coreml"].outputs[0].endswith("demo_coreml_fp16.mlpackage")
    assert "--goal" in stages["choose"].argv and "fastest" in stages["choose"].argv


@pytest.mark.parametrize("sets, error", [
    (("colour=red",), "unknown job key 'colour'"),
    (("goal=cheapest",), "goal must be smallest or fastest"),
    (("eval_runtime=tflite",), "eval_runtime must be auto, litert or mediapipe"),
    (("budget_points=-1",), "budget_points must be >= 0"),
    (("model=/nonexistent/model.keras",), "does not exist"),
    (("eval_workers=0",), "must be >= 1"),
    (("parallel_stages=0",), "must be >= 1"),
    (("name=../escaped",), "cannot be used in a file name"),
    (("name=/tmp/abs",), "cannot be used in a file name"),
])
def test_job_bad_input(sets, error):
    with pytest.raises(ValueError, match=error):
        job.plan(job.resolve("fashion_mnist_demo", None, sets))


def test_the_demo_plan_overlaps_only_what_may_overlap():
    """QAT may run beside the float model's conversions (different folders); the stages that
    write the artifacts' manifest follow one another; training, evaluation, the benchmark and
    the choice run alone; evaluation splits the threads between its workers."""
    j = job.resolve("fashion_mnist_demo")
    stages = {s.name: s for s in job.plan(j)}
    assert {n for n, s in stages.items() if s.exclusive} == {
        "train", "evaluate", "evaluate_holdout", "benchmark", "choose"}
    assert stages["qat"].after == ["train"] and stages["convert"].after == ["train"]
    # every conversion writes artifacts/demo/manifest.json: each runs after the earlier ones
    conv = [n for n in stages if n.startswith("convert")]
    for i, n in enumerate(conv[1:], 1):
        assert conv[i - 1] in stages[n].after, n
    argv = stages["evaluate"].argv
    assert argv[argv.index("--workers") + 1] == "2" and argv[argv.index("--threads") + 1] == "1"
    # the choice decides on held-out images, never on the test split the report quotes
    held = stages["evaluate_holdout"].argv
    assert held[held.index("--split") + 1] == "holdout" and "--split" not in argv
    ch = stages["choose"].argv
    assert ch[ch.index("--select-on") + 1] == held[held.index("--out") + 1]
    assert "evaluate_holdout" in stages["choose"].after
    assert j.parallel_stages == 2


def test_job_with_a_trained_model_has_no_training_stage(tmp_path):
    m = tmp_path / "export"
    m.mkdir()
    (m / "config.json").write_text(json.dumps({"name": "their_model"}))
    stages = {s.name: s for s in job.plan(job.resolve("fashion_mnist_demo", None,
                                                      (f"model={m}", "qat=false")))}
    assert "train" not in stages
    assert stages["convert"].outputs[0].endswith("their_model_fp32.tflite")


# --------------------------------------------------------------------------------------------
# the choice rules, table-driven
# --------------------------------------------------------------------------------------------
def _c(name, mb, drift, p50, agree=0.99, full_integer=False, weights="float32",
       activations="float32", float_ops=120):
    return {"artifact": name, "recipe": name, "bytes": int(mb * 1e6), "drift_points": drift,
            "p50_ms": p50, "agreement": agree, "full_integer": full_integer,
            "float_blocks": None, "top1": 0.9, "target": "tflite", "weights": weights,
            "activations": activations, "float_ops": float_ops}


CANDS = [_c("fp32", 5.5, 0.0, 0.27, 1.0), _c("fp16", 2.8, -0.01, 0.30, 0.999, weights="float16"),
         _c("dynamic", 1.50, -0.05, 0.55, 0.99, weights="int8"),
         _c("int8", 1.55, -0.12, 0.35, 0.98, True, "int8", "int8", 0),
         # full int8 whose average pools and softmax run as float islands (XNNPACK's graph)
         _c("int8_islands", 1.54, -0.11, 0.30, 0.98, True, "int8", "int8", 30),
         _c("int8_sel", 1.60, -0.02, 0.40, 0.99, True, "int8", "int8", 6),
         _c("int16", 1.62, 0.0, 2.0, 0.99, False, "int8", "int16", 0)]


@pytest.mark.parametrize("budget, goal, agree, integer_only, target, expect", [
    (0.3, "smallest", None, False, None, "dynamic"),
    (0.3, "fastest", None, False, None, "fp32"),
    (0.3, "fastest", None, False, "cpu", "fp32"),
    # integer-only is judged on the op list: the islands model is smaller but computes in float
    (0.3, "smallest", None, True, None, "int8"),
    (0.3, "smallest", None, False, "npu", "int8"),
    (0.3, "fastest", None, False, "npu", "int8"),
    # a selective model keeps blocks in float: never integer-only; int16 activations are
    (0.1, "smallest", None, True, None, "int16"),
    (0.1, "smallest", None, False, "edgetpu", None),  # the Edge TPU runs 8-bit graphs only
    (0.3, "smallest", None, False, "edgetpu", "int8"),
    (0.3, "smallest", None, False, "gpu", "fp16"),  # the GPU runs float graphs
    (0.005, "smallest", None, False, "gpu", "fp32"),
    (0.03, "smallest", None, False, None, "int8_sel"),
    (0.015, "smallest", None, False, None, "int16"),
    (0.015, "smallest", 0.995, False, None, "fp16"),  # agreement rules out the int models
    (0.0, "smallest", None, True, None, "int16"),
    (0.0, "smallest", None, False, "edgetpu", None),  # nothing 8-bit meets a zero budget
])
def test_pick(budget, goal, agree, integer_only, target, expect):
    got = choose.pick(CANDS, budget, goal, agree, integer_only, target)
    assert (got and got["artifact"]) == expect


def test_a_device_row_decides_and_a_flagged_one_is_not_admitted():
    """With a phone's rows for the target's accelerator, the phone's drift and latency are the
    candidate's; a row not fully accelerated there is not admitted."""
    from contract import recipes, records

    def acc(art, recipe, drift, **kw):
        r = records.new_record("accuracy", artifact=art, recipe=recipe, target="tflite",
                               bytes=1000, **kw)
        r["recipe_spec"] = recipes.fields(recipes.get_recipe(recipe))
        r.update(accuracy={"top1": 0.9, "top5": 1.0}, drift={"top1_delta_points": drift,
                                                             "argmax_agreement": 0.99})
        return r

    host = [acc("fp16.tflite", "fp16", 0.0), acc("fp32.tflite", "fp32", 0.0)]
    phone = acc("fp16.tflite", "fp16", -2.0, delegate="gpu",
                device={"kind": "android", "name": "Pixel"})
    phone["accelerator"] = {"requested": "gpu", "used": "gpu", "fully_accelerated": True,
                            "flagged": False}
    cands = {c["artifact"]: c for c in choose.candidates(host + [phone], "gpu")}
    assert cands["fp16.tflite"]["drift_points"] == -2.0
    assert cands["fp16.tflite"]["numbers_from"] == "Pixel gpu"
    assert cands["fp32.tflite"]["numbers_from"] == "host"
    assert choose.pick(list(cands.values()), 0.3, "smallest", device="gpu")["artifact"] == \
        "fp32.tflite"
    phone["drift"]["top1_delta_points"] = 0.0
    phone["accelerator"].update(fully_accelerated=False, flagged=True,
                                fallback_reason="3 ops on the CPU")
    cands = choose.candidates(host + [phone], "gpu")
    flagged = next(c for c in cands if c["artifact"] == "fp16.tflite")
    assert flagged["not_fully_accelerated"] == "3 ops on the CPU"
    assert choose.pick(cands, 0.3, "smallest", device="gpu")["artifact"] == "fp32.tflite"
    # the CPU target is not judged by the phone's GPU row
    assert {c["numbers_from"] for c in choose.candidates(host + [phone], "cpu")} == {"host"}
    # a board's CPU row where XNNPACK left int8 ops to the built-in kernels is still a CPU
    # run (its latency says what that costs); a model the board could not load is refused
    board = dict(phone, delegate="xnnpack", device={"kind": "board", "name": "pi"},
                 accelerator=dict(phone["accelerator"], requested="xnnpack", used="xnnpack"))
    cands = choose.candidates(host + [board], "cpu")
    assert not any(c.get("not_fully_accelerated") for c in cands)
    assert {c["numbers_from"] for c in cands} == {"host", "pi xnnpack"}
    broken = dict(board, artifact="fp32.tflite", status="failed", drift=None,
                  error="Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'")
    smaller_fp32 = [host[0], dict(host[1], bytes=900)]  # the smallest, were it to run
    assert choose.pick(choose.candidates(smaller_fp32, "cpu"), 0.3, "smallest",
                       device="cpu")["artifact"] == "fp32.tflite"
    cands = choose.candidates(smaller_fp32 + [broken], "cpu")
    fp32 = next(c for c in cands if c["artifact"] == "fp32.tflite")
    assert fp32["fails_on_device"].startswith("it failed on pi xnnpack: Didn't find op")
    assert choose.pick(cands, 0.3, "smallest", device="cpu")["artifact"] == "fp16.tflite"


def test_pick_fastest_ignores_unbenchmarked():
    cands = [_c("a", 1.0, 0.0, None), _c("b", 2.0, 0.0, 0.5)]
    assert choose.pick(cands, 0.3, "fastest")["artifact"] == "b"


# --------------------------------------------------------------------------------------------
# the selective steps: the decision rule on measurements known by construction
# --------------------------------------------------------------------------------------------
ORDER = [{"block": f"mixed{i}", "mean_rmse_over_scale": e} for i, e in ((7, 3.0), (3, 2.0),
                                                                         (9, 1.0))]


def _measure(drifts):
    """A stand-in for convert + evaluate + benchmark: step k's drift is drifts[k - 1] (None:
    the step's conversion fails)."""
    seen = []

    def measure(blocks):
        seen.append(list(blocks))
        d = drifts[len(seen) - 1]
        if d is None:
            return {"error": "conversion failed: made to fail"}
        c = _c("int8+float:" + ",".join(blocks), 1.55 + 0.1 * len(blocks), d, 0.4, 0.99, True)
        return dict(c, file=f"/choice/{c['artifact']}.tflite")
    return measure, seen


@pytest.mark.parametrize("drifts, budget, max_steps, want_steps, want_fit", [
    ([-0.30, -0.04, -0.01], 0.05, 3, 2, 2),  # the second step fits: the search stops there
    ([-0.01, -0.005], 0.05, 3, 1, 1),  # the worst block alone is enough
    ([-0.30, -0.20, -0.10], 0.05, 3, 3, None),  # nothing fits: every step is tried
    ([-0.30, -0.20, -0.10], 0.05, 2, 2, None),  # ... up to max_steps
    ([None, -0.02], 0.05, 3, 2, 2),  # a failed step is recorded and the next one tried
    ([-0.05], 0.05, 3, 1, 1),  # exactly on the budget fits
])
def test_selective_search_keeps_the_worst_blocks_float_until_one_fits(
        drifts, budget, max_steps, want_steps, want_fit):
    measure, seen = _measure(drifts)
    steps = choose.selective_search(ORDER, budget, None, max_steps, measure, log=lambda *a, **k: None)
    assert len(steps) == want_steps
    # worst block first, one more block each step
    assert seen == [["mixed7"], ["mixed7", "mixed3"], ["mixed7", "mixed3", "mixed9"]][:want_steps]
    assert [s["float_blocks"] for s in steps] == seen
    fits = [s["step"] for s in steps if s["meets_budget"]]
    assert fits == ([want_fit] if want_fit else [])
    for s, d in zip(steps, drifts):
        assert s["status"] == ("failed" if d is None else "ok")


def _records_dir(tmp_path, int8_drift):
    """An artifacts folder and results whose drifts are known: float 90 %, fp32 exact, fp16
    -0.01, full int8 ``int8_drift`` points."""
    from contract import records

    art, res = tmp_path / "art", tmp_path / "res"
    art.mkdir()
    res.mkdir()
    (art / "float.keras").write_text("a stand-in: prepare_steps is replaced")
    # the op-list counts convert/ records: int8.tflite is integer-only (no float island)
    (art / "manifest.json").write_text(json.dumps({
        "artifacts": [{"file": "int8.tflite", "float_ops": 0},
                      {"file": "fp32.tflite", "float_ops": 120},
                      {"file": "fp16.tflite", "float_ops": 300}],
        "sources": [{"path": str(art / "float.keras"), "qat": False}]}))

    from contract.recipes import fields, parse

    def acc(name, recipe, target, mb, drift, agree):
        # as the harness writes them: the recipe's structured fields beside its name
        return records.new_record(
            "accuracy", artifact=name, recipe=recipe, target=target, bytes=int(mb * 1e6),
            recipe_spec=fields(parse(recipe)) if recipe else None,
            runtime="ai_edge_litert", delegate="xnnpack", threads=2,
            accuracy={"top1": 0.9 + (drift or 0) / 100, "top5": 1.0, "examples": 10000},
            drift=None if drift is None else {"top1_delta_points": drift,
                                              "argmax_agreement": agree})

    rows = [acc("float", None, "keras", 22.0, None, None),
            acc("fp32.tflite", "fp32", "tflite", 5.5, 0.0, 1.0),
            acc("fp16.tflite", "fp16", "tflite", 2.8, -0.01, 0.999),
            acc("int8.tflite", "static_wi8_ai8", "tflite", 1.55, int8_drift, 0.98)]
    rows += [records.new_record("latency", artifact=n, runtime="ai_edge_litert",
                                delegate="xnnpack", threads=2,
                                latency_ms={k: p for k in ("p50", "p90", "p99", "mean", "std",
                                                           "min", "max")})
             for n, p in (("fp32.tflite", 0.3), ("fp16.tflite", 0.3), ("int8.tflite", 0.2))]
    problems = [records.validate(r) for r in rows]
    assert not any(problems), problems
    records.write_jsonl([r for r in rows if r["kind"] == "accuracy"], str(res / "accuracy.jsonl"))
    records.write_jsonl([r for r in rows if r["kind"] == "latency"], str(res / "latency.jsonl"))
    return str(art), str(res)


@pytest.mark.parametrize("int8_drift, budget, integer_only, step_drifts, want", [
    # full int8 misses a 0.1 budget by design; the second selective step fits, but it keeps
    # blocks in float: not integer-only, so nothing is chosen for integer_only
    (-0.5, 0.1, True, [-0.3, -0.05], None),
    # any precision allowed: the fitting step (1.75 MB) is smaller than fp16 (2.8 MB)
    (-0.5, 0.1, False, [-0.3, -0.05], "int8+float:mixed7,mixed3"),
    # full int8 fits: no steps are taken, int8 is the smallest
    (-0.05, 0.1, True, [], "int8.tflite"),
    # nothing integer fits even after every step: nothing is chosen for integer_only
    (-0.5, 0.1, True, [-0.4, -0.3, -0.2], None),
    # ... while fp16 fits when float is allowed
    (-0.5, 0.1, False, [-0.4, -0.3, -0.2], "fp16.tflite"),
])
def test_choice_on_records_whose_drift_is_known(tmp_path, monkeypatch, int8_drift, budget,
                                                integer_only, step_drifts, want):
    art, res = _records_dir(tmp_path, int8_drift)
    measure, seen = _measure(step_drifts)
    monkeypatch.setattr(choose, "prepare_steps", lambda *a, **k: (ORDER, measure, []))
    out = choose.choose(art, res, budget=budget, goal="smallest", integer_only=integer_only,
                        max_steps=3, log=lambda *a, **k: None)
    assert out["full_integer_fits"] == (int8_drift >= -budget)
    assert len(out["steps"]) == len(step_drifts) == len(seen)
    assert (out["chosen"] and out["chosen"]["artifact"]) == want
    if out["steps"]:
        assert "Full int8 missed the budget" in out["why"]
        assert out["block_order"][0]["block"] == "mixed7"
    saved = json.load(open(os.path.join(res, "choice.json")))
    assert (saved["chosen"] and saved["chosen"]["artifact"]) == want


@pytest.mark.parametrize("held_int8, test_int8, want, test_fits", [
    # held-out images say int8 fits: it is chosen, and the report's test split says how it did
    (-0.05, -0.5, "int8.tflite", False),
    (-0.05, -0.02, "int8.tflite", True),
    # the test split alone would pick int8; the held-out images do not, so fp16 is chosen
    (-0.5, -0.05, "fp16.tflite", True),
])
def test_the_choice_is_made_on_held_out_images(tmp_path, held_int8, test_int8, want, test_fits):
    """The choice reads drift from the held-out records (--select-on) and only reports the
    test split's: what picks is never what reports."""
    from contract import records
    from edge_eval import report as records_report
    from pipeline import report

    art, res = _records_dir(tmp_path, test_int8)
    held = tmp_path / "held"
    held.mkdir()
    rows = []
    for r in records.read_jsonl(os.path.join(res, "accuracy.jsonl")):
        r = dict(r, eval_set={"split": "holdout", "images": 5000, "split_is": "the validation/ "
                              "folder", "source": "image_folder"})
        if r["artifact"] == "int8.tflite":
            r["drift"] = dict(r["drift"], top1_delta_points=held_int8)
        rows.append(r)
    records.write_jsonl(rows, str(held / "accuracy.jsonl"))
    out = choose.choose(art, res, budget=0.1, goal="smallest", max_steps=0,
                        select_on=str(held), log=lambda *a, **k: None)
    assert out["chosen"]["artifact"] == want
    assert out["selected_on"]["split"] == "holdout" and out["selected_on"]["images"] == 5000
    assert out["reported_on"]["split"] == "test"
    ct = out["chosen_test"]
    assert ct["artifact"] == want and ct["drift_points"] == (test_int8 if want == "int8.tflite"
                                                             else -0.01)
    assert "Chosen on 5000 held-out images (the validation/ folder)" in out["why"]
    assert ("outside the 0.1-point budget" in out["why"]) == (not test_fits)
    # the gate judges the test split's record of the chosen artifact
    gate = report.choice_gate(records_report.load(res), out)
    assert (gate == []) == test_fits, gate
    md = report.choice_section(res)
    assert "which played no part in the choice" in md
    # without held-out records the choice says it decided on the test split
    plain = choose.choose(art, res, budget=0.1, max_steps=0, log=lambda *a, **k: None)
    assert "Chosen on the test split the report quotes" in plain["why"]


@pytest.mark.parametrize("phone_int8, flagged, want", [
    # the held-out host rows say int8 fits; the phone's NPU moves it 2 points: nothing integer
    # is left for the NPU
    (-2.0, False, None),
    # the phone agrees with the host: int8 is chosen, on the phone's numbers
    (-0.02, False, "int8.tflite"),
    # the phone's NPU did not run it whole: not admitted, however small its drift
    (0.0, True, None),
])
def test_a_phones_rows_decide_for_the_npu_also_beside_held_out_images(
        tmp_path, phone_int8, flagged, want):
    """The job always gives --select-on; a phone's rows in the results folder (edge_eval
    android accuracy, on the images the host evaluated) still decide for their accelerator,
    and choice.json says whose numbers and which images chose."""
    from contract import records

    art, res = _records_dir(tmp_path, -0.5)
    held = tmp_path / "held"
    held.mkdir()
    rows = []
    for r in records.read_jsonl(os.path.join(res, "accuracy.jsonl")):
        r = dict(r, eval_set={"split": "holdout", "images": 5000})
        if r["artifact"] == "int8.tflite":
            r["drift"] = dict(r["drift"], top1_delta_points=-0.05)
        rows.append(r)
    records.write_jsonl(rows, str(held / "accuracy.jsonl"))
    int8 = next(r for r in records.read_jsonl(os.path.join(res, "accuracy.jsonl"))
                if r["artifact"] == "int8.tflite")
    phone = dict(int8, delegate="npu", device={"kind": "android", "name": "Pixel 8"},
                 eval_set={"split": "test", "images": 10000},
                 drift=dict(int8["drift"], top1_delta_points=phone_int8),
                 accelerator={"requested": "npu", "used": "cpu" if flagged else "npu",
                              "fully_accelerated": not flagged, "flagged": flagged,
                              "fallback_reason": "12 ops on the CPU" if flagged else None})
    records.write_jsonl([phone], os.path.join(res, records.RowsFile.ANDROID_ACCURACY))
    out = choose.choose(str(art), res, budget=0.1, goal="smallest", max_steps=0,
                        target="npu", select_on=str(held), log=lambda *a, **k: None)
    assert (out["chosen"] and out["chosen"]["artifact"]) == want
    int8_cand = next(c for c in out["candidates"] if c["artifact"] == "int8.tflite")
    assert int8_cand["numbers_from"] == "Pixel 8 npu on 10000 test images"
    assert int8_cand["drift_points"] == phone_int8
    if want:
        assert out["numbers_from"] == "Pixel 8 npu on 10000 test images"
        assert "Chosen on the device's own rows (Pixel 8 npu on 10000 test images)" in \
            out["why"]
    if flagged:
        assert out["refused_on_target"]["int8.tflite"] == \
            "not fully accelerated on the device: 12 ops on the CPU"
    # the host CPU's choice is not judged by the phone's NPU row
    cpu = choose.choose(str(art), res, budget=0.1, goal="smallest", max_steps=0, target="cpu",
                        select_on=str(held), log=lambda *a, **k: None)
    assert cpu["chosen"]["artifact"] == "int8.tflite" and cpu["numbers_from"] == "host"


def test_the_job_remakes_the_choice_and_report_when_a_device_brings_rows():
    """A phone's or a board's rows arrive outside the job: they are inputs of the stages that
    read them, so the next run of the job chooses and reports again."""
    from contract.records import DEVICE_ROWS_FILES
    from pipeline import job as jobmod

    stages = {s.name: s for s in jobmod.plan(jobmod.resolve("fashion_mnist_demo"))}
    for name in ("choose", "report"):
        ins = {os.path.basename(p) for p in stages[name].inputs}
        assert set(DEVICE_ROWS_FILES) <= ins, (name, ins)


# --------------------------------------------------------------------------------------------
# the choice, end to end on the tiny model (a smoke run: it works, whichever branch it takes)
# --------------------------------------------------------------------------------------------
def test_choice_end_to_end_on_the_tiny_model(converted, tmp_path):
    """Real conversion, evaluation and benchmark of the selective steps. An agreement of 100 %
    with float cannot be met by any quantized model of this size on 1,000 images, so the steps
    run whatever the CPU's int8 rounding (the decision rule itself is tested above on known
    drifts)."""
    import shutil

    from edge_eval import harness
    from pipeline import report

    src, _ = converted
    art = str(tmp_path / "art")
    shutil.copytree(src, art)
    res = str(tmp_path / "res")
    quiet = lambda *a, **k: None  # noqa: E731
    only = ["fp32", "fp16", "static_wi8_ai8"]
    harness.evaluate(art, res, images=1000, bootstrap_rounds=100, only=only, log=quiet)
    harness.benchmark(art, res, runs=5, min_seconds=0.05, only=only, log=quiet)

    loose = choose.choose(art, res, budget=100.0, goal="smallest", max_steps=2, log=quiet)
    assert loose["steps"] == [] and loose["full_integer_fits"]
    assert loose["chosen"]["recipe"] == "static_wi8_ai8"  # the smallest of the three

    out = choose.choose(art, res, budget=100.0, min_agreement=1.0, goal="smallest",
                        integer_only=True, max_steps=2, calib_images=32, images=1000,
                        bench_runs=5, log=quiet)
    int8 = out["best_full_integer"]
    assert int8["agreement"] < 1.0 and not out["full_integer_fits"]
    order = [b["block"] for b in out["block_order"]]
    errs = [b["mean_rmse_over_scale"] for b in out["block_order"]]
    assert order and all(b.startswith("mixed") for b in order) and errs == sorted(errs)[::-1]
    steps = out["steps"]
    assert len(steps) == 2  # agreement 1.0 is out of reach: both steps ran
    for k, s in enumerate(steps, 1):
        assert s["status"] == "ok" and s["float_blocks"] == order[:k]
        assert os.path.isfile(s["file"]) and s["bytes"] > int8["bytes"]  # float blocks cost
        assert s["p50_ms"] > 0 and s["recipe"].endswith("+float:" + ",".join(order[:k]))
    # the steps' records join the report
    report.write(res)
    md = open(os.path.join(res, "report.md")).read()
    assert "Recipe choice" in md and steps[0]["recipe"] in md


# --------------------------------------------------------------------------------------------
# the main job on a user's trained model, with its gate
# --------------------------------------------------------------------------------------------
def _job(tmp_path, name, model, *sets):
    import subprocess

    from conftest import ROOT

    args = [sys.executable, "-m", "pipeline", "--set", f"name={name}", "--set", f"model={model}",
            "--set", "qat=false", "--set", "coreml_variants=", "--set", "edgetpu=false",
            "--set", "eval_images=200", "--set", "bench_runs=5", "--set", "calib_images=32",
            "--set", "choice_max_steps=0", "--set", "eval_workers=1"]
    for s in sets:
        args += ["--set", s]
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
    return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)


def test_the_job_gate_passes_and_fails_on_a_users_model(tiny_export, tmp_path):
    """A trained model (no training stage) through the main job: with a budget it meets the
    job exits 0 and the report says the gate passed; asking for a full-integer model when only
    fp32 was converted fails the gate by construction: exit 1, and the report says why."""
    ok = _job(tmp_path, "pass", tiny_export, "recipes=fp32,static_wi8_ai8", "budget_points=100")
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
    md = (tmp_path / "reports" / "pass" / "report.md").read_text()
    assert "Gate (the chosen artifact meets the job's budget): passed" in md
    choice = json.loads((tmp_path / "reports" / "pass" / "choice.json").read_text())
    assert choice["chosen"]["recipe"] == "static_wi8_ai8"  # the smallest within 100 points

    bad = _job(tmp_path, "fail", tiny_export, "recipes=fp32", "integer_only=true")
    assert bad.returncode == 1, bad.stdout[-3000:]
    md = (tmp_path / "reports" / "fail" / "report.md").read_text()
    assert "Gate (the chosen artifact meets the job's budget): FAILED" in md
    assert "among full-integer models" in md
    rows = load_state(str(tmp_path / "reports" / "fail" / "pipeline.json"))["stages"]
    assert rows["choose"]["status"] == "ok" and rows["choose"]["exit_code"] == 3
    assert rows["report"]["status"] == "failed"
    # off: the same job reports and exits 0 (only the report stage runs again)
    off = _job(tmp_path, "fail", tiny_export, "recipes=fp32", "integer_only=true", "gate=false")
    assert off.returncode == 0, off.stdout[-3000:]
    assert "Gate (" not in (tmp_path / "reports" / "fail" / "report.md").read_text()
    # the job's own lines, not TensorFlow's start-up noise
    for noise in ("cuInit", "cudart_stub", "absl::InitializeLog", "oneDNN custom operations"):
        assert noise not in ok.stdout + ok.stderr, noise


# --------------------------------------------------------------------------------------------
# a killed job leaves no stage behind, and one job runs at a time
# --------------------------------------------------------------------------------------------
DRIVER = """
import os, signal, sys
sys.path.insert(0, {root!r})
from pipeline.__main__ import on_term
from pipeline.runner import Stage, job_lock, run_stages
signal.signal(signal.SIGTERM, on_term)
# as in a terminal: a shell that starts jobs in the background (CI, `cmd &`) hands them SIGINT
# ignored, and Python then leaves it ignored
signal.signal(signal.SIGINT, signal.default_int_handler)
slow = ("import os, sys, time; open('stage.pid', 'w').write(str(os.getpid())); "
        "time.sleep(30); open('out.txt', 'w').write('late')")
with job_lock('job.lock') as fd:
    run_stages([Stage('slow', [sys.executable, '-c', slow], outputs=['out.txt'])], 'state.json',
               cwd='.', pass_fds=(fd,))
"""


from contract.workdirs import alive as _alive  # noqa: E402


def _start_driver(tmp_path):
    import subprocess
    import time

    from conftest import ROOT

    p = subprocess.Popen([sys.executable, "-c", DRIVER.format(root=ROOT)], cwd=tmp_path,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 20
    while not (tmp_path / "stage.pid").exists() or not (tmp_path / "stage.pid").read_text():
        assert time.time() < deadline and p.poll() is None, p.stderr.read() if p.poll() else ""
        time.sleep(0.05)
    return p, int((tmp_path / "stage.pid").read_text())


@pytest.mark.parametrize("signame", ["SIGKILL", "SIGINT", "SIGTERM"])
def test_a_stage_dies_with_its_job_and_the_lock_is_then_free(tmp_path, signame):
    import signal
    import time

    from pipeline.runner import JobLocked, job_lock

    p, stage_pid = _start_driver(tmp_path)
    with pytest.raises(JobLocked, match=f"held by pid {p.pid}"):
        with job_lock(str(tmp_path / "job.lock")):
            pass
    p.send_signal(getattr(signal, signame))  # SIGTERM: python -m pipeline's handler
    p.wait(timeout=20)
    deadline = time.time() + 10
    while _alive(stage_pid):
        assert time.time() < deadline, f"stage {stage_pid} outlived its job ({signame})"
        time.sleep(0.05)
    assert not (tmp_path / "out.txt").exists()
    with job_lock(str(tmp_path / "job.lock")):  # free: the job and its stage are gone
        pass
    if signame != "SIGKILL":  # stopped, not killed: the state says so
        st = load_state(str(tmp_path / "state.json"))["stages"]["slow"]
        assert st["status"] == "failed" and "interrupted" in st["error"]


# --------------------------------------------------------------------------------------------
# code keys: the import closure of each stage's entry module
# --------------------------------------------------------------------------------------------
EVAL_STAGES = {"evaluate", "evaluate_holdout", "benchmark", "choose"}


@pytest.mark.parametrize("edited, want", [
    # every stage but the report reads preprocessing (train.data, the converter, the harness)
    ("contract/preprocessing.py", "all but report"),
    # the worker's job record: only the stages that start workers
    ("contract/jobs.py", EVAL_STAGES),
    # the run side's worker (a child process, ``-m edge_eval.worker``): the same stages
    ("edge_eval/worker.py", EVAL_STAGES),
    # the report's own module and the records it reads
    ("pipeline/report.py", {"report"}),
    # the app installer: no stage runs it
    ("pipeline/app_assets.py", set()),
])
def test_an_edit_reruns_exactly_the_stages_that_import_it(tmp_path, edited, want):
    import shutil

    from pipeline.job import plan, resolve
    from conftest import ROOT
    from pipeline.runner import import_closure, stage_key

    tree = tmp_path / "tree"
    for top in os.listdir(ROOT):  # the project's packages, as the runner sees them
        if os.path.isfile(os.path.join(ROOT, top, "__init__.py")):
            shutil.copytree(os.path.join(ROOT, top), tree / top,
                            ignore=shutil.ignore_patterns("__pycache__"))
    stages = plan(resolve("fashion_mnist_demo"))
    before = {s.name: stage_key(s, str(tmp_path), str(tree)) for s in stages}
    with open(tree / edited, "a") as f:
        f.write("\n# an edit\n")
    after = {s.name: stage_key(s, str(tmp_path), str(tree)) for s in stages}
    changed = {n for n in before if before[n] != after[n]}
    if want == "all but report":
        want = set(before) - {"report"}
    assert changed == want
    # ... which is what the closures say
    assert changed == {s.name for s in stages if s.entry and edited in import_closure(
        s.entry, str(tree))}


@pytest.mark.parametrize("key, value, says", [
    ("recipes", "fp32,static_wi8_ai9", ("unknown recipe 'static_wi8_ai9'", "grammar")),
    ("qat_recipes", "static_wi8_ai8+float:tail", ("tail", "grammar")),
    ("coreml_variants", "fp16,int3", ("unknown Core ML variant 'int3'", "valid: fp16")),
])
def test_a_misspelt_recipe_stops_the_job_before_any_stage(tmp_path, capsys, key, value, says):
    from pipeline.__main__ import main

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        rc = main(["--job", "tiny", "--set", f"{key}={value}"])
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert rc == 2 and all(w in err for w in says), err
    assert not os.listdir(tmp_path)  # no stage ran, nothing written


def test_a_job_with_a_selective_recipe_runs_every_stage(tiny_export, tmp_path):
    """docs/convert.md's selective recipe in a job: every stage ok, both files in the manifest,
    each under the registry's file name (the convert stage waits for what convert writes)."""
    import subprocess

    from conftest import ROOT
    from contract.recipes import file_name, parse

    cfg = tmp_path / "job.yaml"
    cfg.write_text('recipes: [fp32, "static_wi8_ai8+float:mixed3"]\n')
    args = [sys.executable, "-m", "pipeline", "--config", str(cfg), "--set", "name=sel",
            "--set", f"model={tiny_export}", "--set", "qat=false", "--set", "coreml_variants=",
            "--set", "edgetpu=false", "--set", "eval_images=200", "--set", "bench_runs=5",
            "--set", "calib_images=32", "--set", "choice_max_steps=0",
            "--set", "budget_points=100"]
    p = subprocess.run(args, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=ROOT),
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    state = load_state(str(tmp_path / "reports" / "sel" / "pipeline.json"))["stages"]
    assert state and all(r["status"] == "ok" for r in state.values()), state
    manifest = json.loads((tmp_path / "artifacts" / "sel" / "manifest.json").read_text())
    by = {a["recipe"]: a for a in manifest["artifacts"]}
    assert set(by) == {"fp32", "static_wi8_ai8+float:mixed3"}
    source = by["fp32"]["file"][:-len("_fp32.tflite")]
    sel = by["static_wi8_ai8+float:mixed3"]
    assert sel["file"] == file_name(source, parse(sel["recipe"]))
    assert sel["recipe_spec"]["float_blocks"] == ["mixed3"]
    assert sel["recipe_spec"]["integer_only"] is False
