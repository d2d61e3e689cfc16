"""ListObjects (paged, resumable, conditional marked) and ListSubjects (wildcards, exclusions)."""

from __future__ import annotations

import pytest

from policyd.consistency import Consistency
from policyd.decisions import FoundObject, Permissionship
from policyd.engine import Engine
from policyd.errors import InvalidRequestError, ResourceExhaustedError
from policyd.relationship import ObjectRef, Operation, RelationshipUpdate, SubjectRef
from tests.engine.queries import FRESH, MakeEngine, rel, subject

POLICY = """
caveat gate(open bool) {
    open
}

definition user {}

definition group {
    relation member: user | group#member
}

definition doc {
    relation viewer: user | user:* | user with gate | group#member
    relation banned: user | user with gate
    permission view = viewer - banned
}
"""

ALICE = subject("user:alice")


def library(count: int) -> list[str]:
    """``count`` docs alice can view: directly, through a group, or on a caveat (every 5th)."""
    relationships = ["group:eng#member@user:alice"]
    for i in range(count):
        if i % 5 == 0:
            relationships.append(f"doc:d{i:03}#viewer@user:alice[gate]")
        elif i % 2:
            relationships.append(f"doc:d{i:03}#viewer@group:eng#member")
        else:
            relationships.append(f"doc:d{i:03}#viewer@user:alice")
    # Docs alice cannot view: someone else's, and one she is banned from.
    relationships += ["doc:other#viewer@user:bob", "doc:d001#banned@user:alice"]
    return relationships


def all_pages(engine: Engine, limit: int) -> list[tuple[FoundObject, ...]]:
    pages = []
    cursor = None
    while True:
        page = engine.list_objects(
            "doc", "view", ALICE, cursor=cursor, limit=limit, consistency=FRESH
        )
        pages.append(page.objects)
        cursor = page.cursor
        if cursor is None:
            return pages


@pytest.mark.parametrize("limit", [1, 7, 23, 24, 1000], ids=lambda n: f"limit-{n}")
def test_pages_cover_everything_once(make_engine: MakeEngine, limit: int) -> None:
    engine = make_engine(POLICY, library(25))
    everything = engine.list_objects("doc", "view", ALICE, consistency=FRESH).objects
    pages = all_pages(engine, limit)
    paged = [found for page in pages for found in page]
    assert paged == list(everything)
    ids = [found.resource_id for found in paged]
    assert len(ids) == len(set(ids)) == 24
    assert ids == sorted(ids)
    assert all(0 < len(page) <= limit for page in pages[:-1])


def test_conditional_results_are_marked(make_engine: MakeEngine) -> None:
    engine = make_engine(POLICY, library(25))
    found = {f.resource_id: f for f in engine.list_objects("doc", "view", ALICE).objects}
    assert found["d005"] == FoundObject("d005", Permissionship.CONDITIONAL, ("open",))
    assert found["d005"].conditional
    assert found["d003"] == FoundObject("d003", Permissionship.HAS_PERMISSION)
    assert "d001" not in found
    assert "other" not in found
    decided = engine.list_objects("doc", "view", ALICE, context={"open": False}).objects
    assert "d005" not in {f.resource_id for f in decided}


def test_cursor_resumes_at_its_revision(make_engine: MakeEngine) -> None:
    engine = make_engine(POLICY, library(10))
    first = engine.list_objects("doc", "view", ALICE, limit=3, consistency=FRESH)
    assert first.cursor is not None
    # A write after the first page does not change what the cursor's pages hold.
    engine.write([RelationshipUpdate(Operation.CREATE, rel("doc:d004z#viewer@user:alice"))])
    engine.write([RelationshipUpdate(Operation.DELETE, rel("doc:d009#viewer@group:eng#member"))])
    rest = engine.list_objects("doc", "view", ALICE, cursor=first.cursor, limit=100)
    assert rest.revision == first.revision
    ids = [f.resource_id for f in (*first.objects, *rest.objects)]
    assert ids == ["d000", "d002", "d003", "d004", "d005", "d006", "d007", "d008", "d009"]
    # The same cursor can be used again: paging is resumable.
    again = engine.list_objects("doc", "view", ALICE, cursor=first.cursor, limit=100)
    assert again.objects == rest.objects


@pytest.mark.parametrize(
    ("cursor", "kwargs"),
    [
        pytest.param("not base64 json!", {}, id="malformed"),
        pytest.param("WzEsMl0=", {}, id="wrong-shape"),
        pytest.param(None, {"permission": "viewer"}, id="other-permission"),
        pytest.param(None, {"subject": SubjectRef("user", "bob")}, id="other-subject"),
    ],
)
def test_bad_cursor(make_engine: MakeEngine, cursor: str | None, kwargs: dict[str, object]) -> None:
    engine = make_engine(POLICY, library(5))
    if cursor is None:
        cursor = engine.list_objects("doc", "view", ALICE, limit=1).cursor
    permission = str(kwargs.get("permission", "view"))
    who = kwargs.get("subject", ALICE)
    assert isinstance(who, SubjectRef)
    with pytest.raises(InvalidRequestError) as raised:
        engine.list_objects("doc", permission, who, cursor=cursor)
    assert raised.value.field == "cursor"


