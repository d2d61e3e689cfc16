"""Package audience streams WatchPermission: who holds a permission, then each change to that.

One stream is one ``AudienceTracker`` (engine/audience.py) fed by the
process's ``ChangeFeed``: the first listing is streamed a slice at a time, as
ListSubjects is; each later revision's change is computed from its events in
a read thread and sent as one response (or several, when longer than a page).
A response with ``complete`` set closes a consistent state, so its token is
where a client resumes; after a batch of revisions that changed nobody, one
empty complete response carries the token forward, so a resuming client does
not re-read revisions it was already told about.

A stream that falls behind the garbage-collection window (it was resumed
from an old token, or its client read too slowly) cannot compute a change
from a revision the store no longer has: it restates the audience at the
store's head and follows on from there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from itertools import groupby

from policyd.api.convert import audience_entry_to_proto, token_to_proto
from policyd.api.gen import permission_service_pb2 as pb
from policyd.api.scheduling import Threads, sliced
from policyd.api.watch import ChangeFeed
from policyd.consistency import Consistency
from policyd.decisions import AudienceChange, FoundSubject
from policyd.engine import Engine
from policyd.engine.audience import AudienceTracker
from policyd.engine.deadline import Deadline
from policyd.errors import RevisionUnavailableError
from policyd.store.base import Revision


class AudienceStream:
    """The responses of one WatchPermission call, from ``start`` on."""

    def __init__(
        self,
        engine: Engine,
        tracker: AudienceTracker,
        feed: ChangeFeed,
        reads: Threads,
        page_size: int,
        deadline: Deadline,
    ) -> None:
        self._engine = engine
        self._tracker = tracker
        self._feed = feed
        self._reads = reads
        self._page = page_size
        self._deadline = deadline
        self._at: Revision = 0
        """The revision of the last complete response sent: where the stream stands."""

    async def responses(
        self, start: Revision, *, listed: bool
    ) -> AsyncIterator[pb.WatchPermissionResponse]:
        """The listing at ``start`` (unless the client ``listed`` it already), then the changes."""
        self._at = start
        if not listed:
            async for response in self._listing(start):
                yield response
        while True:
            try:
                async for response in self._changes(self._at):
                    yield response
                return
            except RevisionUnavailableError:
                head = await self._reads.run(
                    self._engine.revision_for, Consistency.fully_consistent()
                )
                async for response in self._listing(head):
                    yield response

    async def _listing(self, revision: Revision) -> AsyncIterator[pb.WatchPermissionResponse]:
        """The whole audience at ``revision``, streamed as a restatement a page at a time."""
        watched = self._tracker.watched
        token = self._engine.tokens.token(revision)
        listing = self._engine.stream_subjects(
            watched.resource,
            watched.permission,
            watched.subject_type,
            watched.subject_relation,
            consistency=Consistency.at_exact_snapshot(token),
        )
        page: list[FoundSubject] = []
        first = True
        async for found in sliced(listing.steps, self._deadline):
            page.append(found)
            if len(page) == self._page:
                yield _response(token, page, reset=first, complete=False)
                page, first = [], False
        self._at = revision
        yield _response(token, page, reset=first, complete=True)

    async def _changes(self, after: Revision) -> AsyncIterator[pb.WatchPermissionResponse]:
        """Each revision's change after ``after``, and a checkpoint after a quiet batch."""
        async for events in self._feed.changes(after):
            for revision, group in groupby(events, key=lambda e: e.revision):
                change = await self._reads.run(self._tracker.change, after, revision, list(group))
                after = revision
                if change.reset or change.subjects:
                    self._at = revision
                    for response in self._pages(change):
                        yield response
            if self._at != after:
                self._at = after
                yield _response(self._engine.tokens.token(after), (), reset=False, complete=True)

    def _pages(self, change: AudienceChange) -> list[pb.WatchPermissionResponse]:
        """One change as responses of at most a page of subjects each, the last complete."""
        subjects = change.subjects
        starts = range(0, max(len(subjects), 1), self._page)
        return [
            _response(
                change.token,
                subjects[i : i + self._page],
                reset=change.reset and i == 0,
                complete=i == starts[-1],
            )
            for i in starts
        ]


def _response(
    token: str, subjects: Sequence[FoundSubject], *, reset: bool, complete: bool
) -> pb.WatchPermissionResponse:
    return pb.WatchPermissionResponse(
        consistency_token=token_to_proto(token),
        reset=reset,
        subjects=[audience_entry_to_proto(found) for found in subjects],
        complete=complete,
    )
