"""Cool-down between rounds: a fixed pause, or waiting for the device to cool.

On devices that expose thermal zones, a throttled CPU measured right after a hot round
makes the next cell look slow. Waiting until the hottest zone is back under a threshold
keeps every round starting from the same thermal state; what happened is recorded.
"""

from __future__ import annotations

import time

from bench.devices import Device
from bench.transports.base import Transport

POLL_S = 1.0


def read_temperature(transport: Transport, pattern: str) -> float | None:
    """Hottest zone matching `pattern` in degrees C (files hold millidegrees), or None."""
    # The pattern was checked against a safe character set when the device file was loaded,
    # and is left unquoted on purpose so the device's shell expands the glob.
    result = transport.run(["sh", "-c", f"cat {pattern} 2>/dev/null"], timeout=30)
    values = [int(word) for word in result.stdout.split() if word.lstrip("-").isdigit()]
    return max(values) / 1000.0 if values else None


def cool_down(transport: Transport, device: Device, pause_s: float,
              sleep=time.sleep, clock=time.monotonic) -> dict:
    """Pause, then wait for the threshold; returns what was done, for the round record."""
    record: dict = {"pause_s": pause_s}
    if pause_s > 0:
        sleep(pause_s)
    if device.thermal_max_c is None or device.thermal_zone is None:
        return record
    started = clock()
    temperature = read_temperature(transport, device.thermal_zone)
    record["temperature_before_c"] = temperature if temperature is not None else "unknown"
    while temperature is not None and temperature > device.thermal_max_c:
        if clock() - started >= device.thermal_timeout_s:
            record["timed_out"] = True
            break
        sleep(POLL_S)
        temperature = read_temperature(transport, device.thermal_zone)
    record["waited_s"] = round(clock() - started, 3)
    record["temperature_after_c"] = temperature if temperature is not None else "unknown"
    record["threshold_c"] = device.thermal_max_c
    return record
