"""Package relationships serves RelationshipService: writes via the Engine, reads from the Store.

Read and Export page through a store snapshot at the revision the Engine picks
for the request's consistency, Watch through the change log; no decision logic
lives here.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from itertools import groupby, islice

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
from policyd.api.gen import core_pb2, relationship_service_pb2_grpc
from policyd.api.gen import relationship_service_pb2 as pb
from policyd.api.limits import Limits
from policyd.api.paging import read_pages
from policyd.api.scheduling import Context, Threads
from policyd.api.watch import ChangeFeed
from policyd.engine import Engine
from policyd.errors import CancelledError, InvalidRequestError, ResourceExhaustedError
from policyd.relationship import Relationship
from policyd.store.base import Cursor, DeleteRequest, ImportRequest, Store, WriteRequest
from policyd.store.group_commit import GroupWriter

SMALL_IMPORT = 1000
"""Imports of at most this many relationships queue to the writer like other writes."""


async def _ended(context: Context) -> None:
    """Return only if the client ended its request stream, rather than cancelled the call.

    grpc.aio ends the request iterator the same way for both. Sending the
    response headers is a round trip through gRPC's core that delivers a
    cancellation already under way first (the task is cancelled meanwhile),
    so an import whose client gave up never commits.
    """
    await context.send_initial_metadata(())
    if context.cancelled():
        raise CancelledError("the client cancelled the import; nothing was imported")


class _Spool:
    """An import's stream staged in an unnamed temporary file until the stream has ended.

    The server holds one message at a time, not the stream, and the store's
    write lock is taken only once the whole stream is in: a slow or stalled
    client never holds up other writes, and a stream that breaks off never
    reaches the store. Each message is kept as it came, length-prefixed.
    """

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="policyd-import-")  # noqa: SIM115 (closed by close)

    def add(self, chunk: pb.ImportRelationshipsRequest) -> None:
        """Append one message of the stream (a small write to the page cache)."""
        data = chunk.SerializeToString()
        try:
            self._file.write(len(data).to_bytes(4, "little"))
            self._file.write(data)
        except OSError as e:
            raise ResourceExhaustedError(f"no room to stage the import: {e}") from e

    def relationships(self) -> Iterator[Relationship]:
        """Every staged relationship, in stream order (read in the importing thread)."""
        self._file.seek(0)
        i = 0
        while header := self._file.read(4):
            chunk = pb.ImportRelationshipsRequest.FromString(
                self._file.read(int.from_bytes(header, "little"))
            )
            for message in chunk.relationships:
                yield relationship_from_proto(message, f"relationships[{i}]")
                i += 1

    def close(self) -> None:
        """Drop the staged stream (the file has no name; closing frees its space)."""
        self._file.close()


class RelationshipServicer(relationship_service_pb2_grpc.RelationshipServiceServicer):
    """Write, Delete, Read, Watch, Import and Export over one Engine and its Store.

    Writes and deletes queue to the server's writer (store.group_commit), which
    commits concurrent ones together; imports and store reads run in threads
    (``writes`` and ``reads``), never on the event loop; Watch streams share
    one ``ChangeFeed``.
    """

    def __init__(
        self,
        engine: Engine,
        store: Store,
        limits: Limits,
        feed: ChangeFeed,
        writer: GroupWriter,
        writes: Threads,
        reads: Threads,
    ) -> None:
        self._engine = engine
        self._writer = writer
        self._store = store
        self._tokens = engine.tokens
        self._limits = limits
        self._feed = feed
        self._writes = writes
        self._reads = reads

    async def WriteRelationships(
        self, request: pb.WriteRelationshipsRequest, context: Context
    ) -> pb.WriteRelationshipsResponse:
        """Apply one atomic batch."""
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
        revision = await self._writer.apply(WriteRequest(tuple(updates), tuple(preconditions)))
        assert isinstance(revision, int)
        token = self._engine.written(revision)
        self._feed.poke()
        return pb.WriteRelationshipsResponse(consistency_token=token_to_proto(token))

    async def DeleteRelationships(
        self, request: pb.DeleteRelationshipsRequest, context: Context
    ) -> pb.DeleteRelationshipsResponse:
        """Delete by filter."""
        relationship_filter = filter_from_proto(request.filter)
        if relationship_filter.is_empty():
            raise InvalidRequestError(
                "a delete needs a filter with at least one field", field="filter"
            )
        outcome = await self._writer.apply(
            DeleteRequest(relationship_filter, limit_from_proto(request.limit))
        )
        assert isinstance(outcome, tuple)
        revision, count = outcome
        token = self._engine.written(revision)
        self._feed.poke()
        return pb.DeleteRelationshipsResponse(
            consistency_token=token_to_proto(token), deleted_count=count
        )

    async def ReadRelationships(
        self, request: pb.ReadRelationshipsRequest, context: Context
    ) -> AsyncIterator[pb.ReadRelationshipsResponse]:
        """Stream the matching relationships from one snapshot, a page per store read."""
        relationship_filter = filter_from_proto(request.filter)
        cursor = Cursor.decode(request.cursor, self._tokens) if request.cursor else None
        revision = (
            cursor.revision
            if cursor is not None
            else self._engine.revision_for(consistency_from_proto(request.consistency))
        )
        token = token_to_proto(self._tokens.token(revision))
        pages = read_pages(
            self._store,
            self._reads,
            revision,
            relationship_filter,
            cursor,
            limit_from_proto(request.limit),
            self._limits.page_size,
        )
        async for relationship, after in pages:
            yield pb.ReadRelationshipsResponse(
                consistency_token=token,
                relationship=relationship_to_proto(relationship),
                after_cursor=after.encode(self._tokens),
            )

    async def Watch(
        self, request: pb.WatchRequest, context: Context
    ) -> AsyncIterator[pb.WatchResponse]:
        """Stream each revision's changes after the start token until cancelled or shut down."""
        if request.HasField("optional_start_token"):
            after = self._tokens.revision(
                request.optional_start_token.token, field="optional_start_token.token"
            )
        else:
            after = self._feed.head
        async for events in self._feed.changes(after):
            for revision, group in groupby(events, key=lambda e: e.revision):
                yield watch_to_proto(group, self._tokens.token(revision))

    async def ImportRelationships(
        self,
        request_iterator: AsyncIterator[pb.ImportRelationshipsRequest],
        context: Context,
    ) -> pb.ImportRelationshipsResponse:
        """Load every streamed relationship in one transaction, all or nothing.

        A stream of at most ``SMALL_IMPORT`` relationships queues to the writer
        like any write. A longer one is staged on disk as it arrives (``_Spool``)
        and, once the client has ended it, streams from there into one import
        transaction in a thread, so memory does not grow with its length; a
        stream that breaks off imports nothing.
        """
        head: list[pb.ImportRelationshipsRequest] = []
        count = 0
        spool: _Spool | None = None
        try:
            async for chunk in request_iterator:
                count += len(chunk.relationships)
                if spool is not None:
                    spool.add(chunk)
                    continue
                head.append(chunk)
                if count > SMALL_IMPORT:
                    spool = _Spool()
                    for staged in head:
                        spool.add(staged)
                    head.clear()
            await _ended(context)
        except BaseException:
            if spool is not None:
                spool.close()
            raise
        if spool is None:
            return await self._import_small([m for c in head for m in c.relationships])
        token = await self._writes.run(self._import_spooled, spool)
        self._feed.poke()
        return pb.ImportRelationshipsResponse(
            consistency_token=token_to_proto(token), loaded_count=count
        )

    def _import_spooled(self, spool: _Spool) -> str:
        try:
            return self._engine.import_relationships(spool.relationships())
        finally:
            spool.close()

    async def _import_small(
        self, messages: list[core_pb2.Relationship]
    ) -> pb.ImportRelationshipsResponse:
        relationships = tuple(
            relationship_from_proto(m, f"relationships[{i}]") for i, m in enumerate(messages)
        )
        if relationships:
            revision = await self._writer.apply(ImportRequest(relationships))
            assert isinstance(revision, int)
        else:  # an empty import makes no revision: the head's token
            revision = await self._reads.run(self._store.head_revision)
        token = self._engine.written(revision)
        self._feed.poke()
        return pb.ImportRelationshipsResponse(
            consistency_token=token_to_proto(token), loaded_count=len(relationships)
        )

    async def ExportRelationships(
        self, request: pb.ExportRelationshipsRequest, context: Context
    ) -> AsyncIterator[pb.ExportRelationshipsResponse]:
        """Stream every live relationship at one revision, in chunks read by a thread."""
        revision = self._engine.revision_for(consistency_from_proto(request.consistency))
        token = token_to_proto(self._tokens.token(revision))
        exported = self._store.snapshot(revision).export_relationships()
        size = self._limits.page_size
        try:
            sent = False
            while True:
                chunk = await self._reads.run(lambda: list(islice(exported, size)))
                if chunk or not sent:  # an empty store still answers once, with the token
                    sent = True
                    yield pb.ExportRelationshipsResponse(
                        consistency_token=token,
                        relationships=[relationship_to_proto(r) for r in chunk],
                    )
                if len(chunk) < size:
                    return
        finally:
            close = getattr(exported, "close", None)
            if close is not None:
                await self._reads.run(close)
