"""The client on its own: retries on UNAVAILABLE, status codes mapped back to policyd errors."""

from __future__ import annotations

import socket
import time

import grpc
import pytest

from policyd.client import Consistency, Filter, PolicydClient, error_from_rpc
from policyd.errors import (
    InvalidRequestError,
    NotFoundError,
    PolicydError,
    UnauthenticatedError,
    UnavailableError,
)


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_unavailable_is_retried_with_backoff_then_raised() -> None:
    address = f"127.0.0.1:{_free_loopback_port()}"
    with PolicydClient(address, token="t", retries=3, backoff=0.01, timeout=2) as client:
        start = time.monotonic()
        with pytest.raises(UnavailableError):
            client.read_policy()
        assert time.monotonic() - start < 10
        with pytest.raises(UnavailableError):
            list(client.read(Filter(resource_type="x")))


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
    assert Consistency().to_proto().WhichOneof("requirement") == "minimize_latency"
    fresh = Consistency.at_least_as_fresh("tok").to_proto()
    assert fresh.at_least_as_fresh.token == "tok"
    assert Consistency.at_exact_snapshot("t").to_proto().at_exact_snapshot.token == "t"
    assert Consistency.fully_consistent().to_proto().fully_consistent


def test_filter_sets_only_given_fields() -> None:
    message = Filter(resource_type="post", subject_relation="").to_proto()
    assert message.HasField("resource_type")
    assert message.HasField("subject_relation")
    assert not message.HasField("resource_id")
