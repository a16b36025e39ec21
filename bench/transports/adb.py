"""A phone over ADB, straight to its adbd over TCP with adb-shell: no adb server needed.

The phone must be in `adb tcpip` mode (or on Android 11+ wireless debugging reached by
its port). The harness authenticates with an RSA key (`key_file`, default
~/.android/adbkey, generated if absent, the same key the adb client uses); the first
connection from a new key needs the on-phone "Allow USB debugging?" confirmation, which
is waited for `auth_timeout_s`. TCP_NODELAY is set on the socket: ADB sends many small
packets, and Nagle's algorithm would hold each for tens of milliseconds.

adb-shell's timeouts and socket errors mean a dropped or stalled link (retried with
backoff); a FAIL from the sync service or a refusal in a command's output is the phone
saying no (never retried). Commands run in their own session with their pid recorded
(`adb_common`), so a timeout or Ctrl-C kills them on the phone.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from pathlib import Path

from bench.transports import adb_common
from bench.transports.adb_common import ADBSettings
from bench.transports.base import CommandResult, RemoteError, TransportError
from bench.transports.retry import retrying


class AuthRefused(RemoteError):
    """The phone did not accept the harness's key: a person has to act, not a retry."""


def tcp_device(host: str, port: int, timeout_s: float):
    """An adb-shell device over a TCP transport that says when the phone hangs up (adb-shell
    reads a closed socket as "no data yet" until its read timeout: minutes for a long
    round) and sets TCP_NODELAY (ADB's many small packets would each wait for Nagle)."""
    from adb_shell.adb_device import AdbDevice
    from adb_shell.transport.tcp_transport import TcpTransport

    class Transport(TcpTransport):
        def connect(self, transport_timeout_s):
            super().connect(transport_timeout_s)
            with contextlib.suppress(OSError):
                self._connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def bulk_read(self, numbytes, transport_timeout_s):
            data = super().bulk_read(numbytes, transport_timeout_s)
            if not data:
                raise ConnectionResetError(f"{host}:{port} closed the connection")
            return data

    return AdbDevice(Transport(host, port), default_transport_timeout_s=timeout_s)


def signer(key_file: str):
    """adb-shell's RSA signer for the key, generating the key pair when it is absent."""
    from adb_shell.auth.keygen import keygen
    from adb_shell.auth.sign_pythonrsa import PythonRSASigner

    private = Path(os.path.expanduser(key_file))
    if not private.is_file():
        private.parent.mkdir(parents=True, exist_ok=True)
        keygen(str(private))
    public = Path(str(private) + ".pub")
    return PythonRSASigner(public.read_text() if public.is_file() else "", private.read_text())


