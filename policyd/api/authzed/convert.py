"""Package convert translates authzed.api.v1 messages to policyd's values and back.

ZedTokens are policyd consistency tokens as they are, and ``Cursor.token``
carries policyd cursors, so a token from one API is good on the other. Object
ids follow policyd's grammar, a superset of SpiceDB's: DIDs and AT-URIs pass
unencoded (``errors.ID_PATTERN``). Validation errors are SpiceDB's
(``errors.invalid_id``), naming the field as SpiceDB's request validation does.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from authzed.api.v1 import core_pb2, debug_pb2, permission_service_pb2
from google.protobuf import struct_pb2

from policyd.api.authzed.errors import invalid_argument, invalid_filter, invalid_id
from policyd.api.convert import context_from_proto, context_to_proto
from policyd.consistency import Consistency
from policyd.decisions import Explanation, Permissionship
from policyd.errors import InvalidRequestError
from policyd.filters import Precondition, RelationshipFilter
from policyd.relationship import (
    OBJECT_ID,
    RELATION_NAME,
    TYPE_NAME,
    WILDCARD,
    ObjectRef,
    Operation,
    Relationship,
    RelationshipUpdate,
    SubjectRef,
)
from policyd.schema.ir import Schema

CHECK_PERMISSIONSHIP = {
    Permissionship.HAS_PERMISSION: permission_service_pb2.CheckPermissionResponse.PERMISSIONSHIP_HAS_PERMISSION,  # noqa: E501
    Permissionship.NO_PERMISSION: permission_service_pb2.CheckPermissionResponse.PERMISSIONSHIP_NO_PERMISSION,  # noqa: E501
    Permissionship.CONDITIONAL: permission_service_pb2.CheckPermissionResponse.PERMISSIONSHIP_CONDITIONAL_PERMISSION,  # noqa: E501
}
"""CheckPermissionResponse and CheckBulkPermissionsResponseItem share this enum."""

LOOKUP_PERMISSIONSHIP = {
    Permissionship.HAS_PERMISSION: permission_service_pb2.LOOKUP_PERMISSIONSHIP_HAS_PERMISSION,
    Permissionship.CONDITIONAL: permission_service_pb2.LOOKUP_PERMISSIONSHIP_CONDITIONAL_PERMISSION,
}

_TRACE_PERMISSIONSHIP = {
    Permissionship.HAS_PERMISSION: debug_pb2.CheckDebugTrace.PERMISSIONSHIP_HAS_PERMISSION,
    Permissionship.NO_PERMISSION: debug_pb2.CheckDebugTrace.PERMISSIONSHIP_NO_PERMISSION,
    Permissionship.CONDITIONAL: debug_pb2.CheckDebugTrace.PERMISSIONSHIP_CONDITIONAL_PERMISSION,
}

_OPERATIONS = {
    core_pb2.RelationshipUpdate.OPERATION_CREATE: Operation.CREATE,
    core_pb2.RelationshipUpdate.OPERATION_TOUCH: Operation.TOUCH,
    core_pb2.RelationshipUpdate.OPERATION_DELETE: Operation.DELETE,
}


def _check_name(value: str, pattern: Any, field: str) -> str:
    if not pattern.fullmatch(value):
        raise invalid_argument(
            f"validation error: {field}: does not match regex pattern "
            f"`{pattern.pattern.replace(chr(92) + 'A', '^').replace(chr(92) + 'Z', '$')}`"
        )
    return value


def object_type(value: str, field: str) -> str:
    """A type name, or SpiceDB's validation error naming ``field``."""
    return _check_name(value, TYPE_NAME, field)


def relation_name(value: str, field: str) -> str:
    """A relation or permission name, or SpiceDB's validation error naming ``field``."""
    return _check_name(value, RELATION_NAME, field)


def object_id(value: str, field: str, *, wildcard: bool = False) -> str:
    """An object id in the superset grammar (``*`` only where ``wildcard``)."""
    if (value == WILDCARD and wildcard) or OBJECT_ID.fullmatch(value):
        return value
    raise invalid_id(field)


def object_from_proto(message: core_pb2.ObjectReference, field: str) -> ObjectRef:
    """An ObjectRef; SpiceDB's validation errors name ``field.object_type`` and so on."""
    return ObjectRef(
        object_type(message.object_type, f"{field}.object_type"),
        object_id(message.object_id, f"{field}.object_id"),
    )


