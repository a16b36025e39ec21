"""The local machine as a device: files are copied, commands are subprocesses."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import subprocess
import time
from pathlib import Path

from bench.transports.base import CommandResult, RemoteError, TransportError, posix_lock_dir


class LocalTransport:
    def __init__(self) -> None:
        self._running: subprocess.Popen | None = None
        self.lock_dir = posix_lock_dir()

    def identity(self) -> str:
        """This machine's machine-id, else its hostname (as any POSIX device answers)."""
        try:
            text = Path("/etc/machine-id").read_text().strip()
        except OSError:
            text = ""
        return text or platform.node()

    def push(self, local: Path, remote: str) -> None:
        target = Path(remote)
        partial = target.with_name(target.name + ".partial")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, partial)
            os.replace(partial, target)
        except OSError as exc:  # full disk, no permission: an answer, not a dropped link
            with contextlib.suppress(OSError):
                partial.unlink()
            raise RemoteError(f"cannot write {remote} ({exc.strerror or exc}); is the disk "
                              "full or the work_dir not writable?") from None

    def pull(self, remote: str, local: Path) -> None:
        try:
            shutil.copyfile(remote, local)
        except FileNotFoundError:
            raise RemoteError(f"no such file on the device: {remote}") from None

    def exists(self, remote: str) -> bool:
        return Path(remote).is_file()

    def run(self, argv: list[str], timeout: float) -> CommandResult:
        """Run in a new session so a timeout can kill the command and all its children."""
        started = time.perf_counter()
        try:
            process = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                errors="replace", start_new_session=True, stdin=subprocess.DEVNULL)
        except OSError as exc:
            raise TransportError(f"cannot start {argv[0]}: {exc}") from None
        self._running = process
        try:
            stdout, stderr = process.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            kill_group(process)
            stdout, stderr = process.communicate()
            timed_out = True
        finally:
            if process.poll() is None:  # interrupted (Ctrl-C) while waiting
                kill_group(process)
            self._running = None
        return CommandResult(None if timed_out else process.returncode, stdout, stderr,
                             time.perf_counter() - started, timed_out)

    def close(self) -> None:
        if self._running is not None:
            kill_group(self._running)


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the process group the command leads, then reap the leader."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
