"""A clock tests move by hand, for stores (and engines over them) that take a ``Clock``."""

from __future__ import annotations

import time


class FakeClock:
    """Starts at the real time, so revisions look sane, and moves only when told."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
