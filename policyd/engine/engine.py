"""Package engine is the in-process API: policies, relationships and decisions over one Store.

``Engine`` is what the gRPC service calls and what an application can embed
directly, like SQLite for authorization. It composes the parts that do the
work: ``Revisions`` picks the revision and reader of each request,
``PolicyCache`` the compiled policy in force there, ``DecisionCache`` recent
answers; the engine validates requests and runs Check, BatchCheck,
ListObjects, ListSubjects and Expand over them.

It runs past 500 lines because the public API is wide (every decision, write,
lookup and stream an application calls), not because it does more than one
job: each method validates and composes the modules that do the work.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from policyd.caveats import check_request_context
from policyd.consistency import Consistency, ConsistencyMode
from policyd.decisions import (
    CheckRequest,
    CheckResult,
    ExpandNode,
    Explanation,
    FoundObject,
    FoundSubject,
    Permissionship,
    answer_for,
)
from policyd.engine.audience import AudienceTracker, Watched
from policyd.engine.cache import DEFAULT_CAPACITY, DecisionCache, Dependencies, decision_key
from policyd.engine.check import CheckRun, TracingRun
from policyd.engine.deadline import Deadline, items
from policyd.engine.expand import expand
from policyd.engine.group_closure import Closures, RecordingClosures
from policyd.engine.index import ImportedRows, RelationshipIndex
from policyd.engine.listing import Listing, listing, resume
from policyd.engine.lookup_resources import found_objects, reachable_resources
from policyd.engine.lookup_subjects import found_subjects, walk_subjects
from policyd.engine.plan import Plan
from policyd.engine.policies import CompiledPolicy, PolicyCache
from policyd.engine.reader import GraphReader, IndexReader, RecordingReader, StoreReader
from policyd.engine.results import Partial, missing_of, permissionship
from policyd.engine.revisions import DEFAULT_HEAD_STALENESS, Revisions
from policyd.engine.snapshot import SnapshotFile
from policyd.errors import (
    Diagnostic,
    InvalidRequestError,
    NotFoundError,
    PolicyErrors,
    PolicySyntaxError,
    Severity,
    SnapshotMovedError,
    did_you_mean,
)
from policyd.filters import Precondition, RelationshipFilter
from policyd.relationship import (
    WILDCARD,
    ObjectRef,
    Operation,
    Relationship,
    RelationshipUpdate,
    SubjectRef,
)
from policyd.schema.ir import Definition, Schema
from policyd.store.base import Revision, Store
from policyd.tokens import TokenCodec

DEFAULT_MAX_DEPTH = 50
T = TypeVar("T")

MAX_SUBJECT_VISITS = 1_000_000
MAX_EXPAND_NODES = 100_000


@dataclass(frozen=True, slots=True)
class PolicyWritten:
    """The outcome of writing a policy: where it took effect and what the compiler warned."""

    revision: Revision
    token: str
    warnings: tuple[Diagnostic, ...]


@dataclass(frozen=True, slots=True)
class PolicyChecked:
    """The dry run of writing a policy: every diagnostic, and what stored data would block it."""

    diagnostics: tuple[Diagnostic, ...]
    blockers: tuple[str, ...]

    @property
    def valid(self) -> bool:
        """Whether ``write_policy`` would accept the policy now."""
        return not self.blockers and all(d.severity is Severity.WARNING for d in self.diagnostics)


@dataclass(frozen=True, slots=True)
class ObjectsPage:
    """A page of ListObjects; pass ``cursor`` back for the next page (None on the last)."""

    objects: tuple[FoundObject, ...]
    revision: Revision
    token: str
    cursor: str | None


@dataclass(frozen=True, slots=True)
class SubjectsResult:
    """ListSubjects answers: concrete subjects, then any wildcard with its exclusions.

    ``cursor`` is set when ``limit`` ended the list; pass it back for the rest.
    """

    subjects: tuple[FoundSubject, ...]
    revision: Revision
    token: str
    cursor: str | None = None

    def answer_for(self, subject: SubjectRef) -> tuple[Permissionship, tuple[str, ...]]:
        """What the listing says of one subject (``decisions.answer_for``)."""
        return answer_for(self.subjects, subject)


@dataclass(frozen=True, slots=True)
class ExpandResult:
    """An Expand tree at a revision."""

    tree: ExpandNode
    revision: Revision
    token: str


@dataclass(frozen=True, slots=True)
class EngineStats:
    """Counters for metrics: the decision cache and the in-memory index."""

    cache_hits: int
    cache_misses: int
    cache_entries: int
    index_revision: Revision | None
    index_relationships: int | None
    index_lag_seconds: float = 0.0
    """Seconds since the index last reached the store's head."""
    store_reachable: bool = True
    """False while the follower cannot reach the store (health reports NOT_SERVING)."""


