"""Post-training quantization recipes: data, with names that explain themselves.

Naming grammar (after Google's AI Edge Quantizer)::

    fp32 | fp16                              float model, float32 or float16 weights
    dynamic_wi8_afp32                        int8 weights, float activations (dynamic range)
    static_wi8_ai8[_int8io|_uint8io]         int8 weights and activations (calibrated); float I/O
                                             unless the suffix says int8/uint8 I/O (Edge TPU style)
    static_wi8_ai16                          int8 weights, int16 activations ("16x8")
    <recipe>+float:<block>[,<block>...]      selective: the named blocks (mixed3 ...) stay float

``w`` = weights, ``a`` = activations, the number = bits; ``io`` = the model's input/output type.
``test_recipes.py`` checks that every name parses back to its recipe.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Dict, List, Optional, Tuple


@dataclasses.dataclass(frozen=True)
class Recipe:
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

    def with_float_blocks(self, blocks) -> "Recipe":
        blocks = tuple(sorted(set(blocks), key=_block_order))
        if not blocks:
            return self
        return dataclasses.replace(self, name=f"{self.name}+float:{','.join(blocks)}",
                                   float_blocks=blocks,
                                   max_size_ratio=min(1.05, self.max_size_ratio + 0.08 * len(blocks)))


def _block_order(name: str):
    m = re.match(r"mixed(\d+)$", name)
    return (int(m.group(1)) if m else -1, name)


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

NAME_RE = re.compile(r"^(fp32|fp16|dynamic_wi8_afp32|static_wi8_ai(8|16)(_(int8|uint8)io)?)"
                     r"(\+float:(mixed\d+(,mixed\d+)*))?$")


class RecipeError(ValueError):
    pass


def get_recipe(name: str) -> Recipe:
    """A recipe by name, including selective ``<recipe>+float:mixed3,mixed7`` names."""
    base, _, blocks = name.partition("+float:")
    if base not in RECIPES or (blocks and not NAME_RE.match(name)):
        raise RecipeError(f"unknown recipe {name!r}; valid: {', '.join(RECIPES)} "
                          "(selective: <recipe>+float:mixed3,mixed7)")
    r = RECIPES[base]
    if blocks:
        if not r.integer_activations:
            raise RecipeError(f"{base} has float activations; +float: needs a static recipe")
        r = r.with_float_blocks(blocks.split(","))
    return r


def recipe_of(name) -> Optional["Recipe"]:
    """The recipe a manifest or record names, or None for another target's (coreml_*)."""
    try:
        return get_recipe(name) if isinstance(name, str) else None
    except RecipeError:
        return None


def parse_recipes(tokens) -> List[Recipe]:
    """``["fp32,fp16", "static_wi8_ai8+float:mixed3,mixed7"]`` -> recipes (a token with
    ``+float:`` is one recipe; other tokens may hold several comma-separated names)."""
    if isinstance(tokens, str):
        tokens = [tokens]
    names = []
    for t in tokens:
        names += [t.strip()] if "+float:" in t else [n.strip() for n in t.split(",") if n.strip()]
    if not names:
        raise RecipeError(f"no recipe given; valid: {', '.join(RECIPES)}")
    return [get_recipe(n) for n in names]


def describe() -> str:
    """The recipe table for --help (generated, so it cannot drift from the code)."""
    return "\n".join(f"  {r.name:24s} {r.description}" for r in _RECIPES)
