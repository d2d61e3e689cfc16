"""Package serving measures `policyd serve` over gRPC: distinct queries, cache off and on, writes.

``measure_cold_warm`` answers "how fast is a Check nobody asked before":
BatchCheck(100) and Check with distinct queries (each sent once) against
``--no-decision-cache`` (cold) and the default cache (on, but distinct
queries rarely hit it), then a working set the cache answers (repeated).
Beside them, in the same run and with the same drivers, the ceiling: a bare
grpc.aio server answering empty bytes (no policyd, no protobuf, the same
number of processes sharing one port) and policyd's own empty RPC (health).
``measure_write_mix`` sends 10% writes among repeating Checks at the serving
durability and reports the decision-cache hit ratio, Check p99 and writes/s.

Two drivers: h2load (C, one thread) saturates a server but sends one
request body over and over, so with the cache off it measures a Check
computed afresh each time, not distinct queries; ``driver`` (Python client
processes sending bodies serialized in advance) sends distinct queries but
spends CPU of the same shared cores. Every row says its cache state, its
queries, its driver and how much CPU the server processes had
(``server_cpu_pct``, of 100 per core), since the load generator competes
with them. Hit ratios come from the server's /metrics.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from policyd.bench import workloads
from policyd.bench.driver import (
    Calls,
    Load,
    Mix,
    batch_calls,
    check_calls,
    drive,
    empty_calls,
    one,
    write_calls,
)
from policyd.bench.grpc_load import (
    LOOPBACK,
    Served,
    batch_message,
    check_message,
    free_port,
    h2load,
    load_database,
    permission_method,
    serve_process,
)
from policyd.bench.inprocess import write_samples
from policyd.bench.measure import cpu_seconds, process_tree
from policyd.relationship import ObjectRef, Relationship, SubjectRef

WORKING_SET = 5_000
"""Queries in a repeated working set: ten times fewer than the cache holds."""

EMPTY_METHOD = "/bench.Empty/Call"

DISTINCT_CHECKS_PER_S = 15_000
DISTINCT_DECISIONS_PER_S = 150_000
"""Distinct queries generated per second of measurement, above what these machines reach."""

SETTLE_SECONDS = 1.5
"""Workers publish cache counts once a second: the wait before a scrape sees them all."""


# ---- observing the server ---------------------------------------------------------------------


def scrape(url: str) -> dict[str, float]:
    """The samples of a /metrics page, keyed ``name{label="value",…}`` as the page writes them."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=30) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


@dataclass(slots=True)
class ServerWindow:
    """What the server did between ``start`` and ``stop``: CPU used and cache hits and misses.

    ``fields`` has ``server_cpu_pct``, the CPU its processes used over the
    window's wall time (100 per busy core), ``process_cpu_pct`` the same per
    process that used any (each worker: are they evenly loaded?), and
    ``hit_ratio`` from the decision cache's counts when it has metrics.
    """

    pids: Callable[[], list[int]]
    metrics_url: str | None = None
    settle: float = 0.0
    _start: tuple[float, dict[int, float], dict[str, float]] = (0.0, {}, {})
    fields: dict[str, object] = field(default_factory=dict)

    def _metrics(self) -> dict[str, float]:
        return scrape(self.metrics_url) if self.metrics_url else {}

    def _cpu(self) -> dict[int, float]:
        return {pid: cpu_seconds([pid]) for pid in self.pids()}

    def start(self) -> None:
        """Note the time, the server's CPU and its metrics (after ``settle`` seconds of quiet)."""
        time.sleep(self.settle)
        self._start = (time.monotonic(), self._cpu(), self._metrics())

    def stop(self) -> None:
        """Work out ``fields``: server CPU share, decision-cache hit ratio."""
        started, cpu, metrics = self._start
        wall = time.monotonic() - started
        used = {pid: seconds - cpu.get(pid, 0.0) for pid, seconds in self._cpu().items()}
        time.sleep(self.settle)
        after = self._metrics()
        shares = [round(100 * u / wall) for u in used.values() if wall and u > 0]
        self.fields = {
            "server_cpu_pct": sum(shares),
            "process_cpu_pct": "+".join(str(s) for s in shares if s),
        }
        hits = after.get("policyd_decision_cache_hits_total", 0.0) - metrics.get(
            "policyd_decision_cache_hits_total", 0.0
        )
        misses = after.get("policyd_decision_cache_misses_total", 0.0) - metrics.get(
            "policyd_decision_cache_misses_total", 0.0
        )
        if hits + misses:
            self.fields["hit_ratio"] = round(hits / (hits + misses), 3)


