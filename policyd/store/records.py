"""Package store.records holds the values and the plan of ``RecordSink.apply_records``.

Ingestion (``policyd.ingest``) turns atproto records into relationships. To
delete exactly what a record created, the store keeps, beside the
relationships, one row per record (its URI, the repo revision that last
changed it, and whether it still exists) and one link per relationship the
record maps to. A relationship stays live while at least one link names it,
so two follow records of the same pair (the network has them) keep the
relationship until both are deleted.

A change carries the repo revision (``rev``, a TID that grows with every
commit of one repo). A change whose rev is not above the record's stored rev
is stale: a duplicate, or an older event delivered late. It changes nothing,
which makes every event idempotent and out-of-order delivery harmless. A
deleted record keeps its row (a tombstone with its rev) so that a late create
cannot bring it back.

``plan`` is the pure part both kinds of backend share: given the stored
state of the records a batch touches, it folds the changes in order and says
which record rows to write and which relationship keys to look at again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TypeAlias

from policyd.relationship import Relationship, RelationshipKey


@dataclass(frozen=True, slots=True)
class RecordChange:
    """A record created, updated or deleted: what it maps to now (nothing once deleted).

    ``uri`` is the record's AT-URI, ``rev`` the revision of the commit that changed
    it; ``relationships`` are plain (no caveat, no expiry) and already validated.
    """

    uri: str
    rev: str
    relationships: tuple[Relationship, ...] = ()
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class RepoRemoval:
    """A repo's records are gone: their links go, their rows stay (with their revs).

    With ``rev`` None (the account was deleted) every record goes. With ``rev``
    (a backfill at that repo revision) only records stored at or below it that
    ``keep`` lacks go: the repo no longer holds them, and nothing newer said so.
    """

    did: str
    rev: str | None = None
    keep: frozenset[str] = frozenset()

    @property
    def prefix(self) -> str:
        """The AT-URI prefix of the repo's records."""
        return f"at://{self.did}/"


Change: TypeAlias = RecordChange | RepoRemoval


class AppliedRecords(NamedTuple):
    """What one ``apply_records`` call did: the revision it wrote and its change counts."""

    revision: int
    applied: int
    stale: int


@dataclass(slots=True)
class RecordState:
    """A record as stored: the rev that last changed it, whether it exists, its links."""

    rev: str
    live: bool
    keys: frozenset[RelationshipKey] = field(default_factory=frozenset)


@dataclass(slots=True)
class RecordPlan:
    """The outcome of ``plan``: record rows to write, keys to settle, and counts."""

    records: dict[str, RecordState]
    """The new state of each record the batch changed (links replaced wholesale)."""
    keys: set[RelationshipKey]
    """Relationship keys whose links changed: live afterwards exactly when a link names them."""
    linked: set[RelationshipKey]
    """Those of ``keys`` a record of this batch links at its end: live without asking."""
    relationships: dict[RelationshipKey, Relationship]
    """The relationship to write for each newly linked key."""
    applied: int = 0
    stale: int = 0


def repo_range(prefix: str) -> tuple[str, str]:
    """Bounds ``lo <= uri < hi`` of the URIs under ``prefix`` (ending in '/'), for an index scan.

    '0' follows '/' in code-point order, so no LIKE (and no collation surprise) is needed.
    """
    return prefix, prefix[:-1] + "0"


def plan(changes: Sequence[Change], stored: Mapping[str, RecordState]) -> RecordPlan:
    """Fold ``changes`` in order over ``stored`` (every record they touch, repos included).

    ``stored`` must hold each changed URI that exists in the store, and for a
    ``RepoRemoval`` every record under its prefix.
    """
    current: dict[str, RecordState] = dict(stored)
    result = RecordPlan({}, set(), set(), {})
    for change in changes:
        if isinstance(change, RepoRemoval):
            prefix = change.prefix
            for uri, state in current.items():
                if (
                    uri.startswith(prefix)
                    and (state.live or state.keys)
                    and (change.rev is None or state.rev <= change.rev)
                    and uri not in change.keep
                ):
                    result.keys.update(state.keys)
                    gone = RecordState(state.rev, False)
                    current[uri] = result.records[uri] = gone
            result.applied += 1
            continue
        before = current.get(change.uri)
        if before is not None and change.rev <= before.rev:
            result.stale += 1
            continue
        keys = frozenset(r.key for r in change.relationships)
        old = before.keys if before is not None else frozenset()
        result.keys.update(old ^ keys)
        for rel in change.relationships:
            result.relationships[rel.key] = rel
        after = RecordState(change.rev, not change.deleted, keys)
        current[change.uri] = result.records[change.uri] = after
        result.applied += 1
    for state in result.records.values():
        result.linked.update(state.keys)
    return result


def uris_of(changes: Iterable[Change]) -> tuple[list[str], list[str]]:
    """The record URIs and the repo prefixes a batch touches, each once, in first-seen order."""
    uris: dict[str, None] = {}
    prefixes: dict[str, None] = {}
    for change in changes:
        if isinstance(change, RepoRemoval):
            prefixes[change.prefix] = None
        else:
            uris[change.uri] = None
    return list(uris), list(prefixes)
