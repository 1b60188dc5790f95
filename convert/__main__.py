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

DEFAULT_RECIPES = "fp32,fp16,dynamic_wi8_afp32,static_wi8_ai8"
PARTIAL = 3  # some artifacts failed their checks; 1 stays a crash


class Target(str, enum.Enum):
    TFLITE = "tflite"  # every recipe (quantize/recipes.py), with TFLite metadata
    COREML = "coreml"  # every Core ML variant (convert/coreml.py)
    EDGETPU = "edgetpu"  # the uint8-I/O full-integer model, its report, the compiled model


TARGETS = tuple(t.value for t in Target)


def _epilog() -> str:
    from convert.coreml import describe as describe_coreml
    from quantize.recipes import __doc__ as grammar, describe

    return ("TFLite recipes (--recipes):\n" + describe() + "\n\n" + grammar.split("\n\n", 1)[1]
            + "\nCore ML variants (--coreml-variants):\n" + describe_coreml())


def main(argv=None) -> int:
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
    p.add_argument("--coreml-variants", default=None,
                   help="Core ML variants (default: all: fp16,fp32,wi8_afp16,wlut6_afp16,"
                        "wlut4_afp16,wi8_ai8)")
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
    args = p.parse_args(argv)
    if __name__ == "__main__":  # SIGTERM cleans up as Ctrl-C does (work folders, partial files)
        import signal

        from contract.proc import term_as_interrupt

        signal.signal(signal.SIGTERM, term_as_interrupt)
    if args.unsafe_allow_model_code:
        from train.safe_load import allow_code

        allow_code()

    from quantize.recipes import RecipeError, parse_recipes

    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    every = targets == ["all"]
    if every:
        targets = list(TARGETS)
    if args.recipes is None:
        args.recipes = ["all"] if every else [DEFAULT_RECIPES]
    if [r.strip() for r in ",".join(args.recipes).split(",") if r.strip()] == ["all"]:
        from quantize.recipes import RECIPES

        args.recipes = [",".join(RECIPES)]
    bad = [t for t in targets if t not in TARGETS]
    if bad or not targets:
        print(f"error: unknown target(s) {bad or targets}; valid: {', '.join(TARGETS)}",
              file=sys.stderr)
        return 2
    if args.require_edgetpu_compiler:
        import shutil

        from convert.edgetpu import COMPILER, INSTALL_HINT

        if shutil.which(COMPILER) is None:
            print(f"error: {INSTALL_HINT}", file=sys.stderr)
            return 2
    try:
        recipes = parse_recipes(args.recipes) if "tflite" in targets else []
        if "edgetpu" in targets and "static_wi8_ai8_uint8io" not in {r.name for r in recipes}:
            recipes += parse_recipes("static_wi8_ai8_uint8io")
        variants = []
        if "coreml" in targets:
            from convert.coreml import DEFAULT_VARIANTS, check_target, parse_variants

            variants = parse_variants(args.coreml_variants or DEFAULT_VARIANTS)
            check_target(args.coreml_target, variants)
    except ValueError as e:  # RecipeError, ConvertError
        print(f"error: {e}", file=sys.stderr)
        return 2

    import numpy as np

    from contract.manifest import ManifestError
    from convert.loop import ConvertError
    from convert.tflite import convert_tflite
    from train.data import DataError
    from train.source import ModelError, check_images_array, dataset_images, load_source

    try:
        given = {"crop_fraction": args.crop_fraction, "scale": args.scale,
                 "offset": args.offset, "color_order": args.color_order}
        pre = None
        if args.preprocessing or any(v is not None for v in given.values()):
            pre = dict({k: v for k, v in given.items() if v is not None},
                       name=args.preprocessing or "inception")
        src = load_source(args.model, pre, args.labels)
        if src.labels_generated:
            print(f"[convert] warning: no labels.txt beside {args.model}: the outputs are named "
                  f"class_0 .. class_{len(src.labels) - 1}; give --labels FILE for real names",
                  file=sys.stderr)
        over = {k: v for k, v in (("path", args.data_path), ("source", args.data_source)) if v}
        if args.data_source and not args.data_path:
            raise ConvertError("--data-source needs --data-path (the dataset's folder)")
        if args.data_source == "imagenet":  # the model's outputs are the records' classes
            over["num_classes"] = src.num_outputs
        calib = None
        if (any(r.calibrate for r in recipes) and not src.is_qat) or \
                any(v.activations == "int8" for v in variants):
            if args.calib_npy:  # the user's file is used whole unless --calib-images is given
                calib = np.load(args.calib_npy, allow_pickle=False)
                what = f"calibration data {args.calib_npy}"
                want = args.calib_images or len(calib)
            else:
                want = args.calib_images or 200
                calib = dataset_images(src, "train", want, args.seed, over)
                what = "calibration data"
            calib = check_images_array(calib, src, min(want, 10) or 1, what)
            if len(calib) < want:
                raise ConvertError(f"{what} has {len(calib)} images; --calib-images asks for "
                                   f"{want}")
            calib = calib[:want]
        if args.check_npy:
            check_x = check_images_array(np.load(args.check_npy, allow_pickle=False), src, 1,
                                         args.check_npy)
            check_from = args.check_npy
        elif src.config or over:
            check_x = dataset_images(src, "test", args.check_images, args.seed + 1, over)
            check_from = "evaluation split, seeded"
        else:  # a user's model with no dataset config: seeded noise in the input range
            lo, hi = src.spec.input_range
            check_x = np.random.RandomState(args.seed + 1).uniform(
                lo, hi, (args.check_images, *src.input_shape)).astype(np.float32)
            check_from = "seeded uniform noise (no dataset known: pass --check-npy)"
            print(f"[convert] warning: checking on {check_from}", file=sys.stderr)
        manifest = None
        if recipes:
            manifest = convert_tflite(
                src, recipes, args.out, calib, check_x, check_from=check_from,
                metadata=None if args.no_metadata else {
                    "author": args.author, "license": args.license,
                    "version": args.model_version})
        this_run_failed = {f["recipe"] for f in (manifest or {}).get("failures", [])
                           if f.get("source_sha256") == src.sha256}
        if "edgetpu" in targets and "static_wi8_ai8_uint8io" in this_run_failed:
            # the model the Edge TPU needs failed its own check: that failure is reported
            # (exit PARTIAL) and the other artifacts stand; there is nothing to compile
            print("[convert] Edge TPU: skipped, static_wi8_ai8_uint8io failed its check",
                  file=sys.stderr)
        elif "edgetpu" in targets:
            from convert.edgetpu import annotate

            manifest = annotate(args.out, src.sha256, args.require_edgetpu_compiler)
        if variants:
            from convert.coreml import convert_coreml

            manifest = convert_coreml(src, variants, args.out, calib, check_x,
                                      args.coreml_target, args.author, args.license,
                                      args.model_version, check_from=check_from)
    except (ConvertError, ModelError, ManifestError, DataError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = [f for f in manifest["failures"] if f["source_sha256"] == src.sha256]
    if failed:
        for f in failed:
            msg = f["error"] if f["error"].startswith(f["recipe"]) else \
                f"{f['recipe']}: {f['error']}"
            print(f"error: {msg}", file=sys.stderr)
        return PARTIAL
    print(f"[convert] wrote {args.out}/manifest.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
