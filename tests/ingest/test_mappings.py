"""Mapping files: their shape, their fit to the policy (clear errors), and what records map to."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from policyd import Engine
from policyd.ingest.mappings import MappingError, load_mapping, parse_mapping
from policyd.store.base import Store
from policyd.store.sqlite import SqliteStore
from policyd.store.validation import Validator

from .conftest import POLICY


def test_the_default_mapping_fits_the_example_policy(store: Store) -> None:
    mapping = load_mapping()
    policy = store.snapshot().read_policy()
    assert policy is not None
    mapping.validate(policy.schema)
    assert mapping.collections == {
        "app.bsky.graph.follow",
        "app.bsky.graph.block",
        "app.bsky.graph.listitem",
    }


MISFITS = [
    pytest.param(
        "team:{record.subject}#member@account:{repo}",
        "the policy defines no type 'team'",
        id="unknown-type",
    ),
    pytest.param(
        "account:{record.subject}#fan@account:{repo}",
        "type 'account' has no relation 'fan'",
        id="unknown-relation",
    ),
    pytest.param(
        "account:{record.subject}#see_followers_only@account:{repo}",
        "is a permission",
        id="permission",
    ),
    pytest.param(
        "post:{uri}#space@account:{repo}",
        "space",
        id="subject-type-not-allowed",
    ),
]


@pytest.mark.parametrize(("template", "message"), MISFITS)
def test_a_mapping_that_does_not_fit_the_policy_names_where(
    store: Store, template: str, message: str
) -> None:
    mapping = parse_mapping(
        {"mappings": [{"collection": "com.example.thing", "relationships": [template]}]},
        "mine.yaml",
    )
    policy = store.snapshot().read_policy()
    assert policy is not None
    with pytest.raises(MappingError) as raised:
        mapping.validate(policy.schema)
    text = str(raised.value)
    assert text.startswith(f"mine.yaml: mappings[0] (com.example.thing): {template}: ")
    assert message in text


MALFORMED = [
    pytest.param({"mapping": []}, "expected a map with one key, 'mappings'", id="top-level-key"),
    pytest.param({"mappings": []}, "non-empty list", id="empty"),
    pytest.param(
        {"mappings": [{"collection": "not an nsid", "relationships": ["a:b#c@d:e"]}]},
        "collection must be an NSID",
        id="bad-nsid",
    ),
    pytest.param(
        {"mappings": [{"collection": "a.b.c", "relationships": ["account:{repo}"]}]},
        "expected resource_type:ID#relation@subject_type:ID",
        id="not-a-relationship",
    ),
    pytest.param(
        {"mappings": [{"collection": "a.b.c", "relationships": ["account:{owner}#x@account:y"]}]},
        "unknown placeholder {owner}",
        id="unknown-placeholder",
    ),
    pytest.param(
        {
            "mappings": [
                {"collection": "a.b.c", "relationships": ["a:b#c@d:e"]},
                {"collection": "a.b.c", "relationships": ["a:b#c@d:f"]},
            ]
        },
        "a.b.c is mapped twice",
        id="twice",
    ),
    pytest.param(
        {"mappings": [{"collection": "a.b.c", "relationship": "a:b#c@d:e"}]},
        "expected keys 'collection' and 'relationships'",
        id="misspelt-key",
    ),
]


@pytest.mark.parametrize(("document", "message"), MALFORMED)
def test_a_malformed_mapping_file_is_refused(
    tmp_path: Path, document: object, message: str
) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(MappingError, match=r"mapping\.yaml") as raised:
        load_mapping(path)
    assert message in str(raised.value)


def test_a_mapping_of_another_lexicon_with_nested_fields(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    engine = Engine(store)
    engine.write_policy(
        POLICY
        + "\ndefinition community {\n    relation member: account\n    relation host: account\n}\n"
    )
    mapping = parse_mapping(
        yaml.safe_load(
            """
mappings:
  - collection: com.example.community.membership
    relationships:
      - "community:{record.community.uri}#member@account:{repo}"
      - "community:{record.community.uri}#host@account:{record.invitedBy}"
"""
        ),
        "community.yaml",
    )
    policy = store.snapshot().read_policy()
    assert policy is not None
    mapping.validate(policy.schema)
    validator = Validator(policy.schema)
    community = "at://did:plc:host/com.example.community/c1"
    rels, skipped = mapping.relationships(
        "did:plc:bob",
        "com.example.community.membership",
        "m1",
        {"community": {"uri": community}, "invitedBy": "did:plc:host"},
        validator,
    )
    assert {str(r) for r in rels} == {
        f"community:{community}#member@account:did:plc:bob",
        f"community:{community}#host@account:did:plc:host",
    }
    assert skipped == 0
    # a record lacking a field, or with an id the policy cannot hold, maps to less
    rels, skipped = mapping.relationships(
        "did:plc:bob",
        "com.example.community.membership",
        "m2",
        {"community": {"uri": "has spaces"}},
        validator,
    )
    assert (rels, skipped) == ((), 2)
    store.close()
