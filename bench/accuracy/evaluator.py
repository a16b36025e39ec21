"""Accuracy measured where each variant runs, after the timed rounds, never inside them.

For every trained variant (random weights have no accuracy to measure) and every dataset
asked for, each batch of inputs goes through the device's runner in evaluate mode and the
outputs come back: top-1 and top-5 against the labels, each input's predicted class (so
`bench.analysis` can pair any two variants on the same inputs), and the outputs' SNR
against the fp32 variant on the same device and backend. A delegate or an old runtime can
change what a model computes, so accuracy is measured per device and backend.

A runner that cannot return outputs per input (TFLite's benchmark_model runs one process
per input and prints no outputs) gets its variants evaluated on this host with the python
runner's code and ai-edge-litert, and every such row says `measured_on = host`.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.accuracy.staging import EvaluationSet, stage
from bench.data.datasets import (
    FOLDER_LAYOUT,
    KNOWN_DATASETS,
    Dataset,
    _looks_like_path,
    assert_disjoint,
    dataset,
)
from bench.data.images import TORCHVISION
from bench.errors import UsageError
from bench.keys import REFERENCE_RECIPE
from bench.runners import pyrunner
from bench.runners.base import EvaluationResult
from bench.runners.python import evaluation_from_document
from bench.transports.base import TransportError
from bench.zoo.cache import Variant

AGREEMENT_SET = "heldout"
DEFAULT_AGREEMENT_INPUTS = 1000
TOP_K = 5
# Names that are evaluation data, never calibration data (and the reverse).
CALIBRATION_ONLY = ("skimage-natural",)

BatchRunner = Callable[[object, Path, str, dict | None],
                       tuple[EvaluationResult, np.ndarray | None]]


def parse_accuracy(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """`--accuracy foolbox-imagenet,/data/imagenet-val`: dataset names or folders."""
    if text is None:
        return ()
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)]
    names = list(dict.fromkeys(n for n in names if n))
    if not names:
        raise UsageError("--accuracy needs a dataset: " + ", ".join(
            n for n in KNOWN_DATASETS if n not in CALIBRATION_ONLY) + ", or a folder")
    for name in names:
        if name not in KNOWN_DATASETS:
            folder = Path(name).expanduser()
            if not _looks_like_path(name):
                raise UsageError(f"unknown dataset {name!r}; known: "
                                 f"{', '.join(KNOWN_DATASETS)}, or a folder {FOLDER_LAYOUT}")
            if not folder.is_dir():
                raise UsageError(f"dataset folder {folder} does not exist or is no folder; "
                                 f"expected {FOLDER_LAYOUT}")
        if name in CALIBRATION_ONLY:
            raise UsageError(f"{name} is the calibration set; evaluating on it would measure "
                             "accuracy on images the quantizer has seen. Use foolbox-imagenet, "
                             "heldout or a labelled folder")
    return tuple(names)


@dataclass
class ModelSets:
    """The evaluation sets of one model, or why it gets none."""

    sets: list[EvaluationSet] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _calibrations(variants: list[Variant]) -> set[tuple[str, int]]:
    """(source, size) of the calibration data the model's variants were built with."""
    found = set()
    for variant in variants:
        calibration = (variant.key or {}).get("calibration")
        if isinstance(calibration, dict) and calibration.get("data"):
            found.add((str(calibration["data"]), int(calibration["size"])))
    return found


def _shape_and_classes(variant: Variant) -> tuple[tuple[int, ...], int | None]:
    from bench.zoo.inspect import inspect_tflite

    info = inspect_tflite(variant.path)
    shape = tuple(int(d) for d in info.inputs[0][2]) if info.inputs else ()
    out = info.outputs[0][2] if info.outputs else ()
    classes = int(np.prod([d for d in out[1:]])) if len(out) > 1 else None
    return shape, classes


