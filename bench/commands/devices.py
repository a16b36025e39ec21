"""`bench devices list` and `bench devices check NAME`.

`check` answers, one line each, what a user needs before a sweep: can the device be
reached, which Python and TFLite runtime it has, what its CPU offers int8 kernels, how
much disk its work directory has, and whether it is throttling — with what to fix when
a line fails.
"""

from __future__ import annotations

import argparse
import json

from bench.devices import available_devices, load_device
from bench.errors import EXIT_DEVICE, EXIT_OK, EXIT_USAGE, BenchError
from bench.report.notes import int8_path
from bench.transports import open_transport
from bench.transports.base import TransportError

# Runs on the device with its own Python (>= 3.8, stdlib only): versions and CPU flags.
PROBE = r"""
import json, platform, sys, importlib
out = {"python": sys.version.split()[0], "machine": platform.machine(), "runtimes": {}}
for name in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow"):
    try:
        module = importlib.import_module(name.split(".")[0])
        importlib.import_module(name)
        out["runtimes"][name] = str(getattr(module, "__version__", "installed"))
    except Exception as exc:
        out["runtimes"][name] = None
try:
    import numpy
    out["numpy"] = numpy.__version__
except Exception:
    out["numpy"] = None
model, flags = "unknown", []
try:
    for line in open("/proc/cpuinfo"):
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware") and model == "unknown":
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = value.split()
except OSError:
    pass
out["cpu"], out["flags"] = model, flags
print(json.dumps(out))
"""


def list_devices(args: argparse.Namespace) -> int:
    command = getattr(args, "devices_command", "list")
    if command == "check":
        return check_device(args)
    if command == "clean":
        return clean_device(args)
    names = available_devices(args.devices_dir)
    if not names:
        print(f"no device files in {args.devices_dir}/")
        return EXIT_USAGE
    status = EXIT_OK
    for name in names:
        try:
            device = load_device(args.devices_dir / f"{name}.toml")
        except BenchError as exc:
            print(f"{name:<12} INVALID: {exc}")
            status = EXIT_USAGE
            continue
        where = f" {device.ssh.target}" if device.ssh else ""
        print(f"{name:<12} {device.transport}{where}/{device.runner}  backends "
              f"{','.join(device.backends)}  threads {','.join(map(str, device.threads))}  "
              f"{device.description}")
    return status



def clean_device(args: argparse.Namespace) -> int:
    """Remove what bench staged in the work directory (never the directory's other files)."""
    device = load_device(args.devices_dir / f"{args.name}.toml")
    transport = open_transport(device)
    try:
        work = device.work_dir.rstrip("/")
        script = ('cd "$1" 2>/dev/null || exit 0; du -sk models jobs pyrunner-*.py 2>/dev/null '
                  '| awk \'{s+=$1} END {print s+0}\'; rm -rf models jobs pyrunner-*.py')
        result = transport.run(["sh", "-c", script, "sh", work], timeout=120)
    except TransportError as exc:
        print(f"bench: cannot reach {device.name}: {exc}")
        return EXIT_DEVICE
    finally:
        transport.close()
    if result.returncode != 0:
        print(f"bench: cleaning {work} on {device.name} failed: {result.tail(2)}")
        return EXIT_DEVICE
    freed = result.stdout.strip() or "0"
    print(f"{device.name}: removed the staged runner, models and jobs from {work} "
          f"({int(freed) // 1024} MB freed)")
    return EXIT_OK


def check_device(args: argparse.Namespace) -> int:
    device = load_device(args.devices_dir / f"{args.name}.toml")
    transport = open_transport(device)
    python = device.interpreter
    failures = 0

    def line(ok: bool, what: str, detail: str) -> None:
        nonlocal failures
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {what:<12} {detail}")

    try:
        try:
            hello = transport.run(["uname", "-srm"], timeout=60)
            line(hello.returncode == 0, "reachable", hello.stdout.strip() or hello.tail())
        except TransportError as exc:
            line(False, "reachable", f"{exc}")
            return EXIT_DEVICE
        probe = transport.run([python, "-I", "-c", PROBE], timeout=120)
        if probe.returncode != 0:
            line(False, "python", f"`{python}` failed ({probe.tail(2)}); set `python` in "
                 f"{device.file} to a Python >= 3.8 with numpy")
            return EXIT_DEVICE
        facts = json.loads(probe.stdout.strip().splitlines()[-1])
        major_minor = tuple(int(x) for x in facts["python"].split(".")[:2])
        line(major_minor >= (3, 8), "python", f"{python}: {facts['python']} "
             f"({facts['machine']})" + ("" if major_minor >= (3, 8) else "; the runner needs 3.8+"))
        line(bool(facts["numpy"]), "numpy", facts["numpy"] or
             f"missing: `{python} -m pip install 'numpy<2'` on the device")
        found = {k: v for k, v in facts["runtimes"].items() if v}
        line(bool(found), "runtime", ", ".join(f"{k.split('.')[0]} {v}" for k, v in found.items())
             or "no TFLite interpreter: install ai-edge-litert or tflite-runtime there")
        line(True, "cpu", f"{facts['cpu']}: {int8_path(set(facts['flags']))}")
        disk = transport.run(["sh", "-c", 'mkdir -p "$1" && df -Pk "$1" | tail -1', "sh",
                              device.work_dir], timeout=60)
        if disk.returncode == 0 and disk.stdout.split():
            free_mb = int(disk.stdout.split()[3]) // 1024
            line(free_mb >= 200, "disk", f"{free_mb} MB free in {device.work_dir}"
                 + ("" if free_mb >= 200 else "; free some space (models need ~100 MB)"))
        else:
            line(False, "disk", f"cannot use {device.work_dir}: {disk.tail(2)}; fix work_dir")
        throttled = transport.run(["sh", "-c", "vcgencmd get_throttled 2>/dev/null"], timeout=60)
        state = throttled.stdout.strip()
        if state:
            line(state.endswith("=0x0"), "throttling", state + ("" if state.endswith("=0x0") else
                 " (under-voltage or heat: fix the power supply or cooling)"))
        else:
            line(True, "throttling", "not reported by this board")
    finally:
        transport.close()
    return EXIT_OK if failures == 0 else EXIT_DEVICE
