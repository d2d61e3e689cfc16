"""Relationship values: names and ids match whole strings only; keys round-trip."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from policyd.errors import InvalidRelationshipError
from policyd.relationship import (
    OBJECT_ID,
    RELATION_NAME,
    TYPE_NAME,
    ObjectRef,
    Relationship,
    SubjectRef,
    parse_object,
    parse_relationship,
    parse_subject,
)

# Characters that must never ride along at the end (or anywhere) of a valid name or id:
# "did:plc:mallory\n" would otherwise be a second, invisible-looking subject.
INVISIBLE = ["\n", "\r\n", "\r", "\t", " ", "\x00", "\x0b", "\x0c", "\x85", "\u2028", "\u00a0"]


@pytest.mark.parametrize("tail", INVISIBLE, ids=repr)
@pytest.mark.parametrize(
    ("pattern", "valid"),
    [(OBJECT_ID, "did:plc:mallory"), (TYPE_NAME, "app/account"), (RELATION_NAME, "member")],
    ids=["object-id", "type-name", "relation-name"],
)
def test_patterns_match_the_whole_string(pattern: re.Pattern[str], valid: str, tail: str) -> None:
    assert pattern.match(valid)
    assert pattern.match(valid + tail) is None
    assert pattern.match(tail + valid) is None
    assert pattern.match(valid[:3] + tail + valid[3:]) is None


@pytest.mark.parametrize("tail", INVISIBLE, ids=repr)
@pytest.mark.parametrize(
    ("ref", "field"),
    [
        (lambda t: ObjectRef("account", f"did:plc:mallory{t}"), "object.id"),
        (lambda t: ObjectRef(f"account{t}", "did:plc:mallory"), "object.type"),
        (lambda t: SubjectRef("account", f"did:plc:mallory{t}"), "object.id"),
        (lambda t: SubjectRef("group", "eng", f"member{t}"), "object.relation"),
    ],
    ids=["object-id", "object-type", "subject-id", "subject-relation"],
)
def test_refs_refuse_trailing_whitespace_naming_the_field(
    ref: Callable[[str], ObjectRef | SubjectRef], field: str, tail: str
) -> None:
    with pytest.raises(InvalidRelationshipError) as raised:
        ref(tail).validate("object")
    assert raised.value.field == field


@pytest.mark.parametrize("tail", INVISIBLE, ids=repr)
def test_parsers_refuse_trailing_whitespace(tail: str) -> None:
    with pytest.raises(InvalidRelationshipError):
        parse_subject(f"account:did:plc:mallory{tail}")
    with pytest.raises(InvalidRelationshipError):
        parse_subject(f"group:eng#member{tail}")
    with pytest.raises(InvalidRelationshipError):
        parse_object(f"account:did:plc:mallory{tail}")


@pytest.mark.parametrize(
    "text",
    [
        "document:1#viewer@user:alice",
        "document:1#viewer@group:eng#member",
        "document:1#viewer@user:*",
        'document:1#viewer@user:bob[only_weekdays:{"day":"mon"}]',
        "document:1#viewer@user:carol[expiration:2030-01-01T00:00:00Z]",
    ],
)
def test_from_key_is_the_inverse_of_key(text: str) -> None:
    relationship = parse_relationship(text)
    rebuilt = Relationship.from_key(
        relationship.key,
        relationship.caveat_name,
        relationship.caveat_context,
        relationship.expires_at,
    )
    assert str(rebuilt) == str(relationship)
    assert Relationship.from_key(relationship.key).key == relationship.key
    stored_row: tuple[Any, ...] = (*relationship.key, "caveat and expiry columns follow")
    assert Relationship.from_key(stored_row).key == relationship.key
