"""Package revisions picks the revision each request reads at, and the reader that serves it.

Consistency (DESIGN.md §3) is a choice of revision: ``minimize_latency``
reads the newest revision this process knows, ``fully_consistent`` the
store's head, and a token's ``at_least_as_fresh`` or ``at_exact_snapshot``
names a lower bound or an exact revision. With an in-memory index, knowing a
revision means having applied the store's change log up to it.

Who applies it. Embedded (``Engine`` alone), a request that finds the head
older than ``head_staleness`` applies the log itself, which keeps a single
process's reads after its own writes simple. A server runs a follower
(``follow``) instead: one thread applies the log in the background, so no
request ever waits for another server's large write to be applied (it took
7–16 s inside a Check after a 200k import elsewhere, measured). A request
that needs a revision the index has not reached yet reads the store at that
revision; ``minimize_latency`` reads the index as it is, unless the follower
has fallen further than ``max_lag`` behind, when it reads the store's head
too. A follower that finds the change log collected past the index (GC)
reloads the index instead of failing every request. With an index snapshot
file (engine/snapshot.py), a reload saves it, and the follower saves it every
``SNAPSHOT_INTERVAL`` seconds while the index moves, so a restart replays
little of the log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from policyd.consistency import Consistency, ConsistencyMode
from policyd.engine.index import ImportedRows, RelationshipIndex
from policyd.engine.reader import GraphReader, IndexReader, StoreReader
from policyd.engine.snapshot import SnapshotFile
from policyd.errors import PolicydError, RevisionUnavailableError
from policyd.store.base import ChangeNotifier, Revision, Store
from policyd.tokens import TokenCodec

LOG = logging.getLogger("policyd.engine")

DEFAULT_HEAD_STALENESS = 0.1
SNAPSHOT_INTERVAL = 600.0
"""Seconds between the follower's saves of a moving index's snapshot."""
DEFAULT_MAX_LAG = 5.0
"""Seconds a follower may go without reaching the store's head before minimize_latency
reads stop trusting the index."""

NOTIFIED_POLL_SECONDS = 1.0
"""How often a follower that is told of commits still polls (a notification sent while its
listening connection was down is lost)."""
LISTEN_SECONDS = 1.0
"""How long one wait for a commit notification lasts (the listener checks for stop between)."""

Advanced = Callable[[Revision, Revision, bool], None]
"""Told (known, upto, reset) when the index applied the change log (known, upto]; ``reset``
when a policy changed or the index was reloaded, which ends everything derived from it."""


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
        snapshots: SnapshotFile | None = None,
    ) -> None:
        self._store = store
        self._snapshots = snapshots
        self._tokens = tokens
        self._index = index
        self._head = head
        self._advanced = advanced
        self._staleness = head_staleness
        self._clock = clock
        self._lock = threading.Lock()
        self._head_read_at = clock()
        self._follower: _Follower | None = None
        self.healthy = True
        """False while the follower cannot reach the store."""

    # ---- applying the change log -------------------------------------------------------------

    def refresh(self) -> Revision:
        """Learn the store's head; with an index, apply the change log up to it.

        An index behind collected history (the log no longer reaches back to
        it) is reloaded at the head instead.
        """
        try:
            return self._apply_log()
        except RevisionUnavailableError:
            return self.resync()

    def _apply_log(self) -> Revision:
        with self._lock:
            index = self._index
            if index is None:
                self._head = max(self._head, self._store.head_revision())
            else:
                before = index.revision
                policy_changed = index.catch_up(self._store)
                index.compact_if_changed()
                self._head = max(self._head, index.revision)
                if index.revision > before:
                    self._advanced(before, index.revision, policy_changed)
            self._head_read_at = self._clock()
            return self._head

    def resync(self) -> Revision:
        """Reload the index at the store's head (the change log no longer reaches back to it)."""
        with self._lock:
            index = self._index
            assert index is not None
            before = index.revision
            head = self._store.head_revision()
            index.load(self._store.snapshot(head))
            self._head = max(self._head, head)
            self._head_read_at = self._clock()
            self._advanced(before, head, True)
            LOG.warning("the index was reloaded at revision %d (the log was collected)", head)
        if self._snapshots is not None:
            self._snapshots.save(index)
        return head

    def save_snapshot(self) -> None:
        """Save the index snapshot, if there is a file for it and the index moved since."""
        snapshots, index = self._snapshots, self._index
        if snapshots is not None and index is not None and snapshots.saved != index.revision:
            snapshots.save(index)

    def follow(self, interval: float, max_lag: float = DEFAULT_MAX_LAG) -> None:
        """Apply the change log on a background thread from now on (a server's mode).

        A store that notifies commits (``ChangeNotifier``: PostgreSQL's
        LISTEN/NOTIFY) wakes the follower at once, and ``interval`` polling
        stays as the fallback for a notification lost while reconnecting.
        """
        if self._follower is None and self._index is not None:
            store = self._store
            notifier = store if isinstance(store, ChangeNotifier) else None
            if notifier is not None:
                interval = max(interval, NOTIFIED_POLL_SECONDS)
            self._follower = _Follower(self, interval, max_lag, notifier)
            self._follower.start()

    def stop(self) -> None:
        """Stop following."""
        follower, self._follower = self._follower, None
        if follower is not None:
            follower.stop()

    # ---- choosing revisions and readers --------------------------------------------------------

    def for_request(self, consistency: Consistency | None) -> Revision:
        """The revision a request with this consistency reads at (at least; see ``reader``).

        Raises:
            InvalidRequestError: a malformed consistency or token.
            RevisionUnavailableError: a token from another store, or from its future.
        """
        following = self._follower is not None
        if consistency is None or consistency.mode is ConsistencyMode.MINIMIZE_LATENCY:
            stale = self._clock() - self._head_read_at
            if following:
                assert self._follower is not None
                if stale > self._follower.max_lag:
                    return max(self._head, self._store.head_revision())
                return self._head
            if stale > self._staleness:
                return self.refresh()
            return self._head
        consistency.validate()
        if consistency.mode is ConsistencyMode.FULLY_CONSISTENT:
            return self.store_head() if following else self.refresh()
        assert consistency.token is not None
        wanted = self._tokens.revision(consistency.token)
        head = self._head
        if wanted > head:
            head = self.store_head() if following else self.refresh()
        if wanted > head:
            raise RevisionUnavailableError(
                f"the token's revision {wanted} is newer than this store's head {head}; "
                "was the store restored from an older copy?",
                field="consistency.token",
            )
        if consistency.mode is ConsistencyMode.AT_EXACT_SNAPSHOT:
            return wanted
        return head

    def store_head(self) -> Revision:
        """The store's head, read now; the follower is told to catch up to it."""
        head = max(self._head, self._store.head_revision())
        if self._follower is not None and head > self._head:
            self._follower.poke()
        return head

    def reader(self, consistency: Consistency | None) -> GraphReader:
        """The reader a request uses.

        The index serves any request it is fresh enough for; a newer index
        revision than asked is fine except for an exact snapshot. Otherwise
        the store serves it, at the revision asked.
        """
        revision = self.for_request(consistency)
        index = self._index
        if index is not None:
            if index.revision < revision and self._follower is None:
                self.refresh()
            exact = (
                consistency is not None and consistency.mode is ConsistencyMode.AT_EXACT_SNAPSHOT
            )
            if index.revision == revision or (index.revision > revision and not exact):
                return IndexReader(index)
        return StoreReader(self._store.snapshot(revision))

    def wrote(self, revision: Revision) -> None:
        """After a write through this process, later requests here see it (read your writes).

        The writer's own thread applies the log up to it, so the write is
        acknowledged with the index already showing it.
        """
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
                if index.revision == revision - 1 or self._nothing_between(
                    index.revision, revision
                ):
                    rows.apply(index, revision)
        self.wrote(revision)

    def _nothing_between(self, known: Revision, revision: Revision) -> bool:
        """Whether no revision in (known, revision) changed anything.

        Revisions need not be dense (a PostgreSQL import publishes a revision
        it reserved far above the head), so "nothing came between" is asked of
        the change log rather than read off the numbers.
        """
        return known < revision and not self._store.changes(known, limit=1, upto=revision - 1)

    @property
    def lag(self) -> float:
        """Seconds since the index last reached the store's head (for metrics)."""
        return max(0.0, self._clock() - self._head_read_at)


