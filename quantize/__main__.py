"""python -m quantize: quantization-aware training, and per-layer quantization error.

    python -m quantize qat --float runs/demo/export --run-dir runs/demo_qat
    python -m quantize debug runs/demo/export --recipe static_wi8_ai8 --out reports/layer_error.json
"""
from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m quantize", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("qat", help="fine-tune a float export with QAT (train/'s loop) and export")
    q.add_argument("--preset", help="a QAT preset (e.g. inception_v3_fashion_mnist_demo_qat); "
                   "default: the float run's own config with --settings on top")
    q.add_argument("--settings", default="finetune",
                   help="QAT settings applied to the float run's config (quantize/qat.py "
                        "train/config.py QAT_SETTINGS; default finetune)")
    q.add_argument("--float", dest="float_export", help="the float export folder "
                   "(default: the preset's quantization.float_checkpoint)")
    q.add_argument("--config")
    q.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    q.add_argument("--run-dir")
    d = sub.add_parser("debug", help="per-layer quantization error (TFLite's debugger), by block")
    d.add_argument("model")
    d.add_argument("--recipe", default="static_wi8_ai8")
    d.add_argument("--images", type=int, default=64)
    d.add_argument("--out", help="write the report as JSON here")
    for sp in (q, d):
        sp.add_argument("--unsafe-allow-model-code", action="store_true",
                        help="load model files that carry Python code (Lambda layers, arbitrary tf.* calls): "
                        "only for files you trust; refused otherwise")
    args = p.parse_args(argv)
    if args.unsafe_allow_model_code:
        from train.safe_load import allow_code

        allow_code()

    from train.data import DataError

    try:
        if args.cmd == "qat":
            import quantize.qat as qat
            from train.config import resolve

            if args.preset or not args.float_export:
                cfg = resolve(args.preset or "inception_v3_fashion_mnist_demo_qat", args.config,
                              tuple(args.sets))
            else:  # the float model's own run config: any preset, any dataset
                cfg = qat.qat_config_from_float(args.float_export, args.settings, args.config,
                                                tuple(args.sets))
            qat.train_qat(cfg, args.run_dir or f"runs/{cfg.name}", args.float_export)
        else:
            from train.source import dataset_images, load_source
            from quantize.debug import layer_error_report
            from contract.recipes import get_recipe

            src = load_source(args.model)
            x = dataset_images(src, "train", args.images, 0)
            report = layer_error_report(src, get_recipe(args.recipe), x)
            for b in report["blocks"]:
                print(f"{b['block']:8s} mean rmse/scale {b['mean_rmse_over_scale']:.3f}  "
                      f"max {b['max_rmse_over_scale']:.3f}  ({b['tensors']} tensors)")
            if args.out:
                with open(args.out, "w") as f:
                    json.dump(report, f, indent=2)
    except (DataError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
