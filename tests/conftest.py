"""Shared fixtures: tiny real models built once per session, the old-runtime venv.

The suite never touches a user's state: the machine lock lives under the session's own
directory (BENCH_LOCK_DIR), default device work directories under its own TMPDIR, and
every test that runs bench does so in a fresh project-like directory (results/ there).
So `make test` can run while a user's `bench run` measures this machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bench.zoo.build import BuildOptions, VariantBuilder
from bench.zoo.cache import VariantCache
from bench.zoo.names import parse_model
from bench.zoo.recipes import DEFAULT_RECIPES

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session", autouse=True)
def own_machine_state(tmp_path_factory):
    """The suite's own machine lock directory and temporary directory (inherited by every
    bench it starts), so it never meets a user's lock or device work directories."""
    root = tmp_path_factory.mktemp("machine")
    saved = {name: os.environ.get(name) for name in ("BENCH_LOCK_DIR", "TMPDIR",
                                                      "BENCH_ASSETS_DIR")}
    os.environ["BENCH_LOCK_DIR"] = str(root / "locks")
    # Benches started in a project-like directory read the repository's wheels (read only).
    os.environ.setdefault("BENCH_ASSETS_DIR", str(REPO / "models" / "assets"))
    os.environ["TMPDIR"] = str(root / "tmp")
    (root / "tmp").mkdir()
    tempfile.tempdir = None  # recomputed from TMPDIR
    yield root
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    tempfile.tempdir = None


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def tiny_variants(model_cache) -> dict:
    """tiny_cnn in every post-training recipe, converted by the real worker (TensorFlow,
    seconds); the QAT recipes need training data (tests/test_zoo_qat.py)."""
    builder = VariantBuilder(VariantCache(model_cache), BuildOptions(calibration_size=8))
    built = builder.build([parse_model("tiny_cnn")], list(DEFAULT_RECIPES))
    failed = {k: v.error for k, v in built.items() if v.status != "ok"}
    assert not failed, failed
    return {recipe: variant for (_, recipe), variant in built.items()}


@pytest.fixture(scope="session")
def old_python() -> str:
    """A Python with tflite-runtime and numpy<2 (a board's stack), made by `make test`."""
    path = os.environ.get("BENCH_OLD_PYTHON") or str(REPO / ".venv-tflite-runtime/bin/python")
    ok = Path(path).is_file() and subprocess.run(
        [path, "-I", "-c", "import tflite_runtime.interpreter, numpy"],
        capture_output=True).returncode == 0
    if not ok:
        message = f"no tflite-runtime venv at {path}; run `make old-venv`"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A project-like directory: the shipped device files with a work directory of the
    test's own, results/ empty, cwd there."""
    shutil.copytree(REPO / "devices", tmp_path / "devices")
    local = tmp_path / "devices" / "local.toml"
    local.write_text(local.read_text() + f'work_dir = "{tmp_path / "local-work"}"\n')
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_bench(args: list[str], cwd: Path, timeout: float = 300, **kwargs):
    """`python -m bench ARGS` in a subprocess, as a user would run it."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A real sshd on a loopback port for the module's tests."""
    from tests.sshd import SSHD, SSHServer

    if not Path(SSHD).is_file():
        message = f"{SSHD} missing: `make test` installs Debian's openssh-server"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    server = SSHServer(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


def start_bench(args: list[str], cwd: Path) -> subprocess.Popen:
    """`python -m bench ARGS` in the background, for tests that interrupt or break it."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_store(workdir: Path, query: str, at_least: int, timeout: float = 120) -> None:
    """Poll the results store until `query` (a COUNT) reaches `at_least`.

    Only a store that does not exist or is not migrated yet is waited for; a query that
    does not fit the schema is an error at once, not a silent timeout."""
    import sqlite3
    import time

    store = workdir / "results" / "bench.sqlite"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.1)
        try:  # the store may not exist or be migrated yet
            if sqlite3.connect(store).execute(query).fetchone()[0] >= at_least:
                return
        except sqlite3.OperationalError as exc:
            if "no such column" in str(exc):
                raise
            continue
    raise AssertionError(f"the store never had {at_least} for {query!r}")


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium through playwright (tests/browser.py): a failure in CI
    when it is missing, a skip elsewhere."""
    from tests.browser import CHROMIUM, launch

    if not Path(CHROMIUM).is_file():
        message = f"{CHROMIUM} missing: `make test` installs Debian's chromium"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()
