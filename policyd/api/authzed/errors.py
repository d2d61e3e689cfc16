"""Package errors gives authzed.api.v1 calls SpiceDB's errors: status codes, messages, reasons.

A SpiceDB client reads three things from a failed call: the status code, the
message, and an ``ErrorInfo`` (domain ``authzed.com``, a reason from
``authzed.api.v1.ErrorReason``, metadata) inside the ``google.rpc.Status`` sent
as ``grpc-status-details-bin``. The engine raises policyd errors that name the
request field at fault; ``spicedb_errors`` turns them into ``RichStatusError``
with the code, message and reason SpiceDB gives for the same fault. The texts
follow SpiceDB's (internal/services/v1/errors.go, pkg/schema/errors.go, and
what the embedded SpiceDB 1.54 answered in the conformance scenario,
tests/api/authzed/scenario.py); where policyd knows more, its message says so
after SpiceDB's words.

One module over 500 lines: it is a table, a fault per entry with SpiceDB's
code, message and reason, read top to bottom beside SpiceDB's own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeAlias

import grpc
from authzed.api.v1 import error_reason_pb2
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from policyd.api.errors import RichStatusError
from policyd.errors import (
    AlreadyExistsError,
    CaveatError,
    InvalidRequestError,
    MaxDepthExceededError,
    NotFoundError,
    PolicyChangeRefusedError,
    PolicydError,
    PolicyErrors,
    PolicySyntaxError,
    RevisionUnavailableError,
)
from policyd.filters import RelationshipFilter
from policyd.relationship import OBJECT_ID, WILDCARD, Relationship, parse_relationship
from policyd.schema.ir import AllowedSubject, Definition, Schema
from policyd.store.base import SnapshotReader

DOMAIN = "authzed.com"
Reason: TypeAlias = error_reason_pb2.ErrorReason.ValueType
UNSPECIFIED = error_reason_pb2.ERROR_REASON_UNSPECIFIED

ID_PATTERN = OBJECT_ID.pattern.replace("\\A", "^(").replace("\\Z", "|\\*)$")
"""The object id grammar this API accepts, as SpiceDB prints its own in validation errors:
SpiceDB's ``^(([a-zA-Z0-9/_|\\-=+]{1,})|\\*)$`` widened with ``:.~%`` for DIDs and AT-URIs."""

_UPDATE = re.compile(r"\A(?:updates|relationships)\[(\d+)\](?:\.relationship)?\.?(.*)\Z")


def spicedb_error(
    status: grpc.StatusCode,
    message: str,
    reason: Reason = UNSPECIFIED,
    metadata: Mapping[str, str] | None = None,
) -> RichStatusError:
    """An error as SpiceDB sends it: status, message and an ErrorInfo in the status details.

    Its policyd code, for logs and metrics, is the reason in kebab case
    (``unknown-definition``), or the status's (``invalid-argument``).
    """
    name = (
        error_reason_pb2.ErrorReason.Name(reason).removeprefix("ERROR_REASON_")
        if reason != UNSPECIFIED
        else status.name
    )
    return RichStatusError(
        status,
        message,
        status_proto(status, message, reason, metadata).SerializeToString(),
        code=name.lower().replace("_", "-"),
    )


def status_proto(
    status: grpc.StatusCode,
    message: str,
    reason: Reason = UNSPECIFIED,
    metadata: Mapping[str, str] | None = None,
) -> status_pb2.Status:
    """The google.rpc.Status of an error (CheckBulkPermissions sends one per failed item)."""
    info = error_details_pb2.ErrorInfo(
        reason=error_reason_pb2.ErrorReason.Name(reason), domain=DOMAIN, metadata=metadata or {}
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    return status_pb2.Status(code=status.value[0], message=message, details=[detail])


def status_of(error: RichStatusError) -> status_pb2.Status:
    """The google.rpc.Status a RichStatusError carries."""
    return status_pb2.Status.FromString(error.details)


# ---- the errors SpiceDB names ------------------------------------------------------------------


def unknown_definition(name: str) -> RichStatusError:
    """A type the schema does not define (SpiceDB: FAILED_PRECONDITION)."""
    return spicedb_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        f"object definition `{name}` not found",
        error_reason_pb2.ERROR_REASON_UNKNOWN_DEFINITION,
        {"definition_name": name},
    )


