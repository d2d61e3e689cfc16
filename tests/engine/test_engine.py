"""The Engine facade: BatchCheck, request validation naming the field, and every local backend."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pytest

from policyd.decisions import Permissionship
from policyd.engine import Engine
from policyd.errors import (
    CaveatError,
    InvalidRequestError,
    NotFoundError,
    PolicyChangeRefusedError,
    PolicyErrors,
)
from policyd.relationship import ObjectRef, SubjectRef
from policyd.store.base import Store
from policyd.store.memory import MemoryStore
from policyd.store.sqlite import SqliteStore
from tests.engine.queries import FRESH, MakeEngine, check, request

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
    relation viewer: user | group#member
    permission view = viewer + parent->view
}

definition doc {
    relation owner: user
    relation viewer: user | user:* | user with gate | group#member
    relation banned: user
    relation folder: folder
    permission edit = owner
    permission view = (edit + viewer + folder->view) - banned
}
"""

RELATIONSHIPS = [
    "group:eng#member@user:alice",
    "group:eng#member@group:core#member",
    "group:core#member@user:bob",
    "folder:root#viewer@group:eng#member",
    "folder:sub#parent@folder:root",
    "doc:1#folder@folder:sub",
    "doc:1#owner@user:carol",
    "doc:1#banned@user:bob",
    "doc:2#viewer@user:*",
    "doc:2#banned@user:alice",
    "doc:3#viewer@user:dave[gate]",
    "doc:3#viewer@group:core#member",
]
USERS = ["alice", "bob", "carol", "dave", "erin"]


def every_query() -> list[str]:
    docs = [f"doc:{i}#{p}" for i in (1, 2, 3, 4) for p in ("view", "edit", "viewer")]
    folders = [f"folder:{f}#view" for f in ("root", "sub")]
    subjects = [f"user:{u}" for u in USERS] + ["group:eng#member", "group:core#member"]
    return [f"{r}@{s}" for r, s in itertools.product(docs + folders, subjects)]


@pytest.mark.parametrize(
    "context", [None, {"open": True}, {"open": False}], ids=["no-context", "open", "closed"]
)
def test_check_many_equals_individual_checks(
    make_engine: MakeEngine, context: dict[str, Any] | None
) -> None:
    engine = make_engine(POLICY, RELATIONSHIPS)
    queries = every_query()
    batch = engine.check_many([request(q, context) for q in queries], consistency=FRESH)
    assert len(batch) == len(queries)
    for text, result in zip(queries, batch, strict=True):
        alone = check(engine, text, context)
        assert (str(result.resource), result.permission, str(result.subject)) == (
            str(alone.resource),
            alone.permission,
            str(alone.subject),
        ), text
        assert (result.permissionship, result.missing) == (alone.permissionship, alone.missing), (
            text
        )


def test_check_many_mixes_contexts_per_item(make_engine: MakeEngine) -> None:
    engine = make_engine(POLICY, RELATIONSHIPS)
    items = [
        request("doc:3#view@user:dave", {"open": True}),
        request("doc:3#view@user:dave", {"open": False}),
        request("doc:3#view@user:dave"),
    ]
    answers = [r.permissionship for r in engine.check_many(items)]
    assert answers == [
        Permissionship.HAS_PERMISSION,
        Permissionship.NO_PERMISSION,
        Permissionship.CONDITIONAL,
    ]


def test_check_many_answers_at_one_revision(make_engine: MakeEngine) -> None:
    engine = make_engine(POLICY, RELATIONSHIPS)
    results = engine.check_many([request(q) for q in every_query()[:10]], consistency=FRESH)
    assert len({r.token for r in results}) == 1


def test_check_many_of_nothing(make_engine: MakeEngine) -> None:
    assert make_engine(POLICY).check_many([]) == []


# ---- bad requests ------------------------------------------------------------------------------

BAD_CHECKS = [
    pytest.param("nodoc:1#view@user:a", "resource.type", "no type 'nodoc'", id="unknown-type"),
    pytest.param("doc:1#read@user:a", "permission", "no relation or permission 'read'", id="perm"),
    pytest.param("doc:1#view@robot:a", "subject.type", "no type 'robot'", id="subject-type"),
    pytest.param(
        "doc:1#view@group:eng#admin", "subject.relation", "'admin'", id="subject-relation"
    ),
]


@pytest.mark.parametrize(("text", "field", "words"), BAD_CHECKS)
def test_bad_check_names_the_field(
    make_engine: MakeEngine, text: str, field: str, words: str
) -> None:
    engine = make_engine(POLICY)
    with pytest.raises(InvalidRequestError, match=words) as raised:
        check(engine, text)
    assert raised.value.field == field
    assert raised.value.code == "invalid-request"


@pytest.mark.parametrize(("text", "field", "words"), BAD_CHECKS)
def test_bad_batch_item_names_its_index(
    make_engine: MakeEngine, text: str, field: str, words: str
) -> None:
    engine = make_engine(POLICY)
    with pytest.raises(InvalidRequestError, match=words) as raised:
        engine.check_many([request("doc:1#view@user:a"), request(text)])
    assert raised.value.field == f"items[1].{field}"


