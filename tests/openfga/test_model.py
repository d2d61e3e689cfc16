"""Reading OpenFGA's DSL: its grammar's operator rules, comments, and errors with lines."""

from __future__ import annotations

import pytest

from policyd.errors import PolicySyntaxError
from policyd.openfga.model import (
    Computed,
    Difference,
    Direct,
    TupleToUserset,
    TypeRestriction,
    Union,
    parse_dsl,
)

HEADER = "model\n  schema 1.1\n"


def _rewrite(expression: str):  # type: ignore[no-untyped-def]
    model = parse_dsl(f"{HEADER}type doc\n  relations\n    define r: {expression}\n")
    return model.types[0].relations[0].rewrite


def test_a_definition_reads_as_openfga_s_grammar() -> None:
    assert _rewrite("[user, user:* with c, group#member] or a or b from p") == Union(
        (
            Direct(
                (
                    TypeRestriction("user"),
                    TypeRestriction("user", wildcard=True, condition="c"),
                    TypeRestriction("group", "member"),
                )
            ),
            Computed("a"),
            TupleToUserset("p", "b"),
        )
    )
    assert _rewrite("(a or b) but not c") == Difference(
        Union((Computed("a"), Computed("b"))), Computed("c")
    )


def test_comments_and_multiline_restrictions_are_read() -> None:
    model = parse_dsl(
        f"# the model\n{HEADER}type doc # documents\n  relations\n"
        "    define r: [user,\n      group#member]  # who\n"
    )
    assert model.types[0].relations[0].rewrite == Direct(
        (TypeRestriction("user"), TypeRestriction("group", "member"))
    )


@pytest.mark.parametrize(
    ("expression", "message", "column"),
    [
        ("a or b and c", "mix of 'or' and 'and'", 22),
        ("a but not b but not c", "only one 'but not'", 27),
        ("a or [user]", "must come first", 20),
        ("[user", "expected ']'", 20),
    ],
    ids=["mixed-operators", "two-but-nots", "late-direct", "unclosed"],
)
def test_syntax_errors_name_line_and_column(expression: str, message: str, column: int) -> None:
    with pytest.raises(PolicySyntaxError, match=message) as raised:
        parse_dsl(f"{HEADER}type doc\n  relations\n    define r: {expression}\n", "m.fga")
    span = raised.value.span
    assert span is not None
    assert (span.file, span.line, span.column) == ("m.fga", 5, column)
