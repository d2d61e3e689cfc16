"""Package deadline stops long engine work when its caller's time is up or the caller left.

Long operations (the lookups, Expand) are generators that yield ``None`` at
checkpoints, a few times per millisecond of work; ``items`` runs one in the
calling thread, calling ``Deadline.check`` at each checkpoint, and the
server drives the same generators a slice at a time on its event loop,
so a heavy call never holds the loop for long and stops within a slice of
its deadline or cancellation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator, Iterator
from typing import TypeVar

from policyd.errors import CancelledError, DeadlineExceededError

T = TypeVar("T")

Steps = Generator[None, None, T]
"""Work that yields None at checkpoints and returns its result."""


class Deadline:
    """When a request must stop, and whether its caller went away."""

    __slots__ = ("at", "cancelled")

    def __init__(self, seconds: float | None = None) -> None:
        self.at = math.inf if seconds is None else time.monotonic() + seconds
        """The ``time.monotonic()`` at which the request's time is up."""
        self.cancelled = False
        """Set by whoever learns that the caller gave up."""

    def check(self) -> None:
        """Raise when the request must stop.

        Raises:
            CancelledError: the caller cancelled.
            DeadlineExceededError: the deadline passed.
        """
        if self.cancelled:
            raise CancelledError("the caller cancelled the request; its work stopped")
        if time.monotonic() >= self.at:
            raise DeadlineExceededError(
                "the request's deadline passed before its answer was complete; nothing "
                "partial is sent (page with a limit and cursor, or allow more time)"
            )


def items(stream: Iterator[T | None], deadline: Deadline | None) -> Iterator[T]:
    """The items of a stream with checkpoints (``None``), checking ``deadline`` at each."""
    for step in stream:
        if step is None:
            if deadline is not None:
                deadline.check()
        else:
            yield step
