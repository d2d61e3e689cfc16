"""Package client is a small typed, synchronous Python client for a policyd server.

    from policyd.client import PolicydClient
    from policyd.relationship import parse_object, parse_relationship, parse_subject

    with PolicydClient("127.0.0.1:50051", token="…") as client:
        token = client.touch([parse_relationship("post:1#viewer@account:did:plc:a")])
        decision = client.check(
            parse_object("post:1"), "view", parse_subject("account:did:plc:a"),
            consistency=Consistency.at_least_as_fresh(token),
        )
        assert decision.allowed

Calls retry on UNAVAILABLE with exponential backoff, by gRPC's own retry
policy in the channel's service config (a stream only before its first
response, which is when gRPC commits a call), and raise the policyd error the
server sent, with its code and field, e.g.
``InvalidRequestError(field="resource.object_id")``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from types import TracebackType
from typing import Any, Generic, TypeVar

import grpc
from google.protobuf import json_format, struct_pb2

from policyd.api.gen import (
    core_pb2,
    permission_service_pb2,
    permission_service_pb2_grpc,
    policy_service_pb2,
    policy_service_pb2_grpc,
    relationship_service_pb2,
    relationship_service_pb2_grpc,
)
from policyd.consistency import Consistency, ConsistencyMode
from policyd.decisions import (
    CheckRequest,
    CheckResult,
    ExcludedSubject,
    ExpandKind,
    ExpandNode,
    Explanation,
    FoundObject,
    FoundSubject,
    Permissionship,
)
from policyd.errors import (
    ERROR_DETAIL_KEY,
    AlreadyExistsError,
    CaveatError,
    CycleUnderExclusionError,
    Diagnostic,
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
    Severity,
    SourceSpan,
    StoreError,
    StoreUnwritableError,
    UnauthenticatedError,
    UnavailableError,
)
from policyd.relationship import ObjectRef, Operation, Relationship, RelationshipUpdate, SubjectRef

DEFAULT_TIMEOUT = 30.0

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
}

T = TypeVar("T")


_FROM_PERMISSIONSHIP = {
    permission_service_pb2.PERMISSIONSHIP_HAS_PERMISSION: Permissionship.HAS_PERMISSION,
    permission_service_pb2.PERMISSIONSHIP_NO_PERMISSION: Permissionship.NO_PERMISSION,
    permission_service_pb2.PERMISSIONSHIP_CONDITIONAL_PERMISSION: Permissionship.CONDITIONAL,
}


def consistency_message(consistency: Consistency | None) -> core_pb2.Consistency:
    """The request message of a consistency choice (minimize_latency when None)."""
    mode = (consistency or Consistency()).mode
    token = core_pb2.ConsistencyToken(token=consistency.token or "" if consistency else "")
    if mode is ConsistencyMode.AT_LEAST_AS_FRESH:
        return core_pb2.Consistency(at_least_as_fresh=token)
    if mode is ConsistencyMode.AT_EXACT_SNAPSHOT:
        return core_pb2.Consistency(at_exact_snapshot=token)
    if mode is ConsistencyMode.FULLY_CONSISTENT:
        return core_pb2.Consistency(fully_consistent=True)
    return core_pb2.Consistency(minimize_latency=True)


@dataclass(frozen=True, slots=True)
class Filter:
    """Selects relationships for read, delete and preconditions; unset fields match anything.

    ``subject_relation=""`` selects subjects without a relation.
    """

    resource_type: str | None = None
    resource_id: str | None = None
    relation: str | None = None
    subject_type: str | None = None
    subject_id: str | None = None
    subject_relation: str | None = None

    def to_proto(self) -> core_pb2.RelationshipFilter:
        """The request message."""
        fields = {
            "resource_type": self.resource_type,
            "resource_id": self.resource_id,
            "relation": self.relation,
            "subject_type": self.subject_type,
            "subject_id": self.subject_id,
            "subject_relation": self.subject_relation,
        }
        return core_pb2.RelationshipFilter(**{k: v for k, v in fields.items() if v is not None})


@dataclass(frozen=True, slots=True)
class Precondition:
    """A write condition: some relationship must (or must not) match ``filter``."""

    filter: Filter
    must_match: bool = True


@dataclass(frozen=True, slots=True)
class Listed(Generic[T]):
    """One answer of a streamed listing, the token of its revision, and where to resume.

    ``after_cursor`` is set on the last answer when ``limit`` cut the listing.
    """

    found: T
    token: str
    after_cursor: str = ""


@dataclass(frozen=True, slots=True)
class ReadResult:
    """A relationship from ReadRelationships and the cursor to continue after it."""

    relationship: Relationship
    token: str
    after_cursor: str


@dataclass(frozen=True, slots=True)
class Change:
    """The changes of one revision from Watch; resume with ``token``.

    Each update is (kind, relationship) with kind touch, delete or policy
    (policy changes carry no relationship).
    """

    token: str
    updates: tuple[tuple[str, Relationship | None], ...]


@dataclass(frozen=True, slots=True)
class PolicyValidation:
    """ValidatePolicy's answer."""

    valid: bool
    diagnostics: tuple[Diagnostic, ...]


