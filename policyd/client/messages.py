"""The client's conversions between policyd's values and the wire's messages.

The server's own conversions live in ``policyd.api.convert``; the client may
import only the generated code, so it converts for itself, and trusts what
the server sent (answers are not validated again).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
from typing import Any

from google.protobuf import json_format, struct_pb2

from policyd.api.gen import (
    core_pb2,
    permission_service_pb2,
)
from policyd.consistency import Consistency, ConsistencyMode
from policyd.decisions import (
    ExcludedSubject,
    ExpandKind,
    ExpandNode,
    Explanation,
    FoundSubject,
    Permissionship,
)
from policyd.errors import (
    Diagnostic,
    Severity,
    SourceSpan,
)
from policyd.filters import Precondition, PreconditionKind, RelationshipFilter
from policyd.relationship import (
    KEY_FIELDS,
    ObjectRef,
    Relationship,
    SubjectRef,
)

PERMISSIONSHIPS = {
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


def struct_message(values: Mapping[str, Any]) -> struct_pb2.Struct:
    """A caveat context as a Struct."""
    message = struct_pb2.Struct()
    message.update(dict(values))
    return message


def struct_value(message: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as plain values; whole floats below 2**53 become ints (Struct holds doubles)."""

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


def filter_message(relationship_filter: RelationshipFilter) -> core_pb2.RelationshipFilter:
    """The request message; unset fields stay unset (``""`` is a set subject relation)."""
    fields = zip(KEY_FIELDS, relationship_filter.values(), strict=True)
    return core_pb2.RelationshipFilter(**{k: v for k, v in fields if v is not None})


def precondition_message(precondition: Precondition) -> core_pb2.Precondition:
    """The request message of a write precondition."""
    must_match = precondition.kind is PreconditionKind.MUST_MATCH
    return core_pb2.Precondition(
        operation=core_pb2.Precondition.OPERATION_MUST_MATCH
        if must_match
        else core_pb2.Precondition.OPERATION_MUST_NOT_MATCH,
        filter=filter_message(precondition.filter),
    )


def object_message(ref: ObjectRef) -> core_pb2.ObjectReference:
    """The message of an object."""
    return core_pb2.ObjectReference(object_type=ref.type, object_id=ref.id)


def subject_message(ref: SubjectRef) -> core_pb2.SubjectReference:
    """The message of a subject (an empty optional_relation for none)."""
    return core_pb2.SubjectReference(
        object=core_pb2.ObjectReference(object_type=ref.type, object_id=ref.id),
        optional_relation=ref.relation or "",
    )


def subject_value(message: core_pb2.SubjectReference) -> SubjectRef:
    """The SubjectRef of a message."""
    return SubjectRef(
        message.object.object_type, message.object.object_id, message.optional_relation or None
    )


def found_subject_value(
    message: permission_service_pb2.ListSubjectsResponse | permission_service_pb2.AudienceEntry,
) -> FoundSubject:
    """A subject's answer from ListSubjects or WatchPermission (their fields are the same)."""
    return FoundSubject(
        subject_value(message.subject),
        PERMISSIONSHIPS[message.permissionship],
        tuple(message.missing_context),
        tuple(
            ExcludedSubject(subject_value(e.subject), tuple(e.missing_context))
            for e in message.excluded
        ),
    )


def relationship_message(relationship: Relationship) -> core_pb2.Relationship:
    """The proto of a Relationship."""
    message = core_pb2.Relationship(
        resource=object_message(relationship.resource),
        relation=relationship.relation,
        subject=subject_message(relationship.subject),
    )
    if relationship.caveat_name:
        message.optional_caveat.caveat_name = relationship.caveat_name
        message.optional_caveat.context.CopyFrom(struct_message(relationship.caveat_context))
    if relationship.expires_at is not None:
        message.optional_expires_at.FromDatetime(relationship.expires_at.astimezone(UTC))
    return message


def relationship_value(message: core_pb2.Relationship) -> Relationship:
    """The Relationship of a proto (as the server sent it: not validated again)."""
    caveat = message.optional_caveat if message.HasField("optional_caveat") else None
    return Relationship(
        ObjectRef(message.resource.object_type, message.resource.object_id),
        message.relation,
        subject_value(message.subject),
        caveat.caveat_name if caveat else None,
        struct_value(caveat.context) if caveat else {},
        (
            message.optional_expires_at.ToDatetime(tzinfo=UTC)
            if message.HasField("optional_expires_at")
            else None
        ),
    )


def diagnostic_value(message: core_pb2.Diagnostic) -> Diagnostic:
    """A policy diagnostic as the server sent it."""
    span = message.span
    return Diagnostic(
        SourceSpan(span.file, span.line, span.column, span.end_line, span.end_column),
        message.code,
        message.message,
        Severity.WARNING
        if message.severity == core_pb2.Diagnostic.SEVERITY_WARNING
        else Severity.ERROR,
    )


def explanation_value(message: permission_service_pb2.Explanation) -> Explanation:
    """A Check's explanation tree."""
    return Explanation(
        message.what,
        PERMISSIONSHIPS[message.result],
        tuple(explanation_value(c) for c in message.children),
        message.note,
        tuple(message.missing_context),
    )


def expand_node_value(message: permission_service_pb2.ExpandNode) -> ExpandNode:
    """An Expand tree."""
    kind = permission_service_pb2.ExpandNode.Kind.Name(message.kind)
    return ExpandNode(
        ExpandKind(kind.removeprefix("KIND_").lower()),
        message.target,
        tuple(expand_node_value(c) for c in message.children),
        tuple(relationship_value(r) for r in message.relationships),
    )
