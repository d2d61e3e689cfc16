"""Package plan compiles a Schema, once per policy revision, into an evaluation function per member.

Every (type, relation or permission) becomes one Python closure that answers
"does the run's subject hold this member on resource ``rid``?". The closures
capture precomputed sets and tuples, so a check does no tree walking and no
schema lookups: it calls closures and reads relationships.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_never

from policyd.caveats import CompiledCaveat, compile_caveat
from policyd.engine.index import Edge
from policyd.engine.results import Partial, all_of, any_of, negate
from policyd.engine.run import PlanFn, Run
from policyd.schema.ir import (
    Arrow,
    ArrowKind,
    Definition,
    Exclusion,
    Intersection,
    Nil,
    Relation,
    RelationRef,
    Rewrite,
    Schema,
    SelfRef,
    Union,
)


@dataclass(frozen=True, slots=True)
class AllowedSubjects:
    """What a stored relation may hold, split the way evaluation needs it."""

    direct: frozenset[tuple[str, str]]
    """(subject type, subject relation or '') pairs a subject may match directly."""
    wildcard_types: frozenset[str]
    """Subject types allowed as ``type:*``."""
    usersets: tuple[tuple[str, tuple[str, ...]], ...]
    """(subject type, its relations) allowed as ``type#relation``: followed recursively."""


@dataclass(frozen=True, slots=True)
class Plan:
    """The compiled form of a schema: an evaluation function per (type, member)."""

    schema: Schema
    members: dict[tuple[str, str], PlanFn]
    caveats: dict[str, CompiledCaveat]
    closable: frozenset[tuple[str, str]]
    """Self-recursive relations (``group#member: … | group#member``) answered by a closure."""

    def member(self, type_name: str, name: str) -> PlanFn | None:
        """The function for ``type_name#name``, or None when the type has no such member."""
        return self.members.get((type_name, name))


def compile_plan(schema: Schema) -> Plan:
    """Compile every relation and permission of a schema."""
    members: dict[tuple[str, str], PlanFn] = {}
    closable: set[tuple[str, str]] = set()
    for definition in schema.definitions.values():
        for relation in definition.relations.values():
            key = (definition.name, relation.name)
            allowed = _allowed_subjects(relation)
            evaluate = _relation_fn(definition.name, relation.name, allowed)
            if _is_closable(relation, definition.name, allowed):
                closable.add(key)
                evaluate = _closure_relation_fn(definition.name, relation.name, allowed, evaluate)
            members[key] = evaluate
        for permission in definition.permissions.values():
            members[(definition.name, permission.name)] = _rewrite_fn(
                schema, definition, permission.rewrite, members
            )
    caveats = {
        c.name: compile_caveat(c.name, c.parameter_types, c.expression)
        for c in schema.caveats.values()
    }
    return Plan(schema, members, caveats, frozenset(closable))


def _is_closable(relation: Relation, type_name: str, allowed: AllowedSubjects) -> bool:
    """True when the relation nests only itself and its nesting edges are unconditional.

    Then membership at any depth is "the subject's direct memberships, or
    their ancestors" (see engine/group_closure.py); caveated or expiring nesting
    edges, or nesting through other types, take the general walk.
    """
    if allowed.usersets != ((type_name, (relation.name,)),):
        return False
    return all(
        a.caveat is None and not a.expiration
        for a in relation.allowed
        if a.type == type_name and a.relation == relation.name
    )


def _closure_relation_fn(
    type_name: str, relation: str, allowed: AllowedSubjects, walk: PlanFn
) -> PlanFn:
    direct, wildcard_types = allowed.direct, allowed.wildcard_types

    def evaluate(run: Run, rid: str, depth: int) -> Partial:
        closures = run.closures
        if closures is None:
            return walk(run, rid, depth)
        closure = closures.get(type_name, relation)
        subject_type, subject_id, subject_rel = run.subject_key
        if subject_type == type_name and subject_rel == relation:
            return subject_id == rid or closure.contains(rid, subject_id)
        reader = run.reader
        result: Partial = False
        memberships: list[tuple[str, bool | Edge]] = []
        if (subject_type, subject_rel) in direct:
            memberships += reader.resource_edges(
                type_name, relation, subject_type, subject_id, subject_rel
            )
        if not subject_rel and subject_type in wildcard_types:
            memberships += reader.resource_edges(type_name, relation, subject_type, "*", "")
        for group, found in memberships:
            if group == rid or closure.contains(rid, group):
                result = any_of(result, run.grant(found))
                if result is True:
                    return True
        return result

    return evaluate


def _allowed_subjects(relation: Relation) -> AllowedSubjects:
    """Split a relation's allowed subjects into direct, wildcard and userset parts."""
    direct: set[tuple[str, str]] = set()
    wildcards: set[str] = set()
    usersets: dict[str, list[str]] = {}
    for allowed in relation.allowed:
        if allowed.wildcard:
            wildcards.add(allowed.type)
            continue
        direct.add((allowed.type, allowed.relation or ""))
        if allowed.relation is not None:
            names = usersets.setdefault(allowed.type, [])
            if allowed.relation not in names:
                names.append(allowed.relation)
    return AllowedSubjects(
        frozenset(direct),
        frozenset(wildcards),
        tuple((t, tuple(names)) for t, names in usersets.items()),
    )


