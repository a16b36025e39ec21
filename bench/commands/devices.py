"""`bench devices list | check NAME | clean NAME`.

`check` answers, one line each, what a user needs before a sweep: can the device be
reached and which machine is it, can its runner run (Python, numpy, TFLite runtime),
what its CPU offers int8 kernels, how much disk its work directory has, whether it is
throttling, and whether another harness is measuring it — with what to fix when a line
fails. `clean` removes only what the harness staged, from a work directory it marked.
"""

from __future__ import annotations

import argparse

from bench.devices import available_devices, load_device
from bench.errors import EXIT_DEVICE, EXIT_OK, EXIT_USAGE, BenchError
from bench.measure.machine_lock import LockHolder, lock_path
from bench.measure.protocol import Protocol
from bench.measure.session import DeviceSession
from bench.report.notes import int8_path
from bench.runners import make_runner
from bench.runners.base import RunnerUnavailable
from bench.transports import open_transport, posix
from bench.transports.base import RemoteError, TransportError


def devices_command(args: argparse.Namespace) -> int:
    return {"list": list_devices, "check": check_device, "clean": clean_device}[
        args.devices_command](args)


def list_devices(args: argparse.Namespace) -> int:
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
        where = f" {device.ssh.target}" if device.ssh else (
            f" {device.adb.target}" if device.adb else "")
        print(f"{name:<12} {device.transport}{where}/{device.runner}  backends "
              f"{','.join(device.backends)}  threads {','.join(map(str, device.threads))}  "
              f"{device.description}")
    return status


def clean_device(args: argparse.Namespace) -> int:
    """Remove what bench staged in the work directory (never the directory's other files)."""
    device = load_device(args.devices_dir / f"{args.name}.toml")
    transport = open_transport(device)
    try:
        outcome, kib = posix.clean_work_dir(transport, device.work_dir)
    except TransportError as exc:
        print(f"bench: cannot clean {device.name}: {exc}")
        return EXIT_DEVICE
    finally:
        transport.close()
    if outcome == "absent":
        print(f"{device.name}: nothing to clean ({device.work_dir} does not exist)")
    elif outcome == "unmarked":
        print(f"bench: {device.work_dir} on {device.name} was not created by bench (no "
              f"{posix.MARKER} file): nothing removed; check work_dir in {device.file}")
        return EXIT_DEVICE
    else:
        print(f"{device.name}: removed the staged runner, models and jobs from "
              f"{device.work_dir} ({kib / 1024:.1f} MB freed)")
    return EXIT_OK


PHONE_SCRIPT = r"""
for p in ro.build.version.release ro.build.version.sdk ro.product.model ro.soc.model \
         ro.board.platform ro.product.cpu.abi ro.build.fingerprint; do
  echo "$p=$(getprop $p)"
done
g=/sys/devices/system/cpu/cpufreq/policy*/scaling_governor
echo "governors=$(cat $g 2>/dev/null | sort | uniq -c | tr -s ' \n' ' ')"
echo "zones=$(ls -d /sys/class/thermal/thermal_zone* 2>/dev/null | wc -l)"
echo "hottest=$(cat /sys/class/thermal/thermal_zone*/temp 2>/dev/null | sort -n | tail -n 1)"
echo "battery=$(cat /sys/class/power_supply/battery/temp 2>/dev/null)"
echo "status=$(cat /sys/class/power_supply/battery/status 2>/dev/null)"
exit 0
"""


def phone_lines(transport, line) -> None:
    """Android version, SoC, ABI, governors, thermal zones, battery: one line each."""
    result = transport.run(["sh", "-c", PHONE_SCRIPT], timeout=60)
    facts = dict(x.split("=", 1) for x in result.stdout.splitlines() if "=" in x)

    def get(key: str) -> str:
        return facts.get(key, "").strip()

    line(bool(get("ro.build.version.release")), "android",
         f"{get('ro.build.version.release') or '?'} (SDK {get('ro.build.version.sdk') or '?'}), "
         f"{get('ro.product.model') or 'model not reported'}; build "
         f"{get('ro.build.fingerprint') or 'fingerprint not reported'}")
    line(True, "soc", f"{get('ro.soc.model') or 'not reported'} (board "
         f"{get('ro.board.platform') or 'not reported'}), ABI {get('ro.product.cpu.abi') or '?'}")
    line(True, "governors", get("governors") or "not readable")
    hottest, zones = get("hottest"), get("zones")
    line(True, "thermal", (f"{zones} zone(s)" if zones.isdigit() and zones != "0"
                           else "no thermal zone readable") + (
        f", hottest {int(hottest) / 1000:.1f} C" if hottest.lstrip("-").isdigit() else ""))
    battery = get("battery")
    line(True, "battery", (f"{int(battery) / 10:.1f} C" if battery.lstrip("-").isdigit()
                           else "temperature not readable") + (
        f", {get('status')}" if get("status") else ""))


