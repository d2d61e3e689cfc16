"""Package interceptors wraps every RPC: bearer-token auth, error mapping, metrics and logs.

Both interceptors handle unary and streaming calls alike. ``AuthInterceptor``
turns a request without the right token into an UnauthenticatedError, and
``ObservingInterceptor`` (installed outside it) turns every PolicydError into
its status code with an ErrorDetail, hides anything else as INTERNAL (a request
protobuf cannot parse is INVALID_ARGUMENT, not grpcio's INTERNAL), counts
and times the request, and logs one line: at debug for success, at info for
a caller's error (code and field, never the payload), at error with the
traceback for a fault.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import DecodeError

from policyd.api.errors import is_internal, public_message, status_for, trailing_metadata
from policyd.api.metrics import Metrics
from policyd.errors import (
    InternalError,
    InvalidRequestError,
    PolicydError,
    UnauthenticatedError,
)

LOG = logging.getLogger("policyd.api")

OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
"""Method prefixes that need no token, so load balancers and grpcurl work."""

Behavior = Callable[..., Any]

if TYPE_CHECKING:
    _ServerInterceptor = grpc.ServerInterceptor[Any, Any]
else:  # grpc's classes are not generic at run time; grpc-stubs' are
    _ServerInterceptor = grpc.ServerInterceptor


def _rewrap(
    handler: grpc.RpcMethodHandler[Any, Any],
    wrap: Callable[[Behavior, bool, bool], Behavior],
    deserializer: Callable[[bytes], Any] | None = None,
) -> grpc.RpcMethodHandler[Any, Any]:
    """The handler with its behavior replaced by ``wrap(behavior, in_stream, out_stream)``.

    ``deserializer``, when given, replaces the handler's request deserializer.
    """
    deserialize = deserializer or handler.request_deserializer
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            wrap(handler.unary_unary, False, False), deserialize, handler.response_serializer
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            wrap(handler.unary_stream, False, True), deserialize, handler.response_serializer
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            wrap(handler.stream_unary, True, False), deserialize, handler.response_serializer
        )
    assert handler.stream_stream is not None
    return grpc.stream_stream_rpc_method_handler(
        wrap(handler.stream_stream, True, True), deserialize, handler.response_serializer
    )


class _Undecodable:
    """A request message protobuf could not parse, handed to the behavior instead of the message.

    grpcio answers INTERNAL when a deserializer raises, so the deserializer returns this
    and the observing wrapper raises InvalidRequestError for it (INVALID_ARGUMENT).
    """

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def error(self) -> InvalidRequestError:
        return InvalidRequestError(
            f"the request could not be parsed: {self.reason}. Protobuf parses at most 100 "
            "nested messages, so a caveat context (a google.protobuf.Struct) may nest about "
            "32 levels of lists and maps"
        )


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """``deserializer`` returning an _Undecodable where protobuf refuses the bytes."""
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError as e:
            return _Undecodable(str(e))

    return deserialize


def _decoded(request: Any) -> Any:
    """``request``, or InvalidRequestError raised for one protobuf could not parse."""
    if isinstance(request, _Undecodable):
        raise request.error()
    return request


def _decoded_stream(requests: Iterator[Any]) -> Iterator[Any]:
    for request in requests:
        yield _decoded(request)


class AuthInterceptor(_ServerInterceptor):
    """Requires ``authorization: Bearer TOKEN`` on every method outside OPEN_SERVICES."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the bearer token must not be empty")
        self._expected = f"Bearer {token}".encode()

    def _authorized(self, metadata: Any) -> bool:
        given = b""
        for key, value in metadata or ():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else bytes(value)
        # Constant time, so timing does not reveal how much of a guess was right.
        return hmac.compare_digest(given, self._expected)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Pass authorized calls on; replace the behavior of the rest with a refusal."""
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(OPEN_SERVICES):
            return handler
        if self._authorized(handler_call_details.invocation_metadata):
            return handler

        def refuse(_behavior: Behavior, _req: bool, _resp: bool) -> Behavior:
            def behavior(_request: Any, _context: grpc.ServicerContext) -> Any:
                raise UnauthenticatedError("missing or invalid bearer token")

            return behavior

        return _rewrap(handler, refuse)


class ObservingInterceptor(_ServerInterceptor):
    """Maps errors to status codes, records metrics and logs one line per request."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self._metrics = metrics

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Wrap the handler's behavior."""
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        return _rewrap(
            handler,
            lambda b, req, resp: self._wrap(method, b, req, resp),
            _tolerant(handler.request_deserializer),
        )

    def _wrap(
        self, method: str, behavior: Behavior, request_streaming: bool, response_streaming: bool
    ) -> Behavior:
        decoded = _decoded_stream if request_streaming else _decoded
        if response_streaming:

            def streaming(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                start = time.perf_counter()
                error: BaseException | None = None
                try:
                    yield from behavior(decoded(request), context)
                except Exception as e:  # every error leaves as a status, never as a traceback
                    error = e
                    self._abort(context, e)
                finally:
                    self._finish(method, context, start, error)

            return streaming

        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            start = time.perf_counter()
            error: BaseException | None = None
            try:
                return behavior(decoded(request), context)
            except Exception as e:
                error = e
                self._abort(context, e)
            finally:
                self._finish(method, context, start, error)

        return unary

    @staticmethod
    def _abort(context: grpc.ServicerContext, error: Exception) -> None:
        if not isinstance(error, PolicydError):
            error = InternalError(INTERNAL_TEXT)
        context.set_trailing_metadata(trailing_metadata(error))
        context.abort(status_for(error), public_message(error))

    def _finish(
        self,
        method: str,
        context: grpc.ServicerContext,
        start: float,
        error: BaseException | None,
    ) -> None:
        seconds = time.perf_counter() - start
        if error is None:
            code, error_code = "OK", ""
            LOG.debug("%s OK %.1fms", method, seconds * 1000)
        elif is_internal(error):
            code, error_code = "INTERNAL", "internal"
            LOG.error("%s INTERNAL %.1fms", method, seconds * 1000, exc_info=error)
        else:
            assert isinstance(error, PolicydError)
            code, error_code = status_for(error).name, error.code
            LOG.info(
                "%s %s %.1fms error=%s field=%s",
                method,
                code,
                seconds * 1000,
                error.code,
                error.field or "-",
            )
            LOG.debug("%s %s: %s", method, code, error.message)
        if self._metrics is not None:
            self._metrics.observe(method, code, error_code, seconds)


INTERNAL_TEXT = "unexpected failure"
