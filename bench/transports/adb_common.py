"""What both ADB transports share: settings, the command line, exit codes, killing.

A phone's shell gives no reliable exit code (adb-shell's `shell:` service returns none;
an old adbd's neither), and a command whose stream is closed keeps running on the phone.
So every command runs as

    setsid sh -c 'echo $$ > PIDFILE; exec "$@"' sh ARG...; rc=$?; rm -f PIDFILE;
    echo; echo BENCH-EXIT:$rc

in its own session with its pid recorded, every argument quoted; the exit code comes
back as a marker line, and a timed-out or interrupted command is killed on the phone
with its whole process group (`kill -9 -PID`) before anything is retried.
"""

from __future__ import annotations

import shlex
import uuid
from dataclasses import dataclass

PHONE_TMP = "/data/local/tmp"
PIDS_DIR = f"{PHONE_TMP}/.bench-pids"
EXIT_MARKER = "BENCH-EXIT:"
CLIENTS = ("adb-shell", "adb")

# What a phone's shell says when it refuses rather than when the link fails.
REFUSALS = ("No space left on device", "Permission denied", "No such file or directory",
            "Read-only file system", "not found")


@dataclass(frozen=True)
class ADBSettings:
    client: str = "adb-shell"  # adb-shell (TCP to adbd, no server) | adb (the system client)
    host: str | None = None  # adb-shell: the phone's address, in `adb tcpip` mode
    port: int = 5555
    serial: str | None = None  # adb: the serial `adb devices` shows (host:port for Wi-Fi)
    adb: str = "adb"  # adb: the client binary
    server_host: str | None = None  # adb: another lab host's adb server (adb -H)
    server_port: int | None = None  # adb: its port (adb -P)
    key_file: str = "~/.android/adbkey"  # adb-shell: private key, generated if absent
    auth_timeout_s: float = 30.0  # the on-phone "Allow USB debugging?" confirmation
    connect_timeout_s: float = 10.0

    @property
    def target(self) -> str:
        if self.client == "adb-shell":
            return f"{self.host}:{self.port}"
        server = ""
        if self.server_host or self.server_port:
            server = f" via the adb server at {self.server_host or 'localhost'}:" \
                     f"{self.server_port or 5037}"
        return f"{self.serial}{server}"


def lock_dir() -> str:
    """A phone's machine lock lives in /data/local/tmp, the one place every shell user can
    write. (BENCH_LOCK_DIR names a place on Linux hosts; a phone is never one of those.)"""
    return PHONE_TMP


def new_pidfile() -> str:
    return f"{PIDS_DIR}/{uuid.uuid4().hex[:16]}"


def wrap(argv: list[str], pidfile: str) -> str:
    """The shell line that runs argv in its own session, pid recorded, exit code echoed."""
    inner = 'echo $$ > "$0"; exec "$@"'
    return (f"mkdir -p {PIDS_DIR} && setsid sh -c {shlex.quote(inner)} {shlex.quote(pidfile)} "
            f"{shlex.join(argv)}; rc=$?; rm -f {shlex.quote(pidfile)}; echo; "
            f"echo {EXIT_MARKER}$rc")


def kill_line(pidfile: str) -> str:
    """Kill the recorded process group (and the file); harmless when it already ended."""
    path = shlex.quote(pidfile)
    return (f'if [ -f {path} ]; then kill -9 -"$(cat {path})" 2>/dev/null; '
            f'kill -9 "$(cat {path})" 2>/dev/null; rm -f {path}; fi; true')


def split_exit(output: str) -> tuple[str, int | None]:
    """The command's own output and its exit code (None when the marker never came)."""
    head, marker, tail = output.rpartition(EXIT_MARKER)
    if not marker:
        return output, None
    try:
        code = int(tail.strip().splitlines()[0])
    except (ValueError, IndexError):
        return output, None
    for ending in ("\r\n", "\n"):  # the newline echoed before the marker (a PTY adds \r)
        if head.endswith(ending):
            return head[: -len(ending)], code
    return head, code


def phone_serial(transport, target: str) -> str:
    """The phone behind a transport: `ro.serialno` (every phone answers `localhost` to
    `hostname`, so that would make them all one machine)."""
    from bench.transports.base import TransportError

    result = transport.run(["getprop", "ro.serialno"], timeout=30)
    serial = result.stdout.strip()
    if result.returncode != 0 or not serial:
        raise TransportError(f"{target} did not tell its serial number "
                             f"(getprop ro.serialno: {result.tail(2) or 'empty'})")
    return serial


def refusal(text: str) -> str | None:
    """The phone's own words when it refused (disk full, no permission, missing file)."""
    for line in text.splitlines():
        if any(word in line for word in REFUSALS):
            return line.strip()
    return None
