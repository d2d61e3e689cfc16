"""Tests for the formatter: canonical layout, round trips, idempotence, goldens and the corpus.

Equality of trees is the parser's: spans and blank lines do not count,
comments do. The formatter lines up the gutters of ``/** … */`` comments and
drops trailing whitespace, so where the input was not written by the
formatter, trees are compared after ``normalized`` (see strategies.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from policyd.dsl import ast
from policyd.dsl.formatter import format_policy, format_text
from policyd.dsl.parser import parse_policy
from policyd.errors import PolicydError
from tests.corpus import parser_cases, requires_corpus, spicedb_rejects
from tests.dsl.strategies import normalized, policy_files, policy_texts

GOLDEN = Path(__file__).resolve().parent / "golden"
ACCEPTED = [p for p in parser_cases() if not spicedb_rejects(p)]


# --- canonical form, case by case ----------------------------------------------------------

CASES = [
    pytest.param("", "", id="empty-file"),
    pytest.param("  \n\n\t\n", "", id="blank-file"),
    pytest.param("definition user {   }", "definition user {}\n", id="empty-definition"),
    pytest.param(
        "definition doc{relation viewer:user|user:*|group#member with c and expiration}",
        "definition doc {\n"
        "    relation viewer: user | user:* | group#member with c and expiration\n"
        "}\n",
        id="relation-types",
    ),
    pytest.param(
        "definition d { permission view : user|admin=a }",
        "definition d {\n    permission view: user | admin = a\n}\n",
        id="permission-subject-types",
    ),
    pytest.param(
        "definition d { permission p = (a + b) + c }",
        "definition d {\n    permission p = a + b + c\n}\n",
        id="left-nested-union-loses-parens",
    ),
    pytest.param(
        "definition d { permission p = a - (b - c) }",
        "definition d {\n    permission p = a - (b - c)\n}\n",
        id="right-nested-exclusion-keeps-parens",
    ),
    pytest.param(
        "definition d { permission p = a + (b + c) }",
        "definition d {\n    permission p = a + (b + c)\n}\n",
        id="right-nested-union-keeps-parens",
    ),
    pytest.param(
        "definition d { permission p = (a - b) & (c + d) - (e & f) }",
        "definition d {\n    permission p = ((a - b) & (c + d)) - (e & f)\n}\n",
        id="precedence-minus-and-plus",
    ),
    pytest.param(
        "definition d { permission p = (a+b)->c + x . any ( y ) + (z).all(w) - nil }",
        "definition d {\n    permission p = ((a + b)->c + x.any(y) + z.all(w)) - nil\n}\n",
        id="arrows",
    ),
    pytest.param(
        "definition d { permission p = ((a->b)->c) }",
        "definition d {\n    permission p = a->b->c\n}\n",
        id="chained-arrows",
    ),
    pytest.param(
        "caveat c(a int, b list<map<string>>,) {\n\t\ta == 1 &&\n\t\t  b[0]['x'] == 'y'\n}",
        "caveat c(a int, b list<map<string>>) {\n    a == 1 &&\n      b[0]['x'] == 'y'\n}\n",
        id="caveat-reindented",
    ),
    pytest.param(
        "caveat c() { true }",
        "caveat c() {\n    true\n}\n",
        id="caveat-without-parameters",
    ),
    pytest.param(
        'use import\nuse expiration\nimport \'a.zed\'\nimport """b"""\ndefinition a {}',
        'use import\nuse expiration\n\nimport \'a.zed\'\nimport """b"""\n\ndefinition a {}\n',
        id="use-and-import-groups",
    ),
    pytest.param(
        "use partial\npartial p { relation r: u }\ndefinition d { ...p }",
        "use partial\n\npartial p {\n    relation r: u\n}\n\ndefinition d {\n    ...p\n}\n",
        id="partials",
    ),
    pytest.param(
        "definition a {\n  relation x: u\n\n\n\n  relation y: u\n  relation z: u\n}",
        "definition a {\n    relation x: u\n\n    relation y: u\n    relation z: u\n}\n",
        id="blank-lines-between-members-kept-once",
    ),
    pytest.param(
        "definition a {}\n\n\n\ndefinition b {}\ndefinition c {}\n",
        "definition a {}\n\ndefinition b {}\n\ndefinition c {}\n",
        id="one-blank-line-between-top-level-items",
    ),
    pytest.param(
        "// file header\n\n/** the user */\ndefinition user {}",
        "// file header\n/** the user */\ndefinition user {}\n",
        id="comments-above-declaration",
    ),
    pytest.param(
        "\t\t/**\n\t\t * doc\n\t\t */\n\t\tdefinition d {\n\t\t\t\t/**\n\t\t\t\t\t* r\n"
        "\t\t\t\t*/\n\t\t\t\trelation r: u   // why\n\t\t\t\t// end\n}\n// bye",
        "/**\n * doc\n */\ndefinition d {\n    /**\n     * r\n     */\n    relation r: u  // why\n"
        "    // end\n}\n\n// bye\n",
        id="doc-comments-reindented",
    ),
    pytest.param(
        "definition d {\n        /* keep\n           this */\n  relation r: u\n}",
        "definition d {\n    /* keep\n           this */\n    relation r: u\n}\n",
        id="plain-block-comment-kept-verbatim",
    ),
    pytest.param(
        "definition d { relation r: u#... }",
        "definition d {\n    relation r: u\n}\n",
        id="ellipsis-relation-is-plain-type",
    ),
    pytest.param(
        "definition t1/doc { relation r: t2/user with t3/c }",
        "definition t1/doc {\n    relation r: t2/user with t3/c\n}\n",
        id="prefixed-names",
    ),
]


@pytest.mark.parametrize(("source", "expected"), CASES)
def test_canonical_form(source: str, expected: str) -> None:
    formatted = format_text(source, "case.policy")
    assert formatted == expected
    assert format_text(formatted, "case.policy") == formatted
    assert normalized(parse_policy(formatted)) == normalized(parse_policy(source))


def test_format_policy_keeps_duplicate_use_flags() -> None:
    tree = ast.PolicyFile((ast.UseFlag("expiration"), ast.UseFlag("expiration")))
    assert format_policy(tree) == "use expiration\nuse expiration\n"
    assert parse_policy(format_policy(tree)) == tree


def test_format_text_reports_syntax_errors_with_location() -> None:
    with pytest.raises(PolicydError, match=r"bad\.policy:1:\d+"):
        format_text("definition {", "bad.policy")


# --- properties ---------------------------------------------------------------------------


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(policy_files())
def test_parse_of_format_is_identity_on_trees(tree: ast.PolicyFile) -> None:
    text = format_policy(tree)
    assert parse_policy(text, "generated.policy") == tree
    assert_tidy(text)


def assert_tidy(text: str) -> None:
    """One final newline, never two blank lines in a row, no trailing whitespace."""
    assert text == "" or (text.endswith("\n") and not text.endswith("\n\n"))
    assert "\n\n\n" not in text
    assert all(line == line.rstrip() for line in text.split("\n"))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(policy_texts())
def test_format_of_untidy_text_is_stable(text: str) -> None:
    formatted = format_text(text, "untidy.policy")
    assert_tidy(formatted)
    assert format_text(formatted, "untidy.policy") == formatted
    assert normalized(parse_policy(formatted)) == normalized(parse_policy(text))


# --- SpiceDB's parser corpus --------------------------------------------------------------


@requires_corpus
@pytest.mark.parametrize("path", ACCEPTED, ids=lambda p: p.stem)
def test_corpus_file_formats_and_round_trips(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    formatted = format_text(text, path.name)
    assert normalized(parse_policy(formatted, path.name)) == normalized(parse_policy(text))
    assert format_text(formatted, path.name) == formatted


# --- golden files -------------------------------------------------------------------------


def _formatted_golden(source: Path) -> Path:
    return source.with_name(source.name.removesuffix(".policy") + ".fmt.policy")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Golden inputs are the NAME.policy files with a NAME.fmt.policy beside them.

    With ``--update-golden`` every NAME.policy that is not an error golden
    (NAME.errors.txt) is formatted and its NAME.fmt.policy written.
    """
    if "golden_source" not in metafunc.fixturenames:
        return
    update = metafunc.config.getoption("--update-golden")
    sources = sorted(p for p in GOLDEN.glob("*.policy") if not p.name.endswith(".fmt.policy"))
    if update:
        sources = [p for p in sources if not p.with_suffix(".errors.txt").exists()]
    else:
        sources = [p for p in sources if _formatted_golden(p).exists()]
    metafunc.parametrize("golden_source", sources, ids=[p.stem for p in sources])


def test_golden(golden_source: Path, update_golden: bool) -> None:
    expected_path = _formatted_golden(golden_source)
    formatted = format_text(golden_source.read_text(encoding="utf-8"), golden_source.name)
    if update_golden:
        expected_path.write_text(formatted, encoding="utf-8")
    assert formatted == expected_path.read_text(encoding="utf-8")
    assert format_text(formatted, expected_path.name) == formatted


def test_a_permission_too_long_for_one_line_breaks_at_its_outermost_operator() -> None:
    names = [f"relation_with_a_rather_long_name_{i}" for i in range(4)]
    relations = "".join(f"    relation {n}: user\n" for n in names)
    one_line = " + ".join(names[:3])
    source = (
        "definition user {}\n\ndefinition doc {\n" + relations
        + f"    permission view = ({one_line}) - {names[3]}  // why\n"
        + f"    permission short = {names[0]} + {names[1]}\n}}\n"
    )  # fmt: skip
    formatted = format_text(source)
    assert (
        f"    permission view = ({one_line})\n        - {names[3]}  // why\n"
        f"    permission short = {names[0]} + {names[1]}\n"
    ) in formatted
    assert format_text(formatted) == formatted
    assert normalized(parse_policy(formatted)) == normalized(parse_policy(source))
