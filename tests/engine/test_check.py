"""Check: every operator, wildcards, usersets, caveats, expiration, cycles and max depth."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from policyd.decisions import Permissionship
from policyd.engine import Engine
from policyd.errors import (
    CaveatError,
    CycleUnderExclusionError,
    InvalidRequestError,
    MaxDepthExceededError,
)
from policyd.relationship import ObjectRef
from policyd.store.base import Store
from policyd.store.memory import MemoryStore
from policyd.store.sqlite import SqliteStore
from tests.clock import FakeClock
from tests.engine.queries import FRESH, MakeEngine, check, request, subject

YES = Permissionship.HAS_PERMISSION
NO = Permissionship.NO_PERMISSION
MAYBE = Permissionship.CONDITIONAL


@dataclass(frozen=True)
class Case:
    """Relationships, one check, and the answer SpiceDB gives."""

    id: str
    relationships: tuple[str, ...]
    query: str
    expected: Permissionship
    context: dict[str, Any] | None = None
    missing: tuple[str, ...] = ()


def cases(*items: Case) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("case", items, ids=[c.id for c in items])


def run_case(make_engine: MakeEngine, policy: str, case: Case) -> None:
    engine = make_engine(policy, case.relationships)
    result = check(engine, case.query, case.context)
    assert (result.permissionship, result.missing) == (case.expected, case.missing)


# ---- operators ---------------------------------------------------------------------------------

OPERATORS = """
use self

definition user {
    relation friend: user
    permission view_profile = self + friend
}

definition group {
    relation member: user | group#member
}

definition folder {
    relation parent: folder
    relation viewer: user
    permission view = viewer + parent->view
}

