"""In-process decision benchmark: Check, BatchCheck and ListObjects on generated workloads.

Prints decisions/s and p50/p99 latency per workload as a table and, with
--json, as JSON. The full suite (SpiceDB and Python peers side by side, gRPC)
is ``python -m policyd.bench.harness``. Every answer with a known expectation is verified, so a
fast wrong engine shows up as errors, not as a good number.

    python benchmarks/engine_bench.py --workloads chain-10,chain-45,groups,social
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

from policyd.bench.workloads import Workload
from policyd.bench.workloads import build as build_workload
from policyd.decisions import CheckRequest
from policyd.engine import Engine
from policyd.store.sqlite import SqliteStore


def build(name: str, scale: float) -> Workload:
    try:
        return build_workload(name, scale)
    except ValueError as e:
        raise SystemExit(str(e)) from e


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(workload: Workload, db_dir: Path, seconds: float) -> dict[str, object]:
    store = SqliteStore(db_dir / f"{workload.name}.db", synchronous="OFF")
    engine = Engine(store)
    engine.write_policy(workload.policy)
    started = time.perf_counter()
    engine.import_relationships(workload.relationships)
    load_s = time.perf_counter() - started
    engine.revision_for(None)
    errors = 0
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    i = 0
    queries = workload.queries
    while time.perf_counter() < deadline:
        q = queries[i % len(queries)]
        i += 1
        t0 = time.perf_counter()
        result = engine.check(q.resource, q.permission, q.subject, context=q.context)
        latencies.append(time.perf_counter() - t0)
        if q.expected is not None and result.allowed != q.expected:
            errors += 1
    total = sum(latencies)
    batch = [CheckRequest(q.resource, q.permission, q.subject, q.context) for q in queries[:100]]
    t0 = time.perf_counter()
    rounds = 0
    while time.perf_counter() - t0 < min(seconds, 2.0):
        engine.check_many(batch)
        rounds += 1
    batch_rate = rounds * len(batch) / (time.perf_counter() - t0)
    first, full, found = [], [], []
    for resource_type, permission, subject in workload.list_queries:
        t0 = time.perf_counter()
        page = engine.list_objects(resource_type, permission, subject, limit=100)
        first.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        everything = engine.list_objects(resource_type, permission, subject)
        full.append(time.perf_counter() - t0)
        found.append(len(everything.objects))
        _ = page
    store.close()
    return {
        "workload": workload.name,
        "relationships": len(workload.relationships),
        "load_rels_per_s": round(len(workload.relationships) / load_s),
        "checks": len(latencies),
        "check_per_s": round(len(latencies) / total),
        "check_p50_ms": round(percentile(latencies, 0.5) * 1000, 3),
        "check_p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
        "batch100_per_s": round(batch_rate),
        "list_first100_ms": round(statistics.median(first) * 1000, 2) if first else None,
        "list_all_ms": round(statistics.median(full) * 1000, 2) if full else None,
        "list_found_median": statistics.median(found) if found else None,
        "wrong_answers": errors,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="chain-10,chain-25,chain-45,groups,social")
    parser.add_argument("--scale", type=float, default=0.01, help="1.0 = the issue's full sizes")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per check measurement")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.workloads.split(","):
            results.append(run(build(name, args.scale), Path(tmp), args.seconds))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    columns = list(results[0])
    widths = [max(len(c), *(len(str(r[c])) for r in results)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in results:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(columns, widths, strict=True)))


if __name__ == "__main__":
    main()
