"""A Linux board over SSH (paramiko): commands over exec channels, files over SFTP.

Security: the server's host key is checked against known_hosts; an unknown key is
refused with the command that would trust it, unless the device file asks for trust on
first use (then the key is recorded). Every argument that reaches the remote shell is
quoted with shlex.

A remote command runs as the leader of its own session (`setsid`), and reports its
process-group id first, so a timeout or Ctrl-C kills the runner and everything it
started on the board, not only the SSH channel.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bench.transports.base import CommandResult, RemoteError, TransportError, posix_lock_dir
from bench.transports.posix import machine_identity
from bench.transports.retry import retrying

PGID_PREFIX = "BENCH-PGID "

# paramiko logs its own failures (with tracebacks) through `logging`; with no handler
# configured, Python would print them to stderr next to our one-line message.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class HostKeyRefused(RemoteError):
    """The server's key is unknown or changed: a security refusal, never retried."""



@dataclass(frozen=True)
class SSHSettings:
    host: str
    port: int = 22
    user: str | None = None
    key_file: str | None = None
    agent: bool = True
    known_hosts: str = "~/.ssh/known_hosts"
    trust_on_first_use: bool = False
    jump_host: str | None = None  # [user@]host[:port], same keys and known_hosts
    connect_timeout_s: float = 15.0

    @property
    def target(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"


def parse_jump(text: str, defaults: SSHSettings) -> SSHSettings:
    user, _, rest = text.rpartition("@")
    host, _, port = rest.partition(":")
    return SSHSettings(host=host, port=int(port or 22), user=user or defaults.user,
                       key_file=defaults.key_file, agent=defaults.agent,
                       known_hosts=defaults.known_hosts,
                       trust_on_first_use=defaults.trust_on_first_use,
                       connect_timeout_s=defaults.connect_timeout_s)


def remote_command(argv: list[str]) -> str:
    """Quote argv for the remote shell; run it as its own session, reporting its pgid."""
    inner = f'echo "{PGID_PREFIX}$$"; exec "$@"'
    # setsid must not lead a process group, or it forks and returns at once: so it runs as
    # a child of the login shell, and `; exit $?` stops the shell from exec'ing it.
    return "setsid sh -c " + shlex.quote(inner) + " sh " + shlex.join(argv) + "; exit $?"


class SSHTransport:
    def __init__(self, settings: SSHSettings, device_file: str = "the device file"):
        self.settings = settings
        self.device_file = device_file
        self.lock_dir = posix_lock_dir()
        self._closing = False  # set by close(): a dropped link is then not retried
        self._active_pgid: int | None = None
        self._client = None
        self._jump = None
        self._sftp = None

    # connection
    def _connect_client(self, settings: SSHSettings, sock=None):
        import paramiko

        client = paramiko.SSHClient()
        known = Path(os.path.expanduser(settings.known_hosts))
        if known.is_file():
            client.load_host_keys(str(known))
        if settings.trust_on_first_use:
            known.parent.mkdir(parents=True, exist_ok=True)
            known.touch(exist_ok=True)
            client.load_host_keys(str(known))  # new keys are saved back to this file
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        else:
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                settings.host, port=settings.port, username=settings.user,
                key_filename=os.path.expanduser(settings.key_file) if settings.key_file else None,
                allow_agent=settings.agent, look_for_keys=settings.key_file is None,
                timeout=settings.connect_timeout_s, banner_timeout=settings.connect_timeout_s,
                auth_timeout=settings.connect_timeout_s, sock=sock)
        except paramiko.BadHostKeyException:
            raise HostKeyRefused(
                f"host key of {settings.target} does NOT match {known}: the board was "
                "reinstalled or someone is in the middle; verify it, then remove the old "
                f"line with `ssh-keygen -R '[{settings.host}]:{settings.port}' -f {known}`"
            ) from None
        except paramiko.SSHException as exc:
            if "not found in known_hosts" in str(exc):
                raise HostKeyRefused(
                    f"unknown host key for {settings.target} (not in {known}); check it and "
                    f"trust it with `ssh-keyscan -p {settings.port} {settings.host} >> {known}`, "
                    f"or set trust_on_first_use = true under [ssh] in {self.device_file}"
                ) from None
            transport = client.get_transport()
            silent = transport is not None and not transport.remote_version
            if "banner" in str(exc).lower() or silent:
                raise TransportError(
                    f"{settings.target} accepted the connection but sent no SSH banner within "
                    f"{settings.connect_timeout_s:g} s: is an SSH server answering on that "
                    f"port, and is the board responsive? (connect_timeout_s in "
                    f"{self.device_file})") from None
            raise TransportError(f"ssh to {settings.target} failed: {exc}") from None
        except (OSError, EOFError) as exc:
            raise TransportError(f"cannot reach {settings.target}: {exc}") from None
        if settings.trust_on_first_use:
            client.save_host_keys(str(known))
        return client

    def connect(self):
        if self._client is not None and self._client.get_transport() is not None \
                and self._client.get_transport().is_active():
            return self._client
        self._drop()
        sock = None
        if self.settings.jump_host:
            self._jump = self._connect_client(parse_jump(self.settings.jump_host, self.settings))
            try:
                sock = self._jump.get_transport().open_channel(
                    "direct-tcpip", (self.settings.host, self.settings.port), ("127.0.0.1", 0))
            except Exception as exc:
                raise TransportError(f"jump host {self.settings.jump_host} cannot reach "
                                     f"{self.settings.target}: {exc}") from None
        self._client = self._connect_client(self.settings, sock)
        return self._client

    def _drop(self) -> None:
        for thing in (self._sftp, self._client, self._jump):
            if thing is not None:
                with contextlib.suppress(Exception):
                    thing.close()
        self._sftp = self._client = self._jump = None

    def _retrying(self, action, what: str):
        """Run `action`, reconnecting with backoff when the connection drops."""
        import paramiko

        self._closing = False  # a new operation after a close() may reconnect
        return retrying(action, what, self.settings.target, self._drop,
                        (TimeoutError, OSError, EOFError, paramiko.SSHException),
                        closing=lambda: self._closing)

    def _sftp_client(self):
        if self._sftp is None:
            self._sftp = self.connect().open_sftp()
        return self._sftp

    # the transport interface
    def push(self, local: Path, remote: str) -> None:
        def action():
            sftp = self._sftp_client()
            self._mkdirs(sftp, str(PurePosixPath(remote).parent))
            partial = remote + ".partial"
            try:
                sftp.put(str(local), partial)
            except OSError as exc:
                if not self._client.get_transport().is_active():
                    raise  # the connection dropped: retried
                with contextlib.suppress(OSError):
                    sftp.remove(partial)
                raise RemoteError(f"cannot write {remote} on {self.settings.target} ({exc}); "
                                  f"is its disk full? free space in its work_dir") from None
            sftp.posix_rename(partial, remote)

        self._retrying(action, f"copying {local.name}")

    def _mkdirs(self, sftp, directory: str) -> None:
        path = PurePosixPath(directory)
        for parent in reversed([path, *path.parents]):
            if str(parent) in ("/", "."):
                continue
            try:
                sftp.stat(str(parent))
            except FileNotFoundError:
                sftp.mkdir(str(parent))

    def pull(self, remote: str, local: Path) -> None:
        def action():
            try:
                self._sftp_client().get(remote, str(local))
            except FileNotFoundError:  # an answer, not a dropped link: never retried
                raise RemoteError(f"no such file on the device: {remote}") from None

        self._retrying(action, f"fetching {remote}")

    def exists(self, remote: str) -> bool:
        def action():
            try:
                self._sftp_client().stat(remote)
                return True
            except FileNotFoundError:
                return False

        return self._retrying(action, f"checking {remote}")

    def run(self, argv: list[str], timeout: float) -> CommandResult:
        return self._retrying(lambda: self._run_once(argv, timeout), f"running {argv[0]}")

    def _run_once(self, argv: list[str], timeout: float) -> CommandResult:
        started = time.perf_counter()
        channel = self.connect().get_transport().open_session()
        channel.exec_command(remote_command(argv))
        stdout, stderr, pgid = bytearray(), bytearray(), None
        deadline = started + timeout
        timed_out = False
        try:
            while True:
                while channel.recv_ready():
                    stdout += channel.recv(65536)
                while channel.recv_stderr_ready():
                    stderr += channel.recv_stderr(65536)
                if pgid is None:
                    pgid = self._active_pgid = _pgid(stdout)
                if channel.exit_status_ready() and not channel.recv_ready() \
                        and not channel.recv_stderr_ready():
                    break
                if time.perf_counter() > deadline:
                    timed_out = True
                    break
                if channel.closed and not channel.exit_status_ready():
                    raise EOFError("connection lost while the command ran")
                time.sleep(0.01)
        except BaseException:
            self._kill(pgid)
            channel.close()
            raise
        finally:
            self._active_pgid = None
        if timed_out:
            self._kill(pgid)
            channel.close()
        code = None if timed_out else channel.recv_exit_status()
        if code == -1 and not channel.get_transport().is_active():
            raise EOFError("connection lost while the command ran")
        text = stdout.decode(errors="replace")
        if pgid is not None:
            text = text.split("\n", 1)[1] if "\n" in text else ""
        return CommandResult(code, text, stderr.decode(errors="replace"),
                             time.perf_counter() - started, timed_out)

    def _kill(self, pgid: int | None) -> None:
        """SIGKILL the remote process group (best effort: the link may be gone)."""
        if pgid is None:
            return
        try:
            channel = self.connect().get_transport().open_session()
            channel.exec_command(f"kill -KILL -- -{int(pgid)}")
            channel.recv_exit_status()
            channel.close()
        except Exception:
            pass

    def identity(self) -> str:
        return machine_identity(self)

    def close(self) -> None:
        """Kill what is running on the board (from any thread) and drop the connection; a
        later call reconnects."""
        self._closing = True
        self._kill(self._active_pgid)
        self._drop()


def _pgid(stdout: bytearray) -> int | None:
    if b"\n" not in stdout:
        return None
    first = stdout.split(b"\n", 1)[0].decode(errors="replace")
    if first.startswith(PGID_PREFIX):
        try:
            return int(first[len(PGID_PREFIX):])
        except ValueError:
            return None
    return None
