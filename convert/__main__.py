"""python -m convert MODEL --out DIR --targets tflite,coreml: checked artifacts + manifest.json.

MODEL is an export folder from train/ (or quantize/'s QAT), a .keras/.h5 file, or a SavedModel
folder, with its preprocessing.json beside it. TFLite artifacts are named {model}_{recipe}.tflite,
Core ML ones {model}_coreml_{variant}.mlpackage; all are listed in DIR/manifest.json.

Exit status: 0 every artifact passed its check; 3 some failed theirs (the others are written and
listed, the manifest names the failures); 2 bad input; 1 a crash (Python's status for an
uncaught exception: never taken for "partial").
"""
from __future__ import annotations

import argparse
import enum
import sys

from contract import exitcodes, recipes
from contract.manifest import ManifestError

DEFAULT_RECIPES = "fp32,fp16,dynamic_wi8_afp32,static_wi8_ai8"


class Target(str, enum.Enum):
    TFLITE = "tflite"  # every recipe (contract/recipes.py), with TFLite metadata
    COREML = "coreml"  # every Core ML variant (contract/recipes.py)
    EDGETPU = "edgetpu"  # the uint8-I/O full-integer model, its report, the compiled model


TARGETS = tuple(t.value for t in Target)


def _epilog() -> str:
    return ("TFLite recipes (--recipes):\n" + recipes.describe() + "\n\nNaming grammar:\n"
            + recipes.GRAMMAR + "\n\nCore ML variants (--coreml-variants):\n"
            + recipes.describe_variants())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m convert", description=__doc__.splitlines()[0],
                                epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--out", default="artifacts", help="artifacts folder (default: artifacts)")
    p.add_argument("--recipes", nargs="+", default=None,
                   help=f"recipe names, comma or space separated, or all (default: "
                        f"{DEFAULT_RECIPES}; with --targets all: all)")
    p.add_argument("--calib-images", type=int, default=None,
                   help="representative images from the training data (default 200; with "
                        "--calib-npy: the whole file unless given)")
    p.add_argument("--calib-npy", help="calibration images as a float32 .npy [N, H, W, 3], "
                                       "already preprocessed (instead of the training data)")
    p.add_argument("--data-path", help="where the model's dataset lives, if not where it was "
                                       "trained (overrides config.json's data.path)")
    p.add_argument("--data-source", choices=["fashion_mnist", "image_folder", "imagenet"],
                   help="the dataset's kind, for a model with no config.json (with --data-path; "
                        "imagenet: TFRecord shards, train-* calibrate and validation-* check)")
    p.add_argument("--check-npy", help="preprocessed images [N, H, W, 3] to check against "
                                       "(default: the model's evaluation split)")
    p.add_argument("--check-images", type=int, default=64,
                   help="evaluation images each artifact is checked on (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--targets", default="tflite",
                   help="comma-separated, or all (default: tflite; all also means --recipes "
                        "all): " + "; ".join(f"{t.value}" for t in Target) + ". edgetpu: the "
                        "uint8-I/O full-integer model, its Edge TPU report, and the compiled "
                        "model when edgetpu_compiler is installed")
    p.add_argument("--require-edgetpu-compiler", action="store_true",
                   help="fail when edgetpu_compiler is missing (default: report without it)")
    p.add_argument("--edgetpu-segments", type=int, default=1,
                   help="compile into N segments for N pipelined Edge TPUs (a model larger "
                        "than one TPU's ~8 MB on-chip cache); they run together through "
                        "pycoral's PipelinedModelRunner, not one by one")
    p.add_argument("--coreml-variants", default=None,
                   help=f"Core ML variants (default: all: {recipes.DEFAULT_VARIANTS})")
    p.add_argument("--coreml-target", help="minimum deployment target, e.g. iOS17 (default: "
                                           "the least each variant needs)")
    p.add_argument("--author", default="", help="model metadata (TFLite and Core ML)")
    p.add_argument("--license", default="", help="model metadata (TFLite and Core ML)")
    p.add_argument("--model-version", default="", help="model metadata (TFLite and Core ML)")
    p.add_argument("--no-metadata", action="store_true",
                   help="do not embed TFLite metadata (labels, normalization) in .tflite files")
    g = p.add_argument_group(
        "a model trained elsewhere (no preprocessing.json beside it)",
        "name its preprocessing, or give the numbers; the input size comes from the model, and "
        "what you give is written into the artifacts as preprocessing.json")
    g.add_argument("--preprocessing", metavar="NAME",
                   help="inception ([-1, 1], keras.applications.InceptionV3), unit ([0, 1]), "
                        "caffe (BGR, ImageNet's BGR means subtracted), torch (RGB / 255, "
                        "ImageNet's mean and std per channel)")
    g.add_argument("--scale", type=float, help="model input = pixel * scale + offset")
    g.add_argument("--offset", type=float)
    g.add_argument("--crop-fraction", type=float, help="central crop before resizing "
                   "(default 0.875, the paper's)")
    g.add_argument("--color-order", choices=["RGB", "BGR"])
    g.add_argument("--labels", help="labels.txt for the model's outputs (one per line)")
    p.add_argument("--unsafe-allow-model-code", action="store_true",
                   help="load model files that carry Python code (Lambda layers, arbitrary tf.* calls): "
                        "only for files you trust; refused otherwise")
    return p


