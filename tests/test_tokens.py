"""The token codec: compact, strict, bound to one store, and every damaged token refused."""

from __future__ import annotations

import base64
import json
import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policyd.errors import InternalError, InvalidRequestError, RevisionUnavailableError
from policyd.tokens import (
    MAX_REVISION,
    STORE_IDENTITY_BYTES,
    TokenCodec,
    check_token,
    new_store_identity,
)

identities = st.binary(min_size=STORE_IDENTITY_BYTES, max_size=STORE_IDENTITY_BYTES)
revisions = st.integers(min_value=0, max_value=MAX_REVISION)
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
CODEC = TokenCodec(b"\x01\x02\x03\x04\x05\x06\x07\x08")


def _sealed(raw: bytes) -> str:
    """Hand-made token text: ``raw`` and its CRC-32, as the documented layout says."""
    whole = raw + struct.pack(">I", zlib.crc32(raw))
    return base64.urlsafe_b64encode(whole).decode().rstrip("=")


@given(identities, revisions)
def test_token_round_trip(identity: bytes, revision: int) -> None:
    codec = TokenCodec(identity)
    token = codec.token(revision)
    assert codec.revision(token) == revision
    assert len(token) == 28
    assert set(token) <= set(ALPHABET)
    check_token(token)


@given(identities, revisions, st.lists(st.text(max_size=20), max_size=6))
def test_cursor_round_trip(identity: bytes, revision: int, parts: list[str]) -> None:
    codec = TokenCodec(identity)
    cursor = codec.cursor(revision, parts)
    assert codec.cursor_state(cursor) == (revision, tuple(parts))
    assert set(cursor) <= set(ALPHABET)


def test_identities_are_random() -> None:
    made = {new_store_identity() for _ in range(100)}
    assert len(made) == 100
    assert all(len(i) == STORE_IDENTITY_BYTES for i in made)


def test_a_token_of_another_store_is_revision_unavailable() -> None:
    token = TokenCodec(bytes(STORE_IDENTITY_BYTES)).token(7)
    check_token(token)  # well formed: only the store can tell it is not its own
    with pytest.raises(RevisionUnavailableError, match="another store") as raised:
        CODEC.revision(token, field="x.token")
    assert raised.value.field == "x.token"


def test_a_cursor_of_another_store_is_revision_unavailable() -> None:
    cursor = TokenCodec(bytes(STORE_IDENTITY_BYTES)).cursor(7, ["a"])
    with pytest.raises(RevisionUnavailableError, match="another store") as raised:
        CODEC.cursor_state(cursor)
    assert raised.value.field == "cursor"


@given(st.data())
def test_every_single_character_change_is_refused(data: st.DataObject) -> None:
    token = CODEC.token(data.draw(revisions))
    i = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    other = data.draw(st.sampled_from(ALPHABET).filter(lambda c: c != token[i]))
    tampered = token[:i] + other + token[i + 1 :]
    with pytest.raises(InvalidRequestError) as raised:
        CODEC.revision(tampered)
    assert raised.value.field == "consistency.token"
    with pytest.raises(InvalidRequestError):
        check_token(tampered)


GOOD = CODEC.token(5)
HEADER = b"\x01" + b"\x01\x02\x03\x04\x05\x06\x07\x08"


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param("garbage!", id="garbage"),
        pytest.param("cGQxOjE", id="old-style-pd1"),
        pytest.param(GOOD + "=", id="padded"),
        pytest.param(GOOD + "\n", id="trailing-newline"),
        pytest.param(" " + GOOD, id="leading-space"),
        pytest.param(GOOD[:-1], id="truncated"),
        pytest.param(GOOD + "A", id="extended"),
        pytest.param(GOOD[:5] + "+" + GOOD[6:], id="standard-base64-char"),
        pytest.param(GOOD[:5] + "\u0661" + GOOD[6:], id="non-ascii"),
        pytest.param(CODEC.cursor(5, []), id="a-cursor"),
        pytest.param(_sealed(b"\x09" + HEADER[1:] + struct.pack(">Q", 5)), id="unknown-version"),
        pytest.param(_sealed(HEADER + struct.pack(">Q", MAX_REVISION + 1)), id="revision-too-big"),
        pytest.param(_sealed(HEADER + struct.pack(">Q", 5) + b"x"), id="trailing-byte"),
    ],
)
def test_malformed_tokens_are_refused_naming_the_field(token: str) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        CODEC.revision(token, field="consistency.at_least_as_fresh.token")
    assert raised.value.field == "consistency.at_least_as_fresh.token"
    assert type(raised.value) is InvalidRequestError


def _cursor_with(payload: bytes) -> str:
    return _sealed(b"\x02" + HEADER[1:] + struct.pack(">Q", 5) + payload)


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param(GOOD, id="a-token"),
        pytest.param(_cursor_with(b"not json"), id="not-json"),
        pytest.param(_cursor_with(json.dumps({"a": 1}).encode()), id="not-a-list"),
        pytest.param(_cursor_with(json.dumps(["a", 1]).encode()), id="not-strings"),
        pytest.param(_cursor_with(b"\xff\xfe"), id="not-utf8"),
        pytest.param(CODEC.cursor(5, ["a"])[:-2], id="truncated"),
    ],
)
def test_malformed_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        CODEC.cursor_state(cursor)
    assert raised.value.field == "cursor"


def test_out_of_range_values_are_bugs() -> None:
    with pytest.raises(InternalError, match="revision"):
        CODEC.token(-1)
    with pytest.raises(InternalError, match="revision"):
        CODEC.cursor(MAX_REVISION + 1, [])
    with pytest.raises(InternalError, match="identity"):
        TokenCodec(b"short")
