"""An Android phone on loopback: the device side of ADB, as adbd serves it after `adb tcpip`.

Debian ships the adb client but no adbd, so the ADB transports are tested against this
emulator. It speaks the wire protocol as AOSP documents and implements it (adb/protocol.txt,
SERVICES.TXT, SYNC.TXT, file_sync_protocol.h, shell_protocol.h; behaviour checked against
adb.cpp, sockets.cpp, daemon/auth.cpp, daemon/shell_service.cpp and
daemon/file_sync_service.cpp), so a client that works here works against a phone:

- messages: 24-byte little-endian header, magic = command ^ 0xffffffff, payload checksum
  (byte sum below version 0x01000001, 0 from it on: what the client negotiated), CNXN
  version and max-payload negotiation, the device banner with its features;
- AUTH: TOKEN (20 random bytes), SIGNATURE verified against the authorised keys (adb's
  public-key format, RSA PKCS#1 v1.5 over the token as a SHA-1 digest, checked with plain
  integers), a new TOKEN on failure, RSAPUBLICKEY answered as the user would ("confirm",
  "never", "reject");
- streams: OPEN/OKAY/WRTE/CLSE, one WRTE in flight per stream until its OKAY, CLSE answered
  with CLSE (what adbd does, though protocol.txt says not to), many streams at once;
- services: `shell:` (no protocol: a PTY in raw mode, as adbd uses), `shell,v2[,raw|,pty]:`
  (shell protocol packets, real exit codes), `exec:`, `sync:` (STAT/STA2/LST2, LIST/LIS2,
  SEND/SND2, RECV/RCV2, QUIT); anything else (`reboot:`, `tcp:`...) is refused with CLSE.

Commands run as `/system/bin/sh -c CMD` in a sandbox root laid out like a phone, entered
through a private mount namespace (util-linux unshare/nsenter, so this needs root): the
host's /usr, /etc and /lib* read-only, /proc, /sys and /dev as the host's, a writable
/data/local/tmp (optionally a small tmpfs, to fill the disk), /system/bin with `getprop`.
Like adbd, each command is its own session (setsid), closing its stream hangs it up
(SIGHUP to the shell, or the PTY's hangup) rather than killing it, and dropped connections
do the same: whatever ignores SIGHUP or left the session keeps running until killed by pid.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import fcntl
import os
import posixpath
import secrets
import select
import shlex
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import termios
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

# --- protocol constants (adb/protocol.txt, adb.h) ---------------------------------------

A_SYNC = 0x434E5953
A_CNXN = 0x4E584E43
A_AUTH = 0x48545541
A_OPEN = 0x4E45504F
A_OKAY = 0x59414B4F
A_CLSE = 0x45534C43
A_WRTE = 0x45545257
A_STLS = 0x534C5453

A_VERSION_MIN = 0x01000000
A_VERSION_SKIP_CHECKSUM = 0x01000001
A_VERSION = 0x01000001
MAX_PAYLOAD_V1 = 4 * 1024
MAX_PAYLOAD = 1024 * 1024

AUTH_TOKEN = 1
AUTH_SIGNATURE = 2
AUTH_RSAPUBLICKEY = 3
TOKEN_SIZE = 20

HEADER = struct.Struct("<6I")

# Shell protocol (shell_protocol.h): id byte + little-endian u32 length + data.
ID_STDIN, ID_STDOUT, ID_STDERR, ID_EXIT, ID_CLOSE_STDIN, ID_WINDOW_SIZE_CHANGE = range(6)
SHELL_HEADER = struct.Struct("<BI")


def _mkid(name: str) -> int:
    return struct.unpack("<I", name.encode())[0]


# Sync protocol (file_sync_protocol.h).
ID_LSTAT_V1, ID_STAT_V2, ID_LSTAT_V2 = _mkid("STAT"), _mkid("STA2"), _mkid("LST2")
ID_LIST_V1, ID_LIST_V2 = _mkid("LIST"), _mkid("LIS2")
ID_DENT_V1, ID_DENT_V2 = _mkid("DENT"), _mkid("DNT2")
ID_SEND_V1, ID_SEND_V2 = _mkid("SEND"), _mkid("SND2")
ID_RECV_V1, ID_RECV_V2 = _mkid("RECV"), _mkid("RCV2")
ID_DONE, ID_DATA, ID_OKAY, ID_FAIL, ID_QUIT = (
    _mkid(n) for n in ("DONE", "DATA", "OKAY", "FAIL", "QUIT"))
SYNC_DATA_MAX = 64 * 1024
SYNC_MSG = struct.Struct("<II")  # SyncRequest, sync_data, sync_status
STAT_V1 = struct.Struct("<IIII")
STAT_V2 = struct.Struct("<IIQQIIIIQqqq")
DENT_V1 = struct.Struct("<IIIII")
DENT_V2 = struct.Struct("<IIQQIIIIQqqqI")

# What adbd advertises that this emulator implements (transport.cpp's names). No abb,
# apex, compression or delayed_ack: a client must fall back as it would on an older phone.
DEFAULT_FEATURES = (
    "shell_v2", "cmd", "stat_v2", "ls_v2", "fixed_push_mkdir",
    "fixed_push_symlink_timestamp", "sendrecv_v2",
)

DEFAULT_PROPS = {
    "ro.serialno": "BENCH0001",
    "ro.product.name": "emulator",
    "ro.product.model": "BenchPhone",
    "ro.product.device": "bench",
    "ro.product.manufacturer": "Bench",
    "ro.product.brand": "bench",
    "ro.product.cpu.abi": "arm64-v8a",
    "ro.product.cpu.abilist": "arm64-v8a,armeabi-v7a,armeabi",
    "ro.build.version.release": "14",
    "ro.build.version.sdk": "34",
    "ro.build.id": "UP1A.231005.007",
    "ro.build.type": "user",
    "ro.build.fingerprint": "bench/emulator/bench:14/UP1A.231005.007/1:user/release-keys",
    "ro.soc.manufacturer": "Bench",
    "ro.soc.model": "BENCH8",
    "ro.board.platform": "benchboard",
    "ro.hardware": "bench",
    "ro.debuggable": "0",
}

CONFIRM_MODES = ("confirm", "never", "reject")
ADB_PORT_RANGE = range(5555, 5586)  # what an adb server probes for emulators
STREAM_BUFFER = 256 * 1024  # like the socketpair between adbd and a service

GETPROP = """\
#!/system/bin/sh
# getprop [NAME [DEFAULT]]: Android's property reader, over /system/build.prop.
props=/system/build.prop
if [ $# -eq 0 ]; then
    while IFS= read -r line; do
        case "$line" in ''|'#'*) continue ;; esac
        printf '[%s]: [%s]\\n' "${line%%=*}" "${line#*=}"
    done < "$props"
    exit 0
