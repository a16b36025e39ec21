"""Post-training quantization and quantization-aware training of a small CNN on Fashion-MNIST:
what does each recipe cost in accuracy, measured on 10,000 test images with the TFLite
interpreter?

A small analogue of the quantization whitepaper's accuracy findings (Krishnamoorthi 2018,
arXiv 1806.08342, which measures MobileNets, Inception and ResNets on ImageNet): per-channel
int8 stays close to float, per-tensor (per-layer) int8 loses more, most where depthwise
convolutions are involved. Here the network is a 4k-parameter depthwise-separable CNN
trained on Fashion-MNIST in minutes on this machine, so the figures speak to this network
and data set only, never to the paper's ImageNet numbers; they are what was measured.

How it runs:

1. Here (no TensorFlow in this process): check Fashion-MNIST is installed, draw the
   training subset and the calibration images from the *train* split with the seed, and
   refuse (`assert_disjoint`, by pixel content) any calibration image also in the test split.
2. `fashion_mnist_worker` in a subprocess (Keras 3): train (seeded), convert each
   post-training recipe with the harness's own recipe settings
   (`bench.zoo.recipes.configure`), calibrating on those train images; it never reads the
   test split. It saves the trained weights layer by layer for step 3.
3. QAT recipes (`bench.experiments.qat`: fp32-ft, qat-int8, qat-w4), if asked for:
   `qat_worker` in another subprocess, the only one with TF_USE_LEGACY_KERAS=1 (tfmot needs
   legacy Keras), rebuilds the network in tf_keras from those weights (checked against the
   Keras 3 logits), fine-tunes each recipe `qat_epochs` on the same training images and
   converts it. Asking for a QAT recipe brings fp32-ft, the float model fine-tuned alike.
4. Here: read each file's weights (`bench.zoo.weight_levels`: a qat-w4 file with a weight
   tensor of more than 16 distinct values is a failed row, not a 4-bit one); run every
   .tflite on every test image with ai-edge-litert (one image per invoke, as deployed; int8
   inputs quantized and outputs dequantized with the tensors' own scales), then the
   statistics (`bench.measure.proportions`): accuracy with its Wilson interval, and per
   recipe the paired comparison with fp32 on the same images (difference with Newcombe's
   paired interval, exact McNemar p-value, agreement of predicted classes); QAT rows also
   against fp32-ft, which separates what quantization did from what more training did.
   Size and a quick latency figure (median of single-image invokes; not `bench run`'s
   protocol of rounds and intervals) complete the table.

What the intervals cover: the sampling of test images, for the one network a seed trains.
Another seed trains another network, and the cost of a recipe varies between networks more
than the paired intervals suggest; compare seeds (`--seed`) before generalising. Measured
here (defaults, seeds 0/1/2; accuracy change vs fp32 in points, McNemar p): dynamic -0.02,
-0.01, 0.00 (p >= 0.75); int8 per-channel -0.04, +0.07, -0.06 (p >= 0.61); int8
per-tensor -0.61 (p = 0.0004), -0.16 (p = 0.31), -0.63 (p = 0.002), with 95-97% of
predictions agreeing with fp32 against 98.4-98.8% for per-channel. Per-tensor is also the
fragile one: with BatchNorm momentum 0.99 instead of 0.9 (the same trained weights, other
moving statistics, so other folded weights) seed 0 gave -0.17 (p = 0.27). QAT (1 epoch,
points vs fp32-ft): qat-int8 -0.23 (p = 0.08), +0.03, +0.01; qat-w4 -1.27, -0.95, -1.08
(p < 0.0001 each); fp32-ft itself vs fp32 +0.20 (p = 0.006), +0.11, +0.10.

Reproducibility: the training subset and calibration images are drawn from the seed (NumPy's
PCG64 streams); training is seeded and deterministic on one machine and software stack,
so a rerun with the same seed gives the same weights, byte-identical .tflite files and the
same predictions (checked: two full 3-epoch runs here, and `tests/test_fashion_mnist.py` at
CI size). Not bit-reproducible across CPUs, thread counts or TensorFlow/Keras versions
(float training arithmetic is ordered differently; see `fashion_mnist_worker`), so another
machine's accuracies may differ by some images; latency figures are never reproducible.

Everything lands in the caller's `out_dir`: the jobs, the workers' logs and results, the
trained model and its weights, the .tflite files, each file's weight levels
(`weight-levels.json`), every prediction (`predictions.npz`, for re-analysis without
re-running) and `experiment.json` with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.datasets import (
    Batch,
    Dataset,
    ImageRef,
    assert_disjoint,
    fashion_mnist,
    fashion_mnist_dir,
)
from bench.errors import BenchError, ModelError, UsageError
from bench.experiments.qat import (
    BASELINE,
    QAT_RECIPES,
    QUANTIZED,
    is_qat,
    max_weight_levels,
    with_baseline,
)
from bench.measure.proportions import (
    Interval,
    mcnemar_exact_p,
    paired_difference_interval,
    wilson_interval,
)
from bench.zoo.recipes import RECIPES
from bench.zoo.weight_levels import FOUR_BIT_LEVELS, LevelCheck, check_levels

DEFAULT_RECIPES = ("fp32", "dynamic", "int8", "int8-per-tensor", "fp32-ft", "qat-int8",
                   "qat-w4")
KNOWN_RECIPES = (*RECIPES, *QAT_RECIPES)
DEFAULT_EPOCHS = 3
DEFAULT_QAT_EPOCHS = 1
DEFAULT_TRAIN_SIZE = 60_000
DEFAULT_CALIBRATION_SIZE = 500
DEFAULT_SEED = 0
DEFAULT_BATCH_SIZE = 128
DEFAULT_THREADS = 1
LATENCY_RUNS = 200
LATENCY_WARMUP = 20
LATENCY_BLOCKS = 10
RESULTS_DIR = Path("results") / "experiments"
WORKER_MODULE = "bench.experiments.fashion_mnist_worker"
QAT_WORKER_MODULE = "bench.experiments.qat_worker"
# tfmot's switch to legacy Keras: set for the QAT worker only, removed for the Keras 3 one.
LEGACY_KERAS = "TF_USE_LEGACY_KERAS"
WORKER_PREFIX = "BENCH-EXPERIMENT "  # = fashion_mnist_worker.PROGRESS_PREFIX (no TF import)
PAPER = "Krishnamoorthi 2018, arXiv 1806.08342 (ImageNet)"

Progress = Callable[[str], None]


class ExperimentError(BenchError):
    """The training worker failed as a whole (not one recipe: that is a table row; nor the
    QAT worker, whose failure is its recipes' rows)."""

    exit_code = 1


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class PairedComparison:
    """A variant against a reference (fp32, or fp32-ft for QAT rows) on the same test images.

    `gained`: right here, wrong in fp32; `lost`: the reverse. Only these discordant images
    carry information about a difference in accuracy.
    """

    n: int
    both_right: int
    gained: int
    lost: int
    both_wrong: int
    difference: Interval  # accuracy(variant) - accuracy(reference)
    mcnemar_p: float
    agreement: Interval  # same predicted class as the reference (Wilson)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["difference"] = self.difference.to_dict()
        d["agreement"] = self.agreement.to_dict()
        return d


@dataclass(frozen=True)
class VariantResult:
    """One recipe's file, accuracy, comparison with fp32 (and, for QAT rows, with fp32-ft),
    size and quick latency."""

    recipe: str
    status: str  # "ok" or "failed"
    error: str | None = None
    path: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    compression: float | None = None  # fp32 bytes / these bytes
    weight_scheme: str | None = None
    io_dtype: str | None = None
    convert_seconds: float | None = None
    correct: int | None = None
    accuracy: Interval | None = None
    vs_fp32: PairedComparison | None = None
    vs_fp32_ft: PairedComparison | None = None  # QAT rows: against their fair baseline
    latency_ms: float | None = None  # median of LATENCY_RUNS single-image invokes
    weight_levels: int | None = None  # most distinct values in one weight tensor (the file)
    packed_size_bytes: int | None = None  # 4-bit recipes: weights at two per byte

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["accuracy"] = self.accuracy.to_dict() if self.accuracy else None
        d["vs_fp32"] = self.vs_fp32.to_dict() if self.vs_fp32 else None
        d["vs_fp32_ft"] = self.vs_fp32_ft.to_dict() if self.vs_fp32_ft else None
        return d


@dataclass(frozen=True)
class ExperimentResult:
    """Everything `format_table` prints, and the provenance to judge it by."""

    epochs: int
    train_size: int
    calibration_size: int
    seed: int
    batch_size: int
    threads: int
    test_size: int
    recipes: tuple[str, ...]
    out_dir: Path
    variants: tuple[VariantResult, ...]
    training: dict[str, Any]
    calibration_indices: tuple[int, ...]
    timings: dict[str, float]
    environment: dict[str, Any]
    latency_runs: int = LATENCY_RUNS
    qat_epochs: int = DEFAULT_QAT_EPOCHS
    qat: dict[str, Any] | None = None  # the QAT worker's report; None without QAT recipes

    def variant(self, recipe: str) -> VariantResult:
        for variant in self.variants:
            if variant.recipe == recipe:
                return variant
        raise KeyError(recipe)

    def to_dict(self) -> dict[str, Any]:
        d = {name: getattr(self, name) for name in self.__dataclass_fields__}
        d["out_dir"] = str(self.out_dir)
        d["recipes"] = list(self.recipes)
        d["variants"] = [v.to_dict() for v in self.variants]
        d["calibration_indices"] = list(self.calibration_indices)
        return d


# ---------------------------------------------------------------- data


def training_indices(train_size: int, seed: int, total: int) -> np.ndarray:
    """The training subset: the first `train_size` of a seeded permutation of the train
    split, sorted (Keras shuffles every epoch anyway). All of it at train_size = total."""
    order = np.random.default_rng([seed, 0]).permutation(total)
    return np.sort(order[:train_size])


def calibration_indices(calibration_size: int, seed: int, total: int) -> np.ndarray:
    """Calibration images: a seeded draw from the whole train split (a stream of its own,
    so changing the training subset does not change them). They may be training images,
    as in deployment, where one calibrates on data one has; never test images."""
    return np.random.default_rng([seed, 1]).choice(total, size=calibration_size,
                                                   replace=False)


class IndexedSubset(Dataset):
    """Some samples of another dataset, keeping their source identities (for
    `assert_disjoint`) and their original indices (for messages)."""

    def __init__(self, base: Dataset, indices: Sequence[int] | np.ndarray) -> None:
        super().__init__(base.name, base.kind, base.input_shape, base.num_classes,
                         base.class_names, f"{len(indices)} samples of {base.label}",
                         base.split)
        self._base = base
        self._indices = np.asarray(indices, dtype=np.int64)
        self._arrays: Batch | None = None

    def __len__(self) -> int:
        return len(self._indices)

    def _slice(self, start: int, stop: int) -> Batch:
        if self._arrays is None:
            inputs, labels = self._base.take()
            self._arrays = (inputs[self._indices],
                            None if labels is None else labels[self._indices])
        inputs, labels = self._arrays
        return inputs[start:stop], None if labels is None else labels[start:stop]

    def sources(self) -> tuple[ImageRef, ...]:
        every = self._base.sources()
        return tuple(every[int(i)] for i in self._indices)


def calibration_set(indices: Sequence[int] | np.ndarray) -> IndexedSubset:
    """The calibration images of a run (`ExperimentResult.calibration_indices`)."""
    return IndexedSubset(fashion_mnist("train"), indices)


# ---------------------------------------------------------------- TFLite side


def _interpreter(path: str | Path, threads: int) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    return interpreter


def _to_input(images: np.ndarray, detail: dict) -> np.ndarray:
    """Float images as the model takes them: quantized with the input's own scale and
    zero point for integer inputs (as `bench.zoo.check` does)."""
    from bench.zoo.check import _quantize

    return _quantize(images, detail)


def predict(path: str | Path, images: np.ndarray, threads: int = DEFAULT_THREADS) -> np.ndarray:
    """Predicted class of every image, one image per invoke (the deployed case; a batch
    dimension would change no arithmetic here but is not what a device runs)."""
    interpreter = _interpreter(path, threads)
    in_detail = interpreter.get_input_details()[0]
    out_detail = interpreter.get_output_details()[0]
    inputs = _to_input(images, in_detail)
    predictions = np.empty(len(images), dtype=np.int64)
    for k in range(len(images)):
        interpreter.set_tensor(in_detail["index"], inputs[k:k + 1])
        interpreter.invoke()
        # The arg-max of int8 logits is that of the dequantized ones (a positive scale).
        predictions[k] = int(np.argmax(interpreter.get_tensor(out_detail["index"])[0]))
    return predictions


def quick_latencies(paths: dict[str, str], image: np.ndarray, threads: int = DEFAULT_THREADS,
                    runs: int = LATENCY_RUNS, warmup: int = LATENCY_WARMUP,
                    blocks: int = LATENCY_BLOCKS) -> dict[str, float]:
    """Median milliseconds of `runs` single-image invokes per variant, after `warmup`, in
    one process: a quick host figure, not `bench run`'s protocol (rounds in fresh
    processes, intervals). The variants take turns in `blocks` blocks (ABCD ABCD ...), so a
    neighbour's burst of load or a frequency change lands on all of them, not on one."""
    interpreters = {}
    for recipe, path in paths.items():
        interpreter = _interpreter(path, threads)
        detail = interpreter.get_input_details()[0]
        interpreter.set_tensor(detail["index"], _to_input(image[None], detail))
        for _ in range(warmup):
            interpreter.invoke()
        interpreters[recipe] = interpreter
    times: dict[str, list[int]] = {recipe: [] for recipe in paths}
    per_block = [len(range(k, runs, blocks)) for k in range(blocks)]
    for count in per_block:
        for recipe, interpreter in interpreters.items():
            for _ in range(count):
                started = time.perf_counter_ns()
                interpreter.invoke()
                times[recipe].append(time.perf_counter_ns() - started)
    return {recipe: statistics.median(found) / 1e6 for recipe, found in times.items()}


def compare(predictions: np.ndarray, reference: np.ndarray,
            labels: np.ndarray) -> PairedComparison:
    """The paired comparison of a variant's predictions with fp32's on the same images."""
    right, right_ref = predictions == labels, reference == labels
    both = int(np.sum(right & right_ref))
    gained = int(np.sum(right & ~right_ref))
    lost = int(np.sum(~right & right_ref))
    neither = int(np.sum(~right & ~right_ref))
    same = int(np.sum(predictions == reference))
    return PairedComparison(
        n=len(labels), both_right=both, gained=gained, lost=lost, both_wrong=neither,
        difference=paired_difference_interval(both, gained, lost, neither),
        mcnemar_p=mcnemar_exact_p(gained, lost),
        agreement=wilson_interval(same, len(labels)),
    )


# ---------------------------------------------------------------- orchestration


def _check_arguments(epochs: int, train_size: int, calibration_size: int, threads: int,
                     batch_size: int, test_size: int | None, total_train: int,
                     total_test: int, recipes: Sequence[str],
                     qat_epochs: int = DEFAULT_QAT_EPOCHS) -> None:
    for name, value in (("epochs", epochs), ("train size", train_size),
                        ("calibration size", calibration_size), ("threads", threads),
                        ("batch size", batch_size), ("QAT epochs", qat_epochs)):
        if int(value) != value or value < 1:
            raise UsageError(f"{name} must be a positive integer, not {value}")
    if train_size > total_train:
        raise UsageError(f"train size {train_size} is more than the {total_train} train images")
    if calibration_size > total_train:
        raise UsageError(f"calibration size {calibration_size} is more than the "
                         f"{total_train} train images")
    if test_size is not None and not 1 <= test_size <= total_test:
        raise UsageError(f"test size must be 1 to {total_test}, not {test_size}")
    unknown = [r for r in recipes if r not in KNOWN_RECIPES]
    if unknown:
        raise UsageError(f"unknown recipe(s) {', '.join(unknown)}; "
                         f"known: {', '.join(KNOWN_RECIPES)}")
    if "fp32" not in recipes:
        raise UsageError("the recipes must include fp32: every comparison is against it")


def default_out_dir() -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return RESULTS_DIR / f"fashion-mnist-{stamp}"


def _describe(event: dict) -> str | None:
    kind = event.get("event")
    if kind == "training":
        return (f"training on {event['images']:,} images, {event['epochs']} epoch(s), "
                f"batch {event['batch_size']}")
    if kind == "epoch":
        recipe = f"{event['recipe']} " if event.get("recipe") else ""
        return (f"  {recipe}epoch {event['epoch']}/{event['epochs']}: loss "
                f"{event['loss']:.3f}, train accuracy {100 * event['accuracy']:.1f}% "
                f"({event['seconds']:.1f} s)")
    if kind == "qat":
        return (f"quantization-aware training of {', '.join(event['recipes'])}: "
                f"{event['epochs']} epoch(s) on {event['images']:,} images each, from the "
                "trained weights")
    if kind == "rebuild":
        if "max_abs_logit_diff" not in event:
            return f"  FAILED to rebuild the trained model in tf_keras: {event.get('error')}"
        verdict = "same network" if event["ok"] else "NOT the same network"
        return (f"  tf_keras rebuild vs Keras 3 model: max |logit diff| "
                f"{event['max_abs_logit_diff']:.2g} on {event['images']} train images "
                f"({verdict})")
    if kind == "converted":
        if event["status"] == "ok":
            return (f"  converted {event['recipe']}: {event['size_bytes']:,} bytes "
                    f"({event['seconds']:.1f} s)")
        return f"  FAILED {event['recipe']}: {event['error']}"
    return None


def worker_environment(legacy_keras: bool) -> dict[str, str]:
    """The environment of a TensorFlow worker. TF_USE_LEGACY_KERAS=1 for the QAT worker
    (tfmot needs legacy Keras) and removed for the Keras 3 one, whatever the caller's shell
    says: set, it would turn the Keras 3 worker's `tf.keras` into legacy Keras and change
    what trains. This process's own environment is never changed."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1",
           # Determinism: Python's hash seed fixed, training on the CPU only.
           "PYTHONHASHSEED": "0", "CUDA_VISIBLE_DEVICES": "-1",
           "BENCH_FASHION_MNIST_DIR": str(fashion_mnist_dir())}
    env.pop(LEGACY_KERAS, None)
    if legacy_keras:
        env[LEGACY_KERAS] = "1"
    return env


def _run_worker(job: dict, out_dir: Path, progress: Progress, module: str = WORKER_MODULE,
                name: str = "", legacy_keras: bool = False) -> dict:
    """Run a worker (`name` prefixes its job, log and result files) in a subprocess; its
    result, or an ExperimentError quoting its log."""
    job_path, log_path = out_dir / f"{name}job.json", out_dir / f"{name}worker.log"
    job_path.write_text(json.dumps(job))
    env = worker_environment(legacy_keras)
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", module, str(job_path)],
                                   stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith(WORKER_PREFIX):
                message = _describe(json.loads(line[len(WORKER_PREFIX):]))
                if message:
                    progress(message)
            else:
                log.write(line)  # the converter prints to stdout; keep it with the rest
        code = process.wait()
    result_path = Path(job["result_path"])
    if code != 0 or not result_path.is_file():
        tail = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
        last = tail[-1].strip() if tail else "no output"
        what = "QAT" if module == QAT_WORKER_MODULE else "training/conversion"
        raise ExperimentError(f"the {what} worker exited with code {code}: "
                              f"{last[:300]} (log: {log_path})")
    return json.loads(result_path.read_text())


def _variant_files(recipe: str, outcome: dict,
                   fp32_size: int | None) -> tuple[VariantResult, LevelCheck | None]:
    """The file's facts, read from the file: how the weights are stored and how many
    distinct values they hold. A recipe promising fewer bits than the file holds (qat-w4
    with a tensor of more than 16 levels) is a failed row, never a 4-bit one."""
    from bench.zoo.inspect import inspect_tflite

    if outcome.get("status") != "ok":
        return VariantResult(recipe, "failed", error=outcome.get("error", "not converted"),
                             convert_seconds=outcome.get("seconds")), None
    info = inspect_tflite(outcome["path"])
    size = int(outcome["size_bytes"])
    variant = VariantResult(
        recipe, "ok", path=outcome["path"], sha256=outcome["sha256"], size_bytes=size,
        compression=(fp32_size / size) if fp32_size else None,
        weight_scheme=info.weight_scheme, io_dtype=info.inputs[0][1] if info.inputs else None,
        convert_seconds=outcome.get("seconds"),
    )
    budget = max_weight_levels(recipe)
    try:
        levels = check_levels(outcome["path"], budget or FOUR_BIT_LEVELS)
    except ModelError as err:  # weights in a storage the counter cannot read
        if budget is None:
            return variant, None  # nothing promised, so nothing to refuse
        return replace(variant, status="failed", error=f"weights not checked: {err}"), None
    variant = replace(variant, weight_levels=levels.most_levels,
                      packed_size_bytes=levels.packed_bytes if budget is not None else None)
    if budget is not None and not levels.ok:
        return replace(variant, status="failed", error=levels.reason), levels
    return variant, levels


def _environment(worker: dict, threads: int, qat_worker: dict | None) -> dict[str, Any]:
    from importlib.metadata import version

    qat_versions = (qat_worker or {}).get("versions", {})
    return {
        **worker.get("versions", {}),
        **{name: qat_versions[name] for name in ("tf_keras", "tensorflow_model_optimization")
           if name in qat_versions},
        "ai_edge_litert": version("ai-edge-litert"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "training_threads": worker.get("threads"),
        "determinism": worker.get("determinism"),
        # What each worker saw: unset for Keras 3 training, "1" for QAT (tfmot).
        LEGACY_KERAS: {"training_worker": worker.get("legacy_keras"),
                       "qat_worker": (qat_worker or {}).get("legacy_keras")},
        "interpreter": f"ai_edge_litert Interpreter, num_threads={threads}, default "
                       "delegate (XNNPACK)",
    }


def _run_qat(recipes: Sequence[str], job: dict, directory: Path,
             say: Progress) -> dict[str, Any]:
    """The QAT worker, from the weights the training worker saved. Its failure as a whole
    (tfmot missing, a crash) fails its rows and keeps the post-training ones."""
    qat_job = {
        "seed": job["seed"], "qat_epochs": job["qat_epochs"],
        "batch_size": job["batch_size"], "recipes": list(recipes),
        "train_indices": job["train_indices"],
        "weights_path": str((directory / "weights.npz").resolve()),
        "out_dir": job["out_dir"],
        "result_path": str((directory / "qat-worker-result.json").resolve()),
    }
    try:
        return _run_worker(qat_job, directory, say, QAT_WORKER_MODULE, "qat-",
                           legacy_keras=True)
    except ExperimentError as err:
        say(f"  FAILED: {err}")
        return {"conversions": {r: {"status": "failed", "error": str(err)} for r in recipes},
                "error": str(err)}


def run_experiment(
    epochs: int = DEFAULT_EPOCHS,
    train_size: int = DEFAULT_TRAIN_SIZE,
    calibration_size: int = DEFAULT_CALIBRATION_SIZE,
    seed: int = DEFAULT_SEED,
    out_dir: str | Path | None = None,
    threads: int = DEFAULT_THREADS,
    *,
    test_size: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    recipes: Sequence[str] = DEFAULT_RECIPES,
    qat_epochs: int = DEFAULT_QAT_EPOCHS,
    latency_runs: int = LATENCY_RUNS,
    progress: Progress | None = None,
) -> ExperimentResult:
    """Train, convert, fine-tune (QAT recipes), evaluate; everything written under `out_dir`
    (default results/experiments/fashion-mnist-TIMESTAMP, relative to the working directory).

    `test_size` evaluates only the first N test images (for quick checks; the experiment
    is all 10,000). `threads` is the interpreter's thread count for evaluation and latency.
    Any QAT recipe brings `fp32-ft` with it (`qat.with_baseline`). Raises UsageError
    (Fashion-MNIST missing, bad arguments) before anything is trained.
    """
    say = progress or (lambda message: None)
    started = time.perf_counter()
    recipes = with_baseline(recipes)
    train_split, test_split = fashion_mnist("train"), fashion_mnist("test")
    _check_arguments(epochs, train_size, calibration_size, threads, batch_size, test_size,
                     len(train_split), len(test_split), recipes, qat_epochs)
    recipes = ("fp32", *(r for r in recipes if r != "fp32"))
    qat_recipes = [r for r in recipes if is_qat(r)]
    n_test = len(test_split) if test_size is None else test_size
    train_index = training_indices(train_size, seed, len(train_split))
    calibration_index = calibration_indices(calibration_size, seed, len(train_split))
    calibration = IndexedSubset(train_split, calibration_index)
    evaluation = IndexedSubset(test_split, np.arange(n_test))
    assert_disjoint(calibration, evaluation)

    directory = Path(out_dir) if out_dir is not None else default_out_dir()
    directory.mkdir(parents=True, exist_ok=True)
    job = {
        "seed": seed, "epochs": epochs, "batch_size": batch_size,
        "recipes": [r for r in recipes if not is_qat(r)],
        "train_indices": train_index.tolist(), "calibration_indices": calibration_index.tolist(),
        "out_dir": str(directory.resolve()),
        "result_path": str((directory / "worker-result.json").resolve()),
    }
    worker = _run_worker(job, directory, say)
    trained = time.perf_counter()
    conversions = dict(worker["conversions"])
    qat_worker = None
    if qat_recipes:
        qat_worker = _run_qat(qat_recipes, {**job, "qat_epochs": qat_epochs}, directory, say)
        conversions.update(qat_worker["conversions"])
    fine_tuned = time.perf_counter()

    images, labels = evaluation.take()
    assert labels is not None
    fp32_size = conversions.get("fp32", {}).get("size_bytes")
    predictions: dict[str, np.ndarray] = {}
    variants: dict[str, VariantResult] = {}
    levels: dict[str, Any] = {}
    for recipe in recipes:
        variant, found_levels = _variant_files(recipe, conversions.get(recipe, {}), fp32_size)
        if found_levels is not None:
            levels[recipe] = found_levels.to_dict()
        if variant.status == "ok":
            say(f"evaluating {recipe} on {n_test:,} test images")
            try:
                found = predict(variant.path, images, threads)
            except Exception as exc:  # a kernel that cannot run this variant here
                variant = replace(variant, status="failed", error=f"evaluation failed: {exc}")
            else:
                predictions[recipe] = found
                correct = int(np.sum(found == labels))
                variant = replace(variant, correct=correct,
                                  accuracy=wilson_interval(correct, n_test))
        variants[recipe] = variant
    # Paired comparisons once every prediction is in (fp32-ft may be listed after its rows).
    for recipe in predictions:
        found = predictions[recipe]
        variants[recipe] = replace(
            variants[recipe],
            vs_fp32=(compare(found, predictions["fp32"], labels)
                     if recipe != "fp32" and "fp32" in predictions else None),
            vs_fp32_ft=(compare(found, predictions[BASELINE], labels)
                        if recipe in QUANTIZED and BASELINE in predictions else None))
    if predictions:
        say(f"latency: {latency_runs} single-image invokes per variant, interleaved")
        latencies = quick_latencies({r: str(variants[r].path) for r in predictions}, images[0],
                                    threads, latency_runs)
        for recipe, latency in latencies.items():
            variants[recipe] = replace(variants[recipe], latency_ms=latency)
    np.savez_compressed(directory / "predictions.npz", labels=labels,
                        **{recipe.replace("-", "_"): p for recipe, p in predictions.items()})
    (directory / "weight-levels.json").write_text(json.dumps(levels, indent=2))
    finished = time.perf_counter()
    training = worker["training"]
    qat_report = None
    if qat_worker is not None:
        qat_report = {**qat_worker.get("qat", {}), "error": qat_worker.get("error")}
    result = ExperimentResult(
        epochs=epochs, train_size=train_size, calibration_size=calibration_size, seed=seed,
        batch_size=batch_size, threads=threads, test_size=n_test, recipes=recipes,
        out_dir=directory, variants=tuple(variants.values()), training=training,
        calibration_indices=tuple(int(i) for i in calibration_index),
        timings={
            "training_s": float(training.get("seconds", 0.0)),
            "conversion_s": round(sum(float(c.get("seconds", 0.0))
                                      for c in worker["conversions"].values()), 2),
            "worker_s": round(trained - started, 2),
            "qat_s": float((qat_report or {}).get("seconds", 0.0)),
            "qat_conversion_s": round(sum(float(conversions[r].get("seconds", 0.0))
                                          for r in qat_recipes), 2),
            "qat_worker_s": round(fine_tuned - trained, 2),
            "evaluation_s": round(finished - fine_tuned, 2),
            "total_s": round(finished - started, 2),
        },
        environment=_environment(worker, threads, qat_worker),
        latency_runs=latency_runs,
        qat_epochs=qat_epochs,
        qat=qat_report,
    )
    table = format_table(result)
    (directory / "table.txt").write_text(table + "\n")
    (directory / "experiment.json").write_text(
        json.dumps({**result.to_dict(), "table": table}, indent=2))
    return result


# ---------------------------------------------------------------- the table


def _pct(value: float) -> str:
    return f"{100 * value:.2f}"


def _points(value: float) -> str:
    return f"{100 * value:+.2f}"


def _size(size: int | None) -> str:
    return "-" if size is None else f"{size / 1024:.1f} KiB"


def _p_value(p: float) -> str:
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _paired_cells(paired: PairedComparison) -> tuple[str, str, str, str]:
    """Difference [interval], +gained/-lost, McNemar p, agreement: one comparison's cells."""
    d = paired.difference
    return (f"{_points(d.estimate)} [{_points(d.low)}, {_points(d.high)}]",
            f"+{paired.gained}/-{paired.lost}", _p_value(paired.mcnemar_p),
            _pct(paired.agreement.estimate))


def _within_one_point(paired: PairedComparison) -> str:
    """The ~1% claim judged on the interval: all of it above -1 point (a loss of at most
    1 point), all of it below, or straddling."""
    d = paired.difference
    if d.low >= -0.01:
        return "loses at most 1 point"
    if d.high < -0.01:
        return "loses more than 1 point"
    return "inconclusive at 1 point"


def _qat_lines(result: ExperimentResult) -> list[str]:
    """The QAT rows against fp32-ft, and the whitepaper's QAT claims beside them."""
    rows = [v for v in result.variants if v.recipe in QUANTIZED]
    if not rows:
        return []
    lines = [
        "",
        f"QAT rows vs {BASELINE} (the trained float model fine-tuned {result.qat_epochs} "
        "epoch(s) like them: same optimizer, schedule, seed, data;",
        "  the difference is quantization's alone, while 'vs fp32' above also counts what "
        "fine-tuning did):",
    ]
    header = (f"{'recipe':<16} {'vs fp32-ft, points [95% CI]':<28} {'+/-':>9} "
              f"{'McNemar p':>9} {'agree %':>7}")
    lines += [header, "-" * len(header)]
    for v in rows:
        if v.vs_fp32_ft is None:
            reason = v.error if v.status != "ok" else f"no {BASELINE} predictions"
            lines.append(f"{v.recipe:<16} -: {reason}")
            continue
        diff, counts, p, agree = _paired_cells(v.vs_fp32_ft)
        lines.append(f"{v.recipe:<16} {diff:<28} {counts:>9} {p:>9} {agree:>7}")
    lines += ["", f"the whitepaper's QAT claims, {PAPER}, beside what was measured here:"]
    for v in rows:
        claim = QAT_RECIPES[v.recipe].paper
        if v.vs_fp32_ft is None:
            lines.append(f"  {claim}: no data ({v.recipe} {v.status})")
            continue
        diff = _paired_cells(v.vs_fp32_ft)[0]
        text = f"  {claim}: {v.recipe} vs {BASELINE} {diff} points"
        if QAT_RECIPES[v.recipe].weight_bits == 8:
            text += f" ({_within_one_point(v.vs_fp32_ft)}"
            ptq = next((w for w in result.variants
                        if w.recipe == "int8" and w.vs_fp32 is not None), None)
            if ptq is not None:
                text += f"; post-training int8 vs fp32: {_paired_cells(ptq.vs_fp32)[0]}"
            text += ")"
        lines.append(text)
    return lines


def format_table(result: ExperimentResult) -> str:
    """The experiment as text: one row per recipe, the QAT rows against their own baseline,
    then what every column means."""
    n = result.test_size
    params = result.training.get("parameters")
    qat_rows = [r for r in result.recipes if is_qat(r)]
    what = ("post-training and quantization-aware training" if qat_rows
            else "post-training quantization")
    lines = [
        f"Fashion-MNIST {what}: {n:,} test images, 95% intervals",
        f"model: depthwise-separable CNN ({params:,} parameters), {result.epochs} epoch(s) on "
        f"{result.train_size:,} train images, batch {result.batch_size}, seed {result.seed}; "
        f"calibration: {result.calibration_size:,} train images",
    ]
    if qat_rows:
        qat = result.qat or {}
        check = qat.get("rebuild_check") or {}
        optimizer = next((r.get("optimizer") for r in (qat.get("recipes") or {}).values()),
                         None)
        rebuilt = (f"tf_keras rebuild of the trained model: max |logit diff| "
                   f"{check['max_abs_logit_diff']:.1g}"
                   if "max_abs_logit_diff" in check else "tf_keras rebuild: not checked")
        lines.append(f"QAT ({', '.join(qat_rows)}): {result.qat_epochs} epoch(s) from the "
                     f"trained weights on the same train images, {optimizer or '-'}; "
                     f"{rebuilt}")
    lines.append("")
    header = (f"{'recipe':<16} {'accuracy % [95% CI]':<24} {'vs fp32, points [95% CI]':<25} "
              f"{'+/-':>9} {'McNemar p':>9} {'agree %':>7} {'size':>9} {'x fp32':>6} "
              f"{'latency':>9}")
    lines += [header, "-" * len(header)]
    for v in result.variants:
        if v.status != "ok" or v.accuracy is None:
            lines.append(f"{v.recipe:<16} failed: {v.error}")
            continue
        accuracy = f"{_pct(v.accuracy.estimate)} [{_pct(v.accuracy.low)}, " \
                   f"{_pct(v.accuracy.high)}]"
        if v.vs_fp32 is None:
            diff, counts, p, agree = ("reference" if v.recipe == "fp32" else "-"), "", "", ""
        else:
            diff, counts, p, agree = _paired_cells(v.vs_fp32)
        compression = f"{v.compression:.2f}" if v.compression else "-"
        latency = f"{v.latency_ms:.3f} ms" if v.latency_ms is not None else "-"
        lines.append(f"{v.recipe:<16} {accuracy:<24} {diff:<25} {counts:>9} {p:>9} "
                     f"{agree:>7} {_size(v.size_bytes):>9} {compression:>6} {latency:>9}")
    lines += _qat_lines(result)
    lines.append("")
    lines.append("weights as stored (bench.zoo.inspect; levels: most distinct values in one "
                 "weight tensor, bench.zoo.weight_levels):")
    for v in result.variants:
        if v.status != "ok":
            continue
        text = f"  {v.recipe:<16} {v.weight_scheme}; input {v.io_dtype}"
        if v.weight_scheme and v.weight_scheme.startswith("int"):
            text += f"; {v.weight_levels} levels"
        lines.append(text)
        if v.packed_size_bytes is not None:
            stored = (" (the converter already stored them as INT4, two per byte)"
                      if v.packed_size_bytes == v.size_bytes else "")
            lines.append(f"  {'':<16} <= {FOUR_BIT_LEVELS} levels in every weight tensor "
                         f"(checked in the file); size: file {_size(v.size_bytes)}, packed "
                         f"4-bit {_size(v.packed_size_bytes)}{stored}")
    env = result.environment
    t = result.timings
    lines += [
        "",
        f"accuracy: Wilson score interval over {n:,} test images.",
        "vs fp32: accuracy(recipe) - accuracy(fp32) on the same images, in percentage points, "
        "with Newcombe's paired",
        "  interval (method 10); +/-: images right here and wrong in fp32 / the reverse; "
        "McNemar p: exact two-sided",
        "  test on those discordant images (not adjusted for comparing several recipes); "
        "agree: same predicted class as fp32.",
    ]
    if qat_rows:
        lines += [
            f"vs fp32-ft: the same statistics with {BASELINE} in place of fp32 (QAT rows "
            "only); fp32-ft's own 'vs fp32' is what",
            "  fine-tuning alone did.",
        ]
    lines += [
        "size: bytes of the .tflite file (for 4-bit recipes also the packed 4-bit size above: "
        "file bytes minus",
        "  the 4-bit weight tensors' stored bytes plus ceil(count / 2) each); x fp32: fp32 "
        "bytes / these bytes.",
        f"latency: quick host figure, median of {result.latency_runs} single-image invokes "
        f"after {LATENCY_WARMUP} warm-ups, {result.threads} thread(s),",
        f"  ai-edge-litert {env.get('ai_edge_litert')} (XNNPACK), the variants interleaved in "
        f"{LATENCY_BLOCKS} blocks; one process, no interval: not `bench run`'s",
        "  measurement protocol.",
        f"A Fashion-MNIST analogue of {PAPER}: a small network trained here, so its figures "
        "are not the paper's.",
        f"elapsed: training {t['training_s']:.0f} s and conversions {t['conversion_s']:.0f} s "
        f"in a TensorFlow subprocess ({t['worker_s']:.0f} s with its start and the data)"
        + (f", QAT fine-tuning {t.get('qat_s', 0):.0f} s and conversions "
           f"{t.get('qat_conversion_s', 0):.0f} s in a tf_keras subprocess "
           f"({t.get('qat_worker_s', 0):.0f} s with its start)" if qat_rows else "")
        + f", evaluation {t['evaluation_s']:.0f} s; total {t['total_s']:.0f} s",
        f"results: {result.out_dir}",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench experiment fashion-mnist",
        description="Post-training quantization and quantization-aware training of a small "
                    "depthwise-separable CNN on Fashion-MNIST: accuracy per recipe on the "
                    "10,000 test images, paired comparisons with fp32 (and QAT rows with "
                    "fp32-ft), size and a quick latency figure.")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--qat-epochs", type=int, default=DEFAULT_QAT_EPOCHS,
                        help="fine-tuning epochs of fp32-ft and the QAT recipes, from the "
                             "trained weights")
    parser.add_argument("--train-size", type=int, default=DEFAULT_TRAIN_SIZE,
                        help="training images drawn from the 60,000 (default: all)")
    parser.add_argument("--calibration-size", type=int, default=DEFAULT_CALIBRATION_SIZE,
                        help="train images to calibrate int8 recipes on")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help="interpreter threads for evaluation and latency")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--test-size", type=int, default=None,
                        help="evaluate on the first N test images only (default: all 10,000)")
    parser.add_argument("--recipes", default=",".join(DEFAULT_RECIPES),
                        help=f"comma-separated, fp32 included; a QAT recipe brings {BASELINE} "
                             f"(known: {', '.join(KNOWN_RECIPES)})")
    parser.add_argument("--out", type=Path, default=None,
                        help="results directory (default: results/experiments/"
                             "fashion-mnist-TIMESTAMP)")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def progress(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    try:
        result = run_experiment(
            args.epochs, args.train_size, args.calibration_size, args.seed, args.out,
            args.threads, test_size=args.test_size, batch_size=args.batch_size,
            recipes=[r.strip() for r in args.recipes.split(",") if r.strip()],
            qat_epochs=args.qat_epochs, progress=progress)
    except BenchError as err:
        print(f"bench: {err}", file=sys.stderr)
        return err.exit_code
    print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
