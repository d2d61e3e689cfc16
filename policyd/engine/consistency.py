"""Package consistency turns a request's consistency choice and tokens into the revision to read at.

This is how Zanzibar avoids the "new enemy" problem: a client that wrote
(and got a token back) asks later checks to be at least as fresh as that
token. Tokens are opaque to clients; inside they carry a revision.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

from policyd.errors import InvalidRequestError

_TOKEN_PREFIX = "pd1:"


@lru_cache(maxsize=1024)
def encode_token(revision: int) -> str:
    """The opaque consistency token for a revision (cached: every response carries one)."""
    raw = f"{_TOKEN_PREFIX}{revision}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, field: str = "consistency.token") -> int:
    """The revision inside a token; InvalidRequestError naming ``field`` if it is not ours."""
    try:
        padded = token + "=" * (-len(token) % 4)
        raw = base64.urlsafe_b64decode(padded.encode()).decode()
        if not raw.startswith(_TOKEN_PREFIX):
            raise ValueError(raw)
        revision = int(raw.removeprefix(_TOKEN_PREFIX))
        if revision < 0:
            raise ValueError(raw)
    except (ValueError, UnicodeDecodeError, binascii.Error) as e:
        raise InvalidRequestError("not a policyd consistency token", field=field) from e
    return revision


class ConsistencyMode(Enum):
    """How fresh the data of a read must be."""

    MINIMIZE_LATENCY = "minimize_latency"
    AT_LEAST_AS_FRESH = "at_least_as_fresh"
    AT_EXACT_SNAPSHOT = "at_exact_snapshot"
    FULLY_CONSISTENT = "fully_consistent"


@dataclass(frozen=True, slots=True)
class Consistency:
    """A request's consistency requirement; ``token`` goes with the two token modes."""

    mode: ConsistencyMode = ConsistencyMode.MINIMIZE_LATENCY
    token: str | None = None

    @classmethod
    def minimize_latency(cls) -> Consistency:
        """Any recent revision the engine already knows; the fastest."""
        return cls(ConsistencyMode.MINIMIZE_LATENCY)

    @classmethod
    def fully_consistent(cls) -> Consistency:
        """The newest committed revision, asked of the store."""
        return cls(ConsistencyMode.FULLY_CONSISTENT)

    @classmethod
    def at_least_as_fresh(cls, token: str) -> Consistency:
        """A revision no older than the token's (read-your-writes)."""
        return cls(ConsistencyMode.AT_LEAST_AS_FRESH, token)

    @classmethod
    def at_exact_snapshot(cls, token: str) -> Consistency:
        """Exactly the token's revision."""
        return cls(ConsistencyMode.AT_EXACT_SNAPSHOT, token)

    def validate(self) -> None:
        """Raise InvalidRequestError when the token is missing or malformed for the mode."""
        needs_token = self.mode in (
            ConsistencyMode.AT_LEAST_AS_FRESH,
            ConsistencyMode.AT_EXACT_SNAPSHOT,
        )
        if needs_token and not self.token:
            raise InvalidRequestError(
                f"consistency {self.mode.value} needs a token", field="consistency.token"
            )
        if needs_token and self.token:
            decode_token(self.token)
