"""Full int8 against its peers, measured side by side in one interleaved run (ratios, not times).

    python benchmarks/int8.py [--dir /tmp/iv3-int8] [--runs 30] [--peers]

The 299-px, 1000-class Inception-v3 (random weights, seeded: latency does not depend on them) is
converted once into ``--dir``: fp32, dynamic-range int8, full int8 as TF's converter writes it
(``static_wi8_ai8 (converter)``) and as our recipe writes it (float islands: convert/islands.py,
the whole graph in one XNNPACK partition), and int4 dynamic weights where LiteRT has kernels.
Each is timed with LiteRT + XNNPACK at 2 threads, batch 1, all models interleaved round by
round (the order rotating) in one process without TensorFlow; ``--peers`` adds int4 dynamic weights (Google's AI Edge Quantizer: LiteRT's only int4
path for convolutions), OpenVINO (reading the same fp32
.tflite, quantized by NNCF on 16 samples) and ONNX Runtime's static int8 (QDQ, 16 samples) of
the same model, installed into their own environment (``~/.cache/inception-edge/peers``): peers
to measure against, never dependencies of the product. Prints each artifact's median, its
ratio to fp32 and to dynamic int8, our fastest against OpenVINO's int8, and the XNNPACK
partition count of every .tflite.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from contract.workdirs import user_cache  # noqa: E402

PEERS = user_cache("peers")
PEER_PACKAGES = ["openvino==2026.4.1", "nncf==3.4.0", "onnxruntime==1.32.0", "tf2onnx==1.17.0",
                 "ai-edge-quantizer==0.10.0"]


def build(out_dir: str, log=print) -> dict:
    """{name: .tflite path} (and the Keras model for the ONNX export), converted once."""
    names = {"fp32": "fp32", "dynamic_wi8_afp32": "dynamic_wi8_afp32",
             "static_wi8_ai8 (converter)": "static_wi8_ai8_converter",
             "static_wi8_ai8 (float islands)": "static_wi8_ai8"}
    paths = {k: os.path.join(out_dir, f"iv3_299_{v}.tflite") for k, v in names.items()}
    keras_path = os.path.join(out_dir, "iv3_299.keras")
    if all(os.path.exists(p) for p in paths.values()) and os.path.exists(keras_path):
        return {"tflite": paths, "keras": keras_path}
    import numpy as np

    from train import keras_env  # noqa: F401
    import tensorflow as tf

    from contract.preprocessing import PreprocessingSpec
    from convert.islands import float_islands
    from contract.tflite_file import align
    from contract.recipes import RECIPES
    from quantize.tflite import convert_bytes
    from train.model import build_inception_v3
    from train.source import Source

    os.makedirs(out_dir, exist_ok=True)
    tf.keras.utils.set_random_seed(0)
    model = build_inception_v3()
    src = Source("inception_v3_299", "keras", "", PreprocessingSpec(), [], None, "",
                 keras_model=model)
    calib = np.random.RandomState(1).uniform(-1, 1, (16, 299, 299, 3)).astype(np.float32)
    for key, recipe in (("fp32", "fp32"), ("dynamic_wi8_afp32", "dynamic_wi8_afp32"),
                        ("static_wi8_ai8 (converter)", "static_wi8_ai8")):
        data = align(convert_bytes(src, RECIPES[recipe], calib))
        with open(paths[key], "wb") as f:
            f.write(data)
        if key.startswith("static"):
            with open(paths["static_wi8_ai8 (float islands)"], "wb") as f:
                f.write(float_islands(data)[0])
        log(f"[int8] converted {key}", flush=True)
    np.save(os.path.join(out_dir, "calib.npy"), calib)
    model.save(keras_path)
    return {"tflite": paths, "keras": keras_path}


def peers_python(log=print) -> str:
    exe = os.path.join(PEERS, "bin", "python")
    if not os.path.exists(exe):
        log(f"[int8] creating the peers' environment {PEERS}", flush=True)
        # system site packages: the timer also runs LiteRT (and the ONNX export TensorFlow)
        # from the main environment; what the peers install stays in theirs
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", PEERS],
                       check=True)
        subprocess.run([exe, "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)
    return exe


PEER_PREP = r"""
import json, os, sys
import numpy as np
job = json.load(open(sys.argv[1]))
calib = np.load(job["calib"])
out = {}
try:
    import openvino as ov, nncf
    core = ov.Core()
    m = core.read_model(job["fp32"])
    q = nncf.quantize(m, nncf.Dataset([c[None] for c in calib]), subset_size=len(calib))
    ov.save_model(q, os.path.join(job["dir"], "ov_int8.xml"))
    ov.save_model(m, os.path.join(job["dir"], "ov_fp32.xml"))
    out["openvino"] = ov.__version__
except Exception as e:
    out["openvino_error"] = f"{type(e).__name__}: {e}"[:300]
