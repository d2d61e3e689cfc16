"""Shorthand the store contract tests share: relationships and batches from text, whole reads."""

from __future__ import annotations

from policyd.filters import RelationshipFilter
from policyd.relationship import Operation, Relationship, RelationshipUpdate, parse_relationship
from policyd.store.base import Store

DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
AT_URI = f"at://{DID}/app.bsky.feed.post/3k44dxzlmd52a"


def rel(text: str) -> Relationship:
    """``document:1#viewer@user:alice`` (with optional caveat and expiry) as a Relationship."""
    return parse_relationship(text)


def _updates(operation: Operation, *texts: str) -> list[RelationshipUpdate]:
    return [RelationshipUpdate(operation, rel(t)) for t in texts]


def create(*texts: str) -> list[RelationshipUpdate]:
    """A batch creating each relationship."""
    return _updates(Operation.CREATE, *texts)


def touch(*texts: str) -> list[RelationshipUpdate]:
    """A batch touching each relationship."""
    return _updates(Operation.TOUCH, *texts)


def delete(*texts: str) -> list[RelationshipUpdate]:
    """A batch deleting each relationship."""
    return _updates(Operation.DELETE, *texts)


def everything(store: Store, revision: int | None = None) -> list[str]:
    """Every live relationship at ``revision`` (default head) as text, in key order."""
    page = store.snapshot(revision).read(RelationshipFilter(), limit=10_000)
    assert page.cursor is None
    return [str(r) for r in page.relationships]


def exists(store: Store, text: str, revision: int | None = None) -> bool:
    """Whether the relationship is live at ``revision`` (default head)."""
    return store.snapshot(revision).get(rel(text).key) is not None
