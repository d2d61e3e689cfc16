"""Benchmark WatchPermission's incremental change against listing the audience again.

A space whose members are 100 nested groups of ``MEMBERS // 100`` users each,
on a SQLite file (synchronous FULL, in-process, no gRPC). It lists the audience
once, then makes ``WRITES`` single-relationship writes (alternately a new
member in one group and a ban) and times the tracker's change for each
revision, checking that each one names exactly the subject written about.
Prints milliseconds; asserts only the answers.
Run: ``.venv/bin/python benchmarks/watch_permission_bench.py [MEMBERS]``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from policyd.engine import Engine
from policyd.relationship import Operation, RelationshipUpdate, parse_object, parse_relationship
from policyd.store import open_store

POLICY = """
definition user {}
definition group {
    relation member: user | group#member
}
definition space {
    relation member: user | group#member
    relation banned: user
    permission read = member - banned
}
"""
GROUPS = 100
WRITES = 50


def main(members: int) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        store = open_store(str(Path(workdir) / "watch.db"))
        engine = Engine(store)
        engine.write_policy(POLICY)
        engine.import_relationships(
            [parse_relationship(f"group:g{i % GROUPS}#member@user:u{i}") for i in range(members)]
            + [parse_relationship(f"group:top#member@group:g{g}#member") for g in range(GROUPS)]
            + [parse_relationship("space:s#member@group:top#member")]
        )
        tracker = engine.track_audience(parse_object("space:s"), "read", "user")
        start = time.perf_counter()
        listing = tracker.snapshot(store.head_revision())
        listed = time.perf_counter() - start
        print(f"listing {len(listing.subjects):,} subjects: {listed * 1000:.0f} ms")
        times = []
        for i in range(WRITES):
            text = f"space:s#banned@user:u{i * 7}" if i % 2 else f"group:g{i}#member@user:new{i}"
            before = store.head_revision()
            engine.write([RelationshipUpdate(Operation.TOUCH, parse_relationship(text))])
            revision = store.head_revision()
            start = time.perf_counter()
            change = tracker.change(before, revision, store.changes(before, 100))
            times.append(time.perf_counter() - start)
            assert [str(s.subject) for s in change.subjects] == [text.rsplit("@", 1)[1]]
        times.sort()
        p50, p99 = times[len(times) // 2], times[min(len(times) - 1, len(times) * 99 // 100)]
        print(f"change per revision ({WRITES} writes): p50 {p50 * 1e3:.2f}, p99 {p99 * 1e3:.2f} ms")
        print(f"listing again instead would cost {listed / p50:,.0f}x the median change")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
