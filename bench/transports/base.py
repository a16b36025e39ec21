"""The transport interface: the only way measurement code reaches a device.

Push files, run a command with a timeout, pull files, say which machine is behind it,
close. The measurement code never knows whether the device is this machine, a board
over SSH or a phone over ADB; each transport maps these verbs onto its own channel.

Two kinds of failure: `TransportError`, the link dropped (transports retry those with
backoff before giving up), and `RemoteError`, the device answered and said no (disk
full, no such file, host key refused), which is never retried.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class CommandResult:
    returncode: int | None  # None when the command was killed on timeout
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False

    def tail(self, lines: int = 5) -> str:
        text = (self.stderr or self.stdout).strip().splitlines()
        return " | ".join(line.strip() for line in text[-lines:])


LOCK_DIR_ENV = "BENCH_LOCK_DIR"


def posix_lock_dir() -> str:
    """Where a Linux host's machine lock lives: /tmp, unless the harness's environment
    names another place (the test suite does, to stay clear of a user's runs)."""
    return os.environ.get(LOCK_DIR_ENV) or "/tmp"


class TransportError(Exception):
    """The device could not be reached or did not do what was asked."""


class RemoteError(TransportError):
    """The device answered but refused (disk full, permission denied): retrying is useless."""


class Transport(Protocol):
    # Where the machine-level lock lives on this kind of device (one place per machine,
    # whatever device file or work directory reaches it).
    lock_dir: str

    def push(self, local: Path, remote: str) -> None:
        """Copy a local file to `remote` (a path on the device)."""

    def pull(self, remote: str, local: Path) -> None:
        """Copy a device file to `local`; TransportError when it does not exist."""

    def run(self, argv: list[str], timeout: float) -> CommandResult:
        """Run argv on the device; on timeout kill the whole process group."""

    def exists(self, remote: str) -> bool:
        """Whether the device already holds `remote` (used to skip staging)."""

    def identity(self) -> str:
        """The machine behind the device (machine-id, else hostname; a phone's serial)."""

    def close(self) -> None:
        """Release connections; killing anything still running."""