def unknown_relation(definition: str, name: str) -> RichStatusError:
    """A relation or permission the type does not have (SpiceDB: FAILED_PRECONDITION)."""
    return spicedb_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        f"relation/permission `{name}` not found under definition `{definition}`",
        error_reason_pb2.ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION,
        {"definition_name": definition, "relation_or_permission_name": name},
    )


def invalid_argument(message: str, reason: Reason = UNSPECIFIED) -> RichStatusError:
    """A malformed request (SpiceDB: INVALID_ARGUMENT)."""
    return spicedb_error(grpc.StatusCode.INVALID_ARGUMENT, message, reason)


def invalid_id(field: str) -> RichStatusError:
    """An object id outside the accepted grammar, worded as SpiceDB's request validation."""
    return invalid_argument(
        f"validation error: {field}: does not match regex pattern `{ID_PATTERN}`"
    )


def invalid_filter(reason: str) -> RichStatusError:
    """A relationship filter SpiceDB refuses."""
    return spicedb_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"the relationship filter provided is not valid: {reason}",
        error_reason_pb2.ERROR_REASON_INVALID_FILTER,
    )


def invalid_cursor(reason: str) -> RichStatusError:
    """A cursor that is not one of ours for this request."""
    return spicedb_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"error decoding cursor: {reason}",
        error_reason_pb2.ERROR_REASON_INVALID_CURSOR,
        {"reason": reason},
    )


def schema_not_found() -> RichStatusError:
    """ReadSchema before any WriteSchema."""
    return spicedb_error(
        grpc.StatusCode.NOT_FOUND, "no schema has been defined; please call WriteSchema to start"
    )


def duplicate_update(relationship: Relationship) -> RichStatusError:
    """Two updates of one relationship in one WriteRelationships."""
    return spicedb_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"found more than one update with relationship `{_without_traits(relationship)}` in "
        "this request; a relationship can only be specified in an update once per overall "
        "WriteRelationships request",
        error_reason_pb2.ERROR_REASON_UPDATES_ON_SAME_RELATIONSHIP,
        {"definition_name": relationship.resource.type, "relationship": str(relationship)},
    )


def precondition_failed(text: str, metadata: Mapping[str, str]) -> RichStatusError:
    """A write or delete whose precondition (printed as SpiceDB prints it) did not hold."""
    return spicedb_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        f"unable to satisfy write precondition `{text}`",
        error_reason_pb2.ERROR_REASON_WRITE_OR_DELETE_PRECONDITION_FAILURE,
        metadata,
    )


def too_many_to_delete(limit: int) -> RichStatusError:
    """A limited delete that would leave matches behind without partial deletion allowed."""
    return spicedb_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"found more than {limit} relationships to be deleted and partial deletion was not "
        "requested",
        error_reason_pb2.ERROR_REASON_TOO_MANY_RELATIONSHIPS_FOR_TRANSACTIONAL_DELETE,
        {"limit": str(limit)},
    )


def _without_traits(relationship: Relationship) -> str:
    return f"{relationship.resource}#{relationship.relation}@{relationship.subject}"


# ---- policyd errors as SpiceDB's ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Names:
    """What a translated message names: the request's types, permission and relationships.

    ``wildcard`` is the operation SpiceDB names when refusing a wildcard subject
    (``check on wildcard subject``, ``lookup resources on wildcard``);
    ``relationships`` are a write's, by index, for errors naming ``updates[i]``;
    ``schema`` is the one writes were checked against.
    """

    resource_type: str = ""
    permission: str = ""
    subject_type: str = ""
    subject_relation: str = ""
    wildcard: str = "check on wildcard subject"
    relationships: Sequence[Relationship] = ()
    schema: Schema | None = None