def _relation_fn(type_name: str, relation: str, allowed: AllowedSubjects) -> PlanFn:
    direct, wildcard_types, usersets = allowed.direct, allowed.wildcard_types, allowed.usersets

    def evaluate(run: Run, rid: str, depth: int) -> Partial:
        subject_type, subject_id, subject_rel = run.subject_key
        if subject_rel == relation and subject_id == rid and subject_type == type_name:
            return True  # a userset contains itself
        reader = run.reader
        result: Partial = False
        if (subject_type, subject_rel) in direct:
            found = reader.edge(type_name, rid, relation, subject_type, subject_id, subject_rel)
            if found is not False:
                result = run.grant(found)
                if result is True:
                    return True
        if not subject_rel and subject_type in wildcard_types:
            found = reader.edge(type_name, rid, relation, subject_type, "*", "")
            if found is not False:
                result = any_of(result, run.grant(found))
                if result is True:
                    return True
        for userset_type, names in usersets:
            for name in names:
                for sid, found in reader.subject_edges(
                    type_name, rid, relation, userset_type, name
                ):
                    edge = run.grant(found)
                    if edge is False:
                        continue
                    inner = run.check(userset_type, sid, name, depth + 1)
                    result = any_of(result, all_of(edge, inner))
                    if result is True:
                        return True
        return result

    return evaluate


def _rewrite_fn(
    schema: Schema,
    definition: Definition,
    node: Rewrite,
    members: dict[tuple[str, str], PlanFn],
) -> PlanFn:
    """Compile a permission's rewrite; ``members`` already holds the definition's relations."""
    type_name = definition.name
    match node:
        case Nil():
            return _nil
        case SelfRef():

            def is_self(run: Run, rid: str, depth: int) -> Partial:
                return run.subject_key == (type_name, rid, "")

            return is_self
        case RelationRef(name=name) if name in definition.relations:
            # A relation is evaluated in place: its own recursion (usersets) goes
            # through run.check, which is where memo, cycles and depth are kept.
            relation_fn = members[(type_name, name)]

            def stored(run: Run, rid: str, depth: int) -> Partial:
                if run.tracing:  # so Explain shows the relation as a step
                    return run.check(type_name, rid, name, depth + 1)
                return relation_fn(run, rid, depth + 1)

            return stored
        case RelationRef(name=name):

            def computed(run: Run, rid: str, depth: int) -> Partial:
                return run.check(type_name, rid, name, depth + 1)

            return computed
        case Arrow():
            return _traced(rewrite_text(node), _arrow_fn(schema, definition, node))
        case Union(children=children) | Intersection(children=children):
            # Both are commutative: the cheapest branch first can settle the answer
            # (a union on its first grant, an intersection on its first denial).
            written = tuple(_rewrite_fn(schema, definition, c, members) for c in children)
            order = sorted(
                range(len(children)), key=lambda i: cost(schema, definition, children[i])
            )
            fns = tuple(written[i] for i in order)
            if isinstance(node, Union):
                return _union_fn(fns)
            return _traced(rewrite_text(node), _intersection_fn(fns, written))
        case Exclusion(base=base, subtract=subtract):
            return _traced(
                rewrite_text(node),
                _exclusion_fn(
                    _rewrite_fn(schema, definition, base, members),
                    _rewrite_fn(schema, definition, subtract, members),
                    subtract_first=cost(schema, definition, subtract)
                    < cost(schema, definition, base),
                ),
            )
        case _:
            assert_never(node)


def _traced(label: str, evaluate: PlanFn) -> PlanFn:
    """Record arrows, intersections and exclusions as Explain steps when tracing."""

    def traced(run: Run, rid: str, depth: int) -> Partial:
        if run.tracing:
            return run.step(label, evaluate, rid, depth)
        return evaluate(run, rid, depth)

    return traced


def rewrite_text(node: Rewrite) -> str:
    """A rewrite as policy text, for Explain: ``parent->view``, ``(a + b) - c``."""
    match node:
        case Nil():
            return "nil"
        case SelfRef():
            return "self"
        case RelationRef(name=name):
            return name
        case Arrow(tupleset=tupleset, target=target, kind=kind):
            return f"{tupleset}.all({target})" if kind is ArrowKind.ALL else f"{tupleset}->{target}"
        case Union(children=children):
            return " + ".join(_grouped(c) for c in children)
        case Intersection(children=children):
            return " & ".join(_grouped(c) for c in children)
        case Exclusion(base=base, subtract=subtract):
            return f"{_grouped(base)} - {_grouped(subtract)}"
        case _:
            assert_never(node)


