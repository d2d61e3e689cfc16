"""Shared pytest options: ``--update-golden`` rewrites golden files instead of comparing them."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

# Machines here are shared and noisy: no per-example deadlines, which would
# turn a slow neighbour into a flaky failure.
settings.register_profile("policyd", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("policyd")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite golden files from the current output (then review the diff)",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """True when the run should rewrite golden files rather than compare against them."""
    return bool(request.config.getoption("--update-golden"))
