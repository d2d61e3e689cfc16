"""Random policies, relationships and questions about them, for the engine's property tests.

``policies()`` draws a small policy with direct, caveated, wildcard, userset
and arrow relations and permissions over union, intersection, exclusion,
``nil`` and the three arrow kinds. By default it stays stratified (a
permission never reaches itself through the subtracted side of an
exclusion, tests/engine/oracle.py says why); ``stratified=False`` lets
``perm0`` recur anywhere and lets ``banned`` hold ``perm0`` usersets, so that
cycles through exclusions appear in the data. ``worlds()`` adds random
relationships the policy allows (some caveated, some forming cycles), the
subjects to ask about and a request context.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from policyd.consistency import Consistency
from policyd.decisions import Permissionship
from policyd.engine import Engine
from policyd.relationship import WILDCARD, ObjectRef, Relationship, SubjectRef
from policyd.store.memory import MemoryStore
from tests.engine.oracle import (
    CAVEAT,
    CONDITIONAL,
    GRANTED,
    PARAMETER,
    Allowed,
    ArrowExpr,
    Expr,
    NilExpr,
    Op,
    PolicySpec,
    Ref,
    TypeSpec,
)

TYPE_NAMES = ("alpha", "beta", "gamma")
OBJECT_IDS = ("o1", "o2")
USERS = ("u1", "u2", "u3")
STRANGER = "u9"  # appears in no relationship: only a wildcard can grant it
RELATIONS = ("member", "viewer", "banned", "parent")
FRESH = Consistency.fully_consistent()

ANSWER = {
    0: Permissionship.NO_PERMISSION,
    CONDITIONAL: Permissionship.CONDITIONAL,
    GRANTED: Permissionship.HAS_PERMISSION,
}


# ---- policies ----------------------------------------------------------------------------------


def nonempty_subset(options: list[Allowed]) -> st.SearchStrategy[tuple[Allowed, ...]]:
    return st.lists(st.sampled_from(options), min_size=1, max_size=3, unique=True).map(tuple)


def including(allowed: tuple[Allowed, ...], extra: Allowed | None) -> tuple[Allowed, ...]:
    """``allowed`` with ``extra`` added unless it (or the same type, uncaveated) is there."""
    if extra is None or any((a.type, a.relation) == (extra.type, extra.relation) for a in allowed):
        return allowed
    return (*allowed, extra)


@st.composite
def type_specs(
    draw: st.DrawFn, name: str, names: tuple[str, ...], stratified: bool = True
) -> TypeSpec:
    """One object type: four relations, one to three permissions."""
    user, gated = Allowed("user"), Allowed("user", caveat=True)
    members = [Allowed(t, "member") for t in names]
    # Half the non-stratified types make perm0 subtract itself, through an arrow or through
    # ``banned``: the shape of a cycle under exclusion once the data closes the loop.
    recurse: Expr | None = None
    if not stratified and draw(st.booleans()):
        shapes: list[Expr] = [Ref("banned"), ArrowExpr("parent", "perm0", "->")]
        recurse = draw(st.sampled_from(shapes))
    banned = [user, gated, Allowed("user", wildcard=True)]
    if not stratified:
        banned += [Allowed(t, "perm0") for t in names]
    relations = (
        # No wildcard may sit in a userset another type uses, so ``member`` has none.
        ("member", draw(nonempty_subset([user, gated, *members]))),
        (
            "viewer",
            draw(
                nonempty_subset(
                    [user, gated, Allowed("user", wildcard=True), Allowed(name, "viewer"), *members]
                )
            ),
        ),
        (
            "banned",
            including(
                draw(nonempty_subset(banned)),
                Allowed(name, "perm0") if recurse == Ref("banned") else None,
            ),
        ),
        (
            "parent",
            including(
                draw(nonempty_subset([Allowed(t, caveat=c) for t in names for c in (False, True)])),
                Allowed(name) if isinstance(recurse, ArrowExpr) else None,
            ),
        ),
    )
    count = draw(st.integers(min_value=1, max_value=3))
    permissions = [
        (f"perm{i}", draw(expressions(i, negative=False, depth=0, stratified=stratified)))
        for i in range(count)
    ]
    if recurse is not None:
        permissions[0] = ("perm0", Op("-", (Op("+", (Ref("viewer"), permissions[0][1])), recurse)))
    return TypeSpec(name, relations, tuple(permissions))


@st.composite
def expressions(
    draw: st.DrawFn, index: int, negative: bool, depth: int, stratified: bool = True
) -> Expr:
    """A permission body for ``perm{index}``.

    It may name relations, earlier permissions and arrows over ``parent``; an
    arrow to ``perm0`` (the only recursive permission) stays out of the
    subtracted side of ``perm0`` itself when ``stratified``.
    """
    targets = ["member", "viewer", "banned"]
    if not (index == 0 and negative and stratified):
        targets.append("perm0")
    leaves = st.one_of(
        st.sampled_from([Ref(r) for r in RELATIONS] + [Ref(f"perm{k}") for k in range(index)]),
        st.builds(
            ArrowExpr,
            st.just("parent"),
            st.sampled_from(targets),
            st.sampled_from(["->", "any", "all"]),
        ),
        st.just(NilExpr()),
    )
    if depth >= 2 or draw(st.integers(0, 2)) == 0:
        return draw(leaves)
    op = draw(st.sampled_from(["+", "&", "-"]))
    if op == "-":
        base = draw(expressions(index, negative, depth + 1, stratified))
        subtract = draw(expressions(index, True, depth + 1, stratified))
        return Op("-", (base, subtract))
    children = draw(
        st.lists(expressions(index, negative, depth + 1, stratified), min_size=2, max_size=3).map(
            tuple
        )
    )
    return Op(op, children)


@st.composite
def policies(draw: st.DrawFn, stratified: bool = True) -> PolicySpec:
    names = TYPE_NAMES[: draw(st.integers(min_value=1, max_value=3))]
    return PolicySpec(tuple(draw(type_specs(n, names, stratified)) for n in names))


# ---- relationships -----------------------------------------------------------------------------


def possible_relationships(spec: PolicySpec) -> list[Relationship]:
    """Every relationship the policy allows over the fixed object and user ids."""
    found: list[Relationship] = []
    for type_spec in spec.types:
        for relation, allowed in type_spec.relations:
            for rid in OBJECT_IDS:
                resource = ObjectRef(type_spec.name, rid)
                for a in allowed:
                    if a.wildcard:
                        subjects = [SubjectRef(a.type, WILDCARD)]
                    elif a.type == "user":
                        subjects = [SubjectRef("user", u) for u in USERS]
                    else:
                        subjects = [SubjectRef(a.type, i, a.relation) for i in OBJECT_IDS]
                    for s in subjects:
                        if not a.caveat:
                            found.append(Relationship(resource, relation, s))
                            continue
                        for context in ({}, {PARAMETER: True}, {PARAMETER: False}):
                            found.append(Relationship(resource, relation, s, CAVEAT, context))
    return found


def cycles(spec: PolicySpec) -> list[Relationship]:
    """o1 and o2 of a type holding each other and themselves, through each relation allowing it."""
    found = []
    for type_spec in spec.types:
        for relation, allowed in type_spec.relations:
            for a in allowed:
                if a.type != type_spec.name or a.wildcard:
                    continue
                for one, other in (("o1", "o2"), ("o2", "o1"), ("o1", "o1")):
                    found.append(
                        Relationship(
                            ObjectRef(a.type, one),
                            relation,
                            SubjectRef(a.type, other, a.relation),
                            CAVEAT if a.caveat else None,
                        )
                    )
    return found


@dataclass(frozen=True)
class World:
    """A policy, its relationships, the subjects to ask about and the request context."""

    spec: PolicySpec
    relationships: tuple[Relationship, ...]
    subjects: tuple[SubjectRef, ...]
    context: dict[str, Any]
    use_index: bool
    seed: int

    def __repr__(self) -> str:
        lines = [self.spec.text(), *(str(r) for r in self.relationships)]
        lines.append(f"subjects: {', '.join(str(s) for s in self.subjects)}")
        lines.append(f"context: {self.context}  index: {self.use_index}")
        return "\n".join(lines)


@st.composite
def worlds(
    draw: st.DrawFn,
    usersets: bool = True,
    stratified: bool = True,
    contexts: tuple[dict[str, Any], ...] = ({}, {PARAMETER: True}, {PARAMETER: False}),
) -> World:
    """A random world; without ``usersets`` the subjects are plain objects only."""
    spec = draw(policies(stratified))
    pool = possible_relationships(spec)
    size = draw(st.integers(min_value=4, max_value=30))
    drawn = draw(st.lists(st.sampled_from(pool), min_size=size, max_size=size))
    if not stratified or draw(st.booleans()):
        drawn += cycles(spec)
    relationships = tuple({r.key: r for r in drawn}.values())
    others = [
        SubjectRef(t.name, i, relation)
        for t in spec.types
        for i in OBJECT_IDS
        for relation in ((None, "member", "viewer") if usersets else (None,))
    ]
    extra = draw(st.lists(st.sampled_from(others), max_size=3, unique=True))
    users = [SubjectRef("user", u) for u in (*USERS, STRANGER)]
    context = draw(st.sampled_from(contexts))
    return World(
        spec,
        relationships,
        (*users, *extra),
        context,
        draw(st.booleans()),
        draw(st.integers(0, 2**32)),
    )


def build(world: World) -> Engine:
    engine = Engine(MemoryStore(), index=world.use_index)
    engine.write_policy(world.spec.text())
    shuffled = list(world.relationships)
    random.Random(world.seed).shuffle(shuffled)
    if shuffled:
        engine.import_relationships(shuffled)
    return engine
