"""Graphs: what each explanation node is drawn as, and which branches an exclusion subtracts."""

from __future__ import annotations

import pytest

from policyd.decisions import Explanation, Permissionship
from policyd.playground.graph import (
    explanation_graph,
    relationship_graph,
    short,
    subtracted_operand,
)
from policyd.relationship import parse_object, parse_relationship

YES, NO, MAYBE = (
    Permissionship.HAS_PERMISSION,
    Permissionship.NO_PERMISSION,
    Permissionship.CONDITIONAL,
)


@pytest.mark.parametrize(
    ("what", "operand"),
    [
        ("(author + viewer) - author->blocked", "author->blocked"),
        ("follower - blocked", "blocked"),
        ("(a - b) - (c + d)", "c + d"),
        ("a + b", None),
        ("(a - b) & c", None),
        ("parent->view", None),
    ],
)
def test_the_subtracted_operand_of_a_step(what: str, operand: str | None) -> None:
    assert subtracted_operand(what) == operand


def _classes(graph_nodes: tuple[object, ...]) -> dict[str, tuple[str, ...]]:
    return {n.detail.split("\n")[0]: n.classes for n in graph_nodes}  # type: ignore[attr-defined]


def test_a_blocked_subject_is_drawn_as_a_subtracted_branch_that_removes_access() -> None:
    tree = Explanation(
        "post:1#view",
        NO,
        (
            Explanation(
                "(author + viewer) - author->blocked",
                NO,
                (
                    Explanation("post:1#author", NO, note="no relationships to follow"),
                    Explanation("post:1#viewer", YES, (Explanation("relationship p", YES),)),
                    Explanation(
                        "author->blocked",
                        YES,
                        (Explanation("account:a#blocked", YES),),
                    ),
                ),
            ),
        ),
    )
    graph = explanation_graph(tree)
    classes = _classes(graph.nodes)
    assert classes["post:1#view"] == ("member", "denied")
    assert classes["post:1#viewer"] == ("member", "granted")
    assert classes["relationship p"] == ("relationship", "granted")
    assert classes["author->blocked"] == ("operation", "granted", "subtracted", "removes")
    assert classes["account:a#blocked"] == ("member", "granted", "subtracted", "removes")
    subtracts = [e for e in graph.edges if e.classes == ("subtracts",)]
    assert [(e.source, e.target) for e in subtracts] == [("n0.0", "n0.0.2")]


def test_a_base_that_never_granted_has_no_subtracted_branch() -> None:
    tree = Explanation("follower - blocked", NO, (Explanation("account:a#follower", NO),))
    graph = explanation_graph(tree)
    assert all("subtracted" not in n.classes for n in graph.nodes)


def test_conditional_and_cycle_nodes_are_marked() -> None:
    tree = Explanation(
        "group:a#member",
        MAYBE,
        (
            Explanation("group:a#member", NO, note="cycle: already being evaluated"),
            Explanation("relationship g", MAYBE, missing=("now",), note="caveat c needs now"),
        ),
    )
    graph = explanation_graph(tree)
    assert graph.nodes[0].classes == ("member", "conditional")
    assert "cycle" in graph.nodes[1].classes
    assert graph.nodes[1].label.endswith("↻ cycle")
    assert graph.nodes[2].label.endswith("needs now")
    assert "caveat c needs now" in graph.nodes[2].detail


def test_long_dids_are_shortened_in_labels_only() -> None:
    did = "did:plc:ragtjsm2j2vknwkz3zp4oxrd"
    assert short(f"account:{did}#blocked") == "account:did:plc:ragtjs…#blocked"
    graph = explanation_graph(Explanation(f"account:{did}#blocked", YES))
    assert graph.nodes[0].label == "account:did:plc:ragtjs…\n#blocked"
    assert graph.nodes[0].detail == f"account:{did}#blocked"


def test_relationship_graph_links_resources_to_subject_objects() -> None:
    relationships = [
        parse_relationship("post:1#viewer@list:l#member"),
        parse_relationship("list:l#member@user:a[expiration:2099-01-01T00:00:00Z]"),
        parse_relationship('post:1#gold@user:b[sub:{"tier":1}]'),
    ]
    graph = relationship_graph(parse_object("post:1"), relationships)
    assert [n.id for n in graph.nodes] == ["post:1", "list:l", "user:a", "user:b"]
    assert graph.nodes[0].classes == ("object", "start")
    labels = {(e.source, e.target): (e.label, e.classes) for e in graph.edges}
    assert labels[("post:1", "list:l")] == ("viewer → #member", ())
    assert labels[("list:l", "user:a")] == ("member [expires]", ("expiring",))
    assert labels[("post:1", "user:b")] == ("gold [sub]", ("caveated",))
