"""File names for dashboard pages, made from names the user chose.

A device, model or run name can be anything (`../../etc/passwd`, 300 characters,
`<script>`, non-ASCII). Page files are named by a readable ASCII slug of it plus a hash
of the whole name: two names never share a page, no name reaches a path separator, a
leading dot or the 255-byte limit, and every page stays inside its dashboard folder.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

from bench.errors import UsageError

SLUG_CHARS = 40
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def slug(name: str) -> str:
    """A short ASCII slug of `name` and 10 hex digits of its hash: safe as a file name
    and as a relative URL without any further quoting."""
    ascii_text = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode()
    readable = _UNSAFE.sub("-", ascii_text).strip("-_")[:SLUG_CHARS].strip("-_")
    digest = hashlib.sha256(str(name).encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{readable}-{digest}" if readable else digest


_PLAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def folder_name(name: str) -> str:
    """A run's folder: its id as it is when that is already a plain name (run ids made by
    bench are), else a slug."""
    return name if _PLAIN.match(str(name)) else slug(name)


def page_name(kind: str, name: str) -> str:
    """e.g. device-pixel-1a2b3c4d5e.html"""
    return f"{kind}-{slug(name)}.html"


def inside(root: Path, candidate: Path) -> Path:
    """`candidate`, refused unless it resolves inside `root` (no name can escape it)."""
    resolved_root, resolved = root.resolve(), candidate.resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise UsageError(f"{candidate} resolves outside the dashboard folder {root} (a "
                         "link there?); remove it or point --dashboards elsewhere")
    return candidate
