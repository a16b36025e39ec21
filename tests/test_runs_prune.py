"""`bench runs` filters and `bench prune`: which runs are listed, which are deleted, and
that every run a gate still reads survives.

Real SQLite stores written by `bench.synthetic` (the real store and analysis); start times,
statuses, sessions and settings are then set the way real runs would have them.
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path

import pytest

from bench.cli import main
from bench.errors import UsageError
from bench.report.dashboard.names import folder_name
from bench.store import open_store
from bench.synthetic import make_store
from tests.conftest import run_bench

_seeds = count()


def edit(path: Path, sql: str, *values) -> None:
    db = sqlite3.connect(path)
    db.execute(sql, values)
    db.commit()
    db.close()


def ago(**delta) -> datetime:
    return datetime.now(UTC) - timedelta(**delta)


def add_run(path: Path, when: datetime, *, label: str | None = None,
            devices: int | list[str] = 1) -> str:
    """A completed run of mobilenet_v1/v2 x fp32/int8 that started at `when`."""
    run_id = make_store(path, models=2, recipes=("fp32", "int8"), devices=devices, rounds=3,
                        seed=next(_seeds), failures=False, label=label)
    edit(path, "UPDATE runs SET started_at = ? WHERE id = ?",
         when.astimezone(UTC).isoformat(timespec="microseconds"), run_id)
    return run_id


def mark_running(path: Path, run_id: str, host: str, pid: int) -> None:
    edit(path, "UPDATE runs SET status = 'running', finished_at = NULL WHERE id = ?", run_id)
    edit(path, "UPDATE sessions SET status = 'running', host = ?, pid = ? WHERE run_id = ?",
         host, pid, run_id)


def name_baselines(path: Path, run_id: str, baseline_ids: list[str]) -> None:
    """Record a gate decision for the run, as `bench run --baseline` does."""
    store = open_store(path)
    try:
        store.save_gate(run_id, ref="last:10", min_effect=0.05, alpha=0.05,
                        baseline_ids=baseline_ids)
    finally:
        store.close()


def stored_ids(path: Path) -> list[str]:
    store = open_store(path, readonly=True)
    try:
        return [run["id"] for run in store.runs()]
    finally:
        store.close()


def bench(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def listed(out: str) -> list[str]:
    return [line.split()[0] for line in out.splitlines()
            if line.strip() and not line.startswith("no runs")]


# bench runs -------------------------------------------------------------------------------

@pytest.fixture
def history(tmp_path):
    """Five runs: one at a fixed date in 2024, the others days, hours and minutes ago; one
    measured only rpi4."""
    path = tmp_path / "s.sqlite"
    ids = {
        "january": add_run(path, datetime(2024, 1, 10, 12, 0, tzinfo=UTC), label="nightly"),
        "weeks": add_run(path, ago(days=20), label="nightly"),
        "days": add_run(path, ago(days=10), label="manual"),
        "pi": add_run(path, ago(hours=2), label="nightly", devices=["rpi4"]),
        "minutes": add_run(path, ago(minutes=10), label="nightly"),
    }
    return path, ids


def runs_listed(capsys, path: Path, *args) -> list[str]:
    code, out, err = bench(capsys, "runs", "--store", str(path), *args)
    assert code == 0, err
    return listed(out)


def test_runs_filters_by_label_device_time_and_limit(history, capsys):
    path, ids = history
    order = ["january", "weeks", "days", "pi", "minutes"]
    assert runs_listed(capsys, path) == [ids[k] for k in order]
    assert runs_listed(capsys, path, "--label", "nightly") == \
        [ids[k] for k in ("january", "weeks", "pi", "minutes")]
    assert runs_listed(capsys, path, "--device", "rpi4") == [ids["pi"]]
    assert runs_listed(capsys, path, "--device", "local", "--limit", "2") == \
        [ids["days"], ids["minutes"]]
    assert runs_listed(capsys, path, "--since", "15d") == \
        [ids[k] for k in ("days", "pi", "minutes")]
    assert runs_listed(capsys, path, "--until", "15d") == [ids["january"], ids["weeks"]]
    assert runs_listed(capsys, path, "--since", "3h", "--until", "30m") == [ids["pi"]]
    assert runs_listed(capsys, path, "--since", "90m") == [ids["minutes"]]
    assert runs_listed(capsys, path, "--since", "2024-01-10", "--until", "2024-01-11") == \
        [ids["january"]]
    assert runs_listed(capsys, path, "--until", "2024-01-10T12:00") == []  # --until: before
    assert runs_listed(capsys, path, "--since", "2024-01-10T13:00+01:00",
                       "--until", "2024-01-10T12:00:01Z") == [ids["january"]]
    assert runs_listed(capsys, path, "--limit", "1") == [ids["minutes"]]
    assert runs_listed(capsys, path, "--label", "nightly", "--until", "1d", "--limit", "1") \
        == [ids["weeks"]]


def test_runs_json_and_an_empty_selection(history, capsys):
    path, ids = history
    code, out, _ = bench(capsys, "runs", "--store", str(path), "--label", "nightly",
                         "--since", "1d", "--format", "json")
    rows = json.loads(out)
    assert code == 0 and [r["id"] for r in rows] == [ids["pi"], ids["minutes"]]
    assert rows[0]["label"] == "nightly" and rows[0]["status"] == "completed"
    assert rows[0]["cells"] == rows[0]["ok"] == 4 and rows[1]["failed"] == 0
    code, out, _ = bench(capsys, "runs", "--store", str(path), "--label", "nope")
    assert code == 0 and out.startswith("no runs match (5 in")
    code, out, _ = bench(capsys, "runs", "--store", str(path), "--label", "nope", "--format",
                         "json")
    assert json.loads(out) == []


@pytest.mark.parametrize("args, message", [
    (["--since", "yesterday"], "--since 'yesterday': expected an ISO date or datetime"),
    (["--until", "7w"], "--until '7w': expected"),
    (["--since=-3d"], "or an age: 7d, 12h, 30m"),
    (["--since", "2024-13-01"], "(2024-05-01, 2024-05-01T13:30)"),
    (["--since", "99999999999d"], "--since '99999999999d'"),
    (["--since", "1d", "--until", "2d"], "is not before --until"),
])
def test_a_bad_when_is_a_usage_error_that_says_what_is_accepted(history, capsys, args,
                                                                message):
    path, _ = history
    code, out, err = bench(capsys, "runs", "--store", str(path), *args)
    assert code == 2 and message in err and out == ""


def test_bad_when_exits_2_from_the_command_line(history):
    path, _ = history
    done = run_bench(["runs", "--store", str(path), "--since", "last week"], path.parent,
                     timeout=120)
    assert done.returncode == 2
    assert "bench: --since 'last week': expected an ISO date or datetime in UTC" in done.stderr
    done = run_bench(["prune", "--store", str(path), "--older-than", "soon"], path.parent,
                     timeout=120)
    assert done.returncode == 2 and "--older-than 'soon': expected" in done.stderr
    assert len(stored_ids(path)) == 5


# bench prune ------------------------------------------------------------------------------

@pytest.fixture
def old_nights(tmp_path):
    """Six completed nights 100..95 days ago, one night yesterday that names its gate's
    baseline runs (one of them old), an old run still measuring (this process), an old run
    whose harness was killed and an old run measuring on another host."""
    path = tmp_path / "s.sqlite"
    nights = [add_run(path, ago(days=100 - i), label=f"night-{i}") for i in range(6)]
    live = add_run(path, ago(days=90), label="live")
    mark_running(path, live, platform.node(), os.getpid())
    dead_pid = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_pid.wait()
    killed = add_run(path, ago(days=89), label="killed")
    mark_running(path, killed, platform.node(), dead_pid.pid)
    elsewhere = add_run(path, ago(days=88), label="elsewhere")
    mark_running(path, elsewhere, "another-host.example", 4242)
    recent = add_run(path, ago(days=1), label="recent")
    name_baselines(path, recent, [nights[1], "no-such-run"])
    name_baselines(path, nights[1], [nights[0]])  # kept through a kept run: transitive
    return path, {"nights": nights, "live": live, "killed": killed, "elsewhere": elsewhere,
                  "recent": recent}


def prune(capsys, path: Path, *args) -> tuple[int, str]:
    code, out, err = bench(capsys, "prune", "--store", str(path), *args)
    assert code == 0, err
    return code, out


def line_of(out: str, run_id: str) -> str:
    (line,) = [ln for ln in out.splitlines() if run_id in ln.split()[:3]]
    return line


def test_prune_keeps_baselines_named_and_running_runs(old_nights, capsys):
    path, ids = old_nights
    nights = ids["nights"]
    _, out = prune(capsys, path, "--older-than", "30d", "--keep-baselines", "2")
    remaining = stored_ids(path)
    # The newest 2 completed runs of each benchmark: yesterday's and the newest old night.
    assert line_of(out, nights[5]).split()[:2] == ["kept", nights[5]]
    assert "baseline: newest 2 of mobilenet_v1 fp32 on local/xnnpack/t1 and 3 more" in \
        line_of(out, nights[5])
    assert f"baseline of run {ids['recent']} (its recorded gate)" in line_of(out, nights[1])
    assert f"baseline of run {nights[1]} (its recorded gate)" in line_of(out, nights[0])
    assert "still running" in line_of(out, ids["live"])
    assert "still running on another-host.example" in line_of(out, ids["elsewhere"])
    for gone in (nights[2], nights[3], nights[4], ids["killed"]):
        assert line_of(out, gone).startswith("deleted ") and gone not in remaining
    assert sorted(remaining) == sorted([nights[0], nights[1], nights[5], ids["live"],
                                        ids["elsewhere"], ids["recent"]])
    summary = out.splitlines()[-1]
    assert "9 runs started before" in summary
    assert "(30d): deleted 4, kept 5; newer runs untouched: 1" in summary


def test_prune_default_keeps_the_newest_10_of_each_benchmark(tmp_path, capsys):
    path = tmp_path / "s.sqlite"
    nights = [add_run(path, ago(days=60 - i)) for i in range(12)]
    _, out = prune(capsys, path, "--older-than", "7d")
    assert stored_ids(path) == nights[2:]
    assert "baseline: newest 10 of mobilenet_v1 fp32 on local/xnnpack/t1" in \
        line_of(out, nights[2])
    assert "deleted 2, kept 10" in out.splitlines()[-1]


def test_other_hardware_has_a_history_of_its_own(tmp_path, capsys):
    path = tmp_path / "s.sqlite"
    other = add_run(path, ago(days=50))
    edit(path, "UPDATE run_devices SET cpu_model = 'Another CPU' WHERE run_id = ?", other)
    older = add_run(path, ago(days=60))
    newer = add_run(path, ago(days=40))
    _, out = prune(capsys, path, "--older-than", "7d", "--keep-baselines", "1")
    assert sorted(stored_ids(path)) == sorted([other, newer])
    assert "(hardware " in line_of(out, other) and line_of(out, older).startswith("deleted")


def test_dry_run_deletes_nothing_and_says_the_same(old_nights, tmp_path, capsys):
    path, ids = old_nights
    before = stored_ids(path)
    dashboards = tmp_path / "dash"
    for run_id in before:
        (dashboards / folder_name(run_id)).mkdir(parents=True)
    _, dry = prune(capsys, path, "--older-than", "30d", "--keep-baselines", "2", "--dry-run",
                   "--dashboards", str(dashboards))
    assert stored_ids(path) == before
    assert all((dashboards / folder_name(r)).is_dir() for r in before)
    assert not (dashboards / "index.html").exists()
    assert f"would remove dashboard {dashboards / folder_name(ids['nights'][2])}" in dry
    assert dry.splitlines()[-1].startswith("dry run: 9 runs") and "would delete 4" in dry
    _, real = prune(capsys, path, "--older-than", "30d", "--keep-baselines", "2")
    said = [ln for ln in dry.splitlines() if ln.startswith(("kept", "would delete"))]
    done = [ln for ln in real.splitlines() if ln.startswith(("kept", "deleted"))]
    assert [ln.replace("would delete", "deleted     ") for ln in said] == done


def test_a_running_run_is_never_deleted(tmp_path, capsys):
    path = tmp_path / "s.sqlite"
    live = add_run(path, ago(days=400))
    mark_running(path, live, platform.node(), os.getpid())
    _, out = prune(capsys, path, "--older-than", "0m", "--keep-baselines", "0")
    assert stored_ids(path) == [live] and "still running" in line_of(out, live)


def test_deleting_leaves_other_runs_facts_intact_and_no_rows_behind(old_nights, capsys):
    path, ids = old_nights
    store = open_store(path, readonly=True)
    kept_ids = [ids["nights"][5], ids["recent"], ids["live"]]
    before = {run_id: store.facts(run_id, raw=True) for run_id in kept_ids}
    runs_before = {r["id"]: r for r in store.runs()}
    store.close()
    prune(capsys, path, "--older-than", "30d", "--keep-baselines", "2")
    store = open_store(path, readonly=True)
    try:
        for run_id in kept_ids:
            assert store.facts(run_id, raw=True) == before[run_id]
            assert {r["id"]: r for r in store.runs()}[run_id] == runs_before[run_id]
    finally:
        store.close()
    db = sqlite3.connect(path)
    tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = "
                                           "'table'")]
    with_run_id = [t for t in tables
                   if "run_id" in [c[1] for c in db.execute(f"PRAGMA table_info({t})")]]
    assert {"evaluations", "device_rounds", "sessions", "variants", "cells"} <= set(with_run_id)
    for gone in (ids["nights"][2], ids["killed"]):
        assert db.execute("SELECT COUNT(*) FROM runs WHERE id = ?", (gone,)).fetchone()[0] == 0
        for table in with_run_id:
            assert db.execute(f"SELECT COUNT(*) FROM {table} WHERE run_id = ?",
                              (gone,)).fetchone()[0] == 0, table
    db.close()


def test_delete_run_refuses_unknown_runs_and_read_only_stores(tmp_path):
    path = tmp_path / "s.sqlite"
    run_id = add_run(path, ago(days=3))
    store = open_store(path, readonly=True)
    with pytest.raises(RuntimeError, match="read-only"):
        store.delete_run(run_id)
    store.close()
    store = open_store(path)
    try:
        with pytest.raises(UsageError, match="no run 'nope'"):
            store.delete_run("nope")
        store.delete_run(run_id)
        assert store.runs() == [] and store.latest_run_id() is None
    finally:
        store.close()


def test_prune_removes_dashboard_folders_and_rewrites_the_index(old_nights, tmp_path,
                                                                 capsys):
    path, ids = old_nights
    dashboards = tmp_path / "dashboards"
    outside = tmp_path / "elsewhere"
    (outside / "keep.html").parent.mkdir()
    (outside / "keep.html").write_text("not bench's")
    for run_id in stored_ids(path):
        if run_id == ids["killed"]:  # a link out of the dashboards folder: never followed
            dashboards.mkdir(exist_ok=True)
            (dashboards / folder_name(run_id)).symlink_to(outside, target_is_directory=True)
            continue
        folder = dashboards / folder_name(run_id)
        folder.mkdir(parents=True)
        (folder / "index.html").write_text(run_id)
    (dashboards / "index.html").write_text("stale")
    _, out = prune(capsys, path, "--older-than", "30d", "--keep-baselines", "2",
                   "--dashboards", str(dashboards))
    for gone in ids["nights"][2:5]:
        assert not (dashboards / folder_name(gone)).exists()
        assert f"removed dashboard {dashboards / folder_name(gone)}" in out
    for kept in (ids["nights"][0], ids["nights"][5], ids["live"], ids["recent"]):
        assert (dashboards / folder_name(kept) / "index.html").is_file()
    assert (outside / "keep.html").read_text() == "not bench's"
    assert f"dashboard of {ids['killed']} not removed" in out
    index = (dashboards / "index.html").read_text()
    assert index != "stale" and f"rewrote {dashboards / 'index.html'}" in out
    assert ids["recent"] in index and ids["nights"][5] in index
    assert all(gone not in index for gone in ids["nights"][2:5])
    trends = (dashboards / "trends.html").read_text()  # rebuilt too: no link to a pruned run
    assert f"rewrote {dashboards / 'trends.html'}" in out
    assert all(gone not in trends for gone in ids["nights"][2:5])
