"""Scenarios: every example validation file is cut into panes and written back byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from policyd.errors import PolicyErrors
from policyd.playground.scenario import (
    Scenario,
    has_content,
    join_documents,
    parse_scenario,
    render_scenario,
    split_documents,
)

POLICIES = Path(__file__).resolve().parents[2] / "policies"
EXAMPLES = sorted(POLICIES.glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_round_trip_unchanged(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    documents = split_documents(text)
    assert join_documents(documents) == text
    for document in filter(has_content, documents):
        scenario = parse_scenario(document, path.name, POLICIES)
        assert render_scenario(scenario).text == document


def test_panes_hold_what_the_author_wrote() -> None:
    document = (POLICIES / "social.test.yaml").read_text(encoding="utf-8")
    first = split_documents(document)[0]
    scenario = parse_scenario(first, "social.test.yaml", POLICIES)
    assert scenario.schema_file == "social.policy"
    assert scenario.policy == (POLICIES / "social.policy").read_text(encoding="utf-8")
    assert scenario.relationships.startswith("// who follows whom")
    assert scenario.assertions.startswith("assertTrue:\n  # public via the account:* wildcard")
    assert scenario.validation.startswith('"post:at://')
    assert scenario.header.startswith("# Scenario tests for social.policy")


def test_an_edited_scenario_is_a_valid_document_with_the_same_values() -> None:
    scenario = Scenario(
        policy="  definition user {}\ndefinition doc {\n    relation viewer: user\n}\n",
        relationships="doc:1#viewer@user:a\n\n// a comment\ndoc:2#viewer@user:b",
        assertions="assertTrue:\n  - doc:1#viewer@user:a\nassertFalse: []",
        validation='"doc:1#viewer":\n  - "[user:a] is <doc:1#viewer>"',
    )
    rendered = render_scenario(scenario)
    loaded = yaml.safe_load(rendered.text)
    assert loaded["schema"] == scenario.policy.rstrip("\n")
    assert loaded["relationships"] == scenario.relationships
    assert loaded["assertions"] == {"assertTrue": ["doc:1#viewer@user:a"], "assertFalse": []}
    lines = rendered.text.split("\n")
    for pane, first in rendered.first_lines.items():
        assert lines[first - 1] == "  " + getattr(scenario, pane).split("\n")[0]
    again = parse_scenario(rendered.text, "x.yaml", None)
    assert (again.policy, again.relationships) == (
        scenario.policy.rstrip("\n"),
        scenario.relationships,
    )


def test_comments_between_keys_stay_before_their_key() -> None:
    document = (
        "schema: definition user {}\n\n# the data\nrelationships: |-\n  user:a#x@user:b\n"
        "# what must hold\nassertions:\n  assertTrue: []\n# trailing\n"
    )
    scenario = parse_scenario(document, "x.yaml", None)
    assert scenario.leads == {"relationships": "\n# the data\n", "assertions": "# what must hold\n"}
    assert scenario.trailer == "# trailing\n"
    assert render_scenario(scenario).text == document.replace(
        "schema: definition user {}", "schema: |-\n  definition user {}"
    )


@pytest.mark.parametrize(
    "document", ["schema: [unclosed", "- a list"], ids=["not-yaml", "not-a-mapping"]
)
def test_a_document_that_is_no_mapping_is_an_error(document: str) -> None:
    with pytest.raises(PolicyErrors) as e:
        parse_scenario(document, "x.yaml", None)
    assert e.value.diagnostics[0].code == "yaml-invalid"
