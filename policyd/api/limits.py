"""Package limits holds the service's configurable request, result and concurrency limits."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024

HEAVY_METHODS = frozenset(
    {
        "ListObjects",
        "ListSubjects",
        "Expand",
        "ReadRelationships",
        "ExportRelationships",
        "ImportRelationships",
        # authzed.api.v1's names for the same work
        "LookupResources",
        "LookupSubjects",
        "ExpandPermissionTree",
        "ImportBulkRelationships",
        "ExportBulkRelationships",
    }
)
"""Calls that may work for seconds: at most ``max_heavy_calls`` of each run at once."""

STREAM_METHODS = frozenset({"Watch"})
"""Calls that stay open: at most ``max_streams`` of each, costing a coroutine each."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on one request's work and on how many calls of a method run at once.

    Past a concurrency bound a call is refused with RESOURCE_EXHAUSTED rather than
    queued, so a flood of heavy calls or streams cannot take capacity from Checks.
    """

    page_size: int = 1000
    max_batch_size: int = 1000
    max_updates: int = 1000
    watch_poll_seconds: float = 0.05
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_streams: int = 10_000
    """Open Watch streams per worker process."""
    max_heavy_calls: int = 16
    """Concurrent calls of each heavy method (lookups, Expand, reads, import, export)."""
    max_calls: int = 10_000
    """Concurrent calls of any other method."""

    def in_flight(self, method: str) -> int:
        """The concurrency bound of a full method name such as ``/policyd.v1.X/ListObjects``."""
        name = method.rpartition("/")[2]
        if name in STREAM_METHODS:
            return self.max_streams
        if name in HEAVY_METHODS:
            return self.max_heavy_calls
        return self.max_calls
