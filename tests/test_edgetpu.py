"""Edge TPU readiness: the compatibility report and predicted split, the compiler's log parser
(on real compiler output), and the compiler driver with and without the compiler."""
import os
import stat
import sys

import numpy as np

import pytest

from conftest import needs_fmnist, run_module
from convert import edgetpu

# edgetpu_compiler 2.1's console output for a model with unmapped ops, as posted in
# google-coral/edgetpu#60 (real output; the operator table shortened to its first rows)
LOG_PARTIAL = """Edge TPU Compiler version 2.1.302470888

Model compiled successfully in 12264 ms.

Input model: model2.tflite
Input size: 8.11MiB
Output model: model2_edgetpu.tflite
Output size: 9.47MiB
On-chip memory used for caching model parameters: 6.86MiB
On-chip memory remaining for caching model parameters: 7.75KiB
Off-chip memory used for streaming uncached model parameters: 1.22MiB
Number of Edge TPU subgraphs: 1
Total number of operations: 93
Operation log: model2_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU. A percentage of the model will instead run on the CPU, which is slower. If possible, consider updating your model to use only operations supported by the Edge TPU. For details, visit g.co/coral/model-reqs.
Number of operations that will run on Edge TPU: 83
Number of operations that will run on CPU: 10

Operator                       Count      Status

LOGISTIC                       1          More than one subgraph is not supported
ADD                            10         Mapped to Edge TPU
CONCATENATION                  1          More than one subgraph is not supported
CONCATENATION                  3          Mapped to Edge TPU
"""

# edgetpu_compiler 16's output when every op maps (google-coral/edgetpu#572)
LOG_ALL_MAPPED = """Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 542 ms.

Input model: quantized_model.tflite
Input size: 4.04MiB
Output model: quantized_model_edgetpu.tflite
Output size: 4.13MiB
On-chip memory used for caching model parameters: 604.50KiB
On-chip memory remaining for caching model parameters: 511.50KiB
Off-chip memory used for streaming uncached model parameters: 3.45MiB
Number of Edge TPU subgraphs: 1
Total number of operations: 50
Operation log: quantized_model_edgetpu.log
See the operation log file for individual operation details.
Compilation child process completed within timeout period.
Compilation succeeded!
"""


def test_parse_log_with_cpu_ops():
    p = edgetpu.parse_compiler_log(LOG_PARTIAL)
    assert p["compiled"] and p["compiler_version"] == "2.1.302470888"
    assert p["input_bytes"] == round(8.11 * 2 ** 20) and p["off_chip_bytes"] == round(1.22 * 2 ** 20)
    assert p["on_chip_remaining_bytes"] == round(7.75 * 1024)
    assert (p["subgraphs"], p["total_ops"], p["edgetpu_ops"], p["cpu_ops"]) == (1, 93, 83, 10)
    assert p["operators"][0] == {"op": "LOGISTIC", "count": 1,
                                 "status": "More than one subgraph is not supported"}
    assert sum(o["count"] for o in p["operators"] if o["op"] == "CONCATENATION") == 4
    assert p["output_model"] == "model2_edgetpu.tflite" and p["error"] is None
    from contract.litert import delegation_problem

    d = p["delegation"]  # the record's one shape, as for XNNPACK and benchmark_model
    assert (d["nodes"], d["delegated"], d["partitions"], d["full"]) == (93, 83, 1, False)
    assert d["cpu_ops"] == {"LOGISTIC": 1, "CONCATENATION": 1}
    assert delegation_problem(d) == ("edgetpu took 83 of 93 nodes in 1 partition(s); left on the "
                                     "CPU: CONCATENATION x1, LOGISTIC x1")


def test_parse_log_all_mapped_and_failed():
    p = edgetpu.parse_compiler_log(LOG_ALL_MAPPED)
    assert (p["total_ops"], p["edgetpu_ops"], p["cpu_ops"]) == (50, 50, 0)
    assert p["delegation"]["full"] and p["delegation"]["cpu_ops"] == {}
    assert p["on_chip_used_bytes"] == round(604.5 * 1024) and p["operators"] == []
    f = edgetpu.parse_compiler_log("Edge TPU Compiler version 16.0.384591198\nCompilation failed: "
                                   "Compilation failed due to large activation tensors in model.\n")
    assert not f["compiled"] and "large activation tensors" in f["error"]


