"""The schema analyses the type checker and the engine build on, on small policies."""

from __future__ import annotations

import pytest

from policyd.dsl.compiler import compile_policy
from policyd.schema.analysis import can_grant, referenced_relations, wildcard_source
from policyd.schema.ir import Schema

POLICY = """
definition user {}

definition group {
    relation member: user | group#member
    relation everyone: user:*
    relation nested_everyone: group#everyone
}

definition doc {
    relation owner: user
    relation viewer: user | group#member
    relation parent: doc
    permission edit = owner
    permission view = edit + viewer + parent->view
    permission nothing = nil
    permission owner_and_nothing = owner & nothing
    permission owner_minus_viewer = owner - viewer
}
"""


@pytest.fixture(scope="module")
def schema() -> Schema:
    return compile_policy(POLICY).schema


@pytest.mark.parametrize(
    ("type_name", "relation", "expected"),
    [
        ("group", "everyone", "group#everyone"),
        ("group", "nested_everyone", "group#everyone"),
        ("group", "member", None),
        ("doc", "viewer", None),
    ],
)
def test_wildcard_source_names_the_relation_that_holds_it(
    schema: Schema, type_name: str, relation: str, expected: str | None
) -> None:
    assert wildcard_source(schema, type_name, relation) == expected


@pytest.mark.parametrize(
    ("permission", "expected"),
    [
        ("edit", True),
        ("view", True),
        ("nothing", False),
        ("owner_and_nothing", False),
        ("owner_minus_viewer", True),
    ],
)
def test_can_grant_sees_through_nil(schema: Schema, permission: str, expected: bool) -> None:
    doc = schema.definitions["doc"]
    assert can_grant(schema, doc, doc.permissions[permission].rewrite) is expected


def test_referenced_relations_follow_permissions_arrows_and_usersets(schema: Schema) -> None:
    used = referenced_relations(schema)
    assert {("doc", "owner"), ("doc", "viewer"), ("doc", "parent"), ("doc", "view")} <= used
    assert ("group", "member") in used  # doc#viewer allows group#member
    assert ("group", "everyone") in used  # group#nested_everyone allows group#everyone
    assert ("doc", "nothing") in used
