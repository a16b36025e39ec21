"""The small POSIX shell vocabulary the harness speaks to a device, written once.

Lock, cool-down, clean and check all need the same few operations on the device: make
a directory atomically, read or write a small file, remove what the harness staged,
read thermal zones, see free disk. Each is one `sh -c SCRIPT sh ARG…` command whose
arguments travel as positional parameters, never spliced into the script, so a path
with spaces or quotes cannot change what runs. Works over any transport whose `run`
takes an argv (local, ssh; adb's `sh` too).
"""

from __future__ import annotations

import re

from bench.transports.base import Transport, TransportError

TIMEOUT_S = 60.0

# Everything the harness stages in a work directory matches one of these (relative to it).
STAGED_PATTERNS = (
    "models/[0-9a-f]*.tflite", "models/[0-9a-f]*.tflite.partial",
    "runner/*", "jobs/*.json", "jobs/*.json.partial",
)
MARKER = ".bench-work"
MARKER_TEXT = ("This directory is a bench work directory: the runner, models (named by "
               "sha256) and per-round job files.\n`bench devices clean` removes only those.\n")


def _sh(transport: Transport, script: str, *args: str, timeout: float = TIMEOUT_S):
    return transport.run(["sh", "-c", script, "sh", *args], timeout=timeout)


def _check(result, what: str) -> None:
    if result.timed_out:
        raise TransportError(f"{what}: no answer within the timeout")
    if result.returncode != 0:
        raise TransportError(f"{what}: {result.tail(2) or f'exit code {result.returncode}'}")


def machine_identity(transport: Transport) -> str:
    """The machine behind a device: its machine-id, else its hostname."""
    result = _sh(transport, "cat /etc/machine-id 2>/dev/null || hostname")
    _check(result, "cannot identify the machine")
    text = result.stdout.strip()
    if not text:
        raise TransportError("cannot identify the machine: neither /etc/machine-id nor "
                             "hostname answered")
    return text.splitlines()[0].strip()


def make_dirs(transport: Transport, path: str) -> None:
    _check(_sh(transport, 'mkdir -p -- "$1"', path), f"cannot create {path}")


def try_mkdir(transport: Transport, path: str) -> bool:
    """Create `path` atomically: True if we made it, False if it already existed.

    Any other failure (no permission, no such parent, read-only disk) is a TransportError
    with the device's own words, never mistaken for "someone else holds it"."""
    script = ('if mkdir -- "$1" 2>/dev/null; then echo made; '
              'elif [ -d "$1" ]; then echo exists; else mkdir -- "$1"; fi')
    result = _sh(transport, script, path)
    _check(result, f"cannot create {path}")
    return result.stdout.strip() == "made"


def write_file(transport: Transport, path: str, text: str) -> None:
    _check(_sh(transport, 'printf "%s" "$2" > "$1"', path, text), f"cannot write {path}")


def read_file(transport: Transport, path: str) -> str | None:
    """The file's text, or None when it does not exist."""
    result = _sh(transport, 'if [ -f "$1" ]; then cat -- "$1"; else exit 3; fi', path)
    if result.returncode == 3:
        return None
    _check(result, f"cannot read {path}")
    return result.stdout


def remove_files(transport: Transport, paths: list[str]) -> None:
    if paths:
        _check(_sh(transport, 'rm -f -- "$@"', *paths), "cannot remove files")


def remove_tree(transport: Transport, path: str) -> None:
    _check(_sh(transport, 'rm -rf -- "$1"', path), f"cannot remove {path}")


def hottest_temperature_c(transport: Transport, pattern: str) -> float | None:
    """Hottest zone matching `pattern` in degrees C (files hold millidegrees), or None.

    The glob must reach the shell unquoted to expand; device files allow only a safe
    character set in it (checked when the file is loaded), and it is checked again here."""
    if not re.fullmatch(r"[A-Za-z0-9_./*?-]+", pattern):
        raise ValueError(f"unsafe thermal zone pattern {pattern!r}")
    result = _sh(transport, f"cat {pattern} 2>/dev/null; exit 0", timeout=30)
    values = [int(word) for word in result.stdout.split() if word.lstrip("-").isdigit()]
    return max(values) / 1000.0 if values else None


def free_kib(transport: Transport, path: str) -> int:
    """Free space (KiB) on the file system holding `path` (created if missing)."""
    result = _sh(transport, 'mkdir -p -- "$1" && df -Pk -- "$1" | tail -n 1', path)
    _check(result, f"cannot use {path}")
    fields = result.stdout.split()
    try:
        return int(fields[3])
    except (IndexError, ValueError):
        raise TransportError(f"cannot read free space of {path}: {result.stdout!r}") from None


def mark_work_dir(transport: Transport, work_dir: str) -> None:
    """Create the work directory with its marker, so `clean` knows it is ours."""
    script = ('mkdir -p -- "$1" && { [ -f "$1/$2" ] || printf "%s" "$3" > "$1/$2"; }')
    _check(_sh(transport, script, work_dir, MARKER, MARKER_TEXT),
           f"cannot create the work directory {work_dir}")


CLEAN_SCRIPT = r"""
cd -- "$1" 2>/dev/null || { echo "absent"; exit 0; }
[ -f "$2" ] || { echo "unmarked"; exit 0; }
shift 2
kib=0
for pattern in "$@"; do
  for file in $pattern; do
    [ -f "$file" ] || continue
    size=$(du -k -- "$file" | cut -f1)
    kib=$((kib + size))
    rm -f -- "$file"
  done
done
rmdir models runner jobs 2>/dev/null
echo "removed $kib"
"""


def clean_work_dir(transport: Transport, work_dir: str) -> tuple[str, int]:
    """Remove what the harness staged; ("removed", KiB) or ("absent" | "unmarked", 0)."""
    result = _sh(transport, CLEAN_SCRIPT, work_dir, MARKER, *STAGED_PATTERNS, timeout=120)
    _check(result, f"cleaning {work_dir} failed")
    words = result.stdout.split()
    if words[:1] == ["removed"]:
        return "removed", int(words[1])
    return (words[0] if words else "absent"), 0
