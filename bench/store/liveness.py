"""Whether a run marked running is still being measured: what `bench runs` and the
dashboard's index of runs show as its status."""

from __future__ import annotations

import os
import platform


def shown_status(run: dict) -> str:
    """A run still marked running whose harness on this host is gone was killed (SIGKILL,
    a crash, a power cut): say so, and that --resume finishes it."""
    pid = run.get("session_pid")
    if run["status"] == "running" and run.get("session_host") == platform.node() and pid:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return "killed (resume it)"
        except PermissionError:
            pass
    return run["status"]
