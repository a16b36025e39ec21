"""Several devices in one run: parallel per machine, never two names of one machine at
once, and a lock that stops two harnesses measuring one device."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.conftest import IN_CI, run_bench, start_bench, wait_for_store
from tests.sshd import SSHD, NetworkNamespace, SSHServer


@pytest.fixture(scope="module")
def boards(tmp_path_factory):
    """Two boards: sshd servers in their own mount namespaces with distinct machine ids."""
    if not Path(SSHD).is_file() or os.geteuid() != 0:
        message = "needs root and Debian's openssh-server (make test installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    namespaces = []
    try:
        for index in (1, 2):
            namespaces.append(NetworkNamespace(index).create())
    except subprocess.CalledProcessError as exc:
        for namespace in namespaces:
            namespace.delete()
        message = f"cannot create network namespaces: {exc.stderr}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    servers = [SSHServer(tmp_path_factory.mktemp(f"board{i}"), machine_id=f"{i:032x}",
                         netns=namespace).start()
               for i, namespace in enumerate(namespaces, start=1)]
    yield servers
    for server in servers:
        server.stop()
    for namespace in namespaces:
        namespace.delete()


def add_board(workdir: Path, name: str, server: SSHServer, python: str) -> None:
    known = workdir / f"{name}.known_hosts"
    known.write_text(server.known_hosts_line())
    (workdir / "devices" / f"{name}.toml").write_text(server.device_toml(
        known, python, work_dir=json.dumps(str(workdir / f"{name}-home")),
        backends='["xnnpack"]'))


def intervals(workdir: Path) -> dict[str, list[tuple[float, float]]]:
    db = sqlite3.connect(workdir / "results" / "bench.sqlite")
    out: dict[str, list] = {}
    for device, started, finished in db.execute(
            "SELECT c.device, r.started_unix, r.finished_unix FROM rounds r JOIN cells c "
            "ON c.run_id = r.run_id AND c.cell_id = r.cell_id"):
        out.setdefault(device, []).append((started, finished))
    return out


def overlapping(a: list, b: list) -> int:
    return sum(1 for s1, e1 in a for s2, e2 in b if s1 < e2 and s2 < e1)


RUN = ["run", "--models", "tiny_cnn", "--recipes", "fp32,int8", "--rounds", "3",
       "--runs", "300", "--min-seconds", "0.3", "--no-progress"]


def test_two_machines_are_measured_in_parallel(workdir, boards, model_cache, tiny_variants,
                                               old_python):
    add_board(workdir, "board1", boards[0], old_python)
    add_board(workdir, "board2", boards[1], old_python)
    done = run_bench([*RUN, "--devices", "board1,board2", "--cache", str(model_cache),
                      "--calibration-size", "8"], workdir)
    assert done.returncode == 0, done.stderr
    found = intervals(workdir)
    assert len(found["board1"]) == len(found["board2"]) == 6
    assert overlapping(found["board1"], found["board2"]) >= 2  # both boards busy at once
    addresses = {server.address for server in boards}
    assert addresses == {"10.213.1.2", "10.213.2.2"}  # each board at its own address


def test_two_names_for_one_machine_never_overlap(workdir, sshd, model_cache, tiny_variants,
                                                 old_python):
    add_board(workdir, "thishost", sshd, old_python)  # an ssh entry pointing at this machine
    done = run_bench([*RUN, "--devices", "local,thishost", "--backends", "xnnpack",
                      "--cache", str(model_cache), "--calibration-size", "8"], workdir)
    assert done.returncode == 0, done.stderr
    found = intervals(workdir)
    assert len(found["local"]) == len(found["thishost"]) == 6
    assert overlapping(found["local"], found["thishost"]) == 0


def test_a_machine_locked_by_another_harness_is_not_measured(workdir, model_cache,
                                                             tiny_variants, own_machine_state):
    lock = own_machine_state / "locks" / "bench-machine.lock"
    lock.mkdir(parents=True)
    (lock / "owner").write_text(json.dumps({"host": "other-host", "pid": 1, "run_id": "r0",
                                            "devices": ["x"], "since": 0}))
    args = ["run", "--models", "tiny_cnn", "--recipes", "fp32", "--quick", "--no-progress",
            "--cache", str(model_cache), "--calibration-size", "8"]
    try:
        done = run_bench(args, workdir)
        assert done.returncode == 3
        assert "busy: run r0 (pid 1 on other-host, devices x, since" in done.stderr
        assert lock.is_dir()  # someone else's lock is left alone

        # a lock left by a dead harness on this host is stale and taken over
        (lock / "owner").write_text(json.dumps({"host": platform.node(), "pid": 2**22 + 7,
                                                "since": 0}))
        done = run_bench(args, workdir)
        assert done.returncode == 0, done.stderr
        assert not lock.exists()  # released at the end of the run
    finally:
        if lock.exists():
            (lock / "owner").unlink(missing_ok=True)
            lock.rmdir()


def test_jump_host_reaches_a_board_behind_it(workdir, boards, sshd, old_python):
    """The harness reaches board1 only through the loopback sshd (the bastion)."""
    board = boards[0]
    known = workdir / "known_hosts"
    known.write_text(board.known_hosts_line() + sshd.known_hosts_line())
    with open(sshd.root / "authorized_keys", "a") as keys:  # the bastion knows our key
        keys.write(board.client_key.with_suffix(".pub").read_text())
    (workdir / "devices" / "behind.toml").write_text(board.device_toml(
        known, old_python, work_dir=json.dumps(str(workdir / "behind-home")),
        ssh_jump_host=json.dumps(f"{sshd.user}@127.0.0.1:{sshd.port}")))
    done = run_bench(["devices", "check", "behind"], workdir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "tflite_runtime 2.14.0" in done.stdout
    fingerprint = subprocess.run(["ssh-keygen", "-lf", str(board.client_key)], check=True,
                                 capture_output=True, text=True).stdout.split()[1]
    bastion_log = sshd.log.read_text()
    assert f"Accepted publickey for {sshd.user}" in bastion_log
    assert fingerprint in bastion_log  # the harness went through the bastion


def test_a_lost_board_does_not_stop_the_other(workdir, boards, model_cache, tiny_variants,
                                              old_python):
    add_board(workdir, "board1", boards[0], old_python)
    add_board(workdir, "board2", boards[1], old_python)
    args = [*RUN, "--devices", "board1,board2", "--cache", str(model_cache),
            "--calibration-size", "8"]
    process = start_bench(args, workdir)
    store = workdir / "results" / "bench.sqlite"
    wait_for_store(workdir, "SELECT COUNT(*) FROM rounds r JOIN cells c ON c.cell_id = "
                   "r.cell_id WHERE c.device = 'board1'", 1)
    boards[0].kill_all()
    try:
        out, err = process.communicate(timeout=180)
    finally:
        boards[0].start()
    assert process.returncode == 3, err  # incomplete: board1 was lost
    assert "device board1 was lost while measuring" in err
    rows = sqlite3.connect(store).execute(
        "SELECT device, status, reason, stop_reason FROM cells").fetchall()
    board2 = [stop for device, status, _, stop in rows if device == "board2" and status == "ok"]
    assert board2 == ["fixed_rounds", "fixed_rounds"]  # the other board finished
    rounds = sqlite3.connect(store).execute(
        "SELECT COUNT(*) FROM rounds r JOIN cells c ON c.cell_id = r.cell_id WHERE "
        "c.device = 'board2'").fetchone()[0]
    assert rounds == 6
    for device, status, reason, _ in rows:
        if device == "board1":  # cut short: left for a --resume, its rounds kept
            assert status == "pending" and "device lost" in reason
