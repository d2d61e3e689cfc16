"""Package store.sqlite holds SqliteStore: the default backend, one file shared by processes."""

from policyd.store.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
