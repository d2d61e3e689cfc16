"""The client on its own: retries on UNAVAILABLE, status codes mapped back to policyd errors."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures

import grpc
import pytest

from policyd.api.gen import policy_service_pb2
from policyd.client import PolicydClient, consistency_message, error_from_rpc, filter_message
from policyd.consistency import Consistency
from policyd.errors import (
    InvalidRequestError,
    NotFoundError,
    PolicydError,
    UnauthenticatedError,
    UnavailableError,
)
from policyd.filters import RelationshipFilter


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _Flaky:
    """ReadPolicy answers UNAVAILABLE ``failures`` times, then a policy; counts attempts."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts = 0

    def read_policy(
        self, request: policy_service_pb2.ReadPolicyRequest, context: grpc.ServicerContext
    ) -> policy_service_pb2.ReadPolicyResponse:
        self.attempts += 1
        if self.attempts <= self.failures:
            context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        return policy_service_pb2.ReadPolicyResponse(policy="definition user {}")


def _serve_flaky(port: int, flaky: _Flaky | list[_Flaky]) -> grpc.Server:
    """A real gRPC server on loopback answering ReadPolicy with ``flaky`` (the newest, if many)."""
    current = flaky if isinstance(flaky, list) else [flaky]
    handler = grpc.method_handlers_generic_handler(
        "policyd.v1.PolicyService",
        {
            "ReadPolicy": grpc.unary_unary_rpc_method_handler(
                lambda request, context: current[-1].read_policy(request, context),
                request_deserializer=policy_service_pb2.ReadPolicyRequest.FromString,
                response_serializer=policy_service_pb2.ReadPolicyResponse.SerializeToString,
            )
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server


@pytest.fixture
def flaky() -> Iterator[tuple[str, Callable[[int], _Flaky]]]:
    """A server whose ReadPolicy fails as often as the test says."""
    current: list[_Flaky] = []
    port = _free_loopback_port()
    server = _serve_flaky(port, current)

    def failing(times: int) -> _Flaky:
        current.append(_Flaky(times))
        return current[-1]

    yield f"127.0.0.1:{port}", failing
    server.stop(None)


@pytest.mark.parametrize(("retries", "failures"), [(3, 3), (4, 2), (1, 1)])
def test_unavailable_is_retried_until_it_succeeds(
    flaky: tuple[str, Callable[[int], _Flaky]], retries: int, failures: int
) -> None:
    address, failing = flaky
    servicer = failing(failures)
    with PolicydClient(address, retries=retries, backoff=0.01) as client:
        assert client.read_policy()[0] == "definition user {}"
    assert servicer.attempts == failures + 1


@pytest.mark.parametrize("retries", [0, 2])
def test_unavailable_past_the_retries_is_raised(
    flaky: tuple[str, Callable[[int], _Flaky]], retries: int
) -> None:
    address, failing = flaky
    servicer = failing(10)
    with (
        PolicydClient(address, retries=retries, backoff=0.01) as client,
        pytest.raises(UnavailableError),
    ):
        client.read_policy()
    assert servicer.attempts == retries + 1


def test_wait_for_ready_waits_for_a_server_still_starting() -> None:
    port = _free_loopback_port()
    answers: list[str] = []
    with PolicydClient(f"127.0.0.1:{port}", wait_for_ready=True, timeout=30) as client:
        asking = threading.Thread(target=lambda: answers.append(client.read_policy()[0]))
        asking.start()
        time.sleep(0.3)  # the call is already waiting when the server comes up
        server = _serve_flaky(port, _Flaky(0))
        try:
            asking.join(30)
        finally:
            server.stop(None)
    assert answers == ["definition user {}"]


def test_no_server_at_all_is_unavailable() -> None:
    address = f"127.0.0.1:{_free_loopback_port()}"
    with PolicydClient(address, token="t", retries=1, backoff=0.01, timeout=5) as client:
        with pytest.raises(UnavailableError):
            client.read_policy()
        with pytest.raises(UnavailableError):
            list(client.read(RelationshipFilter(resource_type="x")))


class _FakeError(grpc.RpcError, grpc.Call):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[()]:
        return ()


@pytest.mark.parametrize(
    ("status", "error_type", "code"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidRequestError, "invalid-request"),
        (grpc.StatusCode.NOT_FOUND, NotFoundError, "not-found"),
        (grpc.StatusCode.UNAUTHENTICATED, UnauthenticatedError, "unauthenticated"),
        (grpc.StatusCode.UNAVAILABLE, UnavailableError, "unavailable"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, PolicydError, "deadline-exceeded"),
        (grpc.StatusCode.INTERNAL, PolicydError, "internal"),
    ],
    ids=lambda v: getattr(v, "name", None) or getattr(v, "__name__", str(v)),
)
def test_status_without_detail_maps_to_an_error(
    status: grpc.StatusCode, error_type: type[PolicydError], code: str
) -> None:
    error = error_from_rpc(_FakeError(status, "boom"))
    assert type(error) is error_type
    assert error.code == code


def test_consistency_messages() -> None:
    assert consistency_message(None).WhichOneof("requirement") == "minimize_latency"
    assert consistency_message(Consistency()).WhichOneof("requirement") == "minimize_latency"
    fresh = consistency_message(Consistency.at_least_as_fresh("tok"))
    assert fresh.at_least_as_fresh.token == "tok"
    assert consistency_message(Consistency.at_exact_snapshot("t")).at_exact_snapshot.token == "t"
    assert consistency_message(Consistency.fully_consistent()).fully_consistent


def test_filter_sets_only_given_fields() -> None:
    message = filter_message(RelationshipFilter(resource_type="post", subject_relation=""))
    assert message.HasField("resource_type")
    assert message.HasField("subject_relation")
    assert not message.HasField("resource_id")
