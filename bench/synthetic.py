"""Synthetic results stores: a run of any shape, written as a real sweep writes it.

Reports, the dashboard and performance targets (1,000 cells x 10 rounds) need stores of a
given size, and converting and measuring that many cells takes hours. This writes one in
seconds, through the real `Store` interface and in the real sweep's order: the run and its
session, every variant, every planned cell (pending, or skipped), then per device its facts
and device rounds, each round shuffled by the real `round_order`, each cell stopped by the
fixed-rounds rule. Round results are made by the real runners' own parsers — a pyrunner
result document through `from_document`, benchmark_model's printed output through
`BenchmarkModelRunner.parse` — so every column holds what a real run would put there
(benchmark_model rounds have no per-iteration latencies, no p90 and memory from a run of its
own, as on a phone). Nothing here is a measurement: the run's settings say `synthetic`.

The figures are made to look like real ones and are deterministic from `seed` (timestamps
and the run id are not): per model a base fp32 latency, per device a speed, recipe factors
that depend on the CPU (int8 helps most with VNNI or dot-product instructions), sub-linear
thread scaling, a per-round noise shared by the cells of a device round (so paired speedups
are tighter than latencies) plus each cell's own, iterations spread inside a round, phones
and boards warming over rounds. Model and device descriptions depend on their names only,
so a name means the same model or device under every seed.

Timestamps are simulated: the run ends about now and took as long as its rounds would
have, with devices measured in parallel. The store stamps rows with `bench.timeutil.utc_now`
itself, so while writing, the store module's `utc_now` reads the simulated clock.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np

from bench import __version__
from bench.devices import BenchmarkModelSettings, Device
from bench.keys import CellKey
from bench.measure.protocol import Protocol
from bench.measure.stopping import PROTOCOL_VERSION
from bench.orchestrator import device_facts, round_order
from bench.plan import Cell, Plan, make_plan
from bench.results import RoundContext, RoundResult
from bench.runners import pyrunner
from bench.runners.base import RoundJob, RunnerProbe
from bench.runners.benchmark_model import ENV_PREFIX, BenchmarkModelRunner
from bench.runners.python import from_document
from bench.store import sqlite as sqlite_store
from bench.store.base import FAILED, OK, PENDING, SKIPPED
from bench.store.sqlite import SQLiteStore
from bench.timeutil import from_unix
from bench.transports.adb_common import ADBSettings
from bench.transports.base import CommandResult
from bench.transports.ssh import SSHSettings
from bench.zoo.cache import Variant
from bench.zoo.recipes import DEFAULT_CALIBRATION_SIZE, RECIPES, recipe_key

DEFAULT_RECIPES = ("fp32", "fp16", "dynamic", "int8", "int8-per-tensor")
BACKENDS = ("xnnpack", "cpu")  # what every runner here has; delegates would need modelling
CONVERTER_VERSION = "2.16.1"
BM_BINARY = "~/Downloads/android_aarch64_benchmark_model"


# --- models


@dataclass(frozen=True)
class ModelProfile:
    """What makes a model slow or big: parameters, graph size, parallel share."""

    name: str
    params: int
    macs: int
    fp32_ms: float  # one thread, XNNPACK, on the reference device (`local`)
    nodes: int  # of the fp32 graph
    depthwise: float  # share of the graph's body that is depthwise convolutions
    parallel: float  # Amdahl's parallel fraction
    activations_mb: float


ZOO_MODELS = (
    ModelProfile("mobilenet_v1", 4_253_864, 569_000_000, 14.0, 31, 0.45, 0.88, 6.0),
    ModelProfile("mobilenet_v2", 3_538_984, 300_000_000, 9.0, 66, 0.3, 0.85, 9.0),
    ModelProfile("resnet50", 25_636_712, 3_860_000_000, 75.0, 77, 0.0, 0.93, 25.0),
    ModelProfile("inception_v3", 23_851_784, 5_710_000_000, 110.0, 128, 0.0, 0.92, 30.0),
    ModelProfile("efficientnet_b0", 5_330_571, 390_000_000, 18.0, 114, 0.15, 0.85, 14.0),
    ModelProfile("resnet50_v2", 25_613_800, 4_100_000_000, 80.0, 85, 0.0, 0.93, 25.0),
    ModelProfile("nasnet_mobile", 5_326_716, 564_000_000, 24.0, 620, 0.2, 0.80, 12.0),
)


def _stable_rng(*parts: object) -> np.random.Generator:
    """A generator seeded by the parts' text: the same parts, the same draws, anywhere."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "big"))


def model_profile(name: str) -> ModelProfile:
    """The zoo model of that name, else an invented one drawn from the name."""
    for known in ZOO_MODELS:
        if known.name == name:
            return known
    rng = _stable_rng("model", name)
    params = int(np.clip(math.exp(rng.normal(math.log(8e6), 0.9)), 0.5e6, 60e6))
    fp32_ms = float(np.clip(params / 1e6 * 3.0 * math.exp(rng.normal(0, 0.5)), 2.0, 400.0))
    macs = int(fp32_ms * 40e6 * math.exp(rng.normal(0, 0.2)))  # ~40 MMAC per ms on `local`
    return ModelProfile(name, params, macs, round(fp32_ms, 2), int(rng.integers(20, 400)),
                        round(float(rng.uniform(0.0, 0.4)), 2),
                        round(float(rng.uniform(0.75, 0.95)), 3),
                        round(float(rng.uniform(3.0, 40.0)), 1))


# --- devices


def _words(text: str) -> tuple[str, ...]:
    """CPU flags as /proc/cpuinfo lists them."""
    return tuple(text.split())


X86 = _words("fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush "
             "mmx fxsr sse sse2 ht syscall nx pdpe1gb rdtscp lm constant_tsc nopl xtopology "
             "cpuid pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes "
             "xsave avx f16c rdrand lahf_lm abm 3dnowprefetch fsgsbase bmi1 avx2 smep bmi2 erms "
             "invpcid adx smap clflushopt xsaveopt xsavec xgetbv1 xsaves")
AVX512 = _words("avx512f avx512dq avx512cd avx512bw avx512vl avx512ifma avx512vbmi "
                "avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq")
