"""Progress of the sweep on stderr: a bar on a terminal, plain lines elsewhere.

The bar counts cell-rounds; with adaptive stopping the total grows when rounds are
added, so the bar is an honest "at least this much left".
"""

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
        self.label = ""

    def _bar(self, width: int = 24) -> str:
        self.total = max(self.total, self.done)
        filled = int(width * self.done / self.total) if self.total else width
        elapsed = time.monotonic() - self.started
        return "[" + "#" * filled + "." * (width - filled) + \
            f"] {self.done}/{self.total} rounds {elapsed:4.0f}s"

    def _draw(self) -> None:
        if self.enabled and self.tty:
            self.stream.write(f"\r\033[K{self._bar()}  {self.label}")
            self.stream.flush()

    def start(self, label: str) -> None:
        self.label = label
        if self.done >= self.total:
            self.total = self.done + 1
        self._draw()

    def step(self) -> None:
        """One cell-round finished."""
        self.done += 1
        self._draw()

    def finish(self, label: str, outcome: str) -> None:
        """A cell finished: one line, kept above the bar (failures always shown)."""
        if not self.enabled or (self.tty and outcome.startswith("ok")):
            return
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(f"{label}: {outcome}\n")
        self.stream.flush()
        self._draw()

    def note(self, text: str) -> None:
        """A line that must be seen (e.g. waiting for another harness), bar or not."""
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()
        self._draw()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()
