"""Benchmark caveat evaluation: CEL libraries head to head, then policyd.caveats end to end.

Prints evaluations per second and asserts nothing.
Run: ``.venv/bin/python benchmarks/caveat_bench.py``.
cel-python is optional (``pip install cel-python``); it is skipped when absent.
cel-expr-python (Google's C++ CEL) is a dependency: policyd type-checks with it.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Any

import cel

from policyd.caveats import compile_caveat
from policyd.schema.ir import CaveatType

EXPRESSION = "a < b || c == d"
CONTEXT = {"a": 3, "b": 2, "c": 4, "d": 4}
SECONDS = 1.0


def rate(run: Callable[[], Any]) -> float:
    """Evaluations per second of ``run``, measured over about ``SECONDS``."""
    run()
    count, start = 0, time.perf_counter()
    batch = 100
    while (elapsed := time.perf_counter() - start) < SECONDS:
        for _ in range(batch):
            run()
        count += batch
    return count / elapsed


def report(label: str, evals_per_second: float) -> None:
    print(f"{label:<58} {evals_per_second:>12,.0f} evals/s")


def bench_common_expression_language() -> None:
    program = cel.compile(EXPRESSION)
    report(
        "common-expression-language: compiled, dict context", rate(lambda: program.execute(CONTEXT))
    )
    report(
        "common-expression-language: compile + evaluate each time",
        rate(lambda: cel.evaluate(EXPRESSION, CONTEXT)),
    )


def bench_cel_expr_python() -> None:
    from cel_expr_python import cel as cpp

    environment = cpp.NewEnv(variables=dict.fromkeys(CONTEXT, cpp.Type.INT))
    expression = environment.compile(EXPRESSION)
    report(
        "cel-expr-python: compiled, dict context",
        rate(lambda: expression.eval(data=CONTEXT).value()),
    )
    report(
        "cel-expr-python: compiled, Activation built each time",
        rate(lambda: expression.eval(environment.Activation(CONTEXT)).value()),
    )
    report(
        "cel-expr-python: type-check (compile) each time",
        rate(lambda: environment.compile(EXPRESSION)),
    )
    members = {"l": [str(i) for i in range(20)], "me": "19"}
    listed = cpp.NewEnv(
        variables={"l": cpp.Type.List(cpp.Type.STRING), "me": cpp.Type.STRING}
    ).compile("l.exists(x, x == me)")
    report(
        "cel-expr-python: l.exists(x, x == me) over 20 strings",
        rate(lambda: listed.eval(data=members).value()),
    )
    program = cel.compile("l.exists(x, x == me)")
    report(
        "common-expression-language: the same over 20 strings",
        rate(lambda: program.execute(members)),
    )


def bench_cel_python() -> None:
    try:
        celpy: Any = importlib.import_module("celpy")
    except ImportError:
        print("cel-python: not installed (pip install cel-python) - skipped")
        return
    environment = celpy.Environment()
    program = environment.program(environment.compile(EXPRESSION))
    activation = {name: celpy.celtypes.IntType(value) for name, value in CONTEXT.items()}
    report("cel-python: compiled, prebuilt activation", rate(lambda: program.evaluate(activation)))
    report(
        "cel-python: compiled, JSON context converted each time",
        rate(lambda: program.evaluate({k: celpy.json_to_cel(v) for k, v in CONTEXT.items()})),
    )


def bench_policyd() -> None:
    ints = dict.fromkeys("abcd", CaveatType("int"))
    report(
        "policyd.caveats: compile_caveat (parse, type-check, build)",
        rate(lambda: compile_caveat("two_clauses", ints, EXPRESSION)),
    )
    caveat = compile_caveat("two_clauses", ints, EXPRESSION)
    report("policyd.caveats: two clauses, full context", rate(lambda: caveat.evaluate(CONTEXT)))
    partial = {"a": 1, "b": 2}
    report(
        "policyd.caveats: two clauses, partial context (MISSING)",
        rate(lambda: caveat.evaluate(partial)),
    )
    timestamp = CaveatType("timestamp")
    expiry = compile_caveat("unexpired", {"now": timestamp, "expires": timestamp}, "now < expires")
    times = {"now": "2024-01-01T00:00:00Z", "expires": "2025-01-01T00:00:00Z"}
    report(
        "policyd.caveats: timestamps from RFC 3339 strings", rate(lambda: expiry.evaluate(times))
    )
    ip = compile_caveat(
        "is_valid_ip",
        {"user_ip": CaveatType("ipaddress"), "cidr": CaveatType("string")},
        "user_ip.in_cidr(cidr)",
    )
    address = {"user_ip": "10.2.3.4", "cidr": "10.0.0.0/8"}
    report("policyd.caveats: ipaddress.in_cidr", rate(lambda: ip.evaluate(address)))
    limit = compile_caveat(
        "write_limit", {"limit": CaveatType("uint"), "count": CaveatType("uint")}, "count < limit"
    )
    counts = {"limit": 4, "count": 3}
    report(
        "policyd.caveats: uint parameters (rebound as uint)", rate(lambda: limit.evaluate(counts))
    )


def main() -> None:
    print(f"expression: {EXPRESSION}   context: {CONTEXT}")
    bench_common_expression_language()
    bench_cel_expr_python()
    bench_cel_python()
    bench_policyd()


if __name__ == "__main__":
    main()
