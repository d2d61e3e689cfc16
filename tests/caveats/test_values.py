"""Tests for policyd.caveats.values: JSON values checked against types; durations, timestamps."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from policyd.caveats import parse_duration, parse_timestamp
from policyd.errors import CaveatError
from tests.caveats.helpers import caveat

# --- Bad context values ----------------------------------------------------------------------

BAD_CONTEXT = [
    pytest.param("x int", {"x": "42"}, "parameter x: expected int, got string", id="int-string"),
    pytest.param("x int", {"x": True}, "expected int, got bool", id="int-bool"),
    pytest.param("x int", {"x": 1.5}, "expected int, got number", id="int-fraction"),
    pytest.param("x int", {"x": 2**63}, "out of range for int", id="int-overflow"),
    pytest.param("x uint", {"x": -1}, "out of range for uint", id="uint-negative"),
    pytest.param("x bool", {"x": 1}, "expected bool", id="bool-int"),
    pytest.param("x string", {"x": 1}, "expected string", id="string-int"),
    pytest.param("x double", {"x": "1.0"}, "expected double", id="double-string"),
    pytest.param("x timestamp", {"x": "yesterday"}, "invalid timestamp", id="timestamp-text"),
    pytest.param(
        "x timestamp", {"x": "2024-01-01T00:00:00"}, "invalid timestamp", id="timestamp-no-zone"
    ),
    pytest.param(
        "x timestamp", {"x": "2024-13-01T00:00:00Z"}, "invalid timestamp", id="timestamp-month"
    ),
    pytest.param("x duration", {"x": "1 hour"}, "invalid duration", id="duration-text"),
    pytest.param("x duration", {"x": 60}, "expected duration string", id="duration-number"),
    pytest.param("x ipaddress", {"x": "10.1.2.300"}, "invalid IP address", id="ip-bad"),
    pytest.param(
        "x list<int>", {"x": [1, "2"]}, r"parameter x\[1\]: expected int", id="list-element"
    ),
    pytest.param("x list<int>", {"x": {"a": 1}}, "expected list", id="list-map"),
    pytest.param(
        "x map<int>", {"x": {"k": "v"}}, r"parameter x\['k'\]: expected int", id="map-value"
    ),
    pytest.param("x map<int>", {"x": [1]}, "expected map", id="map-list"),
    pytest.param("x any", {"x": object()}, "expected JSON value", id="any-object"),
    pytest.param("x int", {"x": None}, "expected int, got null", id="null"),
]


@pytest.mark.parametrize(("params", "context", "message"), BAD_CONTEXT)
def test_bad_context_values(params: str, context: dict[str, Any], message: str) -> None:
    compiled = caveat(params, "x == x")
    with pytest.raises(CaveatError, match=message) as raised:
        compiled.evaluate(context)
    assert raised.value.field == "x"


# --- Durations and timestamps ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("10s", dt.timedelta(seconds=10), id="seconds"),
        pytest.param("1h30m", dt.timedelta(minutes=90), id="hours-minutes"),
        pytest.param("1.5h", dt.timedelta(minutes=90), id="fraction"),
        pytest.param("-2m", dt.timedelta(minutes=-2), id="negative"),
        pytest.param("300ms", dt.timedelta(milliseconds=300), id="milliseconds"),
        pytest.param("7us", dt.timedelta(microseconds=7), id="microseconds"),
        pytest.param("1500ns", dt.timedelta(microseconds=1), id="nanoseconds-truncated"),
        pytest.param("0", dt.timedelta(0), id="zero"),
    ],
)
def test_parse_duration(text: str, expected: dt.timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "h", "1", "1d", "1h 2m", "--1s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_parse_timestamp_keeps_the_instant() -> None:
    assert parse_timestamp("2024-10-03T07:16:28.068632123-07:00") == dt.datetime(
        2024, 10, 3, 14, 16, 28, 68632, tzinfo=dt.UTC
    )
