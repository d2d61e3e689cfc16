"""Package convert translates policyd.v1 messages to domain values and back; errors name the field.

Request fields are validated here, before the engine sees them, so an
InvalidRequestError says which proto field is wrong (``resource.object_id``,
``updates[2].relationship.subject.optional_relation``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC
from typing import Any

from google.protobuf import json_format, struct_pb2

from policyd.api.gen import core_pb2, permission_service_pb2, relationship_service_pb2
from policyd.consistency import Consistency
from policyd.decisions import (
    CheckResult,
    ExpandKind,
    ExpandNode,
    Explanation,
    FoundObject,
    FoundSubject,
    Permissionship,
)
from policyd.errors import (
    Diagnostic,
    InvalidRequestError,
    PolicydError,
    Severity,
    SourceSpan,
)
from policyd.filters import Precondition, RelationshipFilter
from policyd.relationship import (
    ObjectRef,
    Operation,
    Relationship,
    RelationshipUpdate,
    SubjectRef,
)
from policyd.store.base import ChangeEvent, ChangeKind

PERMISSIONSHIP_TO_PROTO = {
    Permissionship.HAS_PERMISSION: permission_service_pb2.PERMISSIONSHIP_HAS_PERMISSION,
    Permissionship.NO_PERMISSION: permission_service_pb2.PERMISSIONSHIP_NO_PERMISSION,
    Permissionship.CONDITIONAL: permission_service_pb2.PERMISSIONSHIP_CONDITIONAL_PERMISSION,
}

_OPERATIONS = {
    core_pb2.RelationshipUpdate.OPERATION_CREATE: Operation.CREATE,
    core_pb2.RelationshipUpdate.OPERATION_TOUCH: Operation.TOUCH,
    core_pb2.RelationshipUpdate.OPERATION_DELETE: Operation.DELETE,
}

_EXPAND_KINDS = {
    ExpandKind.UNION: permission_service_pb2.ExpandNode.KIND_UNION,
    ExpandKind.INTERSECTION: permission_service_pb2.ExpandNode.KIND_INTERSECTION,
    ExpandKind.EXCLUSION: permission_service_pb2.ExpandNode.KIND_EXCLUSION,
    ExpandKind.LEAF: permission_service_pb2.ExpandNode.KIND_LEAF,
}

_CHANGE_KINDS = {
    ChangeKind.TOUCH: relationship_service_pb2.WatchUpdate.KIND_TOUCH,
    ChangeKind.DELETE: relationship_service_pb2.WatchUpdate.KIND_DELETE,
    ChangeKind.POLICY: relationship_service_pb2.WatchUpdate.KIND_POLICY,
}

# Field names of the domain values' validation errors, as the proto spells them.
_PROTO_FIELDS = {
    "resource.type": "resource.object_type",
    "resource.id": "resource.object_id",
    "subject.type": "subject.object.object_type",
    "subject.id": "subject.object.object_id",
    "subject.relation": "subject.optional_relation",
    "caveat.context": "optional_caveat.context",
    "expiration": "optional_expires_at",
}


def _renamed(error: PolicydError, prefix: str) -> InvalidRequestError:
    """The same error, with its field spelled as the proto field under ``prefix``."""
    field = _PROTO_FIELDS.get(error.field or "", error.field or "")
    full = f"{prefix}.{field}" if prefix and field else prefix or field
    return InvalidRequestError(error.message, field=full or None, code=error.code)


def required(value: str, field: str) -> str:
    """The value; InvalidRequestError naming ``field`` when it is empty."""
    if not value:
        raise InvalidRequestError(f"{field} is required", field=field)
    return value


# ---- values ------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON from a Struct, with integral doubles back as ints (Struct numbers are doubles)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def context_from_proto(message: struct_pb2.Struct, field: str = "context") -> dict[str, Any]:
    """A caveat context as a JSON-like dict; a NaN or infinite number names ``field``."""
    if not message.fields:  # the common case, and the hot one: no JSON round trip
        return {}
    try:
        result: dict[str, Any] = _plain(json_format.MessageToDict(message))
    except ValueError as e:  # Struct carries NaN and infinities; JSON has neither
        raise InvalidRequestError(f"{field} is not JSON: {e}", field=field) from e
    return result


def context_to_proto(context: Mapping[str, Any], target: struct_pb2.Struct, field: str) -> None:
    """Fill ``target`` from a JSON-like dict."""
    try:
        target.update(dict(context))
    except (ValueError, TypeError) as e:
        raise InvalidRequestError(f"{field} is not JSON: {e}", field=field) from e


REFS_REMEMBERED = 65_536
"""Validated references kept per kind; the map starts over when it fills."""

_OBJECTS: dict[tuple[str, str], ObjectRef] = {}
_SUBJECTS: dict[tuple[str, str, str], SubjectRef] = {}


def _remember(refs: dict[Any, Any], key: tuple[str, ...], ref: ObjectRef | SubjectRef) -> None:
    """Keep a validated reference for the next request that names it.

    Requests name the same objects and subjects over and over, and building a
    frozen dataclass and matching its id costs more than the rest of a
    BatchCheck item's conversion (5.7 µs of an item, measured); a hit is one
    dict lookup. Only valid references are kept, so a bad one is refused every
    time with its field named. Bounded: full, it starts over.
    """
    if len(refs) >= REFS_REMEMBERED:
        refs.clear()
    refs[key] = ref


def object_from_proto(message: core_pb2.ObjectReference, field: str) -> ObjectRef:
    """An ObjectRef, validated; errors name ``field.object_type`` or ``field.object_id``.

    Field names are built only for an error: BatchCheck converts 200 references a
    call (benchmarks: the servicer's instructions per decision).
    """
    type_name, object_id = message.object_type, message.object_id
    ref = _OBJECTS.get((type_name, object_id))
    if ref is not None:
        return ref
    if not type_name or not object_id:
        required(type_name, f"{field}.object_type")
        required(object_id, f"{field}.object_id")
    ref = ObjectRef(type_name, object_id)
    try:
        ref.validate("resource")
    except PolicydError as e:
        tail = _PROTO_FIELDS.get(e.field or "", "resource.object_id").removeprefix("resource.")
        raise InvalidRequestError(e.message, field=f"{field}.{tail}", code=e.code) from e
    _remember(_OBJECTS, (type_name, object_id), ref)
    return ref


def object_to_proto(ref: ObjectRef) -> core_pb2.ObjectReference:
    """The proto of an ObjectRef."""
    return core_pb2.ObjectReference(object_type=ref.type, object_id=ref.id)


def subject_from_proto(message: core_pb2.SubjectReference, field: str) -> SubjectRef:
    """A SubjectRef, validated; errors name ``field.object.object_id`` and so on."""
    obj = message.object
    type_name, object_id, relation = obj.object_type, obj.object_id, message.optional_relation
    key = (type_name, object_id, relation)
    subject = _SUBJECTS.get(key)
    if subject is not None:
        return subject
    if not type_name or not object_id:
        required(type_name, f"{field}.object.object_type")
        required(object_id, f"{field}.object.object_id")
    subject = SubjectRef(type_name, object_id, relation or None)
    try:
        subject.validate("subject")
    except PolicydError as e:
        tail = _PROTO_FIELDS.get(e.field or "", "subject.object").removeprefix("subject.")
        raise InvalidRequestError(e.message, field=f"{field}.{tail}", code=e.code) from e
    _remember(_SUBJECTS, key, subject)
    return subject


def subject_to_proto(ref: SubjectRef) -> core_pb2.SubjectReference:
    """The proto of a SubjectRef."""
    return core_pb2.SubjectReference(
        object=core_pb2.ObjectReference(object_type=ref.type, object_id=ref.id),
        optional_relation=ref.relation or "",
    )


def relationship_from_proto(message: core_pb2.Relationship, field: str) -> Relationship:
    """A Relationship, validated; errors name the proto field under ``field``."""
    prefix = f"{field}." if field else ""
    caveat_name: str | None = None
    context: dict[str, Any] = {}
    if message.HasField("optional_caveat"):
        caveat_name = required(
            message.optional_caveat.caveat_name, f"{prefix}optional_caveat.caveat_name"
        )
        context = context_from_proto(
            message.optional_caveat.context, f"{prefix}optional_caveat.context"
        )
    relationship = Relationship(
        resource=ObjectRef(
            required(message.resource.object_type, f"{prefix}resource.object_type"),
            required(message.resource.object_id, f"{prefix}resource.object_id"),
        ),
        relation=required(message.relation, f"{prefix}relation"),
        subject=SubjectRef(
            required(message.subject.object.object_type, f"{prefix}subject.object.object_type"),
            required(message.subject.object.object_id, f"{prefix}subject.object.object_id"),
            message.subject.optional_relation or None,
        ),
        caveat_name=caveat_name,
        caveat_context=context,
        expires_at=(
            message.optional_expires_at.ToDatetime(tzinfo=UTC)
            if message.HasField("optional_expires_at")
            else None
        ),
    )
    try:
        relationship.validate()
    except PolicydError as e:
        raise _renamed(e, field) from e
    return relationship


def relationship_to_proto(relationship: Relationship) -> core_pb2.Relationship:
    """The proto of a Relationship."""
    message = core_pb2.Relationship(
        resource=object_to_proto(relationship.resource),
        relation=relationship.relation,
        subject=subject_to_proto(relationship.subject),
    )
    if relationship.caveat_name:
        message.optional_caveat.caveat_name = relationship.caveat_name
        context_to_proto(relationship.caveat_context, message.optional_caveat.context, "context")
    if relationship.expires_at is not None:
        message.optional_expires_at.FromDatetime(relationship.expires_at)
    return message


def token_to_proto(token: str) -> core_pb2.ConsistencyToken:
    """The proto of a consistency token."""
    return core_pb2.ConsistencyToken(token=token)


def consistency_from_proto(
    message: core_pb2.Consistency, field: str = "consistency"
) -> Consistency:
    """A Consistency; a token that is missing or not ours names ``consistency.MODE.token``."""
    which = message.WhichOneof("requirement")
    if which == "at_least_as_fresh":
        result = Consistency.at_least_as_fresh(message.at_least_as_fresh.token)
    elif which == "at_exact_snapshot":
        result = Consistency.at_exact_snapshot(message.at_exact_snapshot.token)
    elif which == "fully_consistent":
        return Consistency.fully_consistent()
    else:
        return Consistency.minimize_latency()
    try:
        result.validate()
    except InvalidRequestError as e:
        raise InvalidRequestError(e.message, field=f"{field}.{which}.token") from e
    return result


def filter_from_proto(message: core_pb2.RelationshipFilter) -> RelationshipFilter:
    """A RelationshipFilter; unset fields match anything."""

    def get(name: str) -> str | None:
        return getattr(message, name) if message.HasField(name) else None  # type: ignore[arg-type]

    return RelationshipFilter(
        resource_type=get("resource_type"),
        resource_id=get("resource_id"),
        relation=get("relation"),
        subject_type=get("subject_type"),
        subject_id=get("subject_id"),
        subject_relation=get("subject_relation"),
    )


def precondition_from_proto(message: core_pb2.Precondition, field: str) -> Precondition:
    """A Precondition; an unspecified operation or an empty filter names the field."""
    relationship_filter = filter_from_proto(message.filter)
    if relationship_filter.is_empty():
        raise InvalidRequestError(
            "a precondition needs a filter with at least one field", field=f"{field}.filter"
        )
    if message.operation == core_pb2.Precondition.OPERATION_MUST_MATCH:
        return Precondition.must_match(relationship_filter)
    if message.operation == core_pb2.Precondition.OPERATION_MUST_NOT_MATCH:
        return Precondition.must_not_match(relationship_filter)
    raise InvalidRequestError("operation is unspecified", field=f"{field}.operation")


def update_from_proto(message: core_pb2.RelationshipUpdate, field: str) -> RelationshipUpdate:
    """A RelationshipUpdate; errors name ``field.operation`` or ``field.relationship.…``."""
    operation = _OPERATIONS.get(message.operation)
    if operation is None:
        raise InvalidRequestError("operation is unspecified", field=f"{field}.operation")
    if not message.HasField("relationship"):
        raise InvalidRequestError("relationship is required", field=f"{field}.relationship")
    return RelationshipUpdate(
        operation, relationship_from_proto(message.relationship, f"{field}.relationship")
    )


def limit_from_proto(value: int) -> int | None:
    """A request limit: 0 means none."""
    return value or None


# ---- results -----------------------------------------------------------------------------------


def explanation_to_proto(explanation: Explanation) -> permission_service_pb2.Explanation:
    """The proto of an explanation tree."""
    return permission_service_pb2.Explanation(
        what=explanation.what,
        result=PERMISSIONSHIP_TO_PROTO[explanation.result],
        children=[explanation_to_proto(c) for c in explanation.children],
        note=explanation.note,
        missing_context=explanation.missing,
    )


def check_to_proto(result: CheckResult) -> permission_service_pb2.CheckResponse:
    """The CheckResponse for a CheckResult.

    An empty repeated field is not passed: passing one costs more than the rest of the message.
    """
    response = permission_service_pb2.CheckResponse(
        consistency_token=token_to_proto(result.token),
        permissionship=PERMISSIONSHIP_TO_PROTO[result.permissionship],
    )
    if result.missing:
        response.missing_context.extend(result.missing)
    if result.explanation is not None:
        response.explanation.CopyFrom(explanation_to_proto(result.explanation))
    return response


def found_object_to_proto(
    found: FoundObject, token: str
) -> permission_service_pb2.ListObjectsResponse:
    """The ListObjectsResponse for one found resource."""
    return permission_service_pb2.ListObjectsResponse(
        consistency_token=token_to_proto(token),
        resource_id=found.resource_id,
        permissionship=(
            permission_service_pb2.PERMISSIONSHIP_CONDITIONAL_PERMISSION
            if found.conditional
            else permission_service_pb2.PERMISSIONSHIP_HAS_PERMISSION
        ),
        missing_context=found.missing,
    )


def found_subject_to_proto(
    found: FoundSubject, token: str
) -> permission_service_pb2.ListSubjectsResponse:
    """The ListSubjectsResponse for one found subject."""
    return permission_service_pb2.ListSubjectsResponse(
        consistency_token=token_to_proto(token),
        subject=subject_to_proto(found.subject),
        permissionship=PERMISSIONSHIP_TO_PROTO[found.permissionship],
        missing_context=found.missing,
        excluded=_excluded_to_proto(found),
    )


def audience_entry_to_proto(found: FoundSubject) -> permission_service_pb2.AudienceEntry:
    """One subject's answer in a WatchPermission response (NO_PERMISSION: removed)."""
    return permission_service_pb2.AudienceEntry(
        subject=subject_to_proto(found.subject),
        permissionship=PERMISSIONSHIP_TO_PROTO[found.permissionship],
        missing_context=found.missing,
        excluded=_excluded_to_proto(found),
    )


def _excluded_to_proto(found: FoundSubject) -> list[permission_service_pb2.ExcludedSubject]:
    return [
        permission_service_pb2.ExcludedSubject(
            subject=subject_to_proto(e.subject),
            conditional=bool(e.missing),
            missing_context=e.missing,
        )
        for e in found.excluded
    ]


def expand_to_proto(node: ExpandNode) -> permission_service_pb2.ExpandNode:
    """The proto of an expand tree."""
    return permission_service_pb2.ExpandNode(
        kind=_EXPAND_KINDS[node.kind],
        target=node.target,
        children=[expand_to_proto(c) for c in node.children],
        relationships=[relationship_to_proto(r) for r in node.relationships],
    )


def watch_to_proto(
    events: Iterable[ChangeEvent], token: str
) -> relationship_service_pb2.WatchResponse:
    """The WatchResponse for the events of one revision."""
    response = relationship_service_pb2.WatchResponse(changes_through=token_to_proto(token))
    for event in events:
        update = response.updates.add(kind=_CHANGE_KINDS[event.kind])
        if event.relationship is not None:
            update.relationship.CopyFrom(relationship_to_proto(event.relationship))
    return response


def span_to_proto(span: SourceSpan) -> core_pb2.SourceSpan:
    """The proto of a SourceSpan."""
    return core_pb2.SourceSpan(
        file=span.file,
        line=span.line,
        column=span.column,
        end_line=span.end_line,
        end_column=span.end_column,
    )


def diagnostic_to_proto(diagnostic: Diagnostic) -> core_pb2.Diagnostic:
    """The proto of a Diagnostic."""
    return core_pb2.Diagnostic(
        span=span_to_proto(diagnostic.span),
        code=diagnostic.code,
        message=diagnostic.message,
        severity=(
            core_pb2.Diagnostic.SEVERITY_ERROR
            if diagnostic.severity is Severity.ERROR
            else core_pb2.Diagnostic.SEVERITY_WARNING
        ),
    )
