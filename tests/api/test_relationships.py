"""RelationshipService writes through the writer, and imports that stream, on memory and SQLite.

Writes queue to the server's writer (a writer process for a SQLite file, a
thread for memory); an import longer than ``SMALL_IMPORT`` streams into one
transaction and is all or nothing, however its stream ends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry

from policyd.api.relationships import SMALL_IMPORT
from policyd.api.server import PolicydServer, ServerConfig
from policyd.client import PolicydClient
from policyd.consistency import Consistency
from policyd.engine import Engine
from policyd.errors import AlreadyExistsError, InvalidRelationshipError, PolicydError
from policyd.filters import RelationshipFilter
from policyd.relationship import Operation, Relationship, RelationshipUpdate, parse_relationship
from policyd.store.base import Store
from policyd.store.memory import MemoryStore
from policyd.store.sqlite import SqliteStore
from tests.api.sample import POLICY

BIG = 3 * SMALL_IMPORT + 7


@pytest.fixture(params=["memory", "sqlite-file"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PolicydClient]:
    store: Store = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "p.db")
    engine = Engine(store)
    engine.write_policy(POLICY)
    server = PolicydServer(
        engine, store, ServerConfig(listen="127.0.0.1:0", token="t"), CollectorRegistry()
    )
    server.start()
    with PolicydClient(server.address, token="t", timeout=30, retries=0) as c:
        yield c
    server.stop(grace=1)


def members(n: int, prefix: str = "m") -> list[Relationship]:
    return [parse_relationship(f"space:big#member@account:did:plc:{prefix}{i}") for i in range(n)]


def count(client: PolicydClient, token: str) -> int:
    fresh = Consistency.at_least_as_fresh(token)
    return sum(1 for _ in client.read(RelationshipFilter(resource_id="big"), consistency=fresh))


def test_concurrent_writes_each_commit_or_fail_alone(client: PolicydClient) -> None:
    first = parse_relationship("space:big#member@account:did:plc:first")
    client.touch([first])
    outcomes: dict[int, str | PolicydError] = {}

    def write(i: int) -> None:
        relationship = (
            first if i % 4 == 0 else parse_relationship(f"space:big#member@account:did:plc:w{i}")
        )
        try:
            outcomes[i] = client.write([RelationshipUpdate(Operation.CREATE, relationship)])
        except PolicydError as e:
            outcomes[i] = e

    threads = [threading.Thread(target=write, args=(i,)) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failed = sorted(i for i, o in outcomes.items() if isinstance(o, PolicydError))
    assert failed == list(range(0, 24, 4))
    assert all(isinstance(outcomes[i], AlreadyExistsError) for i in failed)
    tokens = [o for o in outcomes.values() if isinstance(o, str)]
    assert len(set(tokens)) == 18  # a revision each
    latest = max(tokens, key=lambda t: count(client, t))
    assert count(client, latest) == 19


@pytest.mark.parametrize("n", [SMALL_IMPORT, BIG], ids=["small-through-the-writer", "streamed"])
def test_an_import_loads_everything_at_once(client: PolicydClient, n: int) -> None:
    token, loaded = client.import_relationships(members(n), chunk_size=250)
    assert loaded == n
    assert count(client, token) == n
    fresh = Consistency.at_least_as_fresh(token)
    last = members(n)[-1]
    assert client.check(last.resource, "read", last.subject, consistency=fresh).allowed


def test_an_empty_import_and_a_delete_of_nothing_make_no_revision(client: PolicydClient) -> None:
    head, _ = client.import_relationships(members(3))
    token, loaded = client.import_relationships([])
    assert (token, loaded) == (head, 0)
    token, deleted = client.delete(RelationshipFilter(resource_type="space", resource_id="none"))
    assert (token, deleted) == (head, 0)


def test_a_streamed_import_with_a_bad_relationship_imports_nothing(client: PolicydClient) -> None:
    batch = members(BIG)
    batch[2 * SMALL_IMPORT] = parse_relationship("space:big#nonsense@account:did:plc:x")
    with pytest.raises(InvalidRelationshipError) as raised:
        client.import_relationships(batch, chunk_size=250)
    assert raised.value.field is not None
    assert raised.value.field.startswith(f"relationships[{2 * SMALL_IMPORT}]")
    assert count(client, client.touch(members(1, "after"))) == 1


def test_a_streamed_import_repeating_a_relationship_imports_nothing(client: PolicydClient) -> None:
    batch = [*members(BIG), members(1)[0]]
    with pytest.raises(AlreadyExistsError):
        client.import_relationships(batch, chunk_size=250)
    assert count(client, client.touch(members(1, "after"))) == 1


@pytest.mark.parametrize("n", [100, BIG], ids=["small", "streamed"])
def test_an_import_whose_stream_breaks_off_imports_nothing(client: PolicydClient, n: int) -> None:
    def broken() -> Iterator[Relationship]:
        yield from members(n)
        raise RuntimeError("the client's source failed")

    with pytest.raises((PolicydError, grpc.RpcError, RuntimeError)):
        client.import_relationships(broken(), chunk_size=250)
    assert count(client, client.touch(members(1, "after"))) == 1


def test_writes_go_on_while_a_streamed_import_waits_for_its_client(client: PolicydClient) -> None:
    sent, resume = threading.Event(), threading.Event()
    outcome: list[tuple[str, int] | BaseException] = []

    def stalled() -> Iterator[Relationship]:
        yield from members(BIG)
        sent.set()
        resume.wait()  # the client goes quiet with its stream still open
        yield from members(1, "last")

    def load() -> None:
        try:
            outcome.append(client.import_relationships(stalled(), chunk_size=250))
        except BaseException as e:  # handed to the test's thread
            outcome.append(e)

    importing = threading.Thread(target=load)
    importing.start()
    sent.wait()
    written = client.touch(members(1, "meanwhile"))
    seen_meanwhile = count(client, written)
    resume.set()
    importing.join()
    assert seen_meanwhile == 1  # the write committed; nothing of the open import is seen
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    token, loaded = outcome[0]
    assert loaded == BIG + 1
    assert count(client, token) == BIG + 2
