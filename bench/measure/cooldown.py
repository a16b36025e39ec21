"""Cool-down between rounds: a fixed pause, or waiting for the device to cool.

On devices that expose thermal zones, a throttled CPU measured right after a hot round
makes the next cell look slow. Waiting until the hottest zone is back under a threshold
keeps every round starting from the same thermal state; what happened is recorded.
"""

from __future__ import annotations

import time

from bench.devices import Device
from bench.transports.base import Transport
from bench.transports.posix import hottest_temperature_c as read_temperature

POLL_S = 1.0


def cool_down(transport: Transport, device: Device, pause_s: float,
              sleep=time.sleep, clock=time.monotonic) -> dict:
    """Pause, then wait for the threshold; what was done, for the device round's record.

    A temperature that cannot be read is None (and the wait ends: nothing to wait on)."""
    record: dict = {"pause_s": pause_s}
    if pause_s > 0:
        sleep(pause_s)
    if device.thermal_max_c is None or device.thermal_zone is None:
        return record
    started = clock()
    record["timed_out"] = False
    temperature = read_temperature(transport, device.thermal_zone)
    record["temperature_before_c"] = temperature
    while temperature is not None and temperature > device.thermal_max_c:
        if clock() - started >= device.thermal_timeout_s:
            record["timed_out"] = True
            break
        sleep(POLL_S)
        temperature = read_temperature(transport, device.thermal_zone)
    record["waited_s"] = round(clock() - started, 3)
    record["temperature_after_c"] = temperature
    record["threshold_c"] = device.thermal_max_c
    return record
