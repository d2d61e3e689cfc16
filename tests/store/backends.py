"""The backends the ``store`` fixture runs every contract test over, and how a test opens one."""

from __future__ import annotations

from typing import Protocol

import pytest

from policyd.store.base import Store

BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("sqlite-file", id="sqlite-file"),
    pytest.param("sqlite-memory", id="sqlite-memory"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


class StoreFactory(Protocol):
    """Opens (or reopens: same file, same PostgreSQL schema) the parametrised backend's store.

    Keyword arguments go to the backend's constructor; ``clock`` defaults to the
    test's FakeClock.
    """

    def __call__(self, **kwargs: object) -> Store: ...
