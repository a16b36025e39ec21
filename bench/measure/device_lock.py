"""One harness at a time per device, and one measurement at a time per machine.

The lock is a directory created atomically (`mkdir`) in the device's work directory,
through the device's own transport, so it holds across harnesses on different hosts.
It records who holds it; a lock left by a dead process on this same host is taken over.

The fingerprint names the machine behind a device (its machine-id, else its hostname):
two device names for one machine (say `local` and an SSH entry for this host) get the
same fingerprint and are never measured at the same time.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from pathlib import PurePosixPath

from bench.devices import Device
from bench.transports.base import Transport, TransportError

FINGERPRINT_COMMAND = ["sh", "-c", "cat /etc/machine-id 2>/dev/null || hostname"]


def fingerprint(transport: Transport) -> str:
    result = transport.run(FINGERPRINT_COMMAND, timeout=60)
    text = result.stdout.strip()
    if result.returncode != 0 or not text:
        raise TransportError(f"cannot identify the machine: {result.tail(2) or 'no output'}")
    return text.splitlines()[0]


class DeviceLocked(Exception):
    """Another harness is measuring this device."""


class DeviceLock:
    def __init__(self, device: Device, transport: Transport):
        self.device = device
        self.transport = transport
        self.path = str(PurePosixPath(device.work_dir) / "bench.lock")
        self.held = False

    def acquire(self) -> None:
        owner = {"host": platform.node(), "pid": os.getpid(), "since": time.time()}
        for _ in range(2):
            self.transport.run(["mkdir", "-p", str(PurePosixPath(self.path).parent)],
                               timeout=60)
            made = self.transport.run(["mkdir", self.path], timeout=60)
            if made.returncode == 0:
                self.transport.run(["sh", "-c", 'printf "%s" "$1" > "$2"/owner', "sh",
                                    json.dumps(owner), self.path], timeout=60)
                self.held = True
                return
            holder = self._holder()
            if holder and holder.get("host") == platform.node() and not _alive(holder["pid"]):
                self.transport.run(["rm", "-rf", self.path], timeout=60)  # stale: ours, dead
                continue
            since = time.strftime("%H:%M:%S", time.localtime(holder.get("since", 0))) \
                if holder else "?"
            who = f"{holder.get('host')} pid {holder.get('pid')} since {since}" if holder \
                else "an unknown harness"
            raise DeviceLocked(
                f"device {self.device.name} is being measured by {who} (lock {self.path}); "
                "wait for it, or remove that directory on the device if that run is dead")
        raise DeviceLocked(f"device {self.device.name}: cannot take the lock {self.path}")

    def _holder(self) -> dict | None:
        result = self.transport.run(["cat", f"{self.path}/owner"], timeout=60)
        try:
            return json.loads(result.stdout) if result.returncode == 0 else None
        except ValueError:
            return None

    def release(self) -> None:
        if self.held:
            # If the device is gone, its lock is found stale later or removed by hand.
            with contextlib.suppress(TransportError):
                self.transport.run(["rm", "-rf", self.path], timeout=60)
            self.held = False


def _alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
