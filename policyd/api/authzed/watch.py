"""Package watch serves authzed.api.v1's WatchService from the server's shared change feed.

Each stream is a coroutine on the ``ChangeFeed`` the policyd.v1 Watch uses
(api/watch.py), so idle streams cost no threads and no store reads. A
response holds one revision's changes, ``changes_through`` its ZedToken;
policy writes are sent as ``schema_updated`` when the client asked for
schema updates (WATCH_KIND_INCLUDE_SCHEMA_UPDATES). Checkpoints are not sent:
a client resumes from the last ``changes_through`` it saw.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from itertools import groupby

from authzed.api.v1 import core_pb2, watch_service_pb2, watch_service_pb2_grpc

from policyd.api.authzed.convert import filter_from_proto, relationship_to_proto, zedtoken
from policyd.api.authzed.errors import invalid_argument, spicedb_errors
from policyd.api.scheduling import Context
from policyd.api.watch import ChangeFeed
from policyd.engine import Engine
from policyd.relationship import Relationship
from policyd.store.base import ChangeKind

pb = watch_service_pb2

_OPERATIONS = {
    ChangeKind.TOUCH: core_pb2.RelationshipUpdate.OPERATION_TOUCH,
    ChangeKind.DELETE: core_pb2.RelationshipUpdate.OPERATION_DELETE,
}


class WatchServicer(watch_service_pb2_grpc.WatchServiceServicer):
    """Watch: relationship changes (and schema changes if asked) after a ZedToken."""

    def __init__(self, engine: Engine, feed: ChangeFeed) -> None:
        self._tokens = engine.tokens
        self._feed = feed

    async def Watch(
        self, request: pb.WatchRequest, context: Context
    ) -> AsyncIterator[pb.WatchResponse]:
        """Stream each revision's changes after the start token, until cancelled or shut down."""
        wanted = _selector(request)
        kinds = set(request.optional_update_kinds) or {pb.WATCH_KIND_INCLUDE_RELATIONSHIP_UPDATES}
        relationships = pb.WATCH_KIND_INCLUDE_RELATIONSHIP_UPDATES in kinds
        schema = pb.WATCH_KIND_INCLUDE_SCHEMA_UPDATES in kinds
        with spicedb_errors():
            after = (
                self._tokens.revision(request.optional_start_cursor.token, "optional_start_cursor")
                if request.HasField("optional_start_cursor")
                else self._feed.head
            )
        async for events in self._feed.changes(after):
            for revision, group in groupby(events, key=lambda e: e.revision):
                response = pb.WatchResponse(changes_through=zedtoken(self._tokens.token(revision)))
                for event in group:
                    if event.kind is ChangeKind.POLICY:
                        response.schema_updated = schema
                    elif (
                        relationships
                        and event.relationship is not None
                        and wanted(event.relationship)
                    ):
                        response.updates.add(
                            operation=_OPERATIONS[event.kind],
                            relationship=relationship_to_proto(event.relationship),
                        )
                if response.updates or response.schema_updated:
                    yield response


def _selector(request: pb.WatchRequest) -> Callable[[Relationship], bool]:
    """Whether a changed relationship is one the request watches (every one without filters)."""
    types: Sequence[str] = request.optional_object_types
    if types and request.optional_relationship_filters:
        raise invalid_argument("cannot specify both object types and relationship filters")
    filters = [
        filter_from_proto(f, f"optional_relationship_filters[{i}]")
        for i, f in enumerate(request.optional_relationship_filters)
    ]
    if types:
        wanted_types = set(types)
        return lambda r: r.resource.type in wanted_types
    if filters:
        return lambda r: any(
            f.matches(r) and r.resource.id.startswith(prefix) for f, prefix in filters
        )
    return lambda r: True
