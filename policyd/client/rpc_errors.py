"""A failed call's status and ErrorDetail, turned back into the policyd error the server raised."""

from __future__ import annotations

import grpc

from policyd.api.gen import (
    core_pb2,
)
from policyd.client.messages import diagnostic_value
from policyd.errors import (
    ERROR_DETAIL_KEY,
    AlreadyExistsError,
    CaveatError,
    CycleUnderExclusionError,
    InternalError,
    InvalidRelationshipError,
    InvalidRequestError,
    MaxDepthExceededError,
    NotFoundError,
    PolicyChangeRefusedError,
    PolicydError,
    PolicyErrors,
    PolicySyntaxError,
    PreconditionFailedError,
    ResourceExhaustedError,
    RevisionUnavailableError,
    SnapshotMovedError,
    SourceSpan,
    StoreError,
    StoreUnwritableError,
    UnauthenticatedError,
    UnavailableError,
)

_ERRORS: dict[str, type[PolicydError]] = {
    cls.code: cls
    for cls in (
        InvalidRequestError,
        InvalidRelationshipError,
        PolicySyntaxError,
        NotFoundError,
        AlreadyExistsError,
        PreconditionFailedError,
        RevisionUnavailableError,
        MaxDepthExceededError,
        CycleUnderExclusionError,
        ResourceExhaustedError,
        SnapshotMovedError,
        CaveatError,
        StoreError,
        StoreUnwritableError,
        InternalError,
        UnauthenticatedError,
        UnavailableError,
    )
}
_STATUS_ERRORS: dict[grpc.StatusCode, type[PolicydError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequestError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: PreconditionFailedError,
    grpc.StatusCode.OUT_OF_RANGE: RevisionUnavailableError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.ABORTED: SnapshotMovedError,
}


def error_from_rpc(error: grpc.RpcError) -> PolicydError:
    """The policyd error a failed call stands for, rebuilt from its ErrorDetail when sent."""
    call: grpc.Call = error  # type: ignore[assignment]  # a failed call's RpcError is its Call
    code = call.code()
    text = call.details() or code.name
    detail = core_pb2.ErrorDetail()
    for key, value in call.trailing_metadata() or ():
        if key == ERROR_DETAIL_KEY and isinstance(value, bytes):
            detail.ParseFromString(value)
    if detail.code == PolicyErrors.code:
        return PolicyErrors([diagnostic_value(d) for d in detail.diagnostics])
    if detail.code == PolicyChangeRefusedError.code:
        message = text.split("\n", 1)[0]
        return PolicyChangeRefusedError(message, detail.blockers)
    span = None
    if detail.HasField("span"):
        s = detail.span
        span = SourceSpan(s.file, s.line, s.column, s.end_line, s.end_column)
    if detail.code:
        cls = _ERRORS.get(detail.code, PolicydError)
        return cls(detail.message or text, field=detail.field or None, span=span, code=detail.code)
    cls = _STATUS_ERRORS.get(code, PolicydError)
    fallback = code.name.lower().replace("_", "-")
    return cls(text, code=None if cls is not PolicydError else fallback)
