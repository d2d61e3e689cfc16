"""Package revisions picks the revision each request reads at, and the reader that serves it.

Consistency (DESIGN.md §3) is a choice of revision: ``minimize_latency``
reads the head as this process last learned it (at most ``head_staleness``
seconds old), ``fully_consistent`` learns the head first, and a token's
``at_least_as_fresh`` or ``at_exact_snapshot`` names a lower bound or an
exact revision. With an in-memory index, learning the head means applying
the store's change log to the index; the index then serves every request it
is fresh enough for, and exact older snapshots read the store.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from policyd.consistency import Consistency, ConsistencyMode
from policyd.engine.index import ImportedRows, RelationshipIndex
from policyd.engine.reader import GraphReader, IndexReader, StoreReader
from policyd.errors import RevisionUnavailableError
from policyd.store.base import Revision, Store
from policyd.tokens import TokenCodec

DEFAULT_HEAD_STALENESS = 0.1

Advanced = Callable[[Revision, Revision, bool], None]
"""Told (known, upto, policy changed) when the index applied the change log (known, upto]."""


class Revisions:
    """The head this process knows, and the revision and reader for each request."""

    def __init__(
        self,
        store: Store,
        tokens: TokenCodec,
        index: RelationshipIndex | None,
        head: Revision,
        advanced: Advanced,
        *,
        head_staleness: float,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._tokens = tokens
        self._index = index
        self._head = head
        self._advanced = advanced
        self._staleness = head_staleness
        self._clock = clock
        self._lock = threading.Lock()
        self._head_read_at = clock()

    def refresh(self) -> Revision:
        """Learn the store's head; with an index, apply the change log up to it."""
        with self._lock:
            index = self._index
            if index is None:
                self._head = max(self._head, self._store.head_revision())
            else:
                before = index.revision
                policy_changed = index.catch_up(self._store)
                self._head = max(self._head, index.revision)
                if index.revision > before:
                    self._advanced(before, index.revision, policy_changed)
            self._head_read_at = self._clock()
            return self._head

    def for_request(self, consistency: Consistency | None) -> Revision:
        """The revision a request with this consistency reads at (at least; see ``reader``).

        Raises:
            InvalidRequestError: a malformed consistency or token.
            RevisionUnavailableError: a token from another store, or from its future.
        """
        if consistency is None or consistency.mode is ConsistencyMode.MINIMIZE_LATENCY:
            if self._clock() - self._head_read_at > self._staleness:
                return self.refresh()
            return self._head
        consistency.validate()
        if consistency.mode is ConsistencyMode.FULLY_CONSISTENT:
            return self.refresh()
        assert consistency.token is not None
        wanted = self._tokens.revision(consistency.token)
        head = self._head if wanted <= self._head else self.refresh()
        if wanted > head:
            raise RevisionUnavailableError(
                f"the token's revision {wanted} is newer than this store's head {head}; "
                "was the store restored from an older copy?",
                field="consistency.token",
            )
        if consistency.mode is ConsistencyMode.AT_EXACT_SNAPSHOT:
            return wanted
        return head

    def reader(self, consistency: Consistency | None) -> GraphReader:
        """The reader a request uses.

        The index serves any request it is fresh enough for; a newer index
        revision than asked is fine except for an exact snapshot, which then
        reads the store.
        """
        revision = self.for_request(consistency)
        index = self._index
        if index is not None:
            if index.revision < revision:
                self.refresh()
            exact = (
                consistency is not None and consistency.mode is ConsistencyMode.AT_EXACT_SNAPSHOT
            )
            if index.revision == revision or (index.revision > revision and not exact):
                return IndexReader(index)
        return StoreReader(self._store.snapshot(revision))

    def wrote(self, revision: Revision) -> None:
        """After a write through this process, later requests here see it (read your writes)."""
        if revision > self._head:
            if self._index is not None:
                self.refresh()
            self._head = max(self._head, revision)

    def imported(self, rows: ImportedRows, revision: Revision) -> None:
        """After a bulk import: the index takes its rows as they are when nothing came between.

        That skips reading the batch back from the change log (bulk loads run
        about twice as fast; benchmarks, import).
        """
        index = self._index
        if index is not None:
            with self._lock:
                if index.revision == revision - 1:
                    with index.lock:
                        rows.apply(index)
                        index.revision = revision
        self.wrote(revision)
