"""Package errors is the one table from policyd error codes to gRPC status codes.

The server sends the status code, the error message and, as the binary
trailing metadata entry ``policyd-error-bin``, an ``ErrorDetail`` with the
stable code, the field at fault and any diagnostics, so the client can raise
the same error class. An error that is not a PolicydError becomes INTERNAL
with a fixed message: it is logged, never sent.

An API spoken for another project's clients (authzed.api.v1) has its own
codes and error details; its servicers raise ``RichStatusError``, which
carries the status, message and ``google.rpc.Status`` details to send as
they are (gRPC's rich error model, ``grpc-status-details-bin``).
"""

from __future__ import annotations

import grpc

from policyd.api.convert import diagnostic_to_proto, span_to_proto
from policyd.api.gen import core_pb2
from policyd.errors import ERROR_DETAIL_KEY, PolicyChangeRefusedError, PolicydError, PolicyErrors

INTERNAL_MESSAGE = "internal error"
STORE_MESSAGE = "the store is unavailable; retry"

STATUS_BY_CODE: dict[str, grpc.StatusCode] = {
    "invalid-request": grpc.StatusCode.INVALID_ARGUMENT,
    "invalid-relationship": grpc.StatusCode.INVALID_ARGUMENT,
    "policy-invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "syntax-error": grpc.StatusCode.INVALID_ARGUMENT,
    "caveat-error": grpc.StatusCode.INVALID_ARGUMENT,
    "precondition-failed": grpc.StatusCode.FAILED_PRECONDITION,
    "max-depth-exceeded": grpc.StatusCode.FAILED_PRECONDITION,
    "cycle-under-exclusion": grpc.StatusCode.FAILED_PRECONDITION,
    "resource-exhausted": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "policy-change-refused": grpc.StatusCode.FAILED_PRECONDITION,
    "not-found": grpc.StatusCode.NOT_FOUND,
    "already-exists": grpc.StatusCode.ALREADY_EXISTS,
    "revision-unavailable": grpc.StatusCode.OUT_OF_RANGE,
    "unauthenticated": grpc.StatusCode.UNAUTHENTICATED,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
    "store-error": grpc.StatusCode.UNAVAILABLE,
    "store-unwritable": grpc.StatusCode.UNAVAILABLE,
    "deadline-exceeded": grpc.StatusCode.DEADLINE_EXCEEDED,
    "cancelled": grpc.StatusCode.CANCELLED,
    "snapshot-moved": grpc.StatusCode.ABORTED,
}
"""Every policyd error code the API sends as itself; anything else is INTERNAL."""

STATUS_DETAILS_KEY = "grpc-status-details-bin"
"""The trailing-metadata key of gRPC's rich error model: a serialized google.rpc.Status."""


class RichStatusError(PolicydError):
    """An error with the status and details another API defines, sent as they are.

    ``details`` is a serialized google.rpc.Status whose code and message are
    ``status`` and ``message``, as gRPC clients check; ``code`` names the error
    in logs and metrics as any policyd code does.
    """

    code = "rich-status"

    def __init__(
        self,
        status: grpc.StatusCode,
        message: str,
        details: bytes,
        *,
        code: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message, field=field, code=code)
        self.status = status
        self.details = details


# Codes whose message may carry internals (a DSN, a driver message): sent as a fixed text.
_PRIVATE_MESSAGES = {
    "store-error": STORE_MESSAGE,
    "store-unwritable": "the store cannot take writes now (its disk is full or it is read-only); "
    "reads still work; retry",
}


def status_for(error: PolicydError) -> grpc.StatusCode:
    """The gRPC status code of a policyd error; INTERNAL for codes not in the table."""
    if isinstance(error, RichStatusError):
        return error.status
    return STATUS_BY_CODE.get(error.code, grpc.StatusCode.INTERNAL)


def is_internal(error: BaseException) -> bool:
    """True when the error must be logged with its traceback and hidden from the caller."""
    if isinstance(error, RichStatusError):
        return False
    return not isinstance(error, PolicydError) or error.code not in STATUS_BY_CODE


def public_message(error: PolicydError) -> str:
    """The message the caller sees."""
    if is_internal(error):
        return INTERNAL_MESSAGE
    return _PRIVATE_MESSAGES.get(error.code, error.message)


def error_detail(error: PolicydError) -> core_pb2.ErrorDetail:
    """The ErrorDetail sent in trailing metadata."""
    if is_internal(error):
        return core_pb2.ErrorDetail(code="internal", message=INTERNAL_MESSAGE)
    detail = core_pb2.ErrorDetail(
        code=error.code, field=error.field or "", message=public_message(error)
    )
    if isinstance(error, PolicyErrors):
        detail.diagnostics.extend(diagnostic_to_proto(d) for d in error.diagnostics)
    if isinstance(error, PolicyChangeRefusedError):
        detail.blockers.extend(error.blockers)
    if error.span is not None:
        detail.span.CopyFrom(span_to_proto(error.span))
    return detail


def trailing_metadata(error: PolicydError) -> tuple[tuple[str, str | bytes], ...]:
    """The trailing metadata that carries the ErrorDetail (and a RichStatusError's details)."""
    detail = (ERROR_DETAIL_KEY, error_detail(error).SerializeToString())
    if isinstance(error, RichStatusError):
        return (detail, (STATUS_DETAILS_KEY, error.details))
    return (detail,)
