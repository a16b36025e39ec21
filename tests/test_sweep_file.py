"""The sweep file (`--config`, bench.toml, [tool.bench]): values arrive in `args` exactly
as the command line's flags would put them there, the command line wins, and every
mistake in the file is a usage error naming the file and key."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest

from bench.cli import build_parser
from bench.sweep_file import parse_args
from tests.conftest import REPO, run_bench

EXAMPLE = REPO / "examples" / "nightly" / "nightly.toml"


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def parse(argv: list[str]) -> argparse.Namespace:
    return parse_args(build_parser(), argv)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def usage_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as raised:
        parse(argv)
    assert raised.value.code == 2
    return capsys.readouterr().err


def test_top_level_keys_become_the_options_values(here, capsys):
    write(here / "bench.toml", """
models = ["mobilenet_v2:imagenet", "mobilenet_v1@160,alpha=0.5"]
recipes = ["fp32", "int8"]
threads = [1, 2]
cpus = 0
rounds = 10
target = 2
min_seconds = 0.5
wait = 600
quick = true
float_io = false
label = "night"
""")
    args = parse(["run"])
    assert args.models == ["mobilenet_v2:imagenet", "mobilenet_v1@160,alpha=0.5"]
    assert args.recipes == ["fp32", "int8"] and args.threads == [1, 2] and args.cpus == [0]
    assert args.rounds == 10 and args.target == pytest.approx(0.02)  # percent, as --target
    assert args.min_seconds == 0.5 and args.quick is True and args.float_io is False
    assert args.label == "night" and args.wait == 600.0
    assert args.runs is None and args.seed is None  # not in the file: still unset
    assert "settings from bench.toml" in capsys.readouterr().err


def test_run_and_gate_tables(here):
    write(here / "bench.toml", """
[run]
devices = ["local"]
backends = "xnnpack"
wait = true
no_progress = true
strict = true
[gate]
baseline = "last:10"
min_effect = 5
alpha = 2.5
strict = true
""")
    args = parse(["run"])
    assert args.devices == ["local"] and args.backends == ["xnnpack"]
    assert args.wait == -1.0 and args.no_progress is True  # wait = true: the bare --wait
    assert args.strict is True and args.gate_strict is True
    assert args.baseline == "last:10" and args.min_effect == 5.0 and args.alpha == 2.5


def test_the_command_line_wins(here):
    write(here / "bench.toml", 'models = ["mobilenet_v1"]\nrounds = 10\nlabel = "file"\n'
          '[gate]\nbaseline = "last:10"\nmin_effect = 5\n')
    args = parse(["run", "--models", "resnet50", "--rounds", "3", "--baseline", "latest",
                  "--min-effect", "10"])
    assert args.models == ["resnet50"] and args.rounds == 3
    assert args.baseline == "latest" and args.min_effect == 10.0
    assert args.label == "file"


def test_a_models_string_in_the_clis_form_and_list_items_with_options(here):
    write(here / "a.toml", 'models = "mobilenet_v2@160,alpha=0.5,resnet50"\n')
    assert parse(["run", "--config", "a.toml"]).models == ["mobilenet_v2@160,alpha=0.5",
                                                            "resnet50"]
    write(here / "b.toml", 'models = ["mobilenet_v2@160,alpha=0.5,seed=3", "resnet50"]\n')
    assert parse(["run", "--config", "b.toml"]).models == ["mobilenet_v2@160,alpha=0.5,seed=3",
                                                            "resnet50"]


def test_relative_paths_are_relative_to_the_files_folder(here, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("abs")
    write(here / "ci" / "nightly.toml", f"""
