"""A phone through the system `adb` client: USB phones, wireless debugging, lab hosts.

Use this transport when an adb server already holds the phone: a USB cable (`adb
devices` lists it by serial), Android 11+ wireless debugging paired with a current adb
(`adb pair` needs platform-tools 30 or later; Debian's adb 29 lacks it), or a phone on
another lab host whose adb server is reached with `adb -H host -P port`
(`server_host`, `server_port`). Every call is `adb [-H h] [-P p] -s SERIAL …`.

The client's own words decide what a failure is: "unauthorized" (a person must tap
Allow on the phone), "No space left on device", "No such file" are answers, never
retried; "offline", "not found", "no devices" are a dropped link, retried with backoff
after `adb connect` for network serials. Commands run in their own session on the phone
with their pid recorded (`adb_common`): a timeout or Ctrl-C kills the local client and
the command's process group on the phone.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

from bench.transports import adb_common
from bench.transports.adb_common import ADBSettings
from bench.transports.base import CommandResult, RemoteError, TransportError
from bench.transports.local import LocalTransport
from bench.transports.retry import retrying

LINK_TROUBLE = ("offline", "not found", "no devices", "closed", "connection reset",
                "cannot connect", "failed to connect", "protocol fault", "no route",
                "connection refused")


class Unauthorised(RemoteError):
    """The phone has not accepted this computer's key."""


class LinkDropped(TransportError):
    pass


class AdbClientTransport:
    def __init__(self, settings: ADBSettings, device_file: str = "the device file"):
        self.settings = settings
        self.device_file = device_file
        self.lock_dir = adb_common.lock_dir()
        self._local = LocalTransport()  # runs the adb client here
        self._active_pidfile: str | None = None
        self._closing = False
        self._guard = threading.Lock()

    def _base(self) -> list[str]:
        base = [self.settings.adb]
        if self.settings.server_host:
            base += ["-H", self.settings.server_host]
        if self.settings.server_port:
            base += ["-P", str(self.settings.server_port)]
        return base

    def _adb(self, args: list[str], timeout: float, device: bool = True) -> CommandResult:
        """One adb client call, run like any local command: a timeout or close() kills the
        client and its children."""
        argv = self._base() + (["-s", str(self.settings.serial)] if device else []) + args
        try:
            return self._local.run(argv, timeout=timeout)
        except TransportError as exc:  # the client itself could not start
            raise RemoteError(f"{exc}; install adb or set `adb` under [adb] in "
                              f"{self.device_file}") from None

    def _judge(self, result: CommandResult, what: str) -> None:
        """Raise for the client's own failures: refusals as answers, the rest as the link."""
        if result.returncode == 0 or result.timed_out:
            return
        words = (result.stderr + result.stdout).strip()
        lower = words.lower()
        if "unauthorized" in lower:
            raise Unauthorised(
                f"{self.settings.target} has not authorised this computer: unlock the phone "
                "and tap Allow on \"Allow USB debugging?\" (tick \"Always allow\"), then run "
                "again")
        if any(word in lower for word in LINK_TROUBLE):
            raise LinkDropped(f"{what}: {words.splitlines()[-1] if words else 'no answer'}")
        problem = adb_common.refusal(words)
        if problem:
            raise RemoteError(f"{what} on {self.settings.target}: {problem}")
        raise LinkDropped(f"{what}: adb exited with {result.returncode}: "
                          f"{words.splitlines()[-1] if words else 'no output'}")

    def _reconnect(self) -> None:
        """For a network serial, ask the adb server to connect again (a dropped Wi-Fi)."""
        serial = str(self.settings.serial or "")
        if ":" in serial:
            with contextlib.suppress(TransportError, RemoteError):
                self._adb(["connect", serial], timeout=self.settings.connect_timeout_s,
                          device=False)

    def _retrying(self, action, what: str):
        self._closing = False

        def locked():
            with self._guard:
                return action()

        return retrying(locked, what, self.settings.target, self._reconnect, (OSError,),
                        closing=lambda: self._closing)

    # the transport interface
    def run(self, argv: list[str], timeout: float) -> CommandResult:
        return self._retrying(lambda: self._run_once(argv, timeout), f"running {argv[0]}")

    def _run_once(self, argv: list[str], timeout: float) -> CommandResult:
        pidfile = adb_common.new_pidfile()
        self._active_pidfile = pidfile
        try:
            result = self._adb(["shell", adb_common.wrap(argv, pidfile)], timeout=timeout)
        except BaseException:
            self._kill(pidfile)
            raise
        finally:
            self._active_pidfile = None
        if result.timed_out:
            self._kill(pidfile)
            return result
        text, code = adb_common.split_exit(result.stdout)
        if code is None:
            self._judge(result, f"running {argv[0]}")
            raise LinkDropped("the command's output ended before it did (connection lost)")
        return CommandResult(code, text, result.stderr, result.seconds)

    def _kill(self, pidfile: str | None) -> None:
        if pidfile is None:
            return
        with contextlib.suppress(Exception):
            self._adb(["shell", adb_common.kill_line(pidfile)], timeout=15)

    def push(self, local: Path, remote: str) -> None:
        def action():
            partial = remote + ".partial"
            parent = remote.rsplit("/", 1)[0] or "/"
            made = self._run_once(["mkdir", "-p", parent], timeout=60)
            if made.returncode != 0:
                raise RemoteError(f"cannot create {parent} on {self.settings.target}: "
                                  f"{made.tail(2)}")
            result = self._adb(["push", str(local), partial], timeout=600)
            if result.returncode != 0:
                with contextlib.suppress(Exception):
                    self._run_once(["rm", "-f", partial], timeout=60)
                words = (result.stderr + result.stdout).strip()
                if adb_common.refusal(words):
                    raise RemoteError(f"cannot write {remote} on {self.settings.target} "
                                      f"({adb_common.refusal(words)}); is its disk full? free "
                                      "space in its work_dir")
                self._judge(result, f"copying {local.name}")
            moved = self._run_once(["mv", "-f", partial, remote], timeout=60)
            if moved.returncode != 0:
                raise RemoteError(f"cannot write {remote} on {self.settings.target}: "
                                  f"{moved.tail(2)}")

        self._retrying(action, f"copying {local.name}")

    def pull(self, remote: str, local: Path) -> None:
        def action():
            result = self._adb(["pull", remote, str(local)], timeout=600)
            if result.returncode != 0:
                words = (result.stderr + result.stdout).strip()
                if "no such file" in words.lower() or "does not exist" in words.lower():
                    raise RemoteError(f"no such file on the device: {remote}")
                self._judge(result, f"fetching {remote}")

        self._retrying(action, f"fetching {remote}")

    def exists(self, remote: str) -> bool:
        result = self.run(["sh", "-c", '[ -e "$1" ]', "sh", remote], timeout=60)
        return result.returncode == 0

    def identity(self) -> str:
        return adb_common.phone_serial(self, self.settings.target)

    def close(self) -> None:
        """Kill what runs on the phone and the local client (from any thread)."""
        self._closing = True
        self._local.close()
        self._kill(self._active_pidfile)