fi
while IFS= read -r line; do
    case "$line" in "$1="*) printf '%s\\n' "${line#*=}"; exit 0 ;; esac
done < "$props"
printf '%s\\n' "${2-}"
"""


class AdbDeviceUnavailable(RuntimeError):
    """This machine cannot host the emulator (not root, or util-linux tools missing)."""


def check_environment() -> None:
    """Raise AdbDeviceUnavailable saying what is missing: the sandbox needs mount namespaces."""
    if os.geteuid() != 0:
        raise AdbDeviceUnavailable(
            "the ADB device emulator needs root (it bind-mounts a phone's file system "
            "in a private mount namespace)")
    missing = [tool for tool in ("unshare", "nsenter", "setsid", "mount", "chroot")
               if shutil.which(tool) is None]
    if missing:
        raise AdbDeviceUnavailable(
            f"the ADB device emulator needs util-linux's {', '.join(missing)} "
            "(apt-get install util-linux mount coreutils)")


def host_python_mounts() -> list[str]:
    """Host paths to pass as extra_mounts so this venv's Python runs inside the phone."""
    paths = {sys.prefix, sys.base_prefix, str(Path(sys.executable).resolve().parent.parent)}
    return sorted(p for p in paths if not p.startswith(("/usr", "/bin", "/lib")))


def free_port(avoid: Iterable[int] = ()) -> int:
    """A free loopback TCP port outside adb's emulator range (5555-5585) and 5037."""
    avoid = set(avoid) | set(ADB_PORT_RANGE) | {5037}
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port not in avoid:
            return port
    raise RuntimeError("no free port found")


# --- adb public keys and signature verification ------------------------------------------

# DER DigestInfo prefix of a SHA-1 hash: adb signs the 20-byte token as if it were one.
_SHA1_DIGEST_INFO = bytes.fromhex("3021300906052b0e03021a05000414")


@dataclass(frozen=True)
class AdbPublicKey:
    """One line of adb_keys: base64 of the RSAPublicKey struct, a space, user@host."""

    modulus: int
    exponent: int
    text: str

    @classmethod
    def parse(cls, line: str) -> AdbPublicKey:
        """Decode adb's struct: u32 words, u32 n0inv, modulus, rr (little-endian), u32 e."""
        fields = line.strip().split(None, 1)
        if not fields:
            raise ValueError("empty public key")
        try:
            blob = base64.b64decode(fields[0], validate=True)
        except binascii.Error as exc:
            raise ValueError(f"invalid base64 key: {exc}") from None
        if len(blob) < 12:
            raise ValueError("public key too short")
        words = struct.unpack_from("<I", blob)[0]
        if not 0 < words <= 1024 or len(blob) != 12 + 8 * words:
            raise ValueError(f"bad public key size {len(blob)} for {words} words")
        size = 4 * words
        modulus = int.from_bytes(blob[8:8 + size], "little")
        exponent = struct.unpack_from("<I", blob, 8 + 2 * size)[0]
        if modulus == 0 or exponent == 0:
            raise ValueError("degenerate public key")
        return cls(modulus, exponent, line.strip())

    @property
    def blob(self) -> str:
        return self.text.split(None, 1)[0]

    def verify(self, token: bytes, signature: bytes) -> bool:
        """RSA_verify(NID_sha1, token, sig) as adbd calls it: PKCS#1 v1.5, token as digest."""
        size = (self.modulus.bit_length() + 7) // 8
        if len(token) != TOKEN_SIZE or len(signature) != size:
            return False
        value = int.from_bytes(signature, "big")
        if value >= self.modulus:
            return False
        encoded = pow(value, self.exponent, self.modulus).to_bytes(size, "big")
        digest_info = _SHA1_DIGEST_INFO + token
        padding = size - 3 - len(digest_info)
        return padding >= 8 and encoded == (
            b"\x00\x01" + b"\xff" * padding + b"\x00" + digest_info)


def _read_key_lines(source: str | os.PathLike[str]) -> list[str]:
    """A key's text, or a file of them (adb_keys, adbkey.pub): one key a line."""
    if isinstance(source, os.PathLike) or (
            isinstance(source, str) and "\n" not in source and os.path.isfile(source)):
        text = Path(source).read_text()
    else:
        text = str(source)
    return [line.strip() for line in text.splitlines() if line.strip()]


# --- streams -------------------------------------------------------------------------------


class _Stream:
    """One end of an OPENed stream: the service's data out as WRTEs, the client's in.

    Like adbd's local socket: at most one WRTE in flight (the next waits for the client's
    OKAY), the OKAY for a client WRTE is sent once the service has taken the data, and the
    CLSE after the service's last data has been acknowledged."""

    def __init__(self, conn: _Connection, local_id: int, remote_id: int, service: str):
        self.conn, self.local_id, self.remote_id, self.service = (
            conn, local_id, remote_id, service)
        self._cond = threading.Condition()
        self._out = bytearray()
        self._eof = False
        self._ready = True  # an OPEN implies a READY (protocol.txt)
        self._inbound: deque[bytes] = deque()
        self._interrupted = False
        self.closed = False
        self.closed_by = ""  # "client", "device" or "transport"
        threading.Thread(target=self._send_loop, daemon=True,
                         name=f"adb-stream-{local_id}").start()

    # service side
    def write(self, data: bytes) -> bool:
        """Queue data for the client; blocks while the buffer is full. False once closed."""
        with self._cond:
            self._cond.wait_for(lambda: self.closed or len(self._out) < STREAM_BUFFER)
            if self.closed or self._eof:
                return False
            self._out += data
            self._cond.notify_all()
            return True

    def finish(self) -> None:
        """The service is done: send what is queued, then CLSE."""
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def read(self, timeout: float | None = None) -> bytes | None:
        """The client's next WRTE payload (acknowledged now), b'' once closed, None on timeout
        or after interrupt()."""
        with self._cond:
            if not self._cond.wait_for(
                    lambda: self._inbound or self.closed or self._interrupted, timeout):
                return None
            if self._interrupted:
                return None
            if not self._inbound:
                return b""
            chunk = self._inbound.popleft()
            closed = self.closed
        if not closed:
            self.conn.send(A_OKAY, self.local_id, self.remote_id)
        return chunk

    def interrupt(self) -> None:
        """Wake and stop readers: the service no longer takes input."""
        with self._cond:
            self._interrupted = True
            self._cond.notify_all()

    # connection side
    def on_okay(self) -> None:
        with self._cond:
            self._ready = True
            self._cond.notify_all()

    def on_write(self, data: bytes) -> None:
        with self._cond:
            if not self.closed:
                self._inbound.append(data)
                self._cond.notify_all()

    def on_close(self, by: str) -> bool:
        """Closed by the client or the transport; True if it was open."""
        with self._cond:
            if self.closed:
                return False
            self.closed, self.closed_by = True, by
            self._cond.notify_all()
            return True

    def _send_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: self.closed or (self._ready and (self._out or self._eof)))
                if self.closed:
                    return
                if self._out:
                    size = self.conn.max_payload
                    chunk = bytes(self._out[:size])
                    del self._out[:size]
                    self._ready = False
                    self._cond.notify_all()
                else:
                    self.closed, self.closed_by, chunk = True, "device", b""
                    self._cond.notify_all()
            if chunk:
                self.conn.send(A_WRTE, self.local_id, self.remote_id, chunk)
            else:
                self.conn.forget(self)
                self.conn.send(A_CLSE, self.local_id, self.remote_id)
                return


