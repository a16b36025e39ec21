"""`bench devices list`."""

from __future__ import annotations

import argparse

from bench.devices import available_devices, load_device
from bench.errors import EXIT_OK, EXIT_USAGE, BenchError


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
        print(f"{name:<12} {device.transport}/{device.runner}  backends "
              f"{','.join(device.backends)}  threads {','.join(map(str, device.threads))}  "
              f"{device.description}")
    return status
