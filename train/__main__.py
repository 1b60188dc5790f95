"""python -m train: train (or resume) a preset and export it.

    python -m train --preset inception_v3_fashion_mnist_demo --run-dir runs/demo
    python -m train --preset inception_v3_imagenet --set data.path=/data/imagenet \
        --set train.batch_size=1024 --set train.strategy=mirrored --run-dir runs/imagenet
"""
from __future__ import annotations

import argparse
import json
import sys


def _help_epilog() -> str:
    # presets and enum choices are read from the code, so the help cannot drift
    from train.config import (PRESETS, Optimizer, Precision, Schedule, Strategy,
                              WeightDecayMode)
    from train.data import ColorDistortion, Source
    from train.model import Regime

    lines = ["presets:"]
    lines += [f"  {n:34s} {(fn.__doc__ or '').strip().splitlines()[0]}" for n, fn in PRESETS.items()]
    lines += ["", "closed choices (--set KEY=VALUE):"]
    for key, e in (("model.regime", Regime), ("data.source", Source),
                   ("data.color_distortion", ColorDistortion), ("optim.optimizer", Optimizer),
                   ("optim.schedule", Schedule), ("optim.weight_decay_mode", WeightDecayMode),
                   ("train.strategy", Strategy), ("train.precision", Precision)):
        lines.append(f"  {key:20s} {' | '.join(m.value for m in e)}")
    lines += ["", "override order: preset -> --config FILE -> --set (later wins);",
              "the resolved config is saved as RUN_DIR/config.json.",
              "Start a run again in the same --run-dir to resume from its latest checkpoint."]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m train", description=__doc__.splitlines()[0],
                                epilog=_help_epilog(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="inception_v3_fashion_mnist_demo")
    p.add_argument("--config", help="JSON or YAML file of overrides ({section: {key: value}})")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override one field, e.g. --set train.epochs=3 (repeatable)")
    p.add_argument("--run-dir", default=None, help="run folder (default: runs/<preset>)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    args = p.parse_args(argv)

    from train.config import resolve
    from train.data import DataError

    try:
        cfg = resolve(args.preset, args.config, tuple(args.sets))
        if args.print_config:
            print(json.dumps(cfg.to_dict(), indent=2))
            return 0
        from train.trainer import train

        train(cfg, args.run_dir or f"runs/{cfg.name}")
    except (DataError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
