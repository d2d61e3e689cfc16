"""Package errors holds the one error hierarchy of policyd and the source locations it reports."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

ERROR_DETAIL_KEY = "policyd-error-bin"
"""The gRPC trailing-metadata key of a failed call's ErrorDetail: the stable code, the field at
fault and any diagnostics, which the client turns back into the same error class."""


@dataclass(frozen=True, slots=True, order=True)
class SourceSpan:
    """A region of a policy file: 1-based line and column of its start and end."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class Severity(Enum):
    """How bad a diagnostic is: errors block compilation, warnings do not."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One finding about a policy: where, a stable code, and a sentence for the author."""

    span: SourceSpan
    code: str
    message: str
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        prefix = "" if self.severity is Severity.ERROR else "warning: "
        return f"{self.span}: {prefix}{self.code}: {self.message}"


class PolicydError(Exception):
    """Base of every error policyd raises on purpose.

    Subclasses set a stable kebab-case ``code`` that tests and clients match on;
    ``field`` names the request field at fault and ``span`` the policy source at
    fault, where either applies.
    """

    code = "policyd-error"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        span: SourceSpan | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.span = span
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        where = f"{self.span}: " if self.span is not None else ""
        return f"{where}{self.message}"

    def __reduce__(self) -> tuple[object, ...]:
        # Errors cross processes (a server's writer process answers with them), and
        # subclasses take other constructor arguments than ``args``: rebuild from state.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(
    cls: type[PolicydError], args: tuple[object, ...], state: dict[str, object]
) -> PolicydError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class PolicySyntaxError(PolicydError, ValueError):
    """A policy text that does not parse; ``span`` points at the offending token."""

    code = "syntax-error"


class PolicyErrors(PolicydError, ValueError):
    """Every error diagnostic found while compiling one policy, raised together."""

    code = "policy-invalid"

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        errors = tuple(d for d in diagnostics if d.severity is Severity.ERROR)
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        first = errors[0] if errors else None
        count = len(errors)
        summary = "\n".join(str(d) for d in errors)
        super().__init__(
            f"policy has {count} error{'s' if count != 1 else ''}:\n{summary}",
            span=first.span if first else None,
        )

    def __str__(self) -> str:
        return self.message

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        """The diagnostics of error severity."""
        return tuple(d for d in self.diagnostics if d.severity is Severity.ERROR)


class ConversionError(PolicydError, ValueError):
    """Another system's model or test file that policyd cannot express; ``span`` points at it."""

    code = "no-equivalent"


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the known name closest to a mistyped one, else ``""``."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


class InvalidRequestError(PolicydError, ValueError):
    """A request that is malformed or names things the policy does not define."""

    code = "invalid-request"


class InvalidRelationshipError(InvalidRequestError):
    """A relationship that the current policy does not allow, or that is malformed."""

    code = "invalid-relationship"


class NotFoundError(PolicydError, LookupError):
    """A named thing (policy, revision, relationship) that does not exist."""

    code = "not-found"


class AlreadyExistsError(PolicydError):
    """A CREATE of a relationship that already exists."""

    code = "already-exists"


class PreconditionFailedError(PolicydError):
    """A write whose preconditions did not hold; nothing was written."""

    code = "precondition-failed"


class PolicyChangeRefusedError(PolicydError):
    """A policy change that would orphan stored relationships; ``blockers`` lists them."""

    code = "policy-change-refused"

    def __init__(self, message: str, blockers: Iterable[str]) -> None:
        self.blockers = tuple(blockers)
        detail = "\n".join(f"  - {b}" for b in self.blockers)
        super().__init__(f"{message}\n{detail}" if detail else message)


class RevisionUnavailableError(PolicydError):
    """A read at a revision that was garbage-collected or lies in the future."""

    code = "revision-unavailable"


class MaxDepthExceededError(PolicydError):
    """A decision that needed to recurse deeper than the configured limit."""

    code = "max-depth-exceeded"


class CycleUnderExclusionError(PolicydError):
    """A decision that depends on itself through the subtracted side of an exclusion.

    Such a cycle has no consistent answer (the permission would hold exactly
    when it does not), so the decision fails closed instead of picking one.
    """

    code = "cycle-under-exclusion"


class DeadlineExceededError(PolicydError):
    """A request that ran out of the time its caller gave it; nothing partial is sent."""

    code = "deadline-exceeded"


class CancelledError(PolicydError):
    """A request its caller gave up on; the work stopped."""

    code = "cancelled"


class SnapshotMovedError(PolicydError):
    """A long read on the in-memory index that saw the index apply a newer revision midway.

    Retry; a listing resumed from its last cursor reads the revision the cursor pins
    and cannot be moved.
    """

    code = "snapshot-moved"


class ResourceExhaustedError(PolicydError):
    """A request that needs more work than a configured limit allows; nothing partial is sent."""

    code = "resource-exhausted"


class CaveatError(PolicydError, ValueError):
    """A caveat expression that does not compile or fails to evaluate."""

    code = "caveat-error"


class StoreError(PolicydError):
    """A storage backend failure that is not the caller's fault."""

    code = "store-error"


class StoreUnwritableError(StoreError):
    """A write the store cannot take now (its disk is full, it is read-only); reads still work.

    Writes resume by themselves once the store can take them again.
    """

    code = "store-unwritable"


class InternalError(PolicydError):
    """A broken invariant: a bug in policyd, never the caller's fault."""

    code = "internal"


class UnauthenticatedError(PolicydError):
    """A request without the right bearer token; says nothing about what was wrong."""

    code = "unauthenticated"


class UnavailableError(PolicydError):
    """The server could not be reached or is shutting down; the call may be retried."""

    code = "unavailable"


class ServiceAuthError(UnauthenticatedError):
    """An atproto service-auth token that failed verification.

    ``reason`` is a stable kebab-case word (``expired``, ``bad-signature``, …) that
    is logged and counted; ``error`` is the XRPC error name the caller gets, after
    the atproto reference verifier (``BadJwtSignature``, ``JwtExpired``, …).
    """

    code = "service-auth-failed"

    def __init__(self, reason: str, error: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.error = error


class DidResolutionError(PolicydError):
    """A DID whose document could not be fetched or used; ``reason`` says why."""

    code = "did-resolution-failed"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
