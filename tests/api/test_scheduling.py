"""The serving model: limits refuse past capacity, deadlines and cancellation stop the work.

No wall clock is asserted: each test shows the behaviour (a refusal, a status,
a generator closed before it ran out), never how fast it came.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Generator, Iterator
from typing import Any, cast

import grpc
import pytest
from prometheus_client import CollectorRegistry

from policyd.api.gen import (
    permission_service_pb2,
    permission_service_pb2_grpc,
    relationship_service_pb2,
    relationship_service_pb2_grpc,
)
from policyd.api.limits import Limits
from policyd.api.scheduling import sliced
from policyd.api.server import PolicydServer, ServerConfig
from policyd.client import PolicydClient
from policyd.engine import Engine
from policyd.engine.deadline import Deadline
from policyd.errors import DeadlineExceededError, ResourceExhaustedError
from policyd.relationship import ObjectRef, parse_relationship, parse_subject
from policyd.store.memory import MemoryStore

POLICY = """
definition user {}
definition group {
    relation member: user | group#member
    relation banned: user
    permission visible = member - banned
}
"""
MEMBERS = 50_000
"""Enough that listing who holds ``visible`` (a check per member) outlasts the test's moves."""


def forever(closed: list[bool]) -> Generator[int | None, None, None]:
    """An endless engine generator: checkpoints and answers; notes when it is closed."""
    try:
        for i in itertools.count():
            yield None
            yield i
    finally:
        closed.append(True)


def test_a_passed_deadline_stops_sliced_work() -> None:
    closed: list[bool] = []

    async def drain() -> None:
        async for _ in sliced(forever(closed), Deadline(0.0)):
            await asyncio.sleep(0)

    with pytest.raises(DeadlineExceededError):
        asyncio.run(drain())
    assert closed == [True]


def test_cancelling_the_task_closes_the_engine_generator() -> None:
    closed: list[bool] = []
    steps = forever(closed)

    async def drain() -> None:
        async for _ in sliced(steps, Deadline(None)):
            pass

    async def cancel_soon() -> None:
        task = asyncio.create_task(drain())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        steps.close()  # what the interceptor's unwinding does to the listing it held

    asyncio.run(cancel_soon())
    assert closed == [True]


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def small_limits_server(registry: CollectorRegistry) -> Iterator[PolicydServer]:
    store = MemoryStore()
    engine = Engine(store)
    engine.write_policy(POLICY)
    engine.import_relationships(
        [parse_relationship(f"group:big#member@user:u{i:05}") for i in range(MEMBERS)]
    )
    limits = Limits(max_streams=2, max_heavy_calls=1, watch_poll_seconds=0.01)
    config = ServerConfig(listen="127.0.0.1:0", token="t", limits=limits)
    server = PolicydServer(engine, store, config, registry)
    server.start()
    yield server
    server.stop(grace=1)


METADATA = (("authorization", "Bearer t"),)
WATCH = "/policyd.v1.RelationshipService/Watch"
LIST_SUBJECTS = "/policyd.v1.PermissionService/ListSubjects"


def in_flight(registry: CollectorRegistry, method: str, count: int) -> bool:
    """Wait (boundedly) until ``count`` calls of ``method`` are in; False if that never comes.

    No sample at all is none in flight: a call whose deadline passed before the
    server took it up (a loaded machine) was never admitted.
    """
    for _ in range(200):
        value = registry.get_sample_value("policyd_grpc_in_flight", {"method": method})
        if (value or 0) == count:
            return True
        time.sleep(0.05)
    return False


def cancel(call: grpc.CallIterator[Any]) -> None:
    """Cancel a streaming call made through a generated stub."""
    call.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leave RpcContext.cancel untyped


def watch(server: PolicydServer) -> grpc.CallIterator[relationship_service_pb2.WatchResponse]:
    stub = relationship_service_pb2_grpc.RelationshipServiceStub(
        grpc.insecure_channel(server.address)
    )
    return stub.Watch(relationship_service_pb2.WatchRequest(), metadata=METADATA, timeout=30)


