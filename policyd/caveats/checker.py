"""Package caveats.checker type-checks a caveat expression with Google's CEL checker.

The evaluator (``common-expression-language``, the Rust ``cel`` crate) has no
type checker, so policy writes use a second library for it:
``cel-expr-python``, Google's C++ CEL implementation behind pybind11. It
declares each parameter with its CEL type and checks every operator and
function overload, as cel-go does for SpiceDB: ``l.contains(1)`` on a
``list<string>``, ``a < 'x'`` on an ``int``, an unknown identifier or function
and a result that cannot be a bool are refused with a line and column.

Why not evaluate with it as well: on ``benchmarks/caveat_bench.py`` it is the
slower of the two on the comparisons caveats are mostly made of (the numbers
are in ``policyd.caveats``), it has no partial evaluation either, and the
three-valued evaluation is built on the Rust library's programs. It checks;
the Rust library evaluates.

The environment mirrors SpiceDB's (``pkg/caveats/types``): ``ipaddress`` is an
opaque type with ``in_cidr(string)``; ``contains`` takes lists and maps as well
as strings; ordering compares ints, uints and doubles with each other (cel-go's
standard declarations do; the C++ checker's defaults do not, and the evaluator
does). Those declarations are the YAML environment config below.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from policyd.caveats.values import ParameterType, type_text

__all__ = ["TypeIssue", "type_issue"]

_ORDERINGS = {"_<_": "less", "_<=_": "less_equals", "_>_": "greater", "_>=_": "greater_equals"}
_ORDERED = ["int", "uint", "double", "string", "bytes", "bool", "timestamp", "duration"]
_NUMBERS = ["int", "uint", "double"]


def _config_yaml() -> str:
    """The environment: SpiceDB's ``contains``, ``in_cidr`` and cross-number ordering."""
    pairs = [(t, t) for t in _ORDERED] + [(a, b) for a in _NUMBERS for b in _NUMBERS if a != b]
    excluded = ["contains", *_ORDERINGS]
    lines = ["name: policyd", "stdlib:", "  exclude_functions:"]
    lines += [f"    - name: '{name}'" for name in excluded]
    lines += [
        "functions:",
        "  - name: contains",
        "    overloads:",
        "      - id: contains_string",
        "        target: {type_name: string}",
        "        args: [{type_name: string}]",
        "        return: {type_name: bool}",
        "      - id: list_contains",
        "        target: {type_name: list, params: [{type_name: A, is_type_param: true}]}",
        "        args: [{type_name: A, is_type_param: true}]",
        "        return: {type_name: bool}",
        "      - id: map_contains",
        "        target:",
        "          type_name: map",
        "          params: [{type_name: string}, {type_name: V, is_type_param: true}]",
        "        args: [{type_name: string}]",
        "        return: {type_name: bool}",
        "  - name: in_cidr",
        "    overloads:",
        "      - id: ipaddress_in_cidr",
        "        target: {type_name: ipaddress}",
        "        args: [{type_name: string}]",
        "        return: {type_name: bool}",
        "      - id: in_cidr_ipaddress_string",
        "        args: [{type_name: ipaddress}, {type_name: string}]",
        "        return: {type_name: bool}",
    ]
    for operator, word in _ORDERINGS.items():
        lines += [f"  - name: '{operator}'", "    overloads:"]
        for a, b in pairs:
            lines += [
                f"      - id: {word}_{a}_{b}",
                f"        args: [{{type_name: {a}}}, {{type_name: {b}}}]",
                "        return: {type_name: bool}",
            ]
    return "\n".join(lines) + "\n"


@functools.cache
def _library() -> Any:
    """The C++ CEL module, imported on first use so that ``import policyd`` stays light."""
    from cel_expr_python import cel

    return cel


@functools.cache
def _config() -> Any:
    return _library().NewEnvConfigFromYaml(_config_yaml())


