"""Package engine is the in-process API: policies, relationships and decisions over one Store.

``Engine`` is what the gRPC service calls and what an application can embed
directly, like SQLite for authorization. It picks the revision each request
reads at (consistency), keeps one compiled plan per policy revision, and runs
Check, BatchCheck, ListObjects, ListSubjects and Expand.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from policyd.engine.cache import DEFAULT_CAPACITY, DecisionCache
from policyd.engine.check import CheckRun, TracingRun
from policyd.engine.consistency import Consistency, ConsistencyMode
from policyd.engine.expand import ExpandNode, expand
from policyd.engine.group_closure import Closures
from policyd.engine.index import RelationshipIndex
from policyd.engine.lookup import (
    FoundSubject,
    candidate_subjects,
    holding_subjects,
    reachable_resources,
)
from policyd.engine.plan import Plan, compile_plan
from policyd.engine.reachability import ReverseIndex, build_reverse_index
from policyd.engine.reader import GraphReader, IndexReader, StoreReader
from policyd.engine.results import CheckResult, Partial, missing_of, permissionship, settled
from policyd.errors import (
    Diagnostic,
    InvalidRequestError,
    NotFoundError,
    RevisionUnavailableError,
)
from policyd.relationship import WILDCARD, ObjectRef, Relationship, RelationshipUpdate, SubjectRef
from policyd.schema.ir import Schema
from policyd.store.base import Precondition, RelationshipFilter, Revision, Store
from policyd.tokens import TokenCodec

DEFAULT_MAX_DEPTH = 50
DEFAULT_HEAD_STALENESS = 0.1
DEFAULT_LIST_LIMIT = 1000
MAX_SUBJECT_VISITS = 1_000_000


@dataclass(frozen=True, slots=True)
class PolicyWritten:
    """The outcome of writing a policy: where it took effect and what the compiler warned."""

    revision: Revision
    token: str
    warnings: tuple[Diagnostic, ...]


@dataclass(frozen=True, slots=True)
class CheckRequest:
    """One check of a batch."""

    resource: ObjectRef
    permission: str
    subject: SubjectRef
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FoundObject:
    """A ListObjects answer: a resource id, granted or conditional on missing parameters."""

    resource_id: str
    conditional: bool = False
    missing: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ObjectsPage:
    """A page of ListObjects; pass ``cursor`` back for the next page (None on the last)."""

    objects: tuple[FoundObject, ...]
    revision: Revision
    token: str
    cursor: str | None


@dataclass(frozen=True, slots=True)
class SubjectsResult:
    """ListSubjects answers: concrete subjects, and wildcards with their exclusions."""

    subjects: tuple[FoundSubject, ...]
    revision: Revision
    token: str

    def answer_for(self, subject: SubjectRef) -> bool | frozenset[str]:
        """What the listing says of one subject: its own entry, else a wildcard's, less exclusions.

        False when neither names it; for a conditional exclusion, the
        parameters the subject's decision still needs.
        """
        wildcard: FoundSubject | None = None
        for found in self.subjects:
            if found.subject == subject:
                return found.result
            if found.subject.id == WILDCARD and found.subject.type == subject.type:
                wildcard = found
        if wildcard is None or subject.relation is not None:
            return False
        for excluded in wildcard.excluded:
            if excluded.subject == subject:
                return frozenset(excluded.missing) if excluded.missing else False
        return wildcard.result


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


@dataclass(slots=True)
class _CompiledPolicy:
    plan: Plan
    reverse: ReverseIndex
    verified_to: Revision


class Engine:
    """Decisions over a Store; thread-safe for concurrent requests.

    With ``index=True`` (the default) the engine keeps every live relationship
    in memory (``RelationshipIndex``), loaded once and kept current from the
    store's change log, and answers from it; reads at an exact older snapshot
    go to the store. With ``index=False`` every read goes to the store.
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
    ) -> None:
        if max_depth < 1:
            raise InvalidRequestError("max depth must be at least 1", field="max_depth")
        self.store = store
        self.tokens = TokenCodec(store.identity)
        """Makes and reads this store's consistency tokens and cursors (the API uses it too)."""
        self.max_depth = max_depth
        self.max_subject_visits = max_subject_visits
        """How many usersets one ListSubjects may walk before it fails RESOURCE_EXHAUSTED."""
        self._head_staleness = head_staleness
        self._clock = clock
        self._policies: dict[Revision, _CompiledPolicy] = {}
        self._last_policy: tuple[Revision, _CompiledPolicy] | None = None
        self._refresh_lock = threading.Lock()
        self._index: RelationshipIndex | None = None
        self._closures: Closures | None = None
        self._head = store.head_revision()
        if index:
            self._index = RelationshipIndex(clock=store.clock)
            self._index.load(store.snapshot(self._head))
            self._closures = Closures(self._index)
            if store.snapshot(self._head).read_policy() is not None:
                self._policy(self._head)  # compile and warm up before the first request
        self._head_read_at = clock()
        self.cache = DecisionCache(cache_capacity if index else 0)
        """Recent decisions at the index revision; ``cache.hits``/``misses`` feed metrics."""

    def stats(self) -> EngineStats:
        """Current counters; cheap enough to call at every metrics scrape."""
        index = self._index
        return EngineStats(
            self.cache.hits,
            self.cache.misses,
            len(self.cache),
            index.revision if index is not None else None,
            index.size if index is not None else None,
        )

    # ---- revisions and policies ------------------------------------------------------------

    def _refresh_head(self) -> Revision:
        """Learn the store's head; with an index, apply the change log up to it."""
        with self._refresh_lock:
            index = self._index
            if index is None:
                self._head = max(self._head, self.store.head_revision())
            else:
                before = index.revision
                policy_changed = index.catch_up(self.store)
                self._head = max(self._head, index.revision)
                if not policy_changed:
                    self._extend_policy(before, index.revision)
            self._head_read_at = self._clock()
            return self._head

    def _extend_policy(self, known: Revision, upto: Revision) -> None:
        """No policy was written in (known, upto]: the one in force at ``known`` still is."""
        for policy_revision, compiled in self._policies.items():
            if policy_revision <= known <= compiled.verified_to:
                compiled.verified_to = max(compiled.verified_to, upto)

    def revision_for(self, consistency: Consistency | None) -> Revision:
        """The revision a request with this consistency reads at (at least; see ``_snapshot``)."""
        if consistency is None or consistency.mode is ConsistencyMode.MINIMIZE_LATENCY:
            if self._clock() - self._head_read_at > self._head_staleness:
                return self._refresh_head()
            return self._head
        consistency.validate()
        if consistency.mode is ConsistencyMode.FULLY_CONSISTENT:
            return self._refresh_head()
        assert consistency.token is not None
        wanted = self.tokens.revision(consistency.token)
        head = self._head if wanted <= self._head else self._refresh_head()
        if wanted > head:
            raise RevisionUnavailableError(
                f"the token's revision {wanted} is newer than this store's head {head}; "
                "was the store restored from an older copy?",
                field="consistency.token",
            )
        if consistency.mode is ConsistencyMode.AT_EXACT_SNAPSHOT:
            return wanted
        return head

    def _run(
        self,
        compiled: _CompiledPolicy,
        reader: GraphReader,
        subject: SubjectRef,
        context: Mapping[str, Any] | None,
    ) -> CheckRun:
        """A check run; group closures serve it when it reads the index."""
        closures = self._closures if isinstance(reader, IndexReader) else None
        return CheckRun(compiled.plan, reader, subject, context or {}, self.max_depth, closures)

    def _snapshot(self, consistency: Consistency | None) -> tuple[GraphReader, _CompiledPolicy]:
        """The reader and the compiled policy a request uses.

        The index serves any request it is fresh enough for; a newer index
        revision than asked is fine except for an exact snapshot, which then
        reads the store.
        """
        revision = self.revision_for(consistency)
        index = self._index
        if index is not None:
            if index.revision < revision:
                self._refresh_head()
            exact = (
                consistency is not None and consistency.mode is ConsistencyMode.AT_EXACT_SNAPSHOT
            )
            if index.revision == revision or (index.revision > revision and not exact):
                graph = IndexReader(index)
                return graph, self._policy(graph.revision)
        return StoreReader(self.store.snapshot(revision)), self._policy(revision)

    def _policy(self, revision: Revision) -> _CompiledPolicy:
        last = self._last_policy
        if last is not None and last[0] == revision:
            return last[1]
        compiled = self._find_policy(revision)
        self._last_policy = (revision, compiled)
        return compiled

    def _find_policy(self, revision: Revision) -> _CompiledPolicy:
        for policy_revision, compiled in self._policies.items():
            if policy_revision <= revision <= compiled.verified_to:
                return compiled
        stored = self.store.snapshot(revision).read_policy()
        if stored is None:
            raise NotFoundError("no policy has been written yet; write one first", field="policy")
        known = self._policies.get(stored.revision)
        if known is None:
            plan = compile_plan(stored.schema)
            known = _CompiledPolicy(plan, build_reverse_index(stored.schema), revision)
            self._policies[stored.revision] = known
            if self._closures is not None:
                # Build group closures now, not inside the first request that needs one:
                # building scans the whole index (seconds at 10M relationships).
                for type_name, relation in plan.closable:
                    self._closures.get(type_name, relation)
        known.verified_to = max(known.verified_to, revision)
        return known

    def schema(self, consistency: Consistency | None = None) -> Schema:
        """The compiled policy in force at the consistency's revision."""
        return self._policy(self.revision_for(consistency)).plan.schema

    def write_policy(self, text: str, source_name: str = "<policy>") -> PolicyWritten:
        """Compile and store a policy; refused if invalid or if it would orphan relationships."""
        from policyd.dsl.compiler import compile_policy  # the one place the engine uses dsl

        compiled = compile_policy(text, source_name)
        revision = self.store.write_policy(text, compiled.schema)
        self._wrote(revision)
        return PolicyWritten(revision, self.tokens.token(revision), compiled.warnings)

    def read_policy(self, consistency: Consistency | None = None) -> tuple[str, Revision]:
        """The policy text in force at the consistency's revision, and that revision."""
        revision = self.revision_for(consistency)
        stored = self.store.snapshot(revision).read_policy()
        if stored is None:
            raise NotFoundError("no policy has been written yet", field="policy")
        return stored.text, revision

    # ---- relationships ---------------------------------------------------------------------

    def _wrote(self, revision: Revision) -> None:
        """After a write through this engine, later requests here see it (read your writes)."""
        if revision > self._head:
            if self._index is not None:
                self._refresh_head()
            self._head = max(self._head, revision)

    def write(
        self, updates: Sequence[RelationshipUpdate], preconditions: Sequence[Precondition] = ()
    ) -> str:
        """Apply a batch atomically; returns the consistency token of the new revision."""
        revision = self.store.write(updates, preconditions)
        self._wrote(revision)
        return self.tokens.token(revision)

    def import_relationships(self, relationships: Iterable[Relationship]) -> str:
        """Bulk-create relationships in one transaction; returns the new revision's token.

        The index takes the imported relationships straight from the batch when
        nothing else was written in between, instead of reading them back from
        the change log (bulk loads run about twice as fast; benchmarks, import).
        """
        index = self._index
        if index is None:
            revision = self.store.import_relationships(relationships)
            self._wrote(revision)
            return self.tokens.token(revision)
        batch = relationships if isinstance(relationships, list) else list(relationships)
        revision = self.store.import_relationships(batch)
        with self._refresh_lock:
            if index.revision == revision - 1:
                with index.lock:
                    for relationship in batch:
                        index.add(relationship)
                    index.revision = revision
        self._wrote(revision)
        return self.tokens.token(revision)

    def delete(
        self, relationship_filter: RelationshipFilter, limit: int | None = None
    ) -> tuple[str, int]:
        """Delete relationships matching a filter; returns the token and how many went."""
        revision, count = self.store.delete(relationship_filter, limit)
        self._wrote(revision)
        return self.tokens.token(revision), count

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
            raise InvalidRequestError(
                f"the policy has no type '{resource_type}'", field="resource.type"
            )
        if definition.member(permission) is None:
            raise InvalidRequestError(
                f"type '{resource_type}' has no relation or permission '{permission}'",
                field="permission",
            )
        assert subject is not None
        if subject.id == WILDCARD:
            raise InvalidRequestError(
                f"cannot check a wildcard subject: {subject} stands for every {subject.type}; "
                f"ask about one {subject.type}, or list the subjects to see the wildcard",
                field="subject.id",
            )
        if schema.definition(subject.type) is None:
            raise InvalidRequestError(
                f"the policy has no type '{subject.type}'", field="subject.type"
            )
        raise InvalidRequestError(
            f"type '{subject.type}' has no relation or permission '{subject.relation}'",
            field="subject.relation",
        )

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
        reader, compiled = self._snapshot(consistency)
        plan, revision = compiled.plan, reader.revision
        self._validate(plan, resource.type, permission, subject)
        if explain:
            run = TracingRun(plan, reader, subject, context or {}, self.max_depth)
            value = run.check(resource.type, resource.id, permission, 0)
            return self._result(resource, permission, subject, value, revision, run.explanation())
        return self._result(
            resource,
            permission,
            subject,
            self._decide(compiled, reader, resource, permission, subject, context),
            revision,
        )

    def _decide(
        self,
        compiled: _CompiledPolicy,
        reader: GraphReader,
        resource: ObjectRef,
        permission: str,
        subject: SubjectRef,
        context: Mapping[str, Any] | None,
        runs: dict[tuple[SubjectRef, str], CheckRun] | None = None,
    ) -> Partial:
        """One decision, from the cache when it can be (index reads, no caveat context).

        ``runs`` lets a batch share one CheckRun, and so its memo, per subject and context.
        """
        indexed = reader if isinstance(reader, IndexReader) else None
        cacheable = not context and indexed is not None
        if cacheable:
            key = (
                reader.revision,
                resource.type,
                resource.id,
                permission,
                subject.type,
                subject.id,
                subject.relation or "",
            )
            assert indexed is not None
            cached = self.cache.get(key, indexed.now)
            if cached is not None:
                return cached
        if runs is None:
            run = self._run(compiled, reader, subject, context)
        else:
            context_key = json.dumps(context, sort_keys=True, default=str) if context else ""
            run = runs.get((subject, context_key)) or runs.setdefault(
                (subject, context_key), self._run(compiled, reader, subject, context)
            )
        value = run.check(resource.type, resource.id, permission, 0)
        if cacheable:
            self.cache.put(key, value, run.valid_until)
        return value

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
            revision,
            self.tokens.token(revision),
            missing_of(value),
            explanation,
        )

    def check_many(
        self, requests: Sequence[CheckRequest], *, consistency: Consistency | None = None
    ) -> list[CheckResult]:
        """Answer many checks at one revision, sharing work between checks of one subject."""
        reader, compiled = self._snapshot(consistency)
        plan, revision = compiled.plan, reader.revision
        runs: dict[tuple[SubjectRef, str], CheckRun] = {}
        results: list[CheckResult] = []
        for i, request in enumerate(requests):
            try:
                self._validate(plan, request.resource.type, request.permission, request.subject)
            except InvalidRequestError as e:
                raise InvalidRequestError(e.message, field=f"items[{i}].{e.field}") from e
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
                self._result(request.resource, request.permission, request.subject, value, revision)
            )
        return results

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
    ) -> ObjectsPage:
        """Resources of a type on which the subject holds the permission, in id order, paged."""
        if limit is not None and limit < 1:
            raise InvalidRequestError("limit must be positive", field="limit")
        after: str | None = None
        if cursor:
            pinned, after = _list_position(self.tokens, cursor, resource_type, permission, subject)
            consistency = Consistency.at_exact_snapshot(self.tokens.token(pinned))
        reader, compiled = self._snapshot(consistency)
        plan, revision = compiled.plan, reader.revision
        self._validate(plan, resource_type, permission, subject)
        candidates = reachable_resources(
            reader, compiled.reverse, subject, resource_type, permission
        )
        run = self._run(compiled, reader, subject, context)
        found: list[FoundObject] = []
        next_cursor: str | None = None
        for resource_id in candidates.ascending(after):
            value = settled(run.check(resource_type, resource_id, permission, 0))
            if value is False:
                continue
            missing = missing_of(value)
            found.append(FoundObject(resource_id, bool(missing), missing))
            if limit is not None and len(found) >= limit:
                next_cursor = self.tokens.cursor(
                    revision, (resource_type, permission, str(subject), resource_id)
                )
                break
        return ObjectsPage(tuple(found), revision, self.tokens.token(revision), next_cursor)

    def list_subjects(
        self,
        resource: ObjectRef,
        permission: str,
        subject_type: str,
        subject_relation: str | None = None,
        *,
        context: Mapping[str, Any] | None = None,
        consistency: Consistency | None = None,
    ) -> SubjectsResult:
        """Subjects of a type that hold the permission on the resource; wildcards as such."""
        reader, compiled = self._snapshot(consistency)
        plan, revision = compiled.plan, reader.revision
        self._validate(
            plan, resource.type, permission, SubjectRef(subject_type, "x", subject_relation)
        )
        candidates = candidate_subjects(
            plan,
            reader,
            resource.type,
            resource.id,
            permission,
            subject_type,
            subject_relation,
            self.max_subject_visits,
        )
        found = holding_subjects(
            candidates,
            lambda subject: self._run(compiled, reader, subject, context),
            resource.type,
            resource.id,
            permission,
            subject_type,
            subject_relation,
        )
        return SubjectsResult(tuple(found), revision, self.tokens.token(revision))

    def expand(
        self, resource: ObjectRef, permission: str, *, consistency: Consistency | None = None
    ) -> ExpandResult:
        """The userset tree of ``resource#permission``."""
        reader, compiled = self._snapshot(consistency)
        plan, revision = compiled.plan, reader.revision
        self._validate(plan, resource.type, permission, None)
        tree = expand(plan.schema, reader, resource, permission, self.max_depth)
        return ExpandResult(tree, revision, self.tokens.token(revision))


def _list_position(
    tokens: TokenCodec, cursor: str, resource_type: str, permission: str, subject: SubjectRef
) -> tuple[Revision, str]:
    """The revision a ListObjects cursor pins and the resource id it stopped after."""
    revision, position = tokens.cursor_state(cursor)
    if len(position) != 4:
        raise InvalidRequestError("malformed cursor", field="cursor")
    *request, after = position
    if tuple(request) != (resource_type, permission, str(subject)):
        raise InvalidRequestError("the cursor belongs to another request", field="cursor")
    return revision, after
