"""OpenFGA constructs and the policy text they become; what has no equivalent is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from policyd.dsl.compiler import compile_policy
from policyd.errors import ConversionError
from policyd.openfga import convert_model_file, parse_dsl, parse_json, to_policy

MODELS = Path(__file__).parent / "models"


def _model(relations: str, extra: str = "") -> str:
    return (
        "model\n  schema 1.1\ntype user\ntype group\n  relations\n    define member: [user]\n"
        f"type doc\n  relations\n{relations}{extra}"
    )


def _members(relations: str, extra: str = "") -> list[str]:
    text = to_policy(parse_dsl(_model(relations, extra))).text
    block = text[text.index("definition doc {") :]
    return [line.strip() for line in block.splitlines()[1:-1]]


@pytest.mark.parametrize(
    ("define", "members"),
    [
        ("define owner: [user]", ["relation owner: user"]),
        (
            "define viewer: [user, user:*, group#member]",
            ["relation viewer: user | user:* | group#member"],
        ),
        (
            "define owner: [user]\n    define viewer: [user] or owner",
            [
                "relation owner: user",
                "relation direct_viewer: user",
                "permission viewer = direct_viewer + owner",
            ],
        ),
        (
            "define one: [user]\n    define two: [user]\n    define both: one and two",
            ["relation one: user", "relation two: user", "permission both = one & two"],
        ),
        (
            "define one: [user]\n    define two: [user]\n    define but: one but not two",
            ["relation one: user", "relation two: user", "permission but = one - two"],
        ),
        (
            "define parent: [doc]\n    define viewer: [user] or viewer from parent",
            [
                "relation parent: doc",
                "relation direct_viewer: user",
                "permission viewer = direct_viewer + parent->viewer",
            ],
        ),
        (
            "define one: [user]\n    define two: [user]\n"
            "    define mix: (one or two) and (one but not two)",
            [
                "relation one: user",
                "relation two: user",
                "permission mix = (one + two) & (one - two)",
            ],
        ),
    ],
    ids=["direct", "type-restrictions", "split", "and", "but-not", "from", "parentheses"],
)
def test_constructs_map_to_policy(define: str, members: list[str]) -> None:
    assert _members(f"    {define}\n") == members


def test_conditions_become_caveats() -> None:
    extra = "condition small(x: int, ys: list<string>) {\n  x > 1 && 'a' in ys\n}\n"
    text = to_policy(parse_dsl(_model("    define owner: [user with small]\n", extra))).text
    assert "caveat small(x int, ys list<string>) {\n    x > 1 && 'a' in ys\n}" in text
    assert "relation owner: user with small" in text


def test_the_json_form_converts_to_the_same_policy() -> None:
    dsl = compile_policy(convert_model_file(MODELS / "docs.fga")).schema
    json_model = (MODELS / "docs.json").read_text(encoding="utf-8")
    assert compile_policy(to_policy(parse_json(json_model)).text).schema == dsl


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("model\n  schema 1.0\ntype user\n", "only schema 1.1 converts"),
        ("module docs\ntype user\n", "modular models"),
        ("model\n  schema 1.1\ntype user\nextend type user\n", "modular models"),
        (_model("    define x: [user]\n"), "relation name 'x'"),
        (_model("    define owner: [user with nope]\n"), "condition 'nope'"),
        (
            _model(
                "    define one: [group]\n    define parent: [doc] or one\n"
                "    define via: one from parent\n"
            ),
            "not a directly assignable relation",
        ),
        (
            "model\n  schema 1.1\ntype user\ntype team\n  relations\n"
            "    define member: [user, user:*]\ntype doc\n  relations\n"
            "    define viewer: [team#member]\n",
            "wildcards cannot be nested",
        ),
    ],
    ids=[
        "schema-1.0",
        "module",
        "extend-type",
        "short-name",
        "unknown-condition",
        "tupleset-not-direct",
        "transitive-wildcard",
    ],
)
def test_what_has_no_equivalent_is_refused(model: str, message: str) -> None:
    with pytest.raises(ConversionError, match=message):
        to_policy(parse_dsl(model, "m.fga"))
