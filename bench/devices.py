"""Device files: one TOML per device under devices/, the device named by the file stem.

A device is a transport (how to reach it) plus a runner (what measures there) plus
the backends it declares. Validation is strict: an unknown key, a missing field or
a wrong type is an error that names the file and the key, never a silent default.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bench.errors import UsageError
from bench.runners.pyrunner import AUTO_MODULES
from bench.transports.adb_common import CLIENTS, PHONE_TMP, ADBSettings
from bench.transports.ssh import SSHSettings

DEVICES_DIR = Path("devices")
TRANSPORTS = ("local", "ssh", "adb")
RUNNERS = ("python", "benchmark_model")
BACKENDS = ("xnnpack", "cpu", "gpu", "nnapi", "hexagon", "external")
TFLITE_MODULES = ("auto", *AUTO_MODULES)


@dataclass(frozen=True)
class BenchmarkModelSettings:
    """TFLite's benchmark_model binary and what it needs, as local paths to stage."""

    binary: str
    cpu_mask: str | None = None  # taskset mask; None: the device's big cores
    extra_flags: tuple[str, ...] = ()
    gpu_backend: str | None = None  # cl | gl (--gpu_backend)
    gpu_precision_loss_allowed: bool | None = None
    nnapi_accelerator: str | None = None  # --nnapi_accelerator_name
    hexagon_lib_dir: str | None = None  # holds libhexagon_interface.so and the skel libraries
    external_delegate: str | None = None  # a delegate .so (Qualcomm QNN goes here)
    external_delegate_options: str | None = None  # "key:value;key:value"


@dataclass(frozen=True)
class Device:
    name: str
    file: Path
    transport: str
    runner: str
    python: str
    tflite_module: str
    threads: tuple[int, ...]
    backends: tuple[str, ...]
    cpus: tuple[int, ...] | None
    work_dir: str
    timeout_s: float
    description: str = ""
    cooldown_s: float = 0.0
    thermal_zone: str | None = None
    thermal_max_c: float | None = None
    thermal_timeout_s: float = 300.0
    ssh: SSHSettings | None = None
    adb: ADBSettings | None = None
    benchmark_model: BenchmarkModelSettings | None = None

    @property
    def interpreter(self) -> str:
        """The Python command that runs the runner on the device."""
        return sys.executable if self.python == "harness" else self.python


