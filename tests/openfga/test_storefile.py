"""OpenFGA store files of our own, converted and run as ``policyd validate`` runs them.

The models (tests/openfga/models) cover every construct of DSL 1.1 and its JSON
form; the converted tests must pass.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from policyd.errors import ConversionError
from policyd.openfga import convert_store_file
from policyd.validationfile import load_validation_files, run_validation_file

MODELS = Path(__file__).parent / "models"
STORE_FILES = sorted(MODELS.glob("*.fga.yaml"))


@pytest.mark.parametrize("store_file", STORE_FILES, ids=[p.name for p in STORE_FILES])
def test_converted_tests_pass(store_file: Path, tmp_path: Path) -> None:
    converted = tmp_path / "converted.yaml"
    converted.write_text(convert_store_file(store_file), encoding="utf-8")
    files = load_validation_files(converted)
    assert files
    for file in files:
        assert file.assertions, f"{store_file.name}: a test converted to no assertion"
        failures = run_validation_file(file)
        assert not failures, "\n".join(str(f) for f in failures)


def test_list_assertions_become_checks_over_the_objects_the_tuples_name() -> None:
    text = convert_store_file(MODELS / "github.fga.yaml")
    assert "- repo:api#writer@user:anne" in text  # listed: true
    assert "- repo:api#admin@user:anne" in text  # listed as [] (nothing): false
    assert "- repo:api#admin@user:carl" in text  # a user of the filter's type, not listed


def test_tuples_of_split_relations_go_to_the_stored_relation() -> None:
    text = convert_store_file(MODELS / "docs.fga.yaml")
    assert "folder:root#direct_viewer@group:eng#member" in text
    assert "document:d2#direct_editor@user:dan[non_expired_grant:{" in text


def _store(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "store.fga.yaml"
    path.write_text(
        "model: |\n  model\n    schema 1.1\n  type user\n  type doc\n    relations\n"
        "      define viewer: [user]\n      define can_view: viewer\n" + body,
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "tests:\n  - name: t\n    check:\n      - user: user:a\n        object: doc:1\n"
            "        contextual_tuples: [{user: user:a, relation: viewer, object: doc:1}]\n"
            "        assertions: {viewer: true}\n",
            "contextual tuples have no equivalent",
        ),
        ("tuple_file: ./tuples.csv\n", "CSV tuple files are not converted"),
        (
            "tuples: [{user: user:a, relation: can_view, object: doc:1}]\n",
            "doc#can_view is not directly assignable",
        ),
    ],
    ids=["contextual-tuples", "csv", "tuple-on-a-permission"],
)
def test_what_a_validation_file_cannot_hold_is_refused(
    tmp_path: Path, body: str, message: str
) -> None:
    with pytest.raises(ConversionError, match=message):
        convert_store_file(_store(tmp_path, body))