@needs_fmnist
def test_report_on_full_integer_and_float_models(converted):
    art, manifest = converted
    by = {a["recipe"]: a for a in manifest["artifacts"]}
    r = edgetpu.compatibility_report(os.path.join(art, by["static_wi8_ai8_uint8io"]["file"]))
    assert r["split"] is None and r["edgetpu_ops"] == r["ops"] > 100 and r["cpu_ops"] == 0
    counts = {o["op"]: o["edgetpu"] for o in r["operators"]}
    assert counts["CONV_2D"] == 94 and counts["CONCATENATION"] == 15  # mixed9/10 nest two
    assert r["fits_on_chip"] and r["parameter_bytes"] < edgetpu.ON_CHIP_BYTES
    # a static batch: edgetpu_compiler refuses a -1 in the shape signature
    assert r["warnings"] == []
    from contract.litert import TFLiteModel

    for a in manifest["artifacts"]:
        m = TFLiteModel(os.path.join(art, a["file"]))
        assert list(m.input["shape_signature"]) == [1, 75, 75, 3], a["recipe"]
        assert m.predict(np.zeros((5, 75, 75, 3), np.float32), 5).shape == (5, 10)  # resizable
    f = edgetpu.compatibility_report(os.path.join(art, by["fp32"]["file"]))
    assert f["split"]["index"] == 0 and "float32" in f["split"]["reason"] and f["edgetpu_ops"] == 0


def test_report_predicts_the_split_at_an_unsupported_op(tmp_path):
    """conv -> ELU (not on the Edge TPU) -> conv: the TPU part ends at the ELU."""
    import numpy as np
    import tensorflow as tf

    inp = tf.keras.Input((16, 16, 3), batch_size=1)
    x = tf.keras.layers.Conv2D(8, 3)(inp)
    x = tf.keras.layers.ELU()(x)
    x = tf.keras.layers.Conv2D(4, 3)(x)
    model = tf.keras.Model(inp, x)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.RandomState(0)
    conv.representative_dataset = lambda: ([rng.rand(1, 16, 16, 3).astype(np.float32)]
                                           for _ in range(8))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.uint8
    path = tmp_path / "m.tflite"
    path.write_bytes(conv.convert())
    r = edgetpu.compatibility_report(str(path))
    assert r["split"]["op"] == "ELU" and r["unsupported"] == ["ELU"]
    assert r["edgetpu_ops"] == r["split"]["index"] >= 1 and r["cpu_ops"] == r["ops"] - r["split"]["index"]


def _fake_compiler(tmp_path, log, write=True):
    """A stand-in edgetpu_compiler on PATH: prints a real log, writes the output file."""
    d = tmp_path / "bin"
    d.mkdir()
    exe = d / "edgetpu_compiler"
    exe.write_text(f"""#!{sys.executable}
import os, shutil, sys
args = sys.argv[1:]
out = args[args.index("-o") + 1]
src = args[-1]
n = [int(a.split("=")[1]) for a in args if a.startswith("--num_segments=")]
print({log!r})
if {write!r}:
    base = os.path.basename(src)[:-7]
    names = ([base + "_segment_%d_of_%d_edgetpu.tflite" % (k, n[0]) for k in range(n[0])]
             if n else [base + "_edgetpu.tflite"])
    for name in names:
        shutil.copy(src, os.path.join(out, name))
""")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(d)


@needs_fmnist
def test_annotate_with_and_without_the_compiler(converted, tmp_path, monkeypatch):
    import shutil

    src, manifest = converted
    art = str(tmp_path / "art")
    shutil.copytree(src, art)
    sha = next(a["source_sha256"] for a in manifest["artifacts"])
    monkeypatch.setenv("PATH", "/nonexistent")
    m = edgetpu.annotate(art, sha, log=lambda *a, **k: None)
    u = next(a for a in m["artifacts"] if a["recipe"] == "static_wi8_ai8_uint8io")
    assert u["edgetpu"]["compiler"]["status"] == "unavailable"
    assert "coral.ai" in u["edgetpu"]["compiler"]["error"]
    assert u["edgetpu"]["report"]["split"] is None
    with pytest.raises(ValueError, match="edgetpu_compiler is not on PATH"):
        edgetpu.annotate(art, sha, require_compiler=True, log=lambda *a, **k: None)

    monkeypatch.setenv("PATH", _fake_compiler(tmp_path, LOG_ALL_MAPPED) + os.pathsep + os.environ.get("PATH", ""))
    m = edgetpu.annotate(art, sha, log=lambda *a, **k: None)
    compiled = [a for a in m["artifacts"] if a["target"] == "edgetpu"]
    assert {a["recipe"] for a in compiled} >= {"static_wi8_ai8_uint8io_edgetpu"}
    c = next(a for a in compiled if a["recipe"] == "static_wi8_ai8_uint8io_edgetpu")
    assert os.path.isfile(os.path.join(art, c["file"])) and c["edgetpu_compiler"]["edgetpu_ops"] == 50
    assert c["edgetpu_compiler"]["off_chip_bytes"] == round(3.45 * 2 ** 20)


def test_required_compiler_missing_is_one_clear_error(tmp_path):
    r = run_module(["convert", str(tmp_path / "model"), "--out", str(tmp_path / "o"),
                    "--targets", "edgetpu", "--require-edgetpu-compiler"],
                   env_extra={"PATH": os.path.dirname(sys.executable)})
    assert r.returncode == 2 and "edgetpu_compiler is not on PATH" in r.stderr
    assert "Traceback" not in r.stderr and not os.path.exists(tmp_path / "o")


