"""Properties of failing closed: cycles under exclusion never grant, and order never matters.

* Over policies that are not stratified (``perm0`` may reach itself through
  the subtracted side of an exclusion), Check never grants what the
  well-founded model (tests/engine/oracle.py) leaves undefined or denies, and
  answers exactly as the model wherever it is defined; the index and store
  read paths give the same answer or the same error, and ListObjects,
  ListSubjects and BatchCheck fail or agree with Check.
* Permuting the operands of every union and intersection of a policy changes
  no answer and no error, including caveat errors from a malformed context.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policyd.decisions import CheckRequest
from policyd.engine import Engine
from policyd.errors import CycleUnderExclusionError, PolicydError
from policyd.relationship import ObjectRef, SubjectRef, parse_relationship
from tests.engine.oracle import (
    DENIED,
    GRANTED,
    PARAMETER,
    UNDEFINED,
    Allowed,
    Expr,
    Op,
    Oracle,
    PolicySpec,
    Ref,
    TypeSpec,
)
from tests.engine.worlds import FRESH, OBJECT_IDS, World, build, worlds

SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

DECIDED = ({PARAMETER: True}, {PARAMETER: False})
MALFORMED = {PARAMETER: "yes"}
"""A bool parameter given a string: evaluating a ``gate`` caveat fails on it."""

Question = tuple[ObjectRef, str, SubjectRef]
Outcome = str
"""An answer's name, or ``error:<code>``."""


def questions(world: World) -> list[Question]:
    return [
        (ObjectRef(t.name, rid), member, subject)
        for subject in world.subjects
        for t in world.spec.types
        for member in t.members()
        for rid in OBJECT_IDS
    ]


def check_outcomes(engine: Engine, world: World) -> dict[Question, Outcome]:
    """Every question's Check answer, or its error code."""
    found: dict[Question, Outcome] = {}
    for resource, member, subject in questions(world):
        try:
            result = engine.check(
                resource, member, subject, context=world.context, consistency=FRESH
            )
            found[(resource, member, subject)] = result.permissionship.value
        except PolicydError as e:
            found[(resource, member, subject)] = f"error:{e.code}"
    return found


WELL_FOUNDED = {GRANTED: "has_permission", DENIED: "no_permission"}


@settings(SETTINGS, max_examples=200)
@given(worlds(usersets=False, stratified=False, contexts=DECIDED))
def test_cycles_under_exclusion_never_grant_and_read_paths_agree(world: World) -> None:
    check_against_the_well_founded_model(world)


@pytest.mark.slow
@settings(SETTINGS, max_examples=2000)
@given(worlds(usersets=False, stratified=False, contexts=DECIDED))
def test_cycles_under_exclusion_long_run(world: World) -> None:
    check_against_the_well_founded_model(world)


def check_against_the_well_founded_model(world: World) -> None:
    engine = build(world)
    other = build(replace(world, use_index=not world.use_index))
    oracle = Oracle(world.spec, world.relationships)
    answers = check_outcomes(engine, world)
    seconds = check_outcomes(other, world)
    problems = [
        f"{r}#{m}@{s}: index={world.use_index} {answer}, other read path {seconds[(r, m, s)]}"
        for (r, m, s), answer in answers.items()
        if answer != seconds[(r, m, s)]
    ]
    for subject in world.subjects:
        model = oracle.well_founded(subject, world.context, OBJECT_IDS)
        for (resource, member, asked), answer in answers.items():
            if asked != subject:
                continue
            value = model[(resource.type, resource.id, member)]
            want = WELL_FOUNDED.get(value, "error:cycle-under-exclusion")
            if answer != want:
                problems.append(f"{resource}#{member}@{subject}: {answer}, well-founded {value}")
    problems += lookup_problems(engine, world, answers)
    assert not problems, "\n".join([*problems[:20], "", repr(world)])


