"""Fixtures: a loopback DID directory (PLC stand-in and did:web host) and a settable clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from policyd.atproto.testing import DirectoryServer
from tests.clock import FakeClock


@pytest.fixture
def directory() -> Iterator[DirectoryServer]:
    """A PLC directory and did:web host on 127.0.0.1, closed afterwards."""
    server = DirectoryServer()
    yield server
    server.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