def server_window(served: Served, workers: int, cache: bool) -> ServerWindow:
    """A window on ``policyd serve`` and its workers (that waits for their cache counts)."""
    return ServerWindow(
        lambda: process_tree(served.pid),
        served.metrics_url,
        SETTLE_SECONDS if workers > 1 and cache else 0.0,
    )


def per_server_cpu(row: dict[str, object]) -> dict[str, object]:
    """``row`` with ``per_server_cpu_s``: decisions (or calls) per CPU-second of the server.

    On cores shared with the load generator and other jobs this says more
    about the server than its wall-clock rate does.
    """
    rate = row.get("decisions_per_s") or row.get("per_s")
    cpu = row.get("server_cpu_pct")
    if isinstance(rate, int | float) and isinstance(cpu, int | float) and cpu:
        return {**row, "per_server_cpu_s": round(rate * 100 / cpu)}
    return row


def observed(window: ServerWindow, rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """``rows`` with the window's fields added to the first (the hit ratio is of all of them).

    A run of one kind of call also gets its rate per server CPU-second.
    """
    if not rows:
        return rows
    first = {**rows[0], **window.fields}
    return [per_server_cpu(first) if len(rows) == 1 else first, *rows[1:]]


def h2load_row(
    target: str,
    method: str,
    body: bytes,
    token: str,
    seconds: float,
    window: ServerWindow,
    decisions_per_call: int = 1,
) -> dict[str, object]:
    """One method driven by h2load for ``seconds`` (4 connections × 10 streams), observed."""
    window.start()
    result = h2load(target, method, body, token, 0, 4, 10, seconds + 60, duration=seconds)
    window.stop()
    row: dict[str, object] = {"driver": "h2load c4 m10", **result}
    if "skipped" in result:
        return row
    rate = result.get("per_s")
    if decisions_per_call > 1 and isinstance(rate, int):
        row["decisions_per_s"] = rate * decisions_per_call
    return per_server_cpu({**row, **window.fields})


# ---- grpcio's ceiling ---------------------------------------------------------------------------


def _empty_server(target: str, ready: Any) -> None:
    """One process of a bare grpc.aio server whose one method answers empty bytes."""
    import grpc

    async def empty(_request: bytes, _context: object) -> bytes:
        return b""

    async def serve() -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
        service, _, method = EMPTY_METHOD.strip("/").partition("/")
        handler = grpc.unary_unary_rpc_method_handler(empty)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, {method: handler}),)
        )
        server.add_insecure_port(target)
        await server.start()
        ready.set()
        await server.wait_for_termination()

    asyncio.run(serve())


@contextmanager
def empty_server(processes: int) -> Iterator[tuple[str, list[int]]]:
    """``processes`` bare grpc.aio servers sharing a loopback port; yields it and their pids."""
    context = multiprocessing.get_context("spawn")
    target = f"{LOOPBACK}:{free_port()}"
    servers = []
    for _ in range(processes):
        ready = context.Event()
        server = context.Process(target=_empty_server, args=(target, ready), daemon=True)
        server.start()
        servers.append((server, ready))
    try:
        for server, ready in servers:
            if not ready.wait(60):
                raise RuntimeError(f"the empty grpc.aio server did not start: {server.exitcode}")
        yield target, [s.pid for s, _ in servers if s.pid is not None]
    finally:
        for server, _ in servers:
            server.terminate()
            server.join(10)


# ---- the sections -------------------------------------------------------------------------------


def _labelled(
    conditions: Mapping[str, object], rows: list[dict[str, object]]
) -> list[dict[str, object]]:
    return [{**conditions, **row} for row in rows]


def _warm(load: Load, calls: Calls) -> None:
    """Send a working set twice on every connection, so every worker's cache holds it.

    Twice: a decision is stored the second time it is asked (``DecisionCache.admit``).
    """
    per_process = 2 * len(calls.bodies) * load.channels
    drive(replace(load, seconds=600, max_calls=per_process), one(calls))


