"""Tests for policyd.caveats.context: contexts refused where they enter, naming the parameter."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest

from policyd.caveats import ContextError, check_request_context, check_stored_context
from policyd.caveats.context import MAX_DEPTH, MAX_STORED_BYTES
from tests.caveats.helpers import parameters


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


REQUEST_CONTEXTS = [
    pytest.param({"x": math.nan}, "context value 'x': NaN is not a JSON number", id="nan"),
    pytest.param({"x": {"y": [1, -math.inf]}}, r"'x'\['y'\]\[1\]: -Infinity", id="deep-infinity"),
    pytest.param({"x": nested(MAX_DEPTH + 1)}, "'x' nests deeper than 32 levels", id="too-deep"),
    pytest.param({"x": nested(100_000)}, "nests deeper", id="far-too-deep"),
    pytest.param({"x": {1: "a"}}, "map keys must be strings", id="int-key"),
    pytest.param({"x": object()}, "object is not a JSON value", id="object"),
]


@pytest.mark.parametrize(("context", "words"), REQUEST_CONTEXTS)
def test_request_contexts_must_be_bounded_json(context: dict[str, Any], words: str) -> None:
    with pytest.raises(ContextError, match=words) as raised:
        check_request_context(context)
    assert raised.value.field == "x"
    assert raised.value.code == "caveat-error"


def test_request_contexts_may_carry_python_values_and_unknown_names() -> None:
    check_request_context(
        {"now": dt.datetime.now(dt.UTC), "ttl": dt.timedelta(1), "x": nested(MAX_DEPTH)}
    )


STORED_CONTEXTS = [
    pytest.param({"day": "mon", "hour": 1}, "caveat 'c' has no parameter 'hour'", id="unknown"),
    pytest.param({"at": 1}, "parameter 'at': expected RFC 3339 timestamp string", id="type"),
    pytest.param({"tags": ["a", 2]}, r"parameter 'tags'\[1\]: expected string", id="element"),
    pytest.param({"at": dt.datetime.now(dt.UTC)}, "datetime is not a JSON value", id="python"),
    pytest.param({"day": "x" * MAX_STORED_BYTES}, "the limit is 25000", id="too-large"),
]


@pytest.mark.parametrize(("context", "words"), STORED_CONTEXTS)
def test_stored_contexts_must_fit_their_caveat(context: dict[str, Any], words: str) -> None:
    declared = parameters("day string, at timestamp, tags list<string>")
    with pytest.raises(ContextError, match=words):
        check_stored_context("c", declared, context)


def test_a_fitting_stored_context_passes() -> None:
    declared = parameters("day string, at timestamp, tags list<string>")
    check_stored_context("c", declared, {"day": "mon", "at": "2024-01-01T00:00:00Z", "tags": []})
