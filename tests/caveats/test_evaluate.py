"""Tests for policyd.caveats.evaluate: SpiceDB semantics, each type, partial contexts, errors."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policyd.caveats import CaveatResult, merge_contexts
from policyd.errors import CaveatError
from tests.caveats.helpers import FALSE, TRUE, caveat, missing

# --- SpiceDB conformance cases (shared/conformance/spicedb/integration) ---------------------

CONFORMANCE = [
    pytest.param(
        "current_time timestamp, expiration timestamp",
        "current_time < expiration",
        {"current_time": "2023-01-01T00:00:00Z", "expiration": "2024-12-01T00:00:00Z"},
        TRUE,
        id="timestamp-before",
    ),
    pytest.param(
        "current_time timestamp, expiration timestamp",
        "current_time < expiration",
        {"current_time": "2023-12-01T00:01:00Z", "expiration": "2022-12-01T00:00:00Z"},
        FALSE,
        id="timestamp-after",
    ),
    pytest.param(
        "current_time timestamp, expiration timestamp",
        "current_time < expiration",
        {"expiration": "2024-12-01T00:00:00Z"},
        missing("current_time"),
        id="timestamp-missing-current-time",
    ),
    pytest.param(
        "expires_at timestamp, now timestamp",
        "now < expires_at",
        {"expires_at": "2024-10-03T07:16:28.068632-07:00", "now": "2024-10-03T14:16:28Z"},
        TRUE,
        id="timestamp-offset-and-fraction",
    ),
    pytest.param(
        "user_ip ipaddress, cidr string",
        "user_ip.in_cidr(cidr)",
        {"cidr": "10.0.0.0/8", "user_ip": "10.2.3.4"},
        TRUE,
        id="in-cidr-inside",
    ),
    pytest.param(
        "user_ip ipaddress, cidr string",
        "user_ip.in_cidr(cidr)",
        {"cidr": "10.0.0.0/8", "user_ip": "1.2.3.4"},
        FALSE,
        id="in-cidr-outside",
    ),
    pytest.param(
        "user_ip ipaddress, cidr string",
        "user_ip.in_cidr(cidr)",
        {"cidr": "10.0.0.0/8"},
        missing("user_ip"),
        id="in-cidr-missing-ip",
    ),
    pytest.param(
        "user_ip ipaddress, cidr string",
        "!user_ip.in_cidr(cidr)",
        {"cidr": "1.0.0.0/8", "user_ip": "1.2.3.4"},
        FALSE,
        id="not-in-cidr",
    ),
    pytest.param(
        "somecondition int", "somecondition == 42", {"somecondition": 42}, TRUE, id="int-eq"
    ),
    pytest.param(
        "somecondition int", "somecondition == 42", {"somecondition": 41}, FALSE, id="int-ne"
    ),
    pytest.param(
        "somecondition int", "somecondition == 42", {}, missing("somecondition"), id="int-missing"
    ),
    pytest.param(
        "somelist list<int>",
        "somelist.contains(42)",
        {"somelist": [42, 41]},
        TRUE,
        id="list-contains",
    ),
    pytest.param("somelist list<int>", "42 in somelist", {"somelist": [12]}, FALSE, id="list-in"),
    pytest.param(
        "somelist list<int>",
        "somelist.all(i, i >= 42)",
        {"somelist": [42, 43]},
        TRUE,
        id="list-all",
    ),
    pytest.param(
        "somelist list<int>",
        "somelist.all(i, i >= 42)",
        {"somelist": [42, 41]},
        FALSE,
        id="list-all-no",
    ),
    pytest.param(
        "somemap map<any>",
        "somemap.foo == 42 && somemap.bar < 56",
        {"somemap": {"foo": 42, "bar": 10}},
        TRUE,
        id="map-any-access",
    ),
    pytest.param(
        "somemap map<any>",
        "somemap.foo == 42 && somemap.bar < 56",
        {"somemap": {"foo": 42, "bar": 57}},
        FALSE,
        id="map-any-access-false",
    ),
    pytest.param(
        "limit uint, count uint", "count < limit", {"limit": 4, "count": 3}, TRUE, id="uint-lt"
    ),
    pytest.param(
        "limit uint, count uint", "count < limit", {"limit": 2, "count": 3}, FALSE, id="uint-ge"
    ),
    pytest.param(
        "limit uint, count uint", "count < limit", {"limit": 2}, missing("count"), id="uint-missing"
    ),
    pytest.param(
        "admin_teams list<string>, me string",
        "me in admin_teams",
        {"admin_teams": ["A"], "me": "A"},
        TRUE,
        id="string-in-list",
    ),
    pytest.param(
        "admin_teams list<string>, me string",
        "admin_teams.exists(t, t == me)",
        {"admin_teams": ["B"], "me": "A"},
        FALSE,
        id="list-exists",
    ),
    pytest.param(
        "admin_teams list<string>, me string",
        "admin_teams.exists(t, t == me)",
        {"me": "A"},
        missing("admin_teams"),
        id="list-exists-missing",
    ),
    pytest.param(
        "thirdcondition bool", "thirdcondition", {"thirdcondition": True}, TRUE, id="bool"
    ),
    pytest.param(
        "thirdcondition bool", "thirdcondition", {"thirdcondition": False}, FALSE, id="bool-no"
    ),
    pytest.param(
        "anothercondition string",
        "anothercondition == 'hello world'",
        {"anothercondition": "hello world"},
        TRUE,
        id="string-eq",
    ),
    pytest.param("attr string", "attr == '一级'", {"attr": "一级"}, TRUE, id="string-unicode"),
]


@pytest.mark.parametrize(("params", "expression", "context", "expected"), CONFORMANCE)
def test_spicedb_conformance(
    params: str, expression: str, context: dict[str, Any], expected: CaveatResult
) -> None:
    assert caveat(params, expression).evaluate(context) == expected


# --- Each parameter type: JSON in, CEL semantics out ------------------------------------------

TYPES = [
    pytest.param("x int", "x + 1 == -4", {"x": -5}, TRUE, id="int-arithmetic"),
    pytest.param("x int", "x == 3", {"x": 3.0}, TRUE, id="int-from-integral-double"),
    pytest.param("x uint", "x + 1u == 6u", {"x": 5}, TRUE, id="uint-arithmetic-with-u-literal"),
    pytest.param("x uint", "x == 18446744073709551615u", {"x": 2**64 - 1}, TRUE, id="uint-max"),
    pytest.param("x list<uint>", "x.all(v, v + 1u > 1u)", {"x": [1, 2]}, TRUE, id="list-uint"),
    pytest.param("x double", "x > 1.5", {"x": 2}, TRUE, id="double-from-int"),
    pytest.param("x double", "x * 2.0 == 5.0", {"x": 2.5}, TRUE, id="double-arithmetic"),
    pytest.param("x bool", "!x", {"x": False}, TRUE, id="bool-not"),
    pytest.param("x string", "x.startsWith('ab') && size(x) == 3", {"x": "abc"}, TRUE, id="string"),
    pytest.param("x string", "x.contains('b')", {"x": "abc"}, TRUE, id="string-contains"),
    pytest.param("x string", "x.matches('^a.c$')", {"x": "abc"}, TRUE, id="string-matches"),
    pytest.param("x bytes", "x == b'hi'", {"x": "hi"}, TRUE, id="bytes-from-string"),
    pytest.param("x duration", "x == duration('90m')", {"x": "1h30m"}, TRUE, id="duration"),
    pytest.param("x duration", "x < duration('1s')", {"x": "999ms"}, TRUE, id="duration-ms"),
    pytest.param(
        "now timestamp, created timestamp",
        "now - created < duration('24h')",
        {"now": "2024-01-02T00:00:00Z", "created": "2024-01-01T01:00:00Z"},
        TRUE,
        id="timestamp-minus-timestamp",
    ),
    pytest.param(
        "now timestamp, ttl duration",
        "now + ttl > timestamp('2024-01-01T12:00:00Z')",
        {"now": "2024-01-01T00:00:00Z", "ttl": "13h"},
        TRUE,
        id="timestamp-plus-duration",
    ),
    pytest.param(
        "now timestamp",
        "now.getHours() == 5",
        {"now": "2024-01-01T05:06:07Z"},
        TRUE,
        id="timestamp-hours",
    ),
    pytest.param("x list<string>", "size(x) == 2 && 'b' in x", {"x": ["a", "b"]}, TRUE, id="list"),
    pytest.param(
        "x list<list<int>>", "x[1][0] == 3", {"x": [[1, 2], [3]]}, TRUE, id="list-of-lists"
    ),
    pytest.param("m map<int>", "m['k'] == 1 && m.j == 2", {"m": {"k": 1, "j": 2}}, TRUE, id="map"),
    pytest.param("m map<int>", "'k' in m && m.contains('k')", {"m": {"k": 1}}, TRUE, id="map-keys"),
    pytest.param("m map<int>", "has(m.z)", {"m": {"k": 1}}, FALSE, id="map-has"),
    pytest.param("m map<string>", "size(m) == 0", {"m": {}}, TRUE, id="map-size"),
    pytest.param(
        "m map<any>", "m.a.b[1] == 'y'", {"m": {"a": {"b": ["x", "y"]}}}, TRUE, id="any-nested"
    ),
    pytest.param("m map<any>", "m.n == null", {"m": {"n": None}}, TRUE, id="any-null"),
    pytest.param("v any", "v == 3", {"v": 3}, TRUE, id="any-int"),
    pytest.param(
        "ip ipaddress, cidr string",
        "ip.in_cidr(cidr)",
        {"ip": "2001:db8::1", "cidr": "2001:db8::/32"},
        TRUE,
        id="ipv6-in-cidr",
    ),
    pytest.param(
        "ip ipaddress", "ip.in_cidr('10.0.0.0/8')", {"ip": "::1"}, FALSE, id="ipv6-in-ipv4-cidr"
    ),
    pytest.param(
        "ip ipaddress", "in_cidr(ip, '10.1.0.0/16')", {"ip": "10.1.9.9"}, TRUE, id="in-cidr-call"
    ),
]


@pytest.mark.parametrize(("params", "expression", "context", "expected"), TYPES)
def test_types_and_functions(
    params: str, expression: str, context: dict[str, Any], expected: CaveatResult
) -> None:
    assert caveat(params, expression).evaluate(context) == expected


NATIVE_FUNCTIONS = [
    pytest.param("s string", "s.endsWith('c')", {"s": "abc"}, id="endsWith"),
    pytest.param(
        "s string",
        "int(s) == 12 && uint(s) == 12u && double(s) == 12.0",
        {"s": "12"},
        id="int-uint-double",
    ),
    pytest.param(
        "n int", "string(n) == '5' && bytes(string(n)) == b'5'", {"n": 5}, id="string-bytes"
    ),
    pytest.param("n int", "dyn(n) == 5 && type(n) == int", {"n": 5}, id="dyn-type"),
    pytest.param(
        "t timestamp",
        "t.getFullYear() == 2024 && t.getMonth() == 1 && t.getDate() == 3 && "
        "t.getDayOfMonth() == 2 && t.getDayOfWeek() == 6 && t.getDayOfYear() == 33",
        {"t": "2024-02-03T04:05:06.789Z"},
        id="timestamp-date-accessors",
    ),
    pytest.param(
        "t timestamp",
        "t.getHours() == 4 && t.getMinutes() == 5 && t.getSeconds() == 6 && "
        "t.getMilliseconds() == 789",
        {"t": "2024-02-03T04:05:06.789Z"},
        id="timestamp-time-accessors",
    ),
    pytest.param("d duration", "d.getSeconds() == 90", {"d": "1m30s"}, id="duration-accessor"),
    pytest.param(
        "l list<int>",
        "l.exists_one(x, x == 1) && l.map(x, x * 2).filter(x, x > 2) == [4]",
        {"l": [1, 2]},
        id="macros",
    ),
]


@pytest.mark.parametrize(("params", "expression", "context"), NATIVE_FUNCTIONS)
def test_native_functions_compile_and_run(
    params: str, expression: str, context: dict[str, Any]
) -> None:
    assert caveat(params, expression).evaluate(context) == TRUE


def test_python_values_are_accepted_too() -> None:
    compiled = caveat("now timestamp, ttl duration", "now + ttl > now")
    now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert compiled.evaluate({"now": now, "ttl": dt.timedelta(seconds=1)}) == TRUE


# --- Partial contexts: MISSING with names, unless the supplied ones decide --------------------

PARTIAL = [
    pytest.param("a bool, b bool", "a || b", {"a": True}, TRUE, id="or-decided-by-left"),
    pytest.param("a bool, b bool", "a || b", {"b": True}, TRUE, id="or-decided-by-right"),
    pytest.param("a bool, b bool", "a || b", {"a": False}, missing("b"), id="or-undecided"),
    pytest.param("a bool, b bool", "a && b", {"a": False}, FALSE, id="and-decided"),
    pytest.param("a bool, b bool", "a && b", {"b": True}, missing("a"), id="and-undecided"),
    pytest.param("a bool, b bool", "a && b", {}, missing("a", "b"), id="and-nothing-supplied"),
    pytest.param(
        "b bool, a bool", "a && b", {}, missing("b", "a"), id="names-in-declaration-order"
    ),
    pytest.param("a bool, b bool", "!(a && b)", {"a": False}, TRUE, id="not-and"),
    pytest.param("a bool, b bool", "!(a || b)", {"a": False}, missing("b"), id="not-or-undecided"),
    pytest.param(
        "a bool, b bool, c bool", "(a || b) && c", {"c": False}, FALSE, id="parentheses-decided"
    ),
    pytest.param(
        "a bool, b bool, c bool",
        "(a || b) && c",
        {"a": True},
        missing("c"),
        id="parentheses-undecided",
    ),
    pytest.param(
        "a int, b int, c int", "a < b && b < c || a == 0", {"a": 0}, TRUE, id="precedence-or-last"
    ),
    pytest.param(
        "a int, b int, c int",
        "a < b && (b < c || a == 0)",
        {"a": 5, "b": 1},
        FALSE,
        id="leaf-with-two-parameters",
    ),
    pytest.param(
        "a bool, b bool", "!a == b", {"a": True}, missing("b"), id="not-binds-tighter-than-eq"
    ),
    pytest.param("a bool, b bool", "(a) == b", {"b": True}, missing("a"), id="group-inside-leaf"),
    pytest.param(
        "c bool, x int, y int", "c ? x > 0 : y > 0", {"c": True, "x": 1}, TRUE, id="ternary-then"
    ),
    pytest.param(
        "c bool, x int, y int", "c ? x > 0 : y > 0", {"c": False}, missing("y"), id="ternary-else"
    ),
    pytest.param(
        "c bool, x int, y int",
        "c ? x > 0 : y > 0",
        {"x": 1},
        missing("c", "y"),
        id="ternary-unknown",
    ),
    pytest.param(
        "c bool, x int, y int",
        "c ? x > 0 : y > 0",
        {"x": 1, "y": 2},
        TRUE,
        id="ternary-branches-agree",
    ),
    pytest.param(
        "s string, a bool", "s == 'x && y' || a", {"a": True}, TRUE, id="operators-inside-strings"
    ),
    pytest.param(
        "s string, a bool", 's == "(" && a', {"a": False}, FALSE, id="parenthesis-inside-string"
    ),
    pytest.param("a bool, b bool", "a // first\n|| b // second", {"b": True}, TRUE, id="comments"),
    pytest.param(
        "l list<int>, a int",
        "l.exists(x, x > 0 && x == a) || a == 7",
        {"a": 7},
        TRUE,
        id="operators-inside-macro",
    ),
    pytest.param(
        "l list<int>, a int",
        "l.exists(x, x > 0 && x == a) || a == 7",
        {"a": 1},
        missing("l"),
        id="macro-is-one-leaf",
    ),
    pytest.param("a bool, unused int", "a", {"a": True}, TRUE, id="unused-parameter-not-needed"),
    pytest.param(
        "a int, b int", "a == 1 || a / b == 1", {"a": 1}, TRUE, id="decided-before-error-leaf"
    ),
]


@pytest.mark.parametrize(("params", "expression", "context", "expected"), PARTIAL)
def test_partial_contexts(
    params: str, expression: str, context: dict[str, Any], expected: CaveatResult
) -> None:
    assert caveat(params, expression).evaluate(context) == expected


def test_error_in_one_branch_is_absorbed_when_the_other_decides() -> None:
    compiled = caveat("m map<int>, a bool", "m.missing == 1 || a")
    assert compiled.evaluate({"m": {}, "a": True}) == TRUE
    with pytest.raises(CaveatError, match="no such key"):
        compiled.evaluate({"m": {}, "a": False})


def test_missing_wins_over_errors_as_in_cel_go() -> None:
    compiled = caveat("m map<int>, a bool", "m.missing == 1 || a")
    assert compiled.evaluate({"m": {}}) == missing("a")


def test_extra_context_keys_are_ignored() -> None:
    assert caveat("a bool", "a").evaluate({"a": True, "other": object()}) == TRUE


def test_merge_contexts_relationship_wins() -> None:
    merged = merge_contexts({"a": 1, "b": 2}, {"b": 3, "c": 4})
    assert merged == {"a": 1, "b": 2, "c": 4}
    assert merge_contexts(None, None) == {}


# --- Evaluation errors -----------------------------------------------------------------------

EVALUATION_ERRORS = [
    pytest.param("m map<int>", "m.k == 1", {"m": {}}, "no such key: 'k'", id="missing-map-key"),
    pytest.param("l list<int>", "l[3] == 1", {"l": [1]}, "index out of bounds", id="index"),
    pytest.param("a int, b int", "a / b == 1", {"a": 1, "b": 0}, "division by zero", id="division"),
    pytest.param("v any", "v + 1 == 2", {"v": "x"}, "string \\+ int", id="runtime-type-error"),
    pytest.param("v any", "v", {"v": 3}, "gave int 3, not a bool", id="any-not-bool"),
    pytest.param(
        "ip ipaddress", "ip.in_cidr('nonsense')", {"ip": "1.2.3.4"}, "in_cidr", id="bad-cidr"
    ),
    pytest.param("v any", "v.contains(1)", {"v": 1}, "contains", id="contains-on-int"),
]


@pytest.mark.parametrize(("params", "expression", "context", "message"), EVALUATION_ERRORS)
def test_evaluation_errors(
    params: str, expression: str, context: dict[str, Any], message: str
) -> None:
    compiled = caveat(params, expression)
    with pytest.raises(CaveatError, match=message) as raised:
        compiled.evaluate(context)
    assert raised.value.code == "caveat-error"


# --- Property: three-valued evaluation agrees with Python's -----------------------------------

_ints = st.one_of(st.none(), st.integers(-3, 3))


@given(a=_ints, b=_ints, c=_ints, d=_ints)
def test_or_of_comparisons_agrees_with_kleene_logic(
    a: int | None, b: int | None, c: int | None, d: int | None
) -> None:
    compiled = caveat("a int, b int, c int, d int", "a < b || c == d")
    values = {"a": a, "b": b, "c": c, "d": d}
    context = {k: v for k, v in values.items() if v is not None}
    left = None if a is None or b is None else a < b
    right = None if c is None or d is None else c == d
    result = compiled.evaluate(context)
    if left or right:
        assert result == TRUE
    elif left is False and right is False:
        assert result == FALSE
    else:
        needed = [
            n for n, side in (("a", left), ("b", left), ("c", right), ("d", right)) if side is None
        ]
        assert result == missing(*(n for n in needed if n not in context))
