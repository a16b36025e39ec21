"""The SSH transport against a real OpenSSH server on loopback.

The "board" is this machine reached through sshd, with the old stack (Python 3.8,
tflite-runtime 2.14, numpy<2) as its Python, so the whole run path is exercised.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from bench.transports.base import TransportError
from bench.transports.ssh import SSHSettings, SSHTransport, remote_command
from tests.conftest import run_bench, start_bench, wait_for_store


def settings(sshd, known_hosts: Path, **changes) -> SSHSettings:
    values = {"host": "127.0.0.1", "port": sshd.port, "user": sshd.user,
              "key_file": str(sshd.client_key), "agent": False,
              "known_hosts": str(known_hosts), "connect_timeout_s": 5.0, **changes}
    return SSHSettings(**values)


@pytest.fixture
def known_hosts(tmp_path, sshd) -> Path:
    path = tmp_path / "known_hosts"
    path.write_text(sshd.known_hosts_line())
    return path


def test_remote_command_quotes_every_argument():
    command = remote_command(["python3", "a b.py", "$(rm -rf /)", "it's"])
    assert "'a b.py'" in command and "'$(rm -rf /)'" in command
    assert "rm -rf /)" not in command.replace("'$(rm -rf /)'", "")


def test_run_push_pull_exists(tmp_path, sshd, known_hosts):
    transport = SSHTransport(settings(sshd, known_hosts))
    try:
        result = transport.run(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=20)
        assert (result.returncode, result.stdout, result.stderr.strip()) == (3, "out\n", "err")
        odd = transport.run(["echo", "a b", "$HOME", "it's"], timeout=20)
        assert odd.stdout == "a b $HOME it's\n"  # arguments arrive verbatim
        source = tmp_path / "payload.bin"
        source.write_bytes(os.urandom(4096))
        remote = str(tmp_path / "remote" / "deep" / "payload.bin")
        assert not transport.exists(remote)
        transport.push(source, remote)
        assert transport.exists(remote) and Path(remote).read_bytes() == source.read_bytes()
        transport.pull(remote, tmp_path / "back.bin")
        assert (tmp_path / "back.bin").read_bytes() == source.read_bytes()
        with pytest.raises(TransportError, match="no such file"):
            transport.pull(str(tmp_path / "missing"), tmp_path / "x")
    finally:
        transport.close()


HANG = "sleep 600 & echo $! > {pid}; wait"


def test_timeout_kills_the_remote_process_group(tmp_path, sshd, known_hosts):
    pid_file = tmp_path / "sleep.pid"
    transport = SSHTransport(settings(sshd, known_hosts))
    try:
        started = time.monotonic()
        result = transport.run(["sh", "-c", HANG.format(pid=pid_file)], timeout=2)
        assert result.timed_out and result.returncode is None
        assert time.monotonic() - started < 15
        pid = int(pid_file.read_text())
        deadline = time.monotonic() + 5
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{pid}").exists(), "the remote child survived the timeout"
    finally:
        transport.close()


def test_unknown_host_key_is_refused_with_the_fix(tmp_path, sshd):
    empty = tmp_path / "known_hosts"
    with pytest.raises(TransportError) as error:
        SSHTransport(settings(sshd, empty)).connect()
    assert "unknown host key" in str(error.value) and "ssh-keyscan" in str(error.value)
    assert "trust_on_first_use" in str(error.value)


def test_trust_on_first_use_records_the_key(tmp_path, sshd):
    known = tmp_path / "tofu" / "known_hosts"
    transport = SSHTransport(settings(sshd, known, trust_on_first_use=True))
    transport.connect()
    transport.close()
    recorded = known.read_text()
    assert f"[127.0.0.1]:{sshd.port}" in recorded
    assert sshd.known_hosts_line().split()[2] in recorded  # the server's real key
    again = SSHTransport(settings(sshd, known))  # now verified without TOFU
    assert again.run(["true"], timeout=20).returncode == 0
    again.close()


def test_wrong_host_key_is_refused(tmp_path, sshd):
    from tests.sshd import keygen

    keygen(tmp_path / "impostor")
    kind, key = (tmp_path / "impostor.pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {kind} {key}\n")
    with pytest.raises(TransportError, match="does NOT match"):
        SSHTransport(settings(sshd, known, trust_on_first_use=True)).connect()


def board(workdir: Path, sshd, known_hosts: Path, python: str, name: str = "board",
          **extra) -> None:
    extra.setdefault("work_dir", json.dumps(str(workdir / "board-home")))
    (workdir / "devices" / f"{name}.toml").write_text(
        sshd.device_toml(known_hosts, python, **extra))


def test_run_over_ssh_on_an_old_board_stack(workdir, sshd, known_hosts, old_python,
                                            model_cache, tiny_variants):
    board(workdir, sshd, known_hosts, old_python, tflite_module='"tflite_runtime.interpreter"')
    args = ["run", "--devices", "board", "--models", "tiny_cnn", "--recipes", "fp32,int8,dynamic",
            "--backends", "xnnpack", "--quick", "--cache", str(model_cache),
            "--calibration-size", "8", "--no-progress"]
    done = run_bench(args, workdir)
    assert done.returncode == 0, done.stderr
    db = sqlite3.connect(workdir / "results" / "bench.sqlite")
    rows = dict(db.execute("SELECT recipe, status FROM cells").fetchall())
    # int8 ran, but tflite-runtime 2.14 gave XNNPACK none of it: not an xnnpack figure
    assert rows == {"fp32": "ok", "int8": "ok", "dynamic": "failed"}
    assert "fallback" in next(x for x in done.stdout.splitlines() if "  int8  " in x)
    reason = db.execute("SELECT reason FROM cells WHERE recipe='dynamic'").fetchone()[0]
    assert "Didn't find op for builtin opcode 'FULLY_CONNECTED'" in reason  # the board's words
    runtime = db.execute("SELECT runtime_name, runtime_version, python_version, machine_id "
                         "FROM run_devices").fetchone()
    assert runtime[:2] == ("tflite-runtime", "2.14.0") and runtime[2].startswith("3.")
    assert runtime[3]  # the board's machine identity, as resolved
    assert list((workdir / "board-home" / "jobs").iterdir()) == []  # round files removed

    staged = sorted((workdir / "board-home" / "models").iterdir())
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in staged}
    runner = next((workdir / "board-home" / "runner").glob("pyrunner-*.py")).stat()
    again = run_bench(args, workdir)
    assert again.returncode == 0, again.stderr
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
             for p in (workdir / "board-home" / "models").iterdir()}
    assert after == before  # the second run sent no model bytes: same inodes, same mtimes
    runner_after = next((workdir / "board-home" / "runner").glob("pyrunner-*.py")).stat()
    assert (runner_after.st_ino, runner_after.st_mtime_ns) == (runner.st_ino, runner.st_mtime_ns)


def test_wrong_host_key_makes_the_device_unusable(workdir, sshd, tmp_path, old_python):
    from tests.sshd import keygen

    keygen(tmp_path / "impostor")
    kind, key = (tmp_path / "impostor.pub").read_text().split()[:2]
    known = tmp_path / "bad_known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {kind} {key}\n")
    board(workdir, sshd, known, old_python)
    done = run_bench(["run", "--devices", "board", "--models", "tiny_cnn", "--recipes", "fp32",
                      "--quick", "--no-progress"], workdir)
    assert done.returncode == 3, done.stderr
    assert "does NOT match" in done.stdout + done.stderr


SLOW_BOARD_PYTHON = """#!/bin/sh
case "$*" in *--probe*) ;; *pyrunner*) sleep 1;; esac
exec {python} "$@"
"""


def test_connection_lost_mid_sweep_then_resume(workdir, sshd, known_hosts, old_python,
                                               model_cache, tiny_variants):
    import signal


    wrapper = workdir / "slow-python"
    wrapper.write_text(SLOW_BOARD_PYTHON.format(python=old_python))
    wrapper.chmod(0o755)
    board(workdir, sshd, known_hosts, str(wrapper), backends='["xnnpack", "cpu"]')
    args = ["run", "--devices", "board", "--models", "tiny_cnn", "--recipes", "fp32,int8",
            "--rounds", "2", "--runs", "5", "--min-seconds", "0.01", "--cache",
            str(model_cache), "--calibration-size", "8", "--no-progress"]
    process = start_bench(args, workdir)
    store = workdir / "results" / "bench.sqlite"
    wait_for_store(workdir, "SELECT COUNT(*) FROM rounds", 5)  # round 0 whole, round 1 going
    sshd.kill_all()
    try:
        out, err = process.communicate(timeout=120)
    finally:
        sshd.start()  # back for the resume and the module's other tests
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
    assert process.returncode == 3, err  # the run is incomplete: a device was lost
    assert "bench: device board was lost while measuring" in err and "reconnects" in err
    rows = sqlite3.connect(store).execute("SELECT status, reason FROM cells").fetchall()
    assert len(rows) == 4 and {status for status, _ in rows} == {"pending"}
    assert all("--resume" in reason for _, reason in rows)
    kept = sqlite3.connect(store).execute("SELECT COUNT(*) FROM rounds WHERE status = 'ok'")
    assert kept.fetchone()[0] >= 4
    run_id = out.strip().splitlines()[-1].split()[1].rstrip(":")
    resumed = run_bench(["run", "--resume", run_id, "--no-progress", "--cache",
                         str(model_cache)], workdir)
    assert resumed.returncode == 0, resumed.stderr
    rows = dict(sqlite3.connect(store).execute("SELECT recipe || backend, status FROM cells"))
    assert set(rows.values()) == {"ok"}
    whole = sqlite3.connect(store).execute(
        "SELECT COUNT(*) FROM device_rounds WHERE finished_at IS NOT NULL").fetchone()[0]
    assert whole == 2  # round 0, then one new whole round instead of the broken one


def test_devices_check_reports_one_line_each(workdir, sshd, known_hosts, old_python):
    board(workdir, sshd, known_hosts, old_python)
    done = run_bench(["devices", "check", "board"], workdir)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = {line.split()[1]: line for line in done.stdout.splitlines()}
    assert lines["python"].startswith("ok") and "3.8" in lines["python"]
    assert "tflite_runtime 2.14.0" in lines["runtime"]
    assert "MB free" in lines["disk"] and "int8" in lines["cpu"]
    assert lines["lock"].startswith("ok") and "free" in lines["lock"]
    board(workdir, sshd, known_hosts, "/nonexistent/python3", name="nopython")
    bad = run_bench(["devices", "check", "nopython"], workdir)
    assert bad.returncode == 3 and "FAIL python" in bad.stdout and "set `python`" in bad.stdout
    assert "Traceback" not in bad.stdout + bad.stderr
    listing = run_bench(["devices", "list"], workdir)
    assert f"ssh {sshd.user}@127.0.0.1:{sshd.port}" in listing.stdout


def test_full_remote_disk_fails_cells_with_the_reason_and_no_retries(
        workdir, sshd, known_hosts, old_python, model_cache, tiny_variants):
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root")
    home = workdir / "small-disk"
    home.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12k", "tmpfs", str(home)], check=True)
    try:
        board(workdir, sshd, known_hosts, old_python, work_dir=json.dumps(str(home)))
        started = time.monotonic()
        done = run_bench(["run", "--devices", "board", "--models", "tiny_cnn", "--recipes",
                          "fp32,int8", "--backends", "xnnpack", "--quick", "--no-progress",
                          "--cache", str(model_cache)], workdir)
        elapsed = time.monotonic() - started
    finally:
        subprocess.run(["umount", str(home)], check=False)
    # 12 KiB hold the work directory's marker but not the runner: the device is unusable,
    # said once, before anything is measured, and its cells fail with that reason
    assert done.returncode == 3, done.stderr
    assert "bench: device board could not be used: cannot write" in done.stderr
    assert "is its disk full?" in done.stderr
    reasons = [r for (r,) in sqlite3.connect(workdir / "results" / "bench.sqlite").execute(
        "SELECT reason FROM cells")]
    assert len(reasons) == 2 and all(r and "is its disk full?" in r for r in reasons), reasons
    assert elapsed < 30  # refused writes are not retried like a dropped connection


def test_a_quick_reboot_is_survived_by_reconnecting(workdir, sshd, known_hosts, old_python,
                                                    model_cache, tiny_variants):

    from tests.sshd import drop_connections

    board(workdir, sshd, known_hosts, old_python, backends='["xnnpack", "cpu"]')
    args = ["run", "--devices", "board", "--models", "tiny_cnn", "--recipes", "fp32,int8",
            "--rounds", "3", "--runs", "2000", "--no-progress", "--cache", str(model_cache)]
    process = start_bench(args, workdir)
    store = workdir / "results" / "bench.sqlite"
    wait_for_store(workdir, "SELECT COUNT(*) FROM rounds", 2)
    assert drop_connections(sshd) >= 1
    out, err = process.communicate(timeout=180)
    assert process.returncode == 0, err
    rows = dict(sqlite3.connect(store).execute("SELECT recipe || backend, status FROM cells"))
    assert set(rows.values()) == {"ok"}, rows
    rounds = sqlite3.connect(store).execute("SELECT COUNT(*) FROM rounds").fetchone()[0]
    assert rounds == 12  # every cell got all its rounds despite the drop


def test_devices_clean_removes_only_what_bench_staged(workdir, sshd, known_hosts, old_python,
                                                      model_cache, tiny_variants):
    board(workdir, sshd, known_hosts, old_python)
    done = run_bench(["run", "--devices", "board", "--models", "tiny_cnn", "--recipes", "fp32",
                      "--backends", "xnnpack", "--quick", "--no-progress", "--cache",
                      str(model_cache)], workdir)
    assert done.returncode == 0, done.stderr
    home = workdir / "board-home"
    (home / "keep.txt").write_text("the user's own file")
    assert (home / "models").is_dir() and list((home / "runner").glob("pyrunner-*.py"))
    cleaned = run_bench(["devices", "clean", "board"], workdir)
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert "removed the staged runner, models and jobs" in cleaned.stdout
    assert not (home / "models").exists() and not (home / "runner").exists()
    assert (home / "keep.txt").read_text() == "the user's own file"


SLOW_RUNNER = """#!/bin/sh
case "$*" in *--probe*) ;; *pyrunner*) echo $$ >> {pids}; sleep 1;; esac
exec {python} "$@"
"""


def test_ctrl_c_kills_the_remote_runner(workdir, sshd, known_hosts, old_python, model_cache,
                                        tiny_variants):
    import signal


    pids = workdir / "remote.pids"
    wrapper = workdir / "slow-runner"
    wrapper.write_text(SLOW_RUNNER.format(pids=pids, python=old_python))
    wrapper.chmod(0o755)
    board(workdir, sshd, known_hosts, str(wrapper))
    args = ["run", "--devices", "board", "--models", "tiny_cnn", "--recipes", "fp32,int8",
            "--rounds", "3", "--runs", "100000", "--min-seconds", "30", "--no-progress",
            "--cache", str(model_cache)]
    process = start_bench(args, workdir)
    deadline = time.monotonic() + 60
    while not pids.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2)  # the runner is now in its 30 s timed loop on the board
    runner = int(pids.read_text().split()[0])
    assert Path(f"/proc/{runner}").exists()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    deadline = time.monotonic() + 10
    while Path(f"/proc/{runner}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{runner}").exists(), "the remote runner survived Ctrl-C"


class MuteServer:
    """Accepts TCP connections and never says a word: a hung sshd, a wrong port."""

    def __init__(self):
        import socket
        import threading

        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(8)
        self.port = self.socket.getsockname()[1]
        self.held: list = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.held.append(connection)

    def close(self):
        self.socket.close()
        for connection in self.held:
            connection.close()


def test_a_board_that_never_answers_delays_no_other_device(workdir, sshd, known_hosts,
                                                           model_cache, tiny_variants):
    mute = MuteServer()
    try:
        (workdir / "devices" / "mute.toml").write_text(
            'transport = "ssh"\nrunner = "python"\n[ssh]\nhost = "127.0.0.1"\n'
            f'port = {mute.port}\nuser = "nobody"\nagent = false\n'
            f'known_hosts = "{known_hosts}"\nconnect_timeout_s = 2\n')
        done = run_bench(["run", "--devices", "mute,local", "--models", "tiny_cnn", "--recipes",
                          "fp32", "--backends", "xnnpack", "--quick", "--no-progress",
                          "--cache", str(model_cache)], workdir)
        assert done.returncode == 3, done.stderr
        line = next(x for x in done.stderr.splitlines() if "device mute could not be used" in x)
        assert "sent no SSH banner within 2 s" in line and "python" not in line
        assert "Traceback" not in done.stderr
        db = sqlite3.connect(workdir / "results" / "bench.sqlite")
        local_started = db.execute(
            "SELECT MIN(r.started_unix) FROM rounds r JOIN cells c ON c.cell_id = r.cell_id "
            "WHERE c.device = 'local'").fetchone()[0]
        mute_failed = db.execute("SELECT updated_at FROM cells WHERE device = 'mute'").fetchone()
        from datetime import datetime

        failed_at = datetime.fromisoformat(mute_failed[0]).timestamp()
        assert local_started < failed_at  # local was measured while mute was still silent
        check = run_bench(["devices", "check", "mute"], workdir)
        assert check.returncode == 3
        assert check.stdout.startswith("FAIL reachable") and "no SSH banner" in check.stdout
        assert "Traceback" not in check.stdout + check.stderr
        assert len(check.stdout.strip().splitlines()) == 1
    finally:
        mute.close()
