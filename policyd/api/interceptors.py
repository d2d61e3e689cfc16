"""Package interceptors wraps every RPC: bearer-token auth, admission, error mapping, metrics.

Both interceptors (grpc.aio) handle unary and streaming calls alike.
``AuthInterceptor`` turns a request without the right token into an
UnauthenticatedError, and ``ObservingInterceptor`` (installed outside it)
admits a call only while its method has fewer calls in flight than its limit
(RESOURCE_EXHAUSTED otherwise), turns every PolicydError into its status code
with an ErrorDetail, hides anything else as INTERNAL (a request protobuf
cannot parse is INVALID_ARGUMENT, not grpcio's INTERNAL), counts and times the
request, and logs one line: at debug for success and for calls the client
cancelled (CANCELLED, not an error of ours), at info for a caller's error
(code and field, never the payload), at error with the traceback for a fault.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import DecodeError

from policyd.api.errors import is_internal, public_message, status_for, trailing_metadata
from policyd.api.limits import Limits
from policyd.api.metrics import Metrics
from policyd.api.scheduling import Context
from policyd.errors import (
    InternalError,
    InvalidRequestError,
    PolicydError,
    ResourceExhaustedError,
    UnauthenticatedError,
)
from policyd.store.base import CALL_DEADLINE

LOG = logging.getLogger("policyd.api")

OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
"""Method prefixes that need no token, so load balancers and grpcurl work."""

Behavior = Callable[..., Any]

if TYPE_CHECKING:
    _ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
else:  # grpc's classes are not generic at run time; grpc-stubs' are
    _ServerInterceptor = grpc.aio.ServerInterceptor


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


async def _decoded_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        yield _decoded(request)


def _refusal(error: PolicydError) -> Callable[[Behavior, bool, bool], Behavior]:
    """A wrap that replaces any behavior by one raising ``error``, in the handler's kind."""

    def refuse(_behavior: Behavior, _req: bool, response_streaming: bool) -> Behavior:
        if response_streaming:

            async def refusing_stream(_request: Any, _context: Any) -> AsyncIterator[Any]:
                raise error
                yield  # an async generator, as a streaming handler must be

            return refusing_stream

        async def refusing(_request: Any, _context: Any) -> Any:
            raise error

        return refusing

    return refuse


class AuthInterceptor(_ServerInterceptor):
    """Requires ``authorization: Bearer TOKEN`` on every method outside OPEN_SERVICES.

    The scheme is matched case-insensitively (RFC 9110 §11.1); the token exactly,
    in constant time.
    """

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the bearer token must not be empty")
        self._expected = token.encode()

    def _authorized(self, metadata: Any) -> bool:
        given = b""
        for key, value in metadata or ():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else bytes(value)
        scheme, _, token = given.partition(b" ")
        # Constant time, so timing does not reveal how much of a guess was right.
        return scheme.lower() == b"bearer" and hmac.compare_digest(token, self._expected)

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """Pass authorized calls on; replace the behavior of the rest with a refusal."""
        handler = await continuation(handler_call_details)
        # None for a method no service has: grpc answers UNIMPLEMENTED.
        if handler is None or handler_call_details.method.startswith(OPEN_SERVICES):
            return handler
        if self._authorized(handler_call_details.invocation_metadata):
            return handler
        return _rewrap(handler, _refusal(UnauthenticatedError("missing or invalid bearer token")))


class ObservingInterceptor(_ServerInterceptor):
    """Admits calls within their method's limit, maps errors, records metrics, logs a line."""

    def __init__(self, metrics: Metrics | None = None, limits: Limits | None = None) -> None:
        self._metrics = metrics
        self._limits = limits or Limits()
        self._in_flight: dict[str, int] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """Wrap the handler's behavior."""
        handler = await continuation(handler_call_details)
        if handler is None:  # a method no service has: grpc answers UNIMPLEMENTED
            return handler
        method: str = handler_call_details.method
        return _rewrap(
            handler,
            lambda b, req, resp: self._wrap(method, b, req, resp),
            _tolerant(handler.request_deserializer),
        )

    async def _admit(self, method: str, start: float, context: Context) -> None:
        """Count the call in, or refuse it (RESOURCE_EXHAUSTED) when its method is at its limit.

        Raises:
            grpc.aio.AbortError: the call was refused and its status sent.
        """
        remaining = context.time_remaining()
        # Each call runs in a task of its own, so this is the call's own deadline.
        CALL_DEADLINE.set(None if remaining is None else time.monotonic() + remaining)
        limit = self._limits.in_flight(method)
        count = self._in_flight.get(method, 0)
        if count < limit:
            self._in_flight[method] = count + 1
            if self._metrics is not None:
                self._metrics.in_flight.labels(method).inc()
            return
        error = ResourceExhaustedError(
            f"{method} already has {limit} calls in flight on this server (its limit); "
            "retry shortly or spread the load"
        )
        self._finish(method, start, error)
        await self._abort(context, error)

    def _wrap(
        self, method: str, behavior: Behavior, request_streaming: bool, response_streaming: bool
    ) -> Behavior:
        """The behavior, admitted, observed and with its errors mapped.

        The call is counted before its status is sent, so whoever sees the
        status can already see the count.
        """
        decoded = _decoded_stream if request_streaming else _decoded
        if response_streaming:

            async def streaming(request: Any, context: Context) -> None:
                # A coroutine writing each response, not an async generator: when the call
                # is cancelled, grpc cancels this coroutine, and the ``finally`` below closes
                # the servicer's generator (and the engine work under it) at once; an
                # abandoned generator would be closed only when garbage collected.
                start = time.perf_counter()
                await self._admit(method, start, context)
                responses = behavior(decoded(request), context)
                try:
                    async for response in responses:
                        await context.write(response)
                except asyncio.CancelledError as e:
                    self._finish(method, start, e)
                    raise
                except Exception as e:  # every error leaves as a status, never as a traceback
                    self._finish(method, start, e)
                    await self._abort(context, e)
                else:
                    self._finish(method, start, None)
                finally:
                    try:
                        await responses.aclose()
                    finally:  # aclose itself may be cancelled: the count still comes down
                        self._leave(method)

            return streaming

        async def unary(request: Any, context: Context) -> Any:
            start = time.perf_counter()
            await self._admit(method, start, context)
            try:
                result = await behavior(decoded(request), context)
            except asyncio.CancelledError as e:
                self._finish(method, start, e)
                raise
            except Exception as e:
                self._finish(method, start, e)
                await self._abort(context, e)
            else:
                self._finish(method, start, None)
                return result
            finally:
                self._leave(method)

        return unary

    def _leave(self, method: str) -> None:
        """Count an admitted call out."""
        self._in_flight[method] -= 1
        if self._metrics is not None:
            self._metrics.in_flight.labels(method).dec()

    @staticmethod
    async def _abort(context: Context, error: Exception) -> None:
        if not isinstance(error, PolicydError):
            error = InternalError(INTERNAL_TEXT)
        context.set_trailing_metadata(trailing_metadata(error))
        await context.abort(status_for(error), public_message(error))

    def _finish(self, method: str, start: float, error: BaseException | None) -> None:
        seconds = time.perf_counter() - start
        if error is None:
            code, error_code = "OK", ""
            LOG.debug("%s OK %.1fms", method, seconds * 1000)
        elif isinstance(error, asyncio.CancelledError):
            # The client cancelled or its deadline passed: no fault of ours, no alert.
            code, error_code = "CANCELLED", "cancelled"
            LOG.debug("%s CANCELLED %.1fms", method, seconds * 1000)
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
