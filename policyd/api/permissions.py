"""Package permissions serves PermissionService: it translates requests and calls the Engine."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

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
from policyd.api.limits import Limits, check_deadline
from policyd.api.metrics import Metrics
from policyd.decisions import CheckRequest
from policyd.engine import Engine
from policyd.errors import InvalidRequestError


class PermissionServicer(permission_service_pb2_grpc.PermissionServiceServicer):
    """Check, BatchCheck, ListObjects, ListSubjects and Expand over one Engine."""

    def __init__(self, engine: Engine, limits: Limits, metrics: Metrics | None = None) -> None:
        self._engine = engine
        self._limits = limits
        self._metrics = metrics

    def Check(self, request: pb.CheckRequest, context: grpc.ServicerContext) -> pb.CheckResponse:
        """Decide one check."""
        check_deadline(context)
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

    def BatchCheck(
        self, request: pb.BatchCheckRequest, context: grpc.ServicerContext
    ) -> pb.BatchCheckResponse:
        """Decide many checks at one revision."""
        check_deadline(context)
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
                        context_from_proto(item.context),
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
        for result in results:
            response.results.add(
                permissionship=PERMISSIONSHIP_TO_PROTO[result.permissionship],
                missing_context=result.missing,
            )
        return response

    def ListObjects(
        self, request: pb.ListObjectsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ListObjectsResponse]:
        """Stream the resources found, page by page from one snapshot."""
        check_deadline(context)
        resource_type = required(request.resource_type, "resource_type")
        permission = required(request.permission, "permission")
        subject = subject_from_proto(request.subject, "subject")
        caveat_context = context_from_proto(request.context)
        consistency = consistency_from_proto(request.consistency)
        remaining = limit_from_proto(request.limit)
        cursor = request.cursor or None
        while context.is_active():
            page_size = self._limits.page_size
            if remaining is not None:
                page_size = min(page_size, remaining)
            page = self._engine.list_objects(
                resource_type,
                permission,
                subject,
                context=caveat_context,
                consistency=consistency,
                cursor=cursor,
                limit=page_size,
            )
            messages = [found_object_to_proto(found, page.token) for found in page.objects]
            if remaining is not None:
                remaining -= len(messages)
            if messages and page.cursor and remaining == 0:
                messages[-1].after_cursor = page.cursor
            yield from messages
            if page.cursor is None or remaining == 0:
                return
            cursor = page.cursor

    def ListSubjects(
        self, request: pb.ListSubjectsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ListSubjectsResponse]:
        """Stream the subjects found."""
        check_deadline(context)
        result = self._engine.list_subjects(
            object_from_proto(request.resource, "resource"),
            required(request.permission, "permission"),
            required(request.subject_type, "subject_type"),
            request.optional_subject_relation or None,
            context=context_from_proto(request.context),
            consistency=consistency_from_proto(request.consistency),
        )
        for found in result.subjects:
            if not context.is_active():
                return
            yield found_subject_to_proto(found, result.token)

    def Expand(self, request: pb.ExpandRequest, context: grpc.ServicerContext) -> pb.ExpandResponse:
        """Build the userset tree."""
        check_deadline(context)
        result = self._engine.expand(
            object_from_proto(request.resource, "resource"),
            required(request.permission, "permission"),
            consistency=consistency_from_proto(request.consistency),
        )
        return pb.ExpandResponse(
            consistency_token=token_to_proto(result.token), tree=expand_to_proto(result.tree)
        )
