"""Package cursors makes LookupResources' per-result cursors out of policyd's per-page ones.

SpiceDB puts a cursor on every LookupResources answer ("after_result_cursor
... can be used to resume the stream after this result"); policyd's engine
gives one where a limit ends a page. The answers of a lookup at one revision
come in one order (by id), so a position is "the page that started at this
policyd cursor, after its first ``skip`` answers". A cursor here holds that,
the consistency token of the listing's revision (so a resumed listing reads the
same snapshot, as SpiceDB's cursors pin theirs) and a hash of the request, so a
cursor given to another request is refused as SpiceDB refuses it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass

from policyd.api.authzed.errors import invalid_cursor

_VERSION = "pd-lr1"


@dataclass(frozen=True, slots=True)
class LookupPosition:
    """Where a lookup goes on: at ``token``'s revision, from ``page``, after ``skip`` answers.

    ``page`` is a policyd cursor, or ``""`` for the start of the listing.
    """

    token: str
    page: str
    skip: int
    request: str

    def encode(self) -> str:
        """The opaque ``Cursor.token`` text."""
        body = json.dumps([_VERSION, self.token, self.page, self.skip, self.request])
        return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, request: str) -> LookupPosition:
        """The position in a cursor this API issued for ``request``.

        Raises:
            RichStatusError: INVALID_ARGUMENT, the cursor is malformed or another request's.
        """
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            version, token, page, skip, hashed = json.loads(raw)
        except (binascii.Error, ValueError, TypeError) as e:
            raise invalid_cursor("not a cursor this server issued") from e
        if not (
            version == _VERSION
            and isinstance(token, str)
            and isinstance(page, str)
            and isinstance(skip, int)
            and skip >= 0
        ):
            raise invalid_cursor("not a cursor this server issued")
        if hashed != request:
            raise invalid_cursor("the cursor was issued for another request")
        return cls(token, page, skip, request)


def request_hash(*parts: str) -> str:
    """A short digest of what identifies a lookup, stored in its cursors."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]
