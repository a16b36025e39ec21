"""Quantization-aware training recipes of the Fashion-MNIST experiment and of `bench run
--train-data` (no TensorFlow here).

Why they are not in `bench.zoo.recipes.RECIPES`: those are converter settings that turn any
float model into a variant; these need labelled training data and a training loop (the
model is fine-tuned with fake quantization, then converted), so only what has training data
can offer them: the experiment (`bench.experiments.qat_worker` carries them out in its own
process) and `bench run` given a labelled folder (`bench.zoo.qat_worker`).

Every QAT row is compared with `fp32-ft` as well as with fp32: fine-tuning alone (more
steps, a fresh learning-rate schedule) changes accuracy, so "QAT minus fp32" would credit
quantization with what the extra training did. `fp32-ft` is the same trained float model
fine-tuned for the same epochs, with the same optimizer, schedule, seed and batch order as
the QAT models, and no fake quantization: the difference to it is quantization's alone.

The whitepaper's claims these rows speak to (Krishnamoorthi 2018, arXiv 1806.08342, its
abstract and section 3.2): quantization-aware training reduces the gap to float to about 1%
at 8 bits, and allows 4-bit weights with losses of 2% to 10% on ImageNet (more for smaller
networks). This network is far smaller than the paper's, and Fashion-MNIST is not ImageNet:
the rows measure the direction of those claims here, not their figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

BASELINE = "fp32-ft"


@dataclass(frozen=True)
class QatRecipe:
    name: str
    summary: str
    paper: str
    weight_bits: int | None  # None: float weights
    activation_bits: int | None  # None: float activations
    integer_io: str | None  # dtype of the converted model's input and output


QAT_RECIPES: dict[str, QatRecipe] = {
    r.name: r
    for r in (
        QatRecipe("fp32-ft", "the trained float model fine-tuned like the QAT models "
                  "(same epochs, optimizer, schedule, seed), no fake quantization",
                  "the fair float baseline of the QAT rows", None, None, None),
        QatRecipe("qat-int8", "tfmot quantize_model: 8-bit weights (per-channel for "
                  "convolutions, per-tensor for dense), 8-bit activations; fine-tuned, "
                  "converted with Optimize.DEFAULT, int8 in/out",
                  "QAT reduces the int8 gap to float to about 1%", 8, 8, "int8"),
        QatRecipe("qat-w4", "tfmot DefaultNBitQuantizeScheme(num_bits_weight=4, "
                  "num_bits_activation=8); fine-tuned, converted with Optimize.DEFAULT, "
                  "int8 in/out",
                  "QAT makes 4-bit weights usable (losses of 2-10% on ImageNet)", 4, 8, "int8"),
    )
}
QUANTIZED = tuple(name for name, r in QAT_RECIPES.items() if r.weight_bits is not None)


def is_qat(recipe: str) -> bool:
    """A recipe the QAT worker makes (fp32-ft included)."""
    return recipe in QAT_RECIPES


def with_baseline(recipes: Sequence[str]) -> tuple[str, ...]:
    """The recipes, with `fp32-ft` added (just before the first QAT recipe) when any is
    asked for: a QAT row is not reported without its fair baseline."""
    names = tuple(dict.fromkeys(recipes))
    if any(r in QUANTIZED for r in names) and BASELINE not in names:
        quantized = [r for r in names if r in QUANTIZED]
        at = names.index(quantized[0])
        names = (*names[:at], BASELINE, *names[at:])
    return names


def max_weight_levels(recipe: str) -> int | None:
    """The most distinct values a weight tensor of this recipe's file may hold (16 for
    4-bit weights); None when the recipe makes no such promise to check."""
    bits = QAT_RECIPES[recipe].weight_bits if recipe in QAT_RECIPES else None
    return 2 ** bits if bits is not None and bits < 8 else None
