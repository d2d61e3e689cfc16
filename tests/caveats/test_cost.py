"""Tests for policyd.caveats.cost: refused at write when estimated too costly, stopped at run."""

from __future__ import annotations

from typing import Any

import pytest

from policyd.caveats import CaveatCompileError
from policyd.caveats.cost import ASSUMED_RANGE, MAX_COST, estimate, instrument
from policyd.errors import CaveatError
from tests.caveats.helpers import FALSE, TRUE, caveat

DIGITS = "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"


def nested_over_digits(depth: int) -> str:
    """``depth`` comprehensions nested over ten-element list literals (10**depth iterations)."""
    names = [f"v{i}" for i in range(depth)]
    body = " + ".join(names) + " >= 0"
    for name in reversed(names):
        body = f"{DIGITS}.all({name}, {body})"
    return body


# --- Static estimate at policy write ---------------------------------------------------------


def test_estimate_counts_literal_elements_and_assumes_other_ranges() -> None:
    # The arguments ``t, t == me`` are 5 tokens; the whole expression has 10.
    assert estimate("l.exists(t, t == me)").cost == 10 + ASSUMED_RANGE * 5
    assert estimate("[1, 2, 3].all(x, x > 0)").cost == 16 + 3 * 5
    nested = estimate("l.all(a, l.exists(b, a == b))")
    assert nested.cost == 17 + ASSUMED_RANGE * (12 + ASSUMED_RANGE * 5)


def test_nested_comprehensions_over_literals_are_refused_at_write() -> None:
    assert caveat("", nested_over_digits(3)).evaluate({}) == TRUE  # 1,000 iterations
    with pytest.raises(CaveatCompileError, match="may cost about") as raised:
        caveat("", "true && " + nested_over_digits(7))  # 10**7 iterations: 36 s once
    assert raised.value.position is not None
    assert raised.value.position.offset == len("true && ")


def test_three_comprehensions_nested_over_parameters_are_refused() -> None:
    assert caveat("l list<int>", "l.all(a, l.exists(b, a == b))").evaluate({"l": [1]}) == TRUE
    with pytest.raises(CaveatCompileError, match=f"the limit is {MAX_COST:,}"):
        caveat("l list<int>", "l.all(a, l.all(b, l.exists(c, a + b == c)))")


def test_expression_length_is_bounded() -> None:
    with pytest.raises(CaveatCompileError, match="the limit is 100,000"):
        caveat("a bool", "a" + " || a" * 25_000)


# --- Budget at evaluation --------------------------------------------------------------------


def test_evaluation_stops_at_its_budget_with_a_caveat_error() -> None:
    compiled = caveat("l list<int>", "l.exists(a, l.exists(b, a == b + 1000000))")
    assert compiled.evaluate({"l": list(range(100))}) == FALSE
    # 5,000 elements: 25 million inner iterations unbounded; the budget ends it early.
    with pytest.raises(CaveatError, match=f"budget of {MAX_COST:,} steps"):
        compiled.evaluate({"l": list(range(5000))})


def test_a_spent_budget_is_an_error_even_where_another_branch_decides() -> None:
    # Once spent, ranges read as empty, so the value computed is not the caveat's: never use it.
    compiled = caveat("l list<int>, a bool", "l.exists(x, l.exists(y, x == y + 1000000)) || a")
    assert compiled.evaluate({"l": [1], "a": True}) == TRUE
    with pytest.raises(CaveatError, match="budget"):
        compiled.evaluate({"l": list(range(5000)), "a": True})
    with pytest.raises(CaveatError, match="budget"):
        compiled.evaluate({"l": list(range(5000))})  # the partial path, too


# --- Instrumented programs mean what the expression means ------------------------------------

SAME_MEANING = [
    pytest.param("l list<int>", "l.exists(x, x == 2)", {"l": [1, 2]}, id="plain"),
    pytest.param("m map<any>", "m.teams.exists(t, t == 'a')", {"m": {"teams": ["a"]}}, id="path"),
    pytest.param(
        "l list<int>", "l.map(x, x * 2).exists(y, y == 4)", {"l": [1, 2]}, id="chained-macros"
    ),
    pytest.param("ll list<list<int>>", "ll[1].all(x, x > 2)", {"ll": [[1], [3]]}, id="indexed"),
    pytest.param("l list<int>", "(l + [9]).exists_one(x, x == 9)", {"l": [1]}, id="group"),
    pytest.param("", "{'a': 1, 'b': 2}.all(k, k != 'c')", {}, id="map-literal"),
    pytest.param(
        "l list<uint>", "l.filter(x, x > 1u).size() == 1", {"l": [1, 2]}, id="uint-rebound"
    ),
    pytest.param(
        "l list<string>, me string",
        "!l.exists(t, t == me) || l.all(t, size(t) == 1)",
        {"l": ["a"], "me": "a"},
        id="negated-and-or",
    ),
]


@pytest.mark.parametrize(("params", "expression", "context"), SAME_MEANING)
def test_instrumented_programs_answer_as_the_expression(
    params: str, expression: str, context: dict[str, Any]
) -> None:
    assert instrument(expression) is not None
    assert caveat(params, expression).evaluate(context) == TRUE


def test_expressions_without_comprehensions_are_not_instrumented() -> None:
    assert instrument("a in l && size(l) > 2") is None
