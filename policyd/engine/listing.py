"""Package listing is how lookups hand out their answers: as found, in order, a page at a time.

A ``Listing`` is produced lazily: its ``steps`` are answers, or ``None`` at a
checkpoint where a deadline can stop it and a server can let other calls in
(engine/deadline.py). A listing ends after ``limit`` answers with a
``cursor``: the revision and the position after the last answer, sealed by
the store's token codec, so the next page reads the same snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from policyd.errors import InvalidRequestError
from policyd.store.base import Revision
from policyd.tokens import TokenCodec

T = TypeVar("T")


@dataclass(slots=True)
class Listing(Generic[T]):
    """A lookup's answers at one revision; ``cursor`` is set once ``limit`` stopped it."""

    revision: Revision
    token: str
    steps: Generator[T | None, None, None]
    cursor: str | None = None


def listing(
    stream: Iterator[T | None],
    revision: Revision,
    tokens: TokenCodec,
    limit: int | None,
    position: Callable[[T], tuple[str, ...] | None],
) -> Listing[T]:
    """A Listing of ``stream`` that stops after ``limit`` answers, leaving a cursor.

    ``position`` gives the cursor state after an answer, or None when nothing
    can follow it.
    """
    if limit is not None and limit < 1:
        raise InvalidRequestError("limit must be positive", field="limit")

    def limited() -> Generator[T | None, None, None]:
        count = 0
        for step in stream:
            yield step
            if step is None:
                continue
            count += 1
            if limit is not None and count >= limit:
                state = position(step)
                if state is not None:
                    result.cursor = tokens.cursor(revision, state)
                return

    result: Listing[T] = Listing(revision, tokens.token(revision), limited())
    return result


def resume(
    tokens: TokenCodec, cursor: str | None, request: tuple[str, ...]
) -> tuple[Revision | None, str | None]:
    """The revision a cursor pins and the position after which to go on; (None, None) without.

    Raises:
        InvalidRequestError: a cursor that is malformed or belongs to another request.
        RevisionUnavailableError: a cursor of another store.
    """
    if not cursor:
        return None, None
    revision, state = tokens.cursor_state(cursor)
    if len(state) != len(request) + 1:
        raise InvalidRequestError("malformed cursor", field="cursor")
    if tuple(state[:-1]) != request:
        raise InvalidRequestError("the cursor belongs to another request", field="cursor")
    return revision, state[-1]
