"""Helpers for the caveat tests: compile from ``"a int, b list<string>"`` and name results."""

from __future__ import annotations

from policyd.caveats import CaveatOutcome, CaveatResult, CompiledCaveat, compile_caveat
from policyd.schema.ir import CaveatType

TRUE = CaveatResult(CaveatOutcome.TRUE)
FALSE = CaveatResult(CaveatOutcome.FALSE)


def missing(*names: str) -> CaveatResult:
    return CaveatResult(CaveatOutcome.MISSING, names)


def parse_type(text: str) -> CaveatType:
    """``list<int>`` → CaveatType('list', (CaveatType('int'),)); enough for these tests."""
    if text.endswith(">"):
        outer, inner = text[:-1].split("<", 1)
        return CaveatType(outer, (parse_type(inner),))
    return CaveatType(text)


def parameters(params: str) -> dict[str, CaveatType]:
    """``"a int, b list<string>"`` as parameter types in declaration order."""
    types = {}
    for declaration in filter(None, (p.strip() for p in params.split(","))):
        name, type_text = declaration.split(" ", 1)
        types[name] = parse_type(type_text.strip())
    return types


def caveat(params: str, expression: str) -> CompiledCaveat:
    """Compile ``expression`` over ``params`` written as ``"a int, b list<string>"``."""
    return compile_caveat("test", parameters(params), expression)