# key: (types accepted, required, help)
_SCHEMA: dict[str, tuple[tuple[type, ...], bool, str]] = {
    "transport": ((str,), True, "one of " + ", ".join(TRANSPORTS)),
    "runner": ((str,), True, "one of " + ", ".join(RUNNERS)),
    "description": ((str,), False, "free text"),
    "python": ((str,), False, "the device's Python ('harness': the one running bench)"),
    "tflite_module": ((str,), False, ", ".join(TFLITE_MODULES)),
    "threads": ((list,), False, "list of thread counts, e.g. [1, 2]"),
    "backends": ((list,), False, "list of backends: " + ", ".join(BACKENDS)),
    "cpus": ((list,), False, "list of CPU numbers to pin the runner to, e.g. [0]"),
    "work_dir": ((str,), False, "directory on the device for the runner and models"),
    "timeout_s": ((int, float), False, "seconds one measurement may take before it is killed"),
    "cooldown_s": ((int, float), False, "seconds to pause between rounds"),
    "thermal_zone": ((str,), False, "temperature file(s) in millidegrees C, a glob allowed, "
                     "e.g. /sys/class/thermal/thermal_zone*/temp"),
    "thermal_max_c": ((int, float), False, "between rounds, wait until the hottest zone is "
                      "at or below this temperature"),
    "thermal_timeout_s": ((int, float), False, "longest wait for cooling (default 300)"),
    "ssh": ((dict,), False, "a table [ssh] with host, port, user, key_file, agent, "
            "known_hosts, trust_on_first_use, jump_host, connect_timeout_s"),
    "adb": ((dict,), False, "a table [adb] with client, host, port, serial, adb, server_host, "
            "server_port, key_file, auth_timeout_s, connect_timeout_s"),
    "benchmark_model": ((dict,), False, "a table [benchmark_model] with binary, cpu_mask, "
                        "extra_flags, gpu_backend, gpu_precision_loss_allowed, "
                        "nnapi_accelerator, hexagon_lib_dir, external_delegate, "
                        "external_delegate_options"),
}
_ADB_SCHEMA: dict[str, tuple[tuple[type, ...], bool, str]] = {
    "client": ((str,), False, "adb-shell (TCP to the phone's adbd, no server) or adb (the "
               "system client, by serial)"),
    "host": ((str,), False, "adb-shell: the phone's address (in `adb tcpip` mode)"),
    "port": ((int,), False, "adb-shell: adbd's TCP port (default 5555)"),
    "serial": ((str,), False, "adb: the serial `adb devices` shows (host:port for Wi-Fi)"),
    "adb": ((str,), False, "adb: the client binary (default adb)"),
    "server_host": ((str,), False, "adb: a lab host's adb server (adb -H)"),
    "server_port": ((int,), False, "adb: its port (adb -P)"),
    "key_file": ((str,), False, "adb-shell: private key (default ~/.android/adbkey)"),
    "auth_timeout_s": ((int, float), False, "seconds to wait for the on-phone 'Allow'"),
    "connect_timeout_s": ((int, float), False, "seconds to wait for the connection"),
}
_BENCHMARK_MODEL_SCHEMA: dict[str, tuple[tuple[type, ...], bool, str]] = {
    "binary": ((str,), True, "the benchmark_model binary on this computer, staged to the "
               "device (e.g. android_aarch64_benchmark_model)"),
    "cpu_mask": ((str,), False, "taskset mask in hex, e.g. 'f0' (default: the big cores)"),
    "extra_flags": ((list,), False, "more flags passed as they are, e.g. ['--use_caching=true']"),
    "gpu_backend": ((str,), False, "cl or gl"),
    "gpu_precision_loss_allowed": ((bool,), False, "let the GPU compute in fp16"),
    "nnapi_accelerator": ((str,), False, "NNAPI accelerator name, e.g. qti-dsp"),
    "hexagon_lib_dir": ((str,), False, "directory holding libhexagon_interface.so and the "
                        "libhexagon_nn_skel*.so files"),
    "external_delegate": ((str,), False, "a delegate .so on this computer (e.g. Qualcomm QNN)"),
    "external_delegate_options": ((str,), False, "its options, 'key:value;key:value'"),
}
_SSH_SCHEMA: dict[str, tuple[tuple[type, ...], bool, str]] = {
    "host": ((str,), True, "the board's address or name"),
    "port": ((int,), False, "TCP port (default 22)"),
    "user": ((str,), False, "login name"),
    "key_file": ((str,), False, "private key file (default: agent and ~/.ssh keys)"),
    "agent": ((bool,), False, "use the SSH agent (default true)"),
    "known_hosts": ((str,), False, "known_hosts file (default ~/.ssh/known_hosts)"),
    "trust_on_first_use": ((bool,), False, "record an unknown host key instead of refusing"),
    "jump_host": ((str,), False, "[user@]host[:port] to hop through"),
    "connect_timeout_s": ((int, float), False, "seconds to wait for the connection"),
}
_SAFE_PATTERN = re.compile(r"^[A-Za-z0-9_./*?-]+$")


def _fail(path: Path, key: str | None, message: str) -> UsageError:
    where = f"{path}: key '{key}'" if key else str(path)
    return UsageError(f"device file {where}: {message}")


