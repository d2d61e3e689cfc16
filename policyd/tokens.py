"""Package tokens is the one codec for what carries a store revision to clients.

Consistency tokens travel on every response and come back in
``at_least_as_fresh`` and ``at_exact_snapshot`` requests and as Watch start
points; paging cursors (ListObjects, ReadRelationships) pin the revision of a
listing. Both are opaque to clients and both are made and read only here, so
one place decides what a well-formed one is.

Layout, in bytes, sent as URL-safe base64 without padding::

    offset  size  field
    0       1     kind and format version: 1 = consistency token v1, 2 = cursor v1
    1       8     the identity of the store that issued it (``Store.identity``)
    9       8     the revision, unsigned big-endian, at most 2**63 - 1
    17      n     cursors only: the listing's position, a UTF-8 JSON array of strings
    17 + n  4     CRC-32 of everything before it, big-endian

A consistency token is 21 bytes, 28 characters. It is fixed-width binary, not
text, so no integer is ever parsed from it: ``1_0``, `` 1 `` or non-ASCII
digits cannot even be spelled.

Reading is strict: ASCII base64url in its one canonical spelling, the expected
kind and length, a matching checksum and a revision in range, or else
InvalidRequestError naming the field. The checksum catches damaged, truncated
and hand-edited tokens; it is no secret, since tokens are not credentials (a
client can only name revisions of a store it may read anyway). A well-formed
token of another store is RevisionUnavailableError: its revision means nothing
here. SpiceDB puts a datastore id prefix in its zedtokens for the same reason
(pkg/zedtoken/zedtoken.go) and refuses a foreign one for an exact snapshot
(pkg/middleware/consistency/consistency.go); for at-least-as-fresh it can be
configured to refuse too (TreatMismatchingTokensAsError), which policyd always
does. Tokens of the first form (base64 of ``pd1:<revision>``) are refused like
any malformed token: no deployed user holds one.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from policyd.errors import InternalError, InvalidRequestError, RevisionUnavailableError

STORE_IDENTITY_BYTES = 8
MAX_REVISION = 2**63 - 1
"""The largest revision a token carries: what a signed 64-bit column holds."""

_TOKEN = 1
_CURSOR = 2
_KIND_NAMES = {_TOKEN: "consistency token", _CURSOR: "cursor"}
_HEAD = struct.Struct(">B8sQ")
_CRC = struct.Struct(">I")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


def new_store_identity() -> bytes:
    """A fresh random store identity, for a store being created."""
    return secrets.token_bytes(STORE_IDENTITY_BYTES)


def check_token(token: str, field: str = "consistency.token") -> None:
    """Raise InvalidRequestError naming ``field`` unless ``token`` is a well-formed token.

    Needs no store; whether the token is this store's is ``TokenCodec.revision``'s to say.
    """
    _open_token(token, field)


@dataclass(frozen=True, slots=True)
class TokenCodec:
    """Makes and reads the consistency tokens and cursors of the store with ``identity``."""

    identity: bytes

    def __post_init__(self) -> None:
        if len(self.identity) != STORE_IDENTITY_BYTES:
            raise InternalError(
                f"a store identity is {STORE_IDENTITY_BYTES} bytes, not {len(self.identity)}"
            )

    def token(self, revision: int) -> str:
        """The consistency token of ``revision`` (cached: every response carries one)."""
        return _token(self.identity, revision)

    def revision(self, token: str, field: str = "consistency.token") -> int:
        """The revision in one of this store's tokens.

        Raises:
            InvalidRequestError: the token is malformed or damaged.
            RevisionUnavailableError: the token is another store's.
        """
        identity, revision = _open_token(token, field)
        self._own(identity, _TOKEN, field)
        return revision

    def cursor(self, revision: int, position: Sequence[str]) -> str:
        """A cursor pinning ``revision`` and recording where a listing stopped."""
        payload = json.dumps(list(position), ensure_ascii=False, separators=(",", ":"))
        return _seal(_CURSOR, self.identity, revision, payload.encode())

    def cursor_state(self, cursor: str, field: str = "cursor") -> tuple[int, tuple[str, ...]]:
        """The revision and position in one of this store's cursors (errors as ``revision``)."""
        identity, revision, payload = _open(cursor, _CURSOR, field)
        self._own(identity, _CURSOR, field)
        try:
            position = json.loads(payload.decode())
        except (UnicodeDecodeError, ValueError) as e:
            raise _malformed(_CURSOR, field) from e
        if not isinstance(position, list) or not all(isinstance(p, str) for p in position):
            raise _malformed(_CURSOR, field)
        return revision, tuple(position)

    def _own(self, identity: bytes, kind: int, field: str) -> None:
        if identity != self.identity:
            raise RevisionUnavailableError(
                f"the {_KIND_NAMES[kind]} was issued by another store ({identity.hex()}), "
                f"not this one ({self.identity.hex()}); its revision means nothing here",
                field=field,
            )


@lru_cache(maxsize=1024)
def _token(identity: bytes, revision: int) -> str:
    return _seal(_TOKEN, identity, revision, b"")


@lru_cache(maxsize=1024)
def _open_token(token: str, field: str) -> tuple[bytes, int]:
    """``_open`` for tokens, cached: clients send the same few back (timeit: 3.4 to 0.25 µs)."""
    identity, revision, _ = _open(token, _TOKEN, field)
    return identity, revision


def _seal(kind: int, identity: bytes, revision: int, payload: bytes) -> str:
    if not 0 <= revision <= MAX_REVISION:
        raise InternalError(f"revision {revision} does not fit in a token")
    body = _HEAD.pack(kind, identity, revision) + payload
    return _text(body + _CRC.pack(zlib.crc32(body)))


def _text(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _open(text: str, kind: int, field: str) -> tuple[bytes, int, bytes]:
    """Identity, revision and payload of a token or cursor of ``kind``, checked strictly."""
    if not (text.isascii() and _BASE64URL.fullmatch(text)):
        raise _malformed(kind, field)
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as e:
        raise _malformed(kind, field) from e
    if _text(raw) != text or len(raw) < _HEAD.size + _CRC.size:
        raise _malformed(kind, field)  # a second spelling of the same bytes, or too short
    body, (crc,) = raw[: -_CRC.size], _CRC.unpack(raw[-_CRC.size :])
    if crc != zlib.crc32(body):
        raise InvalidRequestError(
            f"the {_KIND_NAMES[kind]} is damaged (its checksum does not match); "
            f"pass it back exactly as policyd returned it",
            field=field,
        )
    found, identity, revision = _HEAD.unpack_from(body)
    if found != kind:
        what = _KIND_NAMES.get(found)
        raise InvalidRequestError(
            f"expected a {_KIND_NAMES[kind]}, got a {what}"
            if what
            else f"unknown {_KIND_NAMES[kind]} version {found}",
            field=field,
        )
    if (kind == _TOKEN and len(body) != _HEAD.size) or revision > MAX_REVISION:
        raise _malformed(kind, field)
    return identity, revision, body[_HEAD.size :]


def _malformed(kind: int, field: str) -> InvalidRequestError:
    name = _KIND_NAMES[kind]
    return InvalidRequestError(
        f"not a policyd {name}: pass back a {name} exactly as policyd returned it", field=field
    )
