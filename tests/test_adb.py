"""Phones over ADB, end to end: both transports against the ADB device emulator.

The emulator (tests/adb_device.py) speaks the ADB wire protocol like a phone's adbd in
`adb tcpip` mode. The harness reaches it with adb-shell (no server) and with Debian's real
`adb` client through an adb server of the test's own on a private port (never 5037 nor a
user's server). The runner is TFLite's benchmark_model, played by tests/fakes/
benchmark_model: it runs the model with the local TFLite interpreter on the "phone" and
prints what the real tool prints, including the Hexagon delegate failing to start on a
phone with no DSP.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.adb_device import (
    AdbDevice,
    AdbDeviceUnavailable,
    check_environment,
    free_port,
    host_python_mounts,
)
from tests.conftest import IN_CI, REPO, run_bench, start_bench, wait_for_store

STAND_IN = REPO / "tests" / "fakes" / "benchmark_model"
RUN = ["run", "--models", "tiny_cnn", "--recipes", "fp32,int8", "--rounds", "2", "--runs",
       "10", "--min-seconds", "0.02", "--no-progress", "--calibration-size", "8"]


def require(ok: bool, message: str) -> None:
    if not ok:
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def phone(tmp_path_factory):
    """An emulated phone whose `python3` is this project's, for the stand-in binary."""
    try:
        check_environment()
    except AdbDeviceUnavailable as exc:
        require(False, f"{exc} (make test runs the suite as root)")
    root = tmp_path_factory.mktemp("phone")
    device = AdbDevice(root / "fs", extra_mounts=host_python_mounts(),
                       props={"ro.serialno": "BENCHPHONE01", "ro.soc.model": "SM8150",
                              "ro.board.platform": "msmnile",
                              "ro.product.cpu.abi": _abi()})
    device.start()
    wrapper = root / "python3"
    wrapper.write_text(f"#!/bin/sh\nexec {REPO / '.venv' / 'bin' / 'python'}"
                       ' "$@"\n')
    wrapper.chmod(0o755)
    device.install("python3", wrapper)
    yield device
    device.stop()


def _abi() -> str:
    return {"x86_64": "x86_64", "aarch64": "arm64-v8a"}.get(os.uname().machine, "x86_64")


@pytest.fixture
def hexagon_libs(tmp_path) -> Path:
    folder = tmp_path / "hexagon_nn_skel"
    folder.mkdir()
    for name in ("libhexagon_interface.so", "libhexagon_nn_skel.so", "libhexagon_nn_skel_v66.so"):
        (folder / name).write_bytes(b"\x7fELF not really a DSP library")
    return folder


