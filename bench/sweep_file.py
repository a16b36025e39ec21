"""The sweep file: `bench run` and `bench compare` settings kept in `bench.toml` (or the
`[tool.bench]` table of a `pyproject.toml`), so that a nightly job is one short command.

The file never becomes argv. Its values are checked against the `run` parser's own
actions, converted by the same `type=` callables the options use (so a bad value gets
the option's own message, naming the file and key), and installed as the subcommand's
parser defaults; a second parse then lets anything on the command line win.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import EXIT_USAGE, UsageError

DEFAULT_FILES = ("bench.toml", "pyproject.toml")
COMMANDS = ("run", "compare")
# Options whose value is comma-separated on the command line: a TOML list here.
LIST_OPTIONS = ("models", "recipes", "devices", "backends", "threads", "cpus", "accuracy")
# Options that name a file or folder but have no `type=Path`.
PATH_OPTIONS = ("train_data",)
# Names or paths: a value with a `/` (or a model file's suffix) is a path.
MIXED_OPTIONS = ("models", "accuracy", "calibration")
NOT_IN_FILE = ("help", "config", "resume")
RUN_TABLE, GATE_TABLE = "run", "gate"


@dataclass
class SweepFile:
    """A validated sweep file: option defaults by dest, for `run` and for the gate."""

    path: Path
    table: str | None  # "tool.bench" in a pyproject.toml, else None (the whole file)
    run: dict[str, object] = field(default_factory=dict)
    gate: dict[str, object] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.path} [{self.table}]" if self.table else str(self.path)


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", type=Path, default=None,
                        help="sweep file (.toml; a pyproject.toml's [tool.bench] table) whose "
                        "keys are this command's options; the command line wins (default: "
                        "./bench.toml, else ./pyproject.toml's [tool.bench], if present)")


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None = None
               ) -> argparse.Namespace:
    """Parse once to learn the subcommand and --config, install the sweep file's values
    as that subcommand's defaults, parse again (the command line wins)."""
    args = parser.parse_args(argv)
    if args.command not in COMMANDS:
        return args
    target = subparser(parser, args.command)
    try:
        located = locate(args.config)
        sweep = load(*located, subparser(parser, "run")) if located else None
    except UsageError as exc:
        target.exit(EXIT_USAGE, f"{target.prog}: error: {exc}\n")
    if sweep is None:
        return args
    say(f"settings from {sweep.name}")
    resuming = args.command == "run" and args.resume is not None
    target.set_defaults(**defaults_for(sweep, target, resuming))
    return parser.parse_args(argv)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    raise LookupError(f"no subcommand {command}")


def locate(config: Path | None, folder: Path = Path(".")) -> tuple[Path, bool] | None:
    """The sweep file and whether it was named: --config, else ./bench.toml, else a
    ./pyproject.toml that has a [tool.bench] table, else None."""
    if config is not None:
        if config.suffix != ".toml":
            raise UsageError(f"--config {config}: expected a .toml file (a bench.toml, or a "
                             "pyproject.toml with a [tool.bench] table)")
        return config, True
    for name in DEFAULT_FILES:
        if (folder / name).is_file():
            candidate = folder / name
            tool = _read(candidate).get("tool") if name == "pyproject.toml" else None
            if name != "pyproject.toml" or (isinstance(tool, dict) and "bench" in tool):
                return candidate, False
    return None


def _read(path: Path) -> dict:
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise UsageError(f"--config {path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"--config {path}: is a directory, not a .toml file") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text, so not TOML") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None


def load(path: Path, named: bool, run_parser: argparse.ArgumentParser) -> SweepFile | None:
    """Read and validate the file against the `run` parser's options; a UsageError naming
    the file, table and key for the first problem."""
    data, table = _read(path), None
    if path.name == "pyproject.toml":
        table = "tool.bench"
        found = data.get("tool", {}).get("bench") if isinstance(data.get("tool"), dict) else None
        if found is None:
            if named:
                raise UsageError(f"{path}: no [tool.bench] table; put the sweep's settings "
                                 "there, or in a bench.toml")
            return None
        if not isinstance(found, dict):
            raise UsageError(f"{path}: tool.bench must be a table, [tool.bench]")
        data = found
    return _Validator(path, table, run_parser).validate(data)