class AdbShellTransport:
    def __init__(self, settings: ADBSettings, device_file: str = "the device file"):
        self.settings = settings
        self.device_file = device_file
        self.lock_dir = adb_common.lock_dir()
        self._device = None
        self._guard = threading.Lock()  # adb-shell's connection is not thread-safe
        self._closing = False
        self._active_pidfile: str | None = None

    # connection
    def _connect(self):
        from adb_shell.exceptions import DeviceAuthError

        if self._device is not None and self._device.available:
            return self._device
        self._drop()
        settings = self.settings
        device = tcp_device(settings.host, settings.port, settings.connect_timeout_s)
        asked: list[bool] = []  # adb-shell calls back when the phone must confirm the key
        try:
            device.connect(rsa_keys=[signer(settings.key_file)],
                           auth_timeout_s=settings.auth_timeout_s,
                           auth_callback=lambda _device: asked.append(True))
        except DeviceAuthError as exc:
            raise AuthRefused(self._auth_advice(exc)) from None
        except Exception as exc:
            with contextlib.suppress(Exception):
                device.close()
            if asked or _looks_like_auth(exc):  # the phone answered, its user did not
                raise AuthRefused(self._auth_advice(exc)) from None
            raise TransportError(f"cannot reach {settings.target}: {_describe(exc)}") from None
        self._device = device
        return device

    def _auth_advice(self, exc: BaseException) -> str:
        key = os.path.expanduser(self.settings.key_file)
        return (f"{self.settings.target} did not accept bench's ADB key within "
                f"{self.settings.auth_timeout_s:g} s ({_describe(exc)}): unlock the phone and "
                f"tap Allow on \"Allow USB debugging?\" (tick \"Always allow\"), then run "
                f"again; the key is {key}.pub (auth_timeout_s in {self.device_file})")

    def _drop(self) -> None:
        if self._device is not None:
            with contextlib.suppress(Exception):
                self._device.close()
        self._device = None

    def _retrying(self, action, what: str):
        from adb_shell.exceptions import (
            AdbConnectionError,
            AdbTimeoutError,
            InvalidChecksumError,
            InvalidCommandError,
            InvalidResponseError,
            TcpTimeoutException,
        )

        self._closing = False

        def locked():
            with self._guard:
                return action()

        return retrying(locked, what, self.settings.target, self._drop,
                        (AdbConnectionError, AdbTimeoutError, TcpTimeoutException,
                         InvalidChecksumError, InvalidCommandError, InvalidResponseError,
                         OSError, EOFError, TimeoutError),
                        closing=lambda: self._closing)

    # the transport interface
    def run(self, argv: list[str], timeout: float) -> CommandResult:
        return self._retrying(lambda: self._run_once(argv, timeout), f"running {argv[0]}")

    def _run_once(self, argv: list[str], timeout: float) -> CommandResult:
        from adb_shell.exceptions import AdbTimeoutError, TcpTimeoutException

        pidfile = adb_common.new_pidfile()
        started = time.perf_counter()
        device = self._connect()
        self._active_pidfile = pidfile
        try:
            output = device.shell(adb_common.wrap(argv, pidfile), timeout_s=timeout,
                                  read_timeout_s=max(timeout, 10.0),
                                  transport_timeout_s=max(timeout, 10.0), decode=False)
        except (AdbTimeoutError, TcpTimeoutException):
            self._kill(pidfile)
            elapsed = time.perf_counter() - started
            if elapsed < timeout * 0.9:
                raise  # a stalled link, not a slow command: retried
            return CommandResult(None, "", "", elapsed, timed_out=True)
        except BaseException:
            self._kill(pidfile)
            raise
        finally:
            self._active_pidfile = None
        # `shell:` runs on a pseudo-terminal, which turns every \n into \r\n
        text, code = adb_common.split_exit(output.decode(errors="replace").replace("\r\n", "\n"))
        if code is None:
            raise EOFError("the command's stream ended before it did (connection lost)")
        return CommandResult(code, text, "", time.perf_counter() - started)

    def _kill(self, pidfile: str | None) -> None:
        """Kill the command's process group on the phone, over a connection of its own
        (the one running it may be stuck or in use by another thread)."""
        if pidfile is None:
            return
        settings = self.settings
        killer = tcp_device(settings.host, settings.port, settings.connect_timeout_s)
        try:
            killer.connect(rsa_keys=[signer(settings.key_file)], auth_timeout_s=5)
            killer.shell(adb_common.kill_line(pidfile), timeout_s=15)
        except Exception:
            pass  # best effort: the phone may be gone
        finally:
            with contextlib.suppress(Exception):
                killer.close()
        self._drop()

    def push(self, local: Path, remote: str) -> None:
        def action():
            device = self._connect()
            partial = remote + ".partial"
            parent = remote.rsplit("/", 1)[0] or "/"
            self._check(device.shell(adb_common.wrap(["mkdir", "-p", parent],
                                                     adb_common.new_pidfile())), remote)
            try:
                device.push(str(local), partial)
            except Exception as exc:
                problem = adb_common.refusal(str(exc))
                if problem is None and not _is_sync_failure(exc):
                    raise
                raise RemoteError(f"cannot write {remote} on {self.settings.target} "
                                  f"({problem or _describe(exc)}); is its disk full? free "
                                  "space in its work_dir") from None
            self._check(device.shell(adb_common.wrap(["mv", "-f", partial, remote],
                                                     adb_common.new_pidfile())), remote)

        self._retrying(action, f"copying {local.name}")

    def _check(self, output: str, remote: str) -> None:
        text, code = adb_common.split_exit(output)
        if code is None:
            raise EOFError("connection lost while staging")
        if code != 0:
            raise RemoteError(f"cannot write {remote} on {self.settings.target}: "
                              f"{text.strip() or f'exit code {code}'}")

    def pull(self, remote: str, local: Path) -> None:
        def action():
            try:
                self._connect().pull(remote, str(local))
            except Exception as exc:
                if _is_sync_failure(exc):
                    raise RemoteError(f"no such file on the device: {remote} "
                                      f"({_describe(exc)})") from None
                raise

        self._retrying(action, f"fetching {remote}")

    def exists(self, remote: str) -> bool:
        def action():
            mode, _, _ = self._connect().stat(remote)
            return mode != 0  # sync STAT answers zeros for a missing file

        return self._retrying(action, f"checking {remote}")

    def identity(self) -> str:
        return adb_common.phone_serial(self, self.settings.target)

    def close(self) -> None:
        """Kill what is running on the phone (from any thread) and drop the connection."""
        self._closing = True
        self._kill(self._active_pidfile)
        self._drop()


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _looks_like_auth(exc: BaseException) -> bool:
    return "auth" in type(exc).__name__.lower() or "auth" in str(exc).lower()


def _is_sync_failure(exc: BaseException) -> bool:
    from adb_shell.exceptions import AdbCommandFailureException, PushFailedError

    return isinstance(exc, AdbCommandFailureException | PushFailedError)
