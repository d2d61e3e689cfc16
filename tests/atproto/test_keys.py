"""ES256K and ES256 keys decode from DID documents and verify atproto signatures, low-S only."""

from __future__ import annotations

import base64

import pytest

from policyd.atproto.keys import (
    ES256,
    ES256K,
    Keypair,
    parse_multikey,
    parse_verification_method,
)
from policyd.errors import DidResolutionError

# atproto's interoperability fixtures (bluesky-social/atproto,
# interop-test-files/crypto/signature-fixtures.json; MIT or Apache-2.0): the same
# message, key and signature, valid in the low-S form and invalid in the high-S one.
MESSAGE = "oWVoZWxsb2V3b3JsZA"
FIXTURES = {
    ES256: (
        "EcdsaSecp256r1VerificationKey2019",
        "zDnaembgSGUhZULN2Caob4HLJPaxBh92N7rtH21TErzqf8HQo",
        "zxdM8dSstjrpZaRUwBmDvjGXweKuEMVN95A9oJBFjkWMh",
        "2vZNsG3UKvvO/CDlrdvyZRISOFylinBh0Jupc6KcWoJWExHptCfduPleDbG3rko3YZnn9Lw0IjpixVmexJDegg",
        "2vZNsG3UKvvO/CDlrdvyZRISOFylinBh0Jupc6KcWoKp7O4VS9giSAah8k5IUbXIW00SuOrjfEqQ9HEkN9JGzw",
    ),
    ES256K: (
        "EcdsaSecp256k1VerificationKey2019",
        "zQ3shqwJEJyMBsBXCWyCBpUBMqxcon9oHB7mCvx4sSpMdLJwc",
        "z25z9DTpsiYYJKGsWmSPJK2NFN8PcJtZig12K59UgW7q5t",
        "5WpdIuEUUfVUYaozsi8G0B3cWO09cgZbIIwg1t2YKdUn/FEznOndsz/qgiYb89zwxYCbB71f7yQK5Lr7NasfoA",
        "5WpdIuEUUfVUYaozsi8G0B3cWO09cgZbIIwg1t2YKdXYA67MYxYiTMAVfdnkDCMN9S5B3vHosRe07aORmoshoQ",
    ),
}


def b64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


@pytest.mark.parametrize("algorithm", [ES256K, ES256])
def test_interop_fixtures(algorithm: str) -> None:
    suite, multikey, legacy, low_s, high_s = FIXTURES[algorithm]
    message = base64.urlsafe_b64decode(MESSAGE + "==")
    keys = [
        parse_multikey(multikey),
        parse_verification_method({"type": "Multikey", "publicKeyMultibase": multikey}),
        parse_verification_method({"type": suite, "publicKeyMultibase": legacy}),
    ]
    for key in keys:
        assert key.algorithm == algorithm
        assert key.multikey == multikey
        assert key.verify(message, b64(low_s))
        assert not key.verify(message, b64(high_s))
        assert not key.verify(message + b"!", b64(low_s))


@pytest.mark.parametrize("algorithm", [ES256K, ES256])
def test_generated_keys_sign_and_verify(algorithm: str) -> None:
    keypair = Keypair(algorithm)
    signature = keypair.sign(b"header.payload")
    assert len(signature) == 64
    assert parse_multikey(keypair.public.multikey).verify(b"header.payload", signature)
    legacy = parse_verification_method(
        {
            "type": FIXTURES[algorithm][0],
            "publicKeyMultibase": keypair.legacy_multibase(),
        }
    )
    assert legacy.verify(b"header.payload", signature)
    assert not legacy.verify(b"header.payload", signature[:63])
    assert not legacy.verify(b"header.payload", b"\0" * 64)


def test_a_key_of_the_other_curve_does_not_verify() -> None:
    k256, p256 = Keypair(ES256K), Keypair(ES256)
    assert not p256.public.verify(b"m", k256.sign(b"m"))
    assert not k256.public.verify(b"m", p256.sign(b"m"))


@pytest.mark.parametrize(
    "method",
    [
        {"type": "Multikey"},
        {"type": "Multikey", "publicKeyMultibase": "mAbc"},
        {"type": "Multikey", "publicKeyMultibase": "z0OIl"},
        {"type": "Multikey", "publicKeyMultibase": "z" + "1" * 40},
        {"type": "Ed25519VerificationKey2020", "publicKeyMultibase": FIXTURES[ES256K][1]},
        {"type": "EcdsaSecp256k1VerificationKey2019", "publicKeyMultibase": "z1111"},
        {"type": "Multikey", "publicKeyMultibase": "z" + "2" * 60_000},
    ],
    ids=["no-key", "not-base58btc", "bad-digit", "unknown-codec", "ed25519", "bad-point", "huge"],
)
def test_unusable_keys(method: dict[str, str]) -> None:
    with pytest.raises(DidResolutionError) as caught:
        parse_verification_method(method)
    assert caught.value.reason == "unusable-key"
