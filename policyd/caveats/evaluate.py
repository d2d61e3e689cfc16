"""Package caveats.evaluate answers a compiled caveat for a context: TRUE, FALSE or MISSING.

A ``CompiledCaveat`` holds one library program for the whole expression (the
fast path, taken when the context has every parameter the expression reads)
and a tree over the expression's top-level boolean structure whose leaves are
programs of their own. With parameters missing, the tree is evaluated with
Kleene logic: a leaf that reads a missing parameter is UNKNOWN, a decisive
operand settles ``&&``/``||`` whatever the others are, and an UNKNOWN beats an
error, as in cel-go (the evaluator SpiceDB uses).

The library lacks a few things SpiceDB's environment has; they are added here:
``in_cidr`` on IP addresses (carried as canonical strings), ``contains`` on
lists and maps (the library's own is string-only), and ``uint`` parameters,
which are rebound through a one-element comprehension because the library
turns Python ints below 2**63 into CEL ints. Comprehensions run against a
per-evaluation budget (``caveats.cost``).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeAlias

import cel

from policyd.caveats.cost import BUDGET_FUNCTION, MAX_COST, Budget, instrument
from policyd.caveats.values import BadValue, Converter, ParameterType, json_kind
from policyd.errors import CaveatError

__all__ = [
    "FUNCTIONS",
    "AndTree",
    "CaveatOutcome",
    "CaveatResult",
    "CompiledCaveat",
    "Node",
    "NotTree",
    "OrTree",
    "Program",
    "TernaryTree",
    "is_uint",
    "merge_contexts",
    "uint_key",
]


class CaveatOutcome(Enum):
    """What a caveat says about one context."""

    TRUE = "true"
    FALSE = "false"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class CaveatResult:
    """A caveat's answer; ``missing`` names the parameters a MISSING answer still needs."""

    outcome: CaveatOutcome
    missing: tuple[str, ...] = ()


_TRUE = CaveatResult(CaveatOutcome.TRUE)
_FALSE = CaveatResult(CaveatOutcome.FALSE)


