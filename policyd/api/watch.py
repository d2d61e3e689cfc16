"""Package watch follows the store's change log once per process and feeds every Watch stream.

A thousand idle Watch streams must cost neither threads nor store reads, so
one ``ChangeFeed`` task polls the change log (and is poked after this
process's own writes) and keeps the recent events in memory; each stream is
a coroutine that waits for the feed to move past what it has sent. A stream
that starts further back than the feed remembers reads the store itself
until it catches up. While no stream is open the feed only follows the head
and reads no events: a revision is never split, so reading one of a
million-relationship import would hold a million events for nobody (the
server's peak RSS through such an import doubled; ``policyd bench --sections
grpc-writes``).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections.abc import AsyncIterator, Sequence
from itertools import groupby

from policyd.api.scheduling import Threads
from policyd.errors import RevisionUnavailableError
from policyd.store.base import ChangeEvent, Revision, Store

MEMORY = 10_000
"""About how many recent change events the feed keeps for streams to catch up from."""


class ChangeFeed:
    """The change log of one store, followed by one task and shared by every stream."""

    def __init__(self, store: Store, threads: Threads, poll_seconds: float, page: int) -> None:
        self._store = store
        self._threads = threads
        self._poll = poll_seconds
        self._page = page
        self._revisions: list[Revision] = []
        self._batches: list[list[ChangeEvent]] = []
        """The remembered events, one batch per revision, ``_revisions`` ascending."""
        self._remembered_count = 0
        self.head: Revision = store.head_revision()
        """The newest revision the feed has read the changes up to."""
        self._floor: Revision = self.head
        """The events of every revision above this one are in memory (up to ``head``)."""
        self._moved = asyncio.Event()
        self._poked = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._streams = 0
        """Streams in ``changes`` now; with none the feed reads no events."""

    def start(self) -> None:
        """Start following (call on the loop)."""
        self._task = asyncio.get_running_loop().create_task(self._follow(), name="change-feed")

    async def close(self) -> None:
        """Stop following and end every stream."""
        self._closed = True
        self._moved.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def poke(self) -> None:
        """Look at the change log now (this process just wrote)."""
        self._poked.set()

    async def _follow(self) -> None:
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), self._poll)
            self._poked.clear()
            # The head is read before the change log, so every event up to it is in the read
            # that follows (unless the page ends first), and memory never claims a revision
            # whose events it has not seen.
            head = await self._threads.run(self._store.head_revision)
            if head <= self.head:
                continue
            if not self._streams:  # nobody to keep events for: follow the head only
                self._forget_up_to(head)
                continue
            try:
                events = await self._threads.run(self._store.changes, self.head, self._page)
            except RevisionUnavailableError:
                self._forget_up_to(head)
                events = []
            if events:
                self._remember(events)
            if len(events) >= self._page:
                self._poked.set()  # a full page: more may wait
            else:
                self.head = max(self.head, head)
            moved, self._moved = self._moved, asyncio.Event()
            moved.set()

    async def changes(self, after: Revision) -> AsyncIterator[Sequence[ChangeEvent]]:
        """The events after ``after``, a batch at a time, until the feed closes.

        Batches hold whole revisions: a revision's events are never split.
        """
        self._streams += 1
        try:
            while not self._closed:
                moved = self._moved
                batch = self._remembered(after)
                if batch is None:
                    batch = await self._threads.run(self._store.changes, after, self._page)
                if batch:
                    yield batch
                    after = batch[-1].revision
                    continue
                # Nothing up to the feed's head: revisions without events (a TOUCH that
                # changed nothing) are passed over, and the stream waits for the feed.
                after = max(after, self.head)
                if moved is self._moved:
                    await moved.wait()
        finally:
            self._streams -= 1

    def _remember(self, events: Sequence[ChangeEvent]) -> None:
        """Keep new events (whole revisions), forgetting the oldest revisions past MEMORY."""
        for revision, group in groupby(events, key=lambda e: e.revision):
            self._revisions.append(revision)
            batch = list(group)
            self._batches.append(batch)
            self._remembered_count += len(batch)
        self.head = events[-1].revision
        if self._remembered_count > MEMORY:
            drop = 0
            while self._remembered_count > MEMORY // 2:
                self._remembered_count -= len(self._batches[drop])
                drop += 1
            self._floor = self._revisions[drop - 1]
            del self._revisions[:drop], self._batches[:drop]

    def _forget_up_to(self, head: Revision) -> None:
        """Remember nothing behind ``head``: no stream is open, or GC passed the feed.

        A stream still behind then reads the store itself, which answers it as
        it would any reader from a collected revision (Watch fails with
        OUT_OF_RANGE; WatchPermission restates its audience).
        """
        self._revisions.clear()
        self._batches.clear()
        self._remembered_count = 0
        self.head = self._floor = head

    def _remembered(self, after: Revision) -> list[ChangeEvent] | None:
        """The remembered events after ``after``, or None when memory does not reach back."""
        if after < self._floor:
            return None
        start = bisect.bisect_right(self._revisions, after)
        return [event for batch in self._batches[start:] for event in batch]
