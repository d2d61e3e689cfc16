"""Package consistency turns a request's consistency choice and tokens into the revision to read at.

This is how Zanzibar avoids the "new enemy" problem: a client that wrote
(and got a token back) asks later checks to be at least as fresh as that
token. Tokens are opaque to clients; inside they carry the store's identity and
a revision (``policyd.tokens`` makes and reads them).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from policyd.errors import InvalidRequestError
from policyd.tokens import check_token


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
        """Raise InvalidRequestError when the token is missing or malformed for the mode.

        Only the form is checked here; whether the token is the store's is the engine's call.
        """
        needs_token = self.mode in (
            ConsistencyMode.AT_LEAST_AS_FRESH,
            ConsistencyMode.AT_EXACT_SNAPSHOT,
        )
        if needs_token and not self.token:
            raise InvalidRequestError(
                f"consistency {self.mode.value} needs a token", field="consistency.token"
            )
        if needs_token and self.token:
            check_token(self.token)
