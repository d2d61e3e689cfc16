"""Package timestamps reads and writes RFC 3339 timestamps, the one form policyd accepts.

Relationship expirations (``[expiration:2030-01-01T00:00:00Z]``, export files)
and caveat ``timestamp`` values are both RFC 3339 with a zone, as SpiceDB
takes them. ``datetime.fromisoformat`` does the parsing (3.11 reads ``Z``); a
pattern first refuses what it would also take but RFC 3339 does not (dates
alone, week dates, no zone).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})")


def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 timestamp (``"2024-12-01T00:00:00Z"``) as an aware datetime.

    Fractions finer than a microsecond are truncated (``datetime.fromisoformat`` does it).

    Raises:
        ValueError: ``text`` is not an RFC 3339 timestamp.
    """
    if _RFC3339.fullmatch(text) is None:
        raise ValueError(
            f"invalid timestamp {text!r}: expected RFC 3339 such as '2024-12-01T00:00:00Z'"
        )
    try:
        return datetime.fromisoformat(text.upper())  # 3.11 takes "Z", not "t" or "z"
    except ValueError as e:
        raise ValueError(f"invalid timestamp {text!r}: {e}") from e


def format_timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with a Z suffix, as SpiceDB prints timestamps; microseconds when set.

    ``parse_timestamp`` reads it back to the same instant (an export keeps an
    expiry to the microsecond the store holds).
    """
    utc = value.astimezone(UTC)
    spec = "microseconds" if utc.microsecond else "seconds"
    return utc.replace(tzinfo=None).isoformat(timespec=spec) + "Z"
