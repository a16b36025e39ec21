"""A progress line for the sweep on stderr: a bar on a terminal, plain lines elsewhere."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, stream: TextIO = sys.stderr, enabled: bool = True):
        self.total = total
        self.done = 0
        self.stream = stream
        self.enabled = enabled
        self.tty = stream.isatty()
        self.started = time.monotonic()

    def _bar(self, width: int = 24) -> str:
        filled = int(width * self.done / self.total) if self.total else width
        return "[" + "#" * filled + "." * (width - filled) + f"] {self.done}/{self.total}"

    def start(self, label: str) -> None:
        if self.enabled and self.tty:
            elapsed = time.monotonic() - self.started
            self.stream.write(f"\r\033[K{self._bar()} {elapsed:5.0f}s  {label}")
            self.stream.flush()

    def finish(self, label: str, outcome: str) -> None:
        self.done += 1
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\033[K")
        if self.tty and outcome.startswith("ok"):
            self.start(label)
        else:
            self.stream.write(f"{self._bar()} {label}: {outcome}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()
