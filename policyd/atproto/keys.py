"""Package keys decodes the signing keys of DID documents and verifies ES256K and ES256 signatures.

atproto signs with secp256k1 (``ES256K``) or NIST P-256 (``ES256``): a JWT
signature is the 64-byte ``r || s``, and only the low-S form is valid
(atproto.com/specs/cryptography, "ECDSA Signature Malleability"). A DID
document names a key as ``Multikey`` (base58btc multibase of the multicodec
``secp256k1-pub`` 0xe701 or ``p256-pub`` 0x8024 and the compressed point) or,
in older documents, as ``EcdsaSecp256k1VerificationKey2019`` /
``EcdsaSecp256r1VerificationKey2019`` with the bare point and no multicodec
(atproto.com/specs/did, "Legacy Representation").

Libraries, chosen by measurement (one core of this 2-core machine, a 340-byte
token; ``policyd bench --sections xrpc`` prints the last two rows again, the
SDK's was measured once in a scratch environment, as it is no dependency):

==================================================  ===============
verify one ES256K JWT                               µs per verify
==================================================  ===============
``atproto`` SDK 0.0.73 ``verify_jwt``               766
``cryptography`` 50 (OpenSSL's generic secp256k1)   589
``coincurve`` 21 (libsecp256k1), key parsed once    55
==================================================  ===============

At 589 µs a core verifies at most 1,700 tokens/s, below the 2,000 verified
requests/s asked of ``checkUserAccess`` before any HTTP or decision work, so
ES256K goes to ``coincurve`` (Bitcoin Core's libsecp256k1, which also
rejects high-S signatures by itself). ES256 stays on ``cryptography`` (129 µs,
OpenSSL's optimised P-256), with the low-S rule checked here. The SDK was
not used for the rest either: its ``verify_jwt`` checks no ``lxm``, accepts a
token without ``exp`` and ignores the header's ``alg``; its did:web resolver
takes no ports and no plain HTTP for loopback tests; and it brings pydantic,
httpx and libipld along. This is the only module that imports either library.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import coincurve
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from policyd.errors import DidResolutionError

ES256K = "ES256K"
ES256 = "ES256"
ALGORITHMS = (ES256K, ES256)

_K256_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_ORDER = {ES256K: _K256_ORDER, ES256: _P256_ORDER}
_MULTICODEC = {ES256K: b"\xe7\x01", ES256: b"\x80\x24"}
_LEGACY_TYPES = {
    "EcdsaSecp256k1VerificationKey2019": ES256K,
    "EcdsaSecp256r1VerificationKey2019": ES256,
}
MAX_KEY_TEXT = 128
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BASE58_INDEX = {c: i for i, c in enumerate(_BASE58)}


def _base58_decode(text: str) -> bytes:
    if len(text) > MAX_KEY_TEXT:  # a key is at most 90 digits; longer text only costs time
        raise DidResolutionError("unusable-key", "a key's multibase text is too long")
    number = 0
    for char in text:
        digit = _BASE58_INDEX.get(char)
        if digit is None:
            raise DidResolutionError("unusable-key", f"{char!r} is not a base58btc digit")
        number = number * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    return b"\0" * zeros + number.to_bytes((number.bit_length() + 7) // 8, "big")


def _base58_encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    digits = []
    while number:
        number, digit = divmod(number, 58)
        digits.append(_BASE58[digit])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(digits))


def _compact(r: int, s: int, algorithm: str) -> bytes:
    """The atproto signature form: ``r || s``, 32 bytes each, s in its low half."""
    order = _ORDER[algorithm]
    if s > order // 2:
        s = order - s
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _der(signature: bytes, algorithm: str) -> bytes | None:
    """The DER form of a compact low-S signature, or None when it is not one."""
    if len(signature) != 64:
        return None
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    order = _ORDER[algorithm]
    if not (0 < r < order and 0 < s <= order // 2):
        return None
    return encode_dss_signature(r, s)


class VerifyingKey(Protocol):
    """A public signing key from a DID document."""

    @property
    def algorithm(self) -> str:
        """The JWT ``alg`` the key verifies: ES256K or ES256."""
        ...

    @property
    def multikey(self) -> str:
        """The key as a Multikey string (``z…``), as ``did:key`` spells it after the prefix."""
        ...

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` (compact ``r || s``, low-S) signs ``message`` with SHA-256."""
        ...