def subject_from_proto(message: core_pb2.SubjectReference, field: str) -> SubjectRef:
    """A SubjectRef (``*`` allowed: whether a wildcard may be asked about is the call's rule)."""
    obj = message.object
    relation = message.optional_relation
    return SubjectRef(
        object_type(obj.object_type, f"{field}.object.object_type"),
        object_id(obj.object_id, f"{field}.object.object_id", wildcard=True),
        relation_name(relation, f"{field}.optional_relation") if relation else None,
    )


def object_to_proto(ref: ObjectRef) -> core_pb2.ObjectReference:
    """The ObjectReference of an ObjectRef."""
    return core_pb2.ObjectReference(object_type=ref.type, object_id=ref.id)


def subject_to_proto(ref: SubjectRef) -> core_pb2.SubjectReference:
    """The SubjectReference of a SubjectRef."""
    return core_pb2.SubjectReference(
        object=core_pb2.ObjectReference(object_type=ref.type, object_id=ref.id),
        optional_relation=ref.relation or "",
    )


def context_of(message: struct_pb2.Struct, field: str = "context") -> dict[str, Any]:
    """A caveat context from a Struct (policyd.v1's conversion: ints come back as ints)."""
    try:
        return context_from_proto(message, field)
    except InvalidRequestError as e:
        raise invalid_argument(e.message) from e


def relationship_from_proto(message: core_pb2.Relationship, field: str) -> Relationship:
    """A Relationship; whether the schema allows it is the write's to say."""
    caveat_name: str | None = None
    context: dict[str, Any] = {}
    if message.HasField("optional_caveat") and message.optional_caveat.caveat_name:
        caveat_name = message.optional_caveat.caveat_name
        context = context_of(message.optional_caveat.context, f"{field}.optional_caveat.context")
    return Relationship(
        object_from_proto(message.resource, f"{field}.resource"),
        relation_name(message.relation, f"{field}.relation"),
        subject_from_proto(message.subject, f"{field}.subject"),
        caveat_name,
        context,
        message.optional_expires_at.ToDatetime(tzinfo=UTC)
        if message.HasField("optional_expires_at")
        else None,
    )


def relationship_to_proto(relationship: Relationship) -> core_pb2.Relationship:
    """The authzed Relationship of a policyd one."""
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


def update_from_proto(message: core_pb2.RelationshipUpdate, field: str) -> RelationshipUpdate:
    """A RelationshipUpdate."""
    operation = _OPERATIONS.get(message.operation)
    if operation is None:
        raise invalid_argument(f"validation error: {field}.operation: value must not be in list")
    return RelationshipUpdate(
        operation, relationship_from_proto(message.relationship, f"{field}.relationship")
    )


def consistency_from_proto(message: permission_service_pb2.Consistency) -> Consistency:
    """A Consistency; unset is SpiceDB's default, minimize_latency."""
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
        raise invalid_argument("invalid revision requested") from e
    return result


def zedtoken(token: str) -> core_pb2.ZedToken:
    """The ZedToken of a policyd consistency token: the same string."""
    return core_pb2.ZedToken(token=token)


# ---- filters -----------------------------------------------------------------------------------


def filter_from_proto(
    message: permission_service_pb2.RelationshipFilter, field: str
) -> tuple[RelationshipFilter, str]:
    """A store filter and the resource id prefix the caller filters by (``""`` for none).

    SpiceDB's filter needs one field set at least; a subject relation of ``""``
    in ``optional_relation`` means subjects without one, as policyd's ``""``.
    """
    subject = (
        message.optional_subject_filter if message.HasField("optional_subject_filter") else None
    )
    if message.optional_resource_id and message.optional_resource_id_prefix:
        raise invalid_filter("resource_id and resource_id_prefix cannot be set at the same time")
    result = RelationshipFilter(
        resource_type=_optional(message.resource_type, object_type, f"{field}.resource_type"),
        resource_id=_optional(
            message.optional_resource_id, object_id, f"{field}.optional_resource_id"
        ),
        relation=_optional(message.optional_relation, relation_name, f"{field}.optional_relation"),
        subject_type=_optional(
            subject.subject_type if subject else "", object_type, f"{field}.subject_type"
        ),
        subject_id=_optional(
            subject.optional_subject_id if subject else "",
            lambda v, f: object_id(v, f, wildcard=True),
            f"{field}.optional_subject_id",
        ),
        subject_relation=(
            subject.optional_relation.relation
            if subject is not None and subject.HasField("optional_relation")
            else None
        ),
    )
    prefix = message.optional_resource_id_prefix
    if result.is_empty() and not prefix:
        raise invalid_filter("at least one field must be set")
    return result, prefix


def _optional(value: str, check: Any, field: str) -> str | None:
    return check(value, field) if value else None