def phone_file(workdir: Path, name: str, adb: dict, binary: Path = STAND_IN,
               backends: tuple = ("cpu", "xnnpack", "hexagon"), **bm) -> None:
    lines = ['transport = "adb"', 'runner = "benchmark_model"',
             f"backends = {json.dumps(list(backends))}", "timeout_s = 120", "[adb]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in adb.items()]
    lines += ["[benchmark_model]", f"binary = {json.dumps(str(binary))}"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in bm.items()]
    (workdir / "devices" / f"{name}.toml").write_text("\n".join(lines) + "\n")


def adb_shell_settings(phone: AdbDevice, workdir: Path, **extra) -> dict:
    return {"host": "127.0.0.1", "port": phone.port, "key_file": str(workdir / "adbkey"),
            "auth_timeout_s": 10, **extra}


def cells(workdir: Path) -> dict:
    db = sqlite3.connect(workdir / "results" / "bench.sqlite")
    return {f"{r}/{b}": (s, reason) for r, b, s, reason in
            db.execute("SELECT recipe, backend, status, reason FROM cells")}


def test_devices_check_on_a_phone_over_adb_shell(workdir, phone, hexagon_libs):
    phone_file(workdir, "pixel-emulator", adb_shell_settings(phone, workdir),
               hexagon_lib_dir=str(hexagon_libs))
    done = run_bench(["devices", "check", "pixel-emulator"], workdir)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = {line.split()[1]: line for line in done.stdout.splitlines()}
    assert "serial BENCHPHONE01" in lines["reachable"]
    assert "SDK" in lines["android"] and "SM8150 (board msmnile)" in lines["soc"]
    assert "runs there" in lines["binary"] and "hexagon" in lines["binary"]
    assert lines["hexagon"].startswith("ok") and "deprecated" in lines["hexagon"]
    assert "MB free in /data/local/tmp/bench-work" in lines["disk"]
    assert "free (/data/local/tmp/bench-machine.lock)" in lines["lock"]
    assert (workdir / "adbkey").is_file()  # generated, then accepted on the phone


def test_a_sweep_over_adb_shell_catches_the_hexagon_fallback(workdir, phone, hexagon_libs,
                                                             model_cache, tiny_variants):
    phone_file(workdir, "pixel-emulator", adb_shell_settings(phone, workdir),
               hexagon_lib_dir=str(hexagon_libs))
    done = run_bench([*RUN, "--devices", "pixel-emulator", "--cache", str(model_cache)],
                     workdir, timeout=400)
    assert done.returncode == 0, done.stderr
    found = cells(workdir)
    assert found["fp32/xnnpack"][0] == found["int8/xnnpack"][0] == "ok"
    assert found["int8/cpu"][0] == "ok"
    hexagon = next(x for x in done.stdout.splitlines() if x.startswith("FALLBACK") and
                   "int8 on pixel-emulator/hexagon" in x)
    assert "Could not create Hexagon delegate" in hexagon or "Hexagon" in hexagon
    int8 = next(x for x in done.stdout.splitlines()
                if x.startswith("tiny_cnn*  int8") and " hexagon " in x)
    assert "fallback" in int8 and "x [" not in int8  # never a Hexagon speedup
    db = sqlite3.connect(workdir / "results" / "bench.sqlite")
    stats = db.execute("SELECT n, summary_kind, runner_name, temperature_c, record FROM rounds "
                       "WHERE status = 'ok' LIMIT 1").fetchone()
    assert stats[0] >= 10 and stats[1] in ("median", "mean") and stats[2] == "benchmark_model"
    assert json.loads(stats[4])["output"]  # the binary's own words are kept
    device = db.execute("SELECT machine_id, platform FROM run_devices").fetchone()
    assert device[0] == "BENCHPHONE01" and device[1]  # serial; the build fingerprint
    work = phone.path("/data/local/tmp/bench-work")
    assert not list((work / "jobs").glob("*")) if (work / "jobs").exists() else True
    assert not phone.path("/data/local/tmp/bench-machine.lock").exists()  # released


@pytest.fixture
def adb_server(tmp_path):
    """Debian's adb client with a server of the test's own, on a private port."""
    adb = shutil.which("adb")
    require(adb is not None, "Debian's adb is missing; `make test` installs it")
    port = free_port(avoid=[5037])
    env = {**os.environ, "HOME": str(tmp_path / "adb-home")}
    (tmp_path / "adb-home").mkdir()
    subprocess.run([adb, "-P", str(port), "start-server"], env=env, check=True,
                   capture_output=True, timeout=30)
    yield adb, port, env
    subprocess.run([adb, "-P", str(port), "kill-server"], env=env, capture_output=True,
                   timeout=30)


def test_a_sweep_through_the_system_adb_client(workdir, phone, adb_server, model_cache,
                                               tiny_variants):
    adb, port, env = adb_server
    serial = f"127.0.0.1:{phone.port}"
    # a new key: the first answer is "failed to authenticate", and the phone asks its user
    subprocess.run([adb, "-P", str(port), "connect", serial], env=env, capture_output=True,
                   text=True, timeout=30)
    deadline = time.monotonic() + 20  # until the emulated phone has allowed the server's key
    while time.monotonic() < deadline:
        listing = subprocess.run([adb, "-P", str(port), "devices"], env=env,
                                 capture_output=True, text=True, timeout=30).stdout
        if f"{serial}\tdevice" in listing:
            break
        time.sleep(0.2)
    assert f"{serial}\tdevice" in listing, listing
    phone_file(workdir, "pixel-usb", {"client": "adb", "serial": serial,
                                      "server_port": port}, backends=("cpu", "xnnpack"))
    done = subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), "-m", "bench", *RUN, "--devices",
         "pixel-usb", "--cache", str(model_cache)], cwd=workdir, capture_output=True,
        text=True, timeout=400, env={**env, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert set(s for s, _ in cells(workdir).values()) == {"ok"}
    check = subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), "-m", "bench", "devices", "check",
         "pixel-usb"], cwd=workdir, capture_output=True, text=True, timeout=120,
        env={**env, "PYTHONPATH": str(REPO)})
    assert check.returncode == 0, check.stdout + check.stderr
    assert "serial BENCHPHONE01" in check.stdout


