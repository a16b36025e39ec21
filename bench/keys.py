"""What identifies a cell, defined once.

A cell is one model variant (name, recipe and the sha256 of its .tflite file) measured on
one device, backend and thread count. The hash is part of the identity and is never
mixed: within a run every model name stands for one file (two files that share a name
get names that tell them apart), and a resume refuses a model whose bytes changed since
its cells were measured. The store's cell id is therefore made from the name part alone,
so a variant that failed to build and is built on a resume keeps its cell.

A family is the cells whose per-round ratios are speedups: same model, device and
threads (every recipe and backend). Families stop together so they stay paired.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

REFERENCE_RECIPE = "fp32"


class CellKey(NamedTuple):
    model: str
    recipe: str
    sha256: str | None
    device: str
    backend: str
    threads: int

    @property
    def cell_id(self) -> str:
        """A stable text id for the store (portable: no database-generated keys)."""
        text = "\x1f".join(str(part) for part in self.as_reference)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    @property
    def family(self) -> FamilyKey:
        return FamilyKey(self.model, self.device, self.threads)

    @property
    def label(self) -> str:
        return f"{self.model} {self.recipe} on {self.device}/{self.backend}/t{self.threads}"

    def reference(self, backend: str | None = None) -> ReferenceKey:
        """The fp32 cell this one's speedup is measured against (same backend by default)."""
        return ReferenceKey(self.model, REFERENCE_RECIPE, self.device,
                            backend or self.backend, self.threads)

    @property
    def as_reference(self) -> ReferenceKey:
        return ReferenceKey(self.model, self.recipe, self.device, self.backend, self.threads)


class FamilyKey(NamedTuple):
    model: str
    device: str
    threads: int


class ReferenceKey(NamedTuple):
    """A cell named without its hash: within one run a model and recipe have one hash."""

    model: str
    recipe: str
    device: str
    backend: str
    threads: int


KEY_COLUMNS = list(CellKey._fields)
