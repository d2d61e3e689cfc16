"""Package permissions serves authzed.api.v1's PermissionsService over policyd's Engine and Store.

Each call translates the request (convert.py), runs the same engine call the
policyd.v1 servicer runs, scheduled the same way (checks inline, lookups a
slice at a time, store work in threads: api/scheduling.py), and answers in
SpiceDB's shape, errors included (errors.py). Where SpiceDB's API asks for
more than the engine offers in one call, the servicer composes engine calls;
each place says so.

One module over 500 lines: the servicer is one class with a method per RPC of
SpiceDB's service, each a short translation; splitting the class would
scatter one API's mapping over files.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence

import grpc
from authzed.api.v1 import (
    core_pb2,
    debug_pb2,
    permission_service_pb2,
    permission_service_pb2_grpc,
)

from policyd.api.authzed.convert import (
    CHECK_PERMISSIONSHIP,
    LOOKUP_PERMISSIONSHIP,
    consistency_from_proto,
    context_of,
    filter_from_proto,
    object_from_proto,
    precondition_from_proto,
    precondition_metadata,
    precondition_text,
    relationship_from_proto,
    relationship_to_proto,
    subject_from_proto,
    subject_to_proto,
    trace_to_proto,
    update_from_proto,
    zedtoken,
)
from policyd.api.authzed.cursors import LookupPosition, request_hash
from policyd.api.authzed.errors import (
    Names,
    duplicate_update,
    invalid_cursor,
    precondition_failed,
    spicedb_error,
    spicedb_errors,
    status_of,
    too_many_to_delete,
    translate,
)
from policyd.api.errors import RichStatusError
from policyd.api.limits import Limits
from policyd.api.metrics import Metrics
from policyd.api.paging import read_pages
from policyd.api.scheduling import Context, Threads, deadline_of, sliced
from policyd.api.watch import ChangeFeed
from policyd.consistency import Consistency
from policyd.decisions import CheckRequest, CheckResult, ExpandKind, ExpandNode
from policyd.engine import Engine
from policyd.errors import PolicydError, PreconditionFailedError
from policyd.filters import Precondition, PreconditionKind, RelationshipFilter
from policyd.relationship import WILDCARD, Operation, Relationship, RelationshipUpdate
from policyd.schema.ir import Schema
from policyd.store.base import Cursor, Store

pb = permission_service_pb2

_ALGEBRA = {
    ExpandKind.UNION: core_pb2.AlgebraicSubjectSet.OPERATION_UNION,
    ExpandKind.INTERSECTION: core_pb2.AlgebraicSubjectSet.OPERATION_INTERSECTION,
    ExpandKind.EXCLUSION: core_pb2.AlgebraicSubjectSet.OPERATION_EXCLUSION,
}


class PermissionsServicer(permission_service_pb2_grpc.PermissionsServiceServicer):
    """SpiceDB's PermissionsService: checks, lookups, expand, relationship reads and writes."""

    def __init__(
        self,
        engine: Engine,
        store: Store,
        limits: Limits,
        feed: ChangeFeed,
        writes: Threads,
        reads: Threads,
        metrics: Metrics | None = None,
    ) -> None:
        self._engine = engine
        self._store = store
        self._tokens = engine.tokens
        self._limits = limits
        self._feed = feed
        self._writes = writes
        self._reads = reads
        self._metrics = metrics

    # ---- checks --------------------------------------------------------------------------------

    def _check_request(
        self, item: pb.CheckPermissionRequest | pb.CheckBulkPermissionsRequestItem
    ) -> tuple[CheckRequest, Names]:
        resource = object_from_proto(item.resource, "resource")
        subject = subject_from_proto(item.subject, "subject")
        names = Names(resource.type, item.permission, subject.type, subject.relation or "")
        with spicedb_errors(names):
            context = context_of(item.context)
        return CheckRequest(resource, item.permission, subject, context), names

    def _check(
        self, check: CheckRequest, names: Names, consistency: Consistency, explain: bool
    ) -> CheckResult:
        with spicedb_errors(names):
            return self._engine.check(
                check.resource,
                check.permission,
                check.subject,
                context=check.context,
                consistency=consistency,
                explain=explain,
            )

    def _count(self, results: Sequence[CheckResult]) -> None:
        if self._metrics is not None:
            self._metrics.count_decisions([r.permissionship for r in results])

    async def CheckPermission(
        self, request: pb.CheckPermissionRequest, context: Context
    ) -> pb.CheckPermissionResponse:
        """Decide one check; ``with_tracing`` adds the debug trace."""
        check, names = self._check_request(request)
        result = self._check(
            check, names, consistency_from_proto(request.consistency), request.with_tracing
        )
        self._count([result])
        response = pb.CheckPermissionResponse(
            checked_at=zedtoken(result.token),
            permissionship=CHECK_PERMISSIONSHIP[result.permissionship],
        )
        if result.missing:
            response.partial_caveat_info.missing_required_context.extend(result.missing)
        if result.explanation is not None:
            self._trace(response.debug_trace, result)
        return response

    def _trace(self, target: debug_pb2.DebugInformation, result: CheckResult) -> None:
        """Fill a debug trace: the explanation, and the schema text the check used."""
        assert result.explanation is not None
        at = Consistency.at_exact_snapshot(result.token)
        with spicedb_errors():
            target.schema_used, _ = self._engine.read_policy(at)
            schema = self._engine.schema(at)
        target.check.CopyFrom(trace_to_proto(result.explanation, result.subject, schema))

    async def CheckBulkPermissions(
        self, request: pb.CheckBulkPermissionsRequest, context: Context
    ) -> pb.CheckBulkPermissionsResponse:
        """Decide many checks at one revision; an item that fails carries its own error.

        The engine's batch refuses the whole batch for one bad item, so the
        batch runs first and, only if it fails (or traces are asked for), each
        item runs alone at the same revision, as SpiceDB reports errors per item
        (internal/services/v1/bulkcheck.go).
        """
        if len(request.items) > self._limits.max_batch_size:
            raise spicedb_error(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"check count of {len(request.items)} is greater than maximum allowed of "
                f"{self._limits.max_batch_size}",
            )
        consistency = consistency_from_proto(request.consistency)
        checks: list[tuple[CheckRequest, Names] | RichStatusError] = []
        for item in request.items:
            try:
                checks.append(self._check_request(item))
            except RichStatusError as e:
                checks.append(e)
        answers: Sequence[CheckResult | RichStatusError] | None = None
        valid = [c[0] for c in checks if not isinstance(c, RichStatusError)]
        if valid and len(valid) == len(checks) and not request.with_tracing:
            try:
                answers = self._engine.check_many(valid, consistency=consistency)
            except PolicydError:
                answers = None
        with spicedb_errors():
            token = self._tokens.token(self._engine.revision_for(consistency))
        if answers is None:
            pinned = Consistency.at_exact_snapshot(token)
            answers = [
                c if isinstance(c, RichStatusError) else self._try_check(*c, pinned, request)
                for c in checks
            ]
        elif answers:
            first = answers[0]
            assert isinstance(first, CheckResult)
            token = first.token
        self._count([a for a in answers if isinstance(a, CheckResult)])
        response = pb.CheckBulkPermissionsResponse(checked_at=zedtoken(token))
        for item, answer in zip(request.items, answers, strict=True):
            pair = response.pairs.add(request=item)
            if not item.context.fields:  # SpiceDB echoes an empty context as none
                pair.request.ClearField("context")
            if isinstance(answer, RichStatusError):
                pair.error.CopyFrom(status_of(answer))
                continue
            pair.item.permissionship = CHECK_PERMISSIONSHIP[answer.permissionship]
            if answer.missing:
                pair.item.partial_caveat_info.missing_required_context.extend(answer.missing)
            if answer.explanation is not None:
                self._trace(pair.item.debug_trace, answer)
        return response

    def _try_check(
        self,
        check: CheckRequest,
        names: Names,
        consistency: Consistency,
        request: pb.CheckBulkPermissionsRequest,
    ) -> CheckResult | RichStatusError:
        try:
            return self._check(check, names, consistency, request.with_tracing)
        except RichStatusError as e:
            return e

    # ---- lookups and expand --------------------------------------------------------------------

    async def LookupResources(
        self, request: pb.LookupResourcesRequest, context: Context
    ) -> AsyncIterator[pb.LookupResourcesResponse]:
        """Stream the resources found, each with a cursor resuming after it (cursors.py)."""
        subject = subject_from_proto(request.subject, "subject")
        resource_type, permission = request.resource_object_type, request.permission
        names = Names(
            resource_type,
            permission,
            subject.type,
            subject.relation or "",
            wildcard="lookup resources on wildcard",
        )
        hashed = request_hash("resources", resource_type, permission, str(subject))
        page: str | None = None
        skip = 0
        if request.HasField("optional_cursor"):
            position = LookupPosition.decode(request.optional_cursor.token, hashed)
            consistency = Consistency.at_exact_snapshot(position.token)
            page, skip = position.page or None, position.skip
        else:
            consistency = consistency_from_proto(request.consistency)
        limit = request.optional_limit or None
        with spicedb_errors(names):
            listing = self._engine.stream_objects(
                resource_type,
                permission,
                subject,
                context=context_of(request.context),
                consistency=consistency,
                cursor=page,
                limit=None if limit is None else limit + skip,
            )
            token = zedtoken(listing.token)
            held: pb.LookupResourcesResponse | None = None
            count = 0
            async for found in sliced(listing.steps, deadline_of(context)):
                count += 1
                if count <= skip:
                    continue
                if held is not None:
                    yield held
                held = pb.LookupResourcesResponse(
                    looked_up_at=token,
                    resource_object_id=found.resource_id,
                    permissionship=LOOKUP_PERMISSIONSHIP[found.permissionship],
                    after_result_cursor=core_pb2.Cursor(
                        token=LookupPosition(listing.token, page or "", count, hashed).encode()
                    ),
                )
                if found.missing:
                    held.partial_caveat_info.missing_required_context.extend(found.missing)
        if held is not None:
            if listing.cursor is not None:  # the page ended here: resume from the engine's cursor
                held.after_result_cursor.token = LookupPosition(
                    listing.token, listing.cursor, 0, hashed
                ).encode()
            yield held

    async def LookupSubjects(
        self, request: pb.LookupSubjectsRequest, context: Context
    ) -> AsyncIterator[pb.LookupSubjectsResponse]:
        """Stream the subjects found, then any wildcard with its exclusions.

        SpiceDB leaves ``optional_concrete_limit`` unimplemented (UNIMPLEMENTED,
        "concrete limit is not yet supported"), so there are no cursors to resume.
        """
        if request.optional_concrete_limit:
            raise spicedb_error(
                grpc.StatusCode.UNIMPLEMENTED, "concrete limit is not yet supported"
            )
        if request.HasField("optional_cursor"):
            raise invalid_cursor("LookupSubjects issues no cursors here")
        resource = object_from_proto(request.resource, "resource")
        names = Names(
            resource.type,
            request.permission,
            request.subject_object_type,
            request.optional_subject_relation,
        )
        skip_wildcards = (
            request.wildcard_option == pb.LookupSubjectsRequest.WILDCARD_OPTION_EXCLUDE_WILDCARDS
        )
        with spicedb_errors(names):
            listing = self._engine.stream_subjects(
                resource,
                request.permission,
                request.subject_object_type,
                request.optional_subject_relation or None,
                context=context_of(request.context),
                consistency=consistency_from_proto(request.consistency),
            )
            token = zedtoken(listing.token)
            async for found in sliced(listing.steps, deadline_of(context)):
                if found.subject.id == WILDCARD and skip_wildcards:
                    continue
                subject = _resolved(found.subject.id, found.missing)
                excluded = [_resolved(e.subject.id, e.missing) for e in found.excluded]
                response = pb.LookupSubjectsResponse(
                    looked_up_at=token,
                    subject=subject,
                    excluded_subjects=excluded,
                    # the fields SpiceDB deprecated for ``subject``, still filled as it fills them
                    subject_object_id=subject.subject_object_id,
                    excluded_subject_ids=[e.subject_object_id for e in excluded],
                    permissionship=subject.permissionship,
                )
                if found.missing:
                    response.partial_caveat_info.CopyFrom(subject.partial_caveat_info)
                yield response

    async def ExpandPermissionTree(
        self, request: pb.ExpandPermissionTreeRequest, context: Context
    ) -> pb.ExpandPermissionTreeResponse:
        """The userset tree, built a slice at a time."""
        resource = object_from_proto(request.resource, "resource")
        with spicedb_errors(Names(resource.type, request.permission)):
            listing = self._engine.stream_expand(
                resource,
                request.permission,
                consistency=consistency_from_proto(request.consistency),
            )
            trees = [tree async for tree in sliced(listing.steps, deadline_of(context))]
        return pb.ExpandPermissionTreeResponse(
            expanded_at=zedtoken(listing.token), tree_root=_tree(trees[0])
        )

    # ---- relationships -------------------------------------------------------------------------

    async def ReadRelationships(
        self, request: pb.ReadRelationshipsRequest, context: Context
    ) -> AsyncIterator[pb.ReadRelationshipsResponse]:
        """Stream the matching relationships from one snapshot, each with a cursor after it."""
        relationship_filter, prefix = filter_from_proto(
            request.relationship_filter, "relationship_filter"
        )
        with spicedb_errors():
            cursor = self._cursor(request)
            revision = (
                cursor.revision
                if cursor is not None
                else self._engine.revision_for(consistency_from_proto(request.consistency))
            )
            token = zedtoken(self._tokens.token(revision))
            pages = read_pages(
                self._store,
                self._reads,
                revision,
                relationship_filter,
                cursor,
                request.optional_limit or None,
                self._limits.page_size,
                _prefixed(prefix),
            )
            async for relationship, after in pages:
                yield pb.ReadRelationshipsResponse(
                    read_at=token,
                    relationship=relationship_to_proto(relationship),
                    after_result_cursor=core_pb2.Cursor(token=after.encode(self._tokens)),
                )

    def _cursor(
        self, request: pb.ReadRelationshipsRequest | pb.ExportBulkRelationshipsRequest
    ) -> Cursor | None:
        if not request.HasField("optional_cursor"):
            return None
        try:
            return Cursor.decode(request.optional_cursor.token, self._tokens)
        except PolicydError as e:
            raise invalid_cursor(e.message) from e

    async def WriteRelationships(
        self, request: pb.WriteRelationshipsRequest, context: Context
    ) -> pb.WriteRelationshipsResponse:
        """Apply one atomic batch under its preconditions."""
        if len(request.updates) > self._limits.max_updates:
            raise spicedb_error(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"update count of {len(request.updates)} is greater than maximum allowed of "
                f"{self._limits.max_updates}",
            )
        updates = [update_from_proto(u, f"updates[{i}]") for i, u in enumerate(request.updates)]
        seen: set[tuple[str, ...]] = set()
        for update in updates:
            if update.relationship.key in seen:
                raise duplicate_update(update.relationship)
            seen.add(update.relationship.key)
        preconditions = [
            precondition_from_proto(p, f"optional_preconditions[{i}]")
            for i, p in enumerate(request.optional_preconditions)
        ]
        token = await self._write(updates, preconditions, request.optional_preconditions)
        return pb.WriteRelationshipsResponse(written_at=zedtoken(token))

    async def _write(
        self,
        updates: Sequence[RelationshipUpdate],
        preconditions: Sequence[Precondition],
        messages: Sequence[pb.Precondition],
    ) -> str:
        """``engine.write`` in a thread, its errors SpiceDB's (naming the failed precondition)."""
        try:
            token = await self._writes.run(self._engine.write, updates, preconditions)
        except PreconditionFailedError as e:
            failed = await self._reads.run(self._failed_precondition, preconditions)
            message = messages[failed]
            raise precondition_failed(
                precondition_text(message), precondition_metadata(message)
            ) from e
        except RichStatusError:
            raise
        except PolicydError as e:
            names = Names(relationships=[u.relationship for u in updates], schema=self._schema())
            raise translate(e, names) from e
        self._feed.poke()
        return token

    def _schema(self) -> Schema | None:
        """The schema writes are checked against, for error messages (None before any)."""
        try:
            return self._engine.schema(Consistency.fully_consistent())
        except PolicydError:
            return None

    def _failed_precondition(self, preconditions: Sequence[Precondition]) -> int:
        """Which precondition failed (the store says only that one did), read at the head."""
        snapshot = self._store.snapshot(self._engine.revision_for(Consistency.fully_consistent()))
        for i, precondition in enumerate(preconditions):
            found = bool(snapshot.read(precondition.filter, None, 1).relationships)
            if found != (precondition.kind is PreconditionKind.MUST_MATCH):
                return i
        return 0

    async def DeleteRelationships(
        self, request: pb.DeleteRelationshipsRequest, context: Context
    ) -> pb.DeleteRelationshipsResponse:
        """Delete by filter, at most ``optional_limit``, under preconditions.

        Without preconditions, a resource id prefix or a limit that must not
        cut the deletion short, this is the engine's delete. Otherwise the
        matches are read at the head and deleted as one write carrying the
        preconditions: the engine's delete takes none, and SpiceDB refuses a
        limited delete that would leave matches behind unless partial deletion
        is allowed (ErrCouldNotTransactionallyDelete, errors.go).
        """
        relationship_filter, prefix = filter_from_proto(
            request.relationship_filter, "relationship_filter"
        )
        preconditions = [
            precondition_from_proto(p, f"optional_preconditions[{i}]")
            for i, p in enumerate(request.optional_preconditions)
        ]
        limit = request.optional_limit or None
        partial = request.optional_allow_partial_deletions
        if not preconditions and not prefix and (limit is None or partial):
            with spicedb_errors():
                token, count = await self._writes.run(
                    self._engine.delete, relationship_filter, limit
                )
            self._feed.poke()
        else:
            matches = await self._matches(relationship_filter, prefix, limit)
            if limit is not None and len(matches) > limit:
                if not partial:
                    raise too_many_to_delete(limit)
                matches = matches[:limit]
            updates = [RelationshipUpdate(Operation.DELETE, r) for r in matches]
            count = len(updates)
            token = await self._write(updates, preconditions, request.optional_preconditions)
        progress = (
            pb.DeleteRelationshipsResponse.DELETION_PROGRESS_PARTIAL
            if limit is not None and count >= limit
            else pb.DeleteRelationshipsResponse.DELETION_PROGRESS_COMPLETE
        )
        return pb.DeleteRelationshipsResponse(
            deleted_at=zedtoken(token),
            deletion_progress=progress,
            relationships_deleted_count=count,
        )

    async def _matches(
        self, relationship_filter: RelationshipFilter, prefix: str, limit: int | None
    ) -> list[Relationship]:
        """The live relationships matching, at the head: ``limit + 1`` at most."""
        with spicedb_errors():
            revision = self._engine.revision_for(Consistency.fully_consistent())
            pages = read_pages(
                self._store,
                self._reads,
                revision,
                relationship_filter,
                None,
                None if limit is None else limit + 1,
                self._limits.page_size,
                _prefixed(prefix),
            )
            return [relationship async for relationship, _ in pages]

    # ---- bulk import and export ----------------------------------------------------------------

    async def ImportBulkRelationships(
        self,
        request_iterator: AsyncIterator[pb.ImportBulkRelationshipsRequest],
        context: Context,
    ) -> pb.ImportBulkRelationshipsResponse:
        """Create every streamed relationship in one transaction; any existing one fails it."""
        relationships: list[Relationship] = []
        async for chunk in request_iterator:
            for message in chunk.relationships:
                relationships.append(
                    relationship_from_proto(message, f"relationships[{len(relationships)}]")
                )
        try:
            await self._writes.run(self._engine.import_relationships, relationships)
        except PolicydError as e:
            names = Names(relationships=relationships, schema=self._schema())
            raise translate(e, names) from e
        self._feed.poke()
        return pb.ImportBulkRelationshipsResponse(num_loaded=len(relationships))

    async def ExportBulkRelationships(
        self, request: pb.ExportBulkRelationshipsRequest, context: Context
    ) -> AsyncIterator[pb.ExportBulkRelationshipsResponse]:
        """Stream the relationships at one revision in batches, each with a cursor after it."""
        relationship_filter, prefix = RelationshipFilter(), ""
        if request.HasField("optional_relationship_filter"):
            relationship_filter, prefix = filter_from_proto(
                request.optional_relationship_filter, "optional_relationship_filter"
            )
        with spicedb_errors():
            cursor = self._cursor(request)
            revision = (
                cursor.revision
                if cursor is not None
                else self._engine.revision_for(consistency_from_proto(request.consistency))
            )
            pages = read_pages(
                self._store,
                self._reads,
                revision,
                relationship_filter,
                cursor,
                request.optional_limit or None,
                self._limits.page_size,
                _prefixed(prefix),
            )
            batch: list[core_pb2.Relationship] = []
            last: Cursor | None = None
            async for relationship, last in pages:
                batch.append(relationship_to_proto(relationship))
                if len(batch) >= self._limits.page_size:
                    yield self._export(batch, last)
                    batch = []
            if batch and last is not None:
                yield self._export(batch, last)

    def _export(
        self, batch: Sequence[core_pb2.Relationship], last: Cursor
    ) -> pb.ExportBulkRelationshipsResponse:
        return pb.ExportBulkRelationshipsResponse(
            relationships=batch,
            after_result_cursor=core_pb2.Cursor(token=last.encode(self._tokens)),
        )