def measure_cold_warm(
    workload: workloads.Workload,
    workdir: Path,
    workers: int,
    seconds: float,
    processes: int,
    working_set: int = WORKING_SET,
) -> list[dict[str, object]]:
    """BatchCheck(100) and Check with distinct queries, cache off and on; the empty ceiling.

    The repeated rows send the first ``working_set`` queries round and round.
    """
    db = workdir / f"cold-{workload.name}.db"
    load_database(workload, db)
    token = secrets.token_hex(16)
    queries = workload.queries
    split = min(len(queries) // 10, int(DISTINCT_CHECKS_PER_S * seconds))
    distinct_checks = check_calls(queries[:split])
    distinct_batches = batch_calls(queries[split:])
    one_check = next((q for q in queries if q.expected), queries[0])
    rows: list[dict[str, object]] = []
    served_by = f"policyd --workers {workers}"

    with empty_server(workers) as (target, pids):
        window = ServerWindow(lambda: pids)
        ceiling = {"server": f"grpc.aio empty x{workers}", "cache": "-", "queries": "empty"}
        rows.append(
            {
                **ceiling,
                "rpc": "empty (bytes)",
                **h2load_row(target, EMPTY_METHOD, b"", token, seconds, window),
            }
        )
        load = Load(target, token, seconds, processes, in_flight=8)
        ran = drive(load, one(empty_calls(EMPTY_METHOD, "empty (bytes)")), window)
        rows += _labelled(ceiling, observed(window, ran))

    for cache, options in (("off", ["--no-decision-cache"]), ("on", [])):
        with serve_process(db, workers, token, options, metrics=True) as served:
            window = server_window(served, workers, cache == "on")
            conditions = {"server": served_by, "cache": cache}
            load = Load(served.target, token, seconds, processes, in_flight=8)
            batch_load = Load(served.target, token, seconds, processes, in_flight=4)
            if cache == "off":
                one_body = {**conditions, "queries": "one, repeated"}
                rows.append(
                    {
                        **one_body,
                        "rpc": "empty (health)",
                        **h2load_row(
                            served.target,
                            "/grpc.health.v1.Health/Check",
                            b"",
                            token,
                            seconds,
                            window,
                        ),
                    }
                )
                ran = drive(load, one(empty_calls()), window)
                rows += _labelled(one_body, observed(window, ran))
                rows.append(
                    {
                        **one_body,
                        "rpc": "Check",
                        **h2load_row(
                            served.target,
                            permission_method(),
                            check_message(one_check),
                            token,
                            seconds,
                            window,
                        ),
                    }
                )
                batch = list(queries[split : split + 100])
                rows.append(
                    {
                        **one_body,
                        "rpc": "BatchCheck(100)",
                        **h2load_row(
                            served.target,
                            permission_method("BatchCheck"),
                            batch_message(batch),
                            token,
                            seconds,
                            window,
                            len(batch),
                        ),
                    }
                )
            distinct = {**conditions, "queries": "distinct"}
            rows += _labelled(distinct, observed(window, drive(load, one(distinct_checks), window)))
            ran = drive(batch_load, one(distinct_batches), window)
            rows += _labelled(distinct, observed(window, ran))
            if cache == "on":
                repeated = {**conditions, "queries": f"{working_set:,} repeated"}
                for calls, driven in (
                    (check_calls(queries[:working_set], repeat=True), load),
                    (batch_calls(queries[:working_set], repeat=True), batch_load),
                ):
                    _warm(driven, calls)
                    ran = drive(driven, one(calls), window)
                    rows += _labelled(repeated, observed(window, ran))
    return rows + ceiling_ratios(rows)


def ceiling_ratios(rows: Sequence[dict[str, object]]) -> list[dict[str, object]]:
    """Cold Check/s over the empty ceiling's calls/s, per driver (the issue's 70% target)."""

    def rate(rpc: str, driver: str, cache: str, server: str) -> float | None:
        for row in rows:
            if (row.get("rpc"), row.get("cache"), str(row.get("driver", ""))[:6]) == (
                rpc,
                cache,
                driver,
            ) and str(row.get("server", "")).startswith(server):
                value = row.get("per_s")
                return float(value) if isinstance(value, int | float) else None
        return None

    ratios: list[dict[str, object]] = []
    for driver in ("h2load", "python"):
        check = rate("Check", driver, "off", "policyd")
        for rpc, cache, server in (
            ("empty (bytes)", "-", "grpc.aio"),
            ("empty (health)", "off", "policyd"),
        ):
            ceiling = rate(rpc, driver, cache, server)
            if check and ceiling:
                ratios.append(
                    {
                        "server": "ratio",
                        "rpc": f"cold Check ÷ {rpc} of {server}",
                        "driver": driver,
                        "ratio": round(check / ceiling, 2),
                    }
                )
    return ratios


def measure_write_mix(
    workload: workloads.Workload,
    workdir: Path,
    workers: int,
    seconds: float,
    processes: int,
    seed: int = 1,
    working_set: int = WORKING_SET,
) -> list[dict[str, object]]:
    """Repeating Checks with 0% and 10% writes: hit ratio, Check p99, writes/s (cache on).

    The checks send the first ``working_set`` queries round and round. Each
    write adds one relationship with a new subject: in one run on resources
    like the workload's (``write_samples``: mostly not the queried ones, so a
    cache that drops only what a write changes keeps nearly every entry), in
    the other on the resources the checks ask about, so every write changes
    what some cached decisions read.
    """
    db = workdir / f"mix-{workload.name}.db"
    load_database(workload, db)
    token = secrets.token_hex(16)
    queries = workload.queries[:working_set]
    checks = check_calls(queries, repeat=True)
    count = int(5_000 * seconds)
    mixes = {
        "0%": one(checks),
        "10%, random resources": Mix(
            ((checks, 9), (write_calls(write_samples(workload.relationships, count, seed)), 1))
        ),
        "10%, the queried resources": Mix(
            ((checks, 9), (write_calls(writes_to(queries, workload.relationships, count)), 1))
        ),
    }
    rows: list[dict[str, object]] = []
    with serve_process(db, workers, token, metrics=True) as served:
        window = server_window(served, workers, cache=True)
        load = Load(served.target, token, seconds, processes, in_flight=8)
        _warm(load, checks)
        conditions = {
            "server": f"policyd --workers {workers}",
            "cache": "on",
            "durability": "serve default (SQLite WAL, synchronous FULL)",
            "queries": f"{working_set:,} repeated",
        }
        for share, mix in mixes.items():
            ran = drive(load, mix, window)
            rows += _labelled({"writes": share, **conditions}, observed(window, ran))
    return rows


def writes_to(
    queries: Sequence[workloads.Query], relationships: Sequence[Relationship], count: int
) -> list[Relationship]:
    """``count`` new relationships on the queries' resources, each with a new subject.

    Each is shaped like a relationship the resource already has (same relation
    and subject type), so it is valid under the policy and changes what a
    decision about that resource reads.
    """
    wanted = {q.resource for q in queries}
    shapes: dict[ObjectRef, Relationship] = {}
    for r in relationships:
        if r.resource in wanted and r.caveat_name is None and r.subject.id != "*":
            shapes.setdefault(r.resource, r)
    ordered = list(shapes.values())
    return (
        [
            Relationship(
                shape.resource,
                shape.relation,
                SubjectRef(shape.subject.type, f"bench-write-{i}", shape.subject.relation),
            )
            for i, shape in zip(range(count), itertools.cycle(ordered))
        ]
        if ordered
        else []
    )


def cold_warm_rows(
    name: str, scale: float, seed: int, seconds: float, workers: int, processes: int
) -> list[dict[str, object]]:
    """The cold/warm section on workload ``name`` (run inside an isolated process)."""
    count = int((DISTINCT_CHECKS_PER_S + DISTINCT_DECISIONS_PER_S) * seconds)
    workload = workloads.build(name, scale, seed, queries=max(count, 2 * WORKING_SET))
    with tempfile.TemporaryDirectory(prefix="policyd-bench-") as tmp:
        rows = measure_cold_warm(workload, Path(tmp), workers, seconds, processes)
    return _labelled({"workload": workload.name}, rows)


def write_mix_rows(
    name: str, scale: float, seed: int, seconds: float, workers: int, processes: int
) -> list[dict[str, object]]:
    """The write-mix section on workload ``name`` (run inside an isolated process)."""
    workload = workloads.build(name, scale, seed)
    with tempfile.TemporaryDirectory(prefix="policyd-bench-") as tmp:
        rows = measure_write_mix(workload, Path(tmp), workers, seconds, processes, seed)
    return _labelled({"workload": workload.name}, rows)
