"""ListSubjects: wildcards and their exclusions, usersets, paging in id order, limits."""

from __future__ import annotations

import pytest

from policyd.consistency import Consistency
from policyd.decisions import Permissionship
from policyd.engine import Engine
from policyd.errors import InvalidRequestError, ResourceExhaustedError
from policyd.relationship import ObjectRef, Operation, RelationshipUpdate
from tests.engine.lookups import ALICE, POLICY
from tests.engine.queries import FRESH, MakeEngine, rel, subject

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


# ---- paging in id order ------------------------------------------------------------------------

PAGED = [
    "doc:1#viewer@group:eng#member",
    "group:eng#member@group:core#member",
    *(f"group:core#member@user:u{i:03}" for i in range(40)),
    *(f"doc:1#viewer@user:v{i:03}" for i in range(10)),
    "doc:1#viewer@user:g1[gate]",
    "doc:1#banned@user:u007",
    "doc:1#banned@user:u013[gate]",
    "doc:1#viewer@user:*",
]


def every_page(engine: Engine, limit: int) -> list[tuple[str, ...]]:
    pages: list[tuple[str, ...]] = []
    cursor = None
    while True:
        page = engine.list_subjects(
            ObjectRef("doc", "1"), "view", "user", cursor=cursor, limit=limit, consistency=FRESH
        )
        pages.append(tuple(str(f) for f in page.subjects))
        cursor = page.cursor
        if cursor is None:
            return pages


@pytest.mark.parametrize("limit", [1, 2, 7, 50, 1000])
def test_pages_of_subjects_add_up_to_the_whole_list_in_order(
    make_engine: MakeEngine, limit: int
) -> None:
    engine = make_engine(POLICY, PAGED)
    whole = [str(f) for f in engine.list_subjects(ObjectRef("doc", "1"), "view", "user").subjects]
    pages = every_page(engine, limit)
    assert [entry for page in pages for entry in page] == whole
    assert all(len(page) <= limit for page in pages)
    concrete = [entry for entry in whole if not entry.startswith("user:*")]
    assert concrete == sorted(concrete)
    assert whole[-1] == "user:* - {user:u007, user:u013[...]}"  # the wildcard comes last


def test_a_subjects_cursor_pins_its_revision(make_engine: MakeEngine) -> None:
    engine = make_engine(POLICY, [f"doc:1#viewer@user:u{i}" for i in range(6)])
    first = engine.list_subjects(ObjectRef("doc", "1"), "view", "user", limit=3)
    engine.write([RelationshipUpdate(Operation.CREATE, rel("doc:1#viewer@user:u9"))])
    rest = engine.list_subjects(ObjectRef("doc", "1"), "view", "user", cursor=first.cursor)
    assert rest.revision == first.revision
    assert [str(f.subject) for f in rest.subjects] == ["user:u3", "user:u4", "user:u5"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"permission": "viewer"}, "another request"),
        ({"resource": ObjectRef("doc", "2")}, "another request"),
        ({"subject_relation": "member", "subject_type": "group"}, "another request"),
    ],
    ids=["other-permission", "other-resource", "other-subject-kind"],
)
def test_a_subjects_cursor_belongs_to_its_request(
    make_engine: MakeEngine, change: dict[str, object], expected: str
) -> None:
    engine = make_engine(POLICY, PAGED)
    cursor = engine.list_subjects(ObjectRef("doc", "1"), "view", "user", limit=1).cursor
    request: dict[str, object] = {
        "resource": ObjectRef("doc", "1"),
        "permission": "view",
        "subject_type": "user",
        "subject_relation": None,
    } | change
    with pytest.raises(InvalidRequestError, match=expected) as raised:
        engine.list_subjects(**request, cursor=cursor)  # type: ignore[arg-type]
    assert raised.value.field == "cursor"


def test_a_cursor_of_objects_is_not_one_of_subjects(make_engine: MakeEngine) -> None:
    engine = make_engine(POLICY, PAGED)
    cursor = engine.list_objects("doc", "view", subject("user:v001"), limit=1).cursor
    with pytest.raises(InvalidRequestError) as raised:
        engine.list_subjects(ObjectRef("doc", "1"), "view", "user", cursor=cursor)
    assert raised.value.field == "cursor"


def test_a_large_group_streams_from_its_sorted_copy(make_engine: MakeEngine) -> None:
    members = [f"group:big#member@user:m{i:05}" for i in range(600)]  # past SORTED_THRESHOLD
    engine = make_engine(POLICY, ["doc:1#viewer@group:big#member", *members])
    listing = engine.stream_subjects(ObjectRef("doc", "1"), "view", "user", limit=3)
    firsts = [step for step in listing.steps if step is not None]
    assert [str(f.subject) for f in firsts] == ["user:m00000", "user:m00001", "user:m00002"]
    assert listing.cursor is not None