def _prefixed(prefix: str) -> Callable[[Relationship], bool] | None:
    """A test for SpiceDB's ``optional_resource_id_prefix`` (the store filters by whole ids)."""
    if not prefix:
        return None
    return lambda r: r.resource.id.startswith(prefix)


def _resolved(subject_id: str, missing: Sequence[str]) -> pb.ResolvedSubject:
    resolved = pb.ResolvedSubject(
        subject_object_id=subject_id,
        permissionship=pb.LOOKUP_PERMISSIONSHIP_CONDITIONAL_PERMISSION
        if missing
        else pb.LOOKUP_PERMISSIONSHIP_HAS_PERMISSION,
    )
    if missing:
        resolved.partial_caveat_info.missing_required_context.extend(missing)
    return resolved


def _tree(
    node: ExpandNode, enclosing: tuple[str, str, str] | None = None
) -> core_pb2.PermissionRelationshipTree:
    """SpiceDB's PermissionRelationshipTree of an expand node.

    An arrow's union (policyd's target ``doc:1#parent->view``) is labelled, as
    SpiceDB labels it, with the permission it sits in (internal/graph/expand.go
    expands a tuple-to-userset under the relation being expanded).
    """
    tree = core_pb2.PermissionRelationshipTree()
    head, _, relation = node.target.rpartition("#")
    type_name, _, id_ = head.partition(":")
    if "->" in relation and enclosing is not None:
        type_name, id_, relation = enclosing
    tree.expanded_object.object_type = type_name
    tree.expanded_object.object_id = id_
    tree.expanded_relation = relation
    if node.kind is ExpandKind.LEAF:
        tree.leaf.subjects.extend(subject_to_proto(r.subject) for r in node.relationships)
        tree.leaf.SetInParent()
    else:
        tree.intermediate.operation = _ALGEBRA[node.kind]
        label = (type_name, id_, relation)
        tree.intermediate.children.extend(_tree(c, label) for c in node.children)
    return tree