def test_the_benchmark_model_runner_on_this_machine(workdir, model_cache, tiny_variants):
    """The same runner on the local transport, with the stand-in as the binary (run by this
    project's Python, as a Linux build would need no Python at all)."""
    binary = workdir / "linux_x86-64_benchmark_model"
    binary.write_text(f'#!/bin/sh\nexec {REPO / ".venv" / "bin" / "python"} {STAND_IN} "$@"\n')
    binary.chmod(0o755)
    (workdir / "devices" / "native.toml").write_text(
        'transport = "local"\nrunner = "benchmark_model"\nbackends = ["cpu", "xnnpack", "gpu"]\n'
        f'work_dir = "{workdir / "native-work"}"\n[benchmark_model]\n'
        f'binary = "{binary}"\n')
    done = run_bench([*RUN, "--devices", "native", "--cache", str(model_cache)], workdir,
                     timeout=400)
    assert done.returncode == 0, done.stderr
    found = cells(workdir)
    assert found["int8/xnnpack"][0] == "ok" and found["fp32/cpu"][0] == "ok"
    assert "FALLBACK: tiny_cnn* fp32 on native/gpu/t1" in done.stdout
    memory = dict(sqlite3.connect(workdir / "results" / "bench.sqlite").execute(
        "SELECT recipe || '/' || backend, memory_evidence FROM cells"))
    assert all("peak memory footprint" in memory[k] for k in ("fp32/cpu", "int8/xnnpack"))


def test_phone_faults_are_one_clear_line_each(workdir, phone, tmp_path, model_cache,
                                             tiny_variants):
    # a binary that is not there: the device is unusable, said with the key to fix
    phone_file(workdir, "nobinary", adb_shell_settings(phone, workdir),
               binary=tmp_path / "not-downloaded-yet")
    done = run_bench([*RUN, "--devices", "nobinary", "--cache", str(model_cache)], workdir)
    assert done.returncode == 3
    line = next(x for x in done.stderr.splitlines() if "could not be used" in x)
    assert "benchmark_model binary not found" in line and "benchmark_model.binary" in line
    # a binary for another architecture: refused before anything runs
    wrong = tmp_path / "benchmark_model_other_abi"
    machine = 183 if _abi() == "x86_64" else 62  # aarch64 on x86-64 and back
    wrong.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 9 + (2).to_bytes(2, "little")
                      + machine.to_bytes(2, "little") + b"\0" * 44)
    phone_file(workdir, "wrongabi", adb_shell_settings(phone, workdir), binary=wrong)
    done = run_bench([*RUN, "--devices", "wrongabi", "--cache", str(model_cache)], workdir)
    assert done.returncode == 3
    line = next(x for x in done.stderr.splitlines() if "could not be used" in x)
    assert "is built for" in line and "use the matching build" in line
    # a binary that prints nothing: the cells fail, quoting what came back
    silent = tmp_path / "silent_benchmark_model"
    silent.write_text("#!/bin/sh\ncase \"$*\" in *--help*) echo '--graph=  string'; "
                      "echo '--use_xnnpack=  bool';; esac\n")
    silent.chmod(0o755)
    phone_file(workdir, "silent", adb_shell_settings(phone, workdir), binary=silent,
               backends=("xnnpack",))
    done = run_bench([*RUN, "--devices", "silent", "--cache", str(model_cache)], workdir)
    assert done.returncode == 0, done.stderr
    failed = [x for x in done.stdout.splitlines() if x.startswith("FAILED: tiny_cnn*")]
    assert len(failed) == 2 and all("silent/xnnpack" in x and "output" in x for x in failed)
    # missing Hexagon libraries fail only the hexagon cells, saying what is missing
    phone_file(workdir, "nolibs", adb_shell_settings(phone, workdir),
               hexagon_lib_dir=str(tmp_path / "empty"))
    done = run_bench([*RUN, "--devices", "nolibs", "--cache", str(model_cache)], workdir)
    assert done.returncode == 0, done.stderr
    hexagon = [x for x in done.stdout.splitlines() if x.startswith("FAILED")]
    assert len(hexagon) == 2 and all("no libhexagon_interface.so" in x for x in hexagon)


