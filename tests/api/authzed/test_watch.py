from __future__ import annotations

import threading
from typing import Any

from authzed.api.v1 import InsecureClient, core_pb2, schema_service_pb2
from authzed.api.v1 import permission_service_pb2 as pb
from authzed.api.v1 import watch_service_pb2 as wpb

from tests.api.authzed.scenario import SCHEMA, TOUCH, rel, update


def watch(
    authzed: InsecureClient, request: wpb.WatchRequest, count: int
) -> tuple[threading.Thread, list[Any]]:
    """The first ``count`` responses of a Watch, read on a thread."""
    stream = authzed.Watch(request, timeout=20)
    seen: list[Any] = []

    def take() -> None:
        for response in stream:
            seen.append(response)
            if len(seen) == count:
                stream.cancel()  # type: ignore[no-untyped-call]
                return

    reader = threading.Thread(target=take)
    reader.start()
    return reader, seen


def test_watch_sends_each_revision_filtered_by_type(authzed: InsecureClient, written: str) -> None:
    reader, seen = watch(
        authzed,
        wpb.WatchRequest(
            optional_start_cursor=core_pb2.ZedToken(token=written),
            optional_object_types=["group"],
        ),
        1,
    )
    authzed.WriteRelationships(
        pb.WriteRelationshipsRequest(updates=update(TOUCH, rel("doc:x#viewer@user:walt")))
    )
    authzed.WriteRelationships(
        pb.WriteRelationshipsRequest(updates=update(TOUCH, rel("group:g#member@user:walt")))
    )
    reader.join(20)
    (response,) = seen
    (change,) = response.updates
    assert change.operation == core_pb2.RelationshipUpdate.OPERATION_TOUCH
    assert change.relationship.resource.object_type == "group"
    assert response.changes_through.token


def test_watch_reports_schema_updates_when_asked(authzed: InsecureClient, written: str) -> None:
    reader, seen = watch(
        authzed,
        wpb.WatchRequest(
            optional_start_cursor=core_pb2.ZedToken(token=written),
            optional_update_kinds=[wpb.WATCH_KIND_INCLUDE_SCHEMA_UPDATES],
        ),
        1,
    )
    authzed.WriteSchema(
        schema_service_pb2.WriteSchemaRequest(schema=SCHEMA + "\ndefinition team {}\n")
    )
    reader.join(20)
    (response,) = seen
    assert response.schema_updated
    assert not response.updates
