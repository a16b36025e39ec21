"""`bench compare BASE NEW`: verdicts on round medians, what changed, exit codes.

Real SQLite stores written by `bench.synthetic` (the real store and analysis), edited the
way a real change would show: slower rounds, another model file, other hardware.
"""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from bench.cli import main
from bench.regress.decision import Verdict
from bench.synthetic import make_store


@pytest.fixture
def nights(tmp_path):
    """Five completed runs of the same four benchmarks (independent noise)."""
    path = tmp_path / "s.sqlite"
    ids = []
    for seed in range(5):
        ids.append(make_store(path, models=2, recipes=("fp32", "int8"), rounds=8, seed=seed,
                              failures=False, label=f"night-{seed}"))
        time.sleep(1.05)  # run ids and start times in order
    return path, ids


def run(path, *args, capsys) -> tuple[int, str, str]:
    code = main(["compare", *args, "--store", str(path)])
    out = capsys.readouterr()
    return code, out.out, out.err


def edit(path, sql: str, *values) -> None:
    db = sqlite3.connect(path)
    db.execute(sql, values)
    db.commit()
    db.close()


def slow_down(path, run_id: str, model: str, recipe: str, factor: float) -> None:
    edit(path, "UPDATE rounds SET summary_us = summary_us * ? WHERE run_id = ? AND cell_id IN "
         "(SELECT cell_id FROM cells WHERE run_id = ? AND model = ? AND recipe = ?)",
         factor, run_id, run_id, model, recipe)


def test_a_clean_night_raises_no_alarm(nights, capsys):
    path, ids = nights
    code, out, _ = run(path, "last:3", capsys=capsys)
    assert code == 0 and "regressed" not in out
    assert f"bench compare: {ids[-1]} against {', '.join(ids[1:4])}" in out


def test_a_real_slowdown_fails_with_its_ratio_first(nights, capsys):
    path, ids = nights
    slow_down(path, ids[-1], "mobilenet_v2", "int8", 1.5)
    code, out, _ = run(path, "last:3", capsys=capsys)
    assert code == 1
    first = out.splitlines()[3]
    assert first.startswith("regressed") and "mobilenet_v2 int8" in first
    assert "regressed: mobilenet_v2 int8 on local/xnnpack/t1: +" in out
    code, text, _ = run(path, "last:3", "--format", "json", capsys=capsys)
    found = json.loads(text)
    (worst,) = [b for b in found["benchmarks"] if b["verdict"] == "regressed"]
    assert worst["benchmark"]["model"] == "mobilenet_v2" and 1.3 < worst["ratio"] < 1.7


def test_a_changed_model_is_compared_and_named(nights, capsys):
    path, ids = nights
    edit(path, "UPDATE cells SET sha256 = 'feedfacecafe' WHERE run_id = ? AND model = "
         "'mobilenet_v1' AND recipe = 'fp32'", ids[-1])
    code, out, _ = run(path, "night-3", ids[-1], capsys=capsys)
    line = next(ln for ln in out.splitlines() if "mobilenet_v1 fp32" in ln)
    assert "model " in line and "→feedface" in line
    assert not line.startswith("not comparable") and not line.startswith("new")


def test_other_hardware_is_not_comparable_and_strict_fails_it(nights, capsys):
    path, ids = nights
    edit(path, "UPDATE run_devices SET cpu_model = 'Another CPU' WHERE run_id = ?", ids[-1])
    code, out, _ = run(path, "latest", capsys=capsys)
    assert code == 0 and "device fingerprint changed" in out
    assert all(ln.startswith("not comparable") for ln in out.splitlines()[3:7])
    code, _, _ = run(path, "latest", "--strict", capsys=capsys)
    assert code == 1


def test_a_benchmark_without_history_is_new_and_passes(nights, capsys):
    path, ids = nights
    edit(path, "UPDATE cells SET recipe = 'int8-per-tensor' WHERE run_id = ? AND recipe = "
         "'int8' AND model = 'mobilenet_v1'", ids[-1])
    edit(path, "UPDATE variants SET recipe = 'int8-per-tensor' WHERE run_id = ? AND recipe = "
         "'int8' AND model = 'mobilenet_v1'", ids[-1])
    code, out, _ = run(path, "last:2", capsys=capsys)
    assert code == 0
    assert any(ln.startswith("new") and "int8-per-tensor" in ln for ln in out.splitlines())


