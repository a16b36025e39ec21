"""What the host looked like while measuring: recorded with every run."""

from __future__ import annotations

import os
import platform
import sys

from bench import __version__


def host_environment() -> dict:
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "harness_version": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu_count": os.cpu_count(),
        "loadavg": load,
    }
