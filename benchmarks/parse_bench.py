"""Benchmark the policy language: parse, format, and parse + compile a generated policy.

The policy is realistic rather than random: families of teams, organisations,
folders and documents with nested groups, wildcards, arrows, caveats and doc
comments, repeated until it reaches the requested number of lines. Prints the
median (and fastest) of several runs and asserts nothing; the target is under
one second to parse and compile 2,000 lines.
Run: ``.venv/bin/python benchmarks/parse_bench.py [--lines 2000] [--runs 7]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from policyd.dsl.formatter import format_text
from policyd.dsl.parser import parse_policy

HEADER = """\
use expiration

/** user is anyone who signs in. */
definition user {}
"""

FAMILY = """\

caveat in_hours_{i}(now timestamp, opens timestamp, closes timestamp) {{
    now >= opens &&
      now < closes
}}

/** team_{i} has members; teams nest. */
definition team_{i} {{
    relation member: user | team_{i}#member
    relation admin: user
    permission manage = admin
    permission view = member + manage
}}

definition org_{i} {{
    relation owner: user
    relation admin: user | team_{i}#member
    relation member: user | team_{i}#member | user:*
    relation billing: user with in_hours_{i} | user with expiration
    permission administer = owner + admin
    permission read = member + administer
    permission pay = billing & administer
}}

// Folders inherit from their parent and their organisation.
definition folder_{i} {{
    relation org: org_{i}
    relation parent: folder_{i}
    relation owner: user
    relation editor: user | team_{i}#member
    relation viewer: user | team_{i}#member | user:*

    permission edit = owner + editor + parent->edit + org->administer
    permission view = viewer + edit + parent->view + org->read
}}

definition document_{i} {{
    relation folder: folder_{i}
    relation owner: user
    relation editor: user | team_{i}#member with in_hours_{i}
    relation viewer: user | user:* | team_{i}#member
    relation banned: user

    /** editing needs a role and no ban. */
    permission edit = (owner + editor + folder->edit) - banned
    permission view = (viewer + edit + folder.any(view)) - banned
    permission comment = view & (editor + owner)
    permission share = owner - (banned & viewer)
}}
"""


def generate_policy(lines: int) -> str:
    """A valid, type-checking policy of at least ``lines`` lines."""
    parts = [HEADER]
    count, i = HEADER.count("\n"), 0
    while count < lines:
        family = FAMILY.format(i=i)
        parts.append(family)
        count += family.count("\n")
        i += 1
    return "".join(parts)


def timed(run: Callable[[], Any], runs: int) -> tuple[float, float]:
    """Median and fastest wall time of ``runs`` calls of ``run``, in seconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def report(label: str, result: tuple[float, float]) -> None:
    median, fastest = result
    print(f"{label:<28} median {median * 1000:8.1f} ms   fastest {fastest * 1000:8.1f} ms")


def main() -> None:
    """Generate the policy, time each stage and print the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2000, help="size of the generated policy")
    parser.add_argument("--runs", type=int, default=7, help="runs per measurement; median wins")
    parser.add_argument("--dump", metavar="FILE", help="also write the generated policy to FILE")
    args = parser.parse_args()

    text = generate_policy(args.lines)
    if args.dump:
        with open(args.dump, "w", encoding="utf-8") as f:
            f.write(text)
    tree = parse_policy(text, "bench.policy")  # also warms Lark's cached parser
    print(
        f"policy: {text.count(chr(10))} lines, {len(text):,} bytes, "
        f"{len(tree.items)} top-level items; {args.runs} runs each"
    )
    report("parse", timed(lambda: parse_policy(text, "bench.policy"), args.runs))
    report("parse + format", timed(lambda: format_text(text, "bench.policy"), args.runs))
    try:
        from policyd.dsl.compiler import compile_policy
    except ImportError as e:
        print(f"parse + compile: skipped, policyd.dsl.compiler is not importable ({e})")
        return
    compile_policy(text, "bench.policy")  # fails loudly if the generated policy is invalid
    report("parse + compile", timed(lambda: compile_policy(text, "bench.policy"), args.runs))


if __name__ == "__main__":
    main()