def request(args):
    """The ``convert.api.Request`` the flags describe (RecipeError/ConvertError: bad flags)."""
    from convert.api import Request
    from convert.coreml import check_target

    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    every = targets == ["all"]
    if every:
        targets = list(TARGETS)
    bad = [t for t in targets if t not in TARGETS]
    if bad or not targets:
        raise ValueError(f"unknown target(s) {bad or targets}; valid: {', '.join(TARGETS)}")
    names = args.recipes or (["all"] if every else [DEFAULT_RECIPES])
    if [r.strip() for r in ",".join(names).split(",") if r.strip()] == ["all"]:
        names = [",".join(recipes.RECIPES)]
    variants = []
    if "coreml" in targets:
        variants = recipes.parse_variants(args.coreml_variants or recipes.DEFAULT_VARIANTS)
        check_target(args.coreml_target, variants)
    given = {"crop_fraction": args.crop_fraction, "scale": args.scale, "offset": args.offset,
             "color_order": args.color_order}
    pre = None
    if args.preprocessing or any(v is not None for v in given.values()):
        pre = dict({k: v for k, v in given.items() if v is not None},
                   name=args.preprocessing or "inception")
    return Request(
        model=args.model, out=args.out,
        recipes=recipes.parse_recipes(names) if "tflite" in targets else [],
        variants=variants, edgetpu="edgetpu" in targets,
        require_edgetpu_compiler=args.require_edgetpu_compiler,
        edgetpu_segments=args.edgetpu_segments, calib_images=args.calib_images,
        calib_npy=args.calib_npy, data_path=args.data_path, data_source=args.data_source,
        check_npy=args.check_npy, check_images=args.check_images, seed=args.seed,
        coreml_target=args.coreml_target,
        metadata=None if args.no_metadata else {"author": args.author, "license": args.license,
                                                "version": args.model_version},
        preprocessing=pre, labels=args.labels)


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if __name__ == "__main__":  # SIGTERM cleans up as Ctrl-C does (work folders, partial files)
        import signal

        from contract.proc import term_as_interrupt

        signal.signal(signal.SIGTERM, term_as_interrupt)
    if args.unsafe_allow_model_code:
        from train.safe_load import allow_code

        allow_code()
    if args.require_edgetpu_compiler:
        import shutil

        from convert.edgetpu import COMPILER, INSTALL_HINT

        if shutil.which(COMPILER) is None:
            print(f"error: {INSTALL_HINT}", file=sys.stderr)
            return exitcodes.BAD_INPUT
    from convert import api
    from train.data import DataError
    from train.source import ModelError

    try:
        req = request(args)
        src = api.load(req)
        manifest = api.convert(req, src)
    except (ValueError, ModelError, ManifestError, DataError, OSError) as e:
        # RecipeError, ConvertError; OSError: a folder where an artifact goes, a missing file
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.BAD_INPUT
    failed = api.failures(manifest, src.sha256)
    for f in failed:
        msg = f["error"] if f["error"].startswith(f["recipe"]) else f"{f['recipe']}: {f['error']}"
        print(f"error: {msg}", file=sys.stderr)
    if failed:
        return exitcodes.PARTIAL
    print(f"[convert] wrote {args.out}/manifest.json")
    return exitcodes.OK


if __name__ == "__main__":
    sys.exit(main())
