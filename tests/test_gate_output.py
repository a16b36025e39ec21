"""What the gate writes for CI: JUnit XML and Markdown files, and usage errors found before a
run measures anything."""

from __future__ import annotations

import sqlite3
import time
import xml.etree.ElementTree as ET

import pytest

from bench.cli import main
from bench.synthetic import make_store
from tests.conftest import run_bench


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "s.sqlite"
    ids = [make_store(path, models=2, recipes=("fp32", "int8"), rounds=8, seed=seed,
                      failures=False) for seed in range(4) if time.sleep(1.05) is None]
    return path, ids


def edit(path, sql: str, *values) -> None:
    db = sqlite3.connect(path)
    db.execute(sql, values)
    db.commit()
    db.close()


def test_junit_has_a_failure_per_regression_and_survives_hostile_names(store, tmp_path,
                                                                      capsys):
    path, ids = store
    edit(path, "UPDATE rounds SET summary_us = summary_us * 1.6 WHERE run_id = ? AND cell_id "
         "IN (SELECT cell_id FROM cells WHERE run_id = ? AND model = 'mobilenet_v2' AND "
         "recipe = 'int8')", ids[-1], ids[-1])
    hostile = 'a<b>&"c\x01\x1b[31m'
    for run_id in ids:
        edit(path, "UPDATE cells SET model = ? WHERE run_id = ? AND model = 'mobilenet_v1'",
             hostile, run_id)
        edit(path, "UPDATE variants SET model = ?, source = ? WHERE run_id = ? AND model = "
             "'mobilenet_v1'", hostile, hostile, run_id)
    junit, markdown = tmp_path / "out" / "gate.xml", tmp_path / "out" / "gate.md"
    code = main(["compare", "last:3", "--store", str(path), "--junit", str(junit),
                 "--markdown", str(markdown)])
    capsys.readouterr()
    assert code == 1
    root = ET.parse(junit).getroot()  # parses: every name escaped, control characters gone
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "1", "0")
    (failed,) = [c for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed.get("name") == "mobilenet_v2 int8"
    assert failed.get("classname") == "local.xnnpack.t1"
    assert failed.find("failure").get("message").startswith("regressed: +")
    names = {c.get("name") for c in suite.iter("testcase")}
    assert 'a<b>&"c[31m fp32' in names  # XML-escaped on disk, the control bytes dropped
    assert "\x01" not in junit.read_text() and "&lt;b&gt;" in junit.read_text()
    assert markdown.read_text().startswith("**bench compare**")
    assert "| regressed | mobilenet_v2 int8" in markdown.read_text()


def test_new_and_not_comparable_are_skipped_cases(store, tmp_path, capsys):
    path, ids = store
    edit(path, "UPDATE run_devices SET cpu_model = 'Another CPU' WHERE run_id = ?", ids[-1])
    junit = tmp_path / "gate.xml"
    assert main(["compare", "latest", "--store", str(path), "--junit", str(junit)]) == 0
    capsys.readouterr()
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("skipped") == "4" and suite.get("failures") == "0"
    assert main(["compare", "latest", "--store", str(path), "--junit", str(junit),
                 "--strict"]) == 1
    capsys.readouterr()
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("failures") == "4" and suite.get("skipped") == "0"


def test_a_missing_baseline_is_a_usage_error_before_anything_is_measured(workdir):
    done = run_bench(["run", "--models", "tiny_cnn", "--recipes", "fp32", "--baseline",
                      "no-such-label", "--no-dashboard"], workdir)
    assert done.returncode == 2
    assert "no run 'no-such-label' in the store" in done.stderr
    assert not (workdir / "results" / "runs").exists()  # nothing measured, nothing exported
    done = run_bench(["run", "--models", "tiny_cnn", "--recipes", "fp32", "--baseline",
                      "latest", "--junit", str(workdir), "--no-dashboard"], workdir)
    assert done.returncode == 2 and "is a folder" in done.stderr
    done = run_bench(["run", "--models", "tiny_cnn", "--recipes", "fp32", "--baseline",
                      "latest", "--alpha", "60", "--no-dashboard"], workdir)
    assert done.returncode == 2 and "--alpha 60: a percentage in (0, 50)" in done.stderr
