"""ChangeFeed: with no stream open it follows the head and reads no events.

A revision is never split, so reading one of a large import would hold all
its events in memory for nobody; a stream opened later reads the store.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from policyd.api.scheduling import Threads
from policyd.api.watch import ChangeFeed
from policyd.engine import Engine
from policyd.relationship import parse_relationship
from policyd.store.base import DEFAULT_CHANGES_LIMIT, ChangeEvent, Revision
from policyd.store.memory import MemoryStore
from tests.api.sample import POLICY


class CountingStore(MemoryStore):
    """A memory store that counts the change-log reads of the feed's threads."""

    reads = 0

    def changes(
        self, after: Revision, limit: int = DEFAULT_CHANGES_LIMIT, upto: Revision | None = None
    ) -> list[ChangeEvent]:
        if threading.current_thread().name.startswith("feed-test"):
            self.reads += 1
        return super().changes(after, limit, upto)


def test_a_feed_without_streams_reads_no_events_and_a_later_stream_reads_the_store() -> None:
    store = CountingStore()
    engine = Engine(store)
    engine.write_policy(POLICY)
    start = store.head_revision()
    members = [parse_relationship(f"space:big#member@account:did:plc:m{i}") for i in range(50)]

    async def run() -> Sequence[ChangeEvent]:
        threads = Threads(1, "feed-test")
        feed = ChangeFeed(store, threads, poll_seconds=0.01, page=1000)
        feed.start()
        try:
            engine.import_relationships(members)
            head = store.head_revision()
            feed.poke()
            while feed.head < head:
                await asyncio.sleep(0.01)
            assert store.reads == 0
            stream = feed.changes(start)
            return await anext(stream)
        finally:
            await feed.close()
            threads.close()

    events = asyncio.run(run())
    assert store.reads == 1  # the stream read the import's revision from the store
    assert {e.relationship for e in events} == set(members)
