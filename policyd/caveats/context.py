"""Package caveats.context checks caveat contexts where they enter: JSON, bounded, and typed.

Contexts come from clients in two places: with a request (one context for
every caveat the decision meets) and stored on a relationship (for its one
caveat). Both are refused here, with the parameter named, before anything
stores or evaluates them:

- Values are JSON. JSON has no NaN or infinities (RFC 8259, section 6), though
  protobuf's ``Struct`` carries them and Python's ``json`` reads them. A request
  from Python may also pass the values the converters take (``datetime``,
  ``timedelta``, ``bytes``, IP addresses); a stored context must be plain JSON.
- A value nests at most ``MAX_DEPTH`` (32) lists or maps. A ``Struct`` takes three
  message levels per JSON level and protobuf parses at most 100, so 32 levels is
  also what a gRPC request can carry; deeper values only come from the embedded
  API, where the recursive JSON and conversion code would run out of stack.
- A stored context takes at most ``MAX_STORED_BYTES`` (25,000) bytes as JSON:
  SpiceDB's default ``--max-relationship-context-size`` (25 KB, authzed/spicedb
  pull 1356). It bounds the lists a caveat's comprehensions iterate over.
- A stored context names only parameters of its caveat and each value fits the
  parameter's type: SpiceDB converts it with ``ErrorForUnknownParameters`` on
  write (``internal/relationships/validation.go``). A request context may carry
  names a caveat does not declare, which are ignored, as SpiceDB's evaluation
  does with ``SkipUnknownParameters`` (``internal/caveats/run.go``): one request
  context serves every caveat on the way.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import math
from collections.abc import Mapping
from typing import Any

from policyd.caveats.values import BadValue, ParameterType, converter, json_kind
from policyd.errors import CaveatError

__all__ = [
    "MAX_DEPTH",
    "MAX_STORED_BYTES",
    "ContextError",
    "check_request_context",
    "check_stored_context",
]

MAX_DEPTH = 32
MAX_STORED_BYTES = 25_000

_PYTHON_VALUES = (dt.datetime, dt.timedelta, bytes, ipaddress.IPv4Address, ipaddress.IPv6Address)


class ContextError(CaveatError):
    """A context that is not JSON, nests too deep, is too large, or does not fit its caveat.

    ``field`` is the context key at fault, when there is one.
    """


def _number_text(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _problem(value: object, python_values: bool) -> str | None:
    """Where in ``value`` it stops being JSON and why, as text to follow its key; iterative."""
    stack: list[tuple[object, str, int]] = [(value, "", 0)]
    while stack:
        item, path, level = stack.pop()
        if item is None or isinstance(item, str | int):  # bool is an int
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                return f"{path}: {_number_text(item)} is not a JSON number"
            continue
        if isinstance(item, list | tuple | dict):
            if level == MAX_DEPTH:
                return f" nests deeper than {MAX_DEPTH} levels of lists and maps"
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        return f"{path}: map keys must be strings, got {json_kind(key)} {key!r}"
                    stack.append((child, f"{path}[{key!r}]", level + 1))
            else:
                stack.extend((child, f"{path}[{i}]", level + 1) for i, child in enumerate(item))
            continue
        if not (python_values and isinstance(item, _PYTHON_VALUES)):
            return f"{path}: {json_kind(item)} is not a JSON value"
    return None


def _check_values(context: Mapping[str, Any], noun: str, python_values: bool) -> None:
    for key, value in context.items():
        problem = _problem(value, python_values)
        if problem is not None:
            raise ContextError(f"{noun} {key!r}{problem}", field=key)


def check_request_context(context: Mapping[str, Any]) -> None:
    """Refuse a request's context that is not JSON or nests too deep (names it ignores are fine).

    Raises:
        ContextError: naming the context key at fault.
    """
    _check_values(context, "context value", python_values=True)


def check_stored_context(
    caveat: str, parameters: Mapping[str, ParameterType], context: Mapping[str, Any]
) -> None:
    """Refuse a relationship's context that its caveat ``parameters`` would not evaluate.

    Raises:
        ContextError: naming the parameter at fault, or the context as a whole when too large.
    """
    _check_values(context, "parameter", python_values=False)
    size = len(json.dumps(context, separators=(",", ":")).encode())
    if size > MAX_STORED_BYTES:
        raise ContextError(
            f"the context takes {size} bytes as JSON; the limit is {MAX_STORED_BYTES}"
        )
    for key, value in context.items():
        parameter_type = parameters.get(key)
        if parameter_type is None:
            declared = ", ".join(map(repr, parameters)) or "none"
            raise ContextError(
                f"caveat {caveat!r} has no parameter {key!r} (its parameters: {declared})",
                field=key,
            )
        try:
            converter(parameter_type)(value)
        except BadValue as e:
            raise ContextError(f"parameter {key!r}{e.path}: {e.message}", field=key) from e