try:
    import subprocess
    onnx_fp32 = os.path.join(job["dir"], "iv3_299.onnx")
    if not os.path.exists(onnx_fp32):
        subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--tflite", job["fp32"],
                        "--output", onnx_fp32, "--opset", "17"], check=True,
                       capture_output=True, text=True)
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    import onnxruntime as ort
    name = ort.InferenceSession(onnx_fp32).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{name: c[None]} for c in calib])
        def get_next(self):
            return next(self.it, None)

    pre = os.path.join(job["dir"], "iv3_299_pre.onnx")
    quant_pre_process(onnx_fp32, pre)
    quantize_static(pre, os.path.join(job["dir"], "iv3_299_int8.onnx"), Reader(),
                    quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    out["onnxruntime"] = ort.__version__
except Exception as e:
    out["onnxruntime_error"] = f"{type(e).__name__}: {e}"[:300]
try:  # 4-bit weights: Google's AI Edge Quantizer, dynamic int4 weights for CONV_2D/FC
    from ai_edge_quantizer import quantizer, recipe
    q = quantizer.Quantizer(job["fp32"])
    q.load_quantization_recipe(recipe.dynamic_wi4_afp32())
    q.quantize().export_model(os.path.join(job["dir"], "iv3_299_dynamic_wi4_afp32.tflite"),
                              overwrite=True)
    out["int4"] = "ai-edge-quantizer"
except Exception as e:
    out["int4_error"] = f"{type(e).__name__}: {e}"[:300]
json.dump(out, open(job["result"], "w"))
"""

TIMER = r"""
import json, sys, time
import numpy as np
job = json.load(open(sys.argv[1]))
sys.path.insert(0, job["root"])
from contract.litert import TFLiteModel
runners = {}
x = np.random.RandomState(0).uniform(-1, 1, (1, 299, 299, 3)).astype(np.float32)
for name, p in job["tflite"].items():
    m = TFLiteModel(p, num_threads=job["threads"])
    xi = m.quantize_input(x)
    runners[name] = (lambda m=m, xi=xi: m.invoke_raw(xi))
    d = m.delegation("xnnpack")
    job.setdefault("delegation", {})[name] = [d["delegated"], d["nodes"], d["partitions"]]
for name, p in job.get("openvino", {}).items():
    import openvino as ov
    core = ov.Core()
    c = core.compile_model(p, "CPU", {"INFERENCE_NUM_THREADS": job["threads"],
                                      "PERFORMANCE_HINT": "LATENCY"})
    req = c.create_infer_request()
    runners[name] = (lambda req=req: req.infer([x]))
for name, p in job.get("onnx", {}).items():
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = job["threads"]
    so.inter_op_num_threads = 1
    # no spin-waiting after a run: spinning threads would steal the cores from the next model
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    s = ort.InferenceSession(p, so, providers=["CPUExecutionProvider"])
    iname = s.get_inputs()[0].name
    runners[name] = (lambda s=s, iname=iname: s.run(None, {iname: x}))
for _ in range(job["warmup"]):
    for r in runners.values():
        r()
times = {k: [] for k in runners}
keys = list(runners)
for i in range(job["runs"]):  # the order rotates each round: no model always follows another
    for k in keys[i % len(keys):] + keys[:i % len(keys)]:
        t = time.perf_counter(); runners[k](); times[k].append((time.perf_counter() - t) * 1e3)
json.dump({"median_ms": {k: float(np.median(v)) for k, v in times.items()},
           "delegation": job.get("delegation", {})}, open(job["result"], "w"))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "iv3-int8"))
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peers", action="store_true", help="OpenVINO + NNCF and ONNX Runtime too")
    a = ap.parse_args(argv)
    built = build(a.dir)
    job = {"root": ROOT, "tflite": built["tflite"], "threads": a.threads, "runs": a.runs,
           "warmup": a.warmup, "result": os.path.join(a.dir, "times.json")}
    exe = sys.executable
    notes = {}
    if a.peers:
        exe = peers_python()
        prep = os.path.join(a.dir, "peer_job.json")
        with open(prep, "w") as f:
            json.dump({"fp32": built["tflite"]["fp32"], "calib": os.path.join(a.dir, "calib.npy"),
                       "dir": a.dir, "result": os.path.join(a.dir, "peers.json")}, f)
        subprocess.run([exe, "-c", PEER_PREP, prep], check=True)
        notes = json.load(open(os.path.join(a.dir, "peers.json")))
        if "openvino" in notes:
            job["openvino"] = {"OpenVINO fp32": os.path.join(a.dir, "ov_fp32.xml"),
                               "OpenVINO+NNCF int8": os.path.join(a.dir, "ov_int8.xml")}
        if "int4" in notes:
            job["tflite"] = dict(job["tflite"], **{"dynamic_wi4_afp32 (ai-edge-quantizer)":
                                                   os.path.join(a.dir,
                                                                "iv3_299_dynamic_wi4_afp32.tflite")})
        if "onnxruntime" in notes:
            job["onnx"] = {"ONNX Runtime int8 (QDQ)": os.path.join(a.dir, "iv3_299_int8.onnx")}
    path = os.path.join(a.dir, "timer_job.json")
    with open(path, "w") as f:
        json.dump(job, f)
    subprocess.run([exe, "-c", TIMER, path], check=True)
    res = json.load(open(job["result"]))
    med = res["median_ms"]
    base, dyn = med["fp32"], med["dynamic_wi8_afp32"]
    print(f"299 px, batch 1, {a.threads} threads, {a.runs} interleaved rounds "
          f"(medians; ratios are the result, times move with the CPU)")
    print("| model | median ms | / fp32 | / dynamic int8 | MB | XNNPACK nodes (partitions) |")
    print("|---|---|---|---|---|---|")
    files = dict(job["tflite"], **{k: p for k, p in job.get("onnx", {}).items()})
    for k, v in med.items():
        d = res["delegation"].get(k)
        size = f"{os.path.getsize(files[k]) / 1e6:.1f}" if k in files else ""
        print(f"| {k} | {v:.2f} | {v / base:.3f} | {v / dyn:.3f} | {size} | "
              + (f"{d[0]}/{d[1]} ({d[2]})" if d else "-") + " |")
    ours = min((v, k) for k, v in med.items() if k in built["tflite"])
    if "OpenVINO+NNCF int8" in med:
        print(f"our fastest ({ours[1]}) / OpenVINO+NNCF int8: "
              f"{ours[0] / med['OpenVINO+NNCF int8']:.3f}")
    for k, v in notes.items():
        if k.endswith("_error"):
            print(f"{k[:-6]}: not measured: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
