"""Id sets of the in-memory index: sorted arrays against pyroaring bitmaps and Python sets.

Prints bytes of RSS per id and nanoseconds per membership test for three
shapes of one direction of one relation: many keys of one or two ids (a
document's owner), a thousand keys of a thousand ids (group members), and
one key of a million ids out of ten million (a huge space). Arrays are the
index's layout (engine/index.py): one shared ``array('I')`` with row starts,
tested with ``bisect``. Prints numbers; asserts nothing. Needs ``pyroaring``
(not a dependency of policyd: ``pip install pyroaring`` to run it).

    python benchmarks/index_bench.py
"""

from __future__ import annotations

import bisect
import random
import subprocess
import sys
import time
from array import array
from collections.abc import Callable

from pyroaring import BitMap

from policyd.bench.measure import release_memory, rss_mib

Shape = tuple[str, int, int, int]
"""(name, keys, ids per key, id space)."""

SHAPES: list[Shape] = [
    ("1M keys x 1-2 ids", 1_000_000, 2, 10_000_000),
    ("1k keys x 1k ids", 1_000, 1_000, 1_000_000),
    ("1 key x 1M ids of 10M", 1, 1_000_000, 10_000_000),
]
PROBES = 200_000


def rows(shape: Shape, rng: random.Random) -> list[list[int]]:
    _, keys, per_key, space = shape
    if per_key == 2:  # one or two ids a key
        return [sorted(rng.sample(range(space), rng.randint(1, 2))) for _ in range(keys)]
    return [sorted(rng.sample(range(space), per_key)) for _ in range(keys)]


def arrays(data: list[list[int]]) -> Callable[[int, int], bool]:
    starts = array("I", [0])
    targets = array("I")
    for row in data:
        targets.extend(row)
        starts.append(len(targets))

    def has(key: int, target: int) -> bool:
        lo, hi = starts[key], starts[key + 1]
        at = bisect.bisect_left(targets, target, lo, hi)
        return at < hi and targets[at] == target

    return has


def bitmaps(data: list[list[int]]) -> Callable[[int, int], bool]:
    maps = [BitMap(row) for row in data]
    return lambda key, target: target in maps[key]


def sets(data: list[list[int]]) -> Callable[[int, int], bool]:
    held = [set(row) for row in data]
    return lambda key, target: target in held[key]


def measure(shape: Shape, layout: Callable[[list[list[int]]], Callable[[int, int], bool]]) -> str:
    rng = random.Random(1)
    data = rows(shape, rng)
    ids = sum(map(len, data))
    probes = [(k, rng.randrange(shape[3])) for k in rng.choices(range(len(data)), k=PROBES)]
    probes[::2] = [(k, data[k][0]) for k, _ in probes[::2]]  # half of them hit
    release_memory()
    before = rss_mib()
    has = layout(data)
    release_memory()
    grown = (rss_mib() - before) * 2**20
    t0 = time.perf_counter()
    found = sum(1 for k, t in probes if has(k, t))
    elapsed = time.perf_counter() - t0
    return (
        f"{layout.__name__:8} {grown / ids:7.1f} B/id {elapsed / PROBES * 1e9:6.0f} ns/test "
        f"({found} hits)"
    )


LAYOUTS = {f.__name__: f for f in (arrays, bitmaps, sets)}


def main() -> None:
    """Each shape and layout in a fresh process, so no run reuses memory another freed."""
    if len(sys.argv) == 3:
        print("  " + measure(SHAPES[int(sys.argv[1])], LAYOUTS[sys.argv[2]]), flush=True)
        return
    for number, shape in enumerate(SHAPES):
        print(f"== {shape[0]}", flush=True)
        for name in LAYOUTS:
            subprocess.run([sys.executable, __file__, str(number), name], check=True)


if __name__ == "__main__":
    main()
