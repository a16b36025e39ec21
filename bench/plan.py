"""The plan: variants × devices × backends × threads, with what cannot run set aside."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.devices import Device
from bench.keys import CellKey
from bench.runners import runner_backends
from bench.zoo.cache import Variant


@dataclass(frozen=True)
class Cell:
    variant: Variant
    device: str
    backend: str
    threads: int

    @property
    def key(self) -> CellKey:
        return CellKey(self.variant.model, self.variant.recipe, self.variant.sha256,
                       self.device, self.backend, self.threads)

    @property
    def model(self) -> str:
        return self.variant.model

    @property
    def recipe(self) -> str:
        return self.variant.recipe

    @property
    def label(self) -> str:
        return self.key.label


@dataclass
class Plan:
    cells: list[Cell] = field(default_factory=list)
    skipped: list[tuple[Cell, str]] = field(default_factory=list)
    order: dict[CellKey, int] = field(default_factory=dict)  # plan order, how tables list cells


def make_plan(variants: list[Variant], devices: list[Device], backends: list[str] | None,
              threads: list[int] | None) -> Plan:
    plan = Plan()
    for device in devices:
        for variant in variants:
            for backend in backends or list(device.backends):
                for count in threads or list(device.threads):
                    cell = Cell(variant, device.name, backend, count)
                    plan.order[cell.key] = len(plan.order)
                    reason = skip_reason(device, backend)
                    if reason:
                        plan.skipped.append((cell, reason))
                    else:
                        plan.cells.append(cell)
    return plan


def skip_reason(device: Device, backend: str) -> str | None:
    if backend not in device.backends:
        return f"device {device.name} does not declare backend {backend} ({device.file})"
    if backend not in runner_backends(device.runner):
        return f"the {device.runner} runner has no {backend} backend"
    return None
