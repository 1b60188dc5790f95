"""The main job as data: a named preset (``fashion_mnist_demo``), a user's YAML/JSON file, and
``--set key=value`` overrides resolve to one ``JobConfig``; ``plan()`` turns it into stages.

A user's own job needs no code: point ``train_sets`` at their data (``data.path=...``) or
``train_config`` at their recipe (e.g. the ImageNet preset), or skip training with ``model:``
(a trained export folder, Keras file or SavedModel).
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Dict, List, Optional

from contract import recipes
from contract.records import DEVICE_ROWS_FILES, RowsFile
from contract.exitcodes import NOTHING_CHOSEN, PARTIAL, ROWS_FAILED
from contract.manifest import safe_name, source_name
from pipeline.choose import Device, Goal
from pipeline.runner import Stage

PY = sys.executable or "python3"


@dataclasses.dataclass
class JobConfig:
    name: str = "demo"
    # training (train/): a preset, an optional config file and --set overrides
    train_preset: str = "inception_v3_fashion_mnist_demo"
    train_config: Optional[str] = None
    train_sets: List[str] = dataclasses.field(default_factory=list)
    model: Optional[str] = None  # a trained model: no training stage
    # quantization-aware fine-tuning (quantize/)
    qat: bool = True
    # a QAT preset, or None: the float run's own config with qat_settings on top (any model,
    # any data); a job that changes the training keys and not this one gets None
    qat_preset: Optional[str] = "inception_v3_fashion_mnist_demo_qat"
    qat_settings: str = "finetune"
    qat_sets: List[str] = dataclasses.field(default_factory=list)
    # conversion (convert/)
    recipes: List[str] = dataclasses.field(default_factory=lambda: [
        "fp32", "fp16", "dynamic_wi8_afp32", "static_wi8_ai8", "static_wi8_ai8_int8io",
        "static_wi8_ai8_uint8io", "static_wi8_ai16"])
    qat_recipes: List[str] = dataclasses.field(default_factory=lambda: [
        "static_wi8_ai8", "static_wi8_ai8_uint8io"])
    coreml_variants: List[str] = dataclasses.field(default_factory=lambda: [
        "fp16", "fp32", "wi8_afp16", "wlut6_afp16", "wlut4_afp16", "wi8_ai8"])
    # Core ML W8A8 from the QAT-fine-tuned weights (checked against the QAT Keras model, whose
    # activations are quantized too; a weight-only variant would differ by design)
    qat_coreml_variants: List[str] = dataclasses.field(default_factory=lambda: ["wi8_ai8"])
    edgetpu: bool = True  # the Edge TPU report (and compiled model, if the compiler is here)
    calib_images: int = 200
    data_path: Optional[str] = None  # where the data lives at conversion/evaluation time
    # evaluation (edge_eval/)
    eval_images: Optional[int] = None  # None: the whole test split
    threads: int = 2
    # stages that may run at once (QAT fine-tunes while the float model converts: QAT keeps
    # ~1.2 of 2 cores busy, conversion ~1); training, evaluation, benchmark and choice run alone
    parallel_stages: int = 2
    # artifacts evaluated at once (each worker gets threads // eval_workers threads)
    eval_workers: int = 2
    # also evaluate through MediaPipe Tasks (edge_eval --runtime): auto (where installed),
    # mediapipe (required), litert (the harness alone)
    eval_runtime: str = "auto"
    bench_runs: int = 50
    # the accuracy-aware recipe choice
    budget_points: float = 0.3  # allowed top-1 drop against float, in points
    goal: str = "smallest"  # pipeline.choose.Goal: smallest | fastest
    min_agreement: Optional[float] = None  # also require this argmax agreement with float
    integer_only: bool = False  # only integer-only graphs (no float op in the op list)
    # where the model will run: cpu | gpu | npu | edgetpu (pipeline.choose.Device): each admits
    # only the graphs it runs whole; a phone's or board's rows for it decide when present
    target: str = "cpu"
    choice_max_steps: int = 4
    # held-out images the choice decides on (a seeded sample of the data's holdout split:
    # data.holdout_path, an image folder's validation/, or training images; never the test
    # split, which the report quotes); None: all of them
    choice_images: Optional[int] = 5000
    # the report stage fails the job (exit 1) when no artifact meets the budget; false: the
    # report only says so
    gate: bool = True

    def __post_init__(self):
        safe_name(self.name, "the job's name")  # runs/<name>, artifacts/<name>, reports/<name>
        if self.eval_runtime not in ("auto", "litert", "mediapipe"):
            raise ValueError("eval_runtime must be auto, litert or mediapipe. Received: "
                             f"{self.eval_runtime!r}")
        if self.goal not in [g.value for g in Goal]:
            raise ValueError(f"goal must be {' or '.join(g.value for g in Goal)}. Received: "
                             f"{self.goal!r}")
        if self.eval_workers < 1 or self.threads < 1 or self.parallel_stages < 1:
            raise ValueError(f"threads, eval_workers and parallel_stages must be >= 1. Received: "
                             f"{self.threads}, {self.eval_workers}, {self.parallel_stages}")
        if self.target not in [d.value for d in Device]:
            raise ValueError(f"target must be one of {[d.value for d in Device]}. Received: "
                             f"{self.target!r}")
        if self.budget_points < 0:
            raise ValueError(f"budget_points must be >= 0. Received: {self.budget_points}")
        # every recipe through the one parser before any stage runs: a typo is refused here
        for key, parse in (("recipes", recipes.parse_recipes),
                           ("qat_recipes", recipes.parse_recipes),
                           ("coreml_variants", recipes.parse_variants),
                           ("qat_coreml_variants", recipes.parse_variants)):
            names = getattr(self, key)
            if names:
                try:
                    parse(names)
                except recipes.RecipeError as e:
                    raise ValueError(f"job key {key}: {e}") from None

    @property
    def run_dir(self) -> str:
        return os.path.join("runs", self.name)

    @property
    def qat_run_dir(self) -> str:
        return os.path.join("runs", f"{self.name}_qat")

    @property
    def artifacts_dir(self) -> str:
        return os.path.join("artifacts", self.name)

    @property
    def reports_dir(self) -> str:
        return os.path.join("reports", self.name)

    @property
    def float_model(self) -> str:
        return self.model or os.path.join(self.run_dir, "export")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# the tiny model as the tests train it: enough steps (and BN moving averages quick enough) for
# the eval-mode model to compute a real function - 2 epochs of 256 images gave chance-level
# outputs whose int8 drift failed the self-check on some CPUs - with batches in order
TINY_TRAIN_SETS = ["model.aux_logits=false", "train.epochs=3", "data.max_train_examples=2048",
                   "model.bn_momentum=0.9", "optim.base_learning_rate=0.002",
                   "data.deterministic=true"]

PRESETS: Dict[str, JobConfig] = {
    "fashion_mnist_demo": JobConfig(),
    # the smallest end-to-end job (tests, smoke runs): tiny model, few images
    "tiny": JobConfig(name="tiny", train_preset="tiny_test", train_sets=list(TINY_TRAIN_SETS),
                      qat_preset="tiny_test_qat",
                      recipes=["fp32", "static_wi8_ai8"], qat_recipes=["static_wi8_ai8"],
                      coreml_variants=["fp16"], qat_coreml_variants=["wi8_ai8"],
                      calib_images=32, eval_images=200, choice_images=200, bench_runs=10,
                      eval_runtime="litert"),
}


def resolve(preset: str = "fashion_mnist_demo", config_file: Optional[str] = None,
            sets=()) -> JobConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown job preset {preset!r}; presets: {', '.join(PRESETS)}")
    cfg = dataclasses.asdict(PRESETS[preset])
    over: dict = {}
    if config_file:
        with open(config_file) as f:
            text = f.read()
        over.update((json.loads(text) if config_file.endswith(".json") else
                     __import__("yaml").safe_load(text)) or {})
    from train.config import coerce, parse_sets

    over.update(parse_sets(sets))
    types = {f.name: f.type for f in dataclasses.fields(JobConfig)}
    for k, v in over.items():
        if k not in cfg:
            raise ValueError(f"unknown job key {k!r}; keys: {', '.join(cfg)}")
        cfg[k] = coerce(cfg[k], types[k], v)
    if "qat_preset" not in over and any(k in over for k in TRAINING_KEYS):
        cfg["qat_preset"] = None  # the preset's QAT was tuned for its own model and data
    return JobConfig(**cfg)


TRAINING_KEYS = ("train_preset", "train_config", "train_sets", "model")


def _train_config(job: JobConfig):
    from train.config import resolve as resolve_train

    return resolve_train(job.train_preset, job.train_config, tuple(job.train_sets))


def _data_dir(train_cfg) -> Optional[str]:
    """The dataset folder the train stage reads (keys the stage), if it can be named."""
    from train.data import Source, fashion_mnist_dir

    d = train_cfg.data
    if d.source == Source.FASHION_MNIST:
        try:
            return fashion_mnist_dir(d.path)
        except Exception:
            return d.path
    return d.path


def _user_model_name(path: str) -> Optional[str]:
    for cand in (os.path.join(path, "config.json"),
                 os.path.join(os.path.dirname(path), "config.json")):
        if os.path.isfile(cand):
            with open(cand) as f:
                return json.load(f).get("name")
    return None


def plan(job: JobConfig) -> List[Stage]:
    """The stages of a job, in order."""
    stages: List[Stage] = []
    conv_common = ["--calib-images", str(job.calib_images)] + (
        ["--data-path", job.data_path] if job.data_path else [])
    if job.model is None:
        tcfg = _train_config(job)
        argv = [PY, "-m", "train", "--preset", job.train_preset, "--run-dir", job.run_dir]
        if job.train_config:
            argv += ["--config", job.train_config]
        for s in job.train_sets:
            argv += ["--set", s]
        data = _data_dir(tcfg)
        stages.append(Stage(
            "train", argv, inputs=[p for p in (data, job.train_config) if p],
            outputs=[os.path.join(job.run_dir, "export")],
            config={"train": tcfg.to_dict() if hasattr(tcfg, "to_dict") else repr(tcfg)},
        exclusive=True, description=f"train {tcfg.name} into {job.run_dir}"))
        float_name = tcfg.name
        float_after = ["train"]
    else:
        if not os.path.exists(job.model):
            raise ValueError(f"model {job.model} does not exist")
        float_name = _user_model_name(job.model)
        float_after = []
    fname = source_name(float_name, job.float_model)
    if job.qat:
        argv = [PY, "-m", "quantize", "qat", *(["--preset", job.qat_preset] if job.qat_preset
                                                else ["--settings", job.qat_settings]),
                "--float", job.float_model, "--run-dir", job.qat_run_dir]
        for s in job.qat_sets:
            argv += ["--set", s]
        stages.append(Stage(
            "qat", argv, inputs=[job.float_model], outputs=[os.path.join(job.qat_run_dir, "export")],
        after=float_after,
            description="quantization-aware fine-tuning from the float model"))
    qat_model = os.path.join(job.qat_run_dir, "export")
    qname = source_name(_qat_name(job, float_name), qat_model, qat=True) if job.qat else None
    plain = recipes.parse_recipes(job.recipes) if job.recipes else []
    if job.edgetpu and not any(r.name == "static_wi8_ai8_uint8io" for r in plain):
        plain.append(recipes.get_recipe("static_wi8_ai8_uint8io"))
    wanted = [  # (stage, model, its source name, specs, runs after, what it makes)
        ("convert", job.float_model, fname, plain, float_after,
         "every TFLite recipe from the float model, each checked against it"),
        ("convert_coreml", job.float_model, fname,
         recipes.parse_variants(job.coreml_variants) if job.coreml_variants else [],
         float_after, "Core ML packages, checked by the ML Program reference evaluator"),
        ("convert_qat", qat_model, qname,
         recipes.parse_recipes(job.qat_recipes) if job.qat and job.qat_recipes else [],
         ["qat"], "int8 TFLite from the QAT model"),
        ("convert_coreml_qat", qat_model, qname,
         recipes.parse_variants(job.qat_coreml_variants)
         if job.qat and job.qat_coreml_variants else [],
         ["qat"], "Core ML int8 from the QAT-fine-tuned weights"),
    ]
    for name, model, source, specs, after, what in wanted:
        if specs:  # conversions into one folder run one after another (one manifest)
            stages.append(convert_stage(job, name, model, source, specs, after + [
                s.name for s in stages if s.name.startswith("convert")], what))
    conv = [s.name for s in stages if s.name.startswith("convert")]
    art = job.artifacts_dir
    rep = job.reports_dir
    eval_common = (["--images", str(job.eval_images)] if job.eval_images else []) + (
        ["--data-path", job.data_path] if job.data_path else [])
    stages.append(Stage(
        "evaluate", [PY, "-m", "edge_eval", "accuracy", art, "--out", rep, "--strict",
                     "--runtime", job.eval_runtime,
                     "--threads", str(max(1, job.threads // job.eval_workers)),
                     "--workers", str(job.eval_workers)] + eval_common,
        inputs=[art, job.float_model], outputs=[os.path.join(rep, RowsFile.ACCURACY)],
        after=conv, exclusive=True, partial_codes=(ROWS_FAILED,),
        description="top-1/top-5 and drift of every artifact on the test split (and through "
                    "MediaPipe Tasks where it is installed)"))
    held = os.path.join(rep, "holdout")
    stages.append(Stage(
        "evaluate_holdout", [PY, "-m", "edge_eval", "accuracy", art, "--out", held, "--strict",
                             "--split", "holdout", "--runtime", "litert",
                             "--threads", str(max(1, job.threads // job.eval_workers)),
                             "--workers", str(job.eval_workers)]
        + (["--images", str(job.choice_images)] if job.choice_images else [])
        + (["--data-path", job.data_path] if job.data_path else []),
        inputs=[art, job.float_model], outputs=[os.path.join(held, RowsFile.ACCURACY)],
        after=conv, exclusive=True, partial_codes=(ROWS_FAILED,),
        description="the same on held-out images (what the recipe choice decides on)"))
    stages.append(Stage(
        "benchmark", [PY, "-m", "edge_eval", "bench", art, "--out", rep, "--strict", "--threads",
                      str(job.threads), "--runs", str(job.bench_runs)],
        inputs=[art], outputs=[os.path.join(rep, RowsFile.LATENCY)],
        after=conv, exclusive=True, partial_codes=(ROWS_FAILED,),
        description="host latency (LiteRT + XNNPACK)"))
    stages.append(Stage(
        "choose", [PY, "-m", "pipeline.choose", art, "--results", rep, "--budget",
                   str(job.budget_points), "--goal", job.goal, "--target", job.target,
                   "--max-steps",
                   str(job.choice_max_steps),
                   "--threads", str(job.threads), "--bench-runs", str(job.bench_runs),
                   "--calib-images", str(job.calib_images), "--select-on", held]
        + (["--choice-images", str(job.choice_images)] if job.choice_images else [])
        + (["--min-agreement", str(job.min_agreement)] if job.min_agreement is not None else [])
        + (["--integer-only"] if job.integer_only else []) + eval_common,
        # a phone's or a board's rows (edge_eval android accuracy / pair, run outside the job)
        # decide for the target's accelerator: a new one makes the choice again
        inputs=[art, os.path.join(rep, RowsFile.ACCURACY), os.path.join(rep, RowsFile.LATENCY),
                os.path.join(held, RowsFile.ACCURACY)]
        + [os.path.join(rep, f) for f in DEVICE_ROWS_FILES],
        outputs=[os.path.join(rep, "choice.json")],
       
        after=["evaluate", "evaluate_holdout", "benchmark"],
        exclusive=True, ok_codes=(0, NOTHING_CHOSEN),  # "nothing fits" is a decision; the gate
        # in the report stage acts on it
        description=f"the {job.goal} artifact within {job.budget_points} points of float"))
    stages.append(Stage(
        "report", [PY, "-m", "pipeline.report", rep, "--title",
                   f"{job.name}: Inception-v3 from training to the edge"]
        + (["--require-choice"] if job.gate else []),
        inputs=[os.path.join(rep, n) for n in (RowsFile.ACCURACY, RowsFile.LATENCY, "choice.json",
                                               RowsFile.CHOICE, *DEVICE_ROWS_FILES)] + [art],
        outputs=[os.path.join(rep, "report.md")],
        after=["evaluate", "benchmark"] + (["choose"] if job.gate else []),
        description="report.md, results.csv/json, plots"
        + (f"; fails unless an artifact is within {job.budget_points} points" if job.gate
           else "")))
    return stages


def convert_stage(job: JobConfig, name: str, model: str, source: str, specs,
                  after: List[str], description: str) -> Stage:
    """One conversion stage: ``specs`` (TFLite recipes, or Core ML variants) of ``model`` into
    the job's artifacts folder; its outputs are the registry's file names of those specs."""
    coreml = specs[0].target == "coreml"
    edgetpu = job.edgetpu and any(s.name == "static_wi8_ai8_uint8io" for s in specs)
    argv = [PY, "-m", "convert", model, "--out", job.artifacts_dir]
    argv += (["--targets", "coreml", "--coreml-variants", ",".join(s.name for s in specs)]
             if coreml else ["--recipes", *[s.name for s in specs]]
             + (["--targets", "tflite,edgetpu"] if edgetpu else []))
    argv += ["--calib-images", str(job.calib_images)] + (
        ["--data-path", job.data_path] if job.data_path else [])
    return Stage(name, argv, inputs=[model],
                 outputs=[os.path.join(job.artifacts_dir, recipes.file_name(source, s))
                          for s in specs],
                 after=after, partial_codes=(PARTIAL,), description=description)


def _qat_name(job: JobConfig, float_name: Optional[str]) -> Optional[str]:
    """The QAT run's name: its preset's, or the float run's with ``_qat`` (what
    quantize.qat.qat_config_from_float names it)."""
    from train.config import resolve as resolve_train

    names = [s.split("=", 1)[1] for s in job.qat_sets if s.startswith("name=")]
    if names:
        return names[-1]
    if job.qat_preset is None:
        return None if float_name is None else (
            float_name if float_name.endswith("_qat") else float_name + "_qat")
    try:
        return resolve_train(job.qat_preset, None, tuple(job.qat_sets)).name
    except ValueError:
        return None
