"""Package inprocess measures policyd's Engine in this process on one workload over SQLite.

It loads the workload (bulk import), reopens the database as a serving process
would (index rebuilt from the store), then measures Check, BatchCheck(100),
ListObjects, ListSubjects and single-row writes, each bounded by seconds and
by a count. Every answer with a known expectation is verified.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from policyd.bench.measure import (
    files_size_mib,
    peak_rss_mib,
    release_memory,
    rss_mib,
    sqlite_files,
    time_calls,
)
from policyd.bench.workloads import Query, Workload
from policyd.decisions import CheckRequest
from policyd.engine import Engine
from policyd.relationship import ObjectRef, Operation, Relationship, RelationshipUpdate, SubjectRef
from policyd.store.sqlite import SqliteStore

BATCH_SIZE = 100


@dataclass(frozen=True, slots=True)
class Limits:
    """How long each measurement may run, and the most calls it makes."""

    seconds: float = 3.0
    max_checks: int = 1_000_000
    max_writes: int = 5_000
    list_queries: int = 20


def write_samples(
    relationships: Sequence[Relationship], count: int, seed: int
) -> list[Relationship]:
    """``count`` new relationships shaped like existing ones, each with a fresh subject id."""
    rng = random.Random(seed)
    plain = [
        r
        for r in relationships[: 200_000 : max(1, len(relationships) // 50_000)]
        if r.caveat_name is None and r.subject.relation is None and r.subject.id != "*"
    ] or [r for r in relationships if r.caveat_name is None][:1]
    out = []
    for i in range(count if plain else 0):
        template = rng.choice(plain)
        subject = SubjectRef(template.subject.type, f"bench-write-{i}")
        out.append(Relationship(template.resource, template.relation, subject))
    return out


def _median_ms(values: list[float]) -> float | None:
    return round(statistics.median(values) * 1000, 3) if values else None


def measure_policyd(
    workload: Workload, workdir: Path, limits: Limits | None = None, seed: int = 1
) -> dict[str, object]:
    """Load ``workload`` into a fresh SQLite database under ``workdir`` and measure it.

    Returns one row of the results table: relationships, load and open times,
    Check rate and latency, BatchCheck rate, list latencies, writes, memory and
    database size, and the number of wrong answers.
    """
    limits = limits or Limits()
    path = workdir / f"{workload.name}.db"
    for f in sqlite_files(path):
        f.unlink(missing_ok=True)
    row: dict[str, object] = {"workload": workload.name, "rels": len(workload.relationships)}

    store = SqliteStore(path, synchronous="OFF")
    engine = Engine(store)
    engine.write_policy(workload.policy)
    started = time.perf_counter()
    engine.import_relationships(workload.relationships)
    engine.revision_for(None)
    load_s = time.perf_counter() - started
    row["bulk_rels_per_s"] = round(len(workload.relationships) / load_s) if load_s else None
    row["load_s"] = round(load_s, 2)
    samples = write_samples(workload.relationships, limits.max_writes, seed)
    store.close()
    del engine, store
    workload.relationships = []
    release_memory()
    row["db_mib"] = files_size_mib(sqlite_files(path))

    # Reopen as a serving process does: the index is rebuilt from the store.
    started = time.perf_counter()
    store = SqliteStore(path, synchronous="OFF")
    engine = Engine(store)
    engine.revision_for(None)
    row["open_s"] = round(time.perf_counter() - started, 2)
    release_memory()
    row["serving_rss_mib"] = rss_mib()

    wrong = 0
    queries = workload.queries

    def check(q: Query) -> None:
        nonlocal wrong
        result = engine.check(q.resource, q.permission, q.subject, context=q.context)
        if q.expected is not None and result.allowed != q.expected:
            wrong += 1

    # Cold first: every decision computed, as for a stream of distinct questions.
    capacity = engine.cache.capacity
    engine.cache.resize(0)
    timing = time_calls(check, queries, limits.seconds, limits.max_checks)
    row["cold_check_per_s"] = round(timing.per_second)
    row["cold_p50_ms"] = round(timing.percentile_ms(0.5), 3)
    row["cold_p99_ms"] = round(timing.percentile_ms(0.99), 3)
    # Then with the decision cache, which the query set's repeats will mostly hit.
    engine.cache.resize(capacity)
    timing = time_calls(check, queries, limits.seconds, limits.max_checks)
    row["checks"] = timing.calls
    row["check_per_s"] = round(timing.per_second)
    row["check_p50_ms"] = round(timing.percentile_ms(0.5), 3)
    row["check_p99_ms"] = round(timing.percentile_ms(0.99), 3)
    row["cache_hit_ratio"] = round(engine.cache.hit_ratio, 3)

    batches = [
        [
            CheckRequest(q.resource, q.permission, q.subject, q.context)
            for q in queries[i : i + BATCH_SIZE]
        ]
        for i in range(0, max(1, len(queries) - BATCH_SIZE + 1), BATCH_SIZE)
    ]
    batch_expected = [
        [q.expected for q in queries[i : i + BATCH_SIZE]]
        for i in range(0, max(1, len(queries) - BATCH_SIZE + 1), BATCH_SIZE)
    ]
    batch_index = 0

    def check_batch(batch: list[CheckRequest]) -> None:
        nonlocal wrong, batch_index
        results = engine.check_many(batch)
        expected = batch_expected[batch_index % len(batch_expected)]
        batch_index += 1
        wrong += sum(
            1 for r, e in zip(results, expected, strict=True) if e is not None and r.allowed != e
        )

    timing = time_calls(check_batch, batches, min(limits.seconds, 3.0), limits.max_checks)
    decisions = sum(len(batches[i % len(batches)]) for i in range(timing.calls))
    row["batch100_per_s"] = round(decisions / timing.seconds) if timing.seconds else None

    first: list[float] = []
    full: list[float] = []
    found: list[int] = []
    deadline = time.perf_counter() + limits.seconds
    for resource_type, permission, subject in workload.list_queries[: limits.list_queries]:
        t0 = time.perf_counter()
        engine.list_objects(resource_type, permission, subject, limit=100)
        first.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        everything = engine.list_objects(resource_type, permission, subject)
        full.append(time.perf_counter() - t0)
        found.append(len(everything.objects))
        if time.perf_counter() > deadline:
            break
    row["list_first100_ms"] = _median_ms(first)
    row["list_all_ms"] = _median_ms(full)
    row["list_found"] = int(statistics.median(found)) if found else None

    subjects_of: list[tuple[ObjectRef, str, str]] = []
    seen: set[tuple[ObjectRef, str]] = set()
    for q in queries:
        if (q.resource, q.permission) not in seen:
            seen.add((q.resource, q.permission))
            subjects_of.append((q.resource, q.permission, q.subject.type))
        if len(subjects_of) >= limits.list_queries:
            break
    context = queries[0].context if queries else {}
    timing = time_calls(
        lambda a: engine.list_subjects(a[0], a[1], a[2], context=context),
        subjects_of,
        min(limits.seconds, 2.0),
        len(subjects_of),
    )
    row["list_subjects_ms"] = round(timing.percentile_ms(0.5), 3)

    updates = [RelationshipUpdate(Operation.TOUCH, r) for r in samples]
    timing = time_calls(lambda u: engine.write([u]), updates, limits.seconds, len(updates))
    row["write_rels_per_s"] = round(timing.per_second)
    if samples:
        last = samples[min(timing.calls, len(samples)) - 1]
        # Read your own write: the index must already hold the last written relationship.
        seen_write = engine.check(last.resource, last.relation, last.subject).allowed
        row["wrong"] = wrong + (0 if seen_write else 1)
    else:
        row["wrong"] = wrong
    row["peak_rss_mib"] = peak_rss_mib()
    store.close()
    return row
