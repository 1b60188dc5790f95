"""Every TFLite recipe and Core ML variant in one registry: typed data, one ``parse()``, one
``file_name()``. TensorFlow-free, so the job, the choice, the report and the board read the same
fields; ``quantize/`` and ``convert/`` keep only how a recipe is applied.

Naming grammar (after Google's AI Edge Quantizer)::

    fp32 | fp16                              float model, float32 or float16 weights
    dynamic_wi8_afp32                        int8 weights, float activations (dynamic range)
    static_wi8_ai8[_int8io|_uint8io]         int8 weights and activations (calibrated); float I/O
                                             unless the suffix says int8/uint8 I/O (Edge TPU style)
    static_wi8_ai16                          int8 weights, int16 activations ("16x8")
    <recipe>+float:<block>[,<block>...]      selective: the named blocks (stem, mixed0-mixed10,
                                             head) stay float
    <recipe>_edgetpu                         the Edge TPU compiler's output of a full-int8 recipe
    coreml_<variant>                         a Core ML variant (fp16, wi8_ai8, ...; --coreml-variants)

``w`` = weights, ``a`` = activations, the number = bits; ``io`` = the model's input/output type.
A manifest entry's ``recipe_spec`` holds the fields, and readers take them from there
(``from_entry``), never from the name.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

GRAMMAR = __doc__.split("::\n", 1)[1].split("``w``", 1)[0].rstrip()


class RecipeError(ValueError):
    pass


def _block_order(name: str):
    """stem, mixed0 ... mixed10, head: the order of the network."""
    m = re.match(r"mixed(\d+)$", name)
    return (int(m.group(1)) if m else -1 if name == "stem" else 1 << 10, name)


_BITS = {"float32": 32, "float16": 16, "float": 16, "int16": 16, "int8": 8, "uint8": 8,
         "palettize6": 6, "palettize4": 4}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A TFLite recipe (target ``tflite``, or ``edgetpu`` once the compiler has mapped it)."""
    name: str
    weights: str  # float32 | float16 | int8
    activations: str  # float32 | int8 | int16
    io: str = "float32"  # float32 | int8 | uint8 | int16
    calibrate: bool = False  # needs a representative dataset (unless the model is QAT)
    description: str = ""
    # self-check against the source model (probabilities on the same seeded images)
    max_abs_diff: float = 1e-4  # max |p_artifact - p_source|
    min_top1_agreement: float = 1.0  # argmax agreement with the source
    max_size_ratio: float = 1.05  # artifact bytes / fp32 artifact bytes (large models)
    float_blocks: Tuple[str, ...] = ()  # selective quantization: blocks kept in float
    # int8 ops XNNPACK lacks (AVERAGE_POOL_2D, SOFTMAX) run as DEQUANTIZE -> float -> QUANTIZE
    # so XNNPACK takes the whole graph (convert/islands.py); off where the Edge TPU compiles it
    float_islands: bool = False
    target: str = "tflite"  # tflite | edgetpu

    @property
    def key(self) -> str:
        """The name a manifest entry and a record carry."""
        return self.name

    @property
    def bits(self) -> int:
        return _BITS[self.weights]

    @property
    def quantized(self) -> bool:
        return self.weights == "int8"

    @property
    def integer_activations(self) -> bool:
        return self.activations in ("int8", "int16")

    @property
    def full_integer(self) -> bool:
        """int8 weights and int8 activations (what NPUs, DSPs and the Edge TPU run); a selective
        recipe keeps its ``float_blocks`` float on top of that."""
        return self.weights == "int8" and self.activations == "int8"

    @property
    def integer_only(self) -> bool:
        """Every op integer: full integer with no float block and no float island (what the
        Edge TPU compiler maps whole)."""
        return self.full_integer and not self.float_blocks and not self.float_islands

    def with_float_blocks(self, blocks) -> "Recipe":
        blocks = tuple(sorted(set(blocks), key=_block_order))
        if not blocks:
            return self
        return dataclasses.replace(self, name=f"{self.name}+float:{','.join(blocks)}",
                                   float_blocks=blocks,
                                   max_size_ratio=min(1.05, self.max_size_ratio + 0.08 * len(blocks)))

    def compiled_for_edgetpu(self) -> "Recipe":
        if not self.integer_only or self.target != "tflite":
            raise RecipeError(f"{self.name}: the Edge TPU compiles whole-int8 recipes only")
        return dataclasses.replace(self, name=f"{self.name}_edgetpu", target="edgetpu")


