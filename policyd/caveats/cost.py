"""Package caveats.cost bounds what a caveat may cost: a static estimate at write, a budget at run.

A caveat of nested comprehensions over lists once took 36 s to write and froze
the process for 40 s per Check. CEL's cost lives in its comprehension macros
(``all``, ``exists``, ``exists_one``, ``map``, ``filter``): the body runs once
per element of the range, and nesting multiplies. Everything else is bounded
by the expression's length and the size of its values (contexts are bounded
by ``caveats.context``). Neither CEL library here tracks cost (cel-go's
``CostLimit``, which SpiceDB exposes as ``EvaluationConfig.MaxCost`` in
``pkg/caveats/eval.go`` and OpenFGA sets to 100 per condition by default,
``DefaultMaxConditionEvaluationCost``, has no counterpart in either binding),
so this module does it over the expression text:

- The unit is one token of a comprehension's arguments evaluated for one
  element of its range: ``teams.exists(t, t == me)`` over 1,000 teams costs
  about 6,000. Measured with the Rust evaluator on this machine, a unit takes
  0.05 to 0.15 microseconds, so ``MAX_COST`` (1,000,000, Kubernetes' per-call
  CEL limit, "roughly 0.1 second" there) bounds an evaluation to about 0.1 s.
- At policy write, ``estimate`` prices each comprehension with the number of
  elements of a list or map literal range, or ``ASSUMED_RANGE`` (100) for any
  other range; a caveat over ``MAX_COST`` is refused, so three comprehensions
  nested over parameters are refused and two are allowed. Expressions are at
  most ``MAX_EXPRESSION_LENGTH`` characters (100,000: SpiceDB's
  ``maxCaveatExpressionSize``, and the C++ checker's own limit).
- At evaluation, ``instrument`` rewrites each comprehension's range ``R`` to
  ``(__budget(size(R), weight) ? R : [])``; the per-evaluation ``Budget``
  charges the actual size times the weight and, once spent, answers false so
  that no further range is iterated, and the caller raises a ``CaveatError``.
  A range that is not a plain name is bound once through a one-element
  ``map`` so that it is not evaluated twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from policyd.caveats.structure import MACROS, Token, tokens

__all__ = [
    "ASSUMED_RANGE",
    "BUDGET_FUNCTION",
    "MAX_COST",
    "MAX_EXPRESSION_LENGTH",
    "Budget",
    "Estimate",
    "estimate",
    "instrument",
]

MAX_COST = 1_000_000
ASSUMED_RANGE = 100
MAX_EXPRESSION_LENGTH = 100_000
BUDGET_FUNCTION = "__budget"


class Budget:
    """What one evaluation may still spend; ``charge`` is registered as ``__budget``."""

    __slots__ = ("exhausted", "spent")

    def __init__(self) -> None:
        self.spent = 0
        self.exhausted = False

    def charge(self, size: int, weight: int) -> bool:
        """Whether a range of ``size`` elements with a body of ``weight`` may be iterated."""
        self.spent += size * weight + 1
        if self.spent > MAX_COST:
            self.exhausted = True
        return not self.exhausted


@dataclass(frozen=True, slots=True)
class _Call:
    """One comprehension macro call, by token index: receiver start, ``.``, ``(`` and ``)``."""

    start: int
    dot: int
    open: int
    close: int

    def contains(self, other: _Call) -> bool:
        return self.start <= other.start and other.close <= self.close and other != self


_OPENING = {")": "(", "]": "[", "}": "{"}


def _matching_open(found: Sequence[Token], close: int) -> int:
    depth = 0
    for i in range(close, -1, -1):
        text = found[i].text
        if text in _OPENING:
            depth += 1
        elif text in ("(", "[", "{"):
            depth -= 1
            if depth == 0:
                return i
    return 0


def _matching_close(found: Sequence[Token], open_: int) -> int:
    depth = 0
    for i in range(open_, len(found)):
        text = found[i].text
        if text in ("(", "[", "{"):
            depth += 1
        elif text in _OPENING:
            depth -= 1
            if depth == 0:
                return i
    return len(found) - 1


def _receiver_start(found: Sequence[Token], dot: int) -> int:
    """The first token of the postfix expression that ends just before ``found[dot]``."""
    i = dot - 1
    while True:
        start = i
        if found[i].text in _OPENING:
            start = _matching_open(found, i)
            before = found[start - 1] if start > 0 else None
            callee = (
                before is not None
                and before.kind == "ident"
                and before.text != "in"
                and found[i].text != "]"
            )
            indexed = (
                before is not None
                and found[i].text == "]"
                and (before.kind in ("ident", "string", "number") or before.text in _OPENING)
            )
            if callee:
                start -= 1  # f(x), a.f(x), Message{...}
            elif indexed:
                i = start - 1  # x[0]: the operand before the index
                continue
        if start > 0 and found[start - 1].text == ".":
            i = start - 2
            continue
        return start


def _calls(found: Sequence[Token]) -> list[_Call]:
    calls = []
    for i in range(1, len(found) - 2):
        if found[i].text == "." and found[i + 1].text in MACROS and found[i + 2].text == "(":
            close = _matching_close(found, i + 2)
            calls.append(_Call(_receiver_start(found, i), i, i + 2, close))
    return calls


def _children(calls: Sequence[_Call], first: int, last: int) -> list[_Call]:
    """The outermost calls lying within token indexes ``first..last``."""
    inside = [c for c in calls if first <= c.start and c.close <= last]
    return [c for c in inside if not any(o.contains(c) for o in inside)]


def _weight(call: _Call) -> int:
    return max(1, call.close - call.open - 1)


def _range_size(found: Sequence[Token], calls: Sequence[_Call], call: _Call) -> int:
    """Elements of a literal range, the range of a comprehension range, else ASSUMED_RANGE."""
    first, last = call.start, call.dot - 1
    if found[first].text in ("[", "{") and _matching_close(found, first) == last:
        if last == first + 1:
            return 0
        depth, elements = 0, 1
        for token in found[first + 1 : last]:
            if token.text in ("(", "[", "{"):
                depth += 1
            elif token.text in _OPENING:
                depth -= 1
            elif token.text == "," and depth == 0:
                elements += 1
        return elements
    for inner in calls:
        if inner.start == first and inner.close == last:
            return _range_size(found, calls, inner)
    return ASSUMED_RANGE


@dataclass(frozen=True, slots=True)
class Estimate:
    """A static cost estimate, and the character offset of the costliest comprehension."""

    cost: int
    offset: int


def estimate(expression: str) -> Estimate:
    """The estimated cost of evaluating ``expression`` once (see the module docstring)."""
    found = tokens(expression)
    calls = _calls(found)

    def price(call: _Call) -> int:
        body = sum(price(c) for c in _children(calls, call.open, call.close))
        receiver = sum(price(c) for c in _children(calls, call.start, call.dot - 1))
        return _range_size(found, calls, call) * (_weight(call) + body) + receiver

    top = _children(calls, 0, len(found) - 1)
    priced = [(price(c), c) for c in top]
    cost = len(found) + sum(p for p, _ in priced)
    worst = max(priced, key=lambda pair: pair[0], default=None)
    return Estimate(cost, found[worst[1].start].start if worst else 0)


def instrument(expression: str) -> str | None:
    """``expression`` with each comprehension range charged to ``__budget``; None without any."""
    found = tokens(expression)
    calls = _calls(found)
    if not calls:
        return None
    names = iter(range(len(calls)))

    def text(first: int, last: int) -> str:
        """Tokens ``first..last`` as written, with the calls among them instrumented."""
        if first > last:
            return ""
        pieces, at = [], found[first].start
        for call in _children(calls, first, last):
            pieces.append(expression[at : found[call.start].start])
            pieces.append(rewrite(call))
            at = found[call.close].end
        pieces.append(expression[at : found[last].end])
        return "".join(pieces)

    def rewrite(call: _Call) -> str:
        receiver = text(call.start, call.dot - 1)
        method = found[call.dot + 1].text
        arguments = text(call.open, call.close)
        weight = _weight(call)
        plain = all(t.kind == "ident" or t.text == "." for t in found[call.start : call.dot])
        if plain:
            guarded = f"({BUDGET_FUNCTION}(size({receiver}), {weight}) ? {receiver} : [])"
            return f"{guarded}.{method}{arguments}"
        bound = f"__range{next(names)}"
        guarded = f"({BUDGET_FUNCTION}(size({bound}), {weight}) ? {bound} : [])"
        return f"[{receiver}].map({bound}, {guarded}.{method}{arguments})[0]"

    return text(0, len(found) - 1)
