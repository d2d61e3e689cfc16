"""Explain: the formatted tree names what granted access, or what was tried for a denial."""

from __future__ import annotations

import pytest

from policyd.decisions import Explanation, Permissionship
from policyd.engine import Engine, format_explanation
from tests.engine.queries import MakeEngine, query

POLICY = """
caveat gate(open bool) {
    open
}

definition user {}

definition group {
    relation member: user | group#member
}

definition folder {
    relation parent: folder
    relation viewer: user
    permission view = viewer + parent->view
}

definition doc {
    relation owner: user
    relation viewer: user | group#member | user with gate
    relation banned: user
    relation folder: folder
    relation reviewer: user
    permission view = (owner + viewer + folder->view) - banned
    permission review = viewer & reviewer
}
"""
RELATIONSHIPS = [
    "doc:1#viewer@group:eng#member",
    "group:eng#member@group:core#member",
    "group:core#member@user:alice",
    "doc:1#folder@folder:f",
    "folder:f#parent@folder:root",
    "folder:root#viewer@user:bob",
    "doc:1#owner@user:carol",
    "doc:1#banned@user:carol",
    "doc:1#viewer@user:erin[gate]",
]


def explain(engine: Engine, text: str) -> tuple[Permissionship, list[str]]:
    resource, permission, subject = query(text)
    result = engine.check(resource, permission, subject, explain=True)
    assert result.explanation is not None
    lines = format_explanation(result.explanation).splitlines()
    return result.permissionship, [line.strip() for line in lines]


@pytest.mark.parametrize(
    ("text", "answer", "expected_lines"),
    [
        pytest.param(
            "doc:1#view@user:alice",
            Permissionship.HAS_PERMISSION,
            [
                "✓ doc:1#view",
                "✓ relationship doc:1#viewer@group:eng#member",
                "✓ relationship group:eng#member@group:core#member",
                "✓ relationship group:core#member@user:alice",
                "✗ doc:1#banned",
            ],
            id="grant-through-nested-groups",
        ),
        pytest.param(
            "doc:1#view@user:bob",
            Permissionship.HAS_PERMISSION,
            [
                "✓ relationship doc:1#folder@folder:f",
                "✓ relationship folder:f#parent@folder:root",
                "✓ folder:root#view",
                "✓ relationship folder:root#viewer@user:bob",
            ],
            id="grant-through-arrows",
        ),
        pytest.param(
            "doc:1#view@user:carol",
            Permissionship.NO_PERMISSION,
            [
                "✗ doc:1#view",
                "✓ relationship doc:1#owner@user:carol",
                "✓ doc:1#banned",
                "✓ relationship doc:1#banned@user:carol",
            ],
            id="denial-by-exclusion",
        ),
        pytest.param(
            "doc:1#view@user:dave",
            Permissionship.NO_PERMISSION,
            ["✗ doc:1#view", "✗ doc:1#owner", "✗ doc:1#viewer", "✗ folder:root#viewer"],
            id="denial-lists-branches-tried",
        ),
        pytest.param(
            "doc:1#review@user:alice",
            Permissionship.NO_PERMISSION,
            ["✗ doc:1#review", "✓ doc:1#viewer", "✗ doc:1#reviewer"],
            id="denial-missing-intersection-side",
        ),
        pytest.param(
            "doc:1#view@user:erin",
            Permissionship.CONDITIONAL,
            [
                "? doc:1#view (needs open)",
                "? relationship doc:1#viewer@user:erin[gate] (needs open) — caveat gate needs open",
            ],
            id="conditional-names-the-parameter",
        ),
    ],
)
def test_tree_names_the_steps(
    make_engine: MakeEngine, text: str, answer: Permissionship, expected_lines: list[str]
) -> None:
    engine = make_engine(POLICY, RELATIONSHIPS)
    permissionship, lines = explain(engine, text)
    assert permissionship is answer
    missing = [line for line in expected_lines if line not in lines]
    assert not missing, "\n".join(lines)


def test_tree_is_indented_by_depth(make_engine: MakeEngine) -> None:
    engine = make_engine(POLICY, RELATIONSHIPS)
    resource, permission, subject = query("doc:1#view@user:alice")
    result = engine.check(resource, permission, subject, explain=True)
    assert result.explanation is not None
    text = format_explanation(result.explanation, indent="..")
    lines = text.splitlines()
    assert lines[0] == "✓ doc:1#view"
    assert lines[1] == "..✓ (owner + viewer + folder->view) - banned"
    assert "........✓ relationship group:eng#member@group:core#member" in lines


def test_explain_does_not_change_the_answer(make_engine: MakeEngine) -> None:
    engine = make_engine(POLICY, RELATIONSHIPS)
    for user in ("alice", "bob", "carol", "dave", "erin"):
        resource, permission, subject = query(f"doc:1#view@user:{user}")
        plain = engine.check(resource, permission, subject)
        explained = engine.check(resource, permission, subject, explain=True)
        assert plain == explained
        assert plain.explanation is None
        assert isinstance(explained.explanation, Explanation)
        assert explained.explanation.result is explained.permissionship


def test_an_arrow_with_nothing_to_follow_says_so(make_engine: MakeEngine) -> None:
    engine = make_engine(POLICY, RELATIONSHIPS)
    resource, permission, subject = query("doc:2#view@user:alice")
    result = engine.check(resource, permission, subject, explain=True)
    assert result.explanation is not None
    text = format_explanation(result.explanation)
    assert "✗ folder->view — no relationships to follow" in text