def check_device(args: argparse.Namespace) -> int:
    device = load_device(args.devices_dir / f"{args.name}.toml")
    transport = open_transport(device)
    failures = 0

    def line(ok: bool, what: str, detail: str) -> None:
        nonlocal failures
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {what:<12} {detail}")

    try:
        try:
            machine = transport.identity()
            system = transport.run(["uname", "-srm"], timeout=60)
            line(True, "reachable", f"{system.stdout.strip() or system.tail()} "
                 f"({'serial' if device.transport == 'adb' else 'machine'} {machine[:16]})")
        except RemoteError as exc:
            line(False, "authorised" if device.transport == "adb" else "reachable", str(exc))
            return EXIT_DEVICE
        except TransportError as exc:
            line(False, "reachable", str(exc))
            return EXIT_DEVICE
        if device.transport == "adb":
            phone_lines(transport, line)
        runner = make_runner(device)
        session = DeviceSession(device, transport, runner, Protocol())
        try:
            session.prepare()
            probe = runner.probe(transport)
        except TransportError as exc:
            line(False, "work_dir", f"{exc}; fix work_dir in {device.file}")
            return EXIT_DEVICE
        except RunnerUnavailable as exc:
            line(False, exc.what, str(exc))
            return EXIT_DEVICE
        if device.runner == "python":
            line(True, "python", f"{probe.python_version} ({probe.machine})")
            line(True, "numpy", str(probe.numpy_version))
            line(True, "runtime", f"{(probe.runtime_module or '').split('.')[0]} "
                 f"{probe.runtime_version or '(version not reported)'}")
        else:
            benchmark_lines(runner, probe, line)
        cpu = probe.cpu_model or "CPU model not reported"
        line(True, "cpu", f"{cpu}: {int8_path(set(probe.cpu_flags))}")
        try:
            free_mb = posix.free_kib(transport, device.work_dir) // 1024
            line(free_mb >= 200, "disk", f"{free_mb} MB free in {device.work_dir}"
                 + ("" if free_mb >= 200 else "; free some space (models need ~100 MB)"))
        except TransportError as exc:
            line(False, "disk", f"{exc}; fix work_dir in {device.file}")
        if device.transport != "adb":
            throttled = transport.run(["sh", "-c", "vcgencmd get_throttled 2>/dev/null"],
                                      timeout=60)
            state = throttled.stdout.strip()
            if state:
                line(state.endswith("=0x0"), "throttling", state + (
                    "" if state.endswith("=0x0") else
                    " (under-voltage or heat: fix the power supply or cooling)"))
            else:
                line(True, "throttling", "not reported by this board")
        path = lock_path(transport)
        holder = LockHolder.parse(posix.read_file(transport, f"{path}/owner"))
        line(True, "lock", f"held by {holder.describe()}" if holder else f"free ({path})")
    except TransportError as exc:
        line(False, "reachable", f"lost during the check: {exc}")
    finally:
        transport.close()
    return EXIT_OK if failures == 0 else EXIT_DEVICE


def benchmark_lines(runner, probe, line) -> None:
    """The binary, what its build can do, and the Hexagon libraries."""
    from bench.runners.benchmark_model import BACKEND_FLAGS

    can = [b for b in runner.backends
           if b == "cpu" or BACKEND_FLAGS.get(b) in runner.flags]
    line(True, "binary", f"{runner.binary.name} ({probe.runtime_version}) runs there; its "
         f"--help lists {len(runner.flags)} flags; backends it can do: {', '.join(can)}")
    pin = " ".join(runner.pin) if runner.pin else "none (all cores the same, or no taskset)"
    line(True, "big cores", f"pinned with {pin}")
    if runner.settings.hexagon_lib_dir:
        line(runner.hexagon_dir is not None, "hexagon",
             f"libraries staged in {runner.hexagon_dir} (the Hexagon delegate is deprecated by "
             "TFLite; QNN goes through `external`)")