definition doc {
    relation owner: user
    relation editor: user | group#member
    relation viewer: user | group#member
    relation reviewer: user
    relation banned: user
    relation folder: folder

    permission edit = owner + editor
    permission view = edit + viewer + folder->view
    permission review = editor & reviewer
    permission visible = view - banned
    permission nothing = nil
    permission nil_or_owner = nil + owner
    permission nil_and_owner = nil & owner
    permission owner_minus_nil = owner - nil
    permission in_any_folder = folder.any(view)
    permission in_every_folder = folder.all(view)
}
"""


@cases(
    Case("union-first-branch", ("doc:1#owner@user:a",), "doc:1#edit@user:a", YES),
    Case("union-second-branch", ("doc:1#editor@user:a",), "doc:1#edit@user:a", YES),
    Case("union-neither", ("doc:1#viewer@user:a",), "doc:1#edit@user:a", NO),
    Case("union-of-permission", ("doc:1#owner@user:a",), "doc:1#view@user:a", YES),
    Case(
        "intersection-both",
        ("doc:1#editor@user:a", "doc:1#reviewer@user:a"),
        "doc:1#review@user:a",
        YES,
    ),
    Case("intersection-left-only", ("doc:1#editor@user:a",), "doc:1#review@user:a", NO),
    Case("intersection-right-only", ("doc:1#reviewer@user:a",), "doc:1#review@user:a", NO),
    Case(
        "intersection-different-subjects",
        ("doc:1#editor@user:a", "doc:1#reviewer@user:b"),
        "doc:1#review@user:a",
        NO,
    ),
    Case("exclusion-kept", ("doc:1#viewer@user:a",), "doc:1#visible@user:a", YES),
    Case(
        "exclusion-removed",
        ("doc:1#viewer@user:a", "doc:1#banned@user:a"),
        "doc:1#visible@user:a",
        NO,
    ),
    Case(
        "exclusion-other-subject-banned",
        ("doc:1#viewer@user:a", "doc:1#banned@user:b"),
        "doc:1#visible@user:a",
        YES,
    ),
    Case("exclusion-banned-only", ("doc:1#banned@user:a",), "doc:1#visible@user:a", NO),
    Case(
        "arrow-grants",
        ("doc:1#folder@folder:f", "folder:f#viewer@user:a"),
        "doc:1#view@user:a",
        YES,
    ),
    Case(
        "arrow-recursive",
        ("doc:1#folder@folder:f", "folder:f#parent@folder:root", "folder:root#viewer@user:a"),
        "doc:1#view@user:a",
        YES,
    ),
    Case(
        "arrow-other-folder",
        ("doc:1#folder@folder:f", "folder:g#viewer@user:a"),
        "doc:1#view@user:a",
        NO,
    ),
    Case(
        "any-one-folder-suffices",
        ("doc:1#folder@folder:f", "doc:1#folder@folder:g", "folder:g#viewer@user:a"),
        "doc:1#in_any_folder@user:a",
        YES,
    ),
    Case(
        "all-needs-every-folder",
        ("doc:1#folder@folder:f", "doc:1#folder@folder:g", "folder:g#viewer@user:a"),
        "doc:1#in_every_folder@user:a",
        NO,
    ),
    Case(
        "all-every-folder-grants",
        (
            "doc:1#folder@folder:f",
            "doc:1#folder@folder:g",
            "folder:f#viewer@user:a",
            "folder:g#viewer@user:a",
        ),
        "doc:1#in_every_folder@user:a",
        YES,
    ),
    Case("all-with-no-folder-is-empty", (), "doc:1#in_every_folder@user:a", NO),
    Case("nil-grants-nothing", ("doc:1#owner@user:a",), "doc:1#nothing@user:a", NO),
    Case("nil-union", ("doc:1#owner@user:a",), "doc:1#nil_or_owner@user:a", YES),
    Case("nil-intersection", ("doc:1#owner@user:a",), "doc:1#nil_and_owner@user:a", NO),
    Case("minus-nil", ("doc:1#owner@user:a",), "doc:1#owner_minus_nil@user:a", YES),
    Case("self-grants-itself", (), "user:a#view_profile@user:a", YES),
    Case("self-not-another", (), "user:a#view_profile@user:b", NO),
    Case("self-or-friend", ("user:a#friend@user:b",), "user:a#view_profile@user:b", YES),
    Case(
        "userset-relationship",
        ("doc:1#viewer@group:eng#member", "group:eng#member@user:a"),
        "doc:1#view@user:a",
        YES,
    ),
    Case(
        "nested-userset",
        (
            "doc:1#viewer@group:all#member",
            "group:all#member@group:eng#member",
            "group:eng#member@user:a",
        ),
        "doc:1#view@user:a",
        YES,
    ),
    Case(
        "userset-non-member",
        ("doc:1#viewer@group:eng#member", "group:eng#member@user:a"),
        "doc:1#view@user:b",
        NO,
    ),
    Case("relation-checked-directly", ("doc:1#banned@user:a",), "doc:1#banned@user:a", YES),
)
def test_operators(make_engine: MakeEngine, case: Case) -> None:
    run_case(make_engine, OPERATORS, case)


# ---- userset subjects --------------------------------------------------------------------------


@cases(
    Case(
        "stored-userset",
        ("doc:1#viewer@group:eng#member",),
        "doc:1#view@group:eng#member",
        YES,
    ),
    Case(
        "userset-inside-userset",
        ("doc:1#viewer@group:all#member", "group:all#member@group:eng#member"),
        "doc:1#view@group:eng#member",
        YES,
    ),
    Case("userset-holds-itself", (), "group:eng#member@group:eng#member", YES),
    Case(
        "other-group",
        ("doc:1#viewer@group:eng#member",),
        "doc:1#view@group:ops#member",
        NO,
    ),
    Case(
        "members-do-not-make-the-userset",
        ("doc:1#viewer@user:a", "group:eng#member@user:a"),
        "doc:1#view@group:eng#member",
        NO,
    ),
    Case(
        "plain-group-is-not-its-members",
        ("doc:1#viewer@group:eng#member",),
        "doc:1#view@group:eng",
        NO,
    ),
)
def test_userset_subjects(make_engine: MakeEngine, case: Case) -> None:
    run_case(make_engine, OPERATORS, case)


def test_userset_subject_through_a_permission(make_engine: MakeEngine) -> None:
    # SpiceDB: doc:1#edit = owner + editor dispatches doc:1#editor, which is the subject itself.
    engine = make_engine(OPERATORS, ["group:eng#member@user:a"])
    assert check(engine, "group:eng#member@group:eng#member").permissionship is YES
    assert check(engine, "doc:1#edit@doc:1#editor").permissionship is YES


# ---- wildcards ---------------------------------------------------------------------------------

WILDCARDS = """
definition user {
    relation alias: user
}