# --- connections: one TCP client (one adb transport) ---------------------------------------


class _Connection:
    """The device end of one TCP transport: handshake, auth, and the packet dispatch."""

    def __init__(self, device: AdbDevice, sock: socket.socket, peer: tuple):
        self.device, self.sock, self.peer = device, sock, peer
        self.version = A_VERSION_MIN  # what the transport starts at (transport.h)
        self.max_payload = MAX_PAYLOAD
        self.online = False
        self.closed = False
        self.token: bytes | None = None
        self.client_banner = ""
        self.auth_key = ""
        self.failed_auth_attempts = 0
        self.streams: dict[int, _Stream] = {}
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"adb-conn-{peer[1]}")

    # wire
    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> bool:
        check = 0 if self.version >= A_VERSION_SKIP_CHECKSUM else sum(data) & 0xFFFFFFFF
        header = HEADER.pack(command, arg0, arg1, len(data), check, command ^ 0xFFFFFFFF)
        with self._send_lock:
            if self.closed:
                return False
            try:
                self.sock.sendall(header + data)
                return True
            except OSError:
                pass
        self.close()
        return False

    def _recv_exact(self, size: int) -> bytes | None:
        chunks, left = [], size
        while left:
            try:
                chunk = self.sock.recv(min(left, 1 << 20))
            except OSError:
                return None
            if not chunk:
                return None
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _run(self) -> None:
        try:
            while not self.closed:
                header = self._recv_exact(HEADER.size)
                if header is None:
                    break
                command, arg0, arg1, length, check, magic = HEADER.unpack(header)
                if magic != command ^ 0xFFFFFFFF:
                    self.device._note(f"{self.peer}: bad magic {magic:#x}, closing")
                    break
                if length > self.max_payload:
                    self.device._note(f"{self.peer}: payload {length} > {self.max_payload}")
                    break
                data = self._recv_exact(length) if length else b""
                if data is None:
                    break
                if (self.version < A_VERSION_SKIP_CHECKSUM and data
                        and check not in (sum(data) & 0xFFFFFFFF, zlib.crc32(data))):
                    self.device._note(f"{self.peer}: bad payload checksum, closing")
                    break
                self._handle(command, arg0, arg1, data)
        finally:
            self.close()

    def close(self) -> None:
        """Drop the transport: every stream is closed as adbd's close_all_sockets does."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            streams = list(self.streams.values())
            self.streams.clear()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with self._send_lock:
            self.sock.close()
        for stream in streams:
            stream.on_close("transport")
        self.device._forget(self)

    def forget(self, stream: _Stream) -> None:
        with self._lock:
            self.streams.pop(stream.local_id, None)

    def _drop_streams(self) -> None:
        """handle_offline: the transport stays, its streams go."""
        with self._lock:
            streams = list(self.streams.values())
            self.streams.clear()
        for stream in streams:
            stream.on_close("transport")

    # dispatch (adb.cpp handle_packet)
    def _handle(self, command: int, arg0: int, arg1: int, data: bytes) -> None:
        if command == A_CNXN:
            self._on_connect(arg0, arg1, data)
        elif command == A_AUTH:
            self._on_auth(arg0, data)
        elif command == A_OPEN:
            if self.online and arg0 != 0 and arg1 == 0:
                self._on_open(arg0, data)
        elif command == A_OKAY:
            if self.online and arg0 != 0 and arg1 != 0:
                stream = self.streams.get(arg1)
                if stream is None:
                    self.send(A_CLSE, arg1, arg0)  # adbd tells the peer it is gone
                elif stream.remote_id == arg0:
                    stream.on_okay()
        elif command == A_WRTE:
            if self.online and arg0 != 0 and arg1 != 0:
                stream = self.streams.get(arg1)
                if stream is not None and stream.remote_id == arg0:
                    stream.on_write(data)
        elif command == A_CLSE:
            if self.online and arg1 != 0:
                stream = self.streams.get(arg1)
                if stream is not None and arg0 in (0, stream.remote_id):
                    self.forget(stream)
                    if stream.on_close("client"):
                        # local_socket_close -> remote_socket_shutdown: adbd answers CLSE.
                        self.send(A_CLSE, stream.local_id, stream.remote_id)
        else:
            # STLS, SYNC and unknown commands: adbd logs them and carries on.
            self.device._note(f"{self.peer}: ignored command {command:#010x}")

    def _on_connect(self, version: int, max_payload: int, data: bytes) -> None:
        self._drop_streams()
        self.online = False
        self.version = min(version, A_VERSION)
        self.max_payload = min(max_payload, self.device.max_payload)
        self.client_banner = data.rstrip(b"\0").decode("utf-8", "replace")
        self.device._note(f"{self.peer}: CNXN version={version:#x} maxdata={max_payload} "
                          f"banner={self.client_banner!r}")
        if self.device.auth_required:
            self.send_token()
        else:
            self.go_online()

    def send_token(self) -> None:
        self.token = secrets.token_bytes(TOKEN_SIZE)
        self.send(A_AUTH, AUTH_TOKEN, 0, self.token)

    def go_online(self) -> None:
        if self.closed:
            return
        self.online = True
        self.device._note(f"{self.peer}: online")
        self.send(A_CNXN, A_VERSION, self.max_payload, self.device.banner().encode())

    def _on_auth(self, kind: int, data: bytes) -> None:
        if kind == AUTH_SIGNATURE:
            key = self.device._verify(self.token or b"", data)
            if key is not None:
                self.device._note(f"{self.peer}: signature verified ({key.text.split()[-1]})")
                self.auth_key, self.failed_auth_attempts = key.text, 0
                self.go_online()
            else:
                self.device._note(f"{self.peer}: signature rejected, new token")
                self.failed_auth_attempts += 1
                if self.failed_auth_attempts > 256:
                    time.sleep(1)
                self.send_token()
        elif kind == AUTH_RSAPUBLICKEY:
            key = data.split(b"\0", 1)[0].decode("ascii", "replace").strip()
            self.device._note(f"{self.peer}: RSAPUBLICKEY received, prompting the user")
            self.device._prompt_user(self, key)
        else:
            self._drop_streams()
            self.online = False

    def _on_open(self, remote_id: int, data: bytes) -> None:
        destination = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
        service = self.device._service_for(destination)
        if service is None:
            self.device._note(f"{self.peer}: OPEN {destination!r} refused")
            self.send(A_CLSE, 0, remote_id)
            return
        stream = _Stream(self, self.device._next_id(), remote_id, destination)
        with self._lock:
            if self.closed:
                return
            self.streams[stream.local_id] = stream
        self.device._note(f"{self.peer}: OPEN {destination!r} -> {stream.local_id}")
        self.send(A_OKAY, stream.local_id, remote_id)
        threading.Thread(target=self.device._run_service, args=(service, stream),
                         daemon=True, name=f"adb-svc-{stream.local_id}").start()


# --- the device ----------------------------------------------------------------------------


@dataclass
class _Started:
    pid: int
    command: str
    process: subprocess.Popen


class AdbDevice:
    """A phone that adb can `connect` to: an ADB server on 127.0.0.1 over a sandbox root.

    root: the phone's file system on the host (created and laid out as needed).
    props: system properties over DEFAULT_PROPS (getprop, and the CNXN banner).
    authorized_keys: adb public keys (their text, or files of them) the phone trusts.
    auth_required: False is ro.adb.secure=0 (no AUTH at all).
    confirm: answer to a RSAPUBLICKEY: "confirm" (the user taps Allow after confirm_delay
      seconds; the key is remembered), "never" (the prompt is never answered: the client
      stays unauthorized) or "reject" (the connection is dropped; adbd itself stays silent
      on Deny, so use "never" for that).
    extra_mounts: host paths visible at the same path inside (read-write bind mounts);
      host_python_mounts() gives what this venv's Python needs.
    data_size_kb: mount a tmpfs of this size at /data/local/tmp (a full disk on demand).
    port: 0 picks a free port outside 5555-5585 (where an adb server looks for emulators).
    max_payload, features: what the CNXN banner advertises (an older phone: 4096, fewer).
    hangup_on_close: what adbd does when a stream or the connection goes: SIGHUP to the
      shell (shell protocol) or the PTY hangs up (no protocol). False leaves commands
      entirely alone (their output is read and discarded).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        props: dict[str, str] | None = None,
        authorized_keys: Iterable[str | os.PathLike[str]] = (),
        auth_required: bool = True,
        confirm: str = "confirm",
        confirm_delay: float = 0.0,
        extra_mounts: Sequence[str | os.PathLike[str]] = (),
        data_size_kb: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        max_payload: int = MAX_PAYLOAD,
        features: Sequence[str] = DEFAULT_FEATURES,
        hangup_on_close: bool = True,
    ):
        if confirm not in CONFIRM_MODES:
            raise ValueError(f"confirm must be one of {CONFIRM_MODES}, not {confirm!r}")
        self.root = Path(root).resolve()
        self.props = {**DEFAULT_PROPS, **(props or {})}
        self.auth_required = auth_required
        self.confirm = confirm
        self.confirm_delay = confirm_delay
        self.extra_mounts = [str(Path(p).resolve()) for p in extra_mounts]
        self.data_size_kb = data_size_kb
        self.host = host
        self.port = port
        self.max_payload = max_payload
        self.features = tuple(features)
        self.hangup_on_close = hangup_on_close
        self.log: list[str] = []
        self._keys: list[AdbPublicKey] = []
        for source in authorized_keys:
            for line in _read_key_lines(source):
                self.authorize(line, persist=False)
        self._lock = threading.RLock()
        self._ids = 0
        self._connections: set[_Connection] = set()
        self._started: list[_Started] = []
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._holder: subprocess.Popen | None = None
        self._serving = False

    # lifecycle
    def __enter__(self) -> AdbDevice:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> AdbDevice:
        """Lay out the phone, enter its namespace and listen (again, after kill_all)."""
        check_environment()
        if self._holder is None or self._holder.poll() is not None:
            self._prepare_root()
            self._start_namespace()
        if self._serving:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.port:
            listener.bind((self.host, self.port))
        else:
            for _ in range(50):
                listener.bind((self.host, 0))
                if listener.getsockname()[1] not in ADB_PORT_RANGE:
                    break
                listener.close()
                listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.port = listener.getsockname()[1]
        listener.listen(16)
        listener.settimeout(0.1)
        self._listener, self._serving = listener, True
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True,
                                               name=f"adb-device-{self.port}")
        self._accept_thread.start()
        self._note(f"listening on {self.serial}")
        return self

    def stop(self) -> None:
        """Everything off: connections, processes, the namespace and its mounts."""
        self.kill_all()
        holder, self._holder = self._holder, None
        if holder is not None:
            with contextlib.suppress(OSError):
                holder.stdin.close()  # type: ignore[union-attr]
            try:
                holder.wait(timeout=5)
            except subprocess.TimeoutExpired:
                holder.kill()
                holder.wait()
            for pipe in (holder.stdout, holder.stderr):
                if pipe is not None:
                    pipe.close()

    def kill_all(self) -> None:
        """The phone drops off the network: stop serving, drop clients, kill every process."""
        self._serving = False
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=2)
            self._accept_thread = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self.drop_connections()
        for _ in range(100):
            pids = self.processes()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
        self._note("killed everything")

    def drop_connections(self) -> None:
        """A Wi-Fi blip: every client connection is cut; the phone keeps listening."""
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            conn.close()
        for conn in connections:
            conn.thread.join(timeout=2)

    # information
    @property
    def serial(self) -> str:
        """What an adb server calls this device after `adb connect`."""
        return f"{self.host}:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def authorized_keys(self) -> list[str]:
        return [key.text for key in self._keys]

    @property
    def started_pids(self) -> list[int]:
        """Pids of every command's shell started through ADB, in order."""
        return [s.pid for s in self._started]

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self._connections)

    def processes(self) -> list[int]:
        """Pids of every live process inside the phone (its mount namespace), any origin."""
        holder = self._holder
        if holder is None:
            return []
        try:
            namespace = os.readlink(f"/proc/{holder.pid}/ns/mnt")
        except OSError:
            return []
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == holder.pid:
                continue
            try:
                if os.readlink(f"/proc/{entry}/ns/mnt") != namespace:
                    continue
                with open(f"/proc/{entry}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state not in ("Z", "X"):
                pids.append(int(entry))
        return sorted(pids)

    def banner(self) -> str:
        """adbd's connection string: device::ro.product.name=...;...;features=..."""
        props = ";".join(f"{name}={self.props.get(name, '')}" for name in
                         ("ro.product.name", "ro.product.model", "ro.product.device"))
        return f"device::{props};features={','.join(self.features)}"

    # the phone's file system
    def path(self, device_path: str) -> Path:
        """The host path of a file on the phone, as the phone's commands see it."""
        normal = posixpath.normpath("/" + device_path.lstrip("/"))
        holder = self._holder
        if holder is not None and holder.poll() is None:
            return Path(f"/proc/{holder.pid}/root{normal if normal != '/' else ''}")
        return self.root / normal.lstrip("/")

    def install(self, name: str, host_path: str | os.PathLike[str]) -> str:
        """Copy an executable into /system/bin (e.g. a benchmark_model stand-in)."""
        target = self.root / "system" / "bin" / name
        shutil.copyfile(host_path, target)
        target.chmod(0o755)
        return f"/system/bin/{name}"

    def authorize(self, key: str, persist: bool = True) -> None:
        """Trust an adb public key (its text), as 'Always allow' does: /data/misc/adb/adb_keys."""
        parsed = AdbPublicKey.parse(key)
        if any(k.blob == parsed.blob for k in self._keys):
            return
        self._keys.append(parsed)
        if persist and self.root.exists():
            keys = self.root / "data" / "misc" / "adb" / "adb_keys"
            keys.parent.mkdir(parents=True, exist_ok=True)
            keys.write_text("".join(k.text + "\n" for k in self._keys))

    def run(self, command: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a command on the phone without ADB (test setup and inspection)."""
        return subprocess.run(self._command_argv(command), env=self._env("dumb"),
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    # internals: sandbox
    def _prepare_root(self) -> None:
        root = self.root
        for sub in ("data/local/tmp", "data/misc/adb", "system/bin", "sdcard", "dev", "proc",
                    "sys", "usr", "etc"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "data" / "local" / "tmp").chmod(0o771)
        for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            host, inside = Path("/") / name, root / name
            if host.is_symlink():
                if not inside.is_symlink() and not inside.exists():
                    inside.symlink_to(os.readlink(host))
            elif host.is_dir():
                inside.mkdir(exist_ok=True)
        sh = root / "system" / "bin" / "sh"
        if not sh.is_symlink():
            sh.symlink_to("/bin/sh")
        (root / "system" / "build.prop").write_text(
            "".join(f"{k}={v}\n" for k, v in sorted(self.props.items())))
        getprop = root / "system" / "bin" / "getprop"
        getprop.write_text(GETPROP)
        getprop.chmod(0o755)
        (root / "data" / "misc" / "adb" / "adb_keys").write_text(
            "".join(k.text + "\n" for k in self._keys))
        for extra in self.extra_mounts:
            inside = root / extra.lstrip("/")
            if Path(extra).is_dir():
                inside.mkdir(parents=True, exist_ok=True)
            else:
                inside.parent.mkdir(parents=True, exist_ok=True)
                inside.touch()

    def _mount_script(self) -> str:
        root = str(self.root)
        q = shlex.quote
        lines = ["set -e"]

        def bind(source: str, recursive: bool = False, read_only: bool = False) -> None:
            target = q(root + source)
            lines.append(f"mount --{'rbind' if recursive else 'bind'} {q(source)} {target}")
            if read_only:
                lines.append(f"mount -o remount,bind,ro {target}")

        for name in ("usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            host = Path("/") / name
            if host.is_dir() and not host.is_symlink():
                bind(str(host), read_only=True)
        bind("/dev", recursive=True)
        bind("/proc")
        bind("/sys", recursive=True)
        for extra in sorted(self.extra_mounts, key=lambda p: p.count("/")):
            bind(extra)
        if self.data_size_kb:
            lines.append(f"mount -t tmpfs -o size={int(self.data_size_kb)}k,mode=0771 "
                         f"tmpfs {q(root + '/data/local/tmp')}")
        lines.append("echo ready")
        # The holder: chrooted into the phone, alive until its stdin closes (or we die).
        lines.append(f"exec chroot {q(root)} /bin/cat > /dev/null")
        return "\n".join(lines)

    def _start_namespace(self) -> None:
        holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
             self._mount_script()],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        assert holder.stdout is not None
        ready, _, _ = select.select([holder.stdout], [], [], 15)
        line = holder.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            holder.kill()
            _, err = holder.communicate()
            raise AdbDeviceUnavailable(
                f"could not set up the phone's mount namespace: {err.decode(errors='replace')}")
        self._holder = holder
        self._note(f"namespace holder {holder.pid}")

    def _env(self, term: str) -> dict[str, str]:
        return {
            "PATH": "/system/bin:/usr/bin:/bin",
            "HOME": "/data/local/tmp",
            "TMPDIR": "/data/local/tmp",
            "SHELL": "/system/bin/sh",
            "USER": "root",
            "LOGNAME": "root",
            "HOSTNAME": "localhost",
            "TERM": term,
            "ANDROID_DATA": "/data",
            "ANDROID_ROOT": "/system",
            "EXTERNAL_STORAGE": "/sdcard",
        }

    def _command_argv(self, command: str) -> list[str]:
        assert self._holder is not None, "the device is not started"
        shell = ["/system/bin/sh", "-c", command] if command else ["/system/bin/sh", "-l"]
        # nsenter execs (no fork for a mount namespace alone): the pid is the shell's.
        return ["nsenter", "-t", str(self._holder.pid), "-m", "-r", "-w", "--", *shell]

    # internals: server
    def _note(self, message: str) -> None:
        self.log.append(f"{time.monotonic():.3f} {message}")

    def _next_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids

    def _accept_loop(self) -> None:
        listener = self._listener
        while self._serving and listener is not None:
            try:
                sock, peer = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(self, sock, peer)
            with self._lock:
                if not self._serving:
                    sock.close()
                    break
                self._connections.add(conn)
            self._note(f"{peer}: connected")
            conn.thread.start()

    def _forget(self, conn: _Connection) -> None:
        with self._lock:
            self._connections.discard(conn)
        self._note(f"{conn.peer}: disconnected")

    def _verify(self, token: bytes, signature: bytes) -> AdbPublicKey | None:
        for key in list(self._keys):
            if key.verify(token, signature):
                return key
        return None

    def _prompt_user(self, conn: _Connection, key: str) -> None:
        if self.confirm == "never":
            return
        if self.confirm == "reject":
            self._note(f"{conn.peer}: the user denied the key; dropping the connection")
            conn.close()
            return

        def allow() -> None:
            if conn.closed:
                return
            try:
                self.authorize(key)
            except ValueError as exc:
                self._note(f"{conn.peer}: unusable public key ({exc})")
                return
            self._note(f"{conn.peer}: the user allowed the key")
            conn.auth_key = key
            conn.go_online()

        if self.confirm_delay > 0:
            timer = threading.Timer(self.confirm_delay, allow)
            timer.daemon = True
            timer.start()
        else:
            allow()

    def _service_for(self, destination: str) -> Callable[[_Stream], None] | None:
        """daemon_service_to_fd: the services a phone offers here (None: refused)."""
        if destination.startswith("shell"):
            args, sep, command = destination[len("shell"):].partition(":")
            if not sep:
                return None
            pty = not command
            protocol = False
            term = "dumb"
            for arg in args.split(","):
                if arg == "raw":
                    pty = False
                elif arg == "pty":
                    pty = True
                elif arg == "v2":
                    protocol = True
                elif arg.startswith("TERM="):
                    term = arg[len("TERM="):]
            return lambda stream: self._subprocess(stream, command, pty, protocol, term)
        if destination.startswith("exec:"):
            command = destination[len("exec:"):]
            return lambda stream: self._subprocess(stream, command, False, False, "dumb")
        if destination.startswith("sync:"):
            return lambda stream: _SyncService(self, stream).run()
        return None

    def _run_service(self, service: Callable[[_Stream], None], stream: _Stream) -> None:
        try:
            service(stream)
        except Exception as exc:  # a broken service must not take the device down
            self._note(f"service {stream.service!r} failed: {exc!r}")
        finally:
            stream.finish()

    # internals: subprocesses (daemon/shell_service.cpp)
    def _subprocess(self, stream: _Stream, command: str, pty: bool, protocol: bool,
                    term: str) -> None:
        # Without the shell protocol adbd always uses a PTY, in raw mode unless a PTY was
        # asked for: closing it is what tells the command the client went away.
        make_raw = not protocol and not pty
        pty = pty or not protocol
        argv = self._command_argv(command)
        env = self._env(term)
        err_fd = -1
        if pty:
            master, slave = os.openpty()
            if make_raw:
                _make_raw(slave)
            try:
                process = subprocess.Popen(["setsid", "--ctty", *argv], stdin=slave,
                                           stdout=slave, stderr=slave, env=env)
            finally:
                os.close(slave)
            out_fd, in_fd = master, master
        else:
            ours, theirs = socket.socketpair()
            err_ours, err_theirs = socket.socketpair()
            try:
                process = subprocess.Popen(argv, stdin=theirs, stdout=theirs,
                                           stderr=err_theirs, env=env, start_new_session=True)
            finally:
                theirs.close()
                err_theirs.close()
            out_fd = in_fd = ours.detach()  # stdin and stdout: one socketpair, as adbd's
            err_fd = err_ours.detach()
        for fd in {out_fd, err_fd, in_fd} - {-1}:
            os.set_blocking(fd, False)
        self._started.append(_Started(process.pid, command, process))
        self._note(f"stream {stream.local_id}: pid {process.pid} runs {command!r}")
        pump = _Pump(stream, process, out_fd, err_fd, in_fd, pty=pty, protocol=protocol,
                     hangup=self.hangup_on_close)
        pump.run()


def _make_raw(fd: int) -> None:
    """cfmakeraw(3), as adbd applies it to the PTY of a command without the shell protocol."""
    iflag, oflag, cflag, lflag, ispeed, ospeed, cc = termios.tcgetattr(fd)
    iflag &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP
               | termios.INLCR | termios.IGNCR | termios.ICRNL | termios.IXON)
    oflag &= ~termios.OPOST
    lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    cflag = (cflag & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
    cc[termios.VMIN], cc[termios.VTIME] = 1, 0
    termios.tcsetattr(fd, termios.TCSADRAIN, [iflag, oflag, cflag, lflag, ispeed, ospeed, cc])


class _Pump:
    """Subprocess::PassDataStreams and WaitForExit: output to the stream, input to the child."""

    def __init__(self, stream: _Stream, process: subprocess.Popen, out_fd: int, err_fd: int,
                 in_fd: int, *, pty: bool, protocol: bool, hangup: bool):
        self.stream, self.process = stream, process
        self.out_fd, self.err_fd, self.in_fd = out_fd, err_fd, in_fd
        self.pty, self.protocol, self.hangup = pty, protocol, hangup
        self._stop = threading.Event()
        self._stdin_closed = False

    def _frame(self, kind: int, data: bytes) -> bytes:
        return SHELL_HEADER.pack(kind, len(data)) + data if self.protocol else data

    def run(self) -> None:
        writer = threading.Thread(target=self._input_loop, daemon=True,
                                  name=f"adb-stdin-{self.stream.local_id}")
        writer.start()
        alive = {fd: kind for fd, kind in ((self.out_fd, ID_STDOUT), (self.err_fd, ID_STDERR))
                 if fd >= 0}
        closed_by_client = False
        while alive:
            if self.stream.closed:
                closed_by_client = True
                break
            ready, _, _ = select.select(list(alive), [], [], 0.1)
            for fd in ready:
                try:
                    data = os.read(fd, MAX_PAYLOAD - SHELL_HEADER.size)
                except BlockingIOError:
                    continue
                except OSError as exc:  # EIO: the PTY's last slave closed
                    if exc.errno not in (errno.EIO, errno.ECONNRESET):
                        raise
                    data = b""
                if not data:
                    del alive[fd]
                elif not self.stream.write(self._frame(alive[fd], data)):
                    closed_by_client = True
                    break
            if closed_by_client:
                break
        self._stop.set()
        self.stream.interrupt()
        writer.join()
        if closed_by_client:
            self._client_went_away(alive)
            return
        self._close_fds()
        if not self.protocol:
            # The PTY is done (EIO): adbd closes the stream whether or not the shell exited.
            self.stream.finish()
            threading.Thread(target=self.process.wait, daemon=True).start()
            return
        # Both outputs ended: wait for the shell to exit, then report it (WaitForExit).
        status = self.process.wait()
        code = 0x80 | -status if status < 0 else status & 0xFF
        self.stream.write(self._frame(ID_EXIT, bytes([code])))

    def _client_went_away(self, alive: dict[int, int]) -> None:
        if self.hangup:
            if self.protocol:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.process.pid, signal.SIGHUP)
            self._close_fds()  # the PTY hangs up; the child's next write gets EPIPE
            threading.Thread(target=self.process.wait, daemon=True).start()
            return
        # Leave the command alone: keep reading its output (and dropping it) until it ends.

        def drain() -> None:
            open_fds = list(alive)
            while open_fds:
                ready, _, _ = select.select(open_fds, [], [])
                for fd in ready:
                    try:
                        data = os.read(fd, 65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        open_fds.remove(fd)
            self.process.wait()
            self._close_fds()

        threading.Thread(target=drain, daemon=True).start()

    def _close_fds(self) -> None:
        for fd in {self.out_fd, self.err_fd, self.in_fd}:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.out_fd = self.err_fd = self.in_fd = -1

    def _input_loop(self) -> None:
        buffer = bytearray()
        while not self._stop.is_set():
            chunk = self.stream.read()
            if chunk is None:
                return
            if not chunk:
                return
            if not self.protocol:
                self._write_stdin(chunk)
                continue
            buffer += chunk
            while len(buffer) >= SHELL_HEADER.size:
                kind, length = SHELL_HEADER.unpack_from(buffer)
                if len(buffer) < SHELL_HEADER.size + length:
                    break
                data = bytes(buffer[SHELL_HEADER.size:SHELL_HEADER.size + length])
                del buffer[:SHELL_HEADER.size + length]
                self._on_packet(kind, data)

    def _on_packet(self, kind: int, data: bytes) -> None:
        if kind == ID_STDIN:
            self._write_stdin(data)
        elif kind == ID_CLOSE_STDIN:
            if not self.pty and not self._stdin_closed:
                self._stdin_closed = True
                with contextlib.suppress(OSError), socket.socket(
                        fileno=os.dup(self.in_fd)) as stdin:
                    stdin.shutdown(socket.SHUT_WR)
        elif kind == ID_WINDOW_SIZE_CHANGE and self.pty:
            try:
                rows, cols, xpixels, ypixels = (
                    int(v) for part in data.rstrip(b"\0").decode().split(",")
                    for v in part.split("x"))
            except ValueError:
                return
            with contextlib.suppress(OSError):
                fcntl.ioctl(self.in_fd, termios.TIOCSWINSZ,
                            struct.pack("HHHH", rows, cols, xpixels, ypixels))

    def _write_stdin(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self._stop.is_set() and not self._stdin_closed:
            _, writable, _ = select.select([], [self.in_fd], [], 0.1)
            if not writable:
                continue
            try:
                written = os.write(self.in_fd, view)
            except BlockingIOError:
                continue
            except OSError:
                return
            view = view[written:]


# --- sync: (daemon/file_sync_service.cpp) ---------------------------------------------------


class _SyncFailure(Exception):
    """Ends the sync service after an ID_FAIL has been sent (adbd returns false)."""


class _SyncService:
    """The file service: sync requests in, sync responses out, over one stream."""

    def __init__(self, device: AdbDevice, stream: _Stream):
        self.device, self.stream = device, stream
        self._buffer = bytearray()

    def _read_exact(self, size: int) -> bytes | None:
        while len(self._buffer) < size:
            chunk = self.stream.read()
            if not chunk:
                return None
            self._buffer += chunk
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def _send(self, data: bytes) -> None:
        self.stream.write(data)

    def _fail(self, reason: str) -> None:
        message = reason.encode()
        self._send(SYNC_MSG.pack(ID_FAIL, len(message)) + message)

    def _fail_errno(self, reason: str, exc: OSError) -> None:
        self._fail(f"{reason}: {os.strerror(exc.errno or errno.EIO)}")

    def _host(self, path: str) -> str:
        return str(self.device.path(path))

    def run(self) -> None:
        while True:
            header = self._read_exact(SYNC_MSG.size)
            if header is None:
                return
            request, length = SYNC_MSG.unpack(header)
            if length > 1024:
                self._fail("path too long")
                return
            raw = self._read_exact(length)
            if raw is None:
                self._fail("filename read failure")
                return
            name = raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            handler = {
                ID_LSTAT_V1: self._lstat_v1, ID_STAT_V2: self._stat_v2,
                ID_LSTAT_V2: self._stat_v2, ID_LIST_V1: self._list, ID_LIST_V2: self._list,
                ID_SEND_V1: self._send_v1, ID_SEND_V2: self._send_v2,
                ID_RECV_V1: self._recv_v1, ID_RECV_V2: self._recv_v2,
            }.get(request)
            if request == ID_QUIT:
                return
            if handler is None:
                self._fail(f"unknown command {request:08x}")
                return
            try:
                handler(request, name)
            except _SyncFailure:
                return

    def _lstat_v1(self, request: int, name: str) -> None:
        try:
            st = os.lstat(self._host(name))
            fields = (st.st_mode, st.st_size, int(st.st_mtime))
        except OSError:
            fields = (0, 0, 0)
        self._send(STAT_V1.pack(ID_LSTAT_V1, *(v & 0xFFFFFFFF for v in fields)))

    def _stat_v2(self, request: int, name: str) -> None:
        try:
            st = os.stat(self._host(name), follow_symlinks=request == ID_STAT_V2)
        except OSError as exc:
            self._send(STAT_V2.pack(request, exc.errno or errno.EIO, *(0,) * 10))
            return
        self._send(STAT_V2.pack(request, 0, *_stat_fields(st)))

    def _list(self, request: int, name: str) -> None:
        v2 = request == ID_LIST_V2
        host = self._host(name)
        out = bytearray()
        try:
            entries = [".", "..", *(e.name for e in os.scandir(host))]
        except OSError:
            entries = []
        for entry in entries:
            try:
                st = os.lstat(self._host(posixpath.join(name, entry)) if entry != "."
                              else host)
            except OSError as exc:
                if not v2:
                    continue
                error, fields = exc.errno or errno.EIO, (0,) * 10
            else:
                error, fields = 0, _stat_fields(st)
            encoded = entry.encode("utf-8", "surrogateescape")
            if v2:
                out += DENT_V2.pack(ID_DENT_V2, error, *fields, len(encoded))
            else:
                out += DENT_V1.pack(ID_DENT_V1, st.st_mode & 0xFFFFFFFF,
                                    st.st_size & 0xFFFFFFFF, int(st.st_mtime) & 0xFFFFFFFF,
                                    len(encoded))
            out += encoded
            if len(out) >= SYNC_DATA_MAX:
                self._send(bytes(out))
                out.clear()
        # DONE is a whole dent with every other field zero (adbd memsets the message).
        out += DENT_V2.pack(ID_DONE, *(0,) * 12) if v2 else DENT_V1.pack(ID_DONE, 0, 0, 0, 0)
        self._send(bytes(out))

    def _send_v1(self, request: int, spec: str) -> None:
        path, comma, mode_text = spec.rpartition(",")
        if not comma:
            self._fail("missing , in ID_SEND_V1")
            raise _SyncFailure
        self._send_impl(path, _strtoul(mode_text))

    def _send_v2(self, request: int, path: str) -> None:
        setup = self._read_exact(12)
        if setup is None:
            raise _SyncFailure
        _, mode, flags = struct.unpack("<III", setup)
        if flags:
            self._fail(f"unknown flags: {flags}")
            raise _SyncFailure
        self._send_impl(path, mode)

    def _send_impl(self, path: str, mode: int) -> None:
        host = self._host(path)
        try:
            st = os.lstat(host)
            do_unlink = stat.S_ISREG(st.st_mode) or (
                stat.S_ISLNK(st.st_mode) and not stat.S_ISLNK(mode))
        except OSError:
            do_unlink = True
        if do_unlink:
            with contextlib.suppress(OSError):
                os.unlink(host)
        if stat.S_ISLNK(mode):
            timestamp = self._send_link(path, host)
        else:
            mode &= 0o777
            mode |= (mode >> 3) & 0o070  # copy the user's bits to group and other
            mode |= (mode >> 3) & 0o007
            timestamp = self._send_file(path, host, mode, do_unlink)
        with contextlib.suppress(OSError):
            os.utime(host, (timestamp, timestamp), follow_symlinks=False)
        self._send(SYNC_MSG.pack(ID_OKAY, 0))

    def _mkdirs(self, directory: str) -> None:
        partial = ""
        for part in directory.split("/"):
            if not part:
                continue
            partial += "/" + part
            with contextlib.suppress(FileExistsError):
                os.mkdir(self._host(partial), 0o775)

    def _open_for_send(self, path: str, host: str, mode: int) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            return os.open(host, flags, mode)
        except FileNotFoundError:
            try:
                self._mkdirs(posixpath.dirname(path))
            except OSError as exc:
                self._fail_errno("secure_mkdirs failed", exc)
                raise _SyncFailure from None
        except FileExistsError:
            return os.open(host, os.O_WRONLY | os.O_CLOEXEC, mode)
        try:
            return os.open(host, flags, mode)
        except FileExistsError:
            return os.open(host, os.O_WRONLY | os.O_CLOEXEC, mode)

    def _send_file(self, path: str, host: str, mode: int, do_unlink: bool) -> int:
        try:
            fd = self._open_for_send(path, host, mode)
        except OSError as exc:
            self._fail_errno("couldn't create file", exc)
            self._discard_until_done(host, do_unlink)
        except _SyncFailure:
            self._discard_until_done(host, do_unlink)
        try:
            with contextlib.suppress(OSError):
                os.fchmod(fd, mode)  # the mode, exactly (a umask does not apply)
            while True:
                header = self._read_exact(SYNC_MSG.size)
                if header is None:
                    raise _SyncFailure
                kind, size = SYNC_MSG.unpack(header)
                if kind == ID_DONE:
                    return size
                if kind != ID_DATA:
                    self._fail("invalid data message")
                    self._discard_until_done(host, do_unlink)
                if size > SYNC_DATA_MAX:
                    self._fail("oversize data message")
                    self._discard_until_done(host, do_unlink)
                data = self._read_exact(size)
                if data is None:
                    raise _SyncFailure
                try:
                    _write_all(fd, data)
                except OSError as exc:
                    self._fail_errno("write failed", exc)
                    self._discard_until_done(host, do_unlink)
        finally:
            os.close(fd)

    def _discard_until_done(self, host: str, do_unlink: bool) -> NoReturn:
        """After a FAIL adbd reads and drops DATA until DONE, removes the file, and ends."""
        while True:
            header = self._read_exact(SYNC_MSG.size)
            if header is None:
                break
            kind, size = SYNC_MSG.unpack(header)
            if kind != ID_DATA or size > SYNC_DATA_MAX or self._read_exact(size) is None:
                break
        if do_unlink:
            with contextlib.suppress(OSError):
                os.unlink(host)
        raise _SyncFailure

    def _send_link(self, path: str, host: str) -> int:
        header = self._read_exact(SYNC_MSG.size)
        if header is None:
            raise _SyncFailure
        kind, size = SYNC_MSG.unpack(header)
        if kind != ID_DATA:
            self._fail("invalid data message: expected ID_DATA")
            raise _SyncFailure
        if size > SYNC_DATA_MAX:
            self._fail("oversize data message")
            raise _SyncFailure
        data = self._read_exact(size)
        if data is None:
            raise _SyncFailure
        target = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        try:
            current = os.readlink(host)
        except OSError:
            current = None
        if current != target:
            with contextlib.suppress(OSError):
                os.unlink(host)
            try:
                try:
                    os.symlink(target, host)
                except FileNotFoundError:
                    self._mkdirs(posixpath.dirname(path))
                    os.symlink(target, host)
            except OSError as exc:
                self._fail_errno("symlink failed", exc)
                raise _SyncFailure from None
        header = self._read_exact(SYNC_MSG.size)
        if header is None:
            raise _SyncFailure
        kind, timestamp = SYNC_MSG.unpack(header)
        if kind != ID_DONE:
            self._fail("invalid data message: expected ID_DONE")
            raise _SyncFailure
        return timestamp

    def _recv_v1(self, request: int, name: str) -> None:
        self._recv_impl(name)

    def _recv_v2(self, request: int, name: str) -> None:
        setup = self._read_exact(8)
        if setup is None:
            raise _SyncFailure
        _, flags = struct.unpack("<II", setup)
        if flags:
            self._fail(f"unknown flags: {flags}")
            raise _SyncFailure
        self._recv_impl(name)

    def _recv_impl(self, name: str) -> None:
        try:
            fd = os.open(self._host(name), os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            self._fail_errno("open failed", exc)
            raise _SyncFailure from None
        try:
            while True:
                try:
                    data = os.read(fd, SYNC_DATA_MAX - SYNC_MSG.size)
                except OSError as exc:
                    self._fail_errno("read failed", exc)
                    raise _SyncFailure from None
                if not data:
                    break
                self._send(SYNC_MSG.pack(ID_DATA, len(data)) + data)
        finally:
            os.close(fd)
        self._send(SYNC_MSG.pack(ID_DONE, 0))


def _stat_fields(st: os.stat_result) -> tuple[int, ...]:
    """sync_stat_v2's fields after id and error."""
    return (st.st_dev, st.st_ino, st.st_mode, st.st_nlink, st.st_uid, st.st_gid,
            st.st_size, int(st.st_atime), int(st.st_mtime), int(st.st_ctime))


def _strtoul(text: str) -> int:
    """strtoul(text, nullptr, 0): leading digits in base 16, 8 or 10; nothing parsed is 0."""
    text = text.strip()
    if text[:2].lower() == "0x":
        base, digits, text = 16, "0123456789abcdefABCDEF", text[2:]
    elif text.startswith("0"):
        base, digits = 8, "01234567"
    else:
        base, digits = 10, "0123456789"
    end = 0
    while end < len(text) and text[end] in digits:
        end += 1
    return int(text[:end], base) if end else 0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
