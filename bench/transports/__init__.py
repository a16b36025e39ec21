"""Transports: how the harness reaches a device (local now; ssh and adb later)."""

from __future__ import annotations

from bench.devices import Device
from bench.transports.base import Transport


def open_transport(device: Device) -> Transport:
    if device.transport == "local":
        from bench.transports.local import LocalTransport

        return LocalTransport()
    raise NotImplementedError(f"transport {device.transport!r}")