definition team {
    relation member: user | user:* | team#member
}

definition doc {
    relation viewer: user | user:* | user#alias
    relation banned: user | user:*
    permission view = viewer - banned
}
"""


@cases(
    Case("wildcard-grants-anyone", ("doc:1#viewer@user:*",), "doc:1#view@user:stranger", YES),
    Case(
        "wildcard-minus-banned",
        ("doc:1#viewer@user:*", "doc:1#banned@user:b"),
        "doc:1#view@user:b",
        NO,
    ),
    Case(
        "wildcard-banned-everyone",
        ("doc:1#viewer@user:a", "doc:1#banned@user:*"),
        "doc:1#view@user:a",
        NO,
    ),
    Case("wildcard-other-doc", ("doc:2#viewer@user:*",), "doc:1#view@user:a", NO),
    Case(
        "wildcard-inside-same-type-userset",
        ("team:t#member@team:u#member", "team:u#member@user:*"),
        "team:t#member@user:anyone",
        YES,
    ),
    Case(
        "wildcard-is-not-a-userset",
        ("doc:1#viewer@user:*",),
        "doc:1#view@user:a#alias",
        NO,
    ),
    Case(
        "wildcard-does-not-grant-usersets-of-its-type",
        ("team:t#member@user:*",),
        "team:t#member@team:u#member",
        NO,
    ),
)
def test_wildcards(make_engine: MakeEngine, case: Case) -> None:
    run_case(make_engine, WILDCARDS, case)


# ---- caveats -----------------------------------------------------------------------------------

CAVEATS = """
caveat gate(open bool) {
    open
}

caveat under_limit(count int, limit int) {
    count < limit
}

caveat either(a bool, b bool) {
    a || b
}

caveat both(a bool, b bool) {
    a && b
}

definition user {}

definition group {
    relation member: user | user with gate
}

definition folder {
    relation viewer: user
}

