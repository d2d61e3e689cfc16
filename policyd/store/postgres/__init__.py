"""Package store.postgres holds PostgresStore: the scale-out backend, shared by many replicas."""

from policyd.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
