"""ListObjects: paged, resumable, conditional answers marked, userset subjects."""

from __future__ import annotations

import pytest

from policyd.decisions import FoundObject, Permissionship
from policyd.engine import Engine
from policyd.errors import InvalidRequestError
from policyd.relationship import Operation, RelationshipUpdate, SubjectRef
from tests.engine.lookups import ALICE, POLICY, library
from tests.engine.queries import FRESH, MakeEngine, rel, subject


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