class _Validator:
    """Checks keys and TOML types, resolves paths, converts through the options' types."""

    def __init__(self, path: Path, table: str | None, run_parser: argparse.ArgumentParser):
        self.sweep = SweepFile(path, table)
        self.folder = path.parent
        self.run_actions = {a.dest: a for a in run_parser._actions if a.option_strings
                            and a.dest not in NOT_IN_FILE}
        self.gate_actions = {_gate_key(a): a for a in _gate_actions(run_parser)}
        for action in self.gate_actions.values():
            self.run_actions.pop(action.dest, None)

    def validate(self, data: dict) -> SweepFile:
        run_given: dict[str, str] = {}
        for key, value in data.items():
            if key == RUN_TABLE and isinstance(value, dict):
                for inner, inner_value in value.items():
                    self._take_run(inner, inner_value, [RUN_TABLE], run_given)
            elif key == GATE_TABLE and isinstance(value, dict):
                for inner, inner_value in value.items():
                    self._take_gate(inner, inner_value)
            elif key in (RUN_TABLE, GATE_TABLE):
                self._fail([], key, f"expected the table [{self._table([key])}], got "
                           f"{_describe(value)}")
            elif isinstance(value, dict) and key not in self.run_actions:
                self._fail([], key, f"unknown table [{self._table([key])}]; accepted tables: "
                           f"[{self._table([RUN_TABLE])}] and [{self._table([GATE_TABLE])}] "
                           "(or run options as top-level keys)")
            else:
                self._take_run(key, value, [], run_given)
        return self.sweep

    def _table(self, tables: list[str]) -> str:
        return ".".join(([self.sweep.table] if self.sweep.table else []) + tables)

    def _fail(self, tables: list[str], key: str, problem: str):
        table = self._table(tables)
        where = f"key {key!r} in [{table}]" if table else f"top-level key {key!r}"
        raise UsageError(f"{self.sweep.path}: {where}: {problem}")

    def _take_run(self, key: str, value: object, tables: list[str], given: dict) -> None:
        if key not in self.run_actions:
            if key in self.gate_actions:
                self._fail(tables, key, f"a gate option: put it in the "
                           f"[{self._table([GATE_TABLE])}] table")
            self._fail(tables, key, _unknown(key, list(self.run_actions)))
        if key in given:
            self._fail(tables, key, f"given twice (also {given[key]})")
        given[key] = f"in [{self._table(tables)}]" if self._table(tables) else "at the top level"
        self.sweep.run[key] = self._convert(self.run_actions[key], key, value, tables)

    def _take_gate(self, key: str, value: object) -> None:
        if key not in self.gate_actions:
            self._fail([GATE_TABLE], key, _unknown(key, list(self.gate_actions)))
        action = self.gate_actions[key]
        self.sweep.gate[action.dest] = self._convert(action, key, value, [GATE_TABLE])

    def _convert(self, action: argparse.Action, key: str, value: object,
                 tables: list[str]) -> object:
        def fail(problem: str):
            self._fail(tables, key, problem)

        option = action.option_strings[-1]
        if action.nargs == 0:  # a flag
            if not isinstance(value, bool):
                fail(f"expected true or false (the flag {option}), got {_describe(value)}")
            return action.const if value else False
        if action.nargs == "?" and action.const is not None and isinstance(value, bool):
            return action.const if value else None  # `wait = true`: the bare flag
        if key in LIST_OPTIONS or action.dest in LIST_OPTIONS:
            text = self._list_text(action.dest, value, fail)
        else:
            text = self._scalar_text(action, value, fail)
        try:
            converted = action.type(text) if action.type else text
        except (argparse.ArgumentTypeError, ValueError, UsageError) as exc:
            fail(f"{exc} (as for {option})")
        if action.choices is not None and converted not in action.choices:
            fail(f"expected one of {', '.join(map(str, action.choices))}, got {text!r}")
        return converted

    def _scalar_text(self, action: argparse.Action, value: object, fail) -> str:
        kind = _kind(action)
        ok = {"integer": (int,), "number": (int, float)}.get(kind, (str,))
        if isinstance(value, bool) or not isinstance(value, ok):
            expected = {"integer": "an integer", "number": "a number", "path": "a path string"
                        }.get(kind, "a string")
            if action.nargs == "?" and action.const is not None:
                expected += " or true"
            fail(f"expected {expected} (as for {action.option_strings[-1]}), got "
                 f"{_describe(value)}")
        text = str(value)
        if kind == "path" or action.dest in PATH_OPTIONS or (
                action.dest in MIXED_OPTIONS and "/" in text):
            text = self._resolve(text)
        return text

    def _list_text(self, dest: str, value: object, fail) -> str:
        """A TOML list (or one value, or the CLI's comma-separated string) as the CLI's
        comma-separated text, its paths resolved against the file's folder."""
        if isinstance(value, list):
            items = value
        elif isinstance(value, str) and dest == "models":
            items = _split_models(value, fail)
        elif isinstance(value, str):
            items = value.split(",")
        else:
            items = [value]
        for item in items:
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                fail(f"expected a list of strings or numbers, or one comma-separated string; "
                     f"got an item that is {_describe(item)}")
        texts = [str(item).strip() for item in items]
        if dest == "models":
            texts = [self._model(text, fail) for text in texts]
        elif dest in MIXED_OPTIONS:
            texts = [self._resolve(t) if "/" in t else t for t in texts]
        return ",".join(texts)

    def _model(self, text: str, fail) -> str:
        """One model with its KEY=VALUE options; a zoo name is checked now."""
        from bench.zoo.names import USER_SUFFIXES, parse_model

        if len(_split_models(text, fail)) != 1:
            fail(f"each item is one model with its options, e.g. \"mobilenet_v2@160,alpha=0.5\";"
                 f" {text!r} holds several: make each its own item")
        if "/" in text or text.endswith(USER_SUFFIXES):
            return self._resolve(text)
        try:
            parse_model(text)
        except UsageError as exc:
            fail(str(exc))
        return text

    def _resolve(self, text: str) -> str:
        path = Path(text).expanduser()  # what the shell does to ~ on a command line
        if path.is_absolute():
            return str(path)
        return str(self.folder / path)


