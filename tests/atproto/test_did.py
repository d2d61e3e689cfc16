"""DID resolution: where documents come from, what is kept of them, caching and refusals."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from policyd.atproto.did import (
    DidResolver,
    ResolverConfig,
    _PublicAddressResolver,
    did_web_url,
    parse_document,
)
from policyd.atproto.keys import ES256, Keypair
from policyd.atproto.testing import DirectoryServer, Identity, random_plc_did
from policyd.errors import DidResolutionError, InvalidRequestError
from tests.clock import FakeClock


@pytest.mark.parametrize(
    ("did", "loopback", "url"),
    [
        ("did:web:example.com", False, "https://example.com/.well-known/did.json"),
        ("did:web:Sub.Example.COM", False, "https://sub.example.com/.well-known/did.json"),
        ("did:web:127.0.0.1%3A8080", True, "http://127.0.0.1:8080/.well-known/did.json"),
        ("did:web:localhost%3A2582", True, "http://localhost:2582/.well-known/did.json"),
        ("did:web:localhost", True, "http://localhost/.well-known/did.json"),
    ],
    ids=["host", "case", "loopback-ip", "localhost-port", "localhost"],
)
def test_did_web_urls(did: str, loopback: bool, url: str) -> None:
    assert did_web_url(did, loopback) == url


@pytest.mark.parametrize(
    ("did", "loopback"),
    [
        ("did:web:example.com:user:alice", True),
        ("did:web:example.com%3A8443", True),
        ("did:web:10.0.0.1", True),
        ("did:web:127.0.0.1%3A8080", False),
        ("did:web:localhost", False),
        ("did:web:exa_mple.com", True),
        ("did:web:example", True),
    ],
    ids=["path", "port", "ip", "loopback-no-flag", "localhost-no-flag", "underscore", "no-tld"],
)
def test_did_web_refusals(did: str, loopback: bool) -> None:
    with pytest.raises(DidResolutionError) as caught:
        did_web_url(did, loopback)
    assert caught.value.reason == "unsupported"


@pytest.mark.parametrize(
    ("plc_url", "loopback"),
    [
        ("http://plc.example.com", True),
        ("http://127.0.0.1:2582", False),
        ("ftp://127.0.0.1", True),
        ("https://plc.directory?x=1", False),
    ],
    ids=["http-public", "http-loopback-no-flag", "ftp", "query"],
)
def test_plc_urls_must_be_https(plc_url: str, loopback: bool) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        ResolverConfig(plc_url=plc_url, allow_loopback_http=loopback).validate()
    assert caught.value.field == "plc_url"


def test_documents_keep_the_atproto_keys() -> None:
    did = random_plc_did()
    space, account = Identity(did, fragment="atproto_space"), Identity(did, Keypair(ES256))
    document = account.document()
    document["verificationMethod"].append({"id": "#label", "type": "Multikey"})
    document["verificationMethod"].append({"id": "did:plc:other#atproto_space"})
    kept = parse_document(did, document)
    assert kept.keys == {"atproto": account.keypair.public}
    assert kept.signing_key() == account.keypair.public
    document["verificationMethod"] += space.document()["verificationMethod"]
    assert parse_document(did, document).signing_key() == space.keypair.public


def test_a_broken_space_key_is_not_skipped_for_the_account_key() -> None:
    did = random_plc_did()
    document = Identity(did).document()
    document["verificationMethod"].append({"id": "#atproto_space", "type": "Ed25519"})
    kept = parse_document(did, document)
    assert kept.keys["atproto_space"] is None
    assert kept.signing_key() is None


@pytest.mark.parametrize(
    "document",
    [[], {"id": "did:plc:someoneelse"}, {"id": "<did>", "verificationMethod": {}}],
    ids=["not-object", "other-id", "methods-not-list"],
)
def test_bad_documents(document: Any) -> None:
    did = random_plc_did()
    if isinstance(document, dict) and document.get("id") == "<did>":
        document["id"] = did
    with pytest.raises(DidResolutionError) as caught:
        parse_document(did, document)
    assert caught.value.reason == "bad-document"


def resolver(directory: DirectoryServer, clock: FakeClock, **settings: Any) -> DidResolver:
    config = ResolverConfig(plc_url=directory.url, allow_loopback_http=True, **settings)
    return DidResolver(config, clock=clock)


def run(resolver: DidResolver, *dids: str, refresh: bool = False) -> list[Any]:
    """Resolve the DIDs concurrently on a fresh loop; errors come back as values."""

    async def main() -> list[Any]:
        try:
            return await asyncio.gather(
                *(resolver.resolve(did, refresh=refresh) for did in dids), return_exceptions=True
            )
        finally:
            await resolver.close()

    return asyncio.run(main())


def test_plc_and_web_documents_resolve_once(directory: DirectoryServer, clock: FakeClock) -> None:
    plc, web = Identity(random_plc_did()), Identity(directory.web_did, Keypair(ES256))
    directory.publish(plc)
    directory.publish(web)
    dids = resolver(directory, clock)
    found = run(dids, plc.did, plc.did, web.did, plc.did)
    assert [d.signing_key() for d in found] == [
        plc.keypair.public,
        plc.keypair.public,
        web.keypair.public,
        plc.keypair.public,
    ]
    assert sorted(directory.requests) == ["/.well-known/did.json", f"/{plc.did}"]
    assert run(dids, plc.did)[0] is found[0]  # from the cache
    assert len(directory.requests) == 2


def test_refresh_fetches_again_only_past_refresh_after(
    directory: DirectoryServer, clock: FakeClock
) -> None:
    identity = Identity(random_plc_did())
    directory.publish(identity)
    dids = resolver(directory, clock, refresh_after=5.0)
    first = run(dids, identity.did)[0]
    assert run(dids, identity.did, refresh=True)[0] is first
    clock.now += 5.0
    rotated = Identity(identity.did)
    directory.publish(rotated)
    assert run(dids, identity.did, refresh=True)[0].keys["atproto"] == rotated.keypair.public
    assert len(directory.requests) == 2


def test_documents_expire_from_the_cache(directory: DirectoryServer, clock: FakeClock) -> None:
    identity = Identity(random_plc_did())
    directory.publish(identity)
    dids = resolver(directory, clock, cache_ttl=60.0, cache_size=1)
    run(dids, identity.did)
    clock.now += 60.0
    run(dids, identity.did)
    other = Identity(random_plc_did())
    directory.publish(other)
    run(dids, other.did)
    run(dids, identity.did)  # the cache holds one document
    assert len(directory.requests) == 4


def test_unknown_dids_are_remembered_briefly(directory: DirectoryServer, clock: FakeClock) -> None:
    did = random_plc_did()
    dids = resolver(directory, clock, not_found_ttl=10.0)
    for _ in range(2):
        (error,) = run(dids, did)
        assert isinstance(error, DidResolutionError)
        assert error.reason == "not-found"
    assert len(directory.requests) == 1
    clock.now += 10.0
    run(dids, did)
    assert len(directory.requests) == 2


def test_a_slow_directory_times_out(directory: DirectoryServer, clock: FakeClock) -> None:
    identity = Identity(random_plc_did())
    directory.publish(identity)
    directory.hold()
    (error,) = run(resolver(directory, clock, timeout=0.2), identity.did)
    assert isinstance(error, DidResolutionError)
    assert error.reason == "timeout"


def test_large_and_malformed_documents_are_refused(
    directory: DirectoryServer, clock: FakeClock
) -> None:
    large, broken = Identity(random_plc_did()), Identity(random_plc_did())
    directory.publish(large, {**large.document(), "padding": "x" * 70_000})
    directory.publish(broken, {**broken.document(), "id": "did:plc:other"})
    errors = run(resolver(directory, clock), large.did, broken.did)
    assert [e.reason for e in errors] == ["bad-document", "bad-document"]


def test_unsupported_methods_never_reach_the_network(
    directory: DirectoryServer, clock: FakeClock
) -> None:
    errors = run(resolver(directory, clock), "did:key:zQ3shqwJEJyMBsBXCWyCBpUBMqxcon9oHB7mCvx4sSpM")
    assert [e.reason for e in errors] == ["unsupported"]
    assert directory.requests == []


def test_guarded_hosts_must_resolve_to_public_addresses() -> None:
    async def main() -> None:
        guard = _PublicAddressResolver(frozenset({"plc.internal.test"}))
        try:
            with pytest.raises(OSError, match="no public address"):
                await guard.resolve("localhost", 443)
        finally:
            await guard.close()

    asyncio.run(main())
