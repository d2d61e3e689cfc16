"""Package relationships serves RelationshipService: writes via the Engine, reads from the Store.

Read and Export page through a store snapshot at the revision the Engine picks
for the request's consistency, Watch through the change log; no decision logic
lives here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from itertools import groupby

import grpc

from policyd.api.convert import (
    consistency_from_proto,
    filter_from_proto,
    limit_from_proto,
    precondition_from_proto,
    relationship_from_proto,
    relationship_to_proto,
    token_to_proto,
    update_from_proto,
    watch_to_proto,
)
from policyd.api.gen import relationship_service_pb2 as pb
from policyd.api.gen import relationship_service_pb2_grpc
from policyd.api.limits import Limits, check_deadline
from policyd.engine import Engine
from policyd.errors import InvalidRequestError
from policyd.relationship import Relationship
from policyd.store.base import Cursor, Store


class RelationshipServicer(relationship_service_pb2_grpc.RelationshipServiceServicer):
    """Write, Delete, Read, Watch, Import and Export over one Engine and its Store.

    ``stopping`` is set when the server shuts down, so open Watch streams end
    instead of holding up the shutdown.
    """

    def __init__(
        self, engine: Engine, store: Store, limits: Limits, stopping: threading.Event
    ) -> None:
        self._engine = engine
        self._store = store
        self._tokens = engine.tokens
        self._limits = limits
        self._stopping = stopping

    def WriteRelationships(
        self, request: pb.WriteRelationshipsRequest, context: grpc.ServicerContext
    ) -> pb.WriteRelationshipsResponse:
        """Apply one atomic batch."""
        check_deadline(context)
        if not request.updates:
            raise InvalidRequestError("a write needs at least one update", field="updates")
        if len(request.updates) > self._limits.max_updates:
            raise InvalidRequestError(
                f"at most {self._limits.max_updates} updates per write", field="updates"
            )
        updates = [update_from_proto(u, f"updates[{i}]") for i, u in enumerate(request.updates)]
        preconditions = [
            precondition_from_proto(p, f"preconditions[{i}]")
            for i, p in enumerate(request.preconditions)
        ]
        token = self._engine.write(updates, preconditions)
        return pb.WriteRelationshipsResponse(consistency_token=token_to_proto(token))

    def DeleteRelationships(
        self, request: pb.DeleteRelationshipsRequest, context: grpc.ServicerContext
    ) -> pb.DeleteRelationshipsResponse:
        """Delete by filter."""
        check_deadline(context)
        relationship_filter = filter_from_proto(request.filter)
        if relationship_filter.is_empty():
            raise InvalidRequestError(
                "a delete needs a filter with at least one field", field="filter"
            )
        token, count = self._engine.delete(relationship_filter, limit_from_proto(request.limit))
        return pb.DeleteRelationshipsResponse(
            consistency_token=token_to_proto(token), deleted_count=count
        )

    def ReadRelationships(
        self, request: pb.ReadRelationshipsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ReadRelationshipsResponse]:
        """Stream the matching relationships from one snapshot."""
        check_deadline(context)
        relationship_filter = filter_from_proto(request.filter)
        remaining = limit_from_proto(request.limit)
        cursor = Cursor.decode(request.cursor, self._tokens) if request.cursor else None
        revision = (
            cursor.revision
            if cursor is not None
            else self._engine.revision_for(consistency_from_proto(request.consistency))
        )
        token = token_to_proto(self._tokens.token(revision))
        snapshot = self._store.snapshot(revision)
        while context.is_active():
            page_size = self._limits.page_size
            if remaining is not None:
                page_size = min(page_size, remaining)
            page = snapshot.read(relationship_filter, cursor, page_size)
            for relationship in page.relationships:
                yield pb.ReadRelationshipsResponse(
                    consistency_token=token,
                    relationship=relationship_to_proto(relationship),
                    after_cursor=Cursor(revision, relationship.key).encode(self._tokens),
                )
            if remaining is not None:
                remaining -= len(page.relationships)
            if page.cursor is None or remaining == 0:
                return
            cursor = page.cursor

    def Watch(
        self, request: pb.WatchRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchResponse]:
        """Stream each revision's changes after the start token until cancelled or shut down."""
        if request.HasField("optional_start_token"):
            after = self._tokens.revision(
                request.optional_start_token.token, field="optional_start_token.token"
            )
        else:
            after = self._store.head_revision()
        while context.is_active() and not self._stopping.is_set():
            events = self._store.changes(after, self._limits.page_size)
            if not events:
                self._stopping.wait(self._limits.watch_poll_seconds)
                continue
            for revision, group in groupby(events, key=lambda e: e.revision):
                yield watch_to_proto(group, self._tokens.token(revision))
                after = revision

    def ImportRelationships(
        self,
        request_iterator: Iterator[pb.ImportRelationshipsRequest],
        context: grpc.ServicerContext,
    ) -> pb.ImportRelationshipsResponse:
        """Load every streamed relationship in one transaction."""
        check_deadline(context)
        loaded = 0

        def relationships() -> Iterable[Relationship]:
            nonlocal loaded
            for chunk in request_iterator:
                for message in chunk.relationships:
                    yield relationship_from_proto(message, f"relationships[{loaded}]")
                    loaded += 1

        token = self._engine.import_relationships(relationships())
        return pb.ImportRelationshipsResponse(
            consistency_token=token_to_proto(token), loaded_count=loaded
        )

    def ExportRelationships(
        self, request: pb.ExportRelationshipsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ExportRelationshipsResponse]:
        """Stream every live relationship at one revision, in chunks."""
        check_deadline(context)
        revision = self._engine.revision_for(consistency_from_proto(request.consistency))
        token = token_to_proto(self._tokens.token(revision))
        chunk: list[Relationship] = []
        exported = self._store.snapshot(revision).export_relationships()
        try:
            for relationship in exported:
                chunk.append(relationship)
                if len(chunk) >= self._limits.page_size:
                    if not context.is_active():
                        return
                    yield pb.ExportRelationshipsResponse(
                        consistency_token=token,
                        relationships=[relationship_to_proto(r) for r in chunk],
                    )
                    chunk = []
            yield pb.ExportRelationshipsResponse(
                consistency_token=token, relationships=[relationship_to_proto(r) for r in chunk]
            )
        finally:
            close = getattr(exported, "close", None)
            if close is not None:
                close()
