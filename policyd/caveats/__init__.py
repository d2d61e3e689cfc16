"""Package caveats compiles caveat expressions (CEL) once and evaluates them against JSON contexts.

It is the only package that imports a CEL library. It follows SpiceDB: a caveat
has typed parameters and a CEL expression; a context (relationship context
merged over request context) supplies parameter values; a context that lacks
parameters the expression needs answers MISSING and names them, unless the
supplied ones decide.

Libraries. Evaluation runs on ``common-expression-language`` (the Rust ``cel`` crate
behind PyO3), chosen over ``cel-python`` by ``benchmarks/caveat_bench.py``: ``a < b ||
c == d`` compiled once ran at about 850,000 evaluations/s against about 5,000/s for
cel-python. It compiles once and evaluates many times, takes Python callables as
functions, maps ``datetime``/``timedelta`` to timestamp/duration and reports parse
errors with line and column, but has no type checker, no partial evaluation and no
custom types. Policy writes therefore also type-check with ``cel-expr-python``
(Google's C++ CEL), which declares parameter types as cel-go does for SpiceDB.
Measured on the same benchmark, on a loaded 2-core machine: ``a < b || c == d``
363,000/s on the Rust library against 126,000/s on the C++ one (106,000/s building
an Activation), while ``l.exists(x, x == me)`` over 20 strings ran 16,600/s against
67,000/s: the Rust library converts lists slowly, but caveats are mostly
comparisons, and the three-valued evaluation is built on its programs, so it
stays on the hot path. With the type check, ``compile_caveat`` takes about 0.17 ms
for ``a < b || c == d`` (0.11 ms before), at policy write and plan compilation only.

The modules, by job (as SpiceDB's ``pkg/caveats``):

- ``values``: JSON context values to CEL values of the declared parameter types;
  ``parse_duration`` and ``parse_timestamp``;
- ``context``: the checks on a context where it enters (JSON, depth, size, types);
- ``structure``: a tokenizer and the parser of an expression's top-level boolean
  structure (``&&``, ``||``, ``!``, ``?:``, parentheses);
- ``checker``: the CEL type check (cel-expr-python) and SpiceDB's environment;
- ``cost``: the static cost estimate at write and the budget of each evaluation;
- ``evaluate``: ``CompiledCaveat`` and its three-valued evaluation, and the
  functions the library lacks (``in_cidr``, ``contains`` on lists and maps, ``uint``);
- ``compile``: the compile-time checks and ``compile_caveat``.

Limits: the optional syntax ``a.?b`` does not parse; expressions nest at most 32
parentheses or brackets deep (the C++ checker's limit); timestamp accessors take no
time zone argument; durations and timestamps have microsecond resolution; ``uint``
inside ``map<uint>`` arrives as int (comparisons work, mixing with ``1u`` in
arithmetic does not).
"""

from policyd.caveats.compile import CaveatCompileError, ExpressionPosition, compile_caveat
from policyd.caveats.context import ContextError, check_request_context, check_stored_context
from policyd.caveats.evaluate import CaveatOutcome, CaveatResult, CompiledCaveat, merge_contexts
from policyd.caveats.values import ParameterType, parse_duration, parse_timestamp

__all__ = [
    "CaveatCompileError",
    "CaveatOutcome",
    "CaveatResult",
    "CompiledCaveat",
    "ContextError",
    "ExpressionPosition",
    "ParameterType",
    "check_request_context",
    "check_stored_context",
    "compile_caveat",
    "merge_contexts",
    "parse_duration",
    "parse_timestamp",
]