# ---- messages -----------------------------------------------------------------------------------


def _struct(values: Mapping[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(dict(values))
    return message


def _unstruct(message: struct_pb2.Struct) -> dict[str, Any]:
    def integral(value: Any) -> Any:
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            return int(value)
        if isinstance(value, list):
            return [integral(v) for v in value]
        if isinstance(value, dict):
            return {k: integral(v) for k, v in value.items()}
        return value

    plain: dict[str, Any] = integral(json_format.MessageToDict(message))
    return plain


def _object_message(ref: ObjectRef) -> core_pb2.ObjectReference:
    return core_pb2.ObjectReference(object_type=ref.type, object_id=ref.id)


def _subject_message(ref: SubjectRef) -> core_pb2.SubjectReference:
    return core_pb2.SubjectReference(
        object=core_pb2.ObjectReference(object_type=ref.type, object_id=ref.id),
        optional_relation=ref.relation or "",
    )


def _subject(message: core_pb2.SubjectReference) -> SubjectRef:
    return SubjectRef(
        message.object.object_type, message.object.object_id, message.optional_relation or None
    )


def relationship_message(relationship: Relationship) -> core_pb2.Relationship:
    """The proto of a Relationship."""
    message = core_pb2.Relationship(
        resource=_object_message(relationship.resource),
        relation=relationship.relation,
        subject=_subject_message(relationship.subject),
    )
    if relationship.caveat_name:
        message.optional_caveat.caveat_name = relationship.caveat_name
        message.optional_caveat.context.CopyFrom(_struct(relationship.caveat_context))
    if relationship.expires_at is not None:
        message.optional_expires_at.FromDatetime(relationship.expires_at.astimezone(UTC))
    return message


def relationship_value(message: core_pb2.Relationship) -> Relationship:
    """The Relationship of a proto (as the server sent it: not validated again)."""
    caveat = message.optional_caveat if message.HasField("optional_caveat") else None
    return Relationship(
        ObjectRef(message.resource.object_type, message.resource.object_id),
        message.relation,
        _subject(message.subject),
        caveat.caveat_name if caveat else None,
        _unstruct(caveat.context) if caveat else {},
        (
            message.optional_expires_at.ToDatetime(tzinfo=UTC)
            if message.HasField("optional_expires_at")
            else None
        ),
    )


def _diagnostic(message: core_pb2.Diagnostic) -> Diagnostic:
    span = message.span
    return Diagnostic(
        SourceSpan(span.file, span.line, span.column, span.end_line, span.end_column),
        message.code,
        message.message,
        Severity.WARNING
        if message.severity == core_pb2.Diagnostic.SEVERITY_WARNING
        else Severity.ERROR,
    )


def _explanation(message: permission_service_pb2.Explanation) -> Explanation:
    return Explanation(
        message.what,
        _FROM_PERMISSIONSHIP[message.result],
        tuple(_explanation(c) for c in message.children),
        message.note,
        tuple(message.missing_context),
    )


def _tree(message: permission_service_pb2.ExpandNode) -> ExpandNode:
    kind = permission_service_pb2.ExpandNode.Kind.Name(message.kind)
    return ExpandNode(
        ExpandKind(kind.removeprefix("KIND_").lower()),
        message.target,
        tuple(_tree(c) for c in message.children),
        tuple(relationship_value(r) for r in message.relationships),
    )


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
        return PolicyErrors([_diagnostic(d) for d in detail.diagnostics])
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


# ---- the client -------------------------------------------------------------------------------

_MAX_ATTEMPTS = 5
"""gRPC caps a retry policy's attempts at five (gRFC A6); more are silently cut to five."""


def _service_config(retries: int, backoff: float, max_backoff: float, wait_for_ready: bool) -> str:
    """A service config for every method: how calls retry and whether they wait for a server.

    UNAVAILABLE is retried ``retries`` times at most; with ``wait_for_ready`` a call
    waits (within its deadline) for a server still starting.
    """
    config: dict[str, object] = {"name": [{}], "waitForReady": wait_for_ready}
    if retries >= 1:
        config["retryPolicy"] = {
            "maxAttempts": min(_MAX_ATTEMPTS, retries + 1),
            "initialBackoff": f"{backoff}s",
            "maxBackoff": f"{max_backoff}s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        }
    return json.dumps({"methodConfig": [config]})


class PolicydClient:
    """A connection to one policyd server; thread-safe; close it (or use ``with``) when done.

    Args:
        target: ``host:port``.
        token: the preshared bearer token, unless the server runs without auth.
        tls: False for plaintext, True for TLS with the system roots, or PEM root
            certificates to trust.
        timeout: the deadline of each call, in seconds.
        retries: how many times a call that failed with UNAVAILABLE is retried (at most
            4: gRPC allows five attempts in all).
        backoff: the first retry's delay bound in seconds; each later one doubles, up to
            ``max_backoff`` (gRPC picks a random delay below the bound).
        wait_for_ready: wait for a server that cannot be reached yet (one starting up)
            until the call's deadline, instead of failing UNAVAILABLE at once.
    """

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls: bool | bytes = False,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = 4,
        backoff: float = 0.05,
        max_backoff: float = 2.0,
        tls_server_name: str | None = None,
        wait_for_ready: bool = False,
    ) -> None:
        options = [
            ("grpc.enable_retries", 1),
            (
                "grpc.service_config",
                _service_config(retries, backoff, max_backoff, wait_for_ready),
            ),
        ]
        if tls_server_name is not None:
            options.append(("grpc.ssl_target_name_override", tls_server_name))
        if tls is False:
            self._channel = grpc.insecure_channel(target, options=options)
        else:
            roots = tls if isinstance(tls, bytes) else None
            self._channel = grpc.secure_channel(
                target, grpc.ssl_channel_credentials(root_certificates=roots), options=options
            )
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout = timeout
        self._permissions = permission_service_pb2_grpc.PermissionServiceStub(self._channel)
        self._relationships = relationship_service_pb2_grpc.RelationshipServiceStub(self._channel)
        self._policies = policy_service_pb2_grpc.PolicyServiceStub(self._channel)

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> PolicydClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- plumbing

    def _call(self, method: Callable[..., T], request: Any) -> T:
        try:
            return method(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as e:
            raise error_from_rpc(e) from e

    def _stream(
        self, method: Callable[..., Iterable[T]], request: Any, timeout: float | None = -1.0
    ) -> Iterator[T]:
        deadline = self._timeout if timeout == -1.0 else timeout
        try:
            yield from method(request, metadata=self._metadata, timeout=deadline)
        except grpc.RpcError as e:
            raise error_from_rpc(e) from e

    # ---- permissions

    def check(
        self,
        resource: ObjectRef,
        permission: str,
        subject: SubjectRef,
        *,
        context: Mapping[str, Any] | None = None,
        consistency: Consistency | None = None,
        explain: bool = False,
    ) -> CheckResult:
        """Decide whether ``subject`` holds ``permission`` on ``resource``."""
        request = permission_service_pb2.CheckRequest(
            consistency=consistency_message(consistency),
            resource=_object_message(resource),
            permission=permission,
            subject=_subject_message(subject),
            context=_struct(context or {}),
            explain=explain,
        )
        response = self._call(self._permissions.Check, request)
        return CheckResult(
            resource,
            permission,
            subject,
            _FROM_PERMISSIONSHIP[response.permissionship],
            response.consistency_token.token,
            tuple(response.missing_context),
            _explanation(response.explanation) if response.HasField("explanation") else None,
        )

    def check_many(
        self, items: Sequence[CheckRequest], *, consistency: Consistency | None = None
    ) -> list[CheckResult]:
        """Decide many checks at one revision, in order."""
        request = permission_service_pb2.BatchCheckRequest(
            consistency=consistency_message(consistency),
            items=[
                permission_service_pb2.BatchCheckItem(
                    resource=_object_message(item.resource),
                    permission=item.permission,
                    subject=_subject_message(item.subject),
                    context=_struct(item.context),
                )
                for item in items
            ],
        )
        response = self._call(self._permissions.BatchCheck, request)
        token = response.consistency_token.token
        return [
            CheckResult(
                item.resource,
                item.permission,
                item.subject,
                _FROM_PERMISSIONSHIP[r.permissionship],
                token,
                tuple(r.missing_context),
            )
            for item, r in zip(items, response.results, strict=True)
        ]

    def list_objects(
        self,
        resource_type: str,
        permission: str,
        subject: SubjectRef,
        *,
        context: Mapping[str, Any] | None = None,
        consistency: Consistency | None = None,
        limit: int = 0,
        cursor: str = "",
    ) -> Iterator[Listed[FoundObject]]:
        """Stream the resources of a type on which the subject holds the permission."""
        request = permission_service_pb2.ListObjectsRequest(
            consistency=consistency_message(consistency),
            resource_type=resource_type,
            permission=permission,
            subject=_subject_message(subject),
            context=_struct(context or {}),
            limit=limit,
            cursor=cursor,
        )
        for r in self._stream(self._permissions.ListObjects, request):
            found = FoundObject(
                r.resource_id, _FROM_PERMISSIONSHIP[r.permissionship], tuple(r.missing_context)
            )
            yield Listed(found, r.consistency_token.token, r.after_cursor)

    def list_subjects(
        self,
        resource: ObjectRef,
        permission: str,
        subject_type: str,
        subject_relation: str | None = None,
        *,
        context: Mapping[str, Any] | None = None,
        consistency: Consistency | None = None,
    ) -> Iterator[Listed[FoundSubject]]:
        """Stream the subjects of a type that hold the permission on the resource."""
        request = permission_service_pb2.ListSubjectsRequest(
            consistency=consistency_message(consistency),
            resource=_object_message(resource),
            permission=permission,
            subject_type=subject_type,
            optional_subject_relation=subject_relation or "",
            context=_struct(context or {}),
        )
        for r in self._stream(self._permissions.ListSubjects, request):
            found = FoundSubject(
                _subject(r.subject),
                _FROM_PERMISSIONSHIP[r.permissionship],
                tuple(r.missing_context),
                tuple(
                    ExcludedSubject(_subject(e.subject), tuple(e.missing_context))
                    for e in r.excluded
                ),
            )
            yield Listed(found, r.consistency_token.token)

    def expand(
        self, resource: ObjectRef, permission: str, *, consistency: Consistency | None = None
    ) -> tuple[ExpandNode, str]:
        """The userset tree of ``resource#permission`` and the token of its revision."""
        request = permission_service_pb2.ExpandRequest(
            consistency=consistency_message(consistency),
            resource=_object_message(resource),
            permission=permission,
        )
        response = self._call(self._permissions.Expand, request)
        return _tree(response.tree), response.consistency_token.token

    # ---- relationships

    def write(
        self,
        updates: Sequence[RelationshipUpdate],
        preconditions: Sequence[Precondition] = (),
    ) -> str:
        """Apply updates atomically; returns the consistency token of the write."""
        operations = {
            Operation.CREATE: core_pb2.RelationshipUpdate.OPERATION_CREATE,
            Operation.TOUCH: core_pb2.RelationshipUpdate.OPERATION_TOUCH,
            Operation.DELETE: core_pb2.RelationshipUpdate.OPERATION_DELETE,
        }
        request = relationship_service_pb2.WriteRelationshipsRequest(
            updates=[
                core_pb2.RelationshipUpdate(
                    operation=operations[u.operation],
                    relationship=relationship_message(u.relationship),
                )
                for u in updates
            ],
            preconditions=[
                core_pb2.Precondition(
                    operation=core_pb2.Precondition.OPERATION_MUST_MATCH
                    if p.must_match
                    else core_pb2.Precondition.OPERATION_MUST_NOT_MATCH,
                    filter=p.filter.to_proto(),
                )
                for p in preconditions
            ],
        )
        return self._call(self._relationships.WriteRelationships, request).consistency_token.token

    def touch(self, relationships: Iterable[Relationship]) -> str:
        """Create or replace relationships; returns the token."""
        return self.write([RelationshipUpdate(Operation.TOUCH, r) for r in relationships])

    def delete(self, relationship_filter: Filter, limit: int = 0) -> tuple[str, int]:
        """Delete what the filter matches (at most ``limit``); returns the token and the count."""
        request = relationship_service_pb2.DeleteRelationshipsRequest(
            filter=relationship_filter.to_proto(), limit=limit
        )
        response = self._call(self._relationships.DeleteRelationships, request)
        return response.consistency_token.token, response.deleted_count

    def read(
        self,
        relationship_filter: Filter | None = None,
        *,
        consistency: Consistency | None = None,
        limit: int = 0,
        cursor: str = "",
    ) -> Iterator[ReadResult]:
        """Stream the relationships the filter matches, in key order."""
        request = relationship_service_pb2.ReadRelationshipsRequest(
            consistency=consistency_message(consistency),
            filter=(relationship_filter or Filter()).to_proto(),
            limit=limit,
            cursor=cursor,
        )
        for r in self._stream(self._relationships.ReadRelationships, request):
            yield ReadResult(
                relationship_value(r.relationship), r.consistency_token.token, r.after_cursor
            )

    def watch(self, after: str | None = None, *, timeout: float | None = None) -> Iterator[Change]:
        """Stream changes after the token ``after`` (or from now), one Change per revision.

        The stream runs until ``timeout`` seconds pass (None: until closed or the
        server stops); resume with the last Change's token.
        """
        request = relationship_service_pb2.WatchRequest()
        if after is not None:
            request.optional_start_token.token = after
        kinds = {
            relationship_service_pb2.WatchUpdate.KIND_TOUCH: "touch",
            relationship_service_pb2.WatchUpdate.KIND_DELETE: "delete",
            relationship_service_pb2.WatchUpdate.KIND_POLICY: "policy",
        }
        for r in self._stream(self._relationships.Watch, request, timeout):
            yield Change(
                r.changes_through.token,
                tuple(
                    (
                        kinds.get(u.kind, "unknown"),
                        relationship_value(u.relationship) if u.HasField("relationship") else None,
                    )
                    for u in r.updates
                ),
            )

    def import_relationships(
        self, relationships: Iterable[Relationship], chunk_size: int = 500
    ) -> tuple[str, int]:
        """Load new relationships in one transaction; returns the token and the count."""

        def chunks() -> Iterator[relationship_service_pb2.ImportRelationshipsRequest]:
            chunk: list[core_pb2.Relationship] = []
            for relationship in relationships:
                chunk.append(relationship_message(relationship))
                if len(chunk) >= chunk_size:
                    yield relationship_service_pb2.ImportRelationshipsRequest(relationships=chunk)
                    chunk = []
            if chunk:
                yield relationship_service_pb2.ImportRelationshipsRequest(relationships=chunk)

        try:
            response = self._relationships.ImportRelationships(
                chunks(), metadata=self._metadata, timeout=None
            )
        except grpc.RpcError as e:  # not retried: the request stream is consumed
            raise error_from_rpc(e) from e
        return response.consistency_token.token, response.loaded_count

    def export_relationships(
        self, *, consistency: Consistency | None = None
    ) -> Iterator[Relationship]:
        """Stream every live relationship at one revision, in key order."""
        request = relationship_service_pb2.ExportRelationshipsRequest(
            consistency=consistency_message(consistency)
        )
        for r in self._stream(self._relationships.ExportRelationships, request, None):
            yield from (relationship_value(m) for m in r.relationships)

    # ---- policy

    def write_policy(self, text: str, source_name: str = "") -> tuple[str, tuple[Diagnostic, ...]]:
        """Store a policy; returns the token and the compiler's warnings."""
        request = policy_service_pb2.WritePolicyRequest(policy=text, source_name=source_name)
        response = self._call(self._policies.WritePolicy, request)
        return response.consistency_token.token, tuple(_diagnostic(w) for w in response.warnings)

    def read_policy(self, *, consistency: Consistency | None = None) -> tuple[str, str]:
        """The policy text in force and the token of the revision it was read at."""
        request = policy_service_pb2.ReadPolicyRequest(consistency=consistency_message(consistency))
        response = self._call(self._policies.ReadPolicy, request)
        return response.policy, response.consistency_token.token

    def validate_policy(self, text: str, source_name: str = "") -> PolicyValidation:
        """Compile a policy on the server without storing it."""
        request = policy_service_pb2.ValidatePolicyRequest(policy=text, source_name=source_name)
        response = self._call(self._policies.ValidatePolicy, request)
        return PolicyValidation(response.valid, tuple(_diagnostic(d) for d in response.diagnostics))
