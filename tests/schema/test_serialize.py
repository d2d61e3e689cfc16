"""Compiled-schema JSON, kept by stores beside the policy text, loads back to an equal Schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from policyd.dsl.compiler import compile_policy
from policyd.errors import InternalError, PolicyErrors
from policyd.schema.serialize import schema_from_json, schema_to_json
from policyd.validationfile import load_validation_files
from tests.corpus import integration_cases, requires_corpus
from tests.dsl.strategies import policy_texts

POLICIES = sorted((Path(__file__).resolve().parents[2] / "policies").glob("*.policy"))


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.stem)
def test_example_policies_round_trip(path: Path) -> None:
    schema = compile_policy(path.read_text(encoding="utf-8"), str(path)).schema
    text = schema_to_json(schema)
    assert schema_from_json(text) == schema
    assert schema_to_json(schema_from_json(text)) == text


@requires_corpus
@pytest.mark.parametrize("path", integration_cases(), ids=lambda p: p.stem)
def test_spicedb_corpus_schemas_round_trip(path: Path) -> None:
    for loaded in load_validation_files(path):
        schema = loaded.policy.schema
        assert schema_from_json(schema_to_json(schema)) == schema


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy_texts())
def test_generated_policies_round_trip(text: str) -> None:
    try:
        schema = compile_policy(text).schema
    except PolicyErrors:
        return  # the generator writes valid syntax, not always valid policies
    assert schema_from_json(schema_to_json(schema)) == schema


@pytest.mark.parametrize(
    "text",
    ['{"version": 999, "definitions": [], "caveats": []}', "not json", '{"version": 1}'],
    ids=["future-version", "not-json", "missing-parts"],
)
def test_unreadable_json_is_an_internal_error(text: str) -> None:
    with pytest.raises(InternalError):
        schema_from_json(text)