@dataclasses.dataclass(frozen=True)
class CoreMLVariant:
    """A Core ML variant (target ``coreml``); its manifest name is ``coreml_<name>``."""
    name: str
    description: str
    precision: str = "fp16"  # compute precision: fp16 | fp32
    weights: str = "float"  # float | int8 | palettize6 | palettize4
    activations: str = "float"  # float | int8 (W8A8, calibrated)
    min_target: str = "iOS16"  # the least deployment target its ops need
    max_abs_diff: float = 1e-2  # max |p - p_source| on the check images
    min_top1_agreement: float = 0.98
    max_size_ratio: float = 1.05  # weight bytes / the fp32 package's
    target: str = "coreml"
    float_blocks: Tuple[str, ...] = ()  # none: Core ML quantizes the whole program

    @property
    def key(self) -> str:
        return f"coreml_{self.name}"

    @property
    def bits(self) -> int:
        return 32 if self.weights == "float" and self.precision == "fp32" else _BITS[self.weights]

    @property
    def full_integer(self) -> bool:
        return self.weights == "int8" and self.activations == "int8"

    @property
    def integer_only(self) -> bool:
        return False  # Core ML keeps float ops around its int8 ones (and picks the unit itself)


Spec = Union[Recipe, CoreMLVariant]

_RECIPES: List[Recipe] = [
    Recipe("fp32", "float32", "float32", description="float model, the reference",
           max_abs_diff=1e-4, min_top1_agreement=1.0, max_size_ratio=1.05),
    Recipe("fp16", "float16", "float32", description="float16 weights (GPU delegates run fp16)",
           max_abs_diff=1e-2, min_top1_agreement=0.98, max_size_ratio=0.55),
    Recipe("dynamic_wi8_afp32", "int8", "float32", description="int8 weights, float activations",
           # tensors under 1024 values (the smallest convolutions) stay float
           max_abs_diff=0.15, min_top1_agreement=0.9, max_size_ratio=0.35),
    Recipe("static_wi8_ai8", "int8", "int8", calibrate=True, float_islands=True,
           description="full integer, float input/output",
           max_abs_diff=0.25, min_top1_agreement=0.85, max_size_ratio=0.3),
    Recipe("static_wi8_ai8_int8io", "int8", "int8", io="int8", calibrate=True,
           float_islands=True, description="full integer with int8 input/output",
           max_abs_diff=0.25, min_top1_agreement=0.85, max_size_ratio=0.3),
    Recipe("static_wi8_ai8_uint8io", "int8", "int8", io="uint8", calibrate=True,
           description="full integer with uint8 input/output (Edge TPU / Coral convention; "
                       "its int8 pools stay for the Edge TPU to map)",
           max_abs_diff=0.25, min_top1_agreement=0.85, max_size_ratio=0.3),
    Recipe("static_wi8_ai16", "int8", "int16", calibrate=True,
           description="16x8: int8 weights, int16 activations",
           # the weights are the same int8 as static_wi8_ai8's, so its weight error is the
           # floor: the probability tolerance is int8's (the demo: 0.145 here vs 0.196 for int8)
           max_abs_diff=0.25, min_top1_agreement=0.9, max_size_ratio=0.32),
]
RECIPES: Dict[str, Recipe] = {r.name: r for r in _RECIPES}

_VARIANTS: List[CoreMLVariant] = [
    CoreMLVariant("fp16", "float16 weights and compute (the Core ML default)",
                  max_abs_diff=1e-2, min_top1_agreement=0.98, max_size_ratio=0.55),
    CoreMLVariant("fp32", "float32 weights and compute, the reference", precision="fp32",
                  max_abs_diff=1e-4, min_top1_agreement=1.0),
    CoreMLVariant("wi8_afp16", "int8 linear (per-channel symmetric) weights, fp16 compute",
                  weights="int8", max_abs_diff=0.1, min_top1_agreement=0.9, max_size_ratio=0.3),
    CoreMLVariant("wlut6_afp16", "6-bit palettized weights (k-means LUT per tensor)",
                  weights="palettize6", max_abs_diff=0.15, min_top1_agreement=0.9,
                  max_size_ratio=0.25),
    CoreMLVariant("wlut4_afp16", "4-bit palettized weights (k-means LUT per tensor)",
                  weights="palettize4", max_abs_diff=0.35, min_top1_agreement=0.8,
                  max_size_ratio=0.18),
    CoreMLVariant("wi8_ai8", "W8A8: int8 weights and activations, calibrated on the "
                  "representative images", weights="int8", activations="int8",
                  min_target="iOS17", max_abs_diff=0.3, min_top1_agreement=0.85,
                  max_size_ratio=0.3),
]
VARIANTS: Dict[str, CoreMLVariant] = {v.name: v for v in _VARIANTS}
DEFAULT_VARIANTS = ",".join(VARIANTS)

_BLOCK = r"(stem|mixed\d+|head)"
NAME_RE = re.compile(r"^(fp32|fp16|dynamic_wi8_afp32|static_wi8_ai(8|16)(_(int8|uint8)io)?)"
                     rf"(\+float:({_BLOCK}(,{_BLOCK})*))?$")


