"""Package caveats.compile checks a caveat once and builds the programs that evaluate it.

Every failure is a ``CaveatCompileError`` with the position inside the
expression, which the policy compiler maps to a line and column of the policy
file. The checks: parameter types exist; the expression is not too long and parses
(the evaluator's parser); the CEL checker accepts it with the parameters'
types and it yields a bool (``caveats.checker``); every function it calls is
one the evaluator has; and its estimated cost is within bounds (``caveats.cost``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from policyd.caveats.checker import type_issue
from policyd.caveats.cost import ASSUMED_RANGE, MAX_COST, MAX_EXPRESSION_LENGTH, estimate
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
    BooleanTree,
    LeafSpan,
    NotNode,
    OrNode,
    TernaryNode,
    Token,
    boolean_tree,
    tokens,
)
from policyd.caveats.values import (
    Converter,
    ParameterType,
    converter,
    type_problem,
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


# Functions the evaluator defines natively. The CEL checker knows more (its standard library
# is larger); a call to one of those would only fail at evaluation, so it is refused here.
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
        if len(self.expression) > MAX_EXPRESSION_LENGTH:
            raise self.fail(
                f"the expression has {len(self.expression):,} characters; "
                f"the limit is {MAX_EXPRESSION_LENGTH:,}"
            )
        try:
            whole = Program(self.name, self.expression, self.parameters)
        except ValueError as e:
            raise self.syntax_error(e) from e
        self.check_types()
        self.check_functions(whole)
        self.check_cost()
        found = tokens(self.expression)
        tree = self.build(boolean_tree(found), found)
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

    def check_types(self) -> None:
        issue = type_issue(self.parameters, self.expression)
        if issue is None:
            return
        offset = None
        if issue.line is not None and issue.column is not None:
            position = ExpressionPosition.from_line_column(
                self.expression, issue.line, issue.column
            )
            offset = position.offset
        raise self.fail(issue.message, offset)

    def check_cost(self) -> None:
        estimated = estimate(self.expression)
        if estimated.cost > MAX_COST:
            raise self.fail(
                f"the comprehensions from here may cost about {estimated.cost:,} steps "
                "per evaluation; "
                f"the limit is {MAX_COST:,} (a list literal counts its elements, any other "
                f"list {ASSUMED_RANGE}): nest fewer comprehensions or iterate shorter lists",
                estimated.offset,
            )

    def check_functions(self, whole: Program) -> None:
        for function in sorted(whole.functions):
            if function[0] in "_@!-" or function in _NATIVE_FUNCTIONS or function in FUNCTIONS:
                continue
            offset = self.expression.find(function)
            raise self.fail(
                f"function {function!r} type-checks but policyd's evaluator does not have it",
                offset if offset >= 0 else None,
            )

    def build(self, part: BooleanTree, found: Sequence[Token]) -> Node:
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
        try:
            return Program(self.name, text, self.parameters)
        except ValueError as e:  # a subexpression of valid CEL should parse; report, don't guess
            raise self.fail(f"cannot compile `{text}`: {e}", start) from e


def compile_caveat(
    name: str, parameters: Mapping[str, ParameterType], expression: str
) -> CompiledCaveat:
    """Parse and check a caveat once; ``parameters`` maps names to types in declaration order.

    With a ``policyd.schema.ir.Caveat`` ``c``:
    ``compile_caveat(c.name, c.parameter_types, c.expression)``.

    Raises:
        CaveatCompileError: the expression is not CEL, does not type-check with the
            parameters' types (an unknown identifier or function, an operator or
            function applied to the wrong types, a result that is not a bool), or a
            parameter type is unknown. ``position`` locates the fault in the expression.
    """
    return _Compiler(name, parameters, expression).compile()
