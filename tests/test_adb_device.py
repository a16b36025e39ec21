"""The ADB device emulator (tests/adb_device.py) against real ADB clients.

What a phone would do is checked with the clients the project meets in the field: the
`adb-shell` Python package (version 0x01000000, byte-sum checksums, the `shell:` service)
and Debian's `adb` (29, version 0x01000001, shell protocol v2, stat_v2) run against an
adb server of its own. A few protocol points no client exposes (flow control, checksums,
refused services, the v2 sync requests) are checked with a minimal client written here.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.adb_device import (
    A_AUTH,
    A_CLSE,
    A_CNXN,
    A_OKAY,
    A_OPEN,
    A_VERSION,
    A_VERSION_MIN,
    A_WRTE,
    AUTH_TOKEN,
    HEADER,
    AdbDevice,
    AdbDeviceUnavailable,
    AdbPublicKey,
    check_environment,
    free_port,
    host_python_mounts,
)
from tests.conftest import IN_CI

try:
    from adb_shell import exceptions as adb_errors
    from adb_shell.adb_device import AdbDeviceTcp
    from adb_shell.auth.keygen import keygen
    from adb_shell.auth.sign_pythonrsa import PythonRSASigner
except ImportError:  # reported by the fixtures below
    AdbDeviceTcp = None  # type: ignore[assignment,misc]

TIMEOUTS = (adb_errors.TcpTimeoutException, adb_errors.AdbTimeoutError) if AdbDeviceTcp else ()


def _require(ok: bool, message: str) -> None:
    """Skip where something is missing locally; in CI a missing requirement is a failure."""
    if ok:
        return
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def sandbox_ok() -> None:
    try:
        check_environment()
    except AdbDeviceUnavailable as exc:
        _require(False, f"{exc} (CI runs the suite as root with util-linux)")


@pytest.fixture(scope="module")
def adb_shell_ok() -> None:
    _require(AdbDeviceTcp is not None,
             "the adb-shell package is missing; `make test` installs it")


@pytest.fixture(scope="module")
def adb_binary() -> str:
    path = shutil.which("adb")
    _require(path is not None, "Debian's adb client is missing; `make test` installs it "
             "(apt-get install adb)")
    return str(path)


@pytest.fixture(scope="module")
def key(tmp_path_factory, adb_shell_ok) -> Path:
    """An adb private key (adbkey) with its public half beside it (adbkey.pub)."""
    path = tmp_path_factory.mktemp("keys") / "adbkey"
    keygen(str(path))
    return path


@pytest.fixture
def device(tmp_path, sandbox_ok, key):
    with AdbDevice(tmp_path / "phone", authorized_keys=[Path(f"{key}.pub")],
                   props={"ro.serialno": "R5CT20TEST"}) as phone:
        yield phone


def _connect(device: AdbDevice, key: Path, auth_timeout_s: float = 2.0) -> AdbDeviceTcp:
    client = AdbDeviceTcp(device.host, device.port, default_transport_timeout_s=5)
    # adb-shell reads a closed socket as "no data yet" until read_timeout_s: keep it short.
    try:
        client.connect(rsa_keys=[PythonRSASigner.FromRSAKeyPath(str(key))],
                       auth_timeout_s=auth_timeout_s, read_timeout_s=3)
    except BaseException:
        client.close()
        raise
    return client


@pytest.fixture
def client(device, key):
    connection = _connect(device, key)
    yield connection
    connection.close()


def _cmdlines(device: AdbDevice) -> dict[int, str]:
    found = {}
    for pid in device.processes():
        with contextlib.suppress(OSError):
            found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return found


def _wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# --- adb-shell -------------------------------------------------------------------------


def test_adb_shell_authenticates_and_reads_properties(device, client):
    assert client.shell("getprop ro.serialno") == "R5CT20TEST\n"
    assert client.shell("getprop ro.product.model") == "BenchPhone\n"
    assert client.shell("getprop no.such.prop fallback") == "fallback\n"
    assert "[ro.product.cpu.abi]: [arm64-v8a]" in client.shell("getprop")
    assert any("signature verified" in line for line in device.log)
    # The phone's view: its own root, the host's tools, the environment adbd gives.
    assert client.shell("echo $PATH; echo $HOME; pwd") == (
        "/system/bin:/usr/bin:/bin\n/data/local/tmp\n/\n")
    listing = client.shell("ls /").split()
    assert {"data", "system", "proc", "sdcard"} <= set(listing)
    assert "work" not in listing  # the host's tree is not there


def test_adb_shell_v1_gives_no_exit_code_so_a_marker_carries_it(client):
    # shell: (no protocol) runs on a PTY in raw mode, as adbd does: stderr merged,
    # no "\r\n" translation, and a terminal on stdout.
    output = client.shell("echo out; echo err >&2; [ -t 1 ] && echo tty; "
                          "sh -c 'exit 3'; echo \"rc=$?\"")
    assert output == "out\nerr\ntty\nrc=3\n"
    assert client.exec_out("echo raw") == "raw\n"


def test_adb_shell_push_pull_stat_list(device, client):
    data = os.urandom(300_000)  # several DATA chunks and WRTEs
    client.push(io.BytesIO(data), "/data/local/tmp/new/dir/blob", st_mode=0o100644,
                mtime=1_600_000_000)
    mode, size, mtime = client.stat("/data/local/tmp/new/dir/blob")
    # adbd copies the user's permission bits to group and other.
    assert (mode, size, mtime) == (0o100666, len(data), 1_600_000_000)
    assert client.stat("/data/local/tmp/missing") == (0, 0, 0)
    names = {bytes(f.filename).decode(): f for f in client.list("/data/local/tmp/new/dir")}
    assert set(names) == {".", "..", "blob"}
    assert names["blob"].size == len(data)
    pulled = io.BytesIO()
    client.pull("/data/local/tmp/new/dir/blob", pulled)
    assert pulled.getvalue() == data
    assert device.path("/data/local/tmp/new/dir/blob").read_bytes() == data
    assert client.shell("wc -c < /data/local/tmp/new/dir/blob") == f"{len(data)}\n"
    with pytest.raises(adb_errors.AdbCommandFailureException,
                       match="open failed: No such file or directory"):
        client.pull("/data/local/tmp/missing", io.BytesIO())


def test_a_command_outlives_the_client_and_hangs_up_with_the_connection(device, key):
    client = _connect(device, key)
    with pytest.raises(TIMEOUTS):
        client.shell("nohup sleep 31 >/dev/null 2>&1 & echo started; sleep 32",
                     transport_timeout_s=1, read_timeout_s=1)
    running = _cmdlines(device).values()
    assert "sleep 31 " in running and "sleep 32 " in running  # the client gave up; not adbd
    client.close()
    # The connection is gone: like adbd, the PTY hangs up, so the foreground command gets
    # SIGHUP; what ignores it (nohup, or a setsid'd child) runs on until killed by pid.
    assert _wait_until(lambda: "sleep 32 " not in _cmdlines(device).values())
    survivors = [pid for pid, cmd in _cmdlines(device).items() if cmd == "sleep 31 "]
    assert len(survivors) == 1
    client = _connect(device, key)
    try:
        assert client.shell(f"kill {survivors[0]}; echo sent") == "sent\n"
    finally:
        client.close()
    assert _wait_until(lambda: not device.processes())


def test_a_background_job_is_hung_up_when_the_v1_shell_exits(device, client):
    # The shell is the PTY's session leader: when it exits the kernel sends SIGHUP to the
    # PTY's foreground process group, background jobs included. Hence nohup/setsid on phones.
    assert client.shell("sleep 41 > /dev/null 2>&1 & "
                        "trap '' HUP; sleep 42 > /dev/null 2>&1 & echo $!") != ""
    assert _wait_until(lambda: "sleep 41 " not in _cmdlines(device).values())
    assert "sleep 42 " in _cmdlines(device).values()


def test_a_shell_v2_command_closed_by_the_client_gets_sighup(device, key):
    client = _connect(device, key)
    try:
        with pytest.raises(TIMEOUTS):
            client._service(b"shell,v2,raw", b"trap 'echo hup > /data/local/tmp/hup' HUP; "
                            b"sleep 30 & wait", transport_timeout_s=1, read_timeout_s=1)
    finally:
        client.close()
    assert _wait_until(lambda: device.path("/data/local/tmp/hup").exists())
    assert device.path("/data/local/tmp/hup").read_text() == "hup\n"


def test_without_hangup_nothing_touches_a_command(tmp_path, sandbox_ok, key):
    with AdbDevice(tmp_path / "phone", authorized_keys=[Path(f"{key}.pub")],
                   hangup_on_close=False) as phone:
        client = _connect(phone, key)
        with pytest.raises(TIMEOUTS):
            client.shell("echo started; sleep 43", transport_timeout_s=1, read_timeout_s=1)
        client.close()
        time.sleep(0.3)
        assert "sleep 43 " in _cmdlines(phone).values()


def test_unknown_key_never_confirmed_never_connects(tmp_path, sandbox_ok, adb_shell_ok):
    stranger = tmp_path / "stranger"
    keygen(str(stranger))
    with AdbDevice(tmp_path / "phone", confirm="never") as phone:
        started = time.monotonic()
        with pytest.raises(TIMEOUTS):
            _connect(phone, stranger, auth_timeout_s=1)
        assert time.monotonic() - started < 5
        assert phone.authorized_keys == []
        assert any("signature rejected" in line for line in phone.log)
        assert any("RSAPUBLICKEY" in line for line in phone.log)


def test_a_rejected_key_drops_the_connection(tmp_path, sandbox_ok, adb_shell_ok):
    stranger = tmp_path / "stranger"
    keygen(str(stranger))
    with AdbDevice(tmp_path / "phone", confirm="reject") as phone:
        started = time.monotonic()
        with pytest.raises((ConnectionError, adb_errors.AdbTimeoutError)):
            _connect(phone, stranger, auth_timeout_s=3)
        assert time.monotonic() - started < 5
        assert phone.connection_count == 0


def test_a_confirmed_key_is_remembered(tmp_path, sandbox_ok, adb_shell_ok):
    stranger = tmp_path / "stranger"
    keygen(str(stranger))
    public = Path(f"{stranger}.pub").read_text().strip()
    with AdbDevice(tmp_path / "phone", confirm="confirm", confirm_delay=0.5) as phone:
        started = time.monotonic()
        client = _connect(phone, stranger, auth_timeout_s=5)
        assert time.monotonic() - started >= 0.5
        assert client.shell("echo ok") == "ok\n"
        client.close()
        assert phone.authorized_keys == [public]
        assert public in phone.path("/data/misc/adb/adb_keys").read_text()
        # Next time the signature alone is enough: no prompt.
        prompts = sum("RSAPUBLICKEY" in line for line in phone.log)
        _connect(phone, stranger).close()
        assert sum("RSAPUBLICKEY" in line for line in phone.log) == prompts


def test_a_full_disk_fails_the_push_with_adbds_message(tmp_path, sandbox_ok, key):
    with AdbDevice(tmp_path / "phone", authorized_keys=[Path(f"{key}.pub")],
                   data_size_kb=64) as phone:
        client = _connect(phone, key)
        try:
            assert "tmpfs" in client.shell("df -k /data/local/tmp")
            with pytest.raises(adb_errors.PushFailedError,
                               match="write failed: No space left on device"):
                client.push(io.BytesIO(os.urandom(200_000)), "/data/local/tmp/big")
        finally:
            client.close()
        assert not phone.path("/data/local/tmp/big").exists()  # adbd unlinks the rest
        assert not (tmp_path / "phone/data/local/tmp/big").exists()  # the tmpfs, not disk


def test_wifi_blip_and_the_phone_going_away(device, key):
    client = _connect(device, key)
    assert client.shell("echo up") == "up\n"
    device.drop_connections()
    with pytest.raises((ConnectionError, OSError, *TIMEOUTS)):
        client.shell("echo again", transport_timeout_s=1, read_timeout_s=1)
    client.close()
    client = _connect(device, key)  # still listening: a reconnect works
    client.shell("trap '' HUP; sleep 40 > /dev/null 2>&1 < /dev/null &")
    assert _wait_until(lambda: "sleep 40 " in _cmdlines(device).values())
    device.kill_all()
    assert device.processes() == []
    client.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(device.address, timeout=1).close()
    device.start()  # back on the network, same address
    client = _connect(device, key)
    assert client.shell("echo back") == "back\n"
    client.close()


def test_extra_mounts_let_this_venvs_python_run_on_the_phone(tmp_path, sandbox_ok, key):
    tool = tmp_path / "tool"
    tool.write_text(f"#!{sys.executable}\nimport os, sys\nprint(sys.prefix, os.getcwd())\n")
    with AdbDevice(tmp_path / "phone", authorized_keys=[Path(f"{key}.pub")],
                   extra_mounts=host_python_mounts()) as phone:
        phone.install("tool", tool)
        client = _connect(phone, key)
        try:
            assert client.shell("tool") == f"{sys.prefix} /\n"
        finally:
            client.close()


def test_install_puts_an_executable_in_system_bin(device, client, tmp_path):
    tool = tmp_path / "tool"
    tool.write_text("#!/system/bin/sh\necho \"tool $*\"\n")
    assert device.install("benchmark_model", tool) == "/system/bin/benchmark_model"
    assert client.shell("benchmark_model --graph=x") == "tool --graph=x\n"


# --- Debian's adb client, with an adb server of its own -----------------------------------


class AdbServer:
    """`adb -P PORT ...` with its own HOME (so its own ~/.android/adbkey) and vendor key."""

    def __init__(self, adb: str, home: Path, vendor_key: Path | None):
        self.adb, self.port = adb, free_port()
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
                    "TMPDIR": str(home)}
        if vendor_key is not None:
            self.env["ADB_VENDOR_KEYS"] = str(vendor_key)

    def __call__(self, *args: str, input: str | None = None,
                 timeout: float = 20) -> subprocess.CompletedProcess:
        return subprocess.run([self.adb, "-P", str(self.port), *args], env=self.env,
                              input=input, capture_output=True, text=True, timeout=timeout,
                              stdin=None if input is not None else subprocess.DEVNULL)

    def state(self, serial: str) -> str:
        for line in self("devices").stdout.splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == serial:
                return fields[1]
        return "absent"


@pytest.fixture
def adb_server(tmp_path, adb_binary, key):
    server = AdbServer(adb_binary, tmp_path / "home", key)
    assert server("start-server").returncode == 0
    yield server
    server("kill-server")


def test_adb_client_shell_exit_codes_and_push_pull(device, adb_server, tmp_path):
    adb = adb_server
    connected = adb("connect", device.serial)
    assert connected.stdout.strip() == f"connected to {device.serial}"
    assert adb.state(device.serial) == "device"
    assert "model:BenchPhone" in adb("devices", "-l").stdout
    s = ("-s", device.serial)
    assert adb(*s, "shell", "getprop", "ro.serialno").stdout == "R5CT20TEST\n"
    # Shell protocol v2: real exit codes, stderr apart, no terminal.
    assert adb(*s, "shell", "false").returncode == 1
    result = adb(*s, "shell", "echo out; echo err >&2; [ -t 1 ] || echo notty; exit 3")
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\nnotty\n", "err\n")
    assert adb(*s, "shell", "kill -9 $$").returncode == 128 + 9
    assert adb(*s, "shell", "cat", input="through stdin").stdout == "through stdin"
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(2_500_000))
    pushed = adb(*s, "push", str(blob), "/data/local/tmp/blob")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert device.path("/data/local/tmp/blob").read_bytes() == blob.read_bytes()
    back = tmp_path / "back"
    pulled = adb(*s, "pull", "/data/local/tmp/blob", str(back))
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    assert back.read_bytes() == blob.read_bytes()
    missing = adb(*s, "pull", "/data/local/tmp/missing", str(tmp_path / "missing"))
    assert missing.returncode == 1
    assert "No such file or directory" in missing.stdout + missing.stderr
    assert adb(*s, "reboot").returncode != 0  # refused: this phone does not reboot
    assert adb(*s, "shell", "echo", "still-here").stdout == "still-here\n"
    assert adb("kill-server").returncode == 0


def test_adb_client_is_unauthorized_until_the_user_allows(tmp_path, sandbox_ok, adb_binary):
    adb = AdbServer(adb_binary, tmp_path / "home", vendor_key=None)
    with AdbDevice(tmp_path / "phone", confirm="confirm", confirm_delay=1.5) as phone:
        assert adb("start-server").returncode == 0
        try:
            adb("connect", phone.serial)
            assert adb.state(phone.serial) == "unauthorized"
            assert _wait_until(lambda: adb.state(phone.serial) == "device", timeout=6)
            own_key = (adb.home / ".android" / "adbkey.pub").read_text().split()[0]
            assert [k.split()[0] for k in phone.authorized_keys] == [own_key]
            result = adb("-s", phone.serial, "shell", "echo", "allowed")
            assert result.stdout == "allowed\n"
        finally:
            adb("kill-server")


# --- the wire, with a minimal client ---------------------------------------------------------


class RawClient:
    """Just enough of an ADB host to look at packets one at a time."""

    def __init__(self, device: AdbDevice, version: int = A_VERSION, maxdata: int = 4096):
        self.sock = socket.create_connection(device.address, timeout=5)
        self.version = version
        self.send(A_CNXN, version, maxdata, b"host::raw\0", checksum=True)

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"",
             checksum: bool | None = None, magic: int | None = None) -> None:
        if checksum is None:
            checksum = self.version < A_VERSION
        check = sum(data) & 0xFFFFFFFF if checksum else 0
        magic = command ^ 0xFFFFFFFF if magic is None else magic
        self.sock.sendall(HEADER.pack(command, arg0, arg1, len(data), check, magic) + data)

    def _exact(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise EOFError("connection closed")
            data += chunk
        return data

    def recv(self, timeout: float = 5) -> tuple[int, int, int, bytes, int]:
        self.sock.settimeout(timeout)
        command, arg0, arg1, length, check, magic = HEADER.unpack(self._exact(HEADER.size))
        assert magic == command ^ 0xFFFFFFFF
        return command, arg0, arg1, self._exact(length) if length else b"", check

    def open(self, local_id: int, destination: str) -> int:
        self.send(A_OPEN, local_id, 0, destination.encode() + b"\0")
        command, arg0, arg1, _, _ = self.recv()
        assert (command, arg1) == (A_OKAY, local_id), hex(command)
        return arg0

    def read_stream(self, local_id: int) -> bytes:
        """WRTEs acknowledged one by one until the device's CLSE."""
        data = b""
        while True:
            command, arg0, arg1, payload, _ = self.recv()
            if command == A_CLSE:
                return data
            assert (command, arg1) == (A_WRTE, local_id)
            data += payload
            self.send(A_OKAY, local_id, arg0)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def open_device(tmp_path, sandbox_ok):
    with AdbDevice(tmp_path / "phone", auth_required=False) as phone:
        yield phone