definition doc {
    relation viewer: user | user with gate | group#member with gate
    relation quota: user with under_limit
    relation any_flag: user with either
    relation all_flags: user with both
    relation editor: user
    relation banned: user | user with gate
    relation folder: folder with gate

    permission view = viewer + folder->viewer
    permission view_or_edit = viewer + editor
    permission edit_and_view = editor & viewer
    permission visible = viewer - banned
    permission editor_visible = editor - banned
}
"""


@cases(
    Case("no-context", ("doc:1#viewer@user:a[gate]",), "doc:1#view@user:a", MAYBE, None, ("open",)),
    Case("true", ("doc:1#viewer@user:a[gate]",), "doc:1#view@user:a", YES, {"open": True}),
    Case("false", ("doc:1#viewer@user:a[gate]",), "doc:1#view@user:a", NO, {"open": False}),
    Case(
        "from-relationship", ('doc:1#viewer@user:a[gate:{"open":true}]',), "doc:1#view@user:a", YES
    ),
    Case(
        "relationship-wins-over-request",
        ('doc:1#viewer@user:a[gate:{"open":false}]',),
        "doc:1#view@user:a",
        NO,
        {"open": True},
    ),
    Case(
        "contexts-merged-grant",
        ('doc:1#quota@user:a[under_limit:{"limit":10}]',),
        "doc:1#quota@user:a",
        YES,
        {"count": 5},
    ),
    Case(
        "contexts-merged-deny",
        ('doc:1#quota@user:a[under_limit:{"limit":10}]',),
        "doc:1#quota@user:a",
        NO,
        {"count": 50},
    ),
    Case(
        "names-the-missing-parameter",
        ('doc:1#quota@user:a[under_limit:{"limit":10}]',),
        "doc:1#quota@user:a",
        MAYBE,
        None,
        ("count",),
    ),
    Case(
        "names-every-missing-parameter",
        ("doc:1#quota@user:a[under_limit]",),
        "doc:1#quota@user:a",
        MAYBE,
        None,
        ("count", "limit"),
    ),
    Case(
        "partial-or-decided",
        ("doc:1#any_flag@user:a[either]",),
        "doc:1#any_flag@user:a",
        YES,
        {"a": True},
    ),
    Case(
        "partial-or-undecided",
        ("doc:1#any_flag@user:a[either]",),
        "doc:1#any_flag@user:a",
        MAYBE,
        {"a": False},
        ("b",),
    ),
    Case(
        "partial-and-decided",
        ("doc:1#all_flags@user:a[both]",),
        "doc:1#all_flags@user:a",
        NO,
        {"b": False},
    ),
    Case(
        "partial-and-undecided",
        ("doc:1#all_flags@user:a[both]",),
        "doc:1#all_flags@user:a",
        MAYBE,
        {"a": True},
        ("b",),
    ),
    Case(
        "union-with-a-grant",
        ("doc:1#viewer@user:a[gate]", "doc:1#editor@user:a"),
        "doc:1#view_or_edit@user:a",
        YES,
    ),
    Case(
        "union-of-two-conditionals",
        ("doc:1#viewer@user:a[gate]", "doc:1#folder@folder:f[gate]", "folder:f#viewer@user:a"),
        "doc:1#view@user:a",
        MAYBE,
        None,
        ("open",),
    ),
    Case(
        "intersection-conditional",
        ("doc:1#viewer@user:a[gate]", "doc:1#editor@user:a"),
        "doc:1#edit_and_view@user:a",
        MAYBE,
        None,
        ("open",),
    ),
    Case(
        "intersection-denied-side-wins",
        ("doc:1#viewer@user:a[gate]",),
        "doc:1#edit_and_view@user:a",
        NO,
    ),
    Case(
        "exclusion-of-conditional",
        ("doc:1#editor@user:a", "doc:1#banned@user:a[gate]"),
        "doc:1#editor_visible@user:a",
        MAYBE,
        None,
        ("open",),
    ),
    Case(
        "exclusion-of-conditional-decided",
        ("doc:1#editor@user:a", "doc:1#banned@user:a[gate]"),
        "doc:1#editor_visible@user:a",
        NO,
        {"open": True},
    ),
    Case(
        "caveat-on-userset-edge",
        ("doc:1#viewer@group:g#member[gate]", "group:g#member@user:a"),
        "doc:1#view@user:a",
        MAYBE,
        None,
        ("open",),
    ),
    Case(
        "caveat-on-both-edges",
        ("doc:1#viewer@group:g#member[gate]", "group:g#member@user:a[gate]"),
        "doc:1#view@user:a",
        YES,
        {"open": True},
    ),
    Case(
        "caveat-on-arrow-edge",
        ("doc:1#folder@folder:f[gate]", "folder:f#viewer@user:a"),
        "doc:1#view@user:a",
        MAYBE,
        None,
        ("open",),
    ),
    Case(
        "caveat-on-arrow-edge-false",
        ("doc:1#folder@folder:f[gate]", "folder:f#viewer@user:a"),
        "doc:1#view@user:a",
        NO,
        {"open": False},
    ),
)
def test_caveats(make_engine: MakeEngine, case: Case) -> None:
    run_case(make_engine, CAVEATS, case)


# ---- expiration --------------------------------------------------------------------------------

EXPIRATION = """
use expiration

definition user {}

definition group {
    relation member: user with expiration
}

definition doc {
    relation viewer: user with expiration | group#member
    permission view = viewer
}
"""


def stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(params=["memory", "sqlite-memory", "sqlite-file"])
def clocked_store(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Any) -> Store:
    """A store of each local backend reading time from ``clock``."""
    match request.param:
        case "memory":
            return MemoryStore(clock=clock)
        case "sqlite-memory":
            return SqliteStore(":memory:", clock=clock)
        case _:
            return SqliteStore(tmp_path / "policyd.db", clock=clock)


@pytest.mark.parametrize(
    "relationships",
    [
        pytest.param(["doc:1#viewer@user:a[expiration:{at}]"], id="direct"),
        pytest.param(
            ["doc:1#viewer@group:g#member", "group:g#member@user:a[expiration:{at}]"],
            id="through-group",
        ),
    ],
)
def test_expired_relationship_stops_granting(
    make_engine: MakeEngine,
    clocked_store: Store,
    clock: FakeClock,
    relationships: list[str],
) -> None:
    at = stamp(clock.now + 60)
    engine = make_engine(EXPIRATION, [r.format(at=at) for r in relationships], store=clocked_store)
    assert check(engine, "doc:1#view@user:a").permissionship is YES
    clock.advance(120)
    assert check(engine, "doc:1#view@user:a").permissionship is NO
    assert engine.list_objects("doc", "view", subject("user:a")).objects == ()


# ---- cycles in data ----------------------------------------------------------------------------

CYCLES = """
definition user {}