@dataclass(frozen=True, slots=True)
class _CachedRun:
    """A run whose answers go into the decision cache, with what it read and when it began."""

    run: CheckRun
    dependencies: Dependencies
    serial: int


class Engine:
    """Decisions over a Store; thread-safe for concurrent requests.

    With ``index=True`` (the default) the engine keeps every live relationship
    in memory (``RelationshipIndex``), loaded once and kept current from the
    store's change log, and answers from it; reads at an exact older snapshot
    go to the store. With ``index=False`` every read goes to the store.
    ``index_snapshot`` names a file the index is saved to and started from
    (engine/snapshot.py): a restart then loads it and applies the change log
    since, instead of reading every relationship from the store.
    """

    def __init__(
        self,
        store: Store,
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
        head_staleness: float = DEFAULT_HEAD_STALENESS,
        clock: Callable[[], float] = time.monotonic,
        index: bool = True,
        cache_capacity: int = DEFAULT_CAPACITY,
        max_subject_visits: int = MAX_SUBJECT_VISITS,
        max_expand_nodes: int = MAX_EXPAND_NODES,
        index_snapshot: Path | None = None,
    ) -> None:
        if max_depth < 1:
            raise InvalidRequestError("max depth must be at least 1", field="max_depth")
        self.store = store
        self.tokens = TokenCodec(store.identity)
        """Makes and reads this store's consistency tokens and cursors (the API uses it too)."""
        self.max_depth = max_depth
        self.max_subject_visits = max_subject_visits
        """How many usersets one ListSubjects may walk before it fails RESOURCE_EXHAUSTED."""
        self.max_expand_nodes = max_expand_nodes
        """How many nodes and relationships an Expand tree may hold (RESOURCE_EXHAUSTED past)."""
        self._index: RelationshipIndex | None = None
        self._closures: Closures | None = None
        self._snapshots: SnapshotFile | None = None
        head = store.head_revision()
        if index:
            self._index = RelationshipIndex(clock=store.clock)
            if index_snapshot is None:
                self._index.load(store.snapshot(head))
            else:
                self._snapshots = SnapshotFile(index_snapshot, store.identity, store.revision_stamp)
                self._snapshots.start(self._index, store, head)
                head = max(head, self._index.revision)
            self._closures = Closures(self._index)
        self.cache = DecisionCache(cache_capacity if index else 0)
        """Recent decisions, valid at the index revision until a relationship they read
        changes; ``cache.hits``/``misses`` feed metrics."""
        if self._index is not None and self._closures is not None:
            self._index.on_change(self._changed)
            self._index.on_rebuild(self.cache.clear)
            self._closures.on_change(self.cache.closure_changed)
        self._policies = PolicyCache(store, self._closures)
        self._revisions = Revisions(
            store,
            self.tokens,
            self._index,
            head,
            self._advanced,
            head_staleness=head_staleness,
            clock=clock,
            snapshots=self._snapshots,
        )
        if index and store.snapshot(head).read_policy() is not None:
            self._policies.at(head)  # compile and warm up before the first request

    def _changed(
        self, rtype: str, rid: str, relation: str, stype: str, sid: str, srel: str, added: bool
    ) -> None:
        """The index added or removed a relationship: the decisions that read it go."""
        self.cache.changed(rtype, rid, relation, stype, sid, srel)

    def _advanced(self, known: Revision, upto: Revision, policy_changed: bool) -> None:
        """The index moved from ``known`` to ``upto``; a policy change ends every decision."""
        if policy_changed:
            self.cache.clear()
        else:
            self._policies.extend(known, upto)

    def stats(self) -> EngineStats:
        """Current counters; cheap enough to call at every metrics scrape."""
        index = self._index
        return EngineStats(
            self.cache.hits,
            self.cache.misses,
            len(self.cache),
            index.revision if index is not None else None,
            index.size if index is not None else None,
            self._revisions.lag,
            self._revisions.healthy,
        )

    def follow(self, interval: float = 0.05) -> None:
        """Apply the store's change log on a background thread from now on (servers do).

        Requests then never apply it themselves; one that needs a revision the
        index has not reached reads the store (engine/revisions.py).
        """
        self._revisions.follow(interval)

    @property
    def healthy(self) -> bool:
        """False while a following engine cannot reach its store."""
        return self._revisions.healthy

    def close(self) -> None:
        """Stop following the change log; save the index snapshot if it moved.

        The store is the caller's to close.
        """
        self._revisions.stop()
        self._revisions.save_snapshot()

    # ---- revisions and policies ------------------------------------------------------------

    def revision_for(self, consistency: Consistency | None) -> Revision:
        """The revision a request with this consistency reads at."""
        return self._revisions.for_request(consistency)

    def _run(
        self,
        compiled: CompiledPolicy,
        reader: GraphReader,
        subject: SubjectRef,
        context: Mapping[str, Any] | None,
    ) -> CheckRun:
        """A check run; group closures serve it when it reads the index."""
        closures = self._closures if isinstance(reader, IndexReader) else None
        return CheckRun(compiled.plan, reader, subject, context or {}, self.max_depth, closures)

    def _cached_run(self, compiled: CompiledPolicy, subject: SubjectRef) -> _CachedRun:
        """A run over the index that notes what it reads, so its answers can be cached."""
        index, closures = self._index, self._closures
        assert index is not None and closures is not None
        dependencies = Dependencies()
        serial = self.cache.serial
        run = CheckRun(
            compiled.plan,
            RecordingReader(index, dependencies.add),
            subject,
            {},
            self.max_depth,
            RecordingClosures(closures, dependencies.add),
        )
        return _CachedRun(run, dependencies, serial)

    def _snapshot(
        self, consistency: Consistency | None
    ) -> tuple[GraphReader, CompiledPolicy, int | None]:
        """The reader and the compiled policy a request uses, and the index epoch it saw.

        The epoch (index.py) is None for store reads. The follower applies the
        change log on another thread: a reader that finds it mid-batch reads the
        store at the same revision instead, and one that finds the epoch moved
        afterwards (``_moved``) does its reading again.
        """
        reader: GraphReader = self._revisions.reader(consistency)
        epoch: int | None = None
        if isinstance(reader, IndexReader):
            epoch = reader.index.epoch
            if epoch % 2:
                reader, epoch = self._store_instead(reader.revision, consistency), None
        return reader, self._policies.at(reader.revision), epoch

    def _store_instead(self, revision: Revision, consistency: Consistency | None) -> StoreReader:
        """The store's reader for a request the index moved under.

        An exact snapshot reads the store at its revision. Any other request
        may read newer, and reads the store's head: the index's own revision
        may be collected already when the follower is reloading it after GC.
        """
        exact = consistency is not None and consistency.mode is ConsistencyMode.AT_EXACT_SNAPSHOT
        if not exact:
            revision = max(revision, self._revisions.store_head())
        return StoreReader(self.store.snapshot(revision))

    def _moved(self, epoch: int | None) -> bool:
        """Whether the index applied changes since a reader saw ``epoch``."""
        return epoch is not None and self._index is not None and self._index.epoch != epoch

    def _steady(self, steps: Iterator[T | None], epoch: int | None) -> Iterator[T | None]:
        """A lookup's steps, stopped with SnapshotMovedError if the index moves under them."""
        for step in steps:
            if step is None and self._moved(epoch):
                raise SnapshotMovedError(
                    "the in-memory index applied a newer revision while this lookup read it; "
                    "retry it, or resume from the last answer's cursor (which pins its revision)"
                )
            yield step

    def schema(self, consistency: Consistency | None = None) -> Schema:
        """The compiled policy in force at the consistency's revision."""
        return self._policies.at(self.revision_for(consistency)).plan.schema

    def write_policy(self, text: str, source_name: str = "<policy>") -> PolicyWritten:
        """Compile and store a policy; refused if invalid or if it would orphan relationships."""
        from policyd.dsl.compiler import compile_policy  # the one place the engine uses dsl

        compiled = compile_policy(text, source_name)
        revision = self.store.write_policy(text, compiled.schema)
        self._revisions.wrote(revision)
        return PolicyWritten(revision, self.tokens.token(revision), compiled.warnings)

    def validate_policy(self, text: str, source_name: str = "<policy>") -> PolicyChecked:
        """The dry run of ``write_policy``: compile, and check against the stored relationships.

        Valid exactly when ``write_policy`` of the same text would be accepted now.
        """
        from policyd.dsl.compiler import compile_policy

        try:
            compiled = compile_policy(text, source_name)
        except PolicyErrors as e:
            return PolicyChecked(e.diagnostics, ())
        except PolicySyntaxError as e:
            if e.span is None:
                raise
            return PolicyChecked((Diagnostic(e.span, e.code, e.message),), ())
        blockers = tuple(self.store.policy_blockers(compiled.schema))
        return PolicyChecked(compiled.warnings, blockers)

    def read_policy(self, consistency: Consistency | None = None) -> tuple[str, Revision]:
        """The policy text in force at the consistency's revision, and that revision."""
        revision = self.revision_for(consistency)
        stored = self.store.snapshot(revision).read_policy()
        if stored is None:
            raise NotFoundError("no policy has been written yet", field="policy")
        return stored.text, revision

    # ---- relationships ---------------------------------------------------------------------

    def write(
        self, updates: Sequence[RelationshipUpdate], preconditions: Sequence[Precondition] = ()
    ) -> str:
        """Apply a batch atomically; returns the consistency token of the new revision."""
        return self.written(self.store.write(updates, preconditions))

    def written(self, revision: Revision) -> str:
        """A write reached the store at ``revision`` (here or through the server's writer).

        Later requests through this engine see it; returns its consistency token.
        """
        self._revisions.wrote(revision)
        return self.tokens.token(revision)

    def touch(self, relationships: Iterable[Relationship]) -> str:
        """Create or replace relationships atomically; returns the token (as the client's)."""
        return self.write([RelationshipUpdate(Operation.TOUCH, r) for r in relationships])

    def import_relationships(self, relationships: Iterable[Relationship]) -> str:
        """Bulk-create relationships in one transaction; returns the new revision's token.

        An empty import makes no revision and returns the head's token.

        The relationships stream into the store's transaction as they come, so
        an iterator of any length is never held whole. With an index, each is
        also kept compactly (``ImportedRows``) for the index to take straight
        when nothing else was written in between, instead of reading them back
        from the change log (bulk loads run about twice as fast; benchmarks,
        import).
        """
        stream = iter(relationships)
        first = next(stream, None)
        if first is None:  # an empty import makes no revision: the head's token
            return self.written(self.store.head_revision())
        relationships = itertools.chain((first,), stream)
        if self._index is None:
            return self.written(self.store.import_relationships(relationships))
        rows = ImportedRows()

        def kept() -> Iterator[Relationship]:
            for relationship in relationships:
                rows.add(relationship)
                yield relationship

        revision = self.store.import_relationships(kept())
        self._revisions.imported(rows, revision)
        return self.tokens.token(revision)

    def delete(
        self, relationship_filter: RelationshipFilter, limit: int | None = None
    ) -> tuple[str, int]:
        """Delete relationships matching a filter; returns the token and how many went."""
        revision, count = self.store.delete(relationship_filter, limit)
        return self.written(revision), count

    # ---- decisions -------------------------------------------------------------------------

    @staticmethod
    def _validate(
        plan: Plan, resource_type: str, permission: str, subject: SubjectRef | None
    ) -> None:
        """Raise InvalidRequestError naming the field when the request names unknown things.

        A wildcard subject is refused too: ``user:*`` stands for every user, so "may
        user:* view doc:1?" is no question about one subject. SpiceDB refuses it the
        same way, INVALID_ARGUMENT: Check and CheckBulkPermissions with "cannot perform
        check on wildcard subject" (internal/graph/check.go, WildcardNotAllowed on
        ``subject.object_id``; CheckBulkPermissions reports it per item, see
        internal/services/v1/bulkcheck.go, where BatchCheck here refuses the call naming
        ``items[i].subject.id`` as for any bad item), LookupResources with "cannot
        perform lookup resources on wildcard" (internal/graph/lookupresources2.go).
        """
        members = plan.members
        if (resource_type, permission) in members and (
            subject is None
            or (
                subject.id != WILDCARD
                and subject.type in plan.schema.definitions
                and (subject.relation is None or (subject.type, subject.relation) in members)
            )
        ):
            return
        schema = plan.schema
        definition = schema.definition(resource_type)
        if definition is None:
            raise _unknown_type(schema, resource_type, "resource.type")
        if definition.member(permission) is None:
            raise _unknown_member(definition, permission, "permission")
        assert subject is not None
        if subject.id == WILDCARD:
            raise InvalidRequestError(
                f"cannot check a wildcard subject: {subject} stands for every {subject.type}; "
                f"ask about one {subject.type}, or list the subjects to see the wildcard",
                field="subject.id",
            )
        subject_definition = schema.definition(subject.type)
        if subject_definition is None:
            raise _unknown_type(schema, subject.type, "subject.type")
        raise _unknown_member(subject_definition, subject.relation or "", "subject.relation")

    def check(
        self,
        resource: ObjectRef,
        permission: str,
        subject: SubjectRef,
        *,
        context: Mapping[str, Any] | None = None,
        consistency: Consistency | None = None,
        explain: bool = False,
    ) -> CheckResult:
        """Decide whether ``subject`` holds ``permission`` on ``resource``."""
        if context:
            check_request_context(context)
        reader, compiled, epoch = self._snapshot(consistency)
        while True:
            plan, revision = compiled.plan, reader.revision
            self._validate(plan, resource.type, permission, subject)
            if explain:
                run = TracingRun(plan, reader, subject, context or {}, self.max_depth)
                value = run.check(resource.type, resource.id, permission, 0)
                explanation: Explanation | None = run.explanation()
            else:
                value = self._decide(compiled, reader, resource, permission, subject, context)
                explanation = None
            if not self._moved(epoch):
                return self._result(resource, permission, subject, value, revision, explanation)
            reader, epoch = self._store_instead(revision, consistency), None
            compiled = self._policies.at(reader.revision)

    def _decide(
        self,
        compiled: CompiledPolicy,
        reader: GraphReader,
        resource: ObjectRef,
        permission: str,
        subject: SubjectRef,
        context: Mapping[str, Any] | None,
        runs: dict[tuple[SubjectRef, str, bool], CheckRun | _CachedRun] | None = None,
    ) -> Partial:
        """One decision, from the cache when it can be (index reads, no caveat context).

        ``runs`` lets a batch share one CheckRun, and so its memo, per subject and context.
        Only a decision asked before is computed to be cached (``DecisionCache.admit``).
        """
        cacheable = not context and isinstance(reader, IndexReader) and self.cache.capacity > 0
        if not cacheable:
            run = self._shared_run(runs, subject, context, compiled, reader)
            assert isinstance(run, CheckRun)
            return run.check(resource.type, resource.id, permission, 0)
        assert isinstance(reader, IndexReader)
        key = decision_key(resource, permission, subject)
        cached = self.cache.get(key, reader.now)
        if cached is not None:
            return cached
        if not self.cache.admit(key):
            run = self._shared_run(runs, subject, None, compiled, reader, record=False)
            assert isinstance(run, CheckRun)
            return run.check(resource.type, resource.id, permission, 0)
        recorded = self._shared_run(runs, subject, None, compiled, reader, record=True)
        assert isinstance(recorded, _CachedRun)
        value = recorded.run.check(resource.type, resource.id, permission, 0)
        self.cache.put(key, value, recorded.run.valid_until, recorded.dependencies, recorded.serial)
        return value

    def _shared_run(
        self,
        runs: dict[tuple[SubjectRef, str, bool], CheckRun | _CachedRun] | None,
        subject: SubjectRef,
        context: Mapping[str, Any] | None,
        compiled: CompiledPolicy,
        reader: GraphReader,
        record: bool = False,
    ) -> CheckRun | _CachedRun:
        """The batch's run for this subject and context (a new one outside a batch).

        With ``record`` (no context, over the index, the cache on) it is a run
        that notes what it reads, so its answers can be cached.
        """
        context_key = json.dumps(context, sort_keys=True, default=str) if context else ""
        shared = (subject, context_key, record)
        found = runs.get(shared) if runs is not None else None
        if found is None:
            if record:
                found = self._cached_run(compiled, subject)
            else:
                found = self._run(compiled, reader, subject, context)
            if runs is not None:
                runs[shared] = found
        return found

    def _result(
        self,
        resource: ObjectRef,
        permission: str,
        subject: SubjectRef,
        value: Partial,
        revision: Revision,
        explanation: Any = None,
    ) -> CheckResult:
        return CheckResult(
            resource,
            permission,
            subject,
            permissionship(value),
            self.tokens.token(revision),
            missing_of(value),
            explanation,
        )

    def check_many(
        self, requests: Sequence[CheckRequest], *, consistency: Consistency | None = None
    ) -> list[CheckResult]:
        """Answer many checks at one revision, sharing work between checks of one subject."""
        reader, compiled, epoch = self._snapshot(consistency)
        results = self._check_each(requests, compiled, reader)
        if self._moved(epoch):
            reader = self._store_instead(reader.revision, consistency)
            results = self._check_each(requests, self._policies.at(reader.revision), reader)
        return results

    def _check_each(
        self, requests: Sequence[CheckRequest], compiled: CompiledPolicy, reader: GraphReader
    ) -> list[CheckResult]:
        """The answers of a batch on one reader, sharing a run (and its memo) per subject."""
        plan = compiled.plan
        token = self.tokens.token(reader.revision)
        runs: dict[tuple[SubjectRef, str, bool], CheckRun | _CachedRun] = {}
        results: list[CheckResult] = []
        for i, request in enumerate(requests):
            try:
                self._validate(plan, request.resource.type, request.permission, request.subject)
            except InvalidRequestError as e:
                raise InvalidRequestError(e.message, field=f"items[{i}].{e.field}") from e
            if request.context:
                check_request_context(request.context)
            value = self._decide(
                compiled,
                reader,
                request.resource,
                request.permission,
                request.subject,
                request.context,
                runs,
            )
            results.append(
                CheckResult(
                    request.resource,
                    request.permission,
                    request.subject,
                    permissionship(value),
                    token,
                    missing_of(value),
                )
            )
        return results

    def stream_objects(
        self,
        resource_type: str,
        permission: str,
        subject: SubjectRef,
        *,
        context: Mapping[str, Any] | None = None,
        consistency: Consistency | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Listing[FoundObject]:
        """Resources of a type on which the subject holds the permission, in id order, as found.

        The listing is lazy: its steps do the work (see engine/listing.py).
        """
        if context:
            check_request_context(context)
        request = ("objects", resource_type, permission, str(subject))
        pinned, after = resume(self.tokens, cursor, request)
        if pinned is not None:
            consistency = Consistency.at_exact_snapshot(self.tokens.token(pinned))
        reader, compiled, epoch = self._snapshot(consistency)
        self._validate(compiled.plan, resource_type, permission, subject)
        walk = reachable_resources(reader, compiled.reverse, subject, resource_type, permission)
        run = self._run(compiled, reader, subject, context)
        stream = self._steady(found_objects(walk, run, resource_type, permission, after), epoch)
        return listing(
            stream,
            reader.revision,
            self.tokens,
            limit,
            lambda found: (*request, found.resource_id),
        )

    def list_objects(
        self,
        resource_type: str,
        permission: str,
        subject: SubjectRef,
        *,
        context: Mapping[str, Any] | None = None,
        consistency: Consistency | None = None,
        cursor: str | None = None,
        limit: int | None = None,
        deadline: Deadline | None = None,
    ) -> ObjectsPage:
        """``stream_objects`` run to its end or limit; ``deadline`` stops it early."""
        found = self.stream_objects(
            resource_type,
            permission,
            subject,
            context=context,
            consistency=consistency,
            cursor=cursor,
            limit=limit,
        )
        objects = tuple(items(found.steps, deadline))
        return ObjectsPage(objects, found.revision, found.token, found.cursor)

    def stream_subjects(
        self,
        resource: ObjectRef,
        permission: str,
        subject_type: str,
        subject_relation: str | None = None,
        *,
        context: Mapping[str, Any] | None = None,
        consistency: Consistency | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Listing[FoundSubject]:
        """Subjects of a type that hold the permission, ascending by id, then any wildcard.

        The listing is lazy: the first subject of a million-member group comes
        without reading the rest (see engine/lookup_subjects.py).
        """
        if context:
            check_request_context(context)
        request = (
            "subjects",
            str(resource),
            permission,
            subject_type,
            subject_relation or "",
        )
        pinned, after = resume(self.tokens, cursor, request)
        if pinned is not None:
            consistency = Consistency.at_exact_snapshot(self.tokens.token(pinned))
        reader, compiled, epoch = self._snapshot(consistency)
        plan = compiled.plan
        self._validate(
            plan, resource.type, permission, SubjectRef(subject_type, "x", subject_relation)
        )
        walk = walk_subjects(
            plan,
            reader,
            resource.type,
            resource.id,
            permission,
            subject_type,
            subject_relation,
            self.max_subject_visits,
        )
        stream = found_subjects(
            walk,
            lambda subject: self._run(compiled, reader, subject, context),
            resource.type,
            resource.id,
            permission,
            subject_type,
            subject_relation,
            after,
        )
        return listing(
            self._steady(stream, epoch),
            reader.revision,
            self.tokens,
            limit,
            lambda found: None if found.subject.id == WILDCARD else (*request, found.subject.id),
        )

    def list_subjects(
        self,
        resource: ObjectRef,
        permission: str,
        subject_type: str,
        subject_relation: str | None = None,
        *,
        context: Mapping[str, Any] | None = None,
        consistency: Consistency | None = None,
        cursor: str | None = None,
        limit: int | None = None,
        deadline: Deadline | None = None,
    ) -> SubjectsResult:
        """``stream_subjects`` run to its end or limit; ``deadline`` stops it early."""
        found = self.stream_subjects(
            resource,
            permission,
            subject_type,
            subject_relation,
            context=context,
            consistency=consistency,
            cursor=cursor,
            limit=limit,
        )
        subjects = tuple(items(found.steps, deadline))
        return SubjectsResult(subjects, found.revision, found.token, found.cursor)

    def track_audience(
        self,
        resource: ObjectRef,
        permission: str,
        subject_type: str,
        subject_relation: str | None = None,
    ) -> AudienceTracker:
        """Follow who holds ``permission`` on ``resource`` revision by revision (WatchPermission).

        The question is validated against the policy in force now
        (engine/audience.py says how each revision's change is computed).
        """
        watched = Watched(resource, permission, subject_type, subject_relation)
        plan = self._policies.at(self.revision_for(None)).plan
        self._validate(
            plan, resource.type, permission, SubjectRef(subject_type, "x", subject_relation)
        )
        return AudienceTracker(self, watched)

    def stream_expand(
        self, resource: ObjectRef, permission: str, *, consistency: Consistency | None = None
    ) -> Listing[ExpandNode]:
        """The userset tree of ``resource#permission``, built lazily: one answer, the tree.

        Raises (from its steps):
            ResourceExhaustedError: the tree would hold more than ``max_expand_nodes``.
        """
        reader, compiled, epoch = self._snapshot(consistency)
        self._validate(compiled.plan, resource.type, permission, None)
        steps = expand(
            compiled.plan.schema,
            reader,
            resource,
            permission,
            self.max_depth,
            self.max_expand_nodes,
        )

        def tree() -> Iterator[ExpandNode | None]:
            yield (yield from steps)

        return listing(
            self._steady(tree(), epoch), reader.revision, self.tokens, None, lambda _: None
        )

    def expand(
        self,
        resource: ObjectRef,
        permission: str,
        *,
        consistency: Consistency | None = None,
        deadline: Deadline | None = None,
    ) -> ExpandResult:
        """The userset tree of ``resource#permission``; ``deadline`` stops building it."""
        found = self.stream_expand(resource, permission, consistency=consistency)
        (tree,) = items(found.steps, deadline)
        return ExpandResult(tree, found.revision, found.token)


def _unknown_type(schema: Schema, name: str, field: str) -> InvalidRequestError:
    """A request naming a type the policy lacks, with the closest one it has."""
    return InvalidRequestError(
        f"the policy has no type '{name}'" + did_you_mean(name, schema.definitions), field=field
    )


def _unknown_member(definition: Definition, name: str, field: str) -> InvalidRequestError:
    """A request naming a relation or permission the type lacks, with the closest one."""
    known = [*definition.relations, *definition.permissions]
    return InvalidRequestError(
        f"type '{definition.name}' has no relation or permission '{name}'"
        + did_you_mean(name, known),
        field=field,
    )
