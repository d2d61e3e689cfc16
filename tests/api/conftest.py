"""A real policyd gRPC server on 127.0.0.1 port 0 over a MemoryStore, and a client for it."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from policyd.api.limits import Limits
from policyd.api.server import PolicydServer, ServerConfig
from policyd.client import PolicydClient
from policyd.engine import Engine
from policyd.relationship import parse_relationship
from policyd.store.memory import MemoryStore
from tests.api.sample import POLICY, RELATIONSHIPS


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def server(registry: CollectorRegistry) -> Iterator[PolicydServer]:
    store = MemoryStore()
    config = ServerConfig(
        listen="127.0.0.1:0", token="s3cret", limits=Limits(page_size=2, watch_poll_seconds=0.01)
    )
    running = PolicydServer(Engine(store), store, config, registry)
    running.start()
    yield running
    running.stop(grace=1)


@pytest.fixture
def client(server: PolicydServer) -> Iterator[PolicydClient]:
    with PolicydClient(server.address, token="s3cret", timeout=10, retries=1) as c:
        yield c


@pytest.fixture
def loaded(client: PolicydClient) -> str:
    """Write the atproto policy and the relationships (shuffled); returns the last token."""
    client.write_policy(POLICY, "atproto.policy")
    shuffled = list(RELATIONSHIPS)
    random.shuffle(shuffled)
    return client.touch(parse_relationship(r) for r in shuffled)