@dataclass(frozen=True, slots=True)
class K256Key:
    """A secp256k1 public key, verified with libsecp256k1."""

    key: coincurve.PublicKey
    algorithm: str = ES256K

    @property
    def multikey(self) -> str:
        """The key as a Multikey string."""
        return "z" + _base58_encode(_MULTICODEC[ES256K] + self.key.format(compressed=True))

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` signs ``message``."""
        der = _der(signature, ES256K)
        return der is not None and bool(self.key.verify(der, message))


@dataclass(frozen=True, slots=True)
class P256Key:
    """A NIST P-256 public key, verified with OpenSSL through ``cryptography``."""

    key: ec.EllipticCurvePublicKey
    algorithm: str = ES256

    @property
    def multikey(self) -> str:
        """The key as a Multikey string."""
        point = self.key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
        )
        return "z" + _base58_encode(_MULTICODEC[ES256] + point)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` signs ``message``."""
        der = _der(signature, ES256)
        if der is None:
            return False
        try:
            self.key.verify(der, message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True


def public_key(algorithm: str, point: bytes) -> VerifyingKey:
    """The key of ``algorithm`` at an SEC1 point (compressed or not)."""
    try:
        if algorithm == ES256K:
            return K256Key(coincurve.PublicKey(point))
        return P256Key(ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point))
    except ValueError as e:
        raise DidResolutionError("unusable-key", f"not a valid {algorithm} public key") from e


def parse_multikey(text: str) -> VerifyingKey:
    """Decode a Multikey string (``z`` + base58btc of multicodec + compressed point)."""
    if not text.startswith("z"):
        raise DidResolutionError("unusable-key", "a Multikey must be base58btc ('z…')")
    data = _base58_decode(text[1:])
    for algorithm, prefix in _MULTICODEC.items():
        if data.startswith(prefix):
            return public_key(algorithm, data[len(prefix) :])
    raise DidResolutionError("unusable-key", "the Multikey is neither secp256k1 nor P-256")


def parse_verification_method(method: Mapping[str, Any]) -> VerifyingKey:
    """The key of a DID document's verification method (Multikey or the legacy 2019 types)."""
    encoded = method.get("publicKeyMultibase")
    if not isinstance(encoded, str):
        raise DidResolutionError("unusable-key", "a verification method has no publicKeyMultibase")
    kind = method.get("type")
    if kind == "Multikey":
        return parse_multikey(encoded)
    legacy = _LEGACY_TYPES.get(str(kind))
    if legacy is None:
        raise DidResolutionError("unusable-key", f"unsupported verification method type {kind!r}")
    if not encoded.startswith("z"):
        raise DidResolutionError("unusable-key", "publicKeyMultibase must be base58btc ('z…')")
    return public_key(legacy, _base58_decode(encoded[1:]))


class Keypair:
    """A private signing key: for tests, benchmarks and loopback stand-ins, never for serving."""

    def __init__(self, algorithm: str) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
        self.algorithm = algorithm
        self._k256: coincurve.PrivateKey | None = None
        self._p256: ec.EllipticCurvePrivateKey | None = None
        if algorithm == ES256K:
            self._k256 = coincurve.PrivateKey()
            self.public: VerifyingKey = K256Key(self._k256.public_key)
        else:
            self._p256 = ec.generate_private_key(ec.SECP256R1())
            self.public = P256Key(self._p256.public_key())

    def sign(self, message: bytes) -> bytes:
        """A compact low-S signature of ``message`` (SHA-256), as atproto JWTs carry it."""
        if self._k256 is not None:
            der = self._k256.sign(message)
        else:
            assert self._p256 is not None
            der = self._p256.sign(message, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return _compact(r, s, self.algorithm)

    def legacy_multibase(self) -> str:
        """The uncompressed point as legacy DID documents carry it (``z`` + base58btc)."""
        if self._k256 is not None:
            point = self._k256.public_key.format(compressed=False)
        else:
            assert self._p256 is not None
            point = self._p256.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        return "z" + _base58_encode(point)
