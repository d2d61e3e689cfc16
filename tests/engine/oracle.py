"""A brute-force model of policies and Check, independent of the engine, for property tests.

``PolicySpec`` describes a small policy the way the generator builds it and
renders it as fully parenthesised policy text. ``Oracle`` answers Check for it
by evaluating every (type, id, member) of the relationship set to a fixpoint,
stratum by stratum: first every relation, then each permission in declaration
order. Values are Kleene's three: 0 denied, 1 conditional, 2 granted; union is
max, intersection min, exclusion ``min(base, 2 - subtract)``.

The generator keeps policies stratified (a permission never reaches itself
through the subtracted side of an exclusion), so the least fixpoint is the one
answer any correct engine must give, whatever order it evaluates in.

For policies that are not stratified, ``well_founded`` gives the well-founded
model (Van Gelder, Ross and Schlipf, 1991) by the alternating fixpoint: each
member is true, false, or UNDEFINED when it depends on itself through an odd
number of exclusions (``viewer = direct - restricted`` where ``restricted``
holds ``viewer``). It is the strongest answer no evaluation order can refute;
an engine must never grant what it leaves undefined or false.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from policyd.relationship import WILDCARD, Relationship, SubjectRef

DENIED, CONDITIONAL, GRANTED = 0, 1, 2
UNDEFINED = -1
"""A well-founded value: the member depends on its own negation."""
CAVEAT = "gate"
PARAMETER = "open"


@dataclass(frozen=True)
class Allowed:
    """An allowed subject: ``user``, ``user:*``, ``alpha#member``, ``user with gate``."""

    type: str
    relation: str | None = None
    wildcard: bool = False
    caveat: bool = False

    def __str__(self) -> str:
        text = self.type + (":*" if self.wildcard else "")
        text += f"#{self.relation}" if self.relation else ""
        return text + (f" with {CAVEAT}" if self.caveat else "")


@dataclass(frozen=True)
class Ref:
    """A relation or permission of the same object."""

    name: str


@dataclass(frozen=True)
class NilExpr:
    """``nil``."""


@dataclass(frozen=True)
class ArrowExpr:
    """``tupleset->target``, ``.any(target)`` or ``.all(target)``."""

    tupleset: str
    target: str
    kind: str  # "->", "any" or "all"


@dataclass(frozen=True)
class Op:
    """``+`` (union), ``&`` (intersection) or ``-`` (exclusion) over two or more children."""

    op: str
    children: tuple[Expr, ...]


Expr: TypeAlias = Ref | NilExpr | ArrowExpr | Op


def render(expr: Expr) -> str:
    """Policy text for an expression, every operation in parentheses."""
    match expr:
        case Ref(name):
            return name
        case NilExpr():
            return "nil"
        case ArrowExpr(tupleset, target, "->"):
            return f"{tupleset}->{target}"
        case ArrowExpr(tupleset, target, kind):
            return f"{tupleset}.{kind}({target})"
        case Op(op, children):
            return "(" + f" {op} ".join(render(c) for c in children) + ")"
    raise AssertionError(expr)


@dataclass(frozen=True)
class TypeSpec:
    """An object type: relations with their allowed subjects, then permissions in order."""

    name: str
    relations: tuple[tuple[str, tuple[Allowed, ...]], ...]
    permissions: tuple[tuple[str, Expr], ...]

    def members(self) -> list[str]:
        return [name for name, _ in self.relations] + [name for name, _ in self.permissions]


@dataclass(frozen=True)
class PolicySpec:
    """A generated policy: ``user`` plus object types, and the caveat ``gate(open bool)``."""

    types: tuple[TypeSpec, ...]

    def text(self) -> str:
        lines = [f"caveat {CAVEAT}({PARAMETER} bool) {{", f"    {PARAMETER}", "}", ""]
        lines.append("definition user {}")
        for spec in self.types:
            lines += ["", f"definition {spec.name} {{"]
            for name, allowed in spec.relations:
                lines.append(f"    relation {name}: " + " | ".join(str(a) for a in allowed))
            for name, expr in spec.permissions:
                lines.append(f"    permission {name} = {render(expr)}")
            lines.append("}")
        return "\n".join(lines) + "\n"

    def type(self, name: str) -> TypeSpec | None:
        return next((t for t in self.types if t.name == name), None)


Node: TypeAlias = tuple[str, str, str]