def merge_contexts(
    relationship_context: Mapping[str, Any] | None, request_context: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The context a caveat sees: the request's, overridden by the relationship's (as SpiceDB)."""
    merged = dict(request_context or {})
    merged.update(relationship_context or {})
    return merged


# --- Functions the library lacks -------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(cidr, strict=False)


def _in_cidr(address: str, cidr: str) -> bool:
    """SpiceDB's ``ipaddress.in_cidr(string)``: whether ``address`` lies in the network ``cidr``."""
    return ipaddress.ip_address(address) in _network(cidr)


def _contains(container: object, item: object) -> bool:
    """``list.contains(x)`` and ``map.contains(key)``; the library keeps ``string.contains``."""
    if isinstance(container, list | dict):
        return item in container
    raise TypeError(f"contains() takes a list or a map, got {json_kind(container)}")


FUNCTIONS: dict[str, Callable[..., Any]] = {"in_cidr": _in_cidr, "contains": _contains}
"""Python functions registered with the library, by the name expressions call them."""


# --- uint parameters -------------------------------------------------------------------------


def uint_key(name: str) -> str:
    """Where a uint parameter's value sits in the CEL variables before it is rebound as uint."""
    return f"__uint_{name}"


def is_uint(parameter_type: ParameterType) -> bool:
    """Whether a parameter needs rebinding: ``uint`` or ``list<uint>``."""
    if parameter_type.name == "list":
        return parameter_type.args[0].name == "uint"
    return parameter_type.name == "uint"


def _rebind_uints(text: str, uints: Mapping[str, ParameterType]) -> str:
    """``text`` inside comprehensions that rebind each uint parameter to a CEL uint."""
    for name, parameter_type in uints.items():
        raw = uint_key(name)
        if parameter_type.name == "uint":
            source = f"[uint({raw})]"
        else:
            source = f"[{raw}.map(__u, uint(__u))]"
        text = f"{source}.map({name}, {text}\n)[0]"
    return text


# --- Programs and the three-valued tree ------------------------------------------------------

# A three-valued answer: True, False, or the frozenset of parameters still needed (UNKNOWN).
_Tri: TypeAlias = bool | frozenset[str]


def _library_message(error: Exception) -> str:
    if isinstance(error, KeyError):
        return f"no such key: {error.args[0]!r}" if error.args else "no such key"
    return str(error)


class Program:
    """One library program over a piece of the expression, with what it reads.

    Raises ValueError (from the library) when ``text`` does not parse.
    """

    __slots__ = (
        "budgeted",
        "caveat",
        "functions",
        "keys",
        "program",
        "run",
        "text",
        "variables",
    )

    def __init__(self, caveat: str, text: str, parameters: Mapping[str, ParameterType]) -> None:
        self.caveat = caveat
        self.text = text
        program = cel.compile(text)
        self.variables = frozenset(program.variables())
        self.functions = frozenset(program.functions())
        used = self.variables
        uints = {n: t for n, t in parameters.items() if n in used and is_uint(t)}
        # Comprehensions charge the evaluation's Budget, passed in as a variable (caveats.cost).
        instrumented = instrument(text)
        self.budgeted = instrumented is not None
        if uints:
            program = cel.compile(_rebind_uints(instrumented or text, uints))
        elif instrumented is not None:
            program = cel.compile(instrumented)
        # (parameter name, variable key) for each parameter read, in declaration order.
        self.keys = tuple(
            (name, uint_key(name) if name in uints else name) for name in parameters if name in used
        )
        self.program = program
        if self.functions & FUNCTIONS.keys():
            self.run: Callable[[dict[str, Any]], Any] = lambda env: program.execute(
                {**env, **FUNCTIONS}
            )
        else:
            self.run = program.execute

    def evaluate(self, env: dict[str, Any]) -> bool:
        """The program's bool on variables ``env``; raises CaveatError for errors and non-bools."""
        try:
            value = self.run(env)
        except Exception as e:  # the library raises builtins of many kinds
            raise CaveatError(
                f"caveat {self.caveat}: evaluating `{self.text}` failed: {_library_message(e)}"
            ) from e
        if value is True or value is False:
            return value
        raise CaveatError(
            f"caveat {self.caveat}: `{self.text}` gave {json_kind(value)} {value!r}, not a bool"
        )

    def tri(self, env: dict[str, Any]) -> _Tri:
        """True, False, or the parameters this leaf needs that ``env`` lacks."""
        missing = [name for name, key in self.keys if key not in env]
        if missing:
            return frozenset(missing)
        return self.evaluate(env)


Node: TypeAlias = "Program | NotTree | AndTree | OrTree | TernaryTree"


class NotTree:
    """``!operand`` in Kleene logic."""

    __slots__ = ("operand",)

    def __init__(self, operand: Node) -> None:
        self.operand = operand

    def tri(self, env: dict[str, Any]) -> _Tri:
        """The negation, or the operand's missing parameters."""
        value = self.operand.tri(env)
        return value if isinstance(value, frozenset) else not value


class _JunctionTree:
    """``&&`` (``decisive`` False) or ``||`` (``decisive`` True) with CEL's commutative errors.

    A decisive child wins over UNKNOWN and errors; UNKNOWN wins over errors, as in cel-go.
    """

    __slots__ = ("children", "decisive")

    def __init__(self, children: Sequence[Node], decisive: bool) -> None:
        self.children = tuple(children)
        self.decisive = decisive

    def tri(self, env: dict[str, Any]) -> _Tri:
        """The junction's value in Kleene logic."""
        missing: frozenset[str] = frozenset()
        error: CaveatError | None = None
        for child in self.children:
            try:
                value = child.tri(env)
            except CaveatError as e:
                error = error or e
                continue
            if isinstance(value, frozenset):
                missing |= value
            elif value is self.decisive:
                return value
        if missing:
            return missing
        if error is not None:
            raise error
        return not self.decisive


class AndTree(_JunctionTree):
    """``a && b && …``."""

    __slots__ = ()

    def __init__(self, children: Sequence[Node]) -> None:
        super().__init__(children, decisive=False)


class OrTree(_JunctionTree):
    """``a || b || …``."""

    __slots__ = ()

    def __init__(self, children: Sequence[Node]) -> None:
        super().__init__(children, decisive=True)


class TernaryTree:
    """``condition ? then : otherwise``; an unknown condition decides when both branches agree."""

    __slots__ = ("condition", "otherwise", "then")

    def __init__(self, condition: Node, then: Node, otherwise: Node) -> None:
        self.condition = condition
        self.then = then
        self.otherwise = otherwise

    def tri(self, env: dict[str, Any]) -> _Tri:
        """The chosen branch, or both branches' answer when they agree."""
        condition = self.condition.tri(env)
        if condition is True:
            return self.then.tri(env)
        if condition is False:
            return self.otherwise.tri(env)
        assert isinstance(condition, frozenset)
        branches = []
        for branch in (self.then, self.otherwise):
            try:
                branches.append(branch.tri(env))
            except CaveatError:
                continue
        if len(branches) == 2 and branches[0] is branches[1]:
            return branches[0]  # both branches agree whatever the condition
        missing = condition
        for value in branches:
            if isinstance(value, frozenset):
                missing |= value
        return missing


class CompiledCaveat:
    """A caveat compiled once: ``evaluate`` answers it for any number of contexts."""

    __slots__ = (
        "_budgeted",
        "_converters",
        "_needed",
        "_order",
        "_tree",
        "_whole",
        "expression",
        "name",
    )

    def __init__(
        self,
        name: str,
        expression: str,
        converters: Mapping[str, tuple[str, Converter]],
        whole: Program,
        tree: Node,
    ) -> None:
        self.name = name
        self.expression = expression
        self._converters = dict(converters)
        self._order = {parameter: i for i, parameter in enumerate(converters)}
        self._whole = whole
        self._needed = frozenset(key for _, key in whole.keys)
        self._tree = tree
        self._budgeted = whole.budgeted

    @property
    def parameters(self) -> tuple[str, ...]:
        """The declared parameter names, in order."""
        return tuple(self._converters)

    def evaluate(self, context: Mapping[str, Any]) -> CaveatResult:
        """Answer the caveat for ``context`` (JSON values by parameter name; others are ignored).

        Raises:
            CaveatError: a context value does not fit its parameter's type (``field``
                names the parameter), evaluation fails (a runtime type error, a
                missing map key, a result that is not a bool), or it spends its
                budget (``caveats.cost``).
        """
        env: dict[str, Any] = {}
        converters = self._converters
        for name, value in context.items():
            entry = converters.get(name)
            if entry is None:
                continue
            key, convert = entry
            try:
                env[key] = convert(value)
            except BadValue as e:
                raise CaveatError(
                    f"caveat {self.name}: context value for parameter {name}{e.path}: {e.message}",
                    field=name,
                ) from e
        if not self._budgeted:
            return self._answer(env)
        budget = Budget()
        env[BUDGET_FUNCTION] = budget.charge
        try:
            answer = self._answer(env)
        except CaveatError as e:
            if budget.exhausted:
                raise self._over_budget() from e
            raise
        if budget.exhausted:
            raise self._over_budget()
        return answer

    def _over_budget(self) -> CaveatError:
        return CaveatError(
            f"caveat {self.name}: evaluation stopped at its budget of {MAX_COST:,} steps "
            "(comprehensions over the context's lists cost more); pass shorter lists"
        )

    def _answer(self, env: dict[str, Any]) -> CaveatResult:
        if self._needed <= env.keys():
            return _TRUE if self._whole.evaluate(env) else _FALSE
        value = self._tree.tri(env)
        if value is True:
            return _TRUE
        if value is False:
            return _FALSE
        missing = tuple(sorted(value, key=self._order.__getitem__))
        return CaveatResult(CaveatOutcome.MISSING, missing)

    def __repr__(self) -> str:
        return f"CompiledCaveat({self.name!r}, {self.expression!r})"