@contextmanager
def spicedb_errors(names: Names = Names()) -> Iterator[None]:
    """Re-raise the policyd errors of the block as SpiceDB's (``translate``)."""
    try:
        yield
    except RichStatusError:
        raise
    except PolicydError as e:
        translated = translate(e, names)
        if translated is e:
            raise
        raise translated from e


def translate(error: PolicydError, names: Names) -> PolicydError:
    """SpiceDB's error for a policyd error; the error itself when SpiceDB has no other shape.

    Deadlines, cancellation, limits and store faults keep policyd's status codes,
    which are SpiceDB's too (DEADLINE_EXCEEDED, CANCELLED, RESOURCE_EXHAUSTED,
    UNAVAILABLE).
    """
    field = error.field or ""
    relationship = _UPDATE.fullmatch(field)
    if relationship is not None and int(relationship[1]) < len(names.relationships):
        return _relationship_error(
            error, names.relationships[int(relationship[1])], relationship[2], names.schema
        )
    if isinstance(error, AlreadyExistsError):
        return _already_exists(error)
    match error:
        case PolicySyntaxError() | PolicyErrors():
            return _schema_error(error)
        case PolicyChangeRefusedError():
            return invalid_argument(error.message, error_reason_pb2.ERROR_REASON_SCHEMA_TYPE_ERROR)
        case NotFoundError() if names.resource_type:
            return unknown_definition(names.resource_type)
        case NotFoundError():
            return schema_not_found()
        case RevisionUnavailableError():
            return invalid_argument("invalid revision requested")
        case MaxDepthExceededError():
            return spicedb_error(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"max depth exceeded: {error.message}",
                error_reason_pb2.ERROR_REASON_MAXIMUM_DEPTH_EXCEEDED,
            )
        case CaveatError():
            return invalid_argument(
                error.message, error_reason_pb2.ERROR_REASON_CAVEAT_EVALUATION_ERROR
            )
        case InvalidRequestError():
            return _request_error(error, field, names)
    return error


def _request_error(error: PolicydError, field: str, names: Names) -> RichStatusError:
    """SpiceDB's error for a request naming something the schema lacks, by the field at fault."""
    if field.endswith("resource.type"):
        return unknown_definition(names.resource_type)
    if field == "permission":
        return unknown_relation(names.resource_type, names.permission)
    if field.endswith("subject.type"):
        return unknown_definition(names.subject_type)
    if field.endswith("subject.relation"):
        return unknown_relation(names.subject_type, names.subject_relation)
    if field.endswith("subject.id") and error.message.startswith("cannot check a wildcard"):
        return spicedb_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"invalid argument: cannot perform {names.wildcard}",
            error_reason_pb2.ERROR_REASON_WILDCARD_NOT_ALLOWED,
            {"field": "subject.object_id"},
        )
    if field.startswith("consistency"):
        return invalid_argument("invalid revision requested")
    return invalid_argument(error.message)


def _schema_error(error: PolicySyntaxError | PolicyErrors) -> RichStatusError:
    """A schema that does not parse or type-check, with SpiceDB's ``parse error in`` prefix."""
    span, message = error.span, error.message
    reason = error_reason_pb2.ERROR_REASON_SCHEMA_PARSE_ERROR
    if isinstance(error, PolicyErrors) and error.errors:
        first = error.errors[0]
        span, message = first.span, first.message
        reason = error_reason_pb2.ERROR_REASON_SCHEMA_TYPE_ERROR
    where = f", line {span.line}, column {span.column}" if span is not None else ""
    return spicedb_error(
        grpc.StatusCode.INVALID_ARGUMENT, f"parse error in `schema`{where}: {message}", reason
    )