def _split_models(text: str, fail) -> list[str]:
    from bench.zoo.names import split_model_list

    try:
        return split_model_list(text)
    except UsageError as exc:
        fail(str(exc))
    return []


def _kind(action: argparse.Action) -> str:
    """What TOML type the option takes, from what its `type=` makes of "1"."""
    try:
        probe = action.type("1") if action.type else "1"
    except (argparse.ArgumentTypeError, ValueError, UsageError):
        return "string"
    if isinstance(probe, Path):
        return "path"
    if isinstance(probe, bool):
        return "string"
    if isinstance(probe, int):
        return "integer"
    return "number" if isinstance(probe, float) else "string"


def _gate_actions(run_parser: argparse.ArgumentParser) -> list[argparse.Action]:
    from bench.cli import add_gate_options

    dests = {a.dest for a in _throwaway(add_gate_options)._actions if a.option_strings}
    return [a for a in run_parser._actions if a.dest in dests]


def _throwaway(add) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    add(parser, baseline=True)
    return parser


def _gate_key(action: argparse.Action) -> str:
    """`--gate-strict` is `strict` in [gate]: the table already says "gate"."""
    name = max(action.option_strings, key=len).removeprefix("--").removeprefix("gate-")
    return name.replace("-", "_")


def _unknown(key: str, accepted: list[str]) -> str:
    close = difflib.get_close_matches(key, accepted, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key; {hint}accepted: {', '.join(accepted)}"


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


def defaults_for(sweep: SweepFile, target: argparse.ArgumentParser,
                 resuming: bool) -> dict[str, object]:
    """The file's values this subcommand has options for (`compare` takes the store and
    the gate); with --resume, what would change the measured run is left out, once said."""
    dests = {a.dest for a in target._actions}
    values = {k: v for k, v in {**sweep.run, **sweep.gate}.items() if k in dests}
    if resuming:
        from bench.commands.run import RESUME_REFUSES

        ignored = [k for k in values if k in (*RESUME_REFUSES, "dry_run")]
        if ignored:
            say(f"{sweep.name}: --resume continues the run as it was planned; ignoring the "
                f"file's {', '.join(ignored)} (its gate and where-to keys still apply)")
        values = {k: v for k, v in values.items() if k not in ignored}
    return values