class Oracle:
    """Check by brute force over one relationship set."""

    def __init__(self, spec: PolicySpec, relationships: Iterable[Relationship]) -> None:
        self.spec = spec
        self.edges: dict[Node, list[Relationship]] = defaultdict(list)
        ids: dict[str, set[str]] = defaultdict(set)
        for r in relationships:
            self.edges[(r.resource.type, r.resource.id, r.relation)].append(r)
            ids[r.resource.type].add(r.resource.id)
            if r.subject.id != WILDCARD:
                ids[r.subject.type].add(r.subject.id)
        self.ids = ids

    def values(
        self, subject: SubjectRef, context: Mapping[str, Any], extra_ids: Iterable[str] = ()
    ) -> dict[Node, int]:
        """The value of every member of every known object for one subject and context."""
        extra = set(extra_ids)
        strata: list[list[tuple[Node, Expr | None]]] = [[]]
        for spec in self.spec.types:
            object_ids = self.ids[spec.name] | extra
            for rid in object_ids:
                strata[0] += [((spec.name, rid, name), None) for name, _ in spec.relations]
            for i, (name, expr) in enumerate(spec.permissions):
                while len(strata) <= i + 1:
                    strata.append([])
                strata[i + 1] += [((spec.name, rid, name), expr) for rid in object_ids]
        target = (subject.type, subject.id, subject.relation or "")
        values: dict[Node, int] = {target: GRANTED}
        for stratum in strata:
            changed = True
            while changed:
                changed = False
                for node, rule in stratum:
                    if node == target:
                        value = GRANTED
                    elif rule is None:
                        value = self._relation(node, subject, context, values)
                    else:
                        value = self._expr(node, rule, context, values)
                    if value != values.get(node, DENIED):
                        values[node] = value
                        changed = True
        return values

    def _caveat(self, r: Relationship, context: Mapping[str, Any]) -> int:
        if r.caveat_name is None:
            return GRANTED
        merged = {**context, **r.caveat_context}
        if PARAMETER not in merged:
            return CONDITIONAL
        return GRANTED if merged[PARAMETER] else DENIED

    def _relation(
        self,
        node: Node,
        subject: SubjectRef,
        context: Mapping[str, Any],
        values: Mapping[Node, int],
    ) -> int:
        best = DENIED
        for r in self.edges.get(node, ()):
            s = r.subject
            if s.relation is not None:
                reached = values.get((s.type, s.id, s.relation), DENIED)
            elif s.id == WILDCARD:
                reached = GRANTED if (s.type, None) == (subject.type, subject.relation) else DENIED
            else:
                reached = GRANTED if s == subject else DENIED
            best = max(best, min(self._caveat(r, context), reached))
        return best

    def _expr(
        self,
        node: Node,
        expr: Expr,
        context: Mapping[str, Any],
        values: Mapping[Node, int],
        negated: Mapping[Node, int] | None = None,
    ) -> int:
        """The value of ``expr`` on ``node``; the subtracted sides read ``negated``.

        ``negated`` defaults to ``values`` (a plain evaluation); the alternating
        fixpoint passes a fixed assumption there.
        """
        type_name, rid, _ = node
        flipped = values if negated is None else negated
        match expr:
            case Ref(name):
                return values.get((type_name, rid, name), DENIED)
            case NilExpr():
                return DENIED
            case ArrowExpr(tupleset, target, kind):
                found = []
                for r in self.edges.get((type_name, rid, tupleset), ()):
                    over = self.spec.type(r.subject.type)
                    has_target = over is not None and target in over.members()
                    reached = values.get((r.subject.type, r.subject.id, target), DENIED)
                    found.append(min(self._caveat(r, context), reached if has_target else DENIED))
                if kind == "all":
                    return min(found) if found else DENIED
                return max(found, default=DENIED)
            case Op("+", children):
                return max(self._expr(node, c, context, values, negated) for c in children)
            case Op("&", children):
                return min(self._expr(node, c, context, values, negated) for c in children)
            case Op("-", (base, subtract)):
                kept = self._expr(node, base, context, values, negated)
                removed = self._expr(node, subtract, context, flipped, values)
                return min(kept, GRANTED - removed)
        raise AssertionError(expr)

    def well_founded(
        self, subject: SubjectRef, context: Mapping[str, Any], extra_ids: Iterable[str] = ()
    ) -> dict[Node, int]:
        """The well-founded value of every member: GRANTED, DENIED or UNDEFINED.

        Caveats must be decided by the context (the generator's worlds with
        ``{open: true}`` or ``{open: false}``): conditional values are not
        modelled here.
        """
        rules: list[tuple[Node, Expr | None]] = []
        for spec in self.spec.types:
            for rid in self.ids[spec.name] | set(extra_ids):
                rules += [((spec.name, rid, name), None) for name, _ in spec.relations]
                rules += [((spec.name, rid, name), expr) for name, expr in spec.permissions]
        target = (subject.type, subject.id, subject.relation or "")

        def least(assumed: Mapping[Node, int]) -> dict[Node, int]:
            """The least model with every subtracted side read from ``assumed``."""
            values: dict[Node, int] = {target: GRANTED}
            changed = True
            while changed:
                changed = False
                for node, rule in rules:
                    if node == target:
                        continue
                    if rule is None:
                        value = self._relation(node, subject, context, values)
                    else:
                        value = self._expr(node, rule, context, values, assumed)
                    if value > values.get(node, DENIED):
                        values[node] = value
                        changed = True
            return values

        surely: dict[Node, int] = {}
        while True:
            possibly = least(surely)
            again = least(possibly)
            if again == surely:
                break
            surely = again
        return {
            node: GRANTED
            if surely.get(node, DENIED) == GRANTED
            else UNDEFINED
            if possibly.get(node, DENIED) == GRANTED
            else DENIED
            for node, _ in rules
        } | {target: GRANTED}
