"""A sweep file: what a nightly job measures and how it is gated, kept in the repository.

`bench run --config nightly.toml` reads a TOML file (or `--config pyproject.toml`, its
`[tool.bench]` table) whose top-level keys are `bench run`'s own long options, spelled with
`_` or `-` (`models`, `recipes`, `devices`, `threads`, `min_rounds`, `accuracy`, `label`,
…), and an optional `[gate]` table (`baseline`, `min_effect` and `alpha` in percent,
`strict`). The file becomes command-line arguments placed before the user's own, so a
flag on the command line overrides the file, and every value is checked by the same parser
as a flag: one set of rules, one set of messages (which name the file).

Lists become comma-separated values, `true` a bare flag, `false` nothing; a nested table
other than `[gate]` is refused, as is an unknown key (with the known ones listed).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import UsageError

GATE_KEYS = {"baseline": str, "min_effect": (int, float), "alpha": (int, float),
             "strict": bool}


@dataclass(frozen=True)
class SweepFile:
    path: Path
    argv: list[str]  # `bench run` arguments, before the user's own
    gate: dict = field(default_factory=dict)  # the [gate] table, checked


def _table(path: Path) -> dict:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"sweep file {path} does not exist") from None
    except OSError as exc:
        raise UsageError(f"cannot read sweep file {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"sweep file {path} is not valid TOML: {exc}") from None
    if path.name == "pyproject.toml":
        found = data.get("tool", {}).get("bench")
        if not isinstance(found, dict):
            raise UsageError(f"{path} has no [tool.bench] table; put the sweep there or in a "
                             "file of its own (bench.toml)")
        return found
    return data


def _value(path: Path, key: str, value) -> list[str]:
    option = "--" + key.replace("_", "-")
    if isinstance(value, bool):
        return [option] if value else []
    if isinstance(value, list):
        if not value or not all(isinstance(v, str | int | float) and not isinstance(v, bool)
                                for v in value):
            raise UsageError(f"{path}: {key} must be a non-empty list of names or numbers")
        return [option, ",".join(str(v) for v in value)]
    if isinstance(value, str | int | float):
        return [option, str(value)]
    raise UsageError(f"{path}: {key} must be a value or a list, not a {type(value).__name__}")


def load_sweep_file(path: str | Path, known_options: set[str]) -> SweepFile:
    """The file's `bench run` arguments and gate settings; `known_options` are the run
    parser's long options (without dashes, with `_`), to refuse a key it does not take."""
    path = Path(path)
    table = _table(path)
    argv: list[str] = []
    gate: dict = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name == "gate":
            gate = _gate(path, value)
            continue
        if isinstance(value, dict):
            raise UsageError(f"{path}: [{key}] is not a section bench knows (only [gate])")
        if name not in known_options or name in ("config", "resume", "dry_run"):
            raise UsageError(f"{path}: unknown key {key!r}; a sweep file takes `bench run`'s "
                             f"options: {', '.join(sorted(known_options - {'config', 'resume'}))}"
                             " and a [gate] table")
        argv += _value(path, key, value)
    return SweepFile(path, argv, gate)


def _gate(path: Path, value) -> dict:
    if not isinstance(value, dict):
        raise UsageError(f"{path}: gate must be a table ([gate])")
    gate = {}
    for key, item in value.items():
        name = key.replace("-", "_")
        wanted = GATE_KEYS.get(name)
        if wanted is None:
            raise UsageError(f"{path}: unknown key {key!r} in [gate]; known: "
                             f"{', '.join(GATE_KEYS)}")
        if not isinstance(item, wanted) or (wanted is not bool and isinstance(item, bool)):
            raise UsageError(f"{path}: [gate] {key} has the wrong type ({item!r})")
        if name in ("min_effect", "alpha") and not 0 < float(item) < 100:
            raise UsageError(f"{path}: [gate] {key} is a percentage between 0 and 100, "
                             f"not {item}")
        gate[name] = item
    return gate
