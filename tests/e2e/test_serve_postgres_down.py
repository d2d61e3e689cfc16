"""PostgreSQL stopped and started again under a running ``policyd serve``: fail fast, answer on.

The cluster is the test's own (tests/store/clusters.py), so stopping it
leaves the shared test server alone. While it is down, calls that need the
store fail UNAVAILABLE well within a one-second deadline, Checks the
in-memory index can answer keep being answered, and health says
NOT_SERVING; once it is back, health says SERVING and writes go through,
with no restart of policyd.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from policyd import Consistency, parse_relationship
from policyd.errors import PolicydError, StoreError, UnavailableError
from tests.e2e.server import (
    BOB,
    CAROL,
    POLICY_FILE,
    POST,
    SPACE_WITH_A_POST,
    ServerFactory,
    ServerProcess,
)
from tests.store.clusters import Cluster, own_cluster, wait_until

pytestmark = pytest.mark.postgres


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with own_cluster() as cluster:
        yield cluster


def health(server: ServerProcess) -> int:
    """The server's overall health status (or -1 when the call itself fails)."""
    with grpc.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            status: int = stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status
        except grpc.RpcError:
            return -1
        return status


def test_postgres_down_fails_fast_keeps_index_answers_and_recovers_without_restart(
    start_server: ServerFactory, cluster: Cluster
) -> None:
    server = start_server("--store", "postgres", "--dsn", cluster.dsn, "--policy", str(POLICY_FILE))
    with server.client() as client:
        token = client.touch(parse_relationship(r) for r in SPACE_WITH_A_POST)
        assert client.check(POST, "view", BOB, consistency=Consistency.at_least_as_fresh(token))
    assert health(server) == health_pb2.HealthCheckResponse.SERVING

    cluster.stop("fast")

    # One second is the whole deadline of each call, and no retries: an answer or
    # UNAVAILABLE must come within it, never DEADLINE_EXCEEDED.
    with server.client(timeout=1.0, retries=0) as client:
        for consistency in (None, Consistency.at_least_as_fresh(token)):
            assert client.check(POST, "view", BOB, consistency=consistency).allowed
            assert not client.check(POST, "view", CAROL, consistency=consistency).allowed
        for call in (
            lambda: client.touch([parse_relationship(f"space:cats#member@{CAROL}")]),
            lambda: client.check(POST, "view", BOB, consistency=Consistency.fully_consistent()),
        ):
            with pytest.raises(PolicydError) as failed:
                call()
            assert isinstance(failed.value, StoreError | UnavailableError), failed.value
    assert wait_until(lambda: health(server) == health_pb2.HealthCheckResponse.NOT_SERVING)

    cluster.start()

    assert wait_until(lambda: health(server) == health_pb2.HealthCheckResponse.SERVING)
    with server.client() as client:
        written = client.touch([parse_relationship(f"space:cats#member@{CAROL}")])
        fresh = Consistency.at_least_as_fresh(written)
        assert client.check(POST, "view", CAROL, consistency=fresh).allowed
        assert client.check(POST, "view", BOB, consistency=fresh).allowed
