"""A store's life: created empty with a fixed identity, reopened with everything kept.

Part of the Store contract: every backend must pass every test here, identically.
"""

from __future__ import annotations

from policyd.store.base import (
    Store,
)
from policyd.tokens import STORE_IDENTITY_BYTES
from tests.store.backends import StoreFactory
from tests.store.schemas import (
    POLICY_TEXT,
    base_schema,
)
from tests.store.shorthand import everything, touch


def test_empty_store(bare_store: Store) -> None:
    assert bare_store.head_revision() == 0
    assert bare_store.snapshot().read_policy() is None
    assert bare_store.changes(0) == []
    assert everything(bare_store) == []


def test_identity_is_made_with_the_store_and_kept(open_backend: StoreFactory) -> None:
    first = open_backend()
    identity = first.identity
    assert isinstance(identity, bytes)
    assert len(identity) == STORE_IDENTITY_BYTES
    first.write_policy(POLICY_TEXT, base_schema())
    assert first.identity == identity
    assert open_backend().identity == identity  # reopened: the same file, the same schema


def test_reopened_store_keeps_everything(open_backend: StoreFactory, backend: str) -> None:
    first = open_backend()
    first.write_policy(POLICY_TEXT, base_schema())
    revision = first.write(touch('document:1#viewer@user:a[only_weekdays:{"day":"mon"}]'))
    if backend in ("sqlite-file", "postgres"):
        first.close()
    second = open_backend()
    assert second.head_revision() == revision
    policy = second.snapshot().read_policy()
    assert policy is not None
    assert policy.schema == base_schema()
    assert everything(second) == ['document:1#viewer@user:a[only_weekdays:{"day": "mon"}]']
    second.write(touch("document:2#viewer@user:b"))
