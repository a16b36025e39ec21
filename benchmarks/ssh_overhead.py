"""What does reaching a board over SSH cost per cell, and does a second run re-send models?

Starts a real OpenSSH server on loopback (as the tests do) whose "board" Python is the
tflite-runtime venv, runs a sweep through it, then reports per cell:
  host wall time of the round  -  the runner's own wall time  =  orchestration overhead,
split into interpreter start-up (`python -I -c pass` minus `true`, both over the same SSH
connection) and the rest (channel set-up, job upload, result download). Goal: rest <= 300 ms.
Then runs the same sweep again and checks, on the board's side, that every staged model
file keeps its inode, mtime and size: goal, no model bytes re-sent.

Usage: python benchmarks/ssh_overhead.py   (needs /usr/sbin/sshd; `make test` installs it)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.transports.ssh import SSHSettings, SSHTransport  # noqa: E402
from tests.sshd import SSHServer  # noqa: E402

OLD_PYTHON = os.environ.get("BENCH_OLD_PYTHON", str(REPO / ".venv-tflite-runtime/bin/python"))


def timed(transport: SSHTransport, argv: list[str], repeats: int = 15) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        transport.run(argv, timeout=60)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def sweep(workdir: Path, cache: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--devices", "board", "--models", "tiny_cnn",
         "--recipes", "fp32,int8,int8-per-tensor", "--rounds", "5", "--cache", str(cache),
         "--no-progress"], cwd=workdir, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    return re.search(r"run (\S+): conversions", done.stdout).group(1)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-ssh-") as scratch:
        root = Path(scratch)
        server = SSHServer(root / "sshd").start()
        try:
            known = root / "known_hosts"
            known.write_text(server.known_hosts_line())
            shutil.copytree(REPO / "devices", root / "devices")
            (root / "devices" / "board.toml").write_text(server.device_toml(
                known, OLD_PYTHON, work_dir=json.dumps(str(root / "board-home")),
                backends='["xnnpack"]'))
            settings = SSHSettings(host="127.0.0.1", port=server.port, user=server.user,
                                   key_file=str(server.client_key), agent=False,
                                   known_hosts=str(known))
            transport = SSHTransport(settings)
            channel = timed(transport, ["true"])
            python = timed(transport, [OLD_PYTHON, "-I", "-c", "pass"])
            numpy = timed(transport, [OLD_PYTHON, "-I", "-c", "import numpy"])
            transport.close()
            startup = python - channel
            print(f"over loopback SSH: a command round trip {channel * 1000:.1f} ms; Python 3.8 "
                  f"start-up {startup * 1000:.1f} ms (+ numpy import "
                  f"{(numpy - python) * 1000:.1f} ms, counted in the runner's own time)")

            cache = root / "cache"
            first = sweep(root, cache)
            db = sqlite3.connect(root / "results" / "bench.sqlite")
            overheads = []
            for started, finished, host in db.execute(
                    "SELECT started_unix, finished_unix, host_seconds FROM rounds WHERE "
                    "run_id = ? AND status = 'ok'", (first,)):
                overheads.append(host - (finished - started))
            overhead = statistics.median(overheads)
            rest = overhead - startup
            print(f"per cell-round ({len(overheads)} rounds): host wall minus runner's own time "
                  f"= {overhead * 1000:.1f} ms median; of which interpreter start-up "
                  f"{startup * 1000:.1f} ms and the rest {rest * 1000:.1f} ms (goal <= 300 ms: "
                  f"{'met' if rest <= 0.3 else 'NOT met'})")

            # Evidence from the board's side: the staged files themselves.
            models = root / "board-home" / "models"
            before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size)
                      for p in models.iterdir()}
            sweep(root, cache)
            after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size)
                     for p in models.iterdir()}
            changed = [name for name in after if before.get(name) != after[name]]
            sent = sum(after[name][2] for name in changed)
            print(f"second run: {len(before)} model(s) staged by the first run "
                  f"({sum(v[2] for v in before.values())} bytes); rewritten or new on the "
                  f"board after the second: {len(changed)} ({sent} bytes) (goal: no model bytes "
                  f"re-sent: {'met' if not changed else 'NOT met'})")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