def load_device(path: Path) -> Device:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"device file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise _fail(path, None, f"not valid TOML ({exc}); fix the syntax") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(path, None, f"cannot read it ({exc})") from None
    _check_table(path, data, _SCHEMA, "")
    transport = _choice(path, "transport", data["transport"], TRANSPORTS)
    runner = _choice(path, "runner", data["runner"], RUNNERS)
    backends = tuple(_list_of(path, "backends", data.get("backends", ["xnnpack"]), str))
    for backend in backends:
        _choice(path, "backends", backend, BACKENDS)
    threads = tuple(_list_of(path, "threads", data.get("threads", [1]), int))
    if not threads or any(t < 1 for t in threads):
        raise _fail(path, "threads", "needs at least one thread count, each >= 1")
    cpus = data.get("cpus")
    if cpus is not None:
        cpus = tuple(_list_of(path, "cpus", cpus, int))
    timeout = float(data.get("timeout_s", 600))
    if timeout <= 0:
        raise _fail(path, "timeout_s", "must be positive")
    for key in ("cooldown_s", "thermal_timeout_s"):
        if data.get(key, 0) < 0:
            raise _fail(path, key, "must not be negative")
    zone = data.get("thermal_zone")
    if zone is not None and not _SAFE_PATTERN.match(zone):
        raise _fail(path, "thermal_zone", "only letters, digits and _ . / * ? - are allowed")
    if "thermal_max_c" in data and zone is None:
        zone = "/sys/class/thermal/thermal_zone*/temp"
    module = data.get("tflite_module", "auto")
    _choice(path, "tflite_module", module, TFLITE_MODULES)
    name = path.stem
    default_work = str(Path(tempfile.gettempdir()) / f"bench-work-{os.getuid()}" / name)
    ssh = None
    if transport == "ssh":
        if "ssh" not in data:
            raise _fail(path, "ssh", "missing: ssh devices need an [ssh] table with host")
        _check_table(path, data["ssh"], _SSH_SCHEMA, "ssh.")
        ssh = SSHSettings(**{k: v for k, v in data["ssh"].items()})
        if ssh.port < 1 or ssh.port > 65535:
            raise _fail(path, "ssh.port", "must be 1..65535")
        if data.get("python", "python3") == "harness":
            raise _fail(path, "python", "'harness' only makes sense for local devices")
        default_work = "bench-work"  # relative: in the login's home directory
    elif "ssh" in data:
        raise _fail(path, "ssh", f"an [ssh] table on a '{transport}' device")
    adb = None
    if transport == "adb":
        adb = _adb_settings(path, data.get("adb"))
        default_work = f"{PHONE_TMP}/bench-work"
        if data.get("python") == "harness":
            raise _fail(path, "python", "'harness' only makes sense for local devices")
    elif "adb" in data:
        raise _fail(path, "adb", f"an [adb] table on a '{transport}' device")
    benchmark_model = None
    if runner == "benchmark_model":
        benchmark_model = _benchmark_model_settings(path, data.get("benchmark_model"))
    elif "benchmark_model" in data:
        raise _fail(path, "benchmark_model", f"a [benchmark_model] table with runner "
                    f"'{runner}'")
    work_dir = data.get("work_dir", default_work)
    problem = unsafe_work_dir(work_dir)
    if problem:
        raise _fail(path, "work_dir", problem)
    return Device(
        name=name, file=path, transport=transport, runner=runner,
        python=data.get("python", "harness" if transport == "local" else "python3"),
        tflite_module=module, threads=threads,
        backends=backends, cpus=cpus, work_dir=work_dir,
        timeout_s=timeout, description=data.get("description", ""),
        cooldown_s=float(data.get("cooldown_s", 0.0)), thermal_zone=zone,
        thermal_max_c=data.get("thermal_max_c"),
        thermal_timeout_s=float(data.get("thermal_timeout_s", 300.0)), ssh=ssh, adb=adb,
        benchmark_model=benchmark_model,
    )


def _adb_settings(path: Path, table: dict | None) -> ADBSettings:
    if table is None:
        raise _fail(path, "adb", "missing: adb devices need an [adb] table (host for adb-shell, "
                    "or client = \"adb\" and serial)")
    _check_table(path, table, _ADB_SCHEMA, "adb.")
    client = table.get("client", "adb-shell")
    _choice(path, "adb.client", client, CLIENTS)
    if client == "adb-shell" and not table.get("host"):
        raise _fail(path, "adb.host", "missing: adb-shell reaches the phone's adbd over TCP; "
                    "give its address (after `adb tcpip 5555`), or use client = \"adb\"")
    if client == "adb" and not table.get("serial"):
        raise _fail(path, "adb.serial", "missing: the adb client needs the phone's serial "
                    "(`adb devices` lists it)")
    for key in ("port", "server_port"):
        if key in table and not 1 <= table[key] <= 65535:
            raise _fail(path, f"adb.{key}", "must be 1..65535")
    return ADBSettings(**table)