HANGING_BINARY = """#!/bin/sh
case "$*" in *--help*) echo '--graph=  string'; echo '--use_xnnpack=  bool'; exit 1;; esac
sleep 300
"""


@pytest.mark.parametrize("stop", ["timeout", "ctrl-c"])
def test_a_hung_round_is_killed_on_the_phone(workdir, phone, tmp_path, model_cache,
                                             tiny_variants, stop):
    """A closed ADB stream leaves its command running on a phone: the harness kills the
    round's process group there itself, on a timeout and on Ctrl-C."""
    binary = tmp_path / "hanging_benchmark_model"
    binary.write_text(HANGING_BINARY)
    binary.chmod(0o755)
    phone_file(workdir, "hangs", adb_shell_settings(phone, workdir), binary=binary,
               backends=("xnnpack",))
    device_file = workdir / "devices" / "hangs.toml"
    device_file.write_text(device_file.read_text().replace("timeout_s = 120", "timeout_s = 3"))

    def sleeping() -> list[int]:
        found = []
        for pid in phone.processes():
            try:  # a process may end between the listing and this read
                if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep\x00300"):
                    found.append(pid)
            except OSError:
                continue
        return found

    args = [*RUN, "--devices", "hangs", "--recipes", "fp32", "--cache", str(model_cache)]
    if stop == "timeout":
        done = run_bench(args, workdir)
        assert done.returncode == 0, done.stderr
        assert "timed out after 3 s and was killed" in done.stdout
    else:
        process = start_bench(args, workdir)
        deadline = time.monotonic() + 60
        while not sleeping() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sleeping(), "the round never started on the phone"
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
        assert process.returncode == 130
    deadline = time.monotonic() + 10
    while sleeping() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not sleeping(), "the round's process survived on the phone"


def test_an_unauthorised_key_says_what_to_do_on_the_phone(workdir, tmp_path, model_cache):
    with AdbDevice(tmp_path / "locked", confirm="never") as locked:
        phone_file(workdir, "locked", {"host": "127.0.0.1", "port": locked.port,
                                       "key_file": str(tmp_path / "newkey"),
                                       "auth_timeout_s": 2})
        done = run_bench(["devices", "check", "locked"], workdir)
    assert done.returncode == 3
    assert done.stdout.startswith("FAIL authorised") and "tap Allow" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_a_full_data_partition_is_refused_once_with_the_reason(workdir, tmp_path, model_cache,
                                                               tiny_variants):
    with AdbDevice(tmp_path / "full", data_size_kb=16, extra_mounts=host_python_mounts(),
                   props={"ro.serialno": "FULL01"}) as full:
        key = tmp_path / "key"
        phone_file(workdir, "full", {"host": "127.0.0.1", "port": full.port,
                                     "key_file": str(key)})
        started = time.monotonic()
        done = run_bench([*RUN, "--devices", "full", "--cache", str(model_cache)], workdir)
    assert done.returncode == 3
    line = next(x for x in done.stderr.splitlines() if "could not be used" in x)
    assert "No space left on device" in line and "disk full" in line
    assert time.monotonic() - started < 60  # a refusal is not retried like a dropped link