def _grouped(node: Rewrite) -> str:
    text = rewrite_text(node)
    return f"({text})" if isinstance(node, Union | Intersection | Exclusion) else text


def _nil(run: Run, rid: str, depth: int) -> Partial:
    return False


def _union_fn(children: tuple[PlanFn, ...]) -> PlanFn:
    def union(run: Run, rid: str, depth: int) -> Partial:
        result: Partial = False
        for child in children:
            value = child(run, rid, depth)
            if value is True:
                return True
            if value is not False:
                result = any_of(result, value)
        return result

    return union


def _intersection_fn(children: tuple[PlanFn, ...], as_written: tuple[PlanFn, ...]) -> PlanFn:
    """``a & b & …``: cheapest first, stopping at a denial.

    Explain evaluates every branch in the order written instead, so a denial
    shows what held as well as what did not.
    """

    def intersection(run: Run, rid: str, depth: int) -> Partial:
        if run.tracing:
            result: Partial = True
            for child in as_written:
                result = all_of(result, child(run, rid, depth))
            return result
        result = True
        for child in children:
            value = child(run, rid, depth)
            if value is False:
                return False
            if value is not True:
                result = all_of(result, value)
        return result

    return intersection


def _exclusion_fn(base: PlanFn, subtract: PlanFn, *, subtract_first: bool) -> PlanFn:
    """``base - subtract``; the cheaper side runs first, since either side can settle it.

    The subtracted side runs with ``run.negations`` raised, so that a cycle
    through it is recognised as one under negation (engine/check.py).
    """

    def subtracted(run: Run, rid: str, depth: int) -> Partial:
        run.negations += 1
        try:
            return subtract(run, rid, depth)
        finally:
            run.negations -= 1

    def exclusion(run: Run, rid: str, depth: int) -> Partial:
        kept = base(run, rid, depth)
        if kept is False:
            return False
        return all_of(kept, negate(subtracted(run, rid, depth)))

    def exclusion_subtract_first(run: Run, rid: str, depth: int) -> Partial:
        if run.tracing:  # Explain tells the whole story: what granted, then what took it away
            return exclusion(run, rid, depth)
        removed = subtracted(run, rid, depth)
        if removed is True:
            return False
        return all_of(base(run, rid, depth), negate(removed))

    return exclusion_subtract_first if subtract_first else exclusion


def cost(
    schema: Schema, definition: Definition, node: Rewrite, seen: frozenset[str] = frozenset()
) -> int:
    """A rough price of evaluating a rewrite, in dict reads: used to order branches.

    A plain relation is one read; one that holds usersets may walk further; an
    arrow reads its tupleset, then evaluates the target on each object found.
    """
    match node:
        case Nil() | SelfRef():
            return 0
        case RelationRef(name=name):
            relation = definition.relations.get(name)
            if relation is not None:
                return 1 + 4 * sum(1 for a in relation.allowed if a.relation is not None)
            permission = definition.permissions.get(name)
            if permission is None or name in seen:
                return 10
            return 1 + cost(schema, definition, permission.rewrite, seen | {name})
        case Arrow():
            return 12
        case Union(children=children) | Intersection(children=children):
            return sum(cost(schema, definition, c, seen) for c in children)
        case Exclusion(base=base, subtract=subtract):
            return cost(schema, definition, base, seen) + cost(schema, definition, subtract, seen)
        case _:
            assert_never(node)


def _arrow_fn(schema: Schema, definition: Definition, arrow: Arrow) -> PlanFn:
    type_name, tupleset, target = definition.name, arrow.tupleset, arrow.target
    # Only subject types that define the target can contribute; the rest are skipped unread.
    relation = definition.relations.get(tupleset)
    target_types = frozenset(
        a.type
        for a in (relation.allowed if relation else ())
        if (d := schema.definition(a.type)) is not None and d.member(target) is not None
    )

    def arrow_any(run: Run, rid: str, depth: int) -> Partial:
        result: Partial = False
        for stype, sid, _, found in run.reader.all_subject_edges(type_name, rid, tupleset):
            if stype not in target_types:
                continue
            edge = run.grant(found)
            if edge is False:
                continue
            inner = run.check(stype, sid, target, depth + 1)
            result = any_of(result, all_of(edge, inner))
            if result is True:
                return True
        return result

    def arrow_all(run: Run, rid: str, depth: int) -> Partial:
        # As in SpiceDB, every tupleset relationship must hold its caveat and grant:
        # one whose caveat is false fails the arrow rather than being ignored.
        result: Partial = False
        edges = run.reader.all_subject_edges(type_name, rid, tupleset)
        for i, (stype, sid, _, found) in enumerate(edges):
            edge = run.grant(found)
            grants = (
                run.check(stype, sid, target, depth + 1)
                if edge is not False and stype in target_types
                else False
            )
            value = all_of(edge, grants)
            result = value if i == 0 else all_of(result, value)
            if result is False:
                return False
        return result

    return arrow_all if arrow.kind is ArrowKind.ALL else arrow_any
