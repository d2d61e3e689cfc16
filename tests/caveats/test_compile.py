"""Tests for policyd.caveats.compile: errors with positions inside the expression."""

from __future__ import annotations

import pytest

from policyd.caveats import CaveatCompileError, CaveatResult, compile_caveat
from policyd.errors import CaveatError
from policyd.schema.ir import CaveatType
from tests.caveats.helpers import FALSE, TRUE, caveat, missing

# --- Compile errors --------------------------------------------------------------------------

COMPILE_ERRORS = [
    pytest.param(
        "somecondition int",
        "somecondition == 42 && unknownvar",
        "unknown identifier 'unknownvar'",
        (1, 24),
        id="unknown-identifier",
    ),
    pytest.param(
        "a int", "a == 1 &&\n  b == 2", "unknown identifier 'b'", (2, 3), id="unknown-on-line-2"
    ),
    pytest.param("a int", "a <", "invalid CEL", (1, 4), id="syntax-error"),
    pytest.param("a int", "a == 1 &&\n (a ||", "invalid CEL", (2, 7), id="syntax-error-line-2"),
    pytest.param("a int", "a == 42 `", "invalid CEL", (1, 9), id="stray-backtick"),
    pytest.param("a int", "   ", "the expression is empty", (1, 1), id="empty"),
    pytest.param("a int", "a + 1", "yields int, not a bool", (1, 1), id="arithmetic"),
    pytest.param(
        "a bool, b int",
        "a && b - 1",
        r"no && takes \(bool, int\)",
        (1, 3),
        id="arithmetic-leaf",
    ),
    pytest.param("a int", "a", "yields int, not a bool", (1, 1), id="int-parameter"),
    pytest.param("l list<int>", "l", "yields list, not a bool", (1, 1), id="list-parameter"),
    pytest.param("a int", "42", "yields int, not a bool", (1, 1), id="literal"),
    pytest.param("s string", "size(s)", "yields int, not a bool", (1, 1), id="size"),
    pytest.param(
        "a int",
        "a < 'x'",
        r"does not fit the parameter types \(a int\): no < takes \(int, string\)",
        (1, 3),
        id="type-mismatch",
    ),
    # The CEL checker (cel-expr-python) types every overload, as cel-go does for SpiceDB.
    pytest.param(
        "l list<string>",
        "l.contains(1)",
        r"no contains\(\) takes \(list\(string\), int\)",
        (1, 11),
        id="list-contains-wrong-element",
    ),
    pytest.param(
        "m map<int>", "m.contains(1)", "does not fit the parameter types", (1, 11), id="map-key"
    ),
    pytest.param(
        "s string", "s.in_cidr('10.0.0.0/8')", "no in_cidr", (1, 10), id="in-cidr-on-string"
    ),
    pytest.param("ip ipaddress", "ip == '1.2.3.4'", "no == takes", (1, 4), id="ipaddress-opaque"),
    pytest.param(
        "a bool, l list<int>",
        "a || l.exists(x, x == 'y')",
        r"no == takes \(int, string\)",
        (1, 20),
        id="inside-a-macro",
    ),
    pytest.param(
        "a int", "a == 1 || (b && c)", "unknown identifiers 'b', 'c'", (1, 12), id="two-unknowns"
    ),
    pytest.param("a int", "a.frob()", "unknown function 'frob'", (1, 3), id="unknown-method"),
    pytest.param(
        "a int", "frobnicate(a)", "unknown function 'frobnicate'", (1, 1), id="unknown-function"
    ),
    pytest.param("a int", "a.?b", "invalid CEL", (1, 2), id="optional-syntax-unsupported"),
]


@pytest.mark.parametrize(("params", "expression", "message", "line_column"), COMPILE_ERRORS)
def test_compile_errors(
    params: str, expression: str, message: str, line_column: tuple[int, int]
) -> None:
    with pytest.raises(CaveatCompileError, match=message) as raised:
        caveat(params, expression)
    error = raised.value
    assert error.code == "caveat-invalid"
    assert error.caveat == "test"
    assert isinstance(error, CaveatError)
    assert error.position is not None
    assert (error.position.line, error.position.column) == line_column
    lines = expression.split("\n")
    line, column = line_column
    assert error.position.offset == sum(len(x) + 1 for x in lines[: line - 1]) + column - 1


@pytest.mark.parametrize(
    ("type_", "message"),
    [
        pytest.param(CaveatType("integer"), "unknown type 'integer'", id="unknown-type"),
        pytest.param(
            CaveatType("list"), "list takes one type argument", id="list-without-argument"
        ),
        pytest.param(
            CaveatType("int", (CaveatType("int"),)), "int takes no type", id="scalar-argument"
        ),
        pytest.param(
            CaveatType("map", (CaveatType("nope"),)), "unknown type 'nope'", id="bad-element"
        ),
    ],
)
def test_bad_parameter_types(type_: CaveatType, message: str) -> None:
    with pytest.raises(CaveatCompileError, match=message):
        compile_caveat("test", {"x": type_}, "true")


def test_comprehension_variables_are_not_unknown_identifiers() -> None:
    compiled = caveat("l list<string>, me string", "l.exists(t, t == me) && l.all(u, size(u) > 0)")
    assert compiled.evaluate({"l": ["a"], "me": "a"}) == TRUE


@pytest.mark.parametrize(
    ("nots", "expected"), [(1000, TRUE), (1001, FALSE), (999, FALSE)], ids=["1000", "1001", "999"]
)
def test_runs_of_not_fold_without_recursion(nots: int, expected: CaveatResult) -> None:
    compiled = caveat("a bool, b bool", "!" * nots + "a || b")
    assert compiled.evaluate({"a": True, "b": False}) == expected
    assert compiled.evaluate({"a": True}) == (expected if expected == TRUE else missing("b"))


@pytest.mark.parametrize(
    ("params", "expression", "context"),
    [
        pytest.param("x uint", "x < 5", {"x": 3}, id="uint-below-int"),
        pytest.param("x double", "x > 1", {"x": 1.5}, id="double-above-int"),
        pytest.param("x int", "x <= 2.5", {"x": 2}, id="int-below-double"),
    ],
)
def test_numbers_of_different_types_compare(
    params: str, expression: str, context: dict[str, object]
) -> None:
    """Ordering across int, uint and double type-checks, as in cel-go's declarations."""
    assert caveat(params, expression).evaluate(context) == TRUE


# Each of these compiled before the CEL checker: sample values (empty lists, zero) hid them.
TYPE_ERRORS = [
    "ls.contains(1)",
    "m.contains(1)",
    "s.in_cidr('1.0.0.0/8')",
    "ip == '1.2.3.4'",
    "l.exists(x, x == 'y')",
    "d == 1",
    "size(a) > 0",
    "a.startsWith('x')",
    "l[0] == 'x'",
    "b && l.all(x, x)",
    "m.k == 'x'",
    "t.getHours() == 'x'",
    "l.map(x, x + 's').size() > 0",
    "in_cidr(ip, 1)",
    "a in ls",
]


@pytest.mark.parametrize("expression", TYPE_ERRORS)
def test_type_errors_the_checker_finds(expression: str) -> None:
    declared = (
        "a int, s string, l list<int>, ls list<string>, m map<int>, t timestamp, d duration, "
        "ip ipaddress, b bool"
    )
    with pytest.raises(CaveatCompileError, match="does not fit the parameter types"):
        caveat(declared, expression)
