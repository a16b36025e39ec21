"""One harness at a time per machine.

A machine (a board, a phone, this host) is measured by one harness at a time, whatever
device names or work directories reach it: two measurements on one CPU would measure
each other. The lock is a directory made atomically (`mkdir`) in one fixed place per
machine — `/tmp/bench-machine.lock` on Linux hosts and boards (the transport's
`lock_dir`), or under `$BENCH_LOCK_DIR` when the harness's environment sets it (the test
suite does, so it never meets a user's lock). It records who holds it: host, pid, run,
devices, since when. A lock left by a dead harness on this same host is taken over; any
other holder is reported, and `--wait` waits for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from bench.transports import posix
from bench.transports.base import Transport, TransportError

LOCK_NAME = "bench-machine.lock"
POLL_S = 2.0


@dataclass(frozen=True)
class LockHolder:
    host: str | None
    pid: int | None
    run_id: str | None
    devices: tuple[str, ...]
    since: float | None

    @classmethod
    def parse(cls, text: str | None) -> LockHolder | None:
        try:
            data = json.loads(text) if text else None
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        pid = data.get("pid")
        return cls(host=data.get("host"), pid=pid if isinstance(pid, int) else None,
                   run_id=data.get("run_id"), devices=tuple(data.get("devices") or ()),
                   since=data.get("since") if isinstance(data.get("since"), int | float)
                   else None)

    def describe(self, now: float | None = None) -> str:
        run = f"run {self.run_id}" if self.run_id else "a bench run"
        where = f"pid {self.pid} on {self.host}" if self.host else f"pid {self.pid}"
        text = f"{run} ({where}"
        if self.devices:
            text += f", devices {', '.join(self.devices)}"
        if self.since is not None:
            minutes = max(0.0, ((now or time.time()) - self.since) / 60)
            text += (f", since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.since))}"
                     f", {minutes:.0f} min ago")
        return text + ")"


class MachineBusy(Exception):
    """Another harness holds the machine."""


def lock_path(transport: Transport) -> str:
    return str(PurePosixPath(transport.lock_dir) / LOCK_NAME)


class MachineLock:
    def __init__(self, transport: Transport, run_id: str, devices: list[str],
                 path: str | None = None):
        self.transport = transport
        self.run_id = run_id
        self.devices = devices
        self.path = path or lock_path(transport)
        self.held = False

    def owner(self) -> dict:
        return {"host": platform.node(), "pid": os.getpid(), "run_id": self.run_id,
                "devices": self.devices, "since": time.time()}

    def acquire(self, wait_s: float | None = 0.0,
                on_wait: Callable[[LockHolder | None], None] = lambda holder: None,
                sleep: Callable[[float], None] = time.sleep,
                clock: Callable[[], float] = time.monotonic) -> None:
        """Take the lock; wait up to `wait_s` seconds for a holder (None: for ever)."""
        started, announced = clock(), False
        while True:
            holder = self._try()
            if self.held:
                return
            if holder is not None and holder.host == platform.node() and holder.pid \
                    and not _alive(holder.pid):
                posix.remove_tree(self.transport, self.path)  # ours, and dead: stale
                continue
            waited = clock() - started
            if wait_s is not None and waited >= wait_s:
                who = holder.describe() if holder else "a harness that left no owner file"
                hint = ("wait for it with --wait" if wait_s == 0 else
                        f"still busy after waiting {waited:.0f} s")
                raise MachineBusy(
                    f"busy: {who} is measuring this machine (lock {self.path}); {hint}, "
                    f"or remove that directory if that run is dead")
            if not announced:
                on_wait(holder)
                announced = True
            sleep(POLL_S if wait_s is None else min(POLL_S, max(wait_s - waited, 0.05)))

    def _try(self) -> LockHolder | None:
        """Make the lock directory; the current holder when someone else has it."""
        posix.make_dirs(self.transport, str(PurePosixPath(self.path).parent))
        if posix.try_mkdir(self.transport, self.path):
            posix.write_file(self.transport, f"{self.path}/owner", json.dumps(self.owner()))
            self.held = True
            return None
        for _ in range(5):  # the holder may be between its mkdir and writing its name
            holder = LockHolder.parse(posix.read_file(self.transport, f"{self.path}/owner"))
            if holder is not None:
                return holder
            time.sleep(0.1)
        return None

    def release(self) -> None:
        if self.held:
            # If the device is gone, its lock is found stale later or removed by hand.
            with contextlib.suppress(TransportError):
                posix.remove_tree(self.transport, self.path)
            self.held = False


def _alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
