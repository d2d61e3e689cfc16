"""Fixtures: a loopback DID directory (PLC stand-in and did:web host) and a settable clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from policyd.atproto.testing import DirectoryServer


@pytest.fixture
def directory() -> Iterator[DirectoryServer]:
    """A PLC directory and did:web host on 127.0.0.1, closed afterwards."""
    server = DirectoryServer()
    yield server
    server.close()


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()