@pytest.mark.parametrize(
    ("call", "field"),
    [
        pytest.param(
            lambda e: e.list_objects("nodoc", "view", SubjectRef("user", "a")),
            "resource.type",
            id="list-objects-type",
        ),
        pytest.param(
            lambda e: e.list_objects("doc", "read", SubjectRef("user", "a")),
            "permission",
            id="list-objects-permission",
        ),
        pytest.param(
            lambda e: e.list_objects("doc", "view", SubjectRef("robot", "a")),
            "subject.type",
            id="list-objects-subject-type",
        ),
        pytest.param(
            lambda e: e.list_objects("doc", "view", SubjectRef("group", "g", "admin")),
            "subject.relation",
            id="list-objects-subject-relation",
        ),
        pytest.param(
            lambda e: e.list_subjects(ObjectRef("nodoc", "1"), "view", "user"),
            "resource.type",
            id="list-subjects-type",
        ),
        pytest.param(
            lambda e: e.list_subjects(ObjectRef("doc", "1"), "read", "user"),
            "permission",
            id="list-subjects-permission",
        ),
        pytest.param(
            lambda e: e.list_subjects(ObjectRef("doc", "1"), "view", "robot"),
            "subject.type",
            id="list-subjects-subject-type",
        ),
        pytest.param(
            lambda e: e.list_subjects(ObjectRef("doc", "1"), "view", "group", "admin"),
            "subject.relation",
            id="list-subjects-subject-relation",
        ),
        pytest.param(
            lambda e: e.expand(ObjectRef("nodoc", "1"), "view"), "resource.type", id="expand-type"
        ),
        pytest.param(
            lambda e: e.expand(ObjectRef("doc", "1"), "read"), "permission", id="expand-permission"
        ),
    ],
)
def test_bad_lookup_names_the_field(make_engine: MakeEngine, call: Any, field: str) -> None:
    engine = make_engine(POLICY)
    with pytest.raises(InvalidRequestError) as raised:
        call(engine)
    assert raised.value.field == field


def test_no_policy_yet() -> None:
    engine = Engine(MemoryStore())
    with pytest.raises(NotFoundError, match="no policy") as raised:
        engine.check(ObjectRef("doc", "1"), "view", SubjectRef("user", "a"))
    assert raised.value.field == "policy"


# ---- malformed caveat input ------------------------------------------------------------------


def nested(depth: int) -> Any:
    """``{"a": {"a": … True}}``, ``depth`` maps deep."""
    value: Any = True
    for _ in range(depth):
        value = {"a": value}
    return value


BAD_CONTEXTS = [
    pytest.param({"open": math.nan}, "NaN is not a JSON number", id="nan"),
    pytest.param({"open": math.inf}, "Infinity is not a JSON number", id="infinity"),
    pytest.param({"unused": [-math.inf]}, "-Infinity is not a JSON number", id="unused-key"),
    pytest.param({"open": nested(33)}, "nests deeper than 32 levels", id="nested-33"),
    pytest.param({"unused": nested(5000)}, "nests deeper than 32 levels", id="nested-5000"),
    pytest.param({"open": object()}, "not a JSON value", id="not-json"),
]

CONTEXT_CALLS = [
    pytest.param(lambda e, c: check(e, "doc:3#view@user:dave", c), id="check"),
    pytest.param(
        lambda e, c: e.check(
            ObjectRef("doc", "3"), "view", SubjectRef("user", "dave"), context=c, explain=True
        ),
        id="explain",
    ),
    pytest.param(lambda e, c: e.check_many([request("doc:3#view@user:dave", c)]), id="check-many"),
    pytest.param(
        lambda e, c: e.list_objects("doc", "view", SubjectRef("user", "dave"), context=c),
        id="list-objects",
    ),
    pytest.param(
        lambda e, c: e.list_subjects(ObjectRef("doc", "3"), "view", "user", context=c),
        id="list-subjects",
    ),
]


@pytest.mark.parametrize(("context", "words"), BAD_CONTEXTS)
@pytest.mark.parametrize("call", CONTEXT_CALLS)
def test_malformed_request_context_is_a_caveat_error(
    make_engine: MakeEngine, call: Any, context: dict[str, Any], words: str
) -> None:
    engine = make_engine(POLICY, RELATIONSHIPS)
    with pytest.raises(CaveatError, match=words) as raised:
        call(engine, context)
    assert raised.value.code == "caveat-error"  # INVALID_ARGUMENT over gRPC


@pytest.mark.parametrize(
    ("nots", "expected"),
    [(1000, Permissionship.HAS_PERMISSION), (1001, Permissionship.NO_PERMISSION)],
    ids=["1000", "1001"],
)
def test_a_thousand_nots_compile_and_decide(
    make_engine: MakeEngine, nots: int, expected: Permissionship
) -> None:
    engine = make_engine(POLICY.replace("    open\n", f"    {'!' * nots}open\n"), RELATIONSHIPS)
    assert check(engine, "doc:3#view@user:dave", {"open": True}).permissionship is expected