def _unknown(name) -> RecipeError:
    return RecipeError(f"unknown recipe {name!r}. Valid names follow the grammar:\n{GRAMMAR}\n"
                       f"(TFLite: {', '.join(RECIPES)}; Core ML: "
                       f"{', '.join(v.key for v in _VARIANTS)})")


def get_recipe(name: str) -> Recipe:
    """A TFLite recipe by name, including selective ``<recipe>+float:mixed3,mixed7`` names."""
    if not isinstance(name, str):
        raise _unknown(name)
    base, _, blocks = name.partition("+float:")
    if base not in RECIPES or (blocks and not NAME_RE.match(name)):
        raise _unknown(name)
    r = RECIPES[base]
    if blocks:
        if not r.integer_activations:
            raise RecipeError(f"{base} has float activations; +float: needs a static recipe")
        r = r.with_float_blocks(blocks.split(","))
    return r


def get_variant(name: str) -> CoreMLVariant:
    v = VARIANTS.get(name[len("coreml_"):] if name.startswith("coreml_") else name)
    if v is None:
        raise RecipeError(f"unknown Core ML variant {name!r}; valid: {', '.join(VARIANTS)}")
    return v


def parse(name: str) -> Spec:
    """Any artifact's recipe name (a TFLite recipe, ``<recipe>_edgetpu``, ``coreml_<v>``)."""
    if isinstance(name, str) and name.startswith("coreml_"):
        try:
            return get_variant(name)
        except RecipeError:
            raise _unknown(name) from None
    if isinstance(name, str) and name.endswith("_edgetpu"):
        return get_recipe(name[:-len("_edgetpu")]).compiled_for_edgetpu()
    return get_recipe(name)


def _names(tokens) -> List[str]:
    """``["fp32,fp16", "static_wi8_ai8+float:mixed3,mixed7"]`` -> names (a token with
    ``+float:`` is one recipe; other tokens may hold several comma-separated names)."""
    if isinstance(tokens, str):
        tokens = [tokens]
    names = []
    for t in tokens:
        if not isinstance(t, str):
            raise _unknown(t)
        names += [t.strip()] if "+float:" in t else [n.strip() for n in t.split(",") if n.strip()]
    return names


def parse_recipes(tokens) -> List[Recipe]:
    names = _names(tokens)
    if not names:
        raise RecipeError(f"no recipe given; valid: {', '.join(RECIPES)}")
    return [get_recipe(n) for n in names]


def parse_variants(tokens) -> List[CoreMLVariant]:
    names = _names(tokens)
    if not names:
        raise RecipeError(f"no Core ML variant given; valid: {', '.join(VARIANTS)}")
    return [get_variant(n) for n in names]


def file_name(source: str, spec: Spec) -> str:
    """The artifact's file name in the artifacts folder: ``{source}_{recipe}.tflite`` (a
    selective recipe's ``+float:a,b`` as ``_float-a-b``), ``{source}_coreml_{v}.mlpackage``."""
    if spec.target == "coreml":
        return f"{source}_{spec.key}.mlpackage"
    base = spec.name[:-len("_edgetpu")] if spec.target == "edgetpu" else spec.name
    stem = f"{source}_{base.replace('+float:', '_float-').replace(',', '-')}"
    return f"{stem}_edgetpu.tflite" if spec.target == "edgetpu" else f"{stem}.tflite"


def fields(spec: Spec) -> dict:
    """The structured fields a manifest entry (``recipe_spec``) and a record carry."""
    d = dataclasses.asdict(spec)
    d["float_blocks"] = list(d.get("float_blocks") or ())
    d.update(bits=spec.bits, full_integer=spec.full_integer, integer_only=spec.integer_only)
    return d


def from_entry(entry: dict) -> Optional[Spec]:
    """The recipe of a manifest entry or record, from its structured ``recipe_spec`` (None for
    an entry without one)."""
    d = entry.get("recipe_spec") if isinstance(entry, dict) else None
    if not isinstance(d, dict):
        return None
    cls = CoreMLVariant if d.get("target") == "coreml" else Recipe
    known = {f.name for f in dataclasses.fields(cls)}
    kw = {k: v for k, v in d.items() if k in known}
    if "float_blocks" in kw:
        kw["float_blocks"] = tuple(kw["float_blocks"] or ())
    try:
        return cls(**kw)
    except TypeError:
        return None


def describe() -> str:
    """The recipe table for --help (generated, so it cannot drift from the code)."""
    return "\n".join(f"  {r.name:24s} {r.description}" for r in _RECIPES)


def describe_variants() -> str:
    return "\n".join(f"  {v.name:14s} {v.description} (needs {v.min_target}+)" for v in _VARIANTS)