def test_checksums_follow_the_negotiated_version(open_device):
    old = RawClient(open_device, version=A_VERSION_MIN)
    command, version, maxdata, banner, check = old.recv()
    assert command == A_CNXN and version == A_VERSION and maxdata == 4096
    assert check == sum(banner) & 0xFFFFFFFF  # byte sum for a 0x01000000 client
    assert banner.startswith(b"device::ro.product.name=emulator;ro.product.model=BenchPhone;"
                             b"ro.product.device=bench;features=")
    assert b"shell_v2" in banner.split(b"features=")[1].split(b",")
    old.send(A_OPEN, 1, 0, b"exec:true\0", checksum=False)  # wrong sum: the link is dropped
    with pytest.raises((EOFError, ConnectionError)):
        old.recv()
    old.close()
    new = RawClient(open_device)
    assert new.recv()[4] == 0  # 0x01000001 skips the checksum
    new.send(A_OPEN, 1, 0, b"exec:true\0", magic=0)  # bad magic: dropped as well
    with pytest.raises((EOFError, ConnectionError)):
        new.recv()
    new.close()


def test_requires_auth_token_before_anything(device):
    raw = RawClient(device)
    command, kind, _, token, _ = raw.recv()
    assert (command, kind, len(token)) == (A_AUTH, AUTH_TOKEN, 20)
    raw.send(A_OPEN, 1, 0, b"shell:echo hi\0")  # ignored until authorised
    raw.send(A_AUTH, 2, 0, b"\0" * 256)  # a bad signature: a fresh token
    command, kind, _, second, _ = raw.recv()
    assert (command, kind) == (A_AUTH, AUTH_TOKEN) and second != token
    raw.close()


