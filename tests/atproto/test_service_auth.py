"""Service-auth verification: what passes, and the reason each failure is refused for."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from policyd.atproto.did import DidResolver, ResolverConfig
from policyd.atproto.keys import ES256, Keypair
from policyd.atproto.service_auth import ReplayGuard, ServiceAuthVerifier, ServiceToken
from policyd.atproto.spaces import METHOD
from policyd.atproto.testing import DirectoryServer, Identity, random_plc_did
from policyd.errors import ServiceAuthError
from tests.clock import FakeClock

APP = "did:plc:65zuidf2qgvu3noukzn2obpi#policyd"
NOW = 1_796_026_802.0


def verifier(directory: DirectoryServer, clock: FakeClock, **options: Any) -> ServiceAuthVerifier:
    config = ResolverConfig(plc_url=directory.url, allow_loopback_http=True, timeout=5.0)
    return ServiceAuthVerifier(
        DidResolver(config, clock=clock), APP, METHOD, now=lambda: NOW, **options
    )


def verify(check: ServiceAuthVerifier, *requests: tuple[str | None, str]) -> list[Any]:
    """Verify (authorization, authority) pairs in turn; refusals come back as their reasons."""

    async def main() -> list[Any]:
        results: list[Any] = []
        try:
            for authorization, authority in requests:
                try:
                    results.append(await check.verify(authorization, authority))
                except ServiceAuthError as e:
                    results.append(e.reason)
        finally:
            await check.resolver.close()
        return results

    return asyncio.run(main())


def bearer(token: str) -> str:
    return f"Bearer {token}"


@pytest.fixture
def authority(directory: DirectoryServer) -> Identity:
    identity = Identity(random_plc_did())
    directory.publish(identity)
    return identity


def test_the_alpha_pds_token_shape_verifies(
    directory: DirectoryServer, clock: FakeClock, authority: Identity
) -> None:
    token = authority.token(APP, METHOD, issued_at=NOW, jti="9dd566ac7d6ad55ae0555332b28d3a30")
    (verified,) = verify(verifier(directory, clock), (bearer(token), authority.did))
    assert verified == ServiceToken(
        authority.did, APP, METHOD, "9dd566ac7d6ad55ae0555332b28d3a30", NOW, NOW + 60, "ES256K"
    )


def test_p256_did_web_authorities_verify(directory: DirectoryServer, clock: FakeClock) -> None:
    web = Identity(directory.web_did, Keypair(ES256))
    directory.publish(web)
    (verified,) = verify(
        verifier(directory, clock), (bearer(web.token(APP, METHOD, issued_at=NOW)), web.did)
    )
    assert isinstance(verified, ServiceToken)
    assert verified.algorithm == "ES256"


def test_the_space_key_comes_before_the_account_key(
    directory: DirectoryServer, clock: FakeClock, authority: Identity
) -> None:
    space_key = Identity(authority.did, fragment="atproto_space")
    document = authority.document()
    document["verificationMethod"] += space_key.document()["verificationMethod"]
    directory.publish(authority, document)
    results = verify(
        verifier(directory, clock),
        (bearer(space_key.token(APP, METHOD, issued_at=NOW)), authority.did),
        (bearer(authority.token(APP, METHOD, issued_at=NOW)), authority.did),
    )
    assert isinstance(results[0], ServiceToken)
    assert results[1] == "bad-signature"


def _tamper(token: str, part: int, change: dict[str, Any]) -> str:
    parts = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(parts[part] + "=" * (-len(parts[part]) % 4)))
    encoded = json.dumps({**decoded, **change}).encode()
    parts[part] = base64.urlsafe_b64encode(encoded).rstrip(b"=").decode()
    return ".".join(parts)


@dataclass(frozen=True)
class Refusal:
    id: str
    reason: str
    error: str
    overrides: dict[str, Any] = field(default_factory=dict)
    authorization: str | None = "Bearer <token>"


REFUSALS = [
    Refusal("no-header", "missing-token", "AuthenticationRequired", authorization=None),
    Refusal("basic", "missing-token", "AuthenticationRequired", authorization="Basic <token>"),
    Refusal("two-parts", "malformed-token", "BadJwt", authorization="Bearer a.b"),
    Refusal("not-base64url", "malformed-token", "BadJwt", authorization="Bearer a+b.c.d"),
    Refusal("not-json", "malformed-token", "BadJwt", authorization="Bearer YQ.YQ.YQ"),
    Refusal("hs256", "bad-algorithm", "BadJwt", {"header": {"alg": "HS256"}}),
    Refusal("no-alg", "bad-algorithm", "BadJwt", {"header": {"alg": None}}),
    Refusal("dpop", "bad-type", "BadJwtType", {"header": {"typ": "dpop+jwt"}}),
    Refusal(
        "credential", "bad-type", "BadJwtType", {"header": {"typ": "atproto-space-credential+jwt"}}
    ),
    Refusal(
        "wrong-aud", "wrong-audience", "BadJwtAudience", {"claims": {"aud": "did:plc:other#x"}}
    ),
    Refusal("aud-no-fragment", "wrong-audience", "BadJwtAudience", {"claims": {"aud": APP[:-8]}}),
    Refusal("no-aud", "wrong-audience", "BadJwtAudience", {"claims": {"aud": None}}),
    Refusal(
        "wrong-lxm",
        "wrong-method",
        "BadJwtLexiconMethod",
        {"claims": {"lxm": "com.atproto.space.notifyWrite"}},
    ),
    Refusal("no-lxm", "wrong-method", "BadJwtLexiconMethod", {"claims": {"lxm": None}}),
    Refusal("expired", "expired", "JwtExpired", {"issued_at": NOW - 61}),
    Refusal("expires-now", "expired", "JwtExpired", {"issued_at": NOW - 60}),
    Refusal("no-exp", "malformed-token", "BadJwt", {"claims": {"exp": None}}),
    Refusal("exp-string", "malformed-token", "BadJwt", {"claims": {"exp": "2099"}}),
    Refusal("no-iat", "malformed-token", "BadJwt", {"claims": {"iat": None}}),
    Refusal("from-the-future", "issued-in-future", "BadJwt", {"issued_at": NOW + 11}),
    Refusal("not-before", "not-yet-valid", "BadJwt", {"claims": {"nbf": NOW + 30}}),
    Refusal("lives-too-long", "lifetime-too-long", "BadJwt", {"lifetime": 3600}),
    Refusal("no-jti", "missing-jti", "BadJwt", {"claims": {"jti": None}}),
    Refusal("long-jti", "missing-jti", "BadJwt", {"claims": {"jti": "j" * 129}}),
    Refusal("iss-service", "bad-issuer", "BadJwtIss", {"claims": {"iss": "<did>#atproto_pds"}}),
    Refusal("iss-other", "issuer-not-authority", "BadJwtIss", {"claims": {"iss": "<other>"}}),
]


@pytest.mark.parametrize("case", REFUSALS, ids=lambda c: c.id)
def test_refusals(case: Refusal, directory: DirectoryServer, clock: FakeClock) -> None:
    authority, other = Identity(random_plc_did()), Identity(random_plc_did())
    directory.publish(authority)
    directory.publish(other)
    overrides: dict[str, Any] = {"issued_at": NOW, **case.overrides}
    claims = overrides.pop("claims", {})
    overrides["claims"] = {
        k: v.replace("<did>", authority.did).replace("<other>", other.did)
        if isinstance(v, str)
        else v
        for k, v in claims.items()
    }
    token = authority.token(APP, METHOD, **overrides)
    authorization = (
        None if case.authorization is None else case.authorization.replace("<token>", token)
    )
    check = verifier(directory, clock)

    async def refused() -> ServiceAuthError:
        try:
            with pytest.raises(ServiceAuthError) as caught:
                await check.verify(authorization, authority.did)
        finally:
            await check.resolver.close()
        return caught.value

    error = asyncio.run(refused())
    assert (error.reason, error.error) == (case.reason, case.error)
    assert directory.requests == []  # refused before any DID was resolved
    assert len(check.replay) == 0


def test_signature_and_key_refusals(directory: DirectoryServer, clock: FakeClock) -> None:
    signed, impostor, keyless, broken, unknown = (Identity(random_plc_did()) for _ in range(5))
    for identity in (signed, keyless, broken):
        directory.publish(identity)
    directory.publish(keyless, {**keyless.document(), "verificationMethod": []})
    broken_document = broken.document()
    broken_document["verificationMethod"][0]["publicKeyMultibase"] = "zQ3sh"
    directory.publish(broken, broken_document)
    forged = impostor.token(APP, METHOD, issued_at=NOW, claims={"iss": signed.did})
    other_alg = _tamper(signed.token(APP, METHOD, issued_at=NOW), 0, {"alg": "ES256"})
    changed = _tamper(signed.token(APP, METHOD, issued_at=NOW), 1, {"lxm": METHOD})
    results = verify(
        verifier(directory, clock),
        (bearer(forged), signed.did),
        (bearer(other_alg), signed.did),
        (bearer(changed[:-4] + "AAAA"), signed.did),
        (bearer(keyless.token(APP, METHOD, issued_at=NOW)), keyless.did),
        (bearer(broken.token(APP, METHOD, issued_at=NOW)), broken.did),
        (bearer(unknown.token(APP, METHOD, issued_at=NOW)), unknown.did),
    )
    assert results == [
        "bad-signature",
        "bad-signature",
        "bad-signature",
        "no-signing-key",
        "no-signing-key",
        "did-not-found",
    ]


def test_a_replayed_token_is_refused_and_others_are_not(
    directory: DirectoryServer, clock: FakeClock, authority: Identity
) -> None:
    token = authority.token(APP, METHOD, issued_at=NOW)
    second = authority.token(APP, METHOD, issued_at=NOW)
    results = verify(
        verifier(directory, clock),
        (bearer(token), authority.did),
        (bearer(token), authority.did),
        (bearer(second), authority.did),
    )
    assert [r if isinstance(r, str) else "ok" for r in results] == ["ok", "replayed", "ok"]


def test_a_forged_token_is_not_remembered(
    directory: DirectoryServer, clock: FakeClock, authority: Identity
) -> None:
    """Forgeries cannot burn the jti of a real token, nor fill the replay cache."""
    impostor = Identity(random_plc_did())
    forged = impostor.token(APP, METHOD, issued_at=NOW, jti="j1", claims={"iss": authority.did})
    real = authority.token(APP, METHOD, issued_at=NOW, jti="j1")
    results = verify(
        verifier(directory, clock), (bearer(forged), authority.did), (bearer(real), authority.did)
    )
    assert results[0] == "bad-signature"
    assert isinstance(results[1], ServiceToken)


def test_a_rotated_key_is_fetched_again_after_a_signature_failure(
    directory: DirectoryServer, clock: FakeClock, authority: Identity
) -> None:
    check = verifier(directory, clock)
    first = authority.token(APP, METHOD, issued_at=NOW)
    rotated = Identity(authority.did, Keypair(ES256))

    async def main() -> list[str]:
        try:
            await check.verify(bearer(first), authority.did)
            directory.publish(rotated)
            clock.now += 5.0  # past refresh_after
            token = rotated.token(APP, METHOD, issued_at=NOW)
            return [(await check.verify(bearer(token), authority.did)).algorithm]
        finally:
            await check.resolver.close()

    assert asyncio.run(main()) == ["ES256"]
    assert directory.requests == [f"/{authority.did}"] * 2


def test_forgeries_do_not_refetch_a_fresh_document(
    directory: DirectoryServer, clock: FakeClock, authority: Identity
) -> None:
    impostor = Identity(random_plc_did())
    forgeries = [
        (
            bearer(impostor.token(APP, METHOD, issued_at=NOW, claims={"iss": authority.did})),
            authority.did,
        )
        for _ in range(5)
    ]
    assert verify(verifier(directory, clock), *forgeries) == ["bad-signature"] * 5
    assert directory.requests == [f"/{authority.did}"]


def test_the_replay_guard_forgets_expired_tokens_and_is_bounded() -> None:
    guard = ReplayGuard(capacity=2)
    assert guard.first_use("did:plc:a", "1", expires_at=100, now=0)
    assert guard.first_use("did:plc:b", "1", expires_at=200, now=0)
    assert not guard.first_use("did:plc:a", "1", expires_at=100, now=50)
    with pytest.raises(ServiceAuthError) as caught:
        guard.first_use("did:plc:c", "1", expires_at=100, now=50)
    assert caught.value.reason == "replay-cache-full"
    assert guard.first_use("did:plc:a", "1", expires_at=300, now=100)  # the first has expired
    assert len(guard) == 2