definition group {
    relation member: user | group#member
    relation banned: user
    permission allowed = member - banned
}

definition folder {
    relation parent: folder
    relation viewer: user
    relation banned: user
    permission view = (viewer + parent->view) - banned
    permission view_all = viewer & parent.all(view_all)
}
"""

GROUP_CYCLE = (
    "group:a#member@group:b#member",
    "group:b#member@group:c#member",
    "group:c#member@group:a#member",
    "group:b#member@user:alice",
    "group:c#banned@user:alice",
)
FOLDER_CYCLE = (
    "folder:f1#parent@folder:f2",
    "folder:f2#parent@folder:f1",
    "folder:f3#parent@folder:f1",
    "folder:f2#viewer@user:alice",
    "folder:f1#viewer@user:bob",
    "folder:f1#banned@user:carol",
    "folder:f2#viewer@user:carol",
)


@cases(
    *(
        Case(f"group-{g}-member-{u}", GROUP_CYCLE, f"group:{g}#member@user:{u}", want)
        for g in "abc"
        for u, want in (("alice", YES), ("bob", NO))
    ),
    Case("exclusion-in-cycle-kept", GROUP_CYCLE, "group:a#allowed@user:alice", YES),
    Case("exclusion-in-cycle-removed", GROUP_CYCLE, "group:c#allowed@user:alice", NO),
    Case(
        "self-loop",
        ("group:a#member@group:a#member",),
        "group:a#member@user:alice",
        NO,
    ),
    Case("folder-cycle-f1", FOLDER_CYCLE, "folder:f1#view@user:alice", YES),
    Case("folder-cycle-f2-via-f1", FOLDER_CYCLE, "folder:f2#view@user:bob", YES),
    Case("folder-cycle-below", FOLDER_CYCLE, "folder:f3#view@user:alice", YES),
    Case("folder-cycle-stranger", FOLDER_CYCLE, "folder:f3#view@user:dave", NO),
    Case("folder-cycle-banned-here", FOLDER_CYCLE, "folder:f1#view@user:carol", NO),
    Case("folder-cycle-banned-above", FOLDER_CYCLE, "folder:f3#view@user:carol", NO),
    Case("folder-cycle-not-banned-there", FOLDER_CYCLE, "folder:f2#view@user:carol", YES),
    Case("all-arrow-cycle-never-grounds", FOLDER_CYCLE, "folder:f1#view_all@user:bob", NO),
)
def test_cycles_in_data(make_engine: MakeEngine, case: Case) -> None:
    run_case(make_engine, CYCLES, case)


def test_cycle_answers_do_not_depend_on_which_check_ran_first(make_engine: MakeEngine) -> None:
    engine = make_engine(CYCLES, FOLDER_CYCLE)
    queries = [f"folder:{f}#view@user:{u}" for f in ("f1", "f2", "f3") for u in ("alice", "bob")]
    alone = {q: check(engine, q).permissionship for q in queries}
    batched = engine.check_many([request(q) for q in reversed(queries)], consistency=FRESH)
    assert {q: r.permissionship for q, r in zip(reversed(queries), batched, strict=True)} == alone


# ---- cycles under exclusion --------------------------------------------------------------------

NEGATED_CYCLE = """
definition user {}