class Evaluator:
    """Plans, stages and runs the accuracy evaluations of one run."""

    def __init__(self, datasets: tuple[str, ...], agreement_inputs: int, directory: Path,
                 calibration: Callable[[str, int, tuple[int, ...]], Dataset | None] =
                 lambda source, size, shape: None,
                 on_event: Callable[[str], None] = lambda line: None):
        if agreement_inputs < 0:
            raise UsageError(f"--agreement-inputs must be 0 or more, not {agreement_inputs}")
        self.datasets = datasets
        self.agreement_inputs = agreement_inputs
        self.directory = Path(directory)
        self.calibration = calibration
        self.on_event = on_event
        self.models: dict[str, ModelSets] = {}
        self._staged: dict[tuple[str, tuple[int, ...], str], EvaluationSet] = {}
        self._datasets: dict[tuple[str, tuple[int, ...], str], Dataset] = {}
        self.preprocessing: dict[str, str] = {}
        self._host_cache: dict[tuple[str, str], tuple[EvaluationResult, np.ndarray]] = {}

    # planning -----------------------------------------------------------------------
    def prepare(self, variants: list[Variant],
                preprocessing: dict[str, str] | None = None) -> list[str]:
        """Make and stage every set each trained model needs (usage errors now, before
        anything is measured); one note per model that gets none, or only some.
        `preprocessing`: what each model's weights expect of photographs (default
        torchvision's ImageNet normalisation)."""
        self.preprocessing = preprocessing or {}
        notes = []
        by_model: dict[str, list[Variant]] = {}
        for variant in variants:
            by_model.setdefault(variant.model, []).append(variant)
        for model, found in by_model.items():
            usable = [v for v in found if v.status == "ok" and v.path]
            plan = ModelSets()
            self.models[model] = plan
            if any(v.random_weights for v in found):
                plan.skipped.append("random weights: no accuracy to measure (use :imagenet "
                                    "weights or a trained file)")
            elif not usable:
                plan.skipped.append("no variant was built")
            else:
                self._plan_model(model, usable, plan, _calibrations(found))
            if plan.skipped:
                notes.append(f"accuracy of {model}: " + "; ".join(plan.skipped))
        return notes

    def _plan_model(self, model: str, usable: list[Variant], plan: ModelSets,
                    calibrations: set[tuple[str, int]]) -> None:
        reference = next((v for v in usable if v.recipe == REFERENCE_RECIPE), usable[0])
        shape, classes = _shape_and_classes(reference)
        preprocessing = self.preprocessing.get(model, TORCHVISION)
        wanted = list(self.datasets)
        rgb = len(shape) == 4 and shape[3] == 3 and shape[1] == shape[2]
        if self.agreement_inputs and rgb and AGREEMENT_SET not in wanted:
            wanted.append(AGREEMENT_SET)
        for name in wanted:
            try:
                found = self._set(name, shape, preprocessing)
                for source, size in sorted(calibrations):
                    calibration = self.calibration(source, size, shape)
                    if calibration is not None:
                        assert_disjoint(calibration,
                                        self._datasets[(name, tuple(shape), preprocessing)])
            except UsageError as exc:
                if name == AGREEMENT_SET and name not in self.datasets:
                    plan.skipped.append(f"no held-out agreement set: {exc}")
                    continue
                raise UsageError(f"--accuracy {name} for {model}: {exc}") from None
            if found.labelled and classes is not None and found.num_classes is not None \
                    and classes != found.num_classes:
                plan.skipped.append(f"{name} has {found.num_classes} classes but the model "
                                    f"has {classes} outputs")
                continue
            plan.sets.append(found)

    def _set(self, name: str, shape: tuple[int, ...], preprocessing: str) -> EvaluationSet:
        key = (name, tuple(shape), preprocessing)
        if key not in self._staged:
            size = self.agreement_inputs if name == AGREEMENT_SET else None
            extra = {"preprocessing": preprocessing} if name != "fashion-mnist" else {}
            data = dataset(name, input_shape=shape, size=size, **extra)
            self._datasets[key] = data
            self.on_event(f"staging {name} for {shape[1]}x{shape[2]} inputs "
                          f"({len(data)} inputs)")
            directory = self.directory / f"set-{len(self._staged):03d}"
            self._staged[key] = stage(data, name, directory)
        return self._staged[key]

    @property
    def wanted(self) -> bool:
        return any(plan.sets for plan in self.models.values())

    # measuring ----------------------------------------------------------------------
    def evaluate(self, session, cells: list, save: Callable[[dict], None],
                 stop: Callable[[], bool], done: set | frozenset = frozenset()) -> None:
        """Every trained variant among `cells` on every set of its model, on this device.
        One thread count per variant and backend (the fewest: accuracy does not depend on
        it); fp32 first, so the others' SNR has its reference."""
        on_device = getattr(session, "evaluates", False)
        chosen: dict[tuple[str, str, str], object] = {}
        for cell in sorted(cells, key=lambda c: c.threads):
            chosen.setdefault((cell.model, cell.backend, cell.recipe), cell)
        groups: dict[tuple[str, str], list] = {}
        for (model, backend, _), cell in chosen.items():
            groups.setdefault((model, backend), []).append(cell)
        for (model, _backend), members in groups.items():
            plan = self.models.get(model)
            if plan is None or not plan.sets:
                continue
            members.sort(key=lambda c: c.recipe != REFERENCE_RECIPE)
            for data in plan.sets:
                reference: np.ndarray | None = None
                for cell in members:
                    if stop():
                        return
                    key = (cell.model, cell.recipe, cell.device, cell.backend, data.name)
                    if key in done:
                        continue
                    row, outputs = self._one(session if on_device else None, cell, data,
                                             reference, stop)
                    if row is None:  # stopped mid-way
                        return
                    if cell.recipe == REFERENCE_RECIPE and outputs is not None:
                        reference = outputs
                    save(row)
                    self.on_event(describe(row))
                    if row.get("lost"):
                        return

    def _one(self, session, cell, data: EvaluationSet, reference: np.ndarray | None,
             stop: Callable[[], bool]) -> tuple[dict | None, np.ndarray | None]:
        row = {
            "model": cell.model, "recipe": cell.recipe, "sha256": cell.variant.sha256,
            "device": cell.device, "backend": cell.backend, "threads": cell.threads,
            "dataset": data.name, "dataset_sha256": data.sha256, "dataset_size": data.size,
            "labelled": int(data.labelled),
            "measured_on": "device" if session is not None else "host",
            "status": "failed", "reason": None,
        }
        if session is None:
            row["reason"] = ("measured on the host (ai-edge-litert, xnnpack, 1 thread): the "
                             f"{getattr(cell, 'runner', None) or 'device'}'s runner returns no "
                             "outputs per input")
        started = time.perf_counter()
        pieces, last = [], None
        for batch in data.batches:
            if stop():
                return None, None
            try:
                if session is not None:
                    last, outputs = session.evaluate_batch(cell, batch.path, batch.sha256,
                                                           batch.normalise)
                else:
                    last, outputs = self._on_host(cell, batch.path, batch.sha256,
                                                  batch.normalise)
            except (TransportError, OSError) as exc:
                row.update(reason=f"device lost while evaluating: {exc}", lost=True)
                return row, None
            if not last.ok or outputs is None:
                row["reason"] = f"evaluation failed: {last.error}"
                break
            pieces.append(outputs)
        row["seconds"] = round(time.perf_counter() - started, 3)
        if last is not None:
            row.update(runtime_name=last.runtime_name, runtime_version=last.runtime_version,
                       delegated=last.delegated)
        if len(pieces) != len(data.batches):
            return row, None
        outputs = np.concatenate(pieces) if pieces else np.zeros((0, 0), np.float32)
        if data.labelled and data.num_classes is not None and outputs.shape[1] != data.num_classes:
            row["reason"] = (f"the model has {outputs.shape[1]} outputs but {data.name} has "
                             f"{data.num_classes} classes")
            return row, None
        row.update(facts(outputs, data.labels))
        row["status"] = "ok"
        if cell.recipe != REFERENCE_RECIPE and reference is not None \
                and reference.shape == outputs.shape:
            from bench.zoo.check import snr_db

            row["reference_recipe"] = REFERENCE_RECIPE
            row["snr_db"] = snr_db(reference.astype(np.float64), outputs.astype(np.float64))
            row["identical"] = int(np.array_equal(reference, outputs))
        return row, outputs

    def _on_host(self, cell, path: Path, sha: str, normalise: dict | None):
        """A batch through the variant here, with the python runner's own code."""
        key = (cell.variant.sha256 or str(cell.variant.path), sha)
        if key in self._host_cache:
            return self._host_cache[key]
        with tempfile.TemporaryDirectory(prefix="bench-host-eval-") as scratch:
            out = str(Path(scratch) / "outputs.npy")
            job = {"schema_version": pyrunner.JOB_SCHEMA_VERSION, "mode": "evaluate",
                   "model_path": str(cell.variant.path), "backend": "xnnpack", "threads": 1,
                   "tflite_module": "auto", "cpus": None, "inputs_path": str(path),
                   "normalise": normalise, "outputs_path": out}
            document: dict = {"status": "failed"}
            try:
                pyrunner.evaluate(job, document)
                document["status"] = "ok"
            except pyrunner.RunnerFailure as exc:
                document["error"] = str(exc)
            except Exception as exc:  # noqa: BLE001 - one variant's failure is a row
                document["error"] = f"{type(exc).__name__}: {exc}"
            result = evaluation_from_document(document)
            outputs = np.load(out, allow_pickle=False) if result.ok else None
        if result.ok:
            self._host_cache[key] = (result, outputs)
        return result, outputs