class _Follower:
    """The thread that applies the change log while the server serves."""

    def __init__(
        self,
        revisions: Revisions,
        interval: float,
        max_lag: float,
        notifier: ChangeNotifier | None = None,
    ) -> None:
        self._revisions = revisions
        self._interval = interval
        self.max_lag = max_lag
        self._notifier = notifier
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="policyd-follower", daemon=True)
        self._listener = threading.Thread(target=self._listen, name="policyd-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if self._notifier is not None:
            self._listener.start()

    def _listen(self) -> None:
        """Poke the follower whenever the store says a revision committed."""
        notifier = self._notifier
        assert notifier is not None
        while not self._stopped.is_set():
            if notifier.wait_for_change(LISTEN_SECONDS):
                self._wake.set()
            elif not self._revisions.healthy:
                self._stopped.wait(self._interval)  # the store is down: do not spin on it

    def poke(self) -> None:
        """Look at the change log now."""
        self._wake.set()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        self._thread.join(10)
        if self._listener.is_alive():
            self._listener.join(LISTEN_SECONDS + 5)

    def _run(self) -> None:
        revisions = self._revisions
        saved_at = time.monotonic()
        while not self._stopped.is_set():
            try:
                revisions.refresh()
            except PolicydError as e:
                if revisions.healthy:
                    LOG.error("the store is unreachable; the index stays at its revision: %s", e)
                revisions.healthy = False
            except Exception:  # a bug must not end the thread: log it, keep following
                LOG.exception("applying the change log failed")
                revisions.healthy = False
            else:
                if not revisions.healthy:
                    LOG.warning("the store is reachable again")
                revisions.healthy = True
                if time.monotonic() - saved_at >= SNAPSHOT_INTERVAL:
                    saved_at = time.monotonic()
                    revisions.save_snapshot()
            self._wake.wait(self._interval)
            self._wake.clear()
