"""Package paging reads a store snapshot a page at a time for the APIs' streaming reads.

ReadRelationships and the exports of both APIs (policyd.v1 and authzed.api.v1)
stream what matches a filter at one revision, resuming after a cursor, up to a
limit; each page is one store read in a thread, so the event loop never waits
on the disk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from policyd.api.scheduling import Threads
from policyd.filters import RelationshipFilter
from policyd.relationship import Relationship
from policyd.store.base import Cursor, Revision, Store


async def read_pages(
    store: Store,
    reads: Threads,
    revision: Revision,
    relationship_filter: RelationshipFilter,
    cursor: Cursor | None,
    limit: int | None,
    page_size: int,
    keep: Callable[[Relationship], bool] | None = None,
) -> AsyncIterator[tuple[Relationship, Cursor]]:
    """The relationships matching the filter and ``keep``, after ``cursor``, at most ``limit``.

    Each comes with the cursor that resumes after it.
    """
    remaining = limit
    snapshot = store.snapshot(revision)
    while True:
        size = page_size if remaining is None else min(page_size, remaining)
        page = await reads.run(snapshot.read, relationship_filter, cursor, size)
        for relationship in page.relationships:
            if keep is not None and not keep(relationship):
                continue
            yield relationship, Cursor(revision, relationship.key)
            if remaining is not None:
                remaining -= 1
                if remaining == 0:
                    return
        if page.cursor is None:
            return
        cursor = page.cursor