definition document {
    relation restricted: user | document#viewer
    relation viewer_direct: user
    relation banned: user
    permission viewer = viewer_direct - restricted
    permission shown = banned + viewer
    permission shown_or_banned = viewer + banned
}
"""

SELF_RESTRICTING = (
    "document:1#viewer_direct@user:jon",
    "document:1#restricted@document:1#viewer",
)


@pytest.mark.parametrize("permission", ["viewer", "restricted"])
def test_cycle_through_exclusion_fails_closed(make_engine: MakeEngine, permission: str) -> None:
    # viewer = viewer_direct - restricted, where restricted holds viewer: jon would hold
    # viewer exactly when he does not. Neither viewer nor restricted may be granted.
    engine = make_engine(NEGATED_CYCLE, SELF_RESTRICTING)
    with pytest.raises(CycleUnderExclusionError, match="document:1#viewer") as raised:
        check(engine, f"document:1#{permission}@user:jon")
    assert raised.value.code == "cycle-under-exclusion"
    assert "subtracted side of an exclusion" in str(raised.value)


def test_cycle_through_exclusion_fails_every_read(make_engine: MakeEngine) -> None:
    engine = make_engine(NEGATED_CYCLE, SELF_RESTRICTING)
    jon = subject("user:jon")
    with pytest.raises(CycleUnderExclusionError):
        engine.check_many([request("document:1#viewer@user:jon")], consistency=FRESH)
    with pytest.raises(CycleUnderExclusionError):
        engine.list_objects("document", "viewer", jon, consistency=FRESH)
    with pytest.raises(CycleUnderExclusionError):
        engine.list_subjects(ObjectRef("document", "1"), "viewer", "user", consistency=FRESH)
    with pytest.raises(CycleUnderExclusionError):
        engine.list_objects("document", "restricted", jon, consistency=FRESH)


@pytest.mark.parametrize("permission", ["shown", "shown_or_banned"])
def test_a_grant_beside_a_negated_cycle_settles_the_union(
    make_engine: MakeEngine, permission: str
) -> None:
    engine = make_engine(NEGATED_CYCLE, (*SELF_RESTRICTING, "document:1#banned@user:jon"))
    assert check(engine, f"document:1#{permission}@user:jon").permissionship is YES


def test_a_negated_cycle_nobody_reaches_changes_nothing(make_engine: MakeEngine) -> None:
    engine = make_engine(NEGATED_CYCLE, (*SELF_RESTRICTING, "document:2#viewer_direct@user:ann"))
    assert check(engine, "document:2#viewer@user:ann").permissionship is YES
    assert check(engine, "document:1#viewer@user:ann").permissionship is NO


# ---- errors settle in any order -----------------------------------------------------------------

ORDERS = """
caveat active(now timestamp, until timestamp) {
    now < until
}

definition user {}

