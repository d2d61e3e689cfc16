"""Package graph turns a decision's explanation and a set of relationships into graphs to draw.

The browser draws what this module decides: each node carries classes
(``granted``, ``denied``, ``conditional``, ``cycle``; ``member``, ``operation``,
``relationship``; ``subtracted`` and ``removes`` under an exclusion) and the
page's stylesheet gives each class its look. Deciding here keeps the rules
testable without a browser.

An explanation names an exclusion step by its policy text, ``base - subtract``
(engine/plan.py ``rewrite_text``), and lists the steps of the base before those
of the subtracted side, which is evaluated only when the base granted. So the
subtracted children are the trailing ones whose step matches an operand of
the text right of the top-level ``-``: a member step ``type:id#name`` for a
bare name, the operand's own text for an arrow, intersection or exclusion,
and any of its operands' steps for a union.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from policyd.decisions import Explanation, Permissionship
from policyd.relationship import ObjectRef, Relationship

_RESULT_CLASS = {
    Permissionship.HAS_PERMISSION: "granted",
    Permissionship.NO_PERMISSION: "denied",
    Permissionship.CONDITIONAL: "conditional",
}
_MEMBER = re.compile(r"^\S+:\S*#\w+$")
_NAME = re.compile(r"^\w+$")
_LONG_DID = re.compile(r"(did:plc:[a-z2-7]{6})[a-z2-7]{10,}")
RELATIONSHIP_PREFIX = "relationship "


@dataclass(frozen=True, slots=True)
class Node:
    """A node: a short ``label`` to draw, the full ``detail`` to show on selection."""

    id: str
    label: str
    detail: str
    classes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Edge:
    """A directed edge, with an optional label and classes (``subtracts``)."""

    source: str
    target: str
    label: str = ""
    classes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Graph:
    """Nodes and edges, in drawing order."""

    nodes: tuple[Node, ...] = ()
    edges: tuple[Edge, ...] = field(default=())


def short(text: str) -> str:
    """Text with each long ``did:plc`` identifier cut to its first six characters."""
    return _LONG_DID.sub(r"\1…", text)


def _top_level_split(text: str, op: str) -> list[str]:
    """The operands of ``text`` at parenthesis depth 0 around `` op ``."""
    parts: list[str] = []
    depth = 0
    start = 0
    i = 0
    token = f" {op} "
    while i < len(text):
        ch = text[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and text.startswith(token, i):
            parts.append(text[start:i])
            i += len(token)
            start = i
            continue
        i += 1
    parts.append(text[start:])
    return parts


def _unwrap(text: str) -> str:
    """``(a + b)`` as ``a + b``; text not wrapped whole in one pair of parentheses as it is."""
    text = text.strip()
    if text.startswith("(") and text.endswith(")"):
        depth = 0
        for i, ch in enumerate(text):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0 and i < len(text) - 1:
                return text
        return text[1:-1].strip()
    return text


def subtracted_operand(what: str) -> str | None:
    """The subtracted side of an exclusion step's text, or None if the step is no exclusion."""
    parts = _top_level_split(what, "-")
    return _unwrap(parts[-1]) if len(parts) > 1 else None


def _matches(step: str, operand: str) -> bool:
    """Whether an explanation step is (part of) evaluating ``operand``."""
    operand = _unwrap(operand)
    union = _top_level_split(operand, "+")
    if len(union) > 1:
        return any(_matches(step, o) for o in union)
    if _NAME.match(operand):
        return bool(_MEMBER.match(step)) and step.endswith(f"#{operand}")
    return step == operand


def _kind(node: Explanation) -> str:
    if node.what.startswith(RELATIONSHIP_PREFIX):
        return "relationship"
    return "member" if _MEMBER.match(node.what) else "operation"


def _label(node: Explanation) -> str:
    """A node's drawn text: a member as object and ``#name``, a relationship as two lines."""
    what = short(node.what.removeprefix(RELATIONSHIP_PREFIX))
    if _kind(node) == "relationship":
        resource, at, subject = what.partition("@")
        return f"{resource}\n@{subject}" if at else what
    if _kind(node) == "member":
        obj, _, name = what.rpartition("#")
        return f"{obj}\n#{name}"
    return what


def explanation_graph(root: Explanation) -> Graph:
    """The explanation tree as a graph, top-down from the decision asked for."""
    nodes: list[Node] = []
    edges: list[Edge] = []

    def visit(node: Explanation, node_id: str, inherited: tuple[str, ...]) -> None:
        classes = [_kind(node), _RESULT_CLASS[node.result], *inherited]
        if node.note.startswith("cycle"):
            classes.append("cycle")
        elif node.note.startswith("failed"):
            classes.append("failed")
        detail = node.what
        if node.missing:
            detail += f"\nneeds {', '.join(node.missing)}"
        if node.note:
            detail += f"\n{node.note}"
        label = _label(node)
        if node.missing:
            label += f"\nneeds {', '.join(node.missing)}"
        elif "cycle" in classes:
            label += "\n↻ cycle"
        nodes.append(Node(node_id, label, detail, tuple(classes)))
        operand = subtracted_operand(node.what) if _kind(node) == "operation" else None
        subtracted = 0
        if operand is not None:
            for child in reversed(node.children):
                if not _matches(child.what, operand):
                    break
                subtracted += 1
        base_count = len(node.children) - subtracted
        for i, child in enumerate(node.children):
            child_id = f"{node_id}.{i}"
            if i < base_count:
                visit(child, child_id, inherited)
                edges.append(Edge(node_id, child_id))
                continue
            marks = ["subtracted"]
            if child.result is not Permissionship.NO_PERMISSION:
                marks.append("removes")
            visit(child, child_id, (*inherited, *marks))
            edges.append(Edge(node_id, child_id, "minus", ("subtracts",)))

    visit(root, "n0", ())
    return Graph(tuple(nodes), tuple(edges))


def relationship_graph(start: ObjectRef, relationships: Iterable[Relationship]) -> Graph:
    """Objects as nodes and relationships as edges from resource to subject.

    A userset subject (``list:x#member``) points at its object with the
    relation in the edge label; caveats and expiry are named there too.
    """
    nodes: dict[str, Node] = {}
    edges: list[Edge] = []

    def node(obj: ObjectRef) -> str:
        key = str(obj)
        if key not in nodes:
            classes = ("object", "start") if obj == start else ("object", obj.type)
            nodes[key] = Node(key, short(key), key, classes)
        return key

    node(start)
    for r in relationships:
        label = r.relation
        if r.subject.relation:
            label += f" → #{r.subject.relation}"
        classes: tuple[str, ...] = ()
        if r.caveat_name:
            label += f" [{r.caveat_name}]"
            classes = ("caveated",)
        if r.expires_at is not None:
            label += " [expires]"
            classes = (*classes, "expiring")
        edges.append(Edge(node(r.resource), node(r.subject.object), label, classes))
    return Graph(tuple(nodes.values()), tuple(edges))
