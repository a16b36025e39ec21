"""The nightly recipe, run as documented: the sweep file, `--baseline last:10`, four nights.

Three nights of one user model file, then a real model revision under the same path (a
16x larger input: many times slower), each night the command of the example CI workflow
with the example sweep file (`examples/nightly/nightly.toml`); the model, recipes and a
short protocol given on the command line, which wins over the file. The first night passes
and starts the baseline; the revision fails the night (exit 1) with the model's change
beside the verdict, in the terminal, the JUnit XML and the Markdown the workflow publishes.
The workflow's and the Makefile's commands are checked against the real parser.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bench.cli import build_parser
from bench.store import open_store
from bench.sweep_file import parse_args
from tests.conftest import REPO, run_bench

EXAMPLE = REPO / "examples" / "nightly"


def write_model(path: Path, size: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from bench.zoo.architectures import ARCHITECTURES

    model = ARCHITECTURES["tiny_cnn"].build(size, None, seed=3)
    model.save(path)


def workflow_command() -> str:
    lines = [line.split("run:", 1)[1].strip() for line in
             (EXAMPLE / "github-actions.yml").read_text().splitlines()
             if "run:" in line and "-m bench run" in line]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture(scope="module")
def revisions(tmp_path_factory):
    folder = tmp_path_factory.mktemp("revisions")
    write_model(folder / "a.keras", 32)
    write_model(folder / "b.keras", 128)
    return folder


def test_four_nights_the_revision_fails_the_gate(workdir, revisions, model_cache):
    shutil.copy(EXAMPLE / "nightly.toml", workdir / "nightly.toml")
    net = workdir / "models" / "net.keras"
    net.parent.mkdir()
    command = shlex.split(workflow_command().replace("${{ github.sha }}", "night")
                          .replace('"$BENCH_STORE"', str(workdir / "lab" / "bench.sqlite")))
    argv = command[command.index("run"):]
    argv[argv.index("--config") + 1] = "nightly.toml"
    short = ["--models", str(net), "--recipes", "fp32,int8", "--rounds", "3", "--runs", "5",
             "--min-seconds", "0.05", "--cooldown", "0", "--cache", str(model_cache)]
    outputs = []
    for night, revision in enumerate("AAAB", start=1):
        shutil.copy(revisions / f"{revision.lower()}.keras", net)
        extra = [] if night == 4 else ["--no-dashboard"]
        done = run_bench([*argv, *short, *extra, "--label", f"night-{night}"], workdir,
                         timeout=600)
        outputs.append(done)
        expected = 1 if revision == "B" else 0
        assert done.returncode == expected, (night, done.stdout[-3000:], done.stderr[-2000:])
    first = outputs[0].stdout
    assert "the first night passes and starts the baseline" in first
    assert first.count("\nnew ") == 2
    regressed = [line for line in outputs[3].stdout.splitlines()
                 if line.startswith("regressed ")]
    assert regressed and all("net.keras" in line and "model " in line for line in regressed)
    assert "bench: the gate failed the run against last:10 (exit 1)" in outputs[3].stderr

    suite = ET.parse(workdir / "results" / "gate-junit.xml").getroot().find("testsuite")
    assert suite.get("tests") == "2" and int(suite.get("failures")) == len(regressed)
    failure = suite.find("testcase/failure")
    assert failure.get("type") == "regressed" and "what changed: model " in failure.text
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["baseline"] == "last:10" and len(props["baseline_runs"].split()) == 3
    markdown = (workdir / "results" / "gate.md").read_text()
    assert "| regressed |" in markdown and "net.keras" in markdown

    store = open_store(workdir / "lab" / "bench.sqlite", readonly=True)
    try:
        runs = store.runs()
        gates = store.gates()
    finally:
        store.close()
    assert [r["label"] for r in runs] == [f"night-{i}" for i in range(1, 5)]
    assert [g["ref"] for g in gates] == ["last:10"] * 4
    assert gates[0]["baseline_ids"] == [] and len(gates[3]["baseline_ids"]) == 3
    trends = (workdir / "dashboards" / "trends.html").read_text()
    assert "regressed" in trends


def test_the_workflow_command_parses_with_the_example_sweep_file(monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    argv = shlex.split(workflow_command().replace("${{ github.sha }}", "abc123")
                       .replace('"$BENCH_STORE"', str(tmp_path / "bench.sqlite")))
    args = parse_args(build_parser(), argv[argv.index("run"):])
    assert args.command == "run" and args.baseline == "last:10" and args.label == "abc123"
    assert args.rounds == 10 and args.min_effect == 5 and args.alpha == 5
    assert args.junit == Path("results/gate-junit.xml") and args.strict is True


def test_the_make_target_runs_the_same_recipe():
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    done = subprocess.run(["make", "--no-print-directory", "-n", "nightly", "ARGS=--label x"],
                          cwd=REPO, capture_output=True, text=True, check=True, env=env)
    (line,) = [ln for ln in done.stdout.splitlines() if "-m bench run" in ln]
    assert line.endswith("-m bench run --config examples/nightly/nightly.toml --baseline "
                         "last:10 --junit results/gate-junit.xml --markdown results/gate.md "
                         "--label x")
