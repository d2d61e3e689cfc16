"""The compiler: golden error messages, the IR it builds, and the rules it enforces."""

from __future__ import annotations

from pathlib import Path

import pytest

from policyd.dsl.compiler import compile_file, compile_policy
from policyd.errors import Diagnostic, PolicydError, PolicyErrors, PolicySyntaxError
from policyd.schema import ir

GOLDEN = Path(__file__).parent / "golden"
ERROR_CASES = sorted(p for p in GOLDEN.glob("*.policy") if p.stem.startswith(("err_", "warn_")))


def render(path: Path) -> str:
    """Every diagnostic of compiling ``path``, one per line, with a path relative to golden/."""
    name = path.name
    diagnostics: tuple[Diagnostic, ...]
    try:
        diagnostics = compile_policy(path.read_text(), name).warnings
    except PolicyErrors as e:
        diagnostics = e.diagnostics
    except PolicySyntaxError as e:
        return f"{e.span}: {e.code}: {e.message}\n"
    return "".join(f"{d}\n" for d in diagnostics)


@pytest.mark.parametrize("path", ERROR_CASES, ids=lambda p: p.stem)
def test_error_messages_match_golden(path: Path, update_golden: bool) -> None:
    expected_path = path.with_suffix(".errors.txt")
    actual = render(path)
    if update_golden:
        expected_path.write_text(actual)
    assert expected_path.exists(), f"run pytest --update-golden to create {expected_path.name}"
    assert actual == expected_path.read_text()
    assert actual, "a golden error case must produce at least one diagnostic"


def compile_ok(text: str) -> ir.Schema:
    return compile_policy(text).schema


def codes(text: str) -> list[str]:
    with pytest.raises(PolicydError) as info:
        compile_policy(text)
    error = info.value
    if isinstance(error, PolicyErrors):
        return [d.code for d in error.errors]
    return [error.code]


def test_precedence_follows_spicedb() -> None:
    schema = compile_ok(
        """
        definition user {}
        definition doc {
            relation aaa: user
            relation bbb: user
            relation ccc: user
            permission ppp = aaa - bbb + ccc
            permission qqq = aaa + bbb & ccc
            permission rrr = aaa & bbb - ccc
        }
        """
    )
    perms = schema.definitions["doc"].permissions
    a, b, c = (ir.RelationRef(n) for n in ("aaa", "bbb", "ccc"))
    assert perms["ppp"].rewrite == ir.Exclusion(a, ir.Union((b, c)))
    assert perms["qqq"].rewrite == ir.Intersection((ir.Union((a, b)), c))
    assert perms["rrr"].rewrite == ir.Exclusion(ir.Intersection((a, b)), c)


def test_unions_flatten_and_arrows_normalise() -> None:
    schema = compile_ok(
        """
        definition user {}
        definition folder { relation viewer: user }
        definition doc {
            relation parent: folder
            relation viewer: user
            permission one = viewer + (parent->viewer + parent.any(viewer)) + parent.all(viewer)
        }
        """
    )
    rewrite = schema.definitions["doc"].permissions["one"].rewrite
    assert rewrite == ir.Union(
        (
            ir.RelationRef("viewer"),
            ir.Arrow("parent", "viewer"),
            ir.Arrow("parent", "viewer"),
            ir.Arrow("parent", "viewer", ir.ArrowKind.ALL),
        )
    )


def test_allowed_subjects_with_traits() -> None:
    schema = compile_ok(
        """
        use expiration
        definition user {}
        definition team { relation member: user }
        caveat on_tuesday(day string) { day == 'tuesday' }
        definition doc {
            relation viewer: user | user:* | team#member | team#...
                | user with on_tuesday and expiration
        }
        """
    )
    allowed = schema.relation("doc", "viewer")
    assert allowed is not None
    assert [str(a) for a in allowed.allowed] == [
        "user",
        "user:*",
        "team#member",
        "team",
        "user with on_tuesday and expiration",
    ]


def test_expiration_names_a_caveat_without_the_use_flag() -> None:
    schema = compile_ok(
        """
        definition user {}
        caveat expiration(day string) { day == 'x' }
        definition doc { relation viewer: user with expiration }
        """
    )
    viewer = schema.relation("doc", "viewer")
    assert viewer is not None
    assert viewer.allowed[0].caveat == "expiration"
    assert not viewer.allowed[0].expiration


def test_partials_are_spliced_into_definitions() -> None:
    schema = compile_ok(
        """
        use partial
        partial viewable {
            relation viewer: user
            permission view = viewer
        }
        definition user {}
        definition doc { ...viewable }
        """
    )
    assert set(schema.definitions["doc"].relations) == {"viewer"}
    assert set(schema.definitions["doc"].permissions) == {"view"}


def test_self_with_use_self() -> None:
    schema = compile_ok(
        """
        use self
        definition user {
            relation friend: user
            permission view = self + friend
        }
        """
    )
    rewrite = schema.definitions["user"].permissions["view"].rewrite
    assert rewrite == ir.Union((ir.SelfRef(), ir.RelationRef("friend")))


def test_doc_comments_are_kept() -> None:
    schema = compile_ok(
        """
        /** a person */
        definition user {}
        definition doc {
            /**
             * who may read
             */
            relation viewer: user
        }
        """
    )
    assert schema.definitions["user"].doc == "a person"
    viewer = schema.relation("doc", "viewer")
    assert viewer is not None
    assert viewer.doc == "who may read"


def test_spans_do_not_take_part_in_equality() -> None:
    text = "definition user {}\ndefinition doc { relation viewer: user\n permission view = viewer }"
    spaced = "\n\n" + text.replace(" ", "  ")
    assert compile_ok(text) == compile_ok(spaced)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("definition user {}\ndefinition doc { relation rel: usr }", ["unknown-type"]),
        ("definition user {}\ndefinition doc { permission view = nope }", ["unknown-relation"]),
        (
            "definition user {}\ndefinition doc { relation rel: user\n"
            " permission per = rel\n permission arr = per->rel }",
            ["arrow-over-permission"],
        ),
        ("definition user { permission per = per }", ["permission-cycle"]),
        ("definition user {}\ndefinition user {}", ["duplicate-definition"]),
        ("caveat cav(a int) { a + }", ["caveat-invalid"]),
        ("definition doc { relation rel: doc with nocaveat }", ["unknown-caveat"]),
        ("use partial\ndefinition doc { ...missing }", ["unknown-partial"]),
        ("use import\nimport 'x.policy'\ndefinition doc {}", ["import-unresolved"]),
    ],
    ids=[
        "unknown-type",
        "unknown-relation",
        "arrow-over-permission",
        "permission-cycle",
        "duplicate-definition",
        "caveat-invalid",
        "unknown-caveat",
        "unknown-partial",
        "import-unresolved",
    ],
)
def test_error_codes(text: str, expected: list[str]) -> None:
    assert codes(text) == expected


def test_imports_resolve_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "users.policy").write_text("definition user {}\n")
    main = tmp_path / "main.policy"
    main.write_text(
        'use import\nimport "lib/users.policy"\ndefinition doc { relation viewer: user }\n'
    )
    schema = compile_file(main).schema
    assert set(schema.definitions) == {"user", "doc"}


def test_import_cycles_are_reported(tmp_path: Path) -> None:
    a = tmp_path / "a.policy"
    a.write_text('use import\nimport "a.policy"\ndefinition user {}\n')
    with pytest.raises(PolicyErrors) as info:
        compile_file(a)
    assert [d.code for d in info.value.errors] == ["import-cycle"]
