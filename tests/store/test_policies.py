"""Policies: versions, reads at a revision, and changes refused when they would orphan data.

Part of the Store contract: every backend must pass every test here, identically.
"""

from __future__ import annotations

import pytest

from policyd.errors import (
    InvalidRelationshipError,
    PolicyChangeRefusedError,
)
from policyd.filters import RelationshipFilter
from policyd.schema.ir import AllowedSubject, CaveatType
from policyd.store.base import Store
from tests.store.schemas import (
    POLICY_TEXT,
    base_schema,
    with_allowed,
    with_caveat_parameters,
    without_caveat,
    without_relation,
    without_type,
)
from tests.store.shorthand import rel, touch


def test_writing_before_any_policy_is_refused(bare_store: Store) -> None:
    with pytest.raises(InvalidRelationshipError, match="no policy") as info:
        bare_store.write(touch("document:1#viewer@user:alice"))
    assert info.value.code == "invalid-relationship"
    with pytest.raises(InvalidRelationshipError, match="no policy"):
        bare_store.import_relationships([rel("document:1#viewer@user:alice")])
    assert bare_store.head_revision() == 0


def test_policy_round_trip_and_versions(bare_store: Store) -> None:
    r1 = bare_store.write_policy("first", base_schema())
    r2 = bare_store.write_policy("second", without_relation(base_schema(), "document", "temp"))
    assert r2 > r1
    first = bare_store.snapshot(r1).read_policy()
    assert first is not None
    text, schema, revision = first
    assert (text, schema, revision) == ("first", base_schema(), r1)
    latest = bare_store.snapshot().read_policy()
    assert latest is not None
    assert latest.text == "second"
    assert "temp" not in latest.schema.definitions["document"].relations


def test_policy_change_that_orphans_relationships_is_refused(store: Store) -> None:
    store.write(
        touch(
            "document:1#temp@user:a[expiration:2999-01-01T00:00:00Z]",
            "document:1#viewer@user:*",
            "document:2#viewer@user:*",
            'document:1#editor@user:b[only_weekdays:{"day":"mon"}]',
            "group:g#member@user:c",
        )
    )
    schema = base_schema()
    cases = [
        (without_relation(schema, "document", "temp"), "document#temp@user with expiration"),
        (without_type(schema, "group"), "group#member@user"),
        (
            with_allowed(schema, "document", "viewer", AllowedSubject("user")),
            "2 relationships document#viewer@user:*",
        ),
        (
            with_allowed(schema, "document", "editor", AllowedSubject("user")),
            "document#editor@user with only_weekdays",
        ),
        (
            with_allowed(schema, "document", "temp", AllowedSubject("user")),
            "does not allow an expiration",
        ),
    ]
    head = store.head_revision()
    for new_schema, blocker in cases:
        with pytest.raises(PolicyChangeRefusedError) as info:
            store.write_policy("changed", new_schema)
        assert info.value.code == "policy-change-refused"
        assert any(blocker in b for b in info.value.blockers), info.value.blockers
    assert store.head_revision() == head
    policy = store.snapshot().read_policy()
    assert policy is not None
    assert policy.text == POLICY_TEXT
    store.delete(RelationshipFilter("document", relation="temp"))
    store.write_policy("changed", without_relation(schema, "document", "temp"))
    with pytest.raises(InvalidRelationshipError):
        store.write(touch("document:1#temp@user:a[expiration:2999-01-01T00:00:00Z]"))


def test_policy_change_that_drops_or_retypes_a_stored_context_parameter_is_refused(
    store: Store,
) -> None:
    # A stored ``expires`` must keep meaning ``expires``: renaming it would drop the stored
    # value, and a request could then supply its own (``until=2099``) and be granted.
    store.write(
        touch(
            'document:1#editor@user:a[unexpired:{"expires":"2020-01-01T00:00:00Z"}]',
            'document:2#editor@user:b[unexpired:{"expires":"2021-01-01T00:00:00Z","tags":{}}]',
            'document:3#editor@user:c[only_weekdays:{"day":"mon"}]',
        )
    )
    schema = base_schema()
    head = store.head_revision()
    refused = [
        (
            with_caveat_parameters(
                schema, "unexpired", ("now", "timestamp"), ("until", "timestamp")
            ),
            [
                "2 relationships with caveat unexpired set parameter 'expires' in their context, "
                "which the new policy's unexpired does not declare",
                "1 relationship with caveat unexpired sets parameter 'tags' in its context",
            ],
        ),
        (
            with_caveat_parameters(
                schema, "unexpired", ("now", "timestamp"), ("expires", "int"), ("tags", "any")
            ),
            [
                "2 relationships with caveat unexpired set parameter 'expires' in their context, "
                "which the new policy retypes from timestamp to int",
                "1 relationship with caveat unexpired sets parameter 'tags' in its context, "
                "which the new policy retypes from map<any> to any",
            ],
        ),
        (without_caveat(schema, "unexpired"), ["the policy defines no caveat 'unexpired'"]),
    ]
    for new_schema, blockers in refused:
        with pytest.raises(PolicyChangeRefusedError) as info:
            store.write_policy("changed", new_schema)
        for blocker in blockers:
            assert any(blocker in b for b in info.value.blockers), info.value.blockers
    assert store.head_revision() == head
    # Parameters no stored context carries may change, and new ones may be added.
    store.write_policy(
        "changed",
        with_caveat_parameters(
            schema,
            "unexpired",
            ("now", "int"),
            ("expires", "timestamp"),
            ("tags", CaveatType("map", (CaveatType("any"),))),
            ("grace", "duration"),
        ),
    )