def _relationship_error(
    error: PolicydError, relationship: Relationship, part: str, schema: Schema | None
) -> PolicydError:
    """SpiceDB's error for one relationship of a write, by the part policyd found at fault."""
    resource_type, relation = relationship.resource.type, relationship.relation
    if isinstance(error, AlreadyExistsError):
        return _already_exists(error, relationship)
    definition = schema.definition(resource_type) if schema is not None else None
    if part == "resource.type" or (part and definition is None):
        return unknown_definition(resource_type)
    subject = relationship.subject
    if part.startswith("subject.") and schema is not None:
        subject_definition = schema.definition(subject.type)
        if subject_definition is None:
            return unknown_definition(subject.type)
        if subject.relation and subject_definition.member(subject.relation) is None:
            return unknown_relation(subject.type, subject.relation)
    if part.endswith(".id") and not (part == "subject.id" and subject.is_wildcard):
        return invalid_id(f"relationship.{part.replace('.id', '.object_id')}")
    if part == "relation" and definition is not None and relation in definition.permissions:
        return spicedb_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"cannot write a relationship to permission `{relation}` under definition "
            f"`{resource_type}`",
            error_reason_pb2.ERROR_REASON_CANNOT_UPDATE_PERMISSION,
            {"definition_name": resource_type, "permission_name": relation},
        )
    if part == "relation":
        return unknown_relation(resource_type, relation)
    if part in ("subject.type", "subject.relation", "subject.id", "caveat.name", "expiration"):
        assert definition is not None
        return _subject_not_allowed(relationship, definition.relations[relation].allowed)
    return invalid_argument(error.message)


def _already_exists(
    error: AlreadyExistsError, relationship: Relationship | None = None
) -> RichStatusError:
    """SpiceDB's error for a CREATE (or an import) of a relationship that exists.

    Where the store did not say which update it was (a bulk import names only
    ``relationships``), the relationship is read from its message
    (``<relationship> already exists``), when it can be.
    """
    if relationship is None:
        text = error.message.removesuffix(" already exists").rpartition(": ")[2]
        try:
            relationship = parse_relationship(text)
        except PolicydError:
            relationship = None
    name = f" `{_without_traits(relationship)}`" if relationship is not None else ""
    return spicedb_error(
        grpc.StatusCode.ALREADY_EXISTS,
        f"could not CREATE relationship{name}, as it already existed. If this is persistent, "
        "please switch to TOUCH operations or specify a precondition",
        error_reason_pb2.ERROR_REASON_ATTEMPT_TO_RECREATE_RELATIONSHIP,
        {"relationship": _without_traits(relationship)} if relationship is not None else {},
    )


def _subject_not_allowed(
    relationship: Relationship, allowed: Sequence[AllowedSubject]
) -> RichStatusError:
    """SpiceDB's "subjects of type … are not allowed".

    SpiceDB suggests an allowed type only for a plain subject (no relation, no
    wildcard, no caveat, no expiration) when one allowed type alone has its type.
    """
    s = relationship.subject
    given = str(
        AllowedSubject(
            s.type,
            s.relation,
            s.is_wildcard,
            relationship.caveat_name,
            relationship.expires_at is not None,
        )
    )
    target = f"{relationship.resource.type}#{relationship.relation}"
    message = f"subjects of type `{given}` are not allowed on relation `{target}`"
    same_type = [a for a in allowed if a.type == s.type]
    plain = (
        relationship.caveat_name is None
        and relationship.expires_at is None
        and s.relation is None
        and not s.is_wildcard
    )
    if plain and len(same_type) == 1:
        message += f"; did you mean `{same_type[0]}`?"
    return spicedb_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        message,
        error_reason_pb2.ERROR_REASON_INVALID_SUBJECT_TYPE,
        {"definition_name": relationship.resource.type, "relation_name": relationship.relation},
    )


# ---- schema changes that stored relationships block --------------------------------------------