ARMV8_0 = _words("fp asimd evtstrm crc32 cpuid")  # Cortex-A72: no dot product
ARMV8_2 = _words("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                 "asimdrdm lrcpc dcpop asimddp")


@dataclass(frozen=True)
class DeviceProfile:
    """A kind of device: what its probe reports and how it behaves under measurement."""

    name: str
    description: str
    transport: str
    runner: str
    python: str
    tflite_module: str
    cpu_model: str
    cpu_flags: tuple[str, ...]
    cpu_count: int
    cores: int  # the cores a round's threads really get (big cores, physical cores)
    machine: str
    platform: str
    runtime: tuple[str, str, str | None]  # name, version, module
    python_version: str | None
    numpy_version: str | None
    speed: float  # fp32 latency relative to `local`
    noise: float  # sd of the log of round medians
    iteration_noise: float  # sd of the log of iterations inside a round
    fp16: float  # recipe latency / fp32 latency, XNNPACK
    dynamic: float
    int8: float
    builtin: float  # built-in kernels / XNNPACK, fp32
    governor: str
    temperature_c: float  # at the first round
    warming_c: float  # per device round, until the cool-down threshold holds it
    steal: float  # mean CPU steal fraction
    background: float  # load besides the runner
    startup_s: float  # process start, transport and staging per round
    cooldown_s: float = 0.0
    thermal_max_c: float | None = None


DEVICE_PROFILES = (
    DeviceProfile(
        "local", "the machine running bench", "local", "python", "harness", "auto",
        "11th Gen Intel(R) Core(TM) i9-11900K @ 3.50GHz", X86 + AVX512, 16, 8,
        "x86_64", "Linux-6.8.0-45-generic-x86_64-with-glibc2.39",
        ("ai-edge-litert", "1.2.0", "ai_edge_litert.interpreter"), "3.11.7", "1.26.4",
        speed=1.0, noise=0.03, iteration_noise=0.025, fp16=1.0, dynamic=0.72, int8=0.45,
        builtin=1.9, governor="performance", temperature_c=44.0, warming_c=0.1, steal=0.0,
        background=0.3, startup_s=0.35),
    DeviceProfile(
        "pixel", "Pixel 4 (Snapdragon 855)", "adb", "benchmark_model", "python3", "auto",
        "SM8150", ARMV8_2, 8, 4, "arm64-v8a",
        "google/flame/flame:13/TQ3A.230901.001/10750268:user/release-keys",
        ("benchmark_model", "2.16.1", None), None, None,
        speed=1.7, noise=0.08, iteration_noise=0.05, fp16=1.0, dynamic=0.85, int8=0.5,
        builtin=1.6, governor="schedutil", temperature_c=36.0, warming_c=0.8, steal=0.0,
        background=1.5, startup_s=0.9, cooldown_s=5.0, thermal_max_c=45.0),
    DeviceProfile(
        "rpi4", "Raspberry Pi 4 Model B, 4 GB", "ssh", "python", "/home/pi/tflite/bin/python",
        "tflite_runtime.interpreter", "BCM2835", ARMV8_0, 4, 4, "aarch64",
        "Linux-6.6.31+rpt-rpi-v8-aarch64-with-glibc2.36",
        ("tflite-runtime", "2.14.0", "tflite_runtime.interpreter"), "3.11.2", "1.24.2",
        speed=5.5, noise=0.05, iteration_noise=0.03, fp16=1.0, dynamic=0.95, int8=0.9,
        builtin=1.5, governor="ondemand", temperature_c=52.0, warming_c=0.6, steal=0.0,
        background=0.1, startup_s=0.9, cooldown_s=2.0, thermal_max_c=60.0),
    DeviceProfile(
        "laptop", "ThinkPad T490 (Core i7-8565U)", "ssh", "python", "python3", "auto",
        "Intel(R) Core(TM) i7-8565U CPU @ 1.80GHz", X86, 8, 4, "x86_64",
        "Linux-6.5.0-41-generic-x86_64-with-glibc2.35",
        ("ai-edge-litert", "1.0.1", "ai_edge_litert.interpreter"), "3.10.12", "1.26.4",
        speed=1.5, noise=0.06, iteration_noise=0.04, fp16=1.0, dynamic=0.85, int8=0.7,
        builtin=2.0, governor="powersave", temperature_c=55.0, warming_c=0.5, steal=0.0,
        background=0.8, startup_s=0.5),
    DeviceProfile(
        "rpi5", "Raspberry Pi 5, 8 GB", "ssh", "python", "/home/pi/tflite/bin/python", "auto",
        "BCM2712", ARMV8_2, 4, 4, "aarch64",
        "Linux-6.6.51+rpt-rpi-2712-aarch64-with-glibc2.36",
        ("ai-edge-litert", "1.2.0", "ai_edge_litert.interpreter"), "3.11.2", "1.26.4",
        speed=2.6, noise=0.04, iteration_noise=0.025, fp16=1.0, dynamic=0.8, int8=0.55,
        builtin=1.6, governor="ondemand", temperature_c=48.0, warming_c=0.4, steal=0.0,
        background=0.1, startup_s=0.6),
)


def device_profile(name: str, index: int) -> DeviceProfile:
    """The shipped kind of that name, else the index's kind made another machine: a bit
    faster or slower, reached over SSH if it was this machine, x86 ones as cloud VMs."""
    for known in DEVICE_PROFILES:
        if known.name == name:
            return known
    kind = DEVICE_PROFILES[index % len(DEVICE_PROFILES)]
    rng = _stable_rng("device", name)
    changes: dict = {"name": name, "speed": round(kind.speed * math.exp(rng.normal(0, 0.2)), 3),
                     "description": f"{kind.description} (another one)"}
    if kind.machine == "x86_64":
        changes.update(steal=0.015, description=f"cloud VM like {kind.name}")
    if kind.transport == "local" and index > 0:
        changes.update(transport="ssh", python="python3", startup_s=0.5)
    return replace(kind, **changes)


def _device(name: str, kind: DeviceProfile, backends: tuple[str, ...],
            threads: tuple[int, ...]) -> Device:
    """The Device a device file would have resolved to."""
    slug = hashlib.sha256(name.encode()).hexdigest()[:8]
    ssh = adb = bm = None
    work_dir = "bench-work"
    if kind.transport == "ssh":
        ssh = SSHSettings(host=f"{kind.name}-{slug}.lan", user="pi" if "rpi" in kind.name
                          else "bench", key_file="~/.ssh/id_ed25519")
    elif kind.transport == "adb":
        adb = ADBSettings(host=f"192.168.1.{int(slug, 16) % 200 + 20}", port=5555)
        work_dir = "/data/local/tmp/bench-work"
    else:
        work_dir = f"/tmp/bench-work-1000/{name}"
    if kind.runner == "benchmark_model":
        bm = BenchmarkModelSettings(binary=BM_BINARY)
    return Device(
        name=name, file=Path("devices") / f"{name}.toml", transport=kind.transport,
        runner=kind.runner, python=kind.python, tflite_module=kind.tflite_module,
        threads=threads, backends=backends, cpus=None, work_dir=work_dir, timeout_s=600.0,
        description=kind.description, cooldown_s=kind.cooldown_s,
        thermal_zone="/sys/class/thermal/thermal_zone*/temp" if kind.thermal_max_c else None,
        thermal_max_c=kind.thermal_max_c, ssh=ssh, adb=adb, benchmark_model=bm)


def _probe(name: str, kind: DeviceProfile) -> tuple[str, RunnerProbe]:
    """The machine identity and what the runner's probe would have reported."""
    digest = hashlib.sha256(f"machine\x1f{name}".encode()).hexdigest()
    identity = digest[:14].upper() if kind.transport == "adb" else digest[:32]
    runtime, version, module = kind.runtime
    runner_version = _bm_digest(name) if kind.runner == "benchmark_model" else \
        pyrunner.RUNNER_VERSION
    return identity, RunnerProbe(
        runner_name=kind.runner, runner_version=runner_version, runtime_name=runtime,
        runtime_version=version, runtime_module=module, python_version=kind.python_version,
        numpy_version=kind.numpy_version, cpu_model=kind.cpu_model, cpu_flags=kind.cpu_flags,
        cpu_count=kind.cpu_count, machine=kind.machine, platform=kind.platform)


def _bm_digest(name: str) -> str:
    return hashlib.sha256(f"benchmark_model\x1f{name}".encode()).hexdigest()[:12]


# --- variants


def _size_bytes(model: ModelProfile, recipe: str) -> int:
    overhead = 30_000 + model.nodes * 600
    per_param = {"fp32": 4.0, "fp16": 2.0, "dynamic": 1.04, "int8": 1.02,
                 "int8-per-tensor": 1.01, "int16x8": 1.03}.get(recipe, 2.0)
    return int(model.params * per_param + overhead * (1.0 if recipe == "fp32" else 1.3))


def _check(model: ModelProfile, recipe: str) -> dict | None:
    """The output check against fp32 on 8 fixed inputs (None for fp32 itself)."""
    if recipe == "fp32":
        return None
    rng = _stable_rng("check", model.name, recipe)
    depthwise = model.name.startswith("mobilenet")
    low, high, worst = {"fp16": (60, 75, 8), "dynamic": (30, 42, 7), "int8": (18, 28, 7),
                        "int16x8": (40, 50, 8)}.get(
        recipe, (6, 15, 4) if depthwise else (12, 25, 6))
    agree = int(rng.integers(worst, 9))
    return {"inputs": 8, "seed": 2018, "top1_agreement": agree / 8,
            "snr_db": round(float(rng.uniform(low, high)), 3), "reference_is_zero": False,
            "identical": False}


WEIGHT_SCHEMES = {"fp32": "float32", "fp16": "float16",
                  "dynamic": "int8 per-channel/per-tensor, dynamic range",
                  "int8": "int8 per-channel/per-tensor", "int8-per-tensor": "int8 per-tensor",
                  "int16x8": "int8 per-channel/per-tensor"}


def _ops(model: ModelProfile, recipe: str) -> dict[str, int]:
    """Builtin op counts as `bench.zoo.inspect` reads them: a body of convolutions and
    additions under a pooled classifier head; fp16 adds a DEQUANTIZE per weight tensor,
    float in/out around 16-bit activations a QUANTIZE and a DEQUANTIZE."""
    body = max(model.nodes - 3, 2)
    depthwise = round(body * model.depthwise)
    conv = max(1, round(body * 0.5))
    ops = {"CONV_2D": conv, "DEPTHWISE_CONV_2D": depthwise,
           "ADD": max(body - conv - depthwise, 0), "MEAN": 1, "RESHAPE": 1,
           "FULLY_CONNECTED": 1}
    if recipe == "fp16":
        ops["DEQUANTIZE"] = conv + depthwise + 1
    elif recipe == "int16x8":
        ops.update(QUANTIZE=1, DEQUANTIZE=1)
    return {name: count for name, count in ops.items() if count}


def _build_error(model: str, recipe: str) -> str:
    if recipe == "int16x8":
        return "RuntimeError: Quantization to 16x8-bit not yet supported for op: 'MEAN'."
    return ("RuntimeError: Max and min for dynamic tensors should be recorded during "
            f"calibration: Failed for tensor {model}/dense/MatMul")


def _variant(model: ModelProfile, recipe: str, broken: bool) -> Variant:
    rng = _stable_rng("build", model.name, recipe)
    key = {"model": {"arch": model.name, "size": 224, "alpha": None, "weights": "imagenet",
                     "seed": None, "builder_version": 1},
           **(recipe_key(recipe, DEFAULT_CALIBRATION_SIZE, False) if recipe in RECIPES
              else {"recipe": recipe}),
           "converter": {"tensorflow": CONVERTER_VERSION}}
    seconds = model.params / 1e6 * (0.4 if recipe in ("fp32", "fp16") else 1.2) + 2.0
    seconds = round(seconds * float(rng.uniform(0.8, 1.25)), 3)
    if broken:
        return Variant(model.name, recipe, "failed", error=_build_error(model.name, recipe),
                       build_seconds=seconds, key=key, source=model.name)
    sha = hashlib.sha256(f"synthetic\x1f{model.name}\x1f{recipe}".encode()).hexdigest()
    return Variant(model.name, recipe, "ok", path=f"models/cache/{sha[:24]}/model.tflite",
                   sha256=sha, size_bytes=_size_bytes(model, recipe), random_weights=False,
                   build_seconds=seconds, key=key, check=_check(model, recipe),
                   source=model.name, ops=_ops(model, recipe), macs=model.macs,
                   weight_scheme=WEIGHT_SCHEMES.get(recipe, "float32"))


# --- the world: what is measured, and how fast it should be


@dataclass
class _Mishaps:
    """The non-ok cells real runs have (None: this run has no such cell)."""

    broken_variant: tuple[str, str] | None = None
    runtime_failure: CellKey | None = None
    fallback: CellKey | None = None
    skipped: CellKey | None = None


@dataclass
class _World:
    models: dict[str, ModelProfile]
    recipes: list[str]
    kinds: dict[str, DeviceProfile]
    devices: list[Device]
    variants: list[Variant]
    references: list[Variant]  # fp32 built only as the reference for the others
    plan: Plan
    mishaps: _Mishaps
    base_us: dict[CellKey, float] = field(default_factory=dict)


def _names(spec: int | Sequence[str], known: Sequence[str], prefix: str) -> list[str]:
    """An int: the known names first, then `prefix_NN`; a list: the names as given."""
    if isinstance(spec, int):
        if spec < 1:
            raise ValueError(f"{prefix}s: need at least 1, not {spec}")
        return [known[i] if i < len(known) else f"{prefix}_{i:02d}" for i in range(spec)]
    names = list(spec)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{prefix}s: need at least one non-empty name")
    if len(set(names)) != len(names):
        raise ValueError(f"{prefix}s: names must be distinct")
    return names


def _rank(value: str, preferred: Sequence[str]) -> int:
    return preferred.index(value) if value in preferred else len(preferred)


def _mishaps(plan: Plan, models: list[str], recipes: list[str],
             kinds: dict[str, DeviceProfile]) -> _Mishaps:
    """Pick one cell (or variant) for each kind of trouble, never an fp32 one (every family's
    reference) and never the last non-fp32 cell that would stay ok."""
    found = _Mishaps()
    others = [r for r in recipes if r != "fp32"]
    if len(others) * len(models) < 2:
        return found
    recipe = "int16x8" if "int16x8" in others else others[-1]
    found.broken_variant = (models[-1], recipe)
    free = [c for c in plan.cells if c.recipe != "fp32" and
            (c.model, c.recipe) != found.broken_variant]
    order = {c.key: i for i, c in enumerate(plan.cells)}

    def take(candidates: list[Cell], rank: Callable[[Cell], tuple]) -> CellKey | None:
        if not candidates or len(free) < 2:
            return None
        chosen = min(candidates, key=rank)
        free.remove(chosen)
        return chosen.key

    # a newer op version than the board's runtime has: a runtime failure, on a python board
    found.runtime_failure = take(free, lambda c: (
        kinds[c.device].runner != "python",
        _rank(c.recipe, ("int16x8", "int8-per-tensor", "int8")),
        _rank(kinds[c.device].name, ("rpi4", "rpi5", "laptop")), order[c.key]))
    found.fallback = take([c for c in free if c.backend == "xnnpack"], lambda c: (
        _rank(c.recipe, ("int8", "int8-per-tensor", "dynamic")), order[c.key]))
    found.skipped = take(free, lambda c: (_rank(c.recipe, ("fp16",)), -order[c.key]))
    return found


def _threads_factor(model: ModelProfile, kind: DeviceProfile, threads: int) -> float:
    """Amdahl's law up to the cores; beyond them the threads contend."""
    usable = min(threads, kind.cores)
    factor = (1 - model.parallel) + model.parallel / usable
    return factor * (threads / usable) ** 0.7


RECIPE_BUILTIN = {"fp16": 1.03, "dynamic": 0.65, "int8": 0.75, "int8-per-tensor": 0.72}


def _base_us(key: CellKey, model: ModelProfile, kind: DeviceProfile, seed: int,
             builtin: bool) -> float:
    """The cell's typical round median, before round noise."""
    recipe = {"fp32": 1.0, "fp16": kind.fp16, "dynamic": kind.dynamic, "int8": kind.int8,
              "int8-per-tensor": kind.int8 * 0.96, "int16x8": 2.6}.get(key.recipe)
    if recipe is None:
        recipe = float(_stable_rng("recipe", key.recipe).uniform(0.5, 1.2))
    backend = 1.0
    if builtin:  # built-in kernels: slow floats, better (relative) integer kernels
        backend = kind.builtin * RECIPE_BUILTIN.get(key.recipe, 1.0)
    jitter = math.exp(_stable_rng(seed, "cell", *key.as_reference).normal(0, 0.04))
    return (model.fp32_ms * 1000.0 * kind.speed * recipe * backend * jitter *
            _threads_factor(model, kind, key.threads))


def _world(models: int | Sequence[str], recipes: Sequence[str], devices: int | Sequence[str],
           backends: Sequence[str], threads: Sequence[int], seed: int,
           failures: bool) -> _World:
    model_names = _names(models, [m.name for m in ZOO_MODELS], "model")
    device_names = _names(devices, [d.name for d in DEVICE_PROFILES], "device")
    recipe_names = _names(list(recipes), (), "recipe")
    backend_names = tuple(_names(list(backends), (), "backend"))
    unknown = [b for b in backend_names if b not in BACKENDS]
    if unknown:
        raise ValueError(f"backends: only {', '.join(BACKENDS)} are simulated, not "
                         f"{', '.join(unknown)}")
    thread_counts = tuple(threads)
    if not thread_counts or len(set(thread_counts)) != len(thread_counts) or \
            any(not isinstance(t, int) or t < 1 for t in thread_counts):
        raise ValueError("threads: need distinct counts, each >= 1")
    profiles = {name: model_profile(name) for name in model_names}
    kinds = {name: device_profile(name, i) for i, name in enumerate(device_names)}
    device_list = [_device(n, kinds[n], backend_names, thread_counts) for n in device_names]
    unbuilt = make_plan([Variant(m, r, "ok") for m in model_names for r in recipe_names],
                        device_list, list(backend_names), list(thread_counts))
    mishaps = _mishaps(unbuilt, model_names, recipe_names, kinds) if failures else _Mishaps()
    variants = [_variant(profiles[m], r, (m, r) == mishaps.broken_variant)
                for m in model_names for r in recipe_names]
    references = [] if "fp32" in recipe_names else \
        [_variant(profiles[m], "fp32", False) for m in model_names]
    plan = make_plan(variants, device_list, list(backend_names), list(thread_counts))
    world = _World(profiles, recipe_names, kinds, device_list, variants, references, plan,
                   mishaps)
    # the keys picked above carried no sha256; find the planned cells they name
    by_name = {c.key.as_reference: c.key for c in plan.cells}
    for name in ("runtime_failure", "fallback", "skipped"):
        picked = getattr(mishaps, name)
        if picked is not None:
            setattr(mishaps, name, by_name[picked.as_reference])
    if mishaps.skipped is not None:
        cell = next(c for c in plan.cells if c.key == mishaps.skipped)
        plan.cells.remove(cell)
        plan.skipped.append((cell, _skip_reason(cell)))
    for cell in plan.cells:
        builtin = cell.backend == "cpu" or cell.key == mishaps.fallback
        world.base_us[cell.key] = _base_us(cell.key, profiles[cell.model],
                                           kinds[cell.device], seed, builtin)
    return world


def _skip_reason(cell: Cell) -> str:
    """Real skips come by whole (device, backend); one skipped cell has no real reason."""
    return (f"synthetic skip: stands for a backend device {cell.device} does not declare "
            f"({cell.backend})")


# --- one round


@dataclass
class _Clock:
    """Simulated time (unix seconds). Devices are measured in parallel: each device's rounds
    are written from the run's start again, so the clock goes back between devices."""

    now: float


@dataclass
class _DeviceState:
    """A device's thermal state between rounds."""

    temperature_c: float
    hottest_c: float = 0.0


def _iterations(rng: np.random.Generator, median_us: float, spread: float,
                count: int) -> np.ndarray:
    """Iteration times around a median: lognormal, with a few slow outliers."""
    values = median_us * np.exp(rng.normal(0.0, spread, count))
    slow = rng.random(count) < 0.015
    values[slow] *= rng.uniform(1.1, 1.8, int(slow.sum()))
    return values


def _timed_count(median_us: float, loop: dict) -> int:
    """benchmark_model's rule, which pyrunner copies: min_runs and min_s, at most max_s."""
    wanted = max(loop["min_runs"], math.ceil(loop["min_s"] * 1e6 / median_us))
    return max(1, min(wanted, math.ceil(loop["max_s"] * 1e6 / median_us)))


@dataclass(frozen=True)
class _Round:
    """One round's draws, shared by both runners' renderings."""

    init_us: float
    first_us: float
    warmup: np.ndarray
    timed: np.ndarray
    temperature_c: float
    load: float
    peak_bytes: int

    @property
    def seconds(self) -> float:
        return (self.init_us + self.first_us + self.warmup.sum() + self.timed.sum()) / 1e6


def _built_size(cell: Cell) -> int:
    """The measured cell's file size: only built variants are measured, so it is known."""
    if cell.variant.size_bytes is None:
        raise ValueError(f"{cell.label}: measured without a built file")
    return cell.variant.size_bytes


def _draw_round(rng: np.random.Generator, cell: Cell, kind: DeviceProfile, model: ModelProfile,
                median_us: float, state: _DeviceState, loop: dict, builtin: bool) -> _Round:
    spread = kind.iteration_noise * (1.0 + 0.1 * (min(cell.threads, kind.cores) - 1))
    timed = _iterations(rng, median_us, spread, _timed_count(median_us, loop))
    warm_count = max(loop["warmup_runs"], math.ceil(loop["warmup_min_s"] * 1e6 / median_us))
    warmup = _iterations(rng, median_us * 1.05, spread, warm_count)
    size_mb = _built_size(cell) / 1e6
    packing = 0.8 if builtin else (6.0 if cell.recipe == "fp16" else 4.0)  # ms per MB
    init_us = (1500.0 + size_mb * packing * 1000.0 * kind.speed ** 0.7) * \
        math.exp(rng.normal(0, 0.1))
    # XNNPACK packs its own copy of the weights (fp16 unpacked to fp32); built-in kernels
    # read fp32 weights in place and dequantize fp16 ones
    weights_mb = model.params * (4.0 if cell.recipe in ("fp32", "fp16") else 1.0) / 1e6
    peak_mb = model.activations_mb + size_mb + (0.0 if builtin and cell.recipe == "fp32"
                                                else weights_mb)
    peak = int(peak_mb * 1e6 * math.exp(rng.normal(0, 0.02)) / 4096) * 4096
    load = 1.0 + (cell.threads - 1) * 0.8 + kind.background * float(rng.uniform(0.5, 1.5))
    return _Round(init_us, median_us * float(rng.uniform(1.2, 2.2)), warmup, timed,
                  state.temperature_c + float(rng.uniform(-0.5, 0.5)), load, peak)


def _python_document(rng: np.random.Generator, cell: Cell, device: Device,
                     kind: DeviceProfile, index: int, drawn: _Round | None, loop: dict,
                     started: float, fallback: bool, error: str | None) -> dict:
    """The result document pyrunner would have written for this round."""
    runtime, version, module = kind.runtime
    cores = list(range(kind.cpu_count))
    loadavg = [round(drawn.load if drawn else 1.0 + kind.background, 2)] * 3
    doc: dict = {
        "schema_version": pyrunner.RESULT_SCHEMA_VERSION,
        "runner_version": pyrunner.RUNNER_VERSION, "status": "failed", "error": None,
        "python": kind.python_version, "platform": kind.platform, "machine": kind.machine,
        "cpu_model": kind.cpu_model, "cpu_flags": list(kind.cpu_flags),
        "cpu_count": kind.cpu_count, "loadavg_before": loadavg, "started_unix": started,
        "job": {"schema_version": pyrunner.JOB_SCHEMA_VERSION,
                "model_path": f"{device.work_dir}/models/{cell.variant.sha256}.tflite",
                "backend": cell.backend, "threads": cell.threads,
                "tflite_module": kind.tflite_module, "cpus": None, "round": index, **loop},
        "affinity": cores, "numpy_version": kind.numpy_version,
        "runtime": {"name": runtime, "version": version, "module": module},
    }
    if drawn is None:  # the interpreter could not be built: no figures at all
        doc.update(error=error, finished_unix=started + 0.3, loadavg_after=loadavg,
                   traceback="Traceback (most recent call last):\n  File \"pyrunner.py\", "
                   f"line 392, in make_interpreter\n{error}\n")
        return doc
    delegated = cell.backend == "xnnpack" and not fallback
    nodes = _graph_nodes(cell)
    ran = drawn.seconds
    busy = []
    if kind.background >= 0.5 and rng.random() < 0.15:
        busy = [{"pid": int(rng.integers(1000, 60000)),
                 "name": str(rng.choice(["chrome", "firefox", "code", "Xorg"])),
                 "cpu_share": round(float(rng.uniform(0.2, 0.6)), 2)}]
    running = [1 + cell.threads - 1 + int(rng.poisson(kind.background)) for _ in range(3)]
    doc.update({
        "status": "ok",
        "init_us": drawn.init_us,
        "delegation": {"backend": cell.backend, "delegated": "yes" if delegated else "no",
                       "delegate_nodes": 1 if delegated else 0, "nodes": nodes,
                       "evidence": f"{1 if delegated else 0} DELEGATE node(s) replaced parts "
                                   f"of the {nodes}-node graph"},
        "first_inference_us": drawn.first_us,
        "warmup_runs": len(drawn.warmup),
        "latencies_us": np.round(drawn.timed, 3).tolist(),
        "loop_overhead_us": round(0.08 + 0.1 * kind.speed ** 0.5, 3),
        "batch": 1,
        "peak_memory_bytes": drawn.peak_bytes,
        "memory_method": "VmHWM after clear_refs minus VmRSS",
        "environment": {
            "loadavg": [round(drawn.load, 2), round(drawn.load * 0.9, 2),
                        round(drawn.load * 0.8, 2)],
            "procs_running": sorted(running)[1], "procs_running_samples": running,
            "steal": round(float(rng.exponential(kind.steal)), 4) if kind.steal else 0.0,
            "governor": kind.governor, "temperature_c": round(drawn.temperature_c, 1),
            "affinity": cores, "busy_processes": busy, "wall_s": ran + 0.2},
        "loadavg_after": loadavg, "finished_unix": started + ran + 0.2,
    })
    return doc


def _graph_nodes(cell: Cell) -> int:
    return sum((cell.variant.ops or {}).values())


def _stat_line(values: np.ndarray) -> str:
    """benchmark_model's stat line: whole microseconds, the average as %g."""
    ints = np.maximum(values.astype(np.int64), 1)
    ordered = np.sort(ints)
    count = len(ints)
    avg = float(ints.mean())
    std = int(math.sqrt(max(float((ints.astype(float) ** 2).mean()) - avg * avg, 0.0)))
    return (f"count={count} first={ints[0]} curr={ints[-1]} min={ordered[0]} "
            f"max={ordered[-1]} avg={avg:g} std={std} p5={ordered[count * 5 // 100]} "
            f"median={ordered[count // 2]} p95={ordered[count * 95 // 100]}")


def _bm_outcome(cell: Cell, device: Device, kind: DeviceProfile, drawn: _Round | None,
                loop: dict, fallback: bool, battery: float, load: float) -> CommandResult:
    """What benchmark_model and the round script would have printed for this round: the
    tool's own lines on stdout, the runtime's and the state snapshots on stderr."""
    graph = f"{device.work_dir}/models/{cell.variant.sha256}.tflite"
    xnnpack = cell.backend == "xnnpack"
    out = ["STARTING!", "Log parameter values verbosely: [0]",
           f"Min num runs: [{loop['min_runs']}]",
           f"Min runs duration (seconds): [{loop['min_s']:g}]",
           f"Max runs duration (seconds): [{loop['max_s']:g}]",
           f"Num threads: [{cell.threads}]", f"Min warmup runs: [{loop['warmup_runs']}]",
           f"Min warmup runs duration (seconds): [{loop['warmup_min_s']:g}]",
           f"Graph: [{graph}]", f"Use xnnpack: [{int(xnnpack)}]",
           f"#threads used for CPU inference: [{cell.threads}]", f"Loaded model {graph}"]
    runtime = ["INFO: Initialized TensorFlow Lite runtime."]
    before = drawn.temperature_c if drawn else kind.temperature_c
    after = before + (min(6.0, 0.5 + 2.0 * drawn.seconds) if drawn else 0.2)

    def snap(when: str, celsius: float, tenths: int) -> str:
        return (f"{ENV_PREFIX}{when} thermal={int(celsius * 1000)} battery={tenths} "
                f"status=Discharging governors={kind.governor}, wakefulness=Asleep "
                f"load={load:.2f}")

    if drawn is None:  # an op the binary's runtime does not have
        runtime += [f"ERROR: {RUNTIME_ERROR}", "ERROR: Registration failed.",
                    "ERROR: Failed to construct interpreter", "ERROR: Benchmarking failed."]
        stderr = [snap("before", before, int(battery * 10)), *runtime,
                  snap("after", after, int(battery * 10))]
        return CommandResult(1, "\n".join(f"INFO: {line}" for line in out),
                             "\n".join(stderr), 1.0)
    if xnnpack and not fallback:
        nodes = _graph_nodes(cell)
        runtime += ["INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
                    f"INFO: Replacing {nodes} out of {nodes} node(s) with delegate "
                    "(TfLiteXNNPackDelegate) node, yielding 1 partitions for subgraph 0."]
        out += ["XNNPACK delegate created.", "Explicitly applied XNNPACK delegate, and the "
                "model graph will be completely executed by the delegate."]
    elif xnnpack:
        out += ["XNNPACK delegate created.", "Though XNNPACK delegate is explicitly applied, "
                "the model graph will not be executed by the delegate."]
    timed_avg = float(drawn.timed.astype(np.int64).mean())
    out += [f"The input model file size (MB): {_built_size(cell) / 1e6:g}",
            f"Initialized session in {drawn.init_us / 1000:g}ms.",
            f"Running benchmark for at least {loop['warmup_runs']} iterations and at least "
            f"{loop['warmup_min_s']:g} seconds but terminate if exceeding {loop['max_s']:g} "
            "seconds.", _stat_line(np.concatenate([[drawn.first_us], drawn.warmup])), "",
            f"Running benchmark for at least {loop['min_runs']} iterations and at least "
            f"{loop['min_s']:g} seconds but terminate if exceeding {loop['max_s']:g} seconds.",
            _stat_line(drawn.timed), "",
            f"Inference timings in us: Init: {int(drawn.init_us)}, First inference: "
            f"{int(drawn.first_us)}, Warmup (avg): {float(drawn.warmup.mean()):g}, "
            f"Inference (avg): {timed_avg:g}",
            "Note: as the benchmark tool itself affects memory footprint, the following is "
            "only APPROXIMATE to the actual memory footprint of the model at runtime. Take "
            "the information at your discretion.",
            f"Memory footprint delta from the start of the tool (MB): "
            f"init={drawn.peak_bytes * 0.6 / 2**20:g} overall={drawn.peak_bytes / 2**20:g}"]
    stderr = [snap("before", before, int(battery * 10)), *runtime,
              snap("after", after, int(battery * 10) + 1)]
    return CommandResult(0, "\n".join(f"INFO: {line}" if line else "" for line in out),
                         "\n".join(stderr), drawn.seconds)


# --- the sweep


@contextmanager
def _store_clock(clock: _Clock) -> Iterator[None]:
    """While writing, the store stamps its rows with the simulated time."""
    real = sqlite_store.utc_now
    sqlite_store.utc_now = lambda: from_unix(clock.now) or real()
    try:
        yield
    finally:
        sqlite_store.utc_now = real


def _estimate_s(world: _World, device: Device, rounds: int) -> float:
    """How long the device's rounds take, near enough to date the run's start so that it
    ends about now: per round the runner's start, warm-up, first inference and timed
    loop, plus the cool-down (a thermal wait on the devices that heat up)."""
    kind = world.kinds[device.name]
    total = 5.0 + rounds * (kind.cooldown_s + (20.0 if kind.thermal_max_c else 0.0))
    for cell in world.plan.cells:
        if cell.device == device.name and cell.key in world.base_us:
            seconds = world.base_us[cell.key] / 1e6
            total += rounds * (kind.startup_s + 0.3 + max(0.3, 10 * seconds) +
                               max(0.2, seconds) + 1.7 * seconds)
    return total * 1.05  # slow iterations and disturbed rounds


def _settings(world: _World, rounds: int, seed: int) -> dict:
    """What `bench run` would have stored, marked synthetic."""
    return {
        "models": list(world.models), "recipes": list(world.recipes),
        "devices": [d.name for d in world.devices], "backends": list(world.devices[0].backends),
        "threads": list(world.devices[0].threads), "rounds": rounds, "quick": False,
        "calibration_size": DEFAULT_CALIBRATION_SIZE, "float_io": False, "min_rounds": None,
        "max_rounds": None, "target": None, "budget": None, "cooldown": None, "seed": seed,
        "cpus": None, "runs": None, "min_seconds": None,
        "synthetic": {"generator": "bench.synthetic", "seed": seed},
    }


def make_store(path: Path, *, models: int | Sequence[str] = 2,
               recipes: Sequence[str] = DEFAULT_RECIPES, devices: int | Sequence[str] = 1,
               backends: Sequence[str] = ("xnnpack",), threads: Sequence[int] = (1,),
               rounds: int = 5, seed: int = 0, label: str | None = None,
               failures: bool = True) -> str:
    """Write one synthetic run into the store at `path` (made if absent); its run id.

    Cells = models x recipes x devices x backends x threads, each measured `rounds` times
    (fixed rounds). `models` / `devices` as an int take zoo-like names (then `model_07`,
    `device_05`, ...); as lists they are used verbatim. With `failures`, one variant fails to
    build, one cell fails at runtime, one XNNPACK cell falls back and one is skipped, where
    the run has non-fp32 cells to spare; without, every cell is ok."""
    if rounds < 1:
        raise ValueError(f"rounds: need at least 1, not {rounds}")
    world = _world(models, recipes, devices, backends, threads, seed, failures)
    protocol = Protocol().with_rounds(rounds)
    seconds = max(_estimate_s(world, d, rounds) for d in world.devices)
    start = time.time() - seconds
    run_id = datetime.fromtimestamp(start).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
    store = SQLiteStore(Path(path))
    clock = _Clock(start)
    try:
        store.db.execute("BEGIN")
        try:
            with _store_clock(clock):
                _write(store, world, run_id, protocol, seed, label, clock)
            store.db.execute("COMMIT")
        except BaseException:
            store.db.execute("ROLLBACK")
            raise
    finally:
        store.close()
    return run_id


def _write(store: SQLiteStore, world: _World, run_id: str, protocol: Protocol, seed: int,
           label: str | None, clock: _Clock) -> None:
    """The store calls of `bench run`, in its order, at simulated times."""
    host = {"harness_version": __version__, "python": sys.version.split()[0],
            "platform": "synthetic", "hostname": "synthetic", "cpu_count": 16,
            "loadavg": [0.3, 0.3, 0.3]}
    store.start_run(run_id, label=label, settings=_settings(world, protocol.max_rounds, seed),
                    host=host, harness_version=__version__, protocol=protocol.to_dict(),
                    protocol_version=PROTOCOL_VERSION, seed=seed)
    session = store.start_session(run_id, host="synthetic", pid=os.getpid(),
                                  harness_version=__version__)
    for position, variant in enumerate(world.variants + world.references):
        store.save_variant(run_id, variant, position)
    plan = world.plan
    for cell in plan.cells:
        store.save_cell(run_id, cell.key, status=PENDING, position=plan.order.get(cell.key))
    for cell, reason in plan.skipped:
        store.save_cell(run_id, cell.key, status=SKIPPED, reason=reason,
                        position=plan.order.get(cell.key))
    began = clock.now
    ends = [began]
    for device in world.devices:
        clock.now = began
        _measure_device(store, world, run_id, session, device, protocol, seed, clock)
        ends.append(clock.now)
    clock.now = max(ends) + 1.0
    store.finish_session(run_id, session, "completed")
    store.set_run_status(run_id, "completed")


def _measure_device(store: SQLiteStore, world: _World, run_id: str, session: int,
                    device: Device, protocol: Protocol, seed: int, clock: _Clock) -> None:
    """One device as `Sweep` measures it: probe, device rounds, stop decisions, memory."""
    kind = world.kinds[device.name]
    rng = _stable_rng(seed, "rounds", device.name)
    clock.now += 2.0 + kind.startup_s * 3  # reaching, locking, staging, probing
    identity, probe = _probe(device.name, kind)
    store.save_device(run_id, session, device_facts(device, identity, probe))
    active = []
    for cell in (c for c in world.plan.cells if c.device == device.name):
        if cell.variant.status == "ok":
            active.append(cell)
        else:
            store.save_cell(run_id, cell.key, status=FAILED,
                            reason=cell.variant.error or "variant was not built")
    loop = protocol.loop_settings()
    state = _DeviceState(kind.temperature_c)
    runner = None
    if device.benchmark_model is not None:
        runner = BenchmarkModelRunner(device.benchmark_model, str(device.file))
        runner.digest = _bm_digest(device.name)
    battery = 31.0
    for index in range(protocol.max_rounds):
        if not active:
            break
        cooldown = _cool_down(device, kind, state, clock, index)
        order = round_order(active, seed, device.name, index)
        store.start_device_round(run_id, device.name, index, session=session, seed=seed,
                                 planned=len(order), cooldown=cooldown)
        shared = rng.normal(0.0, 0.6 * kind.noise)
        # warmer than at the start: clocks come down a little (1% per degree)
        throttle = 1.0 + 0.01 * max(0.0, state.temperature_c - kind.temperature_c)
        state.hottest_c = state.temperature_c
        for position, cell in enumerate(order):
            result, seconds = _one_round(rng, world, cell, device, kind, index, state, loop,
                                         shared, throttle, runner, battery, clock.now)
            host_seconds = round(kind.startup_s + seconds, 4)
            predecessor = order[position - 1].key.cell_id if position else None
            store.record_round(run_id, cell.key, result,
                               RoundContext(round=index, session=session, position=position,
                                            host_seconds=host_seconds, predecessor=predecessor))
            clock.now += host_seconds
            if not result.ok:  # only ever in the first round here: no rounds to keep
                active.remove(cell)
                store.save_cell(run_id, cell.key, status=FAILED, reason=result.error,
                                stop_reason="failed", protocol_version=PROTOCOL_VERSION)
        store.finish_device_round(run_id, device.name, index)
        battery += 0.15
        state.temperature_c += kind.warming_c
    for cell in active:
        store.save_cell(run_id, cell.key, status=OK, stop_reason="fixed_rounds",
                        protocol_version=PROTOCOL_VERSION)
    if runner is not None:
        for cell in active:
            _memory(store, rng, world, run_id, cell, kind, clock)


def _cool_down(device: Device, kind: DeviceProfile, state: _DeviceState, clock: _Clock,
               index: int) -> dict | None:
    """What `cool_down` would have recorded before this device round (None: none ran)."""
    if index == 0 or not (device.cooldown_s or device.thermal_max_c is not None):
        return None
    record: dict = {"pause_s": device.cooldown_s}
    clock.now += device.cooldown_s
    if device.thermal_max_c is None:
        return record
    hot = round(state.hottest_c + kind.warming_c, 1)
    waited = 0.0
    after = hot
    if hot > device.thermal_max_c:
        waited = round((hot - device.thermal_max_c) * 8.0, 3)
        after = round(device.thermal_max_c - 0.3, 1)
    clock.now += waited
    state.temperature_c = min(state.temperature_c, after)
    record.update(timed_out=False, temperature_before_c=hot, waited_s=waited,
                  temperature_after_c=after, threshold_c=device.thermal_max_c)
    return record


RUNTIME_ERROR = ("Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'. An older "
                 "version of this builtin might be supported. Are you using an old TFLite "
                 "binary with a newer model?")


def _one_round(rng: np.random.Generator, world: _World, cell: Cell, device: Device,
               kind: DeviceProfile, index: int, state: _DeviceState, loop: dict,
               shared: float, throttle: float, runner: BenchmarkModelRunner | None,
               battery: float, now: float) -> tuple[RoundResult, float]:
    """The round's result, as the device's runner would have parsed it; its seconds."""
    model = world.models[cell.model]
    fallback = cell.key == world.mishaps.fallback
    builtin = cell.backend == "cpu" or fallback
    own = rng.normal(0.0, 0.8 * kind.noise)
    if rng.random() < 0.03:  # a disturbed round now and then
        own += abs(rng.normal(0.0, 3.0 * kind.noise))
    median = world.base_us[cell.key] * math.exp(shared + own) * throttle
    drawn = None
    if cell.key != world.mishaps.runtime_failure:
        drawn = _draw_round(rng, cell, kind, model, median, state, loop, builtin)
        state.hottest_c = max(state.hottest_c, drawn.temperature_c +
                              min(6.0, 0.5 + 2.0 * drawn.seconds))
    seconds = drawn.seconds + 0.2 if drawn else 0.4
    if runner is None:
        error = f"ValueError: {RUNTIME_ERROR} Registration failed."
        started = round(now + kind.startup_s * 0.6, 6)
        doc = _python_document(rng, cell, device, kind, index, drawn, loop, started, fallback,
                               error)
        return from_document(doc), seconds
    job = RoundJob(model_path=f"{device.work_dir}/models/{cell.variant.sha256}.tflite",
                   backend=cell.backend, threads=cell.threads, round=index, cpus=None,
                   loop=loop, timeout_s=device.timeout_s)
    load = drawn.load if drawn else 1.0 + kind.background
    outcome = _bm_outcome(cell, device, kind, drawn, loop, fallback, battery, load)
    return runner.parse(outcome, None, job), seconds


def _memory(store: SQLiteStore, rng: np.random.Generator, world: _World, run_id: str,
            cell: Cell, kind: DeviceProfile, clock: _Clock) -> None:
    """benchmark_model's separate, untimed memory run, as the sweep stores it."""
    model = world.models[cell.model]
    size_mb = _built_size(cell) / 2**20
    peak = round((model.activations_mb + 2.0 * size_mb) * float(rng.uniform(0.95, 1.05)), 4)
    store.save_memory(run_id, cell.key, int(peak * 1024 * 1024),
                      f"overall peak memory footprint {peak:g} MB")
    clock.now += kind.startup_s + 1.0 + world.base_us[cell.key] * 12 / 1e6


# --- command line


def _names_arg(text: str) -> int | list[str]:
    return int(text) if text.isdigit() else [part for part in text.split(",") if part]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.synthetic",
        description="Write a synthetic run (nothing measured) into a results store.")
    parser.add_argument("store", type=Path, help="the SQLite store to write (made if absent)")
    parser.add_argument("--models", type=_names_arg, default=2,
                        help="how many models, or their names comma-separated (default 2)")
    parser.add_argument("--recipes", default=",".join(DEFAULT_RECIPES))
    parser.add_argument("--devices", type=_names_arg, default=1,
                        help="how many devices, or their names comma-separated (default 1)")
    parser.add_argument("--backends", default="xnnpack", help="xnnpack and/or cpu")
    parser.add_argument("--threads", default="1", help="thread counts, e.g. 1,2")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label")
    parser.add_argument("--no-failures", dest="failures", action="store_false",
                        help="every cell ok (default: one of each kind of failure)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        run_id = make_store(
            args.store, models=args.models, recipes=args.recipes.split(","),
            devices=args.devices, backends=args.backends.split(","),
            threads=[int(t) for t in args.threads.split(",")], rounds=args.rounds,
            seed=args.seed, label=args.label, failures=args.failures)
    except ValueError as exc:
        parser.error(str(exc))
    store = SQLiteStore(args.store, readonly=True)
    try:
        cells = len(store.facts(run_id).cells)
    finally:
        store.close()
    print(f"run {run_id}: {cells} cells, {args.rounds} rounds each, written to {args.store} "
          f"in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
