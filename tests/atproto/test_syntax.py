"""Space URIs, DIDs and service identifiers parse as the alpha's @atproto/syntax parses them."""

from __future__ import annotations

import pytest

from policyd.atproto.syntax import is_did, is_nsid, parse_service_ref, parse_space
from policyd.errors import InvalidRequestError

AUTHORITY = "did:plc:ragtjsm2j2vknwkz3zp4oxrd"


@pytest.mark.parametrize(
    "uri",
    [
        f"at://{AUTHORITY}/space/com.example.group/club",
        f"at://{AUTHORITY}/space/com.example.group/3kgfans7t2dk",
        f"at://{AUTHORITY}/space/com.example.group/self",
        "at://did:web:example.com/space/com.atmoboards.forum/default",
        "at://did:web:127.0.0.1%3A8080/space/com.example.group/a~b:c_d-e.f",
    ],
    ids=["slug", "tid", "self", "did-web", "did-web-port"],
)
def test_spaces(uri: str) -> None:
    space = parse_space(uri)
    assert space.uri == uri
    assert f"at://{space.authority}/space/{space.space_type}/{space.skey}" == uri


@pytest.mark.parametrize(
    "uri",
    [
        f"at://{AUTHORITY}/space/com.example.group/club/did:plc:bob/com.example.post/1",
        f"at://{AUTHORITY}/space/com.example.group/club/",
        f"at://{AUTHORITY}/space/com.example.group/club?x=1",
        f"at://{AUTHORITY}/space/com.example.group/club#frag",
        f"at://{AUTHORITY}/space/com.example.group",
        f"at://{AUTHORITY}/app.bsky.feed.post/3k2a",
        "at://alice.example.com/space/com.example.group/club",
        f"at://{AUTHORITY}/space/group/club",
        f"at://{AUTHORITY}/space/com.example.group/..",
        f"at://{AUTHORITY}/space/com.example.group/a%20b",
        f"at://{AUTHORITY}/space/com.example.group/club\n",
        f"https://{AUTHORITY}/space/com.example.group/club",
    ],
    ids=[
        "record",
        "trailing-slash",
        "query",
        "fragment",
        "no-skey",
        "public-record",
        "handle",
        "two-part-nsid",
        "dot-dot",
        "percent",
        "newline",
        "https",
    ],
)
def test_not_spaces(uri: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_space(uri)
    assert caught.value.field == "space"


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        (AUTHORITY, True),
        ("did:web:example.com", True),
        ("did:web:localhost%3A2582", True),
        ("did:plc:", False),
        ("did:PLC:abc", False),
        ("did:plc:abc:", False),
        (f"{AUTHORITY}\n", False),
        ("did:plc:" + "a" * 2041, False),
    ],
    ids=["plc", "web", "web-port", "empty-id", "upper-method", "trailing-colon", "newline", "long"],
)
def test_dids(text: str, valid: bool) -> None:
    assert is_did(text) is valid


def test_nsids_need_three_segments() -> None:
    assert is_nsid("com.atproto.simplespace.checkUserAccess")
    assert not is_nsid("example.group")
    assert not is_nsid("com.example.9group")


def test_service_refs() -> None:
    assert parse_service_ref("did:plc:65zuidf2qgvu3noukzn2obpi#policyd") == (
        "did:plc:65zuidf2qgvu3noukzn2obpi",
        "policyd",
    )
    for bad in ("did:plc:65zuidf2qgvu3noukzn2obpi", "did:plc:x#", "policyd#x", "did:plc:x#a#b"):
        with pytest.raises(InvalidRequestError, match="did:…#fragment"):
            parse_service_ref(bad)
