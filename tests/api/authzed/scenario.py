"""One SpiceDB API scenario, run through the official ``authzed`` client against any server.

The conformance test (test_conformance.py) runs it against policyd and
against SpiceDB itself and compares the answers step by step. ``run``
returns each step's answer normalized: messages as dicts with ZedTokens and
cursors replaced by placeholders (both are opaque), streams sorted where
SpiceDB promises no order, and a failed call as its status code and message.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

import grpc
from authzed.api.v1 import InsecureClient, core_pb2, schema_service_pb2, watch_service_pb2
from authzed.api.v1 import permission_service_pb2 as pb
from google.protobuf import json_format, struct_pb2

from policyd.dsl.compiler import compile_policy

SCHEMA = """use expiration

caveat ip_allowed(ip string, allowed list<string>) {
    ip in allowed
}

definition user {}

definition group {
    relation member: user | group#member
}

definition folder {
    relation owner: user
    relation viewer: user | group#member
    permission view = viewer + owner
}

definition doc {
    relation folder: folder
    relation owner: user
    relation editor: user | user with expiration
    relation viewer: user | user:* | group#member | user with ip_allowed
    relation banned: user
    relation reviewer: user
    permission edit = owner + editor
    permission view = (viewer + edit + folder->view) - banned
    permission review = reviewer & edit
}
"""

TOKEN_FIELDS = frozenset(
    {
        "checked_at",
        "written_at",
        "read_at",
        "looked_up_at",
        "expanded_at",
        "deleted_at",
        "changes_through",
    }
)
CURSOR_FIELDS = frozenset({"after_result_cursor"})

Step = tuple[str, Any]


def obj(text: str) -> core_pb2.ObjectReference:
    """``type:id`` (the id is everything after the first colon)."""
    type_name, _, object_id = text.partition(":")
    return core_pb2.ObjectReference(object_type=type_name, object_id=object_id)


def sub(text: str) -> core_pb2.SubjectReference:
    """``type:id`` or ``type:id#relation``."""
    head, _, relation = text.partition("#")
    return core_pb2.SubjectReference(object=obj(head), optional_relation=relation)


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    """A Struct of JSON values."""
    message = struct_pb2.Struct()
    message.update(values)
    return message


def rel(
    text: str, caveat: tuple[str, dict[str, Any]] | None = None, expires: str | None = None
) -> core_pb2.Relationship:
    """``resource#relation@subject``, optionally caveated and expiring (RFC 3339)."""
    resource, _, rest = text.partition("#")
    relation, _, subject = rest.partition("@")
    message = core_pb2.Relationship(resource=obj(resource), relation=relation, subject=sub(subject))
    if caveat is not None:
        message.optional_caveat.caveat_name = caveat[0]
        message.optional_caveat.context.update(caveat[1])
    if expires is not None:
        message.optional_expires_at.FromJsonString(expires)
    return message


def update(
    operation: core_pb2.RelationshipUpdate.Operation.ValueType,
    *relationships: core_pb2.Relationship,
) -> list[core_pb2.RelationshipUpdate]:
    """One update of ``operation`` per relationship."""
    return [core_pb2.RelationshipUpdate(operation=operation, relationship=r) for r in relationships]


TOUCH = core_pb2.RelationshipUpdate.OPERATION_TOUCH
CREATE = core_pb2.RelationshipUpdate.OPERATION_CREATE
DELETE = core_pb2.RelationshipUpdate.OPERATION_DELETE
FULL = pb.Consistency(fully_consistent=True)


def normalize(message: Any) -> Any:
    """A message as a dict, tokens and cursors as placeholders, debug traces dropped."""
    data = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return _placeholders(data)


def _placeholders(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: "<token>"
            if k in TOKEN_FIELDS
            else "<cursor>"
            if k in CURSOR_FIELDS
            else _placeholders(v)
            for k, v in value.items()
            if k != "debug_trace"
        }
    if isinstance(value, list):
        return [_placeholders(v) for v in value]
    return value


def error(e: grpc.RpcError) -> dict[str, str]:
    """A failed call: its status code and message."""
    return {"error": e.code().name, "message": e.details() or ""}


def attempt(call: Callable[[], Any]) -> Any:
    """The normalized answer of a call, or its error."""
    try:
        return normalize(call())
    except grpc.RpcError as e:
        return error(e)


