"""A real policyd gRPC server on 127.0.0.1 port 0 over a MemoryStore, and a client for it."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from policyd.api.limits import Limits
from policyd.api.server import PolicydServer, ServerConfig
from policyd.client import PolicydClient
from policyd.engine import Engine
from policyd.relationship import parse_relationship
from policyd.store.memory import MemoryStore

POLICY = (Path(__file__).resolve().parents[2] / "policies" / "atproto.policy").read_text()

RELATIONSHIPS = [
    "space:cats#owner@account:did:plc:alice",
    "space:cats#member@account:did:plc:bob",
    "space:cats#member@space:kittens#member",
    "space:kittens#member@account:did:plc:carol",
    "space:cats#banned@account:did:plc:mallory",
    "space:cats#member@account:did:plc:mallory",
    "post:at://did:plc:alice/app.bsky.feed.post/1#space@space:cats",
    "post:at://did:plc:alice/app.bsky.feed.post/1#author@account:did:plc:alice",
    "post:at://did:plc:dave/app.bsky.feed.post/2#viewer@account:*",
    "post:at://did:plc:dave/app.bsky.feed.post/2#author@account:did:plc:dave",
    "creator:zoe#gold@account:did:plc:bob[active_subscription]",
]


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
