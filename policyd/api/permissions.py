"""Package permissions serves PermissionService: it translates requests and calls the Engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeVar

from policyd.api.audience import AudienceStream
from policyd.api.convert import (
    PERMISSIONSHIP_TO_PROTO,
    check_to_proto,
    consistency_from_proto,
    context_from_proto,
    expand_to_proto,
    found_object_to_proto,
    found_subject_to_proto,
    limit_from_proto,
    object_from_proto,
    required,
    subject_from_proto,
    token_to_proto,
)
from policyd.api.gen import permission_service_pb2 as pb
from policyd.api.gen import permission_service_pb2_grpc
from policyd.api.limits import Limits
from policyd.api.metrics import Metrics
from policyd.api.scheduling import Context, Threads, deadline_of, sliced
from policyd.api.watch import ChangeFeed
from policyd.decisions import CheckRequest
from policyd.engine import Engine
from policyd.engine.listing import Listing
from policyd.errors import InvalidRequestError


class PermissionServicer(permission_service_pb2_grpc.PermissionServiceServicer):
    """Check, BatchCheck, ListObjects, ListSubjects, Expand and WatchPermission over one Engine.

    Checks run inline on the event loop; lookups and Expand run a slice at a
    time (api/scheduling.py) and stream their answers as they are found;
    WatchPermission follows the process's change feed (api/audience.py).
    """

    def __init__(
        self,
        engine: Engine,
        limits: Limits,
        feed: ChangeFeed,
        reads: Threads,
        metrics: Metrics | None = None,
    ) -> None:
        self._engine = engine
        self._limits = limits
        self._feed = feed
        self._reads = reads
        self._metrics = metrics

    async def Check(self, request: pb.CheckRequest, context: Context) -> pb.CheckResponse:
        """Decide one check."""
        result = self._engine.check(
            object_from_proto(request.resource, "resource"),
            required(request.permission, "permission"),
            subject_from_proto(request.subject, "subject"),
            context=context_from_proto(request.context),
            consistency=consistency_from_proto(request.consistency),
            explain=request.explain,
        )
        if self._metrics is not None:
            self._metrics.count_decisions([result.permissionship])
        return check_to_proto(result)

    async def BatchCheck(
        self, request: pb.BatchCheckRequest, context: Context
    ) -> pb.BatchCheckResponse:
        """Decide many checks at one revision."""
        if not request.items:
            raise InvalidRequestError("a batch needs at least one item", field="items")
        if len(request.items) > self._limits.max_batch_size:
            raise InvalidRequestError(
                f"at most {self._limits.max_batch_size} items per batch", field="items"
            )
        items: list[CheckRequest] = []
        for i, item in enumerate(request.items):
            try:
                items.append(
                    CheckRequest(
                        object_from_proto(item.resource, "resource"),
                        required(item.permission, "permission"),
                        subject_from_proto(item.subject, "subject"),
                        context_from_proto(item.context) if item.HasField("context") else {},
                    )
                )
            except InvalidRequestError as e:  # name the item only when something is wrong
                raise InvalidRequestError(
                    e.message, field=f"items[{i}].{e.field}", code=e.code
                ) from e
        consistency = consistency_from_proto(request.consistency)
        results = self._engine.check_many(items, consistency=consistency)
        if self._metrics is not None:
            self._metrics.count_decisions([r.permissionship for r in results])
        response = pb.BatchCheckResponse(consistency_token=token_to_proto(results[0].token))
        add = response.results.add
        for result in results:
            if result.missing:
                add(
                    permissionship=PERMISSIONSHIP_TO_PROTO[result.permissionship],
                    missing_context=result.missing,
                )
            else:  # passing an empty repeated field costs more than the rest of the message
                add(permissionship=PERMISSIONSHIP_TO_PROTO[result.permissionship])
        return response

    async def ListObjects(
        self, request: pb.ListObjectsRequest, context: Context
    ) -> AsyncIterator[pb.ListObjectsResponse]:
        """Stream the resources found, in id order, from one snapshot."""
        listing = self._engine.stream_objects(
            required(request.resource_type, "resource_type"),
            required(request.permission, "permission"),
            subject_from_proto(request.subject, "subject"),
            context=context_from_proto(request.context),
            consistency=consistency_from_proto(request.consistency),
            cursor=request.cursor or None,
            limit=limit_from_proto(request.limit),
        )
        responses = (
            found_object_to_proto(found, listing.token)
            async for found in sliced(listing.steps, deadline_of(context))
        )
        async for response in _with_cursor(responses, listing):
            yield response

    async def ListSubjects(
        self, request: pb.ListSubjectsRequest, context: Context
    ) -> AsyncIterator[pb.ListSubjectsResponse]:
        """Stream the subjects found, in id order, then any wildcard, from one snapshot."""
        listing = self._engine.stream_subjects(
            object_from_proto(request.resource, "resource"),
            required(request.permission, "permission"),
            required(request.subject_type, "subject_type"),
            request.optional_subject_relation or None,
            context=context_from_proto(request.context),
            consistency=consistency_from_proto(request.consistency),
            cursor=request.cursor or None,
            limit=limit_from_proto(request.limit),
        )
        responses = (
            found_subject_to_proto(found, listing.token)
            async for found in sliced(listing.steps, deadline_of(context))
        )
        async for response in _with_cursor(responses, listing):
            yield response

    async def Expand(self, request: pb.ExpandRequest, context: Context) -> pb.ExpandResponse:
        """Build the userset tree, a slice at a time."""
        listing = self._engine.stream_expand(
            object_from_proto(request.resource, "resource"),
            required(request.permission, "permission"),
            consistency=consistency_from_proto(request.consistency),
        )
        trees = [tree async for tree in sliced(listing.steps, deadline_of(context))]
        return pb.ExpandResponse(
            consistency_token=token_to_proto(listing.token), tree=expand_to_proto(trees[0])
        )

    async def WatchPermission(
        self, request: pb.WatchPermissionRequest, context: Context
    ) -> AsyncIterator[pb.WatchPermissionResponse]:
        """Stream who holds the permission: a listing (unless resuming), then each change."""
        tracker = self._engine.track_audience(
            object_from_proto(request.resource, "resource"),
            required(request.permission, "permission"),
            required(request.subject_type, "subject_type"),
            request.optional_subject_relation or None,
        )
        resuming = request.HasField("optional_after_token")
        start = (
            self._engine.tokens.revision(
                request.optional_after_token.token, field="optional_after_token.token"
            )
            if resuming
            else self._engine.revision_for(consistency_from_proto(request.consistency))
        )
        stream = AudienceStream(
            self._engine,
            tracker,
            self._feed,
            self._reads,
            self._limits.page_size,
            deadline_of(context),
        )
        async for response in stream.responses(start, listed=resuming):
            yield response


_Response = TypeVar("_Response", pb.ListObjectsResponse, pb.ListSubjectsResponse)


async def _with_cursor(
    responses: AsyncIterator[_Response], listing: Listing[Any]
) -> AsyncIterator[_Response]:
    """The responses, the last one carrying the listing's cursor when its limit cut it short.

    One response is held back until the next arrives, since only the end of
    the listing tells which one is last.
    """
    held: _Response | None = None
    async for response in responses:
        if held is not None:
            yield held
        held = response
    if held is not None:
        if listing.cursor is not None:
            held.after_cursor = listing.cursor
        yield held
