"""Package caveats.values turns JSON context values into the CEL values of declared parameter types.

A context arrives as JSON (a request's context, or a relationship's stored
one); each parameter's declared type (``int``, ``list<string>``,
``timestamp``, …) picks a converter that checks the value and returns what the
CEL library takes: ints, floats, strings, ``datetime``/``timedelta`` for
timestamps and durations, canonical strings for IP addresses. A value that does
not fit raises ``BadValue`` with the path inside it (``[2]['k']``) so that
callers can name the parameter and the spot.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
import re
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol, TypeAlias

from policyd.timestamps import parse_timestamp

__all__ = [
    "BadValue",
    "Converter",
    "ParameterType",
    "converter",
    "json_kind",
    "parse_duration",
    "parse_timestamp",
    "type_problem",
    "type_text",
]


class ParameterType(Protocol):
    """A caveat parameter type as ``policyd.schema.ir.CaveatType`` spells it: ``list<int>``."""

    @property
    def name(self) -> str:
        """The type name, such as ``int``, ``list`` or ``ipaddress``."""
        ...

    @property
    def args(self) -> Sequence[ParameterType]:
        """The type arguments: one for ``list`` and ``map``, none otherwise."""
        ...


Converter: TypeAlias = Callable[[Any], Any]


class BadValue(Exception):
    """A context value that does not fit its declared type; ``path`` locates it inside."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = path


def json_kind(value: object) -> str:
    """How an error names the JSON kind of ``value``."""
    match value:
        case None:
            return "null"
        case bool():
            return "bool"
        case int():
            return "int"
        case float():
            return "number"
        case str():
            return "string"
        case list() | tuple():
            return "list"
        case dict():
            return "map"
        case _:
            return type(value).__name__


def _expected(type_name: str, value: object) -> BadValue:
    return BadValue(f"expected {type_name}, got {json_kind(value)} {value!r}")


def _integral(value: object, type_name: str, low: int, high: int) -> int:
    """An int from a JSON int or an integral float (protobuf Struct carries numbers as doubles)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _expected(type_name, value)
    if not low <= value <= high:
        raise BadValue(f"{value} is out of range for {type_name}")
    return value


def _to_int(value: object) -> int:
    return _integral(value, "int", -(2**63), 2**63 - 1)


def _to_uint(value: object) -> int:
    return _integral(value, "uint", 0, 2**64 - 1)


def _to_double(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _expected("double", value)
    if not math.isfinite(value):
        raise BadValue(f"{value!r} is not a JSON number")
    return float(value)


def _to_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise _expected("bool", value)
    return value


def _to_string(value: object) -> str:
    if not isinstance(value, str):
        raise _expected("string", value)
    return value


def _to_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise _expected("bytes", value)


_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_NANOSECONDS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


def parse_duration(text: str) -> dt.timedelta:
    """A Go-style duration (``"1h30m"``, ``"10s"``, ``"-1.5h"``, ``"0"``) as a timedelta.

    Raises:
        ValueError: ``text`` is not a Go duration.
    """
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return dt.timedelta(0)
    nanoseconds = Decimal(0)
    position = 0
    while position < len(body):
        part = _DURATION_PART.match(body, position)
        if part is None:
            break
        try:
            nanoseconds += Decimal(part.group(1)) * _NANOSECONDS[part.group(2)]
        except InvalidOperation:
            break
        position = part.end()
    if not body or position != len(body):
        raise ValueError(f"invalid duration {text!r}: expected a Go duration such as '1h30m'")
    sign = -1 if text.startswith("-") else 1
    return dt.timedelta(microseconds=sign * int(nanoseconds / 1000))


def _to_duration(value: object) -> dt.timedelta:
    if isinstance(value, dt.timedelta):
        return value
    if not isinstance(value, str):
        raise _expected("duration string", value)
    try:
        return parse_duration(value)
    except ValueError as e:
        raise BadValue(str(e)) from e


def _to_timestamp(value: object) -> dt.datetime:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise BadValue(f"timestamp {value!r} has no time zone")
        return value
    if not isinstance(value, str):
        raise _expected("RFC 3339 timestamp string", value)
    try:
        return parse_timestamp(value)
    except ValueError as e:
        raise BadValue(str(e)) from e


def _to_ipaddress(value: object) -> str:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value.compressed
    if not isinstance(value, str):
        raise _expected("IP address string", value)
    try:
        return ipaddress.ip_address(value).compressed
    except ValueError as e:
        raise BadValue(f"invalid IP address {value!r}") from e


def _to_any(value: object) -> object:
    """A JSON value unchanged, after checking that it is one."""
    match value:
        case None | bool() | int() | str() | bytes():
            return value
        case float():
            return _to_double(value)
        case dt.datetime() | dt.timedelta():
            return value
        case list() | tuple():
            return [_to_any(item) for item in value]
        case dict():
            return {_string_key(key): _to_any(item) for key, item in value.items()}
        case _:
            raise _expected("JSON value", value)


def _string_key(key: object) -> str:
    if not isinstance(key, str):
        raise BadValue(f"map keys must be strings, got {json_kind(key)} {key!r}")
    return key


def _list_of(convert: Converter) -> Converter:
    def to_list(value: object) -> list[Any]:
        if not isinstance(value, list | tuple):
            raise _expected("list", value)
        converted = []
        for index, item in enumerate(value):
            try:
                converted.append(convert(item))
            except BadValue as e:
                raise BadValue(e.message, f"[{index}]{e.path}") from e
        return converted

    return to_list


def _map_of(convert: Converter) -> Converter:
    def to_map(value: object) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _expected("map", value)
        converted = {}
        for key, item in value.items():
            try:
                converted[_string_key(key)] = convert(item)
            except BadValue as e:
                raise BadValue(e.message, f"[{key!r}]{e.path}") from e
        return converted

    return to_map


_SCALAR_CONVERTERS: dict[str, Converter] = {
    "int": _to_int,
    "uint": _to_uint,
    "double": _to_double,
    "bool": _to_bool,
    "string": _to_string,
    "bytes": _to_bytes,
    "duration": _to_duration,
    "timestamp": _to_timestamp,
    "ipaddress": _to_ipaddress,
    "any": _to_any,
}
_CONTAINERS: dict[str, Callable[[Converter], Converter]] = {"list": _list_of, "map": _map_of}


def type_problem(parameter_type: ParameterType) -> str | None:
    """Why ``parameter_type`` is not a caveat parameter type, or None when it is one."""
    name, args = parameter_type.name, tuple(parameter_type.args)
    if name in _CONTAINERS:
        if len(args) != 1:
            return f"{name} takes one type argument, as in {name}<int>, not {len(args)}"
        return type_problem(args[0])
    if name not in _SCALAR_CONVERTERS:
        known = ", ".join([*_SCALAR_CONVERTERS, "list<T>", "map<T>"])
        return f"unknown type {name!r}; the types are {known}"
    if args:
        return f"{name} takes no type arguments"
    return None


def converter(parameter_type: ParameterType) -> Converter:
    """The function turning a JSON value into the CEL value of ``parameter_type`` (checked)."""
    if parameter_type.name in _CONTAINERS:
        return _CONTAINERS[parameter_type.name](converter(parameter_type.args[0]))
    return _SCALAR_CONVERTERS[parameter_type.name]


def type_text(parameter_type: ParameterType) -> str:
    """The type as a policy spells it: ``map<list<int>>``."""
    if not parameter_type.args:
        return parameter_type.name
    return f"{parameter_type.name}<{', '.join(type_text(a) for a in parameter_type.args)}>"
