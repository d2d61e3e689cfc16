"""Validation files: expected subjects are compared with their paths, as ``zed validate`` does."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from policyd.errors import PolicyErrors
from policyd.validationfile import Failure, load_validation_files, run_validation_file

SCHEMA = """
    caveat gate(open bool) {
        open
    }

    definition user {}

    definition group {
        relation member: user | group#member
    }

    definition folder {
        relation viewer: user
        permission view = viewer
    }

    definition document {
        relation writer: user
        relation viewer: user | user:* | group#member | user with gate
        relation member: user
        relation banned: user | user with gate
        relation parent: folder
        permission view = viewer + writer + parent->view
        permission both = viewer & member
        permission allowed = viewer - banned
        permission nested = (viewer - banned) + writer
    }
"""


def run(tmp_path: Path, relationships: str, validation: str) -> list[Failure]:
    """Load and run a validation file of SCHEMA, the relationships and the validation block."""
    path = tmp_path / "file.yaml"
    path.write_text(
        "schema: |-\n"
        + textwrap.indent(textwrap.dedent(SCHEMA).strip(), "  ")
        + "\nrelationships: |-\n"
        + textwrap.indent(textwrap.dedent(relationships).strip(), "  ")
        + "\nvalidation:\n"
        + textwrap.indent(textwrap.dedent(validation).strip(), "  ")
        + "\n"
    )
    (loaded,) = load_validation_files(path)
    return run_validation_file(loaded)


def line_of(tmp_path: Path, text: str) -> int:
    """The 1-based line of the file ``run`` wrote that holds ``text``."""
    lines = (tmp_path / "file.yaml").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


CASES = [
    pytest.param(
        "document:1#writer@user:jimmy",
        """
        document:1#view:
          - "[user:jimmy] is <document:1#writer>"
        """,
        id="direct",
    ),
    pytest.param(
        """
        document:1#writer@user:jimmy
        document:1#viewer@user:jimmy
        """,
        """
        document:1#view:
          - "[user:jimmy] is <document:1#writer>/<document:1#viewer>"
        """,
        id="two-paths-in-any-order",
    ),
    pytest.param(
        """
        group:eng#member@user:bob
        document:1#viewer@group:eng#member
        """,
        """
        document:1#view:
          - "[user:bob] is <group:eng#member>"
        """,
        id="through-a-group-the-group-is-the-path",
    ),
    pytest.param(
        """
        folder:f#viewer@user:ann
        document:1#parent@folder:f
        """,
        """
        document:1#view:
          - "[user:ann] is <folder:f#viewer>"
        """,
        id="through-an-arrow",
    ),
    pytest.param(
        """
        document:1#viewer@user:cat
        document:1#member@user:cat
        """,
        """
        document:1#both:
          - "[user:cat] is <document:1#member>/<document:1#viewer>"
        """,
        id="intersection-both-sides",
    ),
    pytest.param(
        """
        document:1#viewer@user:dan
        document:1#viewer@user:eve
        document:1#banned@user:eve
        """,
        """
        document:1#allowed:
          - "[user:dan] is <document:1#viewer>"
        """,
        id="exclusion-the-base-side",
    ),
    pytest.param(
        """
        document:1#viewer@user:fay
        document:1#banned@user:fay[gate]
        """,
        """
        document:1#allowed:
          - "[user:fay[...]] is <document:1#banned>/<document:1#viewer>"
        """,
        id="conditional-exclusion-both-sides",
    ),
    pytest.param(
        """
        document:1#viewer@user:gus
        document:1#banned@user:gus
        document:1#writer@user:gus
        """,
        """
        document:1#nested:
          - "[user:gus] is <document:1#writer>"
        """,
        id="excluded-branch-gives-no-path",
    ),
    pytest.param(
        """
        document:1#viewer@user:*
        document:1#banned@user:hal
        """,
        """
        document:1#allowed:
          - "[user:* - {user:hal}] is <document:1#viewer>"
        """,
        id="wildcard",
    ),
]


@pytest.mark.parametrize(("relationships", "validation"), CASES)
def test_matching_paths_pass(tmp_path: Path, relationships: str, validation: str) -> None:
    assert run(tmp_path, relationships, validation) == []


def test_a_different_path_fails_naming_the_subject_and_both_paths(tmp_path: Path) -> None:
    """SpiceDB's own example (pkg/development, "different relations")."""
    failures = run(
        tmp_path,
        "document:somedoc#writer@user:jimmy",
        """
        document:somedoc#view:
          - "[user:jimmy] is <document:somedoc#viewer>"
        """,
    )
    [failure] = failures
    assert failure.message == (
        "document:somedoc#view: found different relationships for subject user:jimmy: "
        "specified <document:somedoc#viewer>, computed <document:somedoc#writer>"
    )
    assert failure.span is not None
    assert failure.span.line == line_of(tmp_path, "[user:jimmy]")


@pytest.mark.parametrize(
    ("validation", "specified"),
    [
        pytest.param('- "[user:jimmy]"', "nothing", id="no-path"),
        pytest.param('- "[user:jimmy] is <document:1#writer>/<document:1#viewer>"', "", id="extra"),
        pytest.param('- "[user:jimmy] is <document:1#writer>/<document:1#writer>"', "", id="twice"),
    ],
)
def test_paths_must_be_exactly_the_computed_ones(
    tmp_path: Path, validation: str, specified: str
) -> None:
    failures = run(tmp_path, "document:1#writer@user:jimmy", f"document:1#view:\n  {validation}")
    [failure] = failures
    assert "found different relationships for subject user:jimmy" in failure.message
    assert "computed <document:1#writer>" in failure.message
    assert specified in failure.message


def test_a_malformed_path_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyErrors, match="document:som") as raised:
        run(
            tmp_path,
            "document:1#writer@user:jimmy",
            """
            document:1#view:
              - "[user:jimmy] is <document:som>"
            """,
        )
    assert raised.value.errors[0].span.line == line_of(tmp_path, "<document:som>")
