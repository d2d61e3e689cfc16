"""Package write_load measures writes over gRPC: `policyd serve` at its serving durability.

Every write is one WriteRelationships call with one TOUCH of a relationship
never written before (``document:w…#viewer@user:…``), so each commits a
change, not a no-op. A client is a thread of a client process, calling in a
closed loop (its next write starts when the last was acknowledged); 16
clients are ``--write-processes`` processes of 16/P threads each. The server
is a ``policyd serve`` subprocess on a SQLite file in WAL mode with
``synchronous=FULL`` (its default: every acknowledged write survives power
loss), so these are the figures a deployment sees, on the same cores as the
load generator. "Under Check load" adds Check client processes
(``grpc_load``) calling at the same time, and reports both rates.

``measure_import`` streams one ImportBulkRelationships of N new relationships
(500 a message) into the same server on top of the workload and reports the
server process's peak RSS (``VmHWM``) before and after: the import streams
into its transaction, so the peak grows with the index it fills, not with the
stream.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policyd.bench.grpc_load import (
    LoadSpec,
    Served,
    gather,
    load_database,
    run_clients,
    serve_process,
)
from policyd.bench.measure import percentile
from policyd.bench.workloads import Workload

DURABILITY = "sqlite WAL, synchronous=FULL"


@dataclass(frozen=True, slots=True)
class WriteSpec:
    """What each write client process does: ``threads`` clients writing until time or count."""

    target: str
    token: str
    seconds: float
    max_writes: int
    threads: int
    prefix: str


def _write_process(spec: WriteSpec, barrier: Any, results: Any) -> None:
    """One client process: ``spec.threads`` threads, each writing new relationships in a loop."""
    from policyd.client import PolicydClient
    from policyd.relationship import (
        ObjectRef,
        Operation,
        Relationship,
        RelationshipUpdate,
        SubjectRef,
    )

    client = PolicydClient(spec.target, token=spec.token, timeout=60, retries=0)

    def update(thread: int, i: int) -> RelationshipUpdate:
        resource = ObjectRef("document", f"w{spec.prefix}t{thread}n{i}")
        relationship = Relationship(resource, "viewer", SubjectRef("user", f"u{i % 1000}"))
        return RelationshipUpdate(Operation.TOUCH, relationship)

    for i in range(5):  # warm up the channel
        client.write([update(spec.threads, i)])
    per_thread: list[list[float]] = [[] for _ in range(spec.threads)]
    errors = [0] * spec.threads
    ready = threading.Barrier(spec.threads + 1)
    stop = threading.Event()

    def loop(thread: int) -> None:
        latencies = per_thread[thread]
        clock = time.perf_counter
        ready.wait()
        limit = spec.max_writes // spec.threads
        i = 0
        while i < limit and not stop.is_set():
            t0 = clock()
            try:
                client.write([update(thread, i)])
            except Exception:  # counted, not fatal: a benchmark prints numbers
                errors[thread] += 1
            latencies.append(clock() - t0)
            i += 1

    threads = [threading.Thread(target=loop, args=(t,), daemon=True) for t in range(spec.threads)]
    for thread in threads:
        thread.start()
    barrier.wait(timeout=120)
    started = time.perf_counter()
    ready.wait()
    stop.wait(spec.seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    elapsed = time.perf_counter() - started
    client.close()
    latencies = [x for t in per_thread for x in t]
    results.put(
        {
            "writes": len(latencies),
            "errors": sum(errors),
            "elapsed": elapsed,
            "latencies": latencies,
        }
    )


def run_writers(
    target: str | Sequence[str],
    token: str,
    clients: int,
    processes: int,
    seconds: float,
    max_writes: int,
    tag: str,
) -> dict[str, object]:
    """Drive writes from ``clients`` clients in ``processes`` processes; aggregate their numbers.

    Several targets (servers of one store) take the processes in turn.
    """
    targets = [target] if isinstance(target, str) else list(target)
    processes = max(1, min(processes, clients))
    base, extra = divmod(clients, processes)
    specs = [
        WriteSpec(
            targets[p % len(targets)], token, seconds, max_writes, base + (p < extra), f"{tag}p{p}"
        )
        for p in range(processes)
    ]
    collected = gather(_write_process, specs, seconds)
    latencies = [x for r in collected for x in r["latencies"]]
    elapsed = max(r["elapsed"] for r in collected)
    writes = sum(r["writes"] for r in collected) - sum(r["errors"] for r in collected)
    return {
        "writes": writes,
        "writes_per_s": round(writes / elapsed) if elapsed else None,
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "errors": sum(r["errors"] for r in collected),
    }


@contextmanager
def served_workload(
    workload: Workload, workdir: Path, workers: int
) -> Iterator[tuple[Served, str]]:
    """``policyd serve`` on a new SQLite file holding ``workload``; yields it and its token."""
    db = workdir / f"{secrets.token_hex(4)}-{workload.name}.db"
    load_database(workload, db)
    token = secrets.token_hex(16)
    with serve_process(db, workers, token) as served:
        yield served, token


def measure_writes(
    workload: Workload,
    workdir: Path,
    clients: Sequence[int],
    seconds: float,
    *,
    workers: int = 1,
    write_processes: int = 4,
    check_processes: int = 2,
    max_writes: int = 1_000_000,
) -> list[dict[str, object]]:
    """Writes/s and latency with each number of clients, then with Check load beside 16 of them."""
    rows: list[dict[str, object]] = []
    base: dict[str, object] = {"durability": DURABILITY, "workers": workers}
    with served_workload(workload, workdir, workers) as (served, token):
        target = served.target
        for n in clients:
            row: dict[str, object] = {
                **base,
                "load": f"{n} write clients",
                "driver": _driver(n, write_processes),
            }
            row.update(run_writers(target, token, n, write_processes, seconds, max_writes, f"c{n}"))
            rows.append(row)
        n = max(clients)
        spec = LoadSpec("check", target, token, seconds, 10_000_000, tuple(workload.queries))
        alone = run_clients(spec, check_processes)
        rows.append(
            {
                **base,
                "load": f"Check only, {check_processes} clients",
                "driver": f"python x{check_processes}",
                "checks_per_s": alone["per_s"],
                "check_p99_ms": alone["p99_ms"],
            }
        )
        checks: dict[str, object] = {}
        thread = threading.Thread(
            target=lambda: checks.update(run_clients(spec, check_processes)), daemon=True
        )
        thread.start()
        row = {
            **base,
            "load": f"{n} write clients + Check x{check_processes}",
            "driver": _driver(n, write_processes),
        }
        row.update(run_writers(target, token, n, write_processes, seconds, max_writes, "mixed"))
        thread.join(seconds + 300)
        row["checks_per_s"] = checks.get("per_s")
        row["check_p99_ms"] = checks.get("p99_ms")
        rows.append(row)
    return rows


def _driver(clients: int, processes: int) -> str:
    processes = max(1, min(processes, clients))
    return f"python {processes}p x {clients // processes}t"


def _memory_kib(pid: int) -> dict[str, int]:
    """A process's resident set now and at its peak (``VmRSS``, ``VmHWM``), in KiB."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def measure_import(workload: Workload, workdir: Path, count: int) -> dict[str, object]:
    """One streamed import of ``count`` new relationships into a served workload; peak RSS."""
    from policyd.client import PolicydClient
    from policyd.relationship import ObjectRef, Relationship, SubjectRef

    def relationships() -> Iterator[Relationship]:
        for i in range(count):
            yield Relationship(
                ObjectRef("document", f"imported{i}"), "viewer", SubjectRef("user", f"u{i % 1000}")
            )

    with (
        served_workload(workload, workdir, 1) as (served, token),
        PolicydClient(served.target, token=token, timeout=600, retries=0) as client,
    ):
        pid = served.pid
        before = _memory_kib(pid)
        started = time.perf_counter()
        _, loaded = client.import_relationships(relationships(), chunk_size=500)
        elapsed = time.perf_counter() - started
        after = _memory_kib(pid)
    return {
        "durability": DURABILITY,
        "imported": loaded,
        "seconds": round(elapsed, 1),
        "rels_per_s": round(loaded / elapsed),
        "rss_before_mib": round(before["VmRSS"] / 1024),
        "peak_before_mib": round(before["VmHWM"] / 1024),
        "peak_after_mib": round(after["VmHWM"] / 1024),
        "rss_after_mib": round(after["VmRSS"] / 1024),
    }


IMPORTED = 1_000_000
"""Relationships in the streamed import at scale 1 (the issue's 1M)."""


def write_rows(
    name: str, scale: float, seed: int, seconds: float, workers: int, clients: int
) -> list[dict[str, object]]:
    """The harness's grpc-writes section: one ``policyd serve`` worker, as it runs by default.

    Writes from 1 and 16 clients, 16 beside Check load (``clients`` processes),
    then a streamed import of ``IMPORTED`` × ``scale`` relationships and its RSS.
    ``workers`` is not used: there is one writer whatever the workers.
    """
    import tempfile

    from policyd.bench import workloads

    workload = workloads.build(name, scale, seed)
    with tempfile.TemporaryDirectory(prefix="policyd-bench-") as tmp:
        rows = measure_writes(workload, Path(tmp), [1, 16], seconds, check_processes=clients)
        imported = max(10_000, round(IMPORTED * scale))
        rows.append(
            {"load": "ImportRelationships", **measure_import(workload, Path(tmp), imported)}
        )
    return rows