def test_flow_control_and_close(open_device):
    raw = RawClient(open_device, maxdata=4096)
    raw.recv()
    remote = raw.open(7, "shell,v2,raw:head -c 100000 /dev/zero")
    command, arg0, arg1, payload, _ = raw.recv()
    assert (command, arg0, arg1) == (A_WRTE, remote, 7) and len(payload) == 4096
    with pytest.raises(TimeoutError):  # one WRTE in flight until its OKAY
        raw.recv(timeout=0.3)
    raw.send(A_OKAY, 7, remote)
    command, _, _, payload, _ = raw.recv()
    assert command == A_WRTE and len(payload) == 4096
    raw.send(A_CLSE, 7, remote)
    # adbd answers a CLSE with its own (protocol.txt says otherwise; adb-shell relies on it)
    command, arg0, arg1, _, _ = raw.recv()
    assert (command, arg0, arg1) == (A_CLSE, remote, 7)
    raw.close()


def test_unknown_services_are_refused_and_streams_run_side_by_side(open_device):
    raw = RawClient(open_device, maxdata=1 << 20)
    raw.recv()
    for refused in ("reboot:", "tcp:5555", "shell", "jdwp:1"):
        raw.send(A_OPEN, 3, 0, refused.encode() + b"\0")
        assert raw.recv()[:3] == (A_CLSE, 0, 3)
    slow = raw.open(1, "shell,v2,raw:sleep 0.5; echo slow")
    fast = raw.open(2, "exec:echo fast")
    seen: dict[int, bytes] = {1: b"", 2: b""}
    closed = set()
    while len(closed) < 2:
        command, arg0, arg1, payload, _ = raw.recv()
        if command == A_CLSE:
            closed.add(arg1)
            continue
        seen[arg1] += payload
        raw.send(A_OKAY, arg1, arg0)
    assert seen[2] == b"fast\n" and closed == {1, 2}
    assert seen[1] == (struct.pack("<BI", 1, 5) + b"slow\n" + struct.pack("<BI", 3, 1) + b"\0")
    assert slow != fast
    raw.close()