def attempt_stream(call: Callable[[], Iterable[Any]], ordered: bool = False) -> Any:
    """The normalized answers of a streaming call (sorted unless ``ordered``), or its error."""
    try:
        answers = [normalize(m) for m in call()]
    except grpc.RpcError as e:
        return error(e)
    return answers if ordered else sorted(answers, key=repr)


def _meaning(text: str) -> Any:
    """A schema's definitions and its caveats with their parameters in name order."""
    schema = compile_policy(text).schema
    caveats = {
        name: (sorted((k, str(v)) for k, v in c.parameter_types.items()), c.expression)
        for name, c in schema.caveats.items()
    }
    return schema.definitions, caveats


class Scenario:
    """The steps, against one server; ``steps`` collects (name, answer)."""

    def __init__(self, client: InsecureClient) -> None:
        self.c = client
        self.steps: list[Step] = []
        self.token = ""
        self.first_token = ""

    def record(self, name: str, answer: Any) -> None:
        self.steps.append((name, answer))

    def fresh(self) -> pb.Consistency:
        """At least as fresh as the last write (read-your-writes through ZedTokens)."""
        return pb.Consistency(at_least_as_fresh=core_pb2.ZedToken(token=self.token))

    def write(
        self,
        name: str,
        updates: list[core_pb2.RelationshipUpdate],
        preconditions: Iterable[pb.Precondition] = (),
    ) -> None:
        def call() -> Any:
            response = self.c.WriteRelationships(
                pb.WriteRelationshipsRequest(updates=updates, optional_preconditions=preconditions)
            )
            self.token = response.written_at.token
            return response

        self.record(name, attempt(call))

    def check(
        self,
        name: str,
        resource: str,
        permission: str,
        subject: str,
        context: dict[str, Any] | None = None,
        consistency: pb.Consistency | None = None,
    ) -> None:
        request = pb.CheckPermissionRequest(
            consistency=consistency or self.fresh(),
            resource=obj(resource),
            permission=permission,
            subject=sub(subject),
            context=struct(context or {}),
        )
        self.record(name, attempt(lambda: self.c.CheckPermission(request)))

    def lookup_resources_pages(
        self, name: str, resource_type: str, permission: str, subject: str, limit: int
    ) -> None:
        """Page through LookupResources ``limit`` at a time with cursors."""
        pages: list[Any] = []
        found: list[str] = []
        cursor: core_pb2.Cursor | None = None
        try:
            for _ in range(20):
                request = pb.LookupResourcesRequest(
                    consistency=self.fresh(),
                    resource_object_type=resource_type,
                    permission=permission,
                    subject=sub(subject),
                    optional_limit=limit,
                    optional_cursor=cursor,
                )
                page = list(self.c.LookupResources(request))
                if not page:
                    break
                pages.append(len(page))
                cursor = page[-1].after_result_cursor
                found.extend(r.resource_object_id for r in page)
        except grpc.RpcError as e:
            pages.append(error(e))
        # SpiceDB promises no order, so pages may split the answers differently; their
        # sizes and their union (no answer twice) are what must agree
        self.record(name, {"page_sizes": pages, "found": sorted(found)})

    def run(self) -> list[Step]:
        c = self.c
        self.record(
            "ReadSchema before any",
            attempt(lambda: c.ReadSchema(schema_service_pb2.ReadSchemaRequest())),
        )
        self.record(
            "WriteSchema",
            attempt(lambda: c.WriteSchema(schema_service_pb2.WriteSchemaRequest(schema=SCHEMA))),
        )
        self.record("ReadSchema: the same schema", self._schema_read_back())
        self.record(
            "WriteSchema that does not parse",
            attempt(
                lambda: c.WriteSchema(
                    schema_service_pb2.WriteSchemaRequest(schema="definition x {")
                )
            ),
        )
        self._writes()
        self._checks()
        self._lookups()
        self._expand_arrow()
        self._reads_and_deletes()
        self.check(
            "at_exact_snapshot of an earlier ZedToken",
            "doc:d5",
            "view",
            "user:alice",
            consistency=pb.Consistency(at_exact_snapshot=core_pb2.ZedToken(token=self.first_token)),
        )
        self._watch()
        self._bulk()
        self._schema_changes()
        return self.steps

    def _schema_read_back(self) -> Any:
        """Whether ReadSchema's text compiles to the schema written.

        SpiceDB regenerates the text from its compiled schema (caveat parameters in
        name order), policyd returns it as written; what must agree is its meaning.
        """
        try:
            text = self.c.ReadSchema(schema_service_pb2.ReadSchemaRequest()).schema_text
        except grpc.RpcError as e:
            return error(e)
        return _meaning(text) == _meaning(SCHEMA)

    def _writes(self) -> None:
        self.write(
            "WriteRelationships TOUCH",
            update(
                TOUCH,
                rel("group:eng#member@user:alice"),
                rel("group:eng#member@group:core#member"),
                rel("group:core#member@user:carol"),
                rel("folder:f1#viewer@group:eng#member"),
                rel("folder:f1#owner@user:dave"),
                rel("doc:d1#folder@folder:f1"),
                rel("doc:d1#owner@user:bob"),
                rel("doc:d1#banned@user:carol"),
                rel("doc:d2#viewer@user:*"),
                rel("doc:d2#banned@user:mallory"),
                rel("doc:d3#viewer@user:erin", caveat=("ip_allowed", {"allowed": ["10.0.0.1"]})),
                rel("doc:d4#editor@user:frank", expires="2100-01-01T00:00:00Z"),
                rel("doc:d4#reviewer@user:frank"),
                rel("doc:d4#reviewer@user:gina"),
                rel("doc:d4#owner@user:gina"),
                rel("doc:d5#viewer@user:alice"),
                rel("doc:d6#viewer@user:alice"),
            ),
        )
        self.first_token = self.token
        self.write(
            "CREATE of an existing relationship", update(CREATE, rel("doc:d1#owner@user:bob"))
        )
        self.write(
            "two updates of one relationship",
            update(TOUCH, rel("doc:d9#owner@user:bob"), rel("doc:d9#owner@user:bob")),
        )
        must_match = pb.Precondition(
            operation=pb.Precondition.OPERATION_MUST_MATCH,
            filter=pb.RelationshipFilter(resource_type="doc", optional_resource_id="nope"),
        )
        self.write(
            "precondition that fails", update(TOUCH, rel("doc:d9#owner@user:bob")), [must_match]
        )
        must_not_match = pb.Precondition(
            operation=pb.Precondition.OPERATION_MUST_NOT_MATCH,
            filter=pb.RelationshipFilter(resource_type="doc", optional_resource_id="d9"),
        )
        self.write(
            "precondition that holds", update(TOUCH, rel("doc:d9#owner@user:bob")), [must_not_match]
        )
        self.write("write to a permission", update(TOUCH, rel("doc:d1#view@user:bob")))
        self.write("subject type not allowed", update(TOUCH, rel("doc:d1#viewer@group:eng")))
        self.write(
            "expiration missing",
            update(TOUCH, rel("folder:f1#owner@user:x", expires="2100-01-01T00:00:00Z")),
        )
        self.write(
            "unknown caveat", update(TOUCH, rel("doc:d1#viewer@user:x", caveat=("nope", {})))
        )
        self.write("unknown relation", update(TOUCH, rel("doc:d1#nope@user:bob")))
        self.write("unknown definition", update(TOUCH, rel("nope:1#viewer@user:bob")))
        self.write("unknown subject definition", update(TOUCH, rel("doc:d1#viewer@nope:x")))
        self.write("wildcard where none is allowed", update(TOUCH, rel("doc:d1#owner@user:*")))
        self.write("unknown subject relation", update(TOUCH, rel("doc:d1#viewer@group:eng#nope")))
        self.write(
            "caveat context of the wrong type",
            update(
                TOUCH, rel("doc:d1#viewer@user:q", caveat=("ip_allowed", {"allowed": "notalist"}))
            ),
        )
        self.write("no updates", [])
        self.write("DELETE", update(DELETE, rel("doc:d9#owner@user:bob")))

    def _checks(self) -> None:
        self.check("nested group through an arrow", "doc:d1", "view", "user:alice")
        self.check("banned though nested", "doc:d1", "view", "user:carol")
        self.check("folder owner", "doc:d1", "view", "user:dave")
        self.check("owner edits", "doc:d1", "edit", "user:bob")
        self.check("public through a wildcard", "doc:d2", "view", "user:zed")
        self.check("wildcard less a ban", "doc:d2", "view", "user:mallory")
        self.check("caveat without context", "doc:d3", "view", "user:erin")
        self.check("caveat true", "doc:d3", "view", "user:erin", {"ip": "10.0.0.1"})
        self.check("caveat false", "doc:d3", "view", "user:erin", {"ip": "10.9.9.9"})
        self.check("intersection with an expiring editor", "doc:d4", "review", "user:frank")
        self.check("intersection, owner side", "doc:d4", "review", "user:gina")
        self.check("intersection, neither", "doc:d4", "review", "user:bob")
        self.check("userset subject", "folder:f1", "view", "group:eng#member")
        self.check("unknown definition", "nope:1", "view", "user:alice")
        self.check("unknown permission", "doc:d1", "nope", "user:alice")
        self.check("unknown subject definition", "doc:d1", "view", "nope:alice")
        self.check("unknown subject relation", "doc:d1", "view", "group:eng#nope")
        self.check("wildcard subject", "doc:d1", "view", "user:*")
        self.check("DID as an id", "doc:did:plc:ewvi7nxzyoun6zhxrhs64oiz", "view", "user:alice")
        self.record(
            "CheckPermission with a malformed ZedToken",
            attempt(
                lambda: self.c.CheckPermission(
                    pb.CheckPermissionRequest(
                        consistency=pb.Consistency(
                            at_least_as_fresh=core_pb2.ZedToken(token="garbage")
                        ),
                        resource=obj("doc:d1"),
                        permission="view",
                        subject=sub("user:alice"),
                    )
                )
            ),
        )
        items = [
            pb.CheckBulkPermissionsRequestItem(
                resource=obj(r), permission=p, subject=sub(s), context=struct(ctx)
            )
            for r, p, s, ctx in [
                ("doc:d1", "view", "user:alice", {}),
                ("doc:d1", "view", "user:carol", {}),
                ("doc:d3", "view", "user:erin", {}),
                ("doc:d3", "view", "user:erin", {"ip": "10.0.0.1"}),
                ("nope:1", "view", "user:alice", {}),
                ("doc:d1", "nope", "user:alice", {}),
                ("doc:d2", "view", "user:*", {}),
            ]
        ]
        self.record(
            "CheckBulkPermissions with errors per item",
            attempt(
                lambda: self.c.CheckBulkPermissions(
                    pb.CheckBulkPermissionsRequest(consistency=self.fresh(), items=items)
                )
            ),
        )
        self.record(
            "CheckBulkPermissions, no items",
            attempt(
                lambda: self.c.CheckBulkPermissions(
                    pb.CheckBulkPermissionsRequest(consistency=self.fresh())
                )
            ),
        )

    def _lookups(self) -> None:
        c = self.c
        for subject in ("user:alice", "user:erin", "user:carol", "user:frank"):
            request = pb.LookupResourcesRequest(
                consistency=self.fresh(),
                resource_object_type="doc",
                permission="view",
                subject=sub(subject),
            )
            self.record(
                f"LookupResources doc#view for {subject}",
                attempt_stream(partial(c.LookupResources, request)),
            )
        self.lookup_resources_pages("LookupResources in pages of 2", "doc", "view", "user:alice", 2)
        self.record(
            "LookupResources for a wildcard",
            attempt_stream(
                lambda: c.LookupResources(
                    pb.LookupResourcesRequest(
                        consistency=self.fresh(),
                        resource_object_type="doc",
                        permission="view",
                        subject=sub("user:*"),
                    )
                )
            ),
        )
        self.record(
            "LookupResources, unknown permission",
            attempt_stream(
                lambda: c.LookupResources(
                    pb.LookupResourcesRequest(
                        consistency=self.fresh(),
                        resource_object_type="doc",
                        permission="nope",
                        subject=sub("user:alice"),
                    )
                )
            ),
        )
        for resource in ("doc:d1", "doc:d2", "doc:d3", "folder:f1"):
            subjects = pb.LookupSubjectsRequest(
                consistency=self.fresh(),
                resource=obj(resource),
                permission="view",
                subject_object_type="user",
            )
            self.record(
                f"LookupSubjects {resource}#view",
                attempt_stream(partial(c.LookupSubjects, subjects)),
            )
        self.record(
            "LookupSubjects without wildcards",
            attempt_stream(
                lambda: c.LookupSubjects(
                    pb.LookupSubjectsRequest(
                        consistency=self.fresh(),
                        resource=obj("doc:d2"),
                        permission="view",
                        subject_object_type="user",
                        wildcard_option=pb.LookupSubjectsRequest.WILDCARD_OPTION_EXCLUDE_WILDCARDS,
                    )
                )
            ),
        )
        self.record(
            "LookupSubjects with a subject relation",
            attempt_stream(
                lambda: c.LookupSubjects(
                    pb.LookupSubjectsRequest(
                        consistency=self.fresh(),
                        resource=obj("folder:f1"),
                        permission="view",
                        subject_object_type="group",
                        optional_subject_relation="member",
                    )
                )
            ),
        )
        self.record(
            "LookupSubjects with a concrete limit",
            attempt_stream(
                lambda: c.LookupSubjects(
                    pb.LookupSubjectsRequest(
                        consistency=self.fresh(),
                        resource=obj("doc:d1"),
                        permission="view",
                        subject_object_type="user",
                        optional_concrete_limit=1,
                    )
                )
            ),
        )
        self.record(
            "ExpandPermissionTree folder:f1#view",
            attempt(
                lambda: c.ExpandPermissionTree(
                    pb.ExpandPermissionTreeRequest(
                        consistency=self.fresh(), resource=obj("folder:f1"), permission="view"
                    )
                )
            ),
        )

    def _expand_arrow(self) -> None:
        request = pb.ExpandPermissionTreeRequest(
            consistency=self.fresh(), resource=obj("doc:d1"), permission="view"
        )
        self.record(
            "ExpandPermissionTree doc:d1#view, through an arrow",
            attempt(lambda: self.c.ExpandPermissionTree(request)),
        )

    def _read(self, name: str, relationship_filter: pb.RelationshipFilter) -> None:
        self.record(
            name,
            attempt_stream(
                lambda: self.c.ReadRelationships(
                    pb.ReadRelationshipsRequest(
                        consistency=self.fresh(), relationship_filter=relationship_filter
                    )
                )
            ),
        )

    def _reads_and_deletes(self) -> None:
        c = self.c
        self._read("ReadRelationships of a type", pb.RelationshipFilter(resource_type="group"))
        self._read(
            "ReadRelationships by subject",
            pb.RelationshipFilter(
                resource_type="doc",
                optional_subject_filter=pb.SubjectFilter(
                    subject_type="user", optional_subject_id="alice"
                ),
            ),
        )
        self._read(
            "ReadRelationships by relation only",
            pb.RelationshipFilter(optional_relation="reviewer"),
        )
        self._read(
            "ReadRelationships by id prefix",
            pb.RelationshipFilter(resource_type="doc", optional_resource_id_prefix="d5"),
        )
        self._read("ReadRelationships, empty filter", pb.RelationshipFilter())
        pages: list[Any] = []
        cursor: core_pb2.Cursor | None = None
        for _ in range(10):
            page = list(
                c.ReadRelationships(
                    pb.ReadRelationshipsRequest(
                        consistency=self.fresh(),
                        relationship_filter=pb.RelationshipFilter(resource_type="doc"),
                        optional_limit=3,
                        optional_cursor=cursor,
                    )
                )
            )
            if not page:
                break
            pages.append(len(page))
            cursor = page[-1].after_result_cursor
        self.record("ReadRelationships in pages of 3", pages)
        alice_docs = pb.RelationshipFilter(
            resource_type="doc",
            optional_subject_filter=pb.SubjectFilter(
                subject_type="user", optional_subject_id="alice"
            ),
        )

        def delete(request: pb.DeleteRelationshipsRequest) -> Any:
            response = c.DeleteRelationships(request)
            self.token = response.deleted_at.token
            return response

        self.record(
            "DeleteRelationships over its limit",
            attempt(
                lambda: delete(
                    pb.DeleteRelationshipsRequest(relationship_filter=alice_docs, optional_limit=1)
                )
            ),
        )
        self.record(
            "DeleteRelationships, partial",
            attempt(
                lambda: delete(
                    pb.DeleteRelationshipsRequest(
                        relationship_filter=alice_docs,
                        optional_limit=1,
                        optional_allow_partial_deletions=True,
                    )
                )
            ),
        )
        self.record(
            "DeleteRelationships with a failing precondition",
            attempt(
                lambda: delete(
                    pb.DeleteRelationshipsRequest(
                        relationship_filter=alice_docs,
                        optional_preconditions=[
                            pb.Precondition(
                                operation=pb.Precondition.OPERATION_MUST_NOT_MATCH,
                                filter=pb.RelationshipFilter(resource_type="group"),
                            )
                        ],
                    )
                )
            ),
        )
        self.record(
            "DeleteRelationships",
            attempt(lambda: delete(pb.DeleteRelationshipsRequest(relationship_filter=alice_docs))),
        )
        self.record(
            "DeleteRelationships, empty filter",
            attempt(
                lambda: delete(
                    pb.DeleteRelationshipsRequest(relationship_filter=pb.RelationshipFilter())
                )
            ),
        )
        self._read("ReadRelationships after deleting", alice_docs)

    def _watch(self) -> None:
        """Watch from the last token, write, and take the one response that follows."""
        answers: list[Any] = []
        stream = self.c.Watch(
            watch_service_pb2.WatchRequest(
                optional_start_cursor=core_pb2.ZedToken(token=self.token)
            ),
            timeout=20,
        )

        def take() -> None:
            try:
                for response in stream:
                    answer = normalize(response)
                    answer["updates"].sort(key=repr)  # no order within a revision
                    answers.append(answer)
                    break
            except grpc.RpcError as e:
                answers.append(error(e))
            stream.cancel()  # type: ignore[no-untyped-call]

        reader = threading.Thread(target=take)
        reader.start()
        self.write(
            "write while watching",
            update(TOUCH, rel("doc:w1#viewer@user:walt"), rel("doc:w1#banned@user:walt")),
        )
        reader.join(30)
        self.record("Watch", answers)

    def _bulk(self) -> None:
        c = self.c

        def chunks() -> Iterator[pb.ImportBulkRelationshipsRequest]:
            for start in (0, 3):
                yield pb.ImportBulkRelationshipsRequest(
                    relationships=[
                        rel(f"doc:bulk{i}#viewer@user:ivy") for i in range(start, start + 3)
                    ]
                )

        self.record("ImportBulkRelationships", attempt(lambda: c.ImportBulkRelationships(chunks())))
        self.record(
            "ImportBulkRelationships of an existing one",
            attempt(
                lambda: c.ImportBulkRelationships(
                    iter(
                        [
                            pb.ImportBulkRelationshipsRequest(
                                relationships=[rel("doc:bulk0#viewer@user:ivy")]
                            )
                        ]
                    )
                )
            ),
        )
        self.check(
            "imported relationship checks", "doc:bulk4", "view", "user:ivy", consistency=FULL
        )

        def export() -> list[Any]:
            found: list[Any] = []
            for response in c.ExportBulkRelationships(
                pb.ExportBulkRelationshipsRequest(consistency=FULL)
            ):
                found.extend(normalize(r) for r in response.relationships)
            return sorted(found, key=repr)

        try:
            self.record("ExportBulkRelationships", export())
        except grpc.RpcError as e:
            self.record("ExportBulkRelationships", error(e))

    def _schema_changes(self) -> None:
        """Schema changes that stored relationships block (nothing is written)."""
        for name, schema in (
            (
                "WriteSchema removing a relation in use",
                SCHEMA.replace("    relation banned: user\n", "").replace(" - banned", ""),
            ),
            (
                "WriteSchema removing an allowed type in use",
                SCHEMA.replace("relation viewer: user | user:* |", "relation viewer: user |"),
            ),
        ):
            request = schema_service_pb2.WriteSchemaRequest(schema=schema)
            self.record(name, attempt(partial(self.c.WriteSchema, request)))


def run(address: str, token: str) -> list[Step]:
    """Run the scenario against the server at ``address``."""
    client = InsecureClient(address, token)
    return Scenario(client).run()