def precondition_from_proto(
    message: permission_service_pb2.Precondition, field: str
) -> Precondition:
    """A Precondition (a resource id prefix in its filter is refused: the store checks these)."""
    relationship_filter, prefix = filter_from_proto(message.filter, f"{field}.filter")
    if prefix:
        raise invalid_filter("a precondition cannot filter by resource id prefix here")
    if message.operation == permission_service_pb2.Precondition.OPERATION_MUST_MATCH:
        return Precondition.must_match(relationship_filter)
    if message.operation == permission_service_pb2.Precondition.OPERATION_MUST_NOT_MATCH:
        return Precondition.must_not_match(relationship_filter)
    raise invalid_argument(f"validation error: {field}.operation: value must not be in list")


def precondition_text(message: permission_service_pb2.Precondition) -> str:
    """A precondition as SpiceDB prints it in errors: Go's compact protobuf text."""
    return _compact_text(message)


def _compact_text(message: Any) -> str:
    parts = []
    for descriptor, value in message.ListFields():
        if descriptor.message_type is not None:
            parts.append(f"{descriptor.name}:{{{_compact_text(value)}}}")
        elif descriptor.enum_type is not None:
            parts.append(f"{descriptor.name}:{descriptor.enum_type.values_by_number[value].name}")
        elif isinstance(value, str):
            parts.append(f'{descriptor.name}:"{value}"')
        else:
            parts.append(f"{descriptor.name}:{str(value).lower()}")
    return " ".join(parts)


def precondition_metadata(message: permission_service_pb2.Precondition) -> dict[str, str]:
    """The ErrorInfo metadata SpiceDB attaches to a failed precondition."""
    f = message.filter
    metadata = {
        "precondition_operation": permission_service_pb2.Precondition.Operation.Name(
            message.operation
        ),
        "precondition_resource_type": f.resource_type,
        "precondition_resource_id": f.optional_resource_id,
        "precondition_resource_id_prefix": f.optional_resource_id_prefix,
        "precondition_relation": f.optional_relation,
    }
    if f.HasField("optional_subject_filter"):
        s = f.optional_subject_filter
        metadata["precondition_subject_type"] = s.subject_type
        metadata["precondition_subject_id"] = s.optional_subject_id
        if s.HasField("optional_relation"):
            metadata["precondition_subject_relation"] = s.optional_relation.relation
    return {k: v for k, v in metadata.items() if v or k == "precondition_subject_type"}


# ---- debug traces ------------------------------------------------------------------------------


def trace_to_proto(
    explanation: Explanation, subject: SubjectRef, schema: Schema
) -> debug_pb2.CheckDebugTrace:
    """A CheckDebugTrace from an explanation: one trace per member checked, operations flattened.

    policyd explains every step (operations, relationships found); SpiceDB
    traces the relations and permissions it dispatched, each with the
    sub-problems beneath it, so steps that are not members are folded into
    the nearest member above them.
    """
    trace = debug_pb2.CheckDebugTrace(
        subject=subject_to_proto(subject),
        result=_TRACE_PERMISSIONSHIP[explanation.result],
        source="policyd",
    )
    member = _member(explanation.what)
    if member is not None:
        resource, name = member
        trace.resource.CopyFrom(object_to_proto(resource))
        trace.permission = name
        definition = schema.definition(resource.type)
        trace.permission_type = (
            debug_pb2.CheckDebugTrace.PERMISSION_TYPE_PERMISSION
            if definition is not None and name in definition.permissions
            else debug_pb2.CheckDebugTrace.PERMISSION_TYPE_RELATION
        )
    if explanation.missing:
        trace.caveat_evaluation_info.partial_caveat_info.missing_required_context.extend(
            explanation.missing
        )
    trace.sub_problems.SetInParent()
    for child in _members_under(explanation):
        trace.sub_problems.traces.append(trace_to_proto(child, subject, schema))
    return trace


def _members_under(explanation: Explanation) -> list[Explanation]:
    """The nearest member steps below ``explanation``, through operations and relationships."""
    found: list[Explanation] = []
    for child in explanation.children:
        if _member(child.what) is not None:
            found.append(child)
        else:
            found.extend(_members_under(child))
    return found


def _member(what: str) -> tuple[ObjectRef, str] | None:
    """``type:id#name`` of a member step, or None for an operation or a relationship."""
    if " " in what or "->" in what:
        return None
    head, sep, name = what.rpartition("#")
    object_type_, colon, id_ = head.partition(":")
    if not sep or not colon:
        return None
    return ObjectRef(object_type_, id_), name