@pytest.mark.parametrize("args, message", [
    (["no-such-run"], "no run 'no-such-run'"),
    (["last:0"], "last:K takes a positive number"),
    (["latest", "--min-effect", "0"], "--min-effect 0: a percentage in (0, 100)"),
    (["latest", "last:3"], "'last:3' names several runs; give one run id, latest or a label"),
    (["last:3", "--confirm", "last:2"], "'last:2' names several runs"),
])
def test_usage_errors_exit_2(nights, capsys, args, message):
    path, _ = nights
    code, _, err = run(path, *args, capsys=capsys)
    assert code == 2 and message in err


def test_a_suspect_is_judged_again_on_a_re_run_alone(nights, capsys):
    """--confirm RUN: the night's suspects judged on the re-run alone (same baseline); a
    slow re-run confirms, a clean one does not, and nothing else changes."""
    path, ids = nights
    night = ids[-1]
    factor = None
    for step in range(2, 60):  # the smallest slowdown the night calls suspect
        slow_down(path, night, "mobilenet_v2", "int8", 1.0 + step / 100)
        code, text, _ = run(path, "last:3", night, "--format", "json", capsys=capsys)
        verdict = next(b["verdict"] for b in json.loads(text)["benchmarks"]
                       if b["benchmark"]["model"] == "mobilenet_v2"
                       and b["benchmark"]["recipe"] == "int8")
        slow_down(path, night, "mobilenet_v2", "int8", 1.0 / (1.0 + step / 100))
        if verdict == "suspect":
            factor = 1.0 + step / 100
            break
    assert factor is not None, "no slowdown made a suspect"
    slow_down(path, night, "mobilenet_v2", "int8", factor)
    time.sleep(1.05)
    clean = make_store(path, models=2, recipes=("fp32", "int8"), rounds=8, seed=11,
                       failures=False, label="re-run-clean")
    time.sleep(1.05)
    slow = make_store(path, models=2, recipes=("fp32", "int8"), rounds=8, seed=12,
                      failures=False, label="re-run-slow")
    slow_down(path, slow, "mobilenet_v2", "int8", 1.5)

    code, out, _ = run(path, "last:3", night, "--confirm", "re-run-slow", capsys=capsys)
    assert code == 1
    line = next(ln for ln in out.splitlines() if "mobilenet_v2 int8" in ln)
    assert line.startswith("regressed (re-run)")
    assert "regressed: mobilenet_v2 int8 on local/xnnpack/t1: confirmation: " in out
    assert sum(ln.startswith(("unchanged", "inconclusive", "suspect", "improved"))
               for ln in out.splitlines()) == 3  # the others as the night judged them

    code, out, _ = run(path, "last:3", night, "--confirm", clean, capsys=capsys)
    assert code == 0
    line = next(ln for ln in out.splitlines() if "mobilenet_v2 int8" in ln)
    assert "(re-run)" in line and not line.startswith("regressed")
    code, _, err = run(path, "last:3", night, "--confirm", night, capsys=capsys)
    assert code == 2 and "not the night itself" in err


def test_unsure_benchmarks_get_a_design_suggestion_worst_first():
    """Suspect and inconclusive rows say what catching 10% would take: a number of rounds
    and baseline runs, or that run-to-run variance makes it impossible; at most DESIGNS."""
    import numpy as np

    from bench.commands import compare as module
    from bench.regress.decision import compare as judge
    from bench.regress.history import Benchmark

    rng = np.random.default_rng(5)

    def night(sigma_u: float) -> list[list[float]]:
        return [list(1000 * np.exp(rng.normal(0, sigma_u) + rng.normal(0, 0.03, 6)))
                for _ in range(6)]

    rows = []
    for i, sigma_u in enumerate([0.2] * 25 + [0.004]):
        runs = night(sigma_u)
        result = judge(runs[-1], runs[:-1])
        rows.append(module.Row(Benchmark(f"m{i}", "fp32", "d", "xnnpack", 1), result, []))
    module.suggest(rows, 0.05)
    unsure = [r for r in rows if r.comparison.verdict in (Verdict.SUSPECT,
                                                           Verdict.INCONCLUSIVE)]
    assert len(unsure) > module.DESIGNS
    assert all(r.design for r in unsure[:module.DESIGNS])
    assert not any(r.design for r in unsure[module.DESIGNS:])
    noisy = next(r for r in unsure if r.comparison.run_to_run_sd > 0.1)
    assert noisy.design.startswith("undetectable at any n and K: run-to-run sd")
    table = module.render_table(rows, ["a"], "b")
    assert "to catch a 10% slowdown with power 95% at this night's level:" in table
