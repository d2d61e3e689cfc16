"""Shared pytest options and fixtures.

``--update-golden`` rewrites golden files instead of comparing them. ``pg_dsn``
is the test PostgreSQL server from ``POLICYD_TEST_PG_DSN``: without a reachable
one, PostgreSQL tests skip locally and fail when ``CI=true``.
"""

from __future__ import annotations

import os

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


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """The DSN of the test PostgreSQL server; skips (locally) or fails (CI) without one."""
    dsn = os.environ.get("POLICYD_TEST_PG_DSN", "")
    reason = ""
    if not dsn:
        reason = 'POLICYD_TEST_PG_DSN is not set (start one with: eval "$(bash .ci/postgres.sh)")'
    else:
        import psycopg

        try:
            psycopg.connect(dsn, connect_timeout=5).close()
        except psycopg.Error as e:
            reason = f"PostgreSQL at POLICYD_TEST_PG_DSN is unreachable: {e}"
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run the PostgreSQL tests, not skip them")
        pytest.skip(reason)
    return dsn
