"""A real OpenSSH server for tests: `sshd -D -e -f <own config>` on a loopback port.

Host and client keys are generated per server; the client key is authorised for the
current user. Debian's openssh-server provides /usr/sbin/sshd (`make test` installs it).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import subprocess
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"

CONFIG = """\
Port {port}
ListenAddress {address}
HostKey {root}/host_ed25519
PidFile {root}/sshd.pid
AuthorizedKeysFile {root}/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp -l VERBOSE
LogLevel VERBOSE
MaxStartups 50
# The login shell reads ~/.bashrc for ssh commands (Debian's bash); a real board's shell
# files are its own business, but this machine's (pyenv's rehash lock) must not leak into
# the tests: sessions get an empty home of their own.
SetEnv HOME={root}/home
"""


class NetworkNamespace:
    """A test host of our own: a network namespace joined to this one by a veth pair.

    The board side gets 10.213.N.2, this side 10.213.N.1 (addresses that exist only
    inside this machine, between namespaces the tests create and delete)."""

    def __init__(self, index: int):
        tag = f"{os.getpid() % 100000}{index}"
        self.name = f"benchb{tag}"
        self.host_if, self.board_if = f"bh{tag}", f"bb{tag}"
        self.host_address = f"10.213.{index}.1"
        self.board_address = f"10.213.{index}.2"

    def create(self) -> NetworkNamespace:
        def ip(*args: str, inside: bool = False) -> None:
            prefix = ["ip", "netns", "exec", self.name] if inside else []
            subprocess.run([*prefix, "ip", *args], check=True, capture_output=True)

        ip("netns", "add", self.name)
        ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.board_if)
        ip("link", "set", self.board_if, "netns", self.name)
        ip("addr", "add", f"{self.host_address}/24", "dev", self.host_if)
        ip("link", "set", self.host_if, "up")
        ip("addr", "add", f"{self.board_address}/24", "dev", self.board_if, inside=True)
        ip("link", "set", self.board_if, "up", inside=True)
        ip("link", "set", "lo", "up", inside=True)
        return self

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat[stat.rfind(")") + 2:].split()[1])
            children.setdefault(parent, []).append(int(entry))
    found, queue = [], [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                   check=True)


class SSHServer:
    """`machine_id`: run sshd in its own mount namespace with that /etc/machine-id and a
    place of its own for the machine lock (a real board has its own /tmp), so the board is
    another machine to the harness (needs root and unshare)."""

    def __init__(self, root: Path, machine_id: str | None = None,
                 netns: NetworkNamespace | None = None):
        self.root = root
        self.machine_id = machine_id
        self.netns = netns
        self.address = netns.board_address if netns else "127.0.0.1"
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.user = getpass.getuser()
        keygen(root / "host_ed25519")
        keygen(root / "client_ed25519")
        (root / "authorized_keys").write_text((root / "client_ed25519.pub").read_text())
        (root / "sshd_config").write_text(CONFIG.format(port=self.port, root=root,
                                                        address=self.address))
        (root / "home").mkdir()
        self.log = root / "sshd.log"
        self.process: subprocess.Popen | None = None

    @property
    def client_key(self) -> Path:
        return self.root / "client_ed25519"

    def known_hosts_line(self) -> str:
        kind, key = (self.root / "host_ed25519.pub").read_text().split()[:2]
        return f"[{self.address}]:{self.port} {kind} {key}\n"

    def start(self) -> SSHServer:
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
        command = [SSHD, "-D", "-e", "-f", str(self.root / "sshd_config")]
        if self.machine_id:
            identity = self.root / "machine-id"
            identity.write_text(self.machine_id + "\n")
            lock_dir = Path(os.environ.get("BENCH_LOCK_DIR") or "/tmp")
            own_tmp = self.root / "tmp"
            for directory in (lock_dir, own_tmp):
                directory.mkdir(parents=True, exist_ok=True)
            command = ["unshare", "-m", "sh", "-c",
                       f"mount --bind {identity} /etc/machine-id && "
                       f"mount --bind {own_tmp} {lock_dir} && exec \"$@\"", "sh", *command]
        if self.netns:
            command = ["ip", "netns", "exec", self.netns.name, *command]
        with open(self.log, "ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection((self.address, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not start listening")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def kill_all(self) -> None:
        """The listener and every connection it serves: the board drops off the network.

        Connection handlers rename themselves ("sshd: user@notty"), so they are found as
        the listener's descendants, not by name."""
        if self.process is None:
            return
        doomed = descendants(self.process.pid)
        self.stop()
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)

    def device_toml(self, known_hosts: Path, python: str, **extra: str) -> str:
        lines = ['transport = "ssh"', 'runner = "python"', f'python = "{python}"']
        lines += [f"{k} = {v}" for k, v in extra.items() if not k.startswith("ssh_")]
        lines += ["[ssh]", f'host = "{self.address}"', f"port = {self.port}",
                  f'user = "{self.user}"', f'key_file = "{self.client_key}"', "agent = false",
                  f'known_hosts = "{known_hosts}"']
        lines += [f"{k[4:]} = {v}" for k, v in extra.items() if k.startswith("ssh_")]
        return "\n".join(lines) + "\n"


def drop_connections(server: SSHServer) -> int:
    """Kill the server's connection handlers but keep it listening: a board that drops
    off and is back at once (a network blip, a quick reboot)."""
    assert server.process is not None
    doomed = descendants(server.process.pid)
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    return len(doomed)
