"""The local transport: copy, run, and kill a hung command with all its children."""

from __future__ import annotations

import os
import sys
import time

import pytest

from bench.transports.base import TransportError
from bench.transports.local import LocalTransport

SPAWN_AND_HANG = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open(sys.argv[1], "w").write(str(child.pid))
time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead for our purpose
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:  # reaped since the kill(0)
        return False


def test_timeout_kills_the_whole_process_group(tmp_path):
    pid_file = tmp_path / "child.pid"
    started = time.monotonic()
    result = LocalTransport().run([sys.executable, "-c", SPAWN_AND_HANG, str(pid_file)],
                                  timeout=3)
    assert result.timed_out and result.returncode is None
    assert time.monotonic() - started < 30
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(grandchild), "the runner's child survived the timeout"


def test_run_push_pull_exists(tmp_path):
    transport = LocalTransport()
    source = tmp_path / "a.bin"
    source.write_bytes(b"payload")
    remote = str(tmp_path / "device" / "deep" / "a.bin")
    assert not transport.exists(remote)
    transport.push(source, remote)
    assert transport.exists(remote)
    transport.pull(remote, tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == b"payload"
    with pytest.raises(TransportError, match="no such file"):
        transport.pull(str(tmp_path / "missing"), tmp_path / "x")
    result = transport.run([sys.executable, "-c", "import sys; print('out'); sys.exit(3)"], 30)
    assert result.returncode == 3 and result.stdout.strip() == "out" and not result.timed_out


def test_missing_program_is_a_transport_error():
    with pytest.raises(TransportError, match="cannot start"):
        LocalTransport().run(["/nonexistent/python"], timeout=5)
