from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policyd.timestamps import format_timestamp, parse_timestamp

INSTANTS = st.datetimes(
    min_value=datetime(1970, 1, 1),
    max_value=datetime(9999, 12, 30),
    timezones=st.just(UTC),
)


@given(INSTANTS)
def test_format_then_parse_is_the_same_instant_to_the_microsecond(value: datetime) -> None:
    assert parse_timestamp(format_timestamp(value)) == value


def test_whole_seconds_print_as_spicedb_does() -> None:
    assert format_timestamp(datetime(2030, 1, 1, tzinfo=UTC)) == "2030-01-01T00:00:00Z"
    east = timezone(timedelta(hours=2))
    assert format_timestamp(datetime(2030, 1, 1, 2, 0, 0, 5, tzinfo=east)) == (
        "2030-01-01T00:00:00.000005Z"
    )


@pytest.mark.parametrize(
    "text",
    ["2030-01-01", "2030-01-01T00:00:00", "2030-W01-1T00:00:00Z", "tomorrow", ""],
)
def test_only_rfc3339_with_a_zone_is_a_timestamp(text: str) -> None:
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_timestamp(text)


def test_offsets_and_lowercase_z_are_rfc3339() -> None:
    assert parse_timestamp("2030-01-01t01:00:00+01:00") == datetime(2030, 1, 1, tzinfo=UTC)
    assert parse_timestamp("2030-01-01T00:00:00z") == datetime(2030, 1, 1, tzinfo=UTC)