SUBSCRIPTION = """
caveat active(now timestamp, {parameter} timestamp) {{
    now < {parameter}
}}

definition user {{}}

definition creator {{
    relation gold: user with active
    permission gold_content = gold
}}
"""


def test_renaming_a_stored_caveat_parameter_is_refused(make_engine: MakeEngine) -> None:
    engine = make_engine(
        SUBSCRIPTION.format(parameter="expires"),
        ['creator:zoe#gold@user:bob[active:{"expires":"2020-01-01T00:00:00Z"}]'],
    )
    denied = {"now": "2025-01-01T00:00:00Z", "until": "2099-01-01T00:00:00Z"}
    assert check(engine, "creator:zoe#gold_content@user:bob", denied).permissionship is (
        Permissionship.NO_PERMISSION
    )
    with pytest.raises(PolicyChangeRefusedError) as raised:
        engine.write_policy(SUBSCRIPTION.format(parameter="until"))
    assert raised.value.blockers == (
        "1 relationship with caveat active sets parameter 'expires' in its context, which the "
        "new policy's active does not declare (removed or renamed); delete or rewrite those "
        "relationships first",
    )
    assert check(engine, "creator:zoe#gold_content@user:bob", denied).permissionship is (
        Permissionship.NO_PERMISSION
    )


COSTLY = """
caveat {name}(l list<int>) {{
    {expression}
}}

definition user {{}}

definition doc {{
    relation viewer: user with {name}
    permission view = viewer
}}
"""


def test_costly_caveats_are_refused_at_write_and_stopped_at_check(make_engine: MakeEngine) -> None:
    digits = "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"
    nested = "a + b + c + d + e + f >= 0"
    for name in "fedcba":  # 10**6 iterations: refused without running one
        nested = f"{digits}.all({name}, {nested})"
    with pytest.raises(PolicyErrors, match=r"caveat-invalid: .*may cost about"):
        make_engine(COSTLY.format(name="nested", expression=f"l == [] || {nested}"))
    engine = make_engine(
        COSTLY.format(name="pairs", expression="l.exists(a, l.exists(b, a == b + 1000000))"),
        ["doc:1#viewer@user:u[pairs]"],
    )
    assert check(engine, "doc:1#view@user:u", {"l": [1, 2]}).permissionship is (
        Permissionship.NO_PERMISSION
    )
    with pytest.raises(CaveatError, match="budget"):
        check(engine, "doc:1#view@user:u", {"l": list(range(5000))})


# ---- every local backend -----------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite-memory", "sqlite-file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    match request.param:
        case "memory":
            return MemoryStore()
        case "sqlite-memory":
            return SqliteStore(":memory:")
        case _:
            return SqliteStore(tmp_path / "policyd.db")


def test_backends_agree_with_memory(make_engine: MakeEngine, store: Store) -> None:
    """Check, ListObjects and ListSubjects answer the same on SQLite as on MemoryStore."""
    reference = make_engine(POLICY, RELATIONSHIPS)
    engine = make_engine(POLICY, RELATIONSHIPS, store=store)
    for text in every_query():
        ours, theirs = check(engine, text), check(reference, text)
        assert (ours.permissionship, ours.missing) == (theirs.permissionship, theirs.missing), text
    alice = SubjectRef("user", "alice")
    for member in ("view", "edit"):
        assert (
            engine.list_objects("doc", member, alice, consistency=FRESH).objects
            == reference.list_objects("doc", member, alice, consistency=FRESH).objects
        )
    for rid in ("1", "2", "3"):
        doc = ObjectRef("doc", rid)
        assert (
            engine.list_subjects(doc, "view", "user", consistency=FRESH).subjects
            == reference.list_subjects(doc, "view", "user", consistency=FRESH).subjects
        )


# ---- a wildcard is not a subject one can ask about ---------------------------------------------

EVERY_USER = SubjectRef("user", "*")


@pytest.mark.parametrize(
    ("call", "field"),
    [
        pytest.param(
            lambda e: e.check(ObjectRef("doc", "2"), "view", EVERY_USER, consistency=FRESH),
            "subject.id",
            id="check",
        ),
        pytest.param(
            lambda e: e.check(
                ObjectRef("doc", "2"), "view", EVERY_USER, consistency=FRESH, explain=True
            ),
            "subject.id",
            id="check-explain",
        ),
        pytest.param(
            lambda e: e.check_many(
                [request("doc:2#view@user:alice"), request("doc:2#view@user:*")],
                consistency=FRESH,
            ),
            "items[1].subject.id",
            id="batch-check",
        ),
        pytest.param(
            lambda e: e.list_objects("doc", "view", EVERY_USER, consistency=FRESH),
            "subject.id",
            id="list-objects",
        ),
    ],
)
def test_a_wildcard_subject_is_refused(
    make_engine: MakeEngine, store: Store, call: Any, field: str
) -> None:
    """``doc:2#viewer@user:*`` is stored, yet "may user:* view doc:2?" is no question to answer."""
    engine = make_engine(POLICY, RELATIONSHIPS, store=store)
    with pytest.raises(InvalidRequestError, match="wildcard") as raised:
        call(engine)
    assert raised.value.field == field
    assert raised.value.code == "invalid-request"