def test_limit_must_be_positive(make_engine: MakeEngine) -> None:
    engine = make_engine(POLICY)
    with pytest.raises(InvalidRequestError) as raised:
        engine.list_objects("doc", "view", ALICE, limit=0)
    assert raised.value.field == "limit"


def test_list_objects_for_a_userset_subject(make_engine: MakeEngine) -> None:
    engine = make_engine(
        POLICY,
        [
            "doc:1#viewer@group:eng#member",
            "group:all#member@group:eng#member",
            "doc:2#viewer@group:all#member",
            "doc:3#viewer@user:*",
            "doc:4#viewer@group:ops#member",
        ],
    )
    found = engine.list_objects("doc", "view", subject("group:eng#member")).objects
    # The wildcard is for users, not for usersets of groups.
    assert [f.resource_id for f in found] == ["1", "2"]


# ---- ListSubjects ------------------------------------------------------------------------------


def subjects_of(engine: Engine, resource: str, subject_type: str = "user") -> set[str]:
    """ListSubjects in the validation-file notation: ``user:* - {user:b}``, ``user:a[...]``."""
    type_name, _, rid = resource.partition(":")
    relation = None
    if "#" in subject_type:
        subject_type, _, relation = subject_type.partition("#")
    result = engine.list_subjects(
        ObjectRef(type_name, rid), "view", subject_type, relation, consistency=FRESH
    )
    return {str(found) for found in result.subjects}


@pytest.mark.parametrize(
    ("relationships", "expected"),
    [
        pytest.param(["doc:1#viewer@user:a"], {"user:a"}, id="direct"),
        pytest.param(["doc:1#viewer@user:*"], {"user:*"}, id="wildcard"),
        pytest.param(
            ["doc:1#viewer@user:*", "doc:1#banned@user:b", "doc:1#banned@user:c"],
            {"user:* - {user:b, user:c}"},
            id="wildcard-with-exclusions",
        ),
        pytest.param(
            ["doc:1#viewer@user:*", "doc:1#viewer@user:a"],
            {"user:*", "user:a"},
            id="wildcard-and-named",
        ),
        pytest.param(
            ["doc:1#viewer@user:a", "doc:1#viewer@user:b", "doc:1#banned@user:b"],
            {"user:a"},
            id="excluded-named-subject",
        ),
        pytest.param(
            ["doc:1#viewer@user:*", "doc:1#banned@user:b[gate]"],
            {"user:* - {user:b[...]}"},
            id="conditional-exclusion",
        ),
        pytest.param(["doc:1#viewer@user:a[gate]"], {"user:a[...]"}, id="conditional"),
        pytest.param(
            [
                "doc:1#viewer@group:eng#member",
                "group:eng#member@group:core#member",
                "group:core#member@user:a",
                "group:eng#member@user:b",
            ],
            {"user:a", "user:b"},
            id="through-nested-groups",
        ),
        pytest.param(["doc:2#viewer@user:*"], set(), id="other-doc"),
    ],
)
def test_list_subjects(
    make_engine: MakeEngine, relationships: list[str], expected: set[str]
) -> None:
    engine = make_engine(POLICY, relationships)
    assert subjects_of(engine, "doc:1") == expected


def test_list_subjects_of_a_userset_type(make_engine: MakeEngine) -> None:
    engine = make_engine(
        POLICY,
        [
            "doc:1#viewer@group:eng#member",
            "doc:1#viewer@user:*",
            "group:eng#member@group:core#member",
        ],
    )
    # No wildcard: user:* never stands for usersets.
    assert subjects_of(engine, "doc:1", "group#member") == {
        "group:eng#member",
        "group:core#member",
    }


def test_list_subjects_with_context(make_engine: MakeEngine) -> None:
    engine = make_engine(POLICY, ["doc:1#viewer@user:a[gate]", "doc:1#viewer@user:b"])
    resource = ObjectRef("doc", "1")
    opened = engine.list_subjects(resource, "view", "user", context={"open": True}).subjects
    closed = engine.list_subjects(resource, "view", "user", context={"open": False}).subjects
    assert {str(f.subject) for f in opened} == {"user:a", "user:b"}
    assert {str(f.subject) for f in closed} == {"user:b"}


def test_lookups_read_at_the_requested_revision(make_engine: MakeEngine) -> None:
    engine = make_engine(POLICY, ["doc:1#viewer@user:alice"])
    before = engine.list_objects("doc", "view", ALICE, consistency=FRESH)
    engine.write([RelationshipUpdate(Operation.CREATE, rel("doc:2#viewer@user:alice"))])
    snapshot = Consistency.at_exact_snapshot(before.token)
    assert [
        f.resource_id
        for f in engine.list_objects("doc", "view", ALICE, consistency=snapshot).objects
    ] == ["1"]
    assert [
        f.resource_id for f in engine.list_objects("doc", "view", ALICE, consistency=FRESH).objects
    ] == ["1", "2"]
    old_subjects = engine.list_subjects(ObjectRef("doc", "2"), "view", "user", consistency=snapshot)
    assert old_subjects.subjects == ()