def _benchmark_model_settings(path: Path, table: dict | None) -> BenchmarkModelSettings:
    if table is None:
        raise _fail(path, "benchmark_model", "missing: runner benchmark_model needs a "
                    "[benchmark_model] table naming the binary")
    _check_table(path, table, _BENCHMARK_MODEL_SCHEMA, "benchmark_model.")
    flags = tuple(_list_of(path, "benchmark_model.extra_flags", table.get("extra_flags", []),
                           str))
    for flag in flags:
        if not flag.startswith("--"):
            raise _fail(path, "benchmark_model.extra_flags", f"{flag!r} is not a --flag=value")
    mask = table.get("cpu_mask")
    if mask is not None and not re.fullmatch(r"(0x)?[0-9a-fA-F]+", mask):
        raise _fail(path, "benchmark_model.cpu_mask", f"{mask!r} is not a hex CPU mask")
    if table.get("gpu_backend") not in (None, "cl", "gl"):
        raise _fail(path, "benchmark_model.gpu_backend", "expected cl or gl")
    return BenchmarkModelSettings(**{**table, "extra_flags": flags})


def unsafe_work_dir(work_dir: str) -> str | None:
    """Why a work directory is unsafe for the harness to stage into and clean, or None.

    The harness creates and cleans files there; a root, a home or a relative `.` would
    put them (and `bench devices clean`) among the user's own files."""
    text = work_dir.strip()
    parts = PurePosixPath(text).parts
    if not text:
        return "is empty; name a directory of its own, e.g. bench-work"
    if text in ("/", ".", "./", "~", "~/", "$HOME") or ".." in parts or text.startswith("~"):
        return (f"{work_dir!r} is not a directory of the harness's own (no '/', '.', '~' or "
                "'..'); use e.g. 'bench-work' or '/tmp/bench-work'")
    if any(c in text for c in "\n\0"):
        return "contains a newline or NUL"
    if text.rstrip("/") in ("/tmp", "/data/local/tmp", "/home", "/root", "/usr", "/etc", "/var"):
        return f"{work_dir!r} is a shared system directory; use a subdirectory of it"
    return None


def _check_table(path: Path, data: dict, schema: dict, prefix: str) -> None:
    """Unknown keys, missing required keys and wrong types, each naming file and key."""
    for key in data:
        if key not in schema:
            raise _fail(path, prefix + key,
                        f"unknown key; known keys: {', '.join(prefix + k for k in schema)}")
    for key, (types, required, help_text) in schema.items():
        if key not in data:
            if required:
                raise _fail(path, prefix + key, f"missing (required: {help_text})")
            continue
        value = data[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            kind = type(value).__name__
            raise _fail(path, prefix + key, f"expected {help_text}, got {kind} {value!r}")


def _choice(path: Path, key: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise _fail(path, key, f"{value!r} is not one of {', '.join(allowed)}")
    return value


def _list_of(path: Path, key: str, value, item_type: type) -> list:
    if not isinstance(value, list) or not all(
        isinstance(v, item_type) and not isinstance(v, bool) for v in value
    ):
        raise _fail(path, key, f"expected a list of {item_type.__name__}, got {value!r}")
    return value


def available_devices(directory: Path = DEVICES_DIR) -> list[str]:
    return sorted(p.stem for p in Path(directory).glob("*.toml"))


def load_devices(names: list[str], directory: Path = DEVICES_DIR) -> list[Device]:
    devices = []
    for name in names:
        path = Path(directory) / f"{name}.toml"
        if not path.is_file():
            known = ", ".join(available_devices(directory)) or "none"
            raise UsageError(f"unknown device {name!r}: no {path} (devices here: {known}); "
                             "add a device file or fix the name")
        devices.append(load_device(path))
    return devices