def facts(outputs: np.ndarray, labels: np.ndarray | None) -> dict:
    """What a set of outputs says, as facts: every prediction, top-1/top-5 hits."""
    predictions = np.argmax(outputs, axis=1) if outputs.size else np.zeros(0, np.int64)
    found = {"n": int(len(outputs)), "predictions": json.dumps(predictions.tolist()),
             "top1": None, "top5": None, "labels": None}
    if labels is not None:
        found["labels"] = json.dumps(labels.tolist())
        found["top1"] = int(np.sum(predictions == labels))
        if outputs.shape[1] >= TOP_K:
            best = np.argpartition(-outputs, TOP_K - 1, axis=1)[:, :TOP_K]
            found["top5"] = int(np.sum(np.any(best == labels[:, None], axis=1)))
    return found


def describe(row: dict) -> str:
    where = f"{row['model']} {row['recipe']} on {row['device']}/{row['backend']}"
    if row["status"] != "ok":
        return f"accuracy: {where}, {row['dataset']}: FAILED: {row['reason']}"
    text = f"accuracy: {where}, {row['dataset']} ({row['n']} inputs"
    text += ", on the host)" if row["measured_on"] == "host" else ")"
    if row.get("top1") is not None:
        text += f": top-1 {row['top1']}/{row['n']}"
        if row.get("top5") is not None:
            text += f", top-5 {row['top5']}/{row['n']}"
    if row.get("snr_db") is not None:
        text += f", SNR vs fp32 {row['snr_db']:.1f} dB"
    return text