def test_shell_v2_stdin_and_close_stdin(open_device):
    raw = RawClient(open_device, maxdata=1 << 20)
    raw.recv()
    remote = raw.open(1, "shell,v2,raw:tr a-z A-Z")
    packets = struct.pack("<BI", 0, 6) + b"hello\n" + struct.pack("<BI", 4, 0)
    raw.send(A_WRTE, 1, remote, packets)
    assert raw.recv()[:3] == (A_OKAY, remote, 1)
    output = raw.read_stream(1)
    assert output == struct.pack("<BI", 1, 6) + b"HELLO\n" + struct.pack("<BI", 3, 1) + b"\0"
    raw.close()


def test_sync_v2_requests(open_device):
    raw = RawClient(open_device, maxdata=1 << 20)
    raw.recv()
    remote = raw.open(1, "sync:")

    def request(kind: str, path: bytes, extra: bytes = b"") -> None:
        raw.send(A_WRTE, 1, remote, kind.encode() + struct.pack("<I", len(path)) + path + extra)
        assert raw.recv()[:3] == (A_OKAY, remote, 1)

    def reply(size: int) -> bytes:
        data = b""
        while len(data) < size:
            command, arg0, _, payload, _ = raw.recv()
            assert command == A_WRTE
            data += payload
            raw.send(A_OKAY, 1, arg0)
        assert len(data) == size
        return data

    content = b"x" * 100
    request("SND2", b"/data/local/tmp/v2", b"SND2" + struct.pack("<II", 0o100644, 0)
            + b"DATA" + struct.pack("<I", len(content)) + content
            + b"DONE" + struct.pack("<I", 1_700_000_000))
    assert reply(8) == b"OKAY\0\0\0\0"
    request("STA2", b"/data/local/tmp/v2")
    stat2 = struct.unpack("<IIQQIIIIQqqq", reply(72))
    assert stat2[1] == 0 and stat2[4] == 0o100666 and stat2[8] == 100
    assert stat2[10] == 1_700_000_000
    request("LST2", b"/data/local/tmp/nothing")
    assert struct.unpack("<IIQQIIIIQqqq", reply(72))[1] == 2  # ENOENT on the wire
    request("RCV2", b"/data/local/tmp/v2", b"RCV2" + struct.pack("<I", 0))
    assert reply(8 + 100 + 8) == b"DATA" + struct.pack("<I", 100) + content + b"DONE\0\0\0\0"
    request("LIS2", b"/data/local/tmp")
    listing = b""
    while not listing.endswith(b"DONE" + b"\0" * 72):
        command, arg0, _, payload, _ = raw.recv()
        listing += payload
        raw.send(A_OKAY, 1, arg0)
    assert b"DNT2" in listing and b"v2" in listing
    request("QUIT", b"")
    assert raw.recv()[:3] == (A_CLSE, remote, 1)
    raw.close()


def test_public_key_parsing_and_verification(key):
    public = AdbPublicKey.parse(Path(f"{key}.pub").read_text())
    assert public.exponent == 65537 and public.modulus.bit_length() == 2048
    signer = PythonRSASigner.FromRSAKeyPath(str(key))
    token = os.urandom(20)
    signature = signer.Sign(token)
    assert public.verify(token, signature)
    assert not public.verify(os.urandom(20), signature)
    assert not public.verify(token, signature[:-1] + bytes([signature[-1] ^ 1]))
    with pytest.raises(ValueError):
        AdbPublicKey.parse("not-base64!! user@host")
