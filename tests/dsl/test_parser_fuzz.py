"""Fuzzing the parser: any text yields a tree or a located PolicydError, never another exception.

Inputs are random text, random soups of the language's own tokens, and
mutations (deletions, insertions, swaps, truncations) of SpiceDB's parser
corpus and of the golden files. Whatever parses must also format, and the
formatted text must parse to the same tree and format to itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from policyd.dsl import ast
from policyd.dsl.formatter import format_text
from policyd.dsl.parser import parse_policy
from policyd.errors import PolicydError, PolicyErrors
from tests.corpus import parser_cases
from tests.dsl.strategies import normalized

NAME = "fuzz.policy"
GOLDEN = Path(__file__).resolve().parent / "golden"
SEEDS = [p.read_text(encoding="utf-8") for p in [*parser_cases(), *sorted(GOLDEN.glob("*.policy"))]]

VOCABULARY = [
    *("definition", "relation", "permission", "caveat", "use", "import", "partial", "nil"),
    *("with", "and", "any", "all", "expiration", "self", "typechecking"),
    *("{", "}", "(", ")", "<", ">", ":", "|", "#", "=", "+", "-", "&", "->", ".", ",", "*", "/"),
    *("...", "//", "/*", "*/", "/**", "'", '"', '"""', "'''", "\\"),
    *("user", "doc", "view", "a_b9", "list", "map", "int", "x.y", "42", "0x1F", "1.5e3", "'s'"),
    *('"t"', "==", "&&", "||", "!", "?", "[", "]", "%", " ", "\n", "\t", "\r\n", "\x00", "é", "一"),
]
_SLOW = settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
_FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(text: str) -> ast.PolicyFile | None:
    """Parse ``text``; a syntax error must be located in the text and name its place."""
    try:
        tree = parse_policy(text, NAME)
    except PolicydError as err:
        assert_located(err, text)
        return None
    formatted = format_text(text, NAME)
    assert format_text(formatted, NAME) == formatted
    assert normalized(parse_policy(formatted, NAME)) == normalized(tree)
    return tree


def assert_located(err: PolicydError, text: str) -> None:
    """Every span of ``err`` lies in ``text``, and the message names it as file:line:col."""
    spans = [d.span for d in err.diagnostics] if isinstance(err, PolicyErrors) else [err.span]
    lines = text.split("\n")
    for span in spans:
        assert span is not None, err
        assert 1 <= span.line <= len(lines), (span, err)
        assert 1 <= span.column <= len(lines[span.line - 1]) + 1, (span, err)
        assert f"{NAME}:{span.line}:{span.column}" in str(err)


# --- random text ----------------------------------------------------------------------------


@_FAST
@example("")
@example("definition")
@example("caveat c(a int) {")
@example("definition d { permission p = a-> }")
@example('import "')
@example("/*")
@given(st.text(max_size=200))
def test_random_text(text: str) -> None:
    check(text)


token_soups = st.lists(st.sampled_from(VOCABULARY), max_size=40).map(" ".join)
tight_token_soups = st.lists(st.sampled_from(VOCABULARY), max_size=40).map("".join)


@_FAST
@given(st.one_of(token_soups, tight_token_soups))
def test_token_soup(text: str) -> None:
    check(text)


# --- mutations of real policies -------------------------------------------------------------


@st.composite
def mutants(draw: st.DrawFn) -> str:
    """A corpus or golden file with a few characters or whole tokens deleted, inserted or moved."""
    if not SEEDS:
        pytest.skip("no seed files: neither the SpiceDB corpus nor goldens were found")
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        size = len(text)
        i = draw(st.integers(0, size))
        j = draw(st.integers(i, min(size, i + 12)))
        kind = draw(st.sampled_from(["delete", "insert", "token", "swap", "truncate", "copy"]))
        if kind == "delete":
            text = text[:i] + text[j:]
        elif kind == "insert":
            text = text[:i] + draw(st.text(max_size=3)) + text[i:]
        elif kind == "token":
            text = text[:i] + draw(st.sampled_from(VOCABULARY)) + text[i:]
        elif kind == "swap" and j < size:
            text = text[:i] + text[j] + text[i + 1 : j] + text[i] + text[j + 1 :]
        elif kind == "truncate":
            text = text[:i]
        elif kind == "copy":
            k = draw(st.integers(0, size))
            text = text[:k] + text[i:j] + text[k:]
    return text


@_FAST
@given(mutants())
def test_mutated_policies(text: str) -> None:
    check(text)


@pytest.mark.slow
@_SLOW
@given(st.one_of(mutants(), token_soups, tight_token_soups, st.text(max_size=400)))
def test_long_fuzz_run(text: str) -> None:
    check(text)


@pytest.mark.parametrize("cut", [0.25, 0.5, 0.75, 0.9])
def test_every_seed_truncated(cut: float) -> None:
    """Cheap and deterministic: each seed cut at a fraction of its length."""
    for seed in SEEDS:
        check(seed[: int(len(seed) * cut)])


DEEP = 5000


@pytest.mark.parametrize(
    "text",
    [
        "definition d { permission p = " + " + ".join(["a"] * DEEP) + " }",
        "definition d { permission p = a" + "->b" * DEEP + " }",
        "definition d { permission p = a" + ".any(b)" * DEEP + " }",
        "definition d { permission p = " + "(" * DEEP + "a" + ")" * DEEP + " }",
        "definition d { permission p = " + "a - (" * DEEP + "a" + ")" * DEEP + " }",
        "caveat c(a " + "list<" * DEEP + "int" + ">" * DEEP + ") { a }",
    ],
    ids=[
        "long-union",
        "long-arrow-chain",
        "long-any-chain",
        "deep-parens",
        "deep-exclusion",
        "deep-type",
    ],
)
def test_deep_nesting_is_refused_not_a_crash(text: str) -> None:
    """Python's stack must never overflow, whatever the nesting (MAX_NESTING guards it)."""
    check(text)
