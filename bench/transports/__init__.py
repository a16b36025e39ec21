"""Transports: how the harness reaches a device (local, ssh; adb later)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.devices import Device
    from bench.transports.base import Transport


def open_transport(device: Device) -> Transport:
    if device.transport == "local":
        from bench.transports.local import LocalTransport

        return LocalTransport()
    if device.transport == "ssh" and device.ssh is not None:
        from bench.transports.ssh import SSHTransport

        return SSHTransport(device.ssh, str(device.file))
    if device.transport == "adb" and device.adb is not None:
        if device.adb.client == "adb":
            from bench.transports.adb_client import AdbClientTransport

            return AdbClientTransport(device.adb, str(device.file))
        from bench.transports.adb import AdbShellTransport

        return AdbShellTransport(device.adb, str(device.file))
    raise NotImplementedError(f"transport {device.transport!r}")
