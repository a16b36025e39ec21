"""The order of cells within a device round: balanced where it can be, recorded always.

Within a round, a model family's cells run back to back, in the order of one row of a
Williams design over them: a Latin square in which, over its k rows (2k when k is odd),
every cell takes every position once and follows every other cell exactly once. So
neither position in the round nor carry-over from the cell before (a hot fp32 warming
the CPU for the int8 after it) can favour one variant: in complete blocks both are
balanced, and a partial block is still a Latin rectangle (no cell twice in a position).
Which cell gets which label, and the order in which the square's rows are used, are
drawn from the run's seed per family; the order of the families in a round is shuffled
per round. The sweep records each cell's position and predecessor with its round, so
carry-over can be estimated afterwards.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

from bench.keys import CellKey

T = TypeVar("T")


def williams_square(k: int) -> list[list[int]]:
    """Rows of a Williams design for k treatments: k rows for even k, 2k for odd k."""
    if k < 1:
        return []
    first, low, high = [0], 1, k - 1
    while len(first) < k:  # 0, 1, k-1, 2, k-2, ...
        first.append(low)
        low += 1
        if len(first) < k:
            first.append(high)
            high -= 1
    rows = [[(t + shift) % k for t in first] for shift in range(k)]
    if k % 2:
        rows += [list(reversed(row)) for row in rows]
    return rows


def _family_order(members: Sequence[T], keys: Sequence[CellKey], seed: int, device: str,
                  index: int) -> list[T]:
    ranked = sorted(range(len(members)), key=lambda i: tuple(str(p) for p in keys[i]))
    family = keys[ranked[0]].family
    draw = random.Random(f"{seed}/{device}/{tuple(family)}/{len(members)}")
    labels = list(ranked)
    draw.shuffle(labels)  # which cell is treatment 0, 1, ...
    square = williams_square(len(members))
    rows = list(range(len(square)))
    draw.shuffle(rows)  # the order the rows are used in
    row = square[rows[index % len(square)]]
    return [members[labels[treatment]] for treatment in row]


def round_order(items: Sequence[T], keys: Sequence[CellKey], seed: int, device: str,
                index: int) -> list[T]:
    """The items of one device round (one per cell, `keys` theirs) in measuring order."""
    families: dict = {}
    for item, key in zip(items, keys, strict=True):
        families.setdefault(key.family, []).append((item, key))
    names = sorted(families, key=lambda f: tuple(str(p) for p in f))
    random.Random(f"{seed}/{device}/{index}").shuffle(names)
    order: list[T] = []
    for name in names:
        members = families[name]
        order += _family_order([m for m, _ in members], [k for _, k in members], seed,
                               device, index)
    return order