SELF_AND_TEAMS = """
use self

definition user {
    relation friend: user
    relation blocked: user
    permission view_profile = (self + friend) - blocked
}

definition team {
    relation member: user | user:* | team#member
    relation banned: user
    permission access = member - banned
}
"""
SELF_AND_TEAMS_DATA = [
    "user:a#friend@user:b",
    "user:a#blocked@user:a",
    "user:c#friend@user:d",
    "team:t#member@team:u#member",
    "team:u#member@user:*",
    "team:t#banned@user:x",
]


@pytest.mark.parametrize(
    ("resource", "permission", "subject_type", "expected"),
    [
        pytest.param("user:c", "view_profile", "user", {"user:c", "user:d"}, id="self"),
        pytest.param("user:a", "view_profile", "user", {"user:b"}, id="self-excluded"),
        pytest.param(
            "team:t", "access", "user", {"user:* - {user:x}"}, id="wildcard-in-nested-team"
        ),
        pytest.param(
            "team:t",
            "member",
            "team#member",
            {"team:t#member", "team:u#member"},
            id="userset-holds-itself",
        ),
    ],
)
def test_list_subjects_self_and_nesting(
    make_engine: MakeEngine, resource: str, permission: str, subject_type: str, expected: set[str]
) -> None:
    engine = make_engine(SELF_AND_TEAMS, SELF_AND_TEAMS_DATA)
    type_name, _, rid = resource.partition(":")
    kind, _, relation = subject_type.partition("#")
    found = engine.list_subjects(
        ObjectRef(type_name, rid), permission, kind, relation or None, consistency=FRESH
    ).subjects
    assert {str(f) for f in found} == expected


@pytest.mark.parametrize(
    ("type_name", "permission", "who", "expected"),
    [
        pytest.param("user", "view_profile", "user:c", ["c"], id="self"),
        pytest.param("user", "view_profile", "user:a", [], id="self-blocked"),
        pytest.param("team", "access", "user:anyone", ["t", "u"], id="wildcard-nested"),
        pytest.param("team", "access", "user:x", ["u"], id="wildcard-nested-banned"),
    ],
)
def test_list_objects_self_and_nesting(
    make_engine: MakeEngine, type_name: str, permission: str, who: str, expected: list[str]
) -> None:
    engine = make_engine(SELF_AND_TEAMS, SELF_AND_TEAMS_DATA)
    found = engine.list_objects(type_name, permission, subject(who), consistency=FRESH).objects
    assert [f.resource_id for f in found] == expected


def test_list_subjects_past_its_visit_limit_fails_instead_of_truncating(
    make_engine: MakeEngine,
) -> None:
    nested = [f"group:g{i}#member@group:g{i + 1}#member" for i in range(20)]
    engine = make_engine(
        POLICY,
        ["doc:1#viewer@group:g0#member", *nested, "group:g20#member@user:last"],
        max_subject_visits=10,
    )
    with pytest.raises(ResourceExhaustedError, match="more than 10 usersets") as raised:
        engine.list_subjects(ObjectRef("doc", "1"), "view", "user", consistency=FRESH)
    assert raised.value.code == "resource-exhausted"


def test_list_subjects_within_its_visit_limit_is_whole(make_engine: MakeEngine) -> None:
    nested = [f"group:g{i}#member@group:g{i + 1}#member" for i in range(20)]
    engine = make_engine(
        POLICY,
        ["doc:1#viewer@group:g0#member", *nested, "group:g20#member@user:last"],
        max_subject_visits=100,
    )
    assert subjects_of(engine, "doc:1") == {"user:last"}


@pytest.mark.parametrize(
    ("relationships", "expected"),
    [
        pytest.param(
            ["doc:1#viewer@user:*", "doc:1#viewer@user:b", "doc:1#banned@user:b[gate]"],
            {"user:* - {user:b[...]}", "user:b[...]"},
            id="named-and-conditionally-excluded",
        ),
        pytest.param(
            ["doc:1#viewer@user:*", "doc:1#banned@user:b[gate]", "doc:1#banned@user:c"],
            {"user:* - {user:b[...], user:c}"},
            id="certain-and-conditional-exclusions",
        ),
    ],
)
def test_wildcard_exclusions_say_what_a_subject_gets(
    make_engine: MakeEngine, relationships: list[str], expected: set[str]
) -> None:
    engine = make_engine(POLICY, relationships)
    assert subjects_of(engine, "doc:1") == expected
    listed = engine.list_subjects(ObjectRef("doc", "1"), "view", "user", consistency=FRESH)
    assert listed.answer_for(subject("user:b")) == (Permissionship.CONDITIONAL, ("open",))
    assert listed.answer_for(subject("user:someone")) == (Permissionship.HAS_PERMISSION, ())