STANDIN_DELEGATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "standin_edgetpu")


def _compiled_folder(converted, tmp_path, monkeypatch, segments=1):
    """The converted models plus the stand-in compiler's Edge TPU model(s) in the manifest."""
    import shutil

    src, manifest = converted
    art = str(tmp_path / "art")
    shutil.copytree(src, art)
    sha = next(a["source_sha256"] for a in manifest["artifacts"])
    monkeypatch.setenv("PATH", _fake_compiler(tmp_path, LOG_ALL_MAPPED) + os.pathsep
                       + os.environ.get("PATH", ""))
    m = edgetpu.annotate(art, sha, log=lambda *a, **k: None, segments=segments)
    return art, [a for a in m["artifacts"] if a["target"] == "edgetpu"]


@needs_fmnist
def test_a_compiled_model_runs_only_under_the_edgetpu_delegate(converted, tmp_path,
                                                                 monkeypatch):
    """bench and accuracy give the compiled model rows under edgetpu - run by the (stand-in)
    Edge TPU delegate, which records being asked for that file - and no uncompiled file ever
    runs under that label; without libedgetpu the compiled model's rows say what is missing."""
    from edge_eval import harness

    art, compiled = _compiled_folder(converted, tmp_path, monkeypatch)
    c = next(a for a in compiled if a["recipe"] == "static_wi8_ai8_uint8io_edgetpu")
    assert c["check"]["passed"] and c["check"]["input_dtypes"] == ["uint8"], c["check"]
    only = [c["file"], "tiny_test_static_wi8_ai8_uint8io.tflite"]
    quiet = lambda *a, **k: None  # noqa: E731
    # no Edge TPU runtime here: the compiled model's rows say what to install
    monkeypatch.setenv("EDGETPU_LIBRARY", str(tmp_path / "no" / "libedgetpu.so.1"))
    rows = harness.benchmark(art, str(tmp_path / "b0"), delegates=["xnnpack", "edgetpu"],
                             runs=12, min_seconds=0.3, only=only, log=quiet)
    by = {(r["artifact"], r["delegate"]): r for r in rows}
    assert set(by) == {(c["file"], "edgetpu"),
                       ("tiny_test_static_wi8_ai8_uint8io.tflite", "xnnpack")}
    assert by[(c["file"], "edgetpu")]["status"] == "unavailable"
    assert "libedgetpu" in by[(c["file"], "edgetpu")]["error"]
    # the stand-in delegate: the compiled file, and only it, is handed to the "Edge TPU"
    log = tmp_path / "asked.txt"
    monkeypatch.setenv("STANDIN_EDGETPU_LOG", str(log))
    monkeypatch.setenv("EDGETPU_LIBRARY", "libedgetpu.so.1")
    monkeypatch.setenv("PYTHONPATH", STANDIN_DELEGATE + os.pathsep
                       + os.environ.get("PYTHONPATH", ""))
    rows = harness.benchmark(art, str(tmp_path / "b1"), delegates=["xnnpack", "edgetpu"],
                             runs=12, min_seconds=0.3, only=only, log=quiet)
    by = {(r["artifact"], r["delegate"]): r for r in rows}
    tpu = by[(c["file"], "edgetpu")]
    assert tpu["status"] == "ok", tpu["error"]
    assert tpu["delegation"]["delegated"] == 50  # the compiler's mapped-op count
    asked = set(log.read_text().split())
    assert asked and all(p.endswith("_edgetpu.tflite") for p in asked)
    acc = harness.evaluate(art, str(tmp_path / "a1"), images=40, bootstrap_rounds=50,
                           only=only, log=quiet)
    rows = {r["artifact"]: r for r in acc}
    assert rows[c["file"]]["delegate"] == "edgetpu" and rows[c["file"]]["status"] == "ok"
    assert rows[c["file"]]["drift"]["argmax_agreement"] > 0.5
    assert rows["tiny_test_static_wi8_ai8_uint8io.tflite"]["delegate"] == "xnnpack"
    assert all(p.endswith("_edgetpu.tflite") for p in log.read_text().split())


@needs_fmnist
def test_segments_are_compiled_and_not_run_one_by_one(converted, tmp_path, monkeypatch):
    from edge_eval import harness

    art, compiled = _compiled_folder(converted, tmp_path, monkeypatch, segments=2)
    segs = [a for a in compiled if a.get("segment")]
    assert [a["segment"]["index"] for a in segs] == [0, 1]
    assert all(a["file"].endswith(f"_of_2_edgetpu.tflite") for a in segs)
    acc = harness.evaluate(art, str(tmp_path / "a"), images=20, bootstrap_rounds=10,
                           only=[a["file"] for a in segs], log=lambda *a, **k: None)
    seg_rows = [r for r in acc if r["target"] == "edgetpu"]
    assert seg_rows and all(r["status"] == "unavailable" and "PipelinedModelRunner" in r["error"]
                            for r in seg_rows)