definition doc {
    relation conditional_viewer: user with active
    relation plain_viewer: user
    relation required: user
    permission view_ab = conditional_viewer + plain_viewer
    permission view_ba = plain_viewer + conditional_viewer
    permission both_ab = conditional_viewer & required
    permission both_ba = required & conditional_viewer
    permission kept_ab = conditional_viewer - plain_viewer
    permission kept_ba = required - conditional_viewer
}
"""

MALFORMED = {"now": "next tuesday"}


@pytest.mark.parametrize(
    ("relationships", "permission", "expected"),
    [
        pytest.param(("plain_viewer",), "view_ab", YES, id="union-grant-after-error"),
        pytest.param(("plain_viewer",), "view_ba", YES, id="union-grant-before-error"),
        pytest.param((), "both_ab", NO, id="intersection-denial-after-error"),
        pytest.param((), "both_ba", NO, id="intersection-denial-before-error"),
        pytest.param(("plain_viewer",), "kept_ab", NO, id="exclusion-removed-despite-error"),
        pytest.param((), "kept_ba", NO, id="exclusion-base-denied-despite-error"),
    ],
)
def test_a_caveat_error_yields_to_an_order_free_answer(
    make_engine: MakeEngine, relationships: tuple[str, ...], permission: str, expected: Any
) -> None:
    stored = [
        'doc:1#conditional_viewer@user:a[active:{"until": "2099-01-01T00:00:00Z"}]',
        *(f"doc:1#{r}@user:a" for r in relationships),
    ]
    engine = make_engine(ORDERS, stored)
    assert check(engine, f"doc:1#{permission}@user:a", MALFORMED).permissionship is expected


@pytest.mark.parametrize("permission", ["view_ab", "view_ba", "both_ab", "both_ba", "kept_ba"])
def test_a_caveat_error_surfaces_when_nothing_else_decides(
    make_engine: MakeEngine, permission: str
) -> None:
    stored = [
        'doc:1#conditional_viewer@user:a[active:{"until": "2099-01-01T00:00:00Z"}]',
        "doc:1#required@user:a",
    ]
    engine = make_engine(ORDERS, stored)
    with pytest.raises(CaveatError, match="now"):
        check(engine, f"doc:1#{permission}@user:a", MALFORMED)


# ---- max depth ---------------------------------------------------------------------------------


def folder_chain(length: int) -> list[str]:
    """folder:f0 under f1 under … f{length}, which alone alice can view: ``length`` arrows up."""
    links = [f"folder:f{i}#parent@folder:f{i + 1}" for i in range(length)]
    return [*links, f"folder:f{length}#viewer@user:alice"]


def group_chain(length: int) -> list[str]:
    """group:g0 ⊇ g1 ⊇ … ⊇ g{length}, which alone holds alice: alice is ``length`` levels down."""
    links = [f"group:g{i}#member@group:g{i + 1}#member" for i in range(length)]
    return [*links, f"group:g{length}#member@user:alice"]


@pytest.mark.parametrize("user", ["alice", "bob"])
def test_chain_longer_than_max_depth_raises(make_engine: MakeEngine, user: str) -> None:
    engine = make_engine(CYCLES, folder_chain(30), max_depth=10)
    with pytest.raises(MaxDepthExceededError, match="more than 10 levels") as raised:
        check(engine, f"folder:f0#view@user:{user}")
    assert raised.value.code == "max-depth-exceeded"
    assert "raise max depth" in str(raised.value)


@pytest.mark.parametrize(
    ("chain", "type_name", "member"),
    [(folder_chain, "folder", "view"), (group_chain, "group", "member")],
    ids=["folders", "groups"],
)
def test_chain_of_100_with_max_depth_200(
    make_engine: MakeEngine, chain: Any, type_name: str, member: str
) -> None:
    engine = make_engine(CYCLES, chain(100), max_depth=200)
    top = f"{type_name}:{type_name[0]}0#{member}"
    assert check(engine, f"{top}@user:alice").permissionship is YES
    assert check(engine, f"{top}@user:bob").permissionship is NO
    listed = engine.list_objects(type_name, member, subject("user:alice")).objects
    assert len(listed) == 101


def test_chain_deeper_than_the_python_stack_is_a_clear_error(make_engine: MakeEngine) -> None:
    engine = make_engine(CYCLES, folder_chain(2000), max_depth=5000)
    with pytest.raises(MaxDepthExceededError, match="max depth"):
        check(engine, "folder:f0#view@user:alice")


def test_engine_refuses_max_depth_below_one() -> None:
    with pytest.raises(InvalidRequestError) as raised:
        Engine(MemoryStore(), max_depth=0)
    assert raised.value.field == "max_depth"


@pytest.mark.parametrize(
    ("query_text", "field", "suggestion"),
    [
        ("folders:f0#view@user:alice", "resource.type", "did you mean 'folder'?"),
        ("folder:f0#veiw@user:alice", "permission", "did you mean 'view'?"),
        ("folder:f0#view@usr:alice", "subject.type", "did you mean 'user'?"),
        ("folder:f0#view@group:g#membr", "subject.relation", "did you mean 'member'?"),
        ("folder:f0#zzz@user:alice", "permission", None),
    ],
)
def test_a_mistyped_name_gets_the_closest_known_one(
    make_engine: MakeEngine, query_text: str, field: str, suggestion: str | None
) -> None:
    engine = make_engine(CYCLES, ())
    with pytest.raises(InvalidRequestError) as raised:
        check(engine, query_text)
    assert raised.value.field == field
    if suggestion is None:
        assert "did you mean" not in raised.value.message
    else:
        assert raised.value.message.endswith(suggestion)
