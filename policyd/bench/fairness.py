"""Package fairness measures one policyd worker under heavy calls and idle streams, on a 1M group.

One ``policyd serve`` process (one event loop: the case where a heavy call
could take the loop from a Check) serves ``deep-N``, a group of a million
members nested N deep, and this module measures:

- ListSubjects on that group: the time to the first subject (the issue's
  ≤ 50 ms), with no limit and with ``limit`` 100 (and the time to all 100),
  and how long the whole listing takes when h2load reads it (C, so the
  reader does not set the pace).
- cheap Check latency (one call in flight, a repeating set of the workload's
  queries) while idle, while ``heavy`` ListSubjects of the whole group
  stream to h2load, and while ``streams`` idle Watch streams are open, and
  idle again at the end, so the idle figure has a range.

The heavy calls' and streams' presence during the window is read from the
server's ``policyd_grpc_in_flight`` gauge at its start and end; h2load reads
the ListSubjects streams on the same cores, so the server CPU share is
printed too.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from policyd.bench import workloads
from policyd.bench.driver import Load, check_calls, drive, one
from policyd.bench.grpc_load import (
    H2LOAD_MISSING,
    Served,
    h2load,
    h2load_command,
    load_database,
    permission_method,
    serve_process,
    write_frame,
)
from policyd.bench.measure import percentile, process_tree, rss_of_mib
from policyd.bench.serving import ServerWindow, scrape

LIST_SUBJECTS = permission_method("ListSubjects")
WATCH = "/policyd.v1.RelationshipService/Watch"
FIRST_SUBJECT_REPEATS = 20
GAUGE_WAIT_SECONDS = 60.0
"""The longest to wait for the heavy calls or streams to show in the in-flight gauge."""


def list_subjects_message(workload: workloads.Workload, limit: int = 0) -> bytes:
    """ListSubjects of the resource and permission of the workload's first query.

    In ``deep-N`` every query is about ``document:top#view``, the million-member group.
    """
    from policyd.api.gen import core_pb2
    from policyd.api.gen import permission_service_pb2 as pb

    resource = workload.queries[0].resource
    return pb.ListSubjectsRequest(
        resource=core_pb2.ObjectReference(object_type=resource.type, object_id=resource.id),
        permission=workload.queries[0].permission,
        subject_type=workload.queries[0].subject.type,
        limit=limit,
    ).SerializeToString()


def first_subjects(
    target: str, token: str, body: bytes, repeats: int, timeout: float = 120.0
) -> dict[str, object]:
    """Time to the first ListSubjects response and to the stream's end, ``repeats`` times."""
    import grpc

    metadata = (("authorization", f"Bearer {token}"),)
    first: list[float] = []
    whole: list[float] = []
    received = 0
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_stream(LIST_SUBJECTS, None, None)
        for _ in range(repeats):
            started = time.perf_counter()
            responses = call(body, metadata=metadata, timeout=timeout)
            received = 0
            for _response in responses:
                if not received:
                    first.append(time.perf_counter() - started)
                received += 1
                if received == 100:
                    break
            whole.append(time.perf_counter() - started)
            responses.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leave it untyped
    return {
        "calls": repeats,
        "first_p50_ms": round(percentile(first, 0.5) * 1000, 2),
        "first_max_ms": round(max(first, default=0.0) * 1000, 2),
        "first_100_p50_ms": round(percentile(whole, 0.5) * 1000, 2),
        "subjects_read": received,
    }


def _in_flight(served: Served, method: str) -> int:
    assert served.metrics_url is not None
    key = f'policyd_grpc_in_flight{{method="{method}"}}'
    return int(scrape(served.metrics_url).get(key, 0))


def _wait_in_flight(
    served: Served, method: str, count: int, alive: Callable[[], bool], patience: float
) -> int:
    """Wait (``patience`` seconds at most) for ``count`` calls of ``method`` in flight.

    Returns the count seen last.
    """
    deadline = time.monotonic() + patience
    seen = _in_flight(served, method)
    while seen < count and alive() and time.monotonic() < deadline:
        time.sleep(0.1)
        seen = _in_flight(served, method)
    return seen


@contextmanager
def heavy_calls(
    served: Served, token: str, body: bytes, count: int, patience: float
) -> Iterator[int]:
    """``count`` ListSubjects streaming to h2load until the block ends; yields how many started.

    h2load runs ``count`` connections of one stream each and starts another
    call on a connection whose call ended, so ``count`` stay in flight.
    """
    with tempfile.NamedTemporaryFile(suffix=".grpc") as file:
        write_frame(body, file)
        command = h2load_command(
            served.target, LIST_SUBJECTS, Path(file.name), token, 1000 * count, count, 1
        )
        reader = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            running = lambda: reader.poll() is None  # noqa: E731
            yield _wait_in_flight(served, LIST_SUBJECTS, count, running, patience)
        finally:
            reader.terminate()
            reader.wait(30)


