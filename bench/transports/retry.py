"""Retrying over a link that drops: backoff for the link, never for an answer.

Shared by the transports that talk over a connection (SSH, ADB). A `RemoteError` is the
device saying no (a refused key, a full disk, no such file): retrying cannot change it.
Anything in `transient` is the link: the connection is dropped and the action retried
after 1, 2 and 4 s, then given up with the last cause. A transport being closed under the
action (Ctrl-C) stops the retries: that drop was ours.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from bench.transports.base import RemoteError, TransportError

RECONNECT_DELAYS_S = (1.0, 2.0, 4.0)
T = TypeVar("T")


def retrying(action: Callable[[], T], what: str, target: str, drop: Callable[[], None],
             transient: tuple[type[BaseException], ...],
             closing: Callable[[], bool] = lambda: False,
             sleep: Callable[[float], None] = time.sleep) -> T:
    last: BaseException | None = None
    for delay in (0.0, *RECONNECT_DELAYS_S):
        if delay:
            if closing():
                break
            sleep(delay)
        try:
            return action()
        except RemoteError:
            raise
        except (TransportError, *transient) as exc:
            last = exc
        drop()
    raise TransportError(f"{what} on {target} failed after {len(RECONNECT_DELAYS_S)} "
                         f"reconnects: {last}")