def _cel_type(parameter_type: ParameterType) -> Any:
    types = _library().Type
    match parameter_type.name:
        case "list":
            return types.List(_cel_type(parameter_type.args[0]))
        case "map":
            return types.Map(types.STRING, _cel_type(parameter_type.args[0]))
        case "any":
            return types.DYN
        case "ipaddress":
            return types.AbstractType("ipaddress")
        case scalar:
            return getattr(types, scalar.upper())


@dataclass(frozen=True, slots=True)
class TypeIssue:
    """The first thing the checker refuses: a message, and a 1-based place when it gives one."""

    message: str
    line: int | None = None
    column: int | None = None


_ERROR = re.compile(r"ERROR: <input>:(\d+):(\d+): (.*)")
_UNDECLARED = re.compile(r"undeclared reference to '([^']+)'")
_NO_OVERLOAD = re.compile(r"found no matching overload for '([^']+)' applied to '\((.*)\)'")
_OPERATORS = {"@in": "in", "!_": "!", "-_": "-", "_?_:_": "?:", "_[_]": "[]"}


def _operator(name: str) -> str:
    if name in _OPERATORS:
        return _OPERATORS[name]
    if name.startswith("_") and name.endswith("_") and len(name) > 2:
        return name[1:-1]
    return f"{name}()"


def _explain(
    message: str, parameters: Mapping[str, ParameterType], undeclared: list[str], is_call: bool
) -> str:
    """The checker's message in the words policy authors read elsewhere in policyd."""
    if undeclared:
        if is_call:
            return f"unknown function {undeclared[0]!r}"
        declared = "its parameters: " + (", ".join(parameters) or "none")
        names = ", ".join(map(repr, undeclared))
        if len(undeclared) == 1:
            return f"unknown identifier {names}: not a parameter of the caveat ({declared})"
        return f"unknown identifiers {names}: not parameters of the caveat ({declared})"
    overload = _NO_OVERLOAD.search(message)
    if overload is not None:
        declared = ", ".join(f"{n} {type_text(t)}" for n, t in parameters.items()) or "none"
        return (
            f"does not fit the parameter types ({declared}): "
            f"no {_operator(overload.group(1))} takes ({overload.group(2)})"
        )
    return message


def _issue_from(error: Exception, parameters: Mapping[str, ParameterType], text: str) -> TypeIssue:
    found = _ERROR.findall(str(error))
    if not found:
        return TypeIssue(f"the CEL checker refused it: {str(error).strip()}")
    line, column, message = int(found[0][0]), int(found[0][1]), found[0][2].strip()
    undeclared = [m.group(1) for *_, msg in found if (m := _UNDECLARED.search(msg))]
    if _UNDECLARED.search(message) is None:
        undeclared = []
    lines = text.split("\n")
    at = lines[line - 1][column - 1 : column] if line <= len(lines) else ""
    is_call = bool(undeclared) and at == "("
    if is_call:  # the checker points at the call's parenthesis; point at the name
        column = max(1, column - len(undeclared[0]))
        undeclared = undeclared[:1]
    else:
        undeclared = list(dict.fromkeys(undeclared))
    return TypeIssue(_explain(message, parameters, undeclared, is_call), line, column)


def type_issue(parameters: Mapping[str, ParameterType], expression: str) -> TypeIssue | None:
    """What the CEL checker refuses in ``expression`` over ``parameters``, or None.

    A result typed ``dyn`` (it reads an ``any`` parameter) passes; evaluation checks it.
    """
    cel = _library()
    environment = cel.NewEnv(
        config=_config(), variables={n: _cel_type(t) for n, t in parameters.items()}
    )
    try:
        checked = environment.compile(expression)
    except RuntimeError as e:
        return _issue_from(e, parameters, expression)
    result = checked.return_type().name()
    kind = result.split("<")[0].lower()
    if kind in ("bool", "dyn"):
        return None
    return TypeIssue(f"yields {kind}, not a bool", 1, 1)
