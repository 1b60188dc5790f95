"""python -m pipeline: the main job, from data to report, one stage after another.

    python -m pipeline                                  # the Fashion-MNIST demo
    python -m pipeline --config my_job.yaml             # your data, model or recipe
    python -m pipeline --set budget_points=0.1 --set goal=fastest
    python -m pipeline --force convert                  # run a stage even if up to date

Stages (train, qat, convert, convert_coreml, convert_qat, convert_coreml_qat, evaluate,
evaluate_holdout, benchmark, choose, report) are skipped when their inputs, config and code hash as they did when
they last succeeded and their outputs are unchanged; a failing stage blocks only the stages that
need it. Up to parallel_stages stages run at once where they do not depend on each other (their
lines are prefixed with the stage's name). State and timings go to reports/<name>/pipeline.json,
the resolved job config to reports/<name>/job.json.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from contract.proc import term_as_interrupt as on_term  # SIGTERM takes Ctrl-C's path


def main(argv=None) -> int:
    from pipeline import job as jobmod

    p = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.splitlines()[0],
                                epilog="\n".join(__doc__.splitlines()[2:]) + "\njob keys:\n" +
                                "\n".join(f"  {k} (default {v!r})" for k, v in
                                          jobmod.JobConfig().to_dict().items()),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--job", default="fashion_mnist_demo", help="job preset: " +
                   ", ".join(jobmod.PRESETS))
    p.add_argument("--config", help="YAML/JSON file of job keys")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--force", default="", help="comma-separated stages to run even if up to "
                   "date ('all' for every stage)")
    p.add_argument("--print-config", action="store_true", help="print the resolved job and stages")
    args = p.parse_args(argv)

    from pipeline.runner import run_stages

    try:
        job = jobmod.resolve(args.job, args.config, tuple(args.sets))
        stages = jobmod.plan(job)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    force = [f.strip() for f in args.force.split(",") if f.strip()]
    unknown = [f for f in force if f != "all" and f not in {s.name for s in stages}]
    if unknown:
        print(f"error: unknown stage(s) {unknown}; stages: {', '.join(s.name for s in stages)}",
              file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(job.to_dict(), indent=2))
        for s in stages:
            print(f"- {s.name}: {' '.join(s.argv)}")
        return 0
    os.makedirs(job.reports_dir, exist_ok=True)
    state = os.path.join(job.reports_dir, "pipeline.json")
    from pipeline.runner import JobLocked, job_lock

    signal.signal(signal.SIGTERM, on_term)  # stop the stages as on Ctrl-C
    try:
        with job_lock(os.path.join(job.reports_dir, ".job.lock")) as fd:
            with open(os.path.join(job.reports_dir, "job.json"), "w") as f:
                json.dump(job.to_dict(), f, indent=2)
            rows = run_stages(stages, state, force=force, parallel=job.parallel_stages,
                              pass_fds=(fd,))
    except JobLocked as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the running stages were stopped; run the same command again to "
              "finish", file=sys.stderr)
        return 130
    print("\n| stage | status | wall s |\n|---|---|---|")
    for r in rows:
        print(f"| {r['stage']} | {r['status']} | {r['wall_s']:.1f} |")
    bad = [r for r in rows if r["status"] in ("failed", "blocked")]
    if not bad:
        print(f"\nreport: {os.path.join(job.reports_dir, 'report.md')}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