def big_group_subjects() -> permission_service_pb2.ListSubjectsRequest:
    request = permission_service_pb2.ListSubjectsRequest(permission="visible", subject_type="user")
    request.resource.object_type, request.resource.object_id = "group", "big"
    return request


def test_streams_past_the_limit_are_refused_and_a_closed_one_frees_its_place(
    small_limits_server: PolicydServer, registry: CollectorRegistry
) -> None:
    streams = [watch(small_limits_server) for _ in range(2)]
    assert in_flight(registry, WATCH, 2)
    with pytest.raises(grpc.RpcError) as raised:
        next(iter(watch(small_limits_server)))
    assert cast(grpc.Call, raised.value).code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "Watch" in (cast(grpc.Call, raised.value).details() or "")
    cancel(streams[0])
    assert in_flight(registry, WATCH, 1)
    streams.append(watch(small_limits_server))
    assert in_flight(registry, WATCH, 2)
    for stream in streams:
        cancel(stream)
    assert in_flight(registry, WATCH, 0)


def test_checks_still_answer_while_streams_are_at_their_limit(
    small_limits_server: PolicydServer, registry: CollectorRegistry
) -> None:
    streams = [watch(small_limits_server) for _ in range(2)]
    assert in_flight(registry, WATCH, 2)
    with PolicydClient(small_limits_server.address, token="t") as client:
        check = client.check(ObjectRef("group", "big"), "member", parse_subject("user:u00007"))
        assert check.allowed
    for stream in streams:
        cancel(stream)


def test_a_heavy_call_past_its_deadline_fails_without_a_partial_answer(
    small_limits_server: PolicydServer, registry: CollectorRegistry
) -> None:
    stub = permission_service_pb2_grpc.PermissionServiceStub(
        grpc.insecure_channel(small_limits_server.address)
    )
    responses = stub.ListSubjects(big_group_subjects(), metadata=METADATA, timeout=0.001)
    with pytest.raises(grpc.RpcError) as raised:
        list(responses)
    assert cast(grpc.Call, raised.value).code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert in_flight(registry, LIST_SUBJECTS, 0)  # the server's work ended with the call


def test_a_cancelled_heavy_call_ends_on_the_server(
    small_limits_server: PolicydServer, registry: CollectorRegistry
) -> None:
    stub = permission_service_pb2_grpc.PermissionServiceStub(
        grpc.insecure_channel(small_limits_server.address)
    )
    responses = stub.ListSubjects(big_group_subjects(), metadata=METADATA, timeout=30)
    next(iter(responses))
    assert in_flight(registry, LIST_SUBJECTS, 1)
    cancel(responses)
    assert in_flight(registry, LIST_SUBJECTS, 0)
    cancelled = registry.get_sample_value(
        "policyd_grpc_requests_total", {"method": LIST_SUBJECTS, "code": "CANCELLED"}
    )
    assert cancelled == 1
    internal = registry.get_sample_value(
        "policyd_grpc_requests_total", {"method": LIST_SUBJECTS, "code": "INTERNAL"}
    )
    assert internal is None


def test_a_second_heavy_call_past_the_limit_is_refused(
    small_limits_server: PolicydServer, registry: CollectorRegistry
) -> None:
    stub = permission_service_pb2_grpc.PermissionServiceStub(
        grpc.insecure_channel(small_limits_server.address)
    )
    first = stub.ListSubjects(big_group_subjects(), metadata=METADATA, timeout=30)
    next(iter(first))  # admitted and streaming; its client reads no further for now
    assert in_flight(registry, LIST_SUBJECTS, 1)
    group = ObjectRef("group", "big")
    with (
        PolicydClient(small_limits_server.address, token="t", retries=0) as client,
        pytest.raises(ResourceExhaustedError, match="ListSubjects"),
    ):
        list(client.list_subjects(group, "visible", "user"))
    cancel(first)
