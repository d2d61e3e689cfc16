"""Package ingest.applier turns a batch of decoded events into one ``apply_records`` call.

Commits of mapped collections become ``RecordChange``s (an update replaces the
record's relationships, a delete leaves it none); a deleted account becomes a
``RepoRemoval``. Everything of a batch, and the position of its last event,
commit in one store transaction: after a crash the stream resumes from the
stored position and nothing is lost or applied twice.

Account events: ``#account`` with ``active`` false and status ``deleted``
removes every relationship the account's records made. Other inactive states
(``deactivated``, ``takendown``, ``suspended``, ``desynchronized``,
``throttled``) keep them: the repo still exists and comes back as it was when
the account is active again, and the relay sends no new commits for it in the
meantime. ``#identity`` events (a handle or DID document change) change no
relationship, since relationships name DIDs, not handles; they only move the
position.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from policyd.ingest.frames import (
    AccountEvent,
    CommitEvent,
    Event,
    IdentityEvent,
    OtherEvent,
    RepoContents,
)
from policyd.ingest.mappings import Mapping
from policyd.ingest.metrics import IngestMetrics
from policyd.store.base import Store
from policyd.store.records import AppliedRecords, Change, RecordChange, RepoRemoval
from policyd.store.validation import Validator

log = logging.getLogger("policyd.ingest")


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one batch did: the store's answer, and the records that mapped to nothing valid."""

    applied: AppliedRecords
    events: int
    invalid: int


class Applier:
    """Applies batches of events from one source to the store, with the mapping given."""

    def __init__(
        self, store: Store, mapping: Mapping, source: str, metrics: IngestMetrics | None = None
    ) -> None:
        policy = store.snapshot().read_policy()
        schema = policy.schema if policy is not None else None
        mapping.validate(schema)
        self.store = store
        self.mapping = mapping
        self.source = source
        self.metrics = metrics
        self._validator = Validator(schema)
        self._collections = mapping.collections

    @property
    def position(self) -> int | None:
        """The stored position of this source: where a restart resumes."""
        return self.store.ingest_position(self.source)

    def apply(self, events: Sequence[Event]) -> BatchResult:
        """Apply the events' changes and their last position in one transaction."""
        changes: list[Change] = []
        invalid = 0
        position: int | None = None
        for event in events:
            if event.position is not None:
                position = event.position if position is None else max(position, event.position)
            if isinstance(event, CommitEvent):
                invalid += self._commit(event, changes)
            elif isinstance(event, AccountEvent):
                if not event.active and event.status == "deleted":
                    changes.append(RepoRemoval(event.did))
            elif isinstance(event, OtherEvent):
                log.info("ingest: %s event %s", event.kind, event.detail)
            else:
                assert isinstance(event, IdentityEvent)
        started = time.perf_counter()
        applied = self.store.apply_records(self.source, changes, position)
        if self.metrics is not None:
            self.metrics.batch(events, applied, invalid, time.perf_counter() - started, position)
        return BatchResult(applied, len(events), invalid)

    def _commit(self, event: CommitEvent, changes: list[Change]) -> int:
        invalid = 0
        for op in event.ops:
            if op.collection not in self._collections:
                continue
            uri = f"at://{event.repo}/{op.collection}/{op.rkey}"
            if op.action == "delete" or op.record is None:
                changes.append(RecordChange(uri, event.rev, (), deleted=True))
                continue
            rels, skipped = self.mapping.relationships(
                event.repo, op.collection, op.rkey, op.record, self._validator
            )
            if skipped:
                invalid += 1
                log.debug("ingest: %s maps to %d invalid relationship(s)", uri, skipped)
            changes.append(RecordChange(uri, event.rev, rels))
        return invalid

    def load_repo(self, repo: RepoContents) -> BatchResult:
        """Make the store hold exactly the repo's mapped records as of its revision (backfill).

        Records the store has from this repo at or below that revision and the CAR
        lacks are removed; newer ones (applied from the stream already) stay.
        """
        changes: list[Change] = []
        invalid = 0
        keep = []
        for collection, rkey, record in repo.records:
            uri = f"at://{repo.did}/{collection}/{rkey}"
            keep.append(uri)
            rels, skipped = self.mapping.relationships(
                repo.did, collection, rkey, record, self._validator
            )
            invalid += 1 if skipped else 0
            changes.append(RecordChange(uri, repo.rev, rels))
        removal = RepoRemoval(repo.did, repo.rev, frozenset(keep))
        applied = self.store.apply_records(self.source, [removal, *changes], None)
        return BatchResult(applied, len(changes), invalid)