def _hold_streams(target: str, token: str, count: int, opened: Any, done: Any) -> None:
    """A client process holding ``count`` Watch streams (on 10 connections) open until ``done``."""
    import grpc

    async def hold() -> None:
        metadata = (("authorization", f"Bearer {token}"),)
        own_connection = [("grpc.use_local_subchannel_pool", 1)]
        channels = [grpc.aio.insecure_channel(target, options=own_connection) for _ in range(10)]
        for channel in channels:
            await channel.channel_ready()
        # A call starts when made; an idle Watch sends nothing back, not even headers.
        calls = [
            channels[i % len(channels)].unary_stream(WATCH, None, None)(b"", metadata=metadata)
            for i in range(count)
        ]
        opened.set()
        await asyncio.get_running_loop().run_in_executor(None, done.wait)
        for c in calls:
            c.cancel()
        for channel in channels:
            await channel.close(None)

    asyncio.run(hold())


@contextmanager
def idle_streams(served: Served, token: str, count: int, patience: float) -> Iterator[int]:
    """``count`` idle Watch streams open until the block ends; yields how many the server holds."""
    context = multiprocessing.get_context("spawn")
    opened, done = context.Event(), context.Event()
    holder = context.Process(
        target=_hold_streams, args=(served.target, token, count, opened, done), daemon=True
    )
    holder.start()
    try:
        opened.wait(patience)
        yield _wait_in_flight(served, WATCH, count, holder.is_alive, patience)
    finally:
        done.set()
        holder.join(30)
        if holder.is_alive():
            holder.terminate()


def measure_fairness(
    workload: workloads.Workload,
    workdir: Path,
    seconds: float,
    heavy: int = 3,
    streams: int = 1000,
    full_listing_timeout: float = 600.0,
    patience: float = GAUGE_WAIT_SECONDS,
) -> list[dict[str, object]]:
    """First subject, and cheap Check latency idle, under heavy calls and with idle streams.

    ``patience`` bounds the wait for all heavy calls or streams to show as in flight.
    """
    db = workdir / f"fair-{workload.name}.db"
    load_database(workload, db)
    token = secrets.token_hex(16)
    rows: list[dict[str, object]] = []
    base = {"server": "policyd --workers 1", "cache": "on"}
    with serve_process(db, 1, token, metrics=True) as served:
        pids: Callable[[], list[int]] = lambda: process_tree(served.pid)  # noqa: E731
        for limit in (0, 100):
            rows.append(
                {
                    **base,
                    "scenario": f"ListSubjects, limit {limit or 'none'}",
                    "driver": "python, 1 in flight",
                    **first_subjects(
                        served.target,
                        token,
                        list_subjects_message(workload, limit),
                        FIRST_SUBJECT_REPEATS,
                    ),
                }
            )
        everything = list_subjects_message(workload)
        whole = h2load(
            served.target, LIST_SUBJECTS, everything, token, 1, 1, 1, full_listing_timeout
        )
        listed = (
            {"skipped": whole["skipped"]} if "skipped" in whole else {"all_ms": whole["mean_ms"]}
        )
        rows.append({**base, "scenario": "ListSubjects, all, read by h2load", **listed})

        window = ServerWindow(pids, served.metrics_url)
        load = Load(served.target, token, seconds, processes=1, in_flight=1, channels=1)
        checks = one(check_calls(workload.queries, repeat=True))
        drive(replace(load, max_calls=len(workload.queries)), checks)  # the cache holds them all
        idle: list[float] = []

        def checks_row(scenario: str, **extra: object) -> dict[str, object]:
            ran = drive(load, checks, window)[0]
            row = {**base, "scenario": scenario, **ran, **window.fields, **extra}
            row["server_rss_mib"] = rss_of_mib(pids())
            p99 = ran["p99_ms"]
            assert isinstance(p99, float)
            if scenario.startswith("idle"):
                idle.append(p99)
            else:
                row["p99_vs_idle"] = round(p99 / idle[0], 2)
            return row

        rows.append(checks_row("idle"))
        scenario = f"{heavy} ListSubjects (all) running"
        if shutil.which("h2load") is None:
            rows.append({**base, "scenario": scenario, "skipped": H2LOAD_MISSING})
        else:
            with heavy_calls(served, token, everything, heavy, patience) as started:
                row = checks_row(scenario, heavy_at_start=started)
                row["heavy_at_end"] = _in_flight(served, LIST_SUBJECTS)
                rows.append(row)
        with idle_streams(served, token, streams, patience) as held:
            row = checks_row(f"{streams:,} idle Watch streams open", streams_at_start=held)
            row["streams_at_end"] = _in_flight(served, WATCH)
            rows.append(row)
        rows.append(checks_row("idle, again"))
    return rows


def fairness_rows(name: str, scale: float, seed: int, seconds: float) -> list[dict[str, object]]:
    """The fairness section on workload ``name`` (run inside an isolated process)."""
    workload = workloads.build(name, scale, seed)
    with tempfile.TemporaryDirectory(prefix="policyd-bench-") as tmp:
        rows = measure_fairness(workload, Path(tmp), seconds)
    return [{"workload": workload.name, **row} for row in rows]
