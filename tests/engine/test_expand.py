"""Expand: the userset tree of a permission, rendered one node a line for exact comparison."""

from __future__ import annotations

import pytest

from policyd.decisions import ExpandNode
from policyd.engine import Engine
from policyd.errors import MaxDepthExceededError, ResourceExhaustedError
from policyd.relationship import ObjectRef
from tests.engine.queries import FRESH, MakeEngine

POLICY = """
use self

definition user {
    permission myself = self
}

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
    relation viewer: user | user:* | group#member
    relation banned: user
    relation reviewer: user
    relation folder: folder
    permission view = (owner + viewer + folder->view) - banned
    permission review = viewer & reviewer
    permission in_every_folder = folder.all(view)
    permission nothing = nil
}
"""
RELATIONSHIPS = [
    "doc:1#owner@user:carol",
    "doc:1#viewer@group:eng#member",
    "doc:1#viewer@user:*",
    "doc:1#banned@user:carol",
    "doc:1#folder@folder:f",
    "group:eng#member@user:alice",
    "folder:f#viewer@user:bob",
    "folder:f#parent@folder:root",
]


def render(node: ExpandNode, level: int = 0) -> list[str]:
    """``kind target [subjects]``, children indented beneath."""
    subjects = ", ".join(sorted(str(r.subject) for r in node.relationships))
    line = f"{'  ' * level}{node.kind.value} {node.target}" + (f" [{subjects}]" if subjects else "")
    return [line] + [text for child in node.children for text in render(child, level + 1)]


def expand(engine: Engine, resource: str, permission: str) -> str:
    type_name, _, rid = resource.partition(":")
    tree = engine.expand(ObjectRef(type_name, rid), permission, consistency=FRESH).tree
    return "\n".join(render(tree))


@pytest.mark.parametrize(
    ("resource", "permission", "expected"),
    [
        pytest.param(
            "doc:1",
            "view",
            """\
exclusion doc:1#view
  union doc:1#view
    leaf doc:1#owner [user:carol]
    leaf doc:1#viewer [group:eng#member, user:*]
    union doc:1#folder->view
      union folder:f#view
        leaf folder:f#viewer [user:bob]
        union folder:f#parent->view
          union folder:root#view
            leaf folder:root#viewer
            union folder:root#parent->view
  leaf doc:1#banned [user:carol]""",
            id="exclusion-union-arrow",
        ),
        pytest.param(
            "doc:1",
            "review",
            """\
intersection doc:1#review
  leaf doc:1#viewer [group:eng#member, user:*]
  leaf doc:1#reviewer""",
            id="intersection",
        ),
        pytest.param(
            "doc:1",
            "in_every_folder",
            """\
intersection doc:1#folder->view
  union folder:f#view
    leaf folder:f#viewer [user:bob]
    union folder:f#parent->view
      union folder:root#view
        leaf folder:root#viewer
        union folder:root#parent->view""",
            id="all-arrow",
        ),
        pytest.param("doc:1", "nothing", "leaf doc:1#nothing", id="nil"),
        pytest.param("doc:1", "viewer", "leaf doc:1#viewer [group:eng#member, user:*]", id="rel"),
        pytest.param("doc:2", "viewer", "leaf doc:2#viewer", id="empty-relation"),
        pytest.param("user:alice", "myself", "leaf user:alice", id="self"),
        pytest.param(
            "group:eng", "member", "leaf group:eng#member [user:alice]", id="userset-not-followed"
        ),
    ],
)
def test_expand_tree(
    make_engine: MakeEngine, resource: str, permission: str, expected: str
) -> None:
    engine = make_engine(POLICY, RELATIONSHIPS)
    assert expand(engine, resource, permission) == expected


def test_expand_reads_at_the_requested_revision(make_engine: MakeEngine) -> None:
    engine = make_engine(POLICY, RELATIONSHIPS)
    result = engine.expand(ObjectRef("doc", "1"), "viewer")
    assert result.revision == engine.store.head_revision()
    assert result.token


def test_expand_of_an_arrow_cycle_is_a_clear_error(make_engine: MakeEngine) -> None:
    engine = make_engine(
        POLICY, ["folder:a#parent@folder:b", "folder:b#parent@folder:a"], max_depth=20
    )
    with pytest.raises(MaxDepthExceededError, match="more than 20 levels"):
        expand(engine, "folder:a", "view")


def test_a_tree_past_the_node_limit_fails_before_it_is_built(make_engine: MakeEngine) -> None:
    viewers = [f"doc:1#viewer@user:u{i}" for i in range(50)]
    engine = make_engine(POLICY, viewers, max_expand_nodes=20)
    with pytest.raises(ResourceExhaustedError, match="more than 20 nodes") as raised:
        engine.expand(ObjectRef("doc", "1"), "view")
    assert raised.value.code == "resource-exhausted"
    roomy = make_engine(POLICY, viewers, max_expand_nodes=1000)
    assert roomy.expand(ObjectRef("doc", "1"), "view").tree.kind is not None
