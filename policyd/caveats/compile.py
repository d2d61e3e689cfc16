"""Package caveats.compile checks a caveat once and builds the programs that evaluate it.

Every failure is a ``CaveatCompileError`` with the position inside the
expression, which the policy compiler maps to a line and column of the policy
file. The checks: parameter types exist; the expression parses; it names no
identifier that is not a parameter and no unknown function; and no leaf of its
boolean structure cannot yield a bool (top-level arithmetic, or a non-bool
result on sample values of the declared types).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from policyd.caveats.evaluate import (
    FUNCTIONS,
    AndTree,
    CompiledCaveat,
    Node,
    NotTree,
    OrTree,
    Program,
    TernaryTree,
    is_uint,
    uint_key,
)
from policyd.caveats.structure import (
    AndNode,
    LeafSpan,
    NotNode,
    OrNode,
    Shape,
    TernaryNode,
    Token,
    bound_names,
    shape,
    tokens,
)
from policyd.caveats.values import (
    Converter,
    ParameterType,
    converter,
    json_kind,
    type_problem,
    type_text,
)
from policyd.errors import CaveatError

__all__ = ["CaveatCompileError", "ExpressionPosition", "compile_caveat"]


@dataclass(frozen=True, slots=True)
class ExpressionPosition:
    """A place inside a caveat expression: 0-based character offset, 1-based line and column."""

    offset: int
    line: int
    column: int

    @classmethod
    def at(cls, text: str, offset: int) -> ExpressionPosition:
        """The position of character ``offset`` in ``text``."""
        line = text.count("\n", 0, offset) + 1
        column = offset - (text.rfind("\n", 0, offset) + 1) + 1
        return cls(offset, line, column)

    @classmethod
    def from_line_column(cls, text: str, line: int, column: int) -> ExpressionPosition:
        """The position at 1-based ``line`` and ``column`` of ``text``."""
        offset = 0
        for _ in range(line - 1):
            newline = text.find("\n", offset)
            if newline < 0:
                break
            offset = newline + 1
        return cls(min(offset + column - 1, len(text)), line, column)


class CaveatCompileError(CaveatError):
    """A caveat expression that does not compile.

    ``position`` is where inside the expression, when known, so that the policy
    compiler can map it to a place in the policy file; ``caveat`` is the caveat's name.
    """

    code = "caveat-invalid"

    def __init__(
        self,
        message: str,
        *,
        caveat: str,
        position: ExpressionPosition | None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.caveat = caveat
        self.position = position
        self.detail = detail or message


# Functions the library defines natively; anything else is reported at compile time.
_NATIVE_FUNCTIONS = frozenset(
    {
        "size",
        "contains",
        "startsWith",
        "endsWith",
        "matches",
        "int",
        "uint",
        "double",
        "string",
        "bytes",
        "timestamp",
        "duration",
        "dyn",
        "type",
        "getFullYear",
        "getMonth",
        "getDate",
        "getDayOfMonth",
        "getDayOfWeek",
        "getDayOfYear",
        "getHours",
        "getMinutes",
        "getSeconds",
        "getMilliseconds",
    }
)
_TYPE_NAMES = frozenset(
    {"int", "uint", "double", "bool", "string", "bytes", "list", "map", "null_type", "type"}
)

_UTC_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_SAMPLES: dict[str, object] = {
    "int": 0,
    "uint": 0,
    "double": 0.0,
    "bool": False,
    "string": "",
    "bytes": b"",
    "duration": dt.timedelta(0),
    "timestamp": _UTC_EPOCH,
    "ipaddress": "0.0.0.0",
}


def _sample(parameter_type: ParameterType) -> object:
    """A value of ``parameter_type`` for compile-time checks; None when the type holds ``any``."""
    if parameter_type.name == "list":
        return None if _sample(parameter_type.args[0]) is None else []
    if parameter_type.name == "map":
        return None if _sample(parameter_type.args[0]) is None else {}
    return _SAMPLES.get(parameter_type.name)


_PARSE_ERROR = re.compile(r"<input>:(\d+):(\d+): (?:Syntax error: )?(.*)")


class _Compiler:
    """Checks one caveat and builds its programs; every failure is a CaveatCompileError."""

    def __init__(self, name: str, parameters: Mapping[str, ParameterType], expression: str):
        self.name = name
        self.parameters = parameters
        self.expression = expression

    def fail(self, message: str, offset: int | None = None) -> CaveatCompileError:
        position = None if offset is None else ExpressionPosition.at(self.expression, offset)
        where = f" at line {position.line}, column {position.column}" if position else ""
        return CaveatCompileError(
            f"caveat {self.name}{where}: {message}",
            caveat=self.name,
            position=position,
            detail=message,
        )

    def compile(self) -> CompiledCaveat:
        converters = self.converters()
        if not self.expression.strip():
            raise self.fail("the expression is empty; a caveat needs a CEL expression", 0)
        try:
            whole = Program(self.name, self.expression, self.parameters)
        except ValueError as e:
            raise self.syntax_error(e) from e
        found = tokens(self.expression)
        self.check_names(whole, found)
        tree = self.build(shape(found), found)
        return CompiledCaveat(self.name, self.expression, converters, whole, tree)

    def converters(self) -> dict[str, tuple[str, Converter]]:
        converters = {}
        for parameter, parameter_type in self.parameters.items():
            problem = type_problem(parameter_type)
            if problem is not None:
                raise self.fail(f"parameter {parameter}: {problem}")
            key = uint_key(parameter) if is_uint(parameter_type) else parameter
            converters[parameter] = (key, converter(parameter_type))
        return converters

    def syntax_error(self, error: ValueError) -> CaveatCompileError:
        found = _PARSE_ERROR.search(str(error))
        if found is None:
            return self.fail(f"invalid CEL: {error}")
        line, column = int(found.group(1)), int(found.group(2))
        position = ExpressionPosition.from_line_column(self.expression, line, column)
        return self.fail(f"invalid CEL: {found.group(3)}", position.offset)

    def first_offset(self, found: Sequence[Token], name: str) -> int | None:
        for i, token in enumerate(found):
            if token.text == name and (i == 0 or found[i - 1].text != "."):
                return token.start
        return next((t.start for t in found if t.text == name), None)

    def check_names(self, whole: Program, found: Sequence[Token]) -> None:
        allowed = self.parameters.keys() | bound_names(found) | _TYPE_NAMES
        unknown = sorted(
            (v for v in whole.variables if v not in allowed),
            key=lambda v: self.first_offset(found, v) or 0,
        )
        if unknown:
            names = ", ".join(repr(v) for v in unknown)
            declared = ", ".join(self.parameters) or "none"
            raise self.fail(
                f"unknown identifier{'s' if len(unknown) > 1 else ''} {names}: "
                f"not a parameter of the caveat (its parameters: {declared})",
                self.first_offset(found, unknown[0]),
            )
        for function in sorted(whole.functions):
            if function[0] in "_@!-" or function in _NATIVE_FUNCTIONS or function in FUNCTIONS:
                continue
            raise self.fail(f"unknown function {function!r}", self.first_offset(found, function))

    def build(self, part: Shape, found: Sequence[Token]) -> Node:
        match part:
            case LeafSpan():
                return self.leaf(part, found)
            case NotNode(operand):
                return NotTree(self.build(operand, found))
            case AndNode(children):
                return AndTree([self.build(c, found) for c in children])
            case OrNode(children):
                return OrTree([self.build(c, found) for c in children])
            case TernaryNode(condition, then, otherwise):
                return TernaryTree(
                    self.build(condition, found),
                    self.build(then, found),
                    self.build(otherwise, found),
                )

    def leaf(self, span: LeafSpan, found: Sequence[Token]) -> Program:
        start, end = found[span.first].start, found[span.last].end
        text = self.expression[start:end]
        if span.arithmetic and not span.relational:
            raise self.fail(f"`{text}` is arithmetic and cannot yield a bool", start)
        try:
            leaf = Program(self.name, text, self.parameters)
        except ValueError as e:  # a subexpression of valid CEL should parse; report, don't guess
            raise self.fail(f"cannot compile `{text}`: {e}", start) from e
        self.check_sample(leaf, start)
        return leaf

    def check_sample(self, leaf: Program, start: int) -> None:
        """Run ``leaf`` on sample values of the declared types to catch non-bool results."""
        if leaf.functions & FUNCTIONS.keys():
            return  # registered functions reject sample values noisily; they return bools
        env = {}
        for name, key in leaf.keys:
            sample = _sample(self.parameters[name])
            if sample is None:
                return  # ``any`` could be anything
            env[key] = sample
        try:
            value = leaf.program.execute(env)
        except TypeError as e:  # the library's type errors do not depend on the values
            declared = ", ".join(f"{n} {type_text(self.parameters[n])}" for n, _ in leaf.keys)
            raise self.fail(
                f"`{leaf.text}` does not fit the parameter types ({declared}): "
                f"{str(e).split('. ')[0]}",
                start,
            ) from e
        except Exception:  # value-dependent failures (empty list, zero divisor) are fine here
            return
        if not isinstance(value, bool):
            raise self.fail(f"`{leaf.text}` yields {json_kind(value)}, not a bool", start)


def compile_caveat(
    name: str, parameters: Mapping[str, ParameterType], expression: str
) -> CompiledCaveat:
    """Parse and check a caveat once; ``parameters`` maps names to types in declaration order.

    With a ``policyd.schema.ir.Caveat`` ``c``:
    ``compile_caveat(c.name, c.parameter_types, c.expression)``.

    Raises:
        CaveatCompileError: the expression is not CEL, names an identifier that is
            not a parameter or an unknown function, cannot yield a bool, or a
            parameter type is unknown. ``position`` locates the fault in the expression.
    """
    return _Compiler(name, parameters, expression).compile()
