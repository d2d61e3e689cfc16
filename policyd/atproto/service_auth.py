"""Package service_auth verifies atproto inter-service auth tokens, failing closed.

A space authority calls its managing app with ``Authorization: Bearer <JWT>``
(atproto.com/specs/xrpc, "Inter-Service Authentication"). Captured from the
spaces alpha PDS (``createServiceJwt`` in @atproto/xrpc-server, called by
``checkManagingApp`` through ``resolveNotifyTarget``): header
``{"typ": "JWT", "alg": "ES256K"}`` with no ``kid``; claims ``iss`` = the
authority DID, ``aud`` = the space's ``managingApp`` verbatim
(``did:…#fragment``), ``lxm`` = the method NSID, ``exp`` = ``iat`` + 60 and a
random ``jti``; signed with the authority's repo signing key, which its DID
document lists as ``#atproto``. Proposal 0016 ("Space authority") names
``#atproto_space`` as the space's own key, falling back to ``#atproto``, and
this verifier looks them up in that order (``did.KEY_FRAGMENTS``).

The checks follow the reference ``verifyJwt`` and go further where the brief
asks: ``alg`` must be ES256K or ES256 and match the key's curve; ``typ`` may
not name another kind of token; ``aud`` and ``lxm`` must match exactly and
are required; ``exp`` must be in the future and ``iat`` at most ``clock_skew``
ahead; a token may have at most ``max_lifetime`` left to live (which bounds
the replay cache); ``iss`` must be the authority of the space asked about, so a PDS
cannot ask about someone else's space; and a ``jti`` is accepted once within
its lifetime. The cheap checks run before the DID is resolved, and a
``jti`` is remembered only after its signature verified, so forged tokens
neither reach the network nor fill the cache. Every failure raises
``ServiceAuthError`` with a reason for the log and the metrics and the
reference verifier's XRPC error name for the caller.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from policyd.atproto.did import DidDocument, DidResolver
from policyd.atproto.keys import ALGORITHMS, Keypair
from policyd.atproto.syntax import is_did
from policyd.errors import DidResolutionError, ServiceAuthError

# Token types that are not service auth: OAuth access and refresh tokens and DPoP
# proofs (refused by the reference verifier), and the space tokens of proposal 0016.
FOREIGN_TYPES = frozenset(
    {
        "at+jwt",
        "refresh+jwt",
        "dpop+jwt",
        "atproto-space-delegation+jwt",
        "atproto-space-credential+jwt",
        "atproto-client-attestation+jwt",
    }
)
MAX_TOKEN_BYTES = 8 * 1024
MAX_JTI_LENGTH = 128
_BASE64URL = re.compile(r"\A[A-Za-z0-9_-]*\Z")


def _refuse(reason: str, error: str, message: str) -> ServiceAuthError:
    return ServiceAuthError(reason, error, message)


def _decode_part(part: str) -> bytes:
    if not _BASE64URL.match(part):
        raise _refuse("malformed-token", "BadJwt", "poorly formatted jwt")
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError) as e:
        raise _refuse("malformed-token", "BadJwt", "poorly formatted jwt") from e


def _decode_json(part: str) -> dict[str, Any]:
    try:
        value = json.loads(_decode_part(part))
    except (ValueError, UnicodeDecodeError) as e:
        raise _refuse("malformed-token", "BadJwt", "poorly formatted jwt") from e
    if not isinstance(value, dict):
        raise _refuse("malformed-token", "BadJwt", "poorly formatted jwt")
    return value


@dataclass(frozen=True, slots=True)
class ServiceToken:
    """The claims of a token that verified."""

    issuer: str
    audience: str
    method: str
    jti: str
    issued_at: float
    expires_at: float
    algorithm: str


@dataclass(frozen=True, slots=True)
class _Parsed:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


def _parse(authorization: str | None) -> _Parsed:
    if not authorization:
        raise _refuse("missing-token", "AuthenticationRequired", "service auth is required")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise _refuse("missing-token", "AuthenticationRequired", "expected a Bearer token")
    if len(token) > MAX_TOKEN_BYTES:
        raise _refuse("malformed-token", "BadJwt", "poorly formatted jwt")
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise _refuse("malformed-token", "BadJwt", "poorly formatted jwt")
    header, claims = _decode_json(parts[0]), _decode_json(parts[1])
    return _Parsed(header, claims, f"{parts[0]}.{parts[1]}".encode(), _decode_part(parts[2]))


def _number(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise _refuse("malformed-token", "BadJwt", f"jwt {name} is not a number")
    return float(value)


class ReplayGuard:
    """Remembers the (issuer, jti) of verified tokens until they expire.

    Bounded by ``capacity``: when it is full of unexpired tokens, new tokens are
    refused rather than old ones forgotten. Not thread-safe: one event loop owns it.
    """

    def __init__(self, capacity: int = 1_000_000) -> None:
        self.capacity = capacity
        self._seen: dict[tuple[str, str], float] = {}
        self._expiry: list[tuple[float, tuple[str, str]]] = []

    def __len__(self) -> int:
        return len(self._seen)

    def first_use(self, issuer: str, jti: str, expires_at: float, now: float) -> bool:
        """True, and remembered, if this token was not seen; False for a replay."""
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            _, key = heapq.heappop(expiry)
            self._seen.pop(key, None)
        key = (issuer, jti)
        if key in self._seen:
            return False
        if len(self._seen) >= self.capacity:
            raise _refuse("replay-cache-full", "BadJwt", "too many tokens in flight; retry shortly")
        self._seen[key] = expires_at
        heapq.heappush(expiry, (expires_at, key))
        return True


class ServiceAuthVerifier:
    """Verifies the service-auth token of a request about one space authority."""

    def __init__(
        self,
        resolver: DidResolver,
        audience: str,
        method: str,
        *,
        clock_skew: float = 10.0,
        max_lifetime: float = 300.0,
        replay: ReplayGuard | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.resolver = resolver
        self.audience = audience
        self.method = method
        self.clock_skew = clock_skew
        self.max_lifetime = max_lifetime
        self.replay = replay if replay is not None else ReplayGuard()
        self._now = now

    def _claims(self, parsed: _Parsed, authority: str) -> ServiceToken:
        """Check everything that needs no network; the token's claims if they pass."""
        header, claims = parsed.header, parsed.claims
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise _refuse("bad-algorithm", "BadJwt", f"jwt alg must be one of {ALGORITHMS}")
        kind = header.get("typ")
        if isinstance(kind, str) and kind.lower() in FOREIGN_TYPES:
            raise _refuse("bad-type", "BadJwtType", f'invalid jwt type "{kind}"')
        method = claims.get("lxm")
        if method != self.method:
            raise _refuse(
                "wrong-method",
                "BadJwtLexiconMethod",
                f'bad jwt lexicon method ("lxm"). must match: {self.method}',
            )
        audience = claims.get("aud")
        if audience != self.audience:
            raise _refuse(
                "wrong-audience", "BadJwtAudience", "jwt audience does not match service did"
            )
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or not is_did(issuer):
            raise _refuse("bad-issuer", "BadJwtIss", "jwt iss is not a valid did")
        if issuer != authority:
            raise _refuse(
                "issuer-not-authority", "BadJwtIss", "jwt iss is not the authority of the space"
            )
        now = self._now()
        expires_at = _number(claims, "exp")
        issued_at = _number(claims, "iat")
        if expires_at is None or issued_at is None:
            raise _refuse("malformed-token", "BadJwt", "jwt exp and iat are required")
        if now >= expires_at:
            raise _refuse("expired", "JwtExpired", "jwt expired")
        if issued_at > now + self.clock_skew:
            raise _refuse("issued-in-future", "BadJwt", "jwt issued in the future")
        not_before = _number(claims, "nbf")
        if not_before is not None and not_before > now + self.clock_skew:
            raise _refuse("not-yet-valid", "BadJwt", "jwt not yet valid")
        if expires_at - now > self.max_lifetime:
            raise _refuse("lifetime-too-long", "BadJwt", "jwt lives too long")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH:
            raise _refuse("missing-jti", "BadJwt", "jwt jti is required")
        return ServiceToken(issuer, audience, method, jti, issued_at, expires_at, str(algorithm))

    async def _document(self, issuer: str, refresh: bool) -> DidDocument:
        try:
            return await self.resolver.resolve(issuer, refresh=refresh)
        except DidResolutionError as e:
            raise _refuse(f"did-{e.reason}", "BadJwtIss", "could not resolve the jwt issuer") from e

    @staticmethod
    def _verifies(document: DidDocument, token: ServiceToken, parsed: _Parsed) -> str | None:
        """None when the signature verifies, else the reason it does not."""
        key = document.signing_key()
        if key is None:
            return "no-signing-key"
        if key.algorithm != token.algorithm or not key.verify(
            parsed.signing_input, parsed.signature
        ):
            return "bad-signature"
        return None

    async def verify(self, authorization: str | None, authority: str) -> ServiceToken:
        """Verify the ``Authorization`` header of a request about ``authority``'s space.

        Raises:
            ServiceAuthError: for any failure; nothing about the request may be answered.
        """
        parsed = _parse(authorization)
        token = self._claims(parsed, authority)
        document = await self._document(token.issuer, refresh=False)
        failure = self._verifies(document, token, parsed)
        if failure is not None:
            fresh = await self._document(token.issuer, refresh=True)
            if fresh is not document:
                failure = self._verifies(fresh, token, parsed)
        if failure == "no-signing-key":
            raise _refuse(failure, "BadJwtSignature", "the jwt issuer has no usable signing key")
        if failure is not None:
            raise _refuse(failure, "BadJwtSignature", "jwt signature does not match jwt issuer")
        if not self.replay.first_use(token.issuer, token.jti, token.expires_at, self._now()):
            raise _refuse("replayed", "BadJwt", "jwt has already been used")
        return token


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_service_jwt(
    keypair: Keypair,
    issuer: str,
    audience: str,
    method: str,
    *,
    issued_at: float | None = None,
    lifetime: float = 60.0,
    jti: str | None = None,
    header: dict[str, Any] | None = None,
    claims: dict[str, Any] | None = None,
) -> str:
    """A service-auth JWT as the alpha PDS makes one (for tests and benchmarks).

    ``header`` and ``claims`` override or add fields (a None value removes one).
    """
    now = int(time.time() if issued_at is None else issued_at)
    head: dict[str, Any] = {"typ": "JWT", "alg": keypair.algorithm, **(header or {})}
    body: dict[str, Any] = {
        "iat": now,
        "iss": issuer,
        "aud": audience,
        "exp": now + int(lifetime),
        "lxm": method,
        "jti": jti if jti is not None else secrets.token_hex(16),
        **(claims or {}),
    }
    head = {k: v for k, v in head.items() if v is not None}
    body = {k: v for k, v in body.items() if v is not None}
    signing_input = f"{_b64(json.dumps(head).encode())}.{_b64(json.dumps(body).encode())}"
    return f"{signing_input}.{_b64(keypair.sign(signing_input.encode()))}"