store = "results/bench.sqlite"
cache = "{elsewhere}/cache"
devices_dir = "../devices"
dashboards = "~/dash"
train_data = "train"
calibration = "./calib"
accuracy = ["foolbox-imagenet", "data/val"]
models = ["mobilenet_v1", "models/mine.tflite"]
[gate]
junit = "out/gate.xml"
markdown = "out/gate.md"
""")
    args = parse(["run", "--config", "ci/nightly.toml"])
    ci = Path("ci")
    assert args.store == ci / "results" / "bench.sqlite"
    assert args.cache == elsewhere / "cache"  # absolute: as is
    assert args.devices_dir == ci / ".." / "devices"
    assert args.dashboards == Path.home() / "dash"  # ~ expanded as a shell would (no "~" folder)
    assert args.train_data == str(ci / "train")
    assert args.calibration == str(ci / "calib")
    assert args.accuracy == ["foolbox-imagenet", str(ci / "data" / "val")]  # names stay names
    assert args.models == ["mobilenet_v1", str(ci / "models" / "mine.tflite")]
    assert args.junit == ci / "out" / "gate.xml" and args.markdown == ci / "out" / "gate.md"


def test_pyproject_tool_bench_table(here, capsys):
    write(here / "pyproject.toml", '[project]\nname = "x"\n[tool.bench]\nrounds = 4\n'
          '[tool.bench.run]\nrecipes = ["fp32"]\n[tool.bench.gate]\nalpha = 1\n')
    args = parse(["run"])
    assert args.rounds == 4 and args.recipes == ["fp32"] and args.alpha == 1.0
    assert "settings from pyproject.toml [tool.bench]" in capsys.readouterr().err
    write(here / "sub" / "pyproject.toml", "[tool.bench]\nrounds = 6\n")
    assert parse(["run", "--config", "sub/pyproject.toml"]).rounds == 6


def test_which_file_is_found_without_config(here, capsys):
    write(here / "pyproject.toml", '[project]\nname = "x"\n')
    args = parse(["run"])  # a pyproject without [tool.bench]: no settings, no message
    assert args.rounds is None and "settings from" not in capsys.readouterr().err
    write(here / "pyproject.toml", "[tool.bench]\nrounds = 4\n")
    write(here / "bench.toml", "rounds = 5\n")
    assert parse(["run"]).rounds == 5  # bench.toml first
    assert "settings from bench.toml" in capsys.readouterr().err
    write(here / "other.toml", "rounds = 7\n")
    assert parse(["run", "--config", "other.toml"]).rounds == 7


def test_compare_takes_the_store_and_the_gate(here):
    write(here / "ci" / "bench.toml", 'store = "r/b.sqlite"\nrounds = 10\nstrict = true\n'
          '[gate]\nbaseline = "last:10"\nmin_effect = 3\nstrict = true\njunit = "g.xml"\n')
    args = parse(["compare", "last:5", "--config", "ci/bench.toml"])
    assert args.store == Path("ci/r/b.sqlite") and args.min_effect == 3.0
    assert args.gate_strict is True and args.junit == Path("ci/g.xml")
    assert args.base == "last:5"  # BASE stays the command line's
    assert not hasattr(args, "rounds") and not hasattr(args, "baseline")


def test_resume_ignores_what_to_measure_but_keeps_the_gate(here, capsys):
    write(here / "bench.toml", 'models = ["mobilenet_v1"]\nrounds = 10\nno_progress = true\n'
          '[gate]\nbaseline = "last:10"\n')
    args = parse(["run", "--resume", "20240101-000000-abcd"])
    assert args.models is None and args.rounds is None  # a resume cannot change them
    assert args.no_progress is True and args.baseline == "last:10"
    err = capsys.readouterr().err
    assert err.count("ignoring the file's models, rounds") == 1  # said once
    write(here / "bench.toml", '[gate]\nbaseline = "last:10"\n')
    parse(["run", "--resume", "20240101-000000-abcd"])
    assert "ignoring" not in capsys.readouterr().err


@pytest.mark.parametrize("text, expected", [
    ("round = 10\n", "bench.toml: top-level key 'round': unknown key; did you mean 'rounds'?"),
    ("[run]\nmodel = 'x'\n", "key 'model' in [run]: unknown key; did you mean 'models'?"),
    ("[gate]\nbaseline = 1\n", "key 'baseline' in [gate]: expected a string"),
    ("[gate]\nmin_effect = 'five'\n",
     "key 'min_effect' in [gate]: expected a number (as for --min-effect), got the string"),
    ("[gate]\nstrict = 1\n", "key 'strict' in [gate]: expected true or false"),
    ("[gate]\nlabel = 'x'\n", "key 'label' in [gate]: unknown key; accepted: baseline, "
     "min_effect, alpha, strict, junit, markdown"),
    ("baseline = 'last:3'\n", "top-level key 'baseline': a gate option: put it in the [gate]"),
    ("[nightly]\nrounds = 1\n", "unknown table [nightly]; accepted tables: [run] and [gate]"),
    ("run = 3\n", "top-level key 'run': expected the table [run]"),
    ("quick = 'yes'\n", "key 'quick': expected true or false (the flag --quick), got the string"),
    ("rounds = '10'\n", "key 'rounds': expected an integer (as for --rounds), got the string"),
    ("rounds = true\n", "expected an integer (as for --rounds), got the boolean true"),
    ("rounds = 0\n", "key 'rounds': expected comma-separated positive integers, each >= 1 "
     "(as for --rounds)"),
    ("rounds = 2.5\n", "key 'rounds': expected an integer"),
    ("target = 200\n", "key 'target': expected a percentage between 0 and 100"),
    ("store = 3\n", "key 'store': expected a path string"),
    ("label = ['a']\n", "key 'label': expected a string (as for --label), got a list"),
    ("seed = {}\n", "key 'seed': expected an integer (as for --seed), got a table"),
    ("threads = [1, 0]\n", "key 'threads': expected comma-separated positive integers, each >= 1"),
    ("threads = [true]\n", "key 'threads': expected a list of strings or numbers"),
    ("recipes = ['fp32', 'int4']\n", "key 'recipes': unknown recipe(s) int4"),
    ("backends = ['gpu9']\n", "key 'backends': unknown backend(s) gpu9"),
    ("devices = []\n", "key 'devices': expected comma-separated names"),
    ("models = ['mobilenet_v9']\n", "key 'models': unknown zoo model 'mobilenet_v9'"),
    ("models = ['mobilenet_v1,resnet50']\n", "key 'models': each item is one model"),
    ("models = ['alpha=0.5']\n", "key 'models': model list 'alpha=0.5' starts with an option"),
    ("wait = 'forever'\n", "key 'wait': expected a number or true"),
    ("rounds = 1\n[run]\nrounds = 2\n", "key 'rounds' in [run]: given twice (also at the top"),
    ("resume = 'x'\n", "top-level key 'resume': unknown key"),
    ("config = 'x.toml'\n", "top-level key 'config': unknown key"),
    ("rounds = \n", "bench.toml: not valid TOML: Invalid value (at line 1, column 10)"),
])
def test_every_mistake_is_a_usage_error_naming_file_and_key(here, capsys, text, expected):
    write(here / "bench.toml", text)
    assert expected in usage_error(["run"], capsys)


def test_file_errors(here, capsys):
    assert "--config missing.toml: no such file" in usage_error(
        ["run", "--config", "missing.toml"], capsys)
    assert "expected a .toml file" in usage_error(["run", "--config", "nightly.yaml"], capsys)
    (here / "dir.toml").mkdir()
    assert "--config dir.toml: is a directory" in usage_error(["run", "--config", "dir.toml"],
                                                              capsys)
    write(here / "ci" / "pyproject.toml", '[project]\nname = "x"\n')
    assert "ci/pyproject.toml: no [tool.bench] table" in usage_error(
        ["compare", "latest", "--config", "ci/pyproject.toml"], capsys)
    write(here / "pyproject.toml", "[tool.bench]\n[tool.bench.gate]\nalpha = 'x'\n")
    assert "pyproject.toml: key 'alpha' in [tool.bench.gate]: expected a number" in \
        usage_error(["run"], capsys)
    write(here / "bad.toml", "[run]\nrounds = 1\n[run]\nruns = 2\n")
    err = usage_error(["run", "--config", "bad.toml"], capsys)
    assert "bad.toml: not valid TOML" in err and "line 3" in err


def test_other_commands_ignore_the_file(here):
    write(here / "bench.toml", "rounds = 'not even valid'\n")
    assert parse(["runs"]).command == "runs"


def test_the_example_nightly_file_loads(here, capsys):
    args = parse(["run", "--config", str(EXAMPLE), "--label", "abc123"])
    folder = EXAMPLE.parent
    assert args.models == ["mobilenet_v2:imagenet", "mobilenet_v1"]
    assert args.recipes == ["fp32", "int8", "int8-per-tensor", "dynamic"]
    assert args.devices == ["local"] and args.threads == [1] and args.rounds == 10
    assert args.label == "abc123"
    assert args.baseline == "last:10" and args.min_effect == 5.0 and args.alpha == 5.0
    assert args.junit == folder / "results" / "gate-junit.xml"
    assert args.markdown == folder / "results" / "gate.md"
    assert f"settings from {EXAMPLE}" in capsys.readouterr().err


def test_cli_dry_run_with_the_example(workdir):
    shutil.copy(EXAMPLE, workdir / "nightly.toml")
    done = run_bench(["run", "--config", "nightly.toml", "--baseline", "last:10", "--dry-run"],
                     workdir)
    assert done.returncode == 0, done.stderr
    assert "settings from nightly.toml" in done.stderr
    assert "8 cell(s)" in done.stdout and "10 round(s) each" in done.stdout
    assert not (workdir / "results" / "bench.sqlite").exists()


def test_cli_a_bad_file_exits_2_before_anything_runs(workdir):
    (workdir / "bench.toml").write_text('models = ["tiny_cnn"]\n[gate]\nmin_efect = 5\n')
    done = run_bench(["run", "--dry-run"], workdir)
    assert done.returncode == 2
    assert "bench run: error: bench.toml: key 'min_efect' in [gate]: unknown key; did you " \
        "mean 'min_effect'?" in done.stderr


def test_a_pyproject_whose_tool_is_not_a_table_is_not_a_sweep_file(tmp_path):
    """A default ./pyproject.toml is read for [tool.bench] only when `tool` is a table: a
    stray `tool = 1` is not this tool's business, and no crash."""
    from bench.sweep_file import locate

    (tmp_path / "pyproject.toml").write_text("tool = 1\n")
    assert locate(None, tmp_path) is None