def schema_change_blocked(
    current: Schema, new: Schema, snapshot: SnapshotReader
) -> RichStatusError | None:
    """SpiceDB's error for the first change from ``current`` to ``new`` a relationship blocks.

    In SpiceDB's order and words (internal/services/shared/schema.go): a
    removed definition, then per definition a removed relation (as resource,
    then as subject relation), a removed allowed type, then caveat parameters
    removed or retyped. None when no relationship in ``snapshot`` blocks one.
    """
    for name in current.definitions.keys() - new.definitions.keys():
        found = _first(snapshot, RelationshipFilter(resource_type=name))
        if found is not None:
            return _blocked(
                f"cannot delete object definition `{name}`, as at least one relationship "
                "exists under it",
                found,
                {"resource_type": name, "operation": "delete_object_definition"},
            )
    for name, definition in new.definitions.items():
        old = current.definitions.get(name)
        if old is not None:
            blocked = _relation_changes_blocked(name, old, definition, snapshot)
            if blocked is not None:
                return blocked
    for name, caveat in new.caveats.items():
        previous = current.caveats.get(name)
        for parameter, kind in (previous.parameter_types if previous else {}).items():
            changed = caveat.parameter_types.get(parameter)
            if changed is None or changed != kind:
                verb = "remove" if changed is None else "change the type of"
                return spicedb_error(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"cannot {verb} parameter `{parameter}` on caveat `{name}`",
                    error_reason_pb2.ERROR_REASON_SCHEMA_TYPE_ERROR,
                    {"caveat_name": name, "parameter_name": parameter},
                )
    return None


def _relation_changes_blocked(
    name: str, old: Definition, new: Definition, snapshot: SnapshotReader
) -> RichStatusError | None:
    for relation_name, relation in old.relations.items():
        kept = new.relations.get(relation_name)
        metadata = {"resource_type": name, "relation": relation_name}
        if kept is None:
            under = _first(snapshot, RelationshipFilter(resource_type=name, relation=relation_name))
            if under is not None:
                return _blocked(
                    f"cannot delete relation `{relation_name}` in object definition `{name}`, "
                    "as at least one relationship exists under it",
                    under,
                    {**metadata, "operation": "delete_relation"},
                )
            referring = _first(
                snapshot, RelationshipFilter(subject_type=name, subject_relation=relation_name)
            )
            if referring is not None:
                return _blocked(
                    f"cannot delete relation `{relation_name}` in object definition `{name}`, "
                    "as at least one relationship references it as part of a subject",
                    referring,
                    {**metadata, "operation": "delete_relation_reverse_check"},
                )
            continue
        for allowed in relation.allowed:
            if allowed in kept.allowed:
                continue
            with_it = _first(
                snapshot,
                RelationshipFilter(
                    resource_type=name,
                    relation=relation_name,
                    subject_type=allowed.type,
                    subject_id=WILDCARD if allowed.wildcard else None,
                    subject_relation=allowed.relation or "",
                ),
                _holds(allowed),
            )
            if with_it is not None:
                return _blocked(
                    f"cannot remove allowed type `{allowed}` from relation `{relation_name}` in "
                    f"object definition `{name}`, as a relationship exists with it",
                    with_it,
                    {**metadata, "allowed_type": str(allowed), "operation": "remove_allowed_type"},
                )
    return None


def _holds(allowed: AllowedSubject) -> Callable[[Relationship], bool]:
    """Whether a relationship is one of the ``allowed`` type, traits included."""

    def holds(relationship: Relationship) -> bool:
        return (
            relationship.caveat_name == allowed.caveat
            and (relationship.expires_at is not None) == allowed.expiration
            and relationship.subject.is_wildcard == allowed.wildcard
        )

    return holds


def _first(
    snapshot: SnapshotReader,
    relationship_filter: RelationshipFilter,
    keep: Callable[[Relationship], bool] | None = None,
) -> Relationship | None:
    """The first relationship matching (and kept), reading a page at a time."""
    cursor = None
    while True:
        page = snapshot.read(relationship_filter, cursor)
        for relationship in page.relationships:
            if keep is None or keep(relationship):
                return relationship
        if page.cursor is None:
            return None
        cursor = page.cursor


def _blocked(message: str, relationship: Relationship, metadata: dict[str, str]) -> RichStatusError:
    text = _without_traits(relationship)
    return spicedb_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"{message}: {text}",
        error_reason_pb2.ERROR_REASON_SCHEMA_TYPE_ERROR,
        {**metadata, "relationship": text},
    )
