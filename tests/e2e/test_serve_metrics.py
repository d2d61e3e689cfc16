"""One /metrics endpoint for ``serve --workers N``, and the decision-cache switch seen there.

Each check goes over a connection of its own, and SO_REUSEPORT spreads
connections over the workers by their address hash, so 40 of them land on
both workers (all on one has odds of 2**-39); a count that reached only one
worker's endpoint would fall short of 40.
"""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.request

import pytest

from policyd.consistency import Consistency
from policyd.relationship import parse_relationship
from tests.e2e.server import BOB, POLICY_FILE, POST, ServerFactory, ServerProcess

CHECKS = 40
CHECK = 'method="/policyd.v1.PermissionService/Check"'
SETUP = [
    "space:cats#member@account:did:plc:bob",
    f"{POST}#space@space:cats",
    f"{POST}#author@account:did:plc:alice",
]
WAIT = 30.0
"""The longest a test waits for the metrics it expects (workers publish once a second)."""


def _scrape(server: ServerProcess) -> str:
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        text: str = response.read().decode()
    return text


def _scrape_until(server: ServerProcess, *lines: str) -> str:
    """The metrics once they hold every line (bounded by WAIT; the last scrape otherwise)."""
    deadline = time.monotonic() + WAIT
    text = _scrape(server)
    while not all(line in text for line in lines) and time.monotonic() < deadline:
        time.sleep(0.2)
        text = _scrape(server)
    return text


def _cache_lookups(text: str) -> float:
    return _count(text, "policyd_decision_cache_hits_total") + _count(
        text, "policyd_decision_cache_misses_total"
    )


def _pids(text: str) -> set[int]:
    return {int(p) for p in re.findall(r'^policyd_index_revision\{pid="(\d+)"\}', text, re.M)}


def _check_on_fresh_connections(server: ServerProcess, count: int) -> None:
    with server.client(wait_for_ready=True) as client:
        fresh = Consistency.at_least_as_fresh(client.touch(parse_relationship(r) for r in SETUP))
    for _ in range(count):
        with server.client(wait_for_ready=True) as client:
            assert client.check(POST, "view", BOB, consistency=fresh).allowed


def _count(text: str, sample: str) -> float:
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    assert match is not None, f"{sample} is not in the metrics"
    return float(match.group(1))


@pytest.fixture
def workers(start_server: ServerFactory) -> ServerProcess:
    """``policyd serve --workers 2`` with the example policy."""
    return start_server("--workers", "2", "--policy", str(POLICY_FILE))


def test_one_endpoint_counts_the_requests_of_every_worker(workers: ServerProcess) -> None:
    _check_on_fresh_connections(workers, CHECKS)
    decisions = f'policyd_decisions_total{{result="has_permission"}} {CHECKS}.0'
    text = _scrape_until(workers, decisions)
    assert f'policyd_grpc_requests_total{{code="OK",{CHECK}}} {CHECKS}.0' in text
    assert f"policyd_grpc_request_duration_seconds_count{{{CHECK}}} {CHECKS}.0" in text
    assert decisions in text
    assert f"policyd_grpc_in_flight{{{CHECK}}} 0.0" in text
    assert len(_pids(text)) == 2  # per-worker gauges carry the worker's pid
    # A check is a cache hit or a miss on some worker, and the sum sees every worker's; a check
    # a worker's index could not answer yet (it read the store) consults no cache.
    looked = _cache_lookups(text)
    assert 0 < looked <= CHECKS
    assert _count(text, "policyd_revision") >= 1


@pytest.mark.slow
def test_counts_of_a_worker_that_died_stay_and_its_gauges_go(workers: ServerProcess) -> None:
    _check_on_fresh_connections(workers, CHECKS)
    total = f'policyd_grpc_requests_total{{code="OK",{CHECK}}} {CHECKS}.0'
    before = _pids(_scrape_until(workers, total))
    assert len(before) == 2
    killed = min(before)
    os.kill(killed, signal.SIGKILL)  # the supervisor restarts it
    deadline = time.monotonic() + WAIT
    while killed in (pids := _pids(_scrape(workers))) or len(pids) < 2:
        assert time.monotonic() < deadline, f"worker {killed} was not replaced: {pids}"
        time.sleep(0.2)
    assert total in _scrape(workers)


def test_no_decision_cache_computes_every_decision(start_server: ServerFactory) -> None:
    server = start_server("--no-decision-cache", "--policy", str(POLICY_FILE))
    _check_on_fresh_connections(server, 3)
    text = _scrape(server)
    assert _count(text, "policyd_decision_cache_hits_total") == 0
    assert _count(text, "policyd_decision_cache_entries") == 0


def test_the_decision_cache_is_on_by_default(server: ServerProcess) -> None:
    _check_on_fresh_connections(server, 3)
    assert _count(_scrape(server), "policyd_decision_cache_hits_total") > 0