def board_file(workdir: Path, sshd, python: str) -> None:
    known = workdir / "known_hosts"
    known.write_text(sshd.known_hosts_line())
    (workdir / "devices" / "rpi4-test.toml").write_text(sshd.device_toml(
        known, python, work_dir=json.dumps(str(workdir / "rpi4-home")),
        backends='["xnnpack", "cpu"]'))


def test_a_phone_and_a_board_in_one_run(workdir, phone, sshd, model_cache, tiny_variants,
                                        old_python, hexagon_libs):
    """`bench run --devices pixel-emulator,rpi4-test`: fp32 and int8 over cpu, xnnpack and
    hexagon on the phone (Hexagon falls back: no DSP), xnnpack and cpu on the board."""
    board_file(workdir, sshd, old_python)
    phone_file(workdir, "pixel-emulator", adb_shell_settings(phone, workdir),
               hexagon_lib_dir=str(hexagon_libs))
    done = run_bench([*RUN, "--devices", "pixel-emulator,rpi4-test", "--cache",
                      str(model_cache)], workdir, timeout=400)
    assert done.returncode == 0, done.stderr
    db = sqlite3.connect(workdir / "results" / "bench.sqlite")
    statuses = {(d, r, b): s for d, r, b, s in
                db.execute("SELECT device, recipe, backend, status FROM cells")}
    assert len(statuses) == 10  # 6 on the phone, 4 on the board
    assert statuses[("pixel-emulator", "int8", "xnnpack")] == "ok"
    assert statuses[("rpi4-test", "fp32", "xnnpack")] == "ok"
    assert "FALLBACK: tiny_cnn* int8 on pixel-emulator/hexagon/t1" in done.stdout
    machines = dict(db.execute("SELECT device, machine_id FROM run_devices"))
    assert machines["pixel-emulator"] == "BENCHPHONE01" and machines["rpi4-test"]


def test_a_phone_lost_mid_sweep_does_not_stop_the_board(workdir, phone, sshd, model_cache,
                                                       tiny_variants, old_python, hexagon_libs):
    """`bench run --devices pixel-emulator,rpi4-test`: a phone and an sshd board in
    parallel; the phone drops off the network mid-sweep; the board finishes, the phone's
    cells wait for --resume with their rounds kept, and the runner there was killed."""
    board_file(workdir, sshd, old_python)
    phone_file(workdir, "pixel-emulator", adb_shell_settings(phone, workdir),
               hexagon_lib_dir=str(hexagon_libs))
    args = ["run", "--devices", "pixel-emulator,rpi4-test", "--models", "tiny_cnn",
            "--recipes", "fp32,int8", "--rounds", "6", "--runs", "200", "--min-seconds", "0.3",
            "--no-progress", "--cache", str(model_cache), "--calibration-size", "8"]
    process = start_bench(args, workdir)
    try:
        wait_for_store(workdir, "SELECT COUNT(*) FROM rounds r JOIN cells c ON c.cell_id = "
                       "r.cell_id WHERE c.device = 'pixel-emulator'", 7, timeout=240)
        phone.kill_all()
        out, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        phone.start()
    assert process.returncode == 3, err
    assert "device pixel-emulator was lost while measuring" in err
    db = sqlite3.connect(workdir / "results" / "bench.sqlite")
    by_device = {}
    for device, status in db.execute("SELECT device, status FROM cells"):
        by_device.setdefault(device, set()).add(status)
    assert by_device["rpi4-test"] == {"ok"}
    assert by_device["pixel-emulator"] == {"pending"}
    kept = db.execute("SELECT COUNT(*) FROM rounds r JOIN cells c ON c.cell_id = r.cell_id "
                      "WHERE c.device = 'pixel-emulator' AND r.status = 'ok'").fetchone()[0]
    assert kept >= 6
