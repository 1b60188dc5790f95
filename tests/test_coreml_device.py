"""Core ML where it runs, with a stand-in for Apple's runtime behind coremltools
(tests/standin_coreml: compute units honoured, a compute plan, a package the Neural Engine
refuses, a predict that raises): latency rows per compute unit, per-image records per unit
paired against float and against the project's own evaluator, op placement counts, and a
failing predict reported as such. Without the stand-in (Linux as it is), one clear message."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STANDIN = os.path.join(ROOT, "tests", "standin_coreml")
UNITS = ["cpu_only", "cpu_and_gpu", "cpu_and_ne", "all"]


@pytest.fixture(scope="module")
def packages(tiny_export, tmp_path_factory):
    from convert.__main__ import main

    out = str(tmp_path_factory.mktemp("coreml_device"))
    assert main([tiny_export, "--out", out, "--targets", "coreml", "--coreml-variants",
                 "fp32,fp16", "--check-images", "8", "--no-metadata"]) == 0
    m = json.load(open(os.path.join(out, "manifest.json")))
    return out, {a["recipe"]: a["file"] for a in m["artifacts"]}


def _run(args, log=None, **env):
    e = dict(os.environ, PYTHONPATH=os.pathsep.join([STANDIN, ROOT]) if log else ROOT, **env)
    if log:
        e["STANDIN_COREML"] = log
    else:
        e.pop("STANDIN_COREML", None)
    return subprocess.run([sys.executable, "-m", "edge_eval", *args], cwd=ROOT, env=e,
                          capture_output=True, text=True, timeout=900)


def _rows(path):
    return [json.loads(x) for x in open(path)]


def test_latency_per_compute_unit_and_where_the_ops_run(packages, tmp_path):
    art, files = packages
    out, log = str(tmp_path / "r"), str(tmp_path / "coreml.log")
    r = _run(["bench", art, "--out", out, "--only", "coreml_fp32,coreml_fp16", "--runs", "10",
              "--warmup", "1", "--min-seconds", "0.2", "--require-full-delegation",
              "--no-strict"], log, STANDIN_COREML_NE_REFUSES="fp16")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {(x["artifact"], x["delegate"]): x for x in _rows(os.path.join(out, "latency.jsonl"))}
    fp32, fp16 = files["coreml_fp32"], files["coreml_fp16"]
    assert sorted(rows) == sorted((a, u) for a in (fp32, fp16) for u in UNITS)
    # each unit loaded its own model: Core ML compiles per compute unit
    loads = [x.split()[2] for x in open(log) if x.startswith(f"load {fp32}")]
    assert sorted(set(loads)) == sorted(u.upper() for u in UNITS)
    for (a, u), x in rows.items():
        assert x["runtime"] == "coreml" and x["init_ms"] > 0 and x["first_inference_ms"] > 0
        d = x["delegation"]
        assert d["how"] == "Core ML compute plan" and sum(d["devices"].values()) == d["nodes"]
    ok = rows[(fp32, "all")]
    assert ok["status"] == "ok" and ok["latency_ms"]["p50"] > 0 and ok["runs"] >= 10
    # ALL: the ANE where it can, the GPU for the op types the stand-in's ANE lacks
    d = ok["delegation"]
    assert d["full"] and d["devices"]["cpu"] == 0 and d["devices"]["gpu"] >= 1
    assert rows[(fp32, "cpu_only")]["delegation"]["devices"]["neural_engine"] == 0
    assert rows[(fp32, "cpu_only")]["status"] == "ok"  # no accelerator asked: no gate
    # CPU_AND_NE: what the ANE lacks falls back to the CPU, named, and fails the gate
    ne = rows[(fp32, "cpu_and_ne")]
    assert ne["status"] == "failed" and "softmax" in ne["error"]
    assert ne["delegation"]["cpu_ops_could_run_on"]["softmax"] == []
    # a package the ANE refuses: every op on the CPU under CPU_AND_NE (could not run there)
    refused = rows[(fp16, "cpu_and_ne")]["delegation"]
    assert refused["delegated"] == 0 and refused["devices"]["cpu"] == refused["nodes"] > 10
    assert rows[(fp16, "all")]["delegation"]["devices"]["neural_engine"] == 0
    assert rows[(fp16, "all")]["status"] == "ok"  # the GPU took it all


def test_per_image_answers_per_unit_and_a_failing_predict_is_a_failed_row(packages, tmp_path):
    art, files = packages
    out, log = str(tmp_path / "r"), str(tmp_path / "coreml.log")
    r = _run(["accuracy", art, "--out", out, "--only", "coreml_fp32,coreml_fp16",
              "--images", "40", "--data-source", "fashion_mnist", "--runtime", "litert",
              "--coreml-units", "CPU_ONLY,ALL", "--bootstrap", "100", "--no-strict"], log,
             STANDIN_COREML_PREDICT_FAILS="fp16")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = _rows(os.path.join(out, "accuracy.jsonl"))
    got = {(x["artifact"], x["delegate"]): x for x in rows[1:]}
    fp32, fp16 = files["coreml_fp32"], files["coreml_fp16"]
    assert sorted(got) == sorted((a, u) for a in (fp32, fp16) for u in ("none", "cpu_only",
                                                                         "all"))
    assert got[(fp32, "none")]["runtime"] == "mil_reference"
    for u in ("cpu_only", "all"):
        x = got[(fp32, u)]
        assert x["status"] == "ok" and x["runtime"] == "coreml"
        assert x["accuracy"]["examples"] == 40 and x["delegation"]["nodes"] > 10
        assert x["drift"]["argmax_agreement"] >= 0.9  # against the float Keras model
        # the failing package: a failed row with Core ML's reason, never the evaluator's answer
        bad = got[(fp16, u)]
        assert bad["status"] == "failed" and "Error computing NN outputs" in bad["error"]
    assert got[(fp16, "none")]["status"] == "ok"  # the project's evaluator still scores it
    folder = os.path.join(out, "predictions")
    assert os.path.isfile(os.path.join(folder, f"{fp32}@all.jsonl"))
    assert not os.path.exists(os.path.join(folder, f"{fp16}@all.jsonl"))
    # Apple's runtime against the project's evaluator, one command away
    d = _run(["drift", os.path.join(folder, f"{fp32}.jsonl"),
              os.path.join(folder, f"{fp32}@all.jsonl"), "--json"])
    assert d.returncode == 0, d.stderr[-1000:]
    drift = json.loads(d.stdout)
    assert drift["paired_images"] == 40 and drift["argmax_agreement"] >= 0.95


def test_without_core_ml_one_clear_message(packages, tmp_path):
    art, files = packages
    out = str(tmp_path / "r")
    r = _run(["bench", art, "--out", out, "--only", "coreml_fp32,coreml_fp16", "--no-strict"])
    assert r.returncode == 0, r.stderr[-2000:]
    rows = _rows(os.path.join(out, "latency.jsonl"))
    assert len(rows) == 2 and {x["status"] for x in rows} == {"unavailable"}
    assert "runs on macOS 13+ only" in rows[0]["error"]
    assert r.stdout.count("Core ML packages are not timed here") == 1


def test_on_a_board_without_tensorflow_packages_are_unavailable_rows(packages, tmp_path):
    """A board copies the whole artifacts folder, Core ML packages included: with no
    TensorFlow (the project's evaluator) and no Apple runtime, each package is one
    'unavailable' row saying where it is scored - not a failed row with an import error -
    and --strict still exits 0."""
    art, files = packages
    host = tmp_path / "host"
    r = _run(["accuracy", art, "--out", str(host), "--images", "16", "--bootstrap", "50",
              "--data-source", "fashion_mnist", "--runtime", "litert", "--no-strict"])
    assert r.returncode == 0, r.stderr[-2000:]
    block = tmp_path / "board"
    block.mkdir()
    (block / "sitecustomize.py").write_text(
        "import sys\nclass _B:\n    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('tensorflow', 'tf_keras', 'keras', 'matplotlib'):\n"
        "            raise ModuleNotFoundError(name)\nsys.meta_path.insert(0, _B())\n")
    e = dict(os.environ, PYTHONPATH=os.pathsep.join([str(block), ROOT]))
    e.pop("STANDIN_COREML", None)
    b = subprocess.run([sys.executable, "-m", "edge_eval", "accuracy", art, "--out",
                        str(tmp_path / "b"), "--images", "16", "--data-source",
                        "fashion_mnist", "--runtime", "litert", "--reference-predictions",
                        str(host / "predictions" / "reference.jsonl"), "--strict"],
                       cwd=ROOT, env=e, capture_output=True, text=True, timeout=900)
    assert b.returncode == 0 and "Traceback" not in b.stderr, b.stderr[-2000:]
    rows = [r for r in _rows(tmp_path / "b" / "accuracy.jsonl") if r["target"] == "coreml"]
    assert sorted(r["artifact"] for r in rows) == sorted(files.values())
    for r in rows:
        assert r["status"] == "unavailable" and "needs TensorFlow" in r["error"], r
    assert (b.stdout + b.stderr).count("their rows are 'unavailable'") == 1