def lookup_problems(engine: Engine, world: World, answers: dict[Question, Outcome]) -> list[str]:
    """ListObjects, ListSubjects and BatchCheck fail exactly where a Check they rely on does."""
    problems: list[str] = []
    failed = {q for q, answer in answers.items() if answer.startswith("error:")}
    for subject in world.subjects:
        for t in world.spec.types:
            for member in t.members():
                mine = {q for q in failed if q[1:] == (member, subject) and q[0].type == t.name}
                try:
                    page = engine.list_objects(
                        t.name, member, subject, context=world.context, consistency=FRESH
                    )
                except CycleUnderExclusionError:
                    if not mine:
                        problems.append(f"ListObjects {t.name}#{member}@{subject} failed alone")
                    continue
                listed = {found.resource_id for found in page.objects}
                for rid in OBJECT_IDS:
                    question = (ObjectRef(t.name, rid), member, subject)
                    granted = answers[question] == "has_permission"
                    if question in failed or granted != (rid in listed):
                        problems.append(f"ListObjects {question}: {answers[question]}, {listed}")
    for t in world.spec.types:
        for member in t.members():
            for rid in OBJECT_IDS:
                resource = ObjectRef(t.name, rid)
                users = [s for s in world.subjects if s.type == "user"]
                try:
                    found = engine.list_subjects(
                        resource, member, "user", context=world.context, consistency=FRESH
                    )
                except CycleUnderExclusionError:
                    if not any((resource, member, s) in failed for s in users):
                        problems.append(f"ListSubjects {resource}#{member} failed alone")
                    continue
                for subject in users:
                    answer = answers[(resource, member, subject)]
                    if answer.startswith("error:") or found.answer_for(subject)[0].value != answer:
                        problems.append(f"ListSubjects {resource}#{member}@{subject}: {answer}")
    items = questions(world)
    random.Random(world.seed).shuffle(items)
    try:
        batch = engine.check_many(
            [CheckRequest(r, m, s, world.context) for r, m, s in items], consistency=FRESH
        )
    except CycleUnderExclusionError:
        if not failed:
            problems.append("BatchCheck failed where no Check did")
    else:
        for question, result in zip(items, batch, strict=True):
            if result.permissionship.value != answers[question]:
                problems.append(f"BatchCheck {question}: {result.permissionship.value}")
    return problems


# ---- operand order -----------------------------------------------------------------------------


def permuted(expr: Expr, rng: random.Random) -> Expr:
    """The expression with the operands of every union and intersection shuffled."""
    if not isinstance(expr, Op):
        return expr
    children = [permuted(c, rng) for c in expr.children]
    if expr.op in "+&":
        rng.shuffle(children)
    return Op(expr.op, tuple(children))


def permuted_policy(spec: PolicySpec, seed: int) -> PolicySpec:
    rng = random.Random(seed)
    return PolicySpec(
        tuple(
            TypeSpec(t.name, t.relations, tuple((n, permuted(e, rng)) for n, e in t.permissions))
            for t in spec.types
        )
    )


@settings(SETTINGS, max_examples=150)
@given(
    worlds(
        usersets=False,
        stratified=False,
        contexts=({}, {PARAMETER: True}, {PARAMETER: False}, MALFORMED),
    ),
    st.integers(0, 2**32),
)
def test_operand_order_changes_no_answer_and_no_error(world: World, seed: int) -> None:
    reordered = replace(world, spec=permuted_policy(world.spec, seed))
    first = check_outcomes(build(world), world)
    second = check_outcomes(build(reordered), reordered)
    problems = [
        f"{r}#{m}@{s}: {answer} as written, {second[(r, m, s)]} reordered"
        for (r, m, s), answer in first.items()
        if answer != second[(r, m, s)]
    ]
    assert not problems, "\n".join(
        [*problems[:20], "", repr(world), "reordered:", reordered.spec.text()]
    )


def test_well_founded_model_leaves_the_self_restricting_viewer_undefined() -> None:
    """The oracle itself on the issue's example: viewer holds exactly when it does not."""
    spec = PolicySpec(
        (
            TypeSpec(
                "alpha",
                (
                    ("viewer", (Allowed("user"),)),
                    ("banned", (Allowed("alpha", "perm0"),)),
                ),
                (("perm0", Op("-", (Ref("viewer"), Ref("banned")))),),
            ),
        )
    )
    relationships = [
        parse_relationship("alpha:o1#viewer@user:u1"),
        parse_relationship("alpha:o1#banned@alpha:o1#perm0"),
    ]
    model = Oracle(spec, relationships).well_founded(SubjectRef("user", "u1"), {})
    assert model[("alpha", "o1", "perm0")] == UNDEFINED
    assert model[("alpha", "o1", "banned")] == UNDEFINED
    assert model[("alpha", "o1", "viewer")] == GRANTED
