"""Package harness runs policyd's benchmark suite and prints tables and, with --json, JSON.

Sections (``--sections``, all by default):

- ``inprocess``: each workload at ``--scale`` × the issue's sizes, loaded into
  SQLite and measured in a fresh process (so peak RSS is the workload's own).
- ``spicedb``: the same workloads at ``--peer-scale`` against SpiceDB embedded
  and policyd in the same run, with policyd/SpiceDB ratios and a comparison of
  both engines' answers.
- ``python``: cedarpy, casbin, oso and a naive SQLite CTE on the nested-groups
  workload they can express, with the policyd ratio and answer agreement.
- ``grpc``: ``policyd serve --workers N`` on loopback under 1 and N client
  processes (and h2load if installed).
- ``xrpc``: ``com.atproto.simplespace.checkUserAccess`` on loopback, every
  request with its own service-auth JWT verified (``policyd.bench.xrpc_load``),
  and the cost of one signature verification per library.
- ``grpc-cold``, ``grpc-mix``, ``grpc-writes``, ``grpc-fairness``
  (``SERVING``): distinct queries cold and warm beside grpcio's empty-RPC
  ceiling (``policyd.bench.serving``), 10% writes among repeating Checks,
  single writes at the serving durability alone and beside Check load and a
  streamed import's peak RSS (``policyd.bench.write_load``), and one worker
  under heavy ListSubjects and idle Watch streams (``policyd.bench.fairness``).
- ``postgres`` (only with ``--pg-dsn``): imports, single writes from two
  servers alone and beside an import, propagation between servers, Checks on
  a standby with ``--pg-read-dsn``, and ``policyd serve`` from spawn to its
  first Check and its RSS on ``--pg-startup`` relationships
  (``policyd.bench.postgres``).
- ``startup``: ``policyd serve`` from spawn to its first answered Check and
  its RSS then, without an index snapshot, building one, from one, and from a
  corrupt one (``policyd.bench.startup``).

Every measurement is bounded by ``--seconds`` (and by counts), and each
workload's process by ``--timeout``. Benchmarks print numbers; they never fail
on time. Wrong answers are counted against each workload's known expectations.

    python -m policyd.bench.harness --scale 0.01 --seconds 1

It runs past 500 lines because it is the one table of sections: each is a few
lines that run a measuring module in isolation and print its rows.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from policyd.bench import workloads
from policyd.bench.measure import load_average, machine, ratio, table, time_calls

SIDE_BY_SIDE = ("chain-10", "chain-25", "chain-45", "groups", "social")
"""Workloads run against SpiceDB too (at --peer-scale)."""

AGREEMENT_SAMPLE = 500
"""Queries whose answers policyd and each peer must agree on."""

SERVING = {
    "grpc-cold": "BatchCheck(100) and Check over gRPC, distinct queries, decision cache off "
    "and on, beside grpcio's empty-RPC ceiling",
    "grpc-mix": "repeating Checks over gRPC with 0% and 10% writes (decision cache on)",
    "grpc-writes": "single-relationship writes at the serving durability from 1 and 16 "
    "clients, alone and beside Check load, and a streamed import's peak RSS (one worker)",
    "grpc-fairness": "one worker: first subject of ListSubjects, and cheap Check latency idle, "
    "under 3 ListSubjects of the whole group and with 1,000 idle Watch streams",
}
"""The serving sections and their titles."""


# ---- isolated runs ---------------------------------------------------------------------------


def isolated(
    function: Callable[..., Any], args: tuple[Any, ...], timeout: float, isolate: bool
) -> Any:
    """Run ``function(*args)`` in a fresh process (bounded by ``timeout``), or here."""
    if not isolate:
        return function(*args)
    pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
    try:
        return pool.submit(function, *args).result(timeout=timeout)
    except FutureTimeout:
        return {"skipped": f"did not finish in {timeout:.0f}s (--timeout)"}
    except BrokenProcessPool as e:
        return {"skipped": f"the measuring process died: {e}"}
    finally:
        for process in list(getattr(pool, "_processes", {}).values()):
            if process.is_alive():
                process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)


# ---- sections --------------------------------------------------------------------------------


def inprocess_row(name: str, scale: float, seed: int, seconds: float) -> dict[str, object]:
    """One workload measured in-process (run inside an isolated process)."""
    from policyd.bench.inprocess import Limits, measure_policyd

    started = time.perf_counter()
    workload = workloads.build(name, scale, seed)
    generated = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="policyd-bench-") as tmp:
        row = measure_policyd(workload, Path(tmp), Limits(seconds=seconds), seed)
    row["gen_s"] = round(generated, 1)
    return row


def _policyd_answers(
    workload: workloads.Workload, sample: Sequence[workloads.Query]
) -> tuple[list[bool], list[set[str]]]:
    """The answers policyd gives to ``sample`` and to the first five list queries."""
    from policyd.engine import Engine
    from policyd.store.memory import MemoryStore

    engine = Engine(MemoryStore())
    engine.write_policy(workload.policy)
    engine.import_relationships(workload.relationships)
    checks = [
        engine.check(q.resource, q.permission, q.subject, context=q.context).allowed for q in sample
    ]
    context = workload.queries[0].context if workload.queries else {}
    lists = [
        {o.resource_id for o in engine.list_objects(t, p, s, context=context).objects}
        for t, p, s in workload.list_queries[:5]
    ]
    return checks, lists


def spicedb_row(
    name: str, scale: float, seed: int, seconds: float, load_seconds: float
) -> dict[str, object]:
    """Policyd and SpiceDB embedded on one workload, side by side (in an isolated process)."""
    from policyd.bench.inprocess import Limits, measure_policyd
    from policyd.bench.peers import spicedb

    workload = workloads.build(name, scale, seed)
    row: dict[str, object] = {"workload": workload.name, "rels": len(workload.relationships)}
    reason = spicedb.unavailable()
    if reason is not None:
        row["skipped"] = reason
        return row
    sample = workload.queries[:AGREEMENT_SAMPLE]
    ours, our_lists = _policyd_answers(workload, sample)

    peer = spicedb.SpiceDBPeer()
    try:
        loaded = spicedb.load(peer, workload, load_seconds)
        row["spicedb_load_s"] = loaded["load_s"]
        if not loaded["complete"]:
            row["skipped"] = f"SpiceDB loaded {loaded['rels']} relationships in {load_seconds}s"
            return row
        requests = [peer.check_request(q) for q in workload.queries]
        theirs_all: list[bool | None] = []
        timing = time_calls(
            lambda r: theirs_all.append(peer.check(r)), requests, seconds, len(requests)
        )
        theirs = [peer.check(r) for r in requests[: len(sample)]]
        bulk = [
            peer.bulk_request(workload.queries[i : i + 100])
            for i in range(0, max(1, len(workload.queries) - 99), 100)
        ]
        bulk_timing = time_calls(peer.check_bulk, bulk, min(seconds, 3.0), len(bulk))
        bulk_rate = bulk_timing.calls * 100 / bulk_timing.seconds if bulk_timing.seconds else 0
        first: list[float] = []
        full: list[float] = []
        list_disagreements = 0
        context = workload.queries[0].context if workload.queries else {}
        deadline = time.perf_counter() + seconds
        for i, (rtype, permission, subject) in enumerate(workload.list_queries[:5]):
            t0 = time.perf_counter()
            peer.lookup_resources(rtype, permission, subject, context, limit=100)
            first.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            found = set(peer.lookup_resources(rtype, permission, subject, context))
            full.append(time.perf_counter() - t0)
            if found != our_lists[i]:
                list_disagreements += 1
            if time.perf_counter() > deadline:
                break
    finally:
        peer.close()

    disagreements = [
        f"{q.resource}#{q.permission}@{q.subject}: policyd {a}, SpiceDB {b}"
        for q, a, b in zip(sample, ours, theirs, strict=True)
        if a != b
    ]
    spicedb_wrong = sum(
        1
        for q, b in zip(workload.queries, theirs_all, strict=False)
        if q.expected is not None and b != q.expected
    )
    ours_row = measure_policyd(
        workload, Path(tempfile.mkdtemp(prefix="policyd-bench-")), Limits(seconds=seconds), seed
    )
    row.update(
        {
            # Our cold numbers (decision cache off): SpiceDB answers every check afresh too.
            "policyd_check_per_s": ours_row["cold_check_per_s"],
            "spicedb_check_per_s": round(timing.per_second),
            "check_ratio": ratio(ours_row["cold_check_per_s"], timing.per_second),
            "policyd_p99_ms": ours_row["cold_p99_ms"],
            "spicedb_p99_ms": round(timing.percentile_ms(0.99), 3),
            "policyd_batch_per_s": ours_row["batch100_per_s"],
            "spicedb_bulk_per_s": round(bulk_rate),
            "batch_ratio": ratio(ours_row["batch100_per_s"], bulk_rate),
            "policyd_list_all_ms": ours_row["list_all_ms"],
            "spicedb_lookup_all_ms": round(sorted(full)[len(full) // 2] * 1000, 2)
            if full
            else None,
            "spicedb_lookup_first100_ms": (
                round(sorted(first)[len(first) // 2] * 1000, 2) if first else None
            ),
            "lookup_ratio": ratio(
                sorted(full)[len(full) // 2] * 1000 if full else None, ours_row["list_all_ms"]
            ),
            "policyd_wrong": ours_row["wrong"],
            "spicedb_wrong": spicedb_wrong,
            "disagree": len(disagreements),
            "disagree_lists": list_disagreements,
            "compared": len(sample),
        }
    )
    if disagreements:
        row["disagreements"] = disagreements[:5]
    return row


def python_rows(seed: int, seconds: float) -> list[dict[str, object]]:
    """Policyd and the Python-native peers on the ``peers`` workload (in an isolated process)."""
    from policyd.bench.inprocess import Limits, measure_policyd
    from policyd.bench.peers import python_peers

    workload = workloads.build("peers", 1.0, seed)
    queries = workload.queries
    ours, _ = _policyd_answers(workload, queries)
    model = python_peers.GroupsModel.from_workload(workload)
    rows: list[dict[str, object]] = []

    def measure(name: str, check: Callable[[workloads.Query], bool], build_s: float) -> None:
        answers = [check(q) for q in queries]
        timing = time_calls(check, queries, seconds)
        rows.append(
            {
                "peer": name,
                "workload": workload.name,
                "build_s": round(build_s, 2),
                "check_per_s": round(timing.per_second),
                "p99_ms": round(timing.percentile_ms(0.99), 3),
                "wrong": sum(1 for q, a in zip(queries, answers, strict=True) if a != q.expected),
                "disagree": sum(1 for a, b in zip(ours, answers, strict=True) if a != b),
                "compared": len(queries),
            }
        )

    for name, (module, builder) in python_peers.PEERS.items():
        reason = python_peers.unavailable(module)
        if reason is not None:
            rows.append({"peer": name, "workload": workload.name, "skipped": reason})
            continue
        started = time.perf_counter()
        check = builder(model)
        measure(name, check, time.perf_counter() - started)
    started = time.perf_counter()
    with python_peers.naive_cte(workload) as check:
        measure("SQLite recursive CTE", check, time.perf_counter() - started)

    ours_row = measure_policyd(
        workload, Path(tempfile.mkdtemp(prefix="policyd-bench-")), Limits(seconds=seconds), seed
    )
    policyd = {
        "peer": "policyd",
        "workload": workload.name,
        "build_s": ours_row["load_s"],
        "check_per_s": ours_row["cold_check_per_s"],
        "p99_ms": ours_row["cold_p99_ms"],
        "wrong": ours_row["wrong"],
        "disagree": 0,
        "compared": len(queries),
    }
    for row in rows:
        row["policyd_ratio"] = ratio(policyd["check_per_s"], row.get("check_per_s"))
    return [policyd, *rows]


def grpc_rows(
    name: str, scale: float, seed: int, seconds: float, workers: int, clients: int
) -> list[dict[str, object]]:
    """``policyd serve --workers N`` under load (in an isolated process)."""
    from policyd.bench.grpc_load import measure_grpc

    workload = workloads.build(name, scale, seed)
    with tempfile.TemporaryDirectory(prefix="policyd-bench-") as tmp:
        return measure_grpc(
            workload, Path(tmp), workers, sorted({1, clients}), seconds, h2load_requests=100_000
        )


def ingest_rows(events: int, seed: int) -> list[dict[str, object]]:
    """``policyd ingest`` from a loopback firehose: events applied per second (isolated)."""
    from policyd.bench.ingest import measure_ingest

    return measure_ingest(events, seed)


def startup_rows(name: str, scale: float, seed: int) -> list[dict[str, object]]:
    """``policyd serve`` start-up to the first Check and RSS (in an isolated process)."""
    from policyd.bench.startup import measure_startup

    workload = workloads.build(name, scale, seed)
    with tempfile.TemporaryDirectory(prefix="policyd-bench-") as tmp:
        return measure_startup(workload, Path(tmp))


def serving_rows(
    section: str, name: str, scale: float, seed: int, seconds: float, workers: int, clients: int
) -> list[dict[str, object]]:
    """One of the SERVING sections (in an isolated process); fairness serves ``name`` alone."""
    from policyd.bench import fairness, serving, write_load

    if section == "grpc-fairness":
        return fairness.fairness_rows(name, scale, seed, seconds)
    if section == "grpc-writes":
        return write_load.write_rows(name, scale, seed, seconds, workers, clients)
    rows_of = serving.cold_warm_rows if section == "grpc-cold" else serving.write_mix_rows
    return rows_of(name, scale, seed, seconds, workers, clients)


def xrpc_rows(seconds: float) -> dict[str, list[dict[str, object]]]:
    """The checkUserAccess load table and signature costs (in an isolated process)."""
    from policyd.bench.xrpc_load import measure_xrpc, verify_costs

    with tempfile.TemporaryDirectory(prefix="policyd-bench-") as tmp:
        return {"verify": verify_costs(min(seconds, 1.0)), "load": measure_xrpc(Path(tmp), seconds)}


# ---- the program -----------------------------------------------------------------------------


def counts(text: str) -> list[int]:
    """Comma-separated relationship counts; zeros and blanks are dropped."""
    try:
        found = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not comma-separated counts: {text!r}") from None
    if any(n < 0 for n in found):
        raise argparse.ArgumentTypeError(f"counts cannot be negative: {text!r}")
    return [n for n in found if n > 0]


def parser() -> argparse.ArgumentParser:
    """The harness's command line (also what ``policyd bench`` takes)."""
    p = argparse.ArgumentParser(
        prog="policyd bench", description="Benchmark policyd and its peers side by side."
    )
    p.add_argument(
        "--workloads",
        default=",".join(workloads.WORKLOADS),
        help="comma-separated: chain-N, deep-N, groups, social (default: all)",
    )
    p.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="× the issue's sizes for groups, social and deep-N (0.01 is quick)",
    )
    p.add_argument(
        "--peer-scale",
        type=float,
        default=0.01,
        help="scale of the SpiceDB side-by-side runs (default 0.01)",
    )
    p.add_argument(
        "--sections",
        default=",".join(
            ["inprocess", "spicedb", "python", "grpc", "xrpc", "ingest", *SERVING, "startup"]
        ),
        help="comma-separated: inprocess, spicedb, python, grpc, xrpc, ingest, "
        + ", ".join(SERVING)
        + ", startup, postgres (with --pg-dsn; not in the default)",
    )
    p.add_argument(
        "--pg-dsn", metavar="URL", help="the PostgreSQL of the postgres section (a test database)"
    )
    p.add_argument(
        "--pg-read-dsn", metavar="URL", help="a streaming standby of --pg-dsn, for its replica rows"
    )
    p.add_argument(
        "--pg-import", type=int, default=100_000, help="relationships per postgres import"
    )
    p.add_argument(
        "--pg-startup",
        type=counts,
        default="1000000",
        metavar="COUNTS",
        help="comma-separated relationship counts policyd serve starts on in the postgres "
        "section (default 1000000; 0 skips)",
    )
    p.add_argument(
        "--pg-delay-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="also run the postgres section's single writes through a proxy adding MS to every "
        "round trip (default 0: not run)",
    )
    p.add_argument(
        "--ingest-events",
        type=int,
        default=20_000,
        help="firehose frames replayed per ingest workload (default 20000)",
    )
    p.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    p.add_argument(
        "--spicedb-load-seconds",
        type=float,
        default=300.0,
        help="give up on a SpiceDB load after this long",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        help="give up on one workload (load and measure) after this long",
    )
    p.add_argument("--grpc-workload", default="groups", help="workload served over gRPC")
    p.add_argument("--grpc-scale", type=float, default=None, help="default: --scale")
    p.add_argument(
        "--fairness-workload", default="deep-30", help="workload of grpc-fairness (at --grpc-scale)"
    )
    p.add_argument("--workers", type=int, default=2, help="policyd serve --workers")
    p.add_argument("--startup-workload", default="groups", help="workload of the start-up section")
    p.add_argument("--startup-scale", type=float, default=None, help="default: --scale")
    p.add_argument(
        "--clients",
        type=int,
        default=None,
        help="client processes for the multi-client runs (default: cores)",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    p.add_argument(
        "--no-isolate",
        action="store_true",
        help="run workloads in this process (peak RSS then accumulates)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sections asked for, print each table as it completes; returns the exit status."""
    args = parser().parse_args(argv)
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    names = [n.strip() for n in args.workloads.split(",") if n.strip()]
    unknown = [n for n in names if not workloads.known(n)]
    if unknown:
        parser().error(f"unknown workloads {', '.join(unknown)}: chain-N, deep-N, groups, social")
    info = machine()
    isolate = not args.no_isolate
    clients = args.clients or int(str(info["cores"]))
    print(
        f"policyd bench: {info['cores']} cores, {info['memory_gib']} GiB, {info['cpu']}, "
        f"Python {info['python']}; scale {args.scale}, peer scale {args.peer_scale}, "
        f"{args.seconds}s per measurement",
        flush=True,
    )
    results: dict[str, Any] = {"machine": info, "arguments": vars(args)}

    if "inprocess" in sections:
        rows = []
        for name in names:
            row = isolated(
                inprocess_row, (name, args.scale, args.seed, args.seconds), args.timeout, isolate
            )
            rows.append({"workload": name, **row} if "skipped" in row else row)
            print(f"  {name}: done", flush=True)
        results["inprocess"] = rows
        print(f"\n== policyd in-process (SQLite, scale {args.scale})")
        print(table(rows), flush=True)

    if "spicedb" in sections:
        rows = []
        for name in [n for n in names if n in SIDE_BY_SIDE]:
            arguments = (name, args.peer_scale, args.seed, args.seconds, args.spicedb_load_seconds)
            row = isolated(spicedb_row, arguments, args.timeout, isolate)
            rows.append({"workload": name, **row} if "skipped" in row else row)
            print(f"  {name}: done", flush=True)
        results["spicedb"] = rows
        print(f"\n== policyd vs SpiceDB embedded (same run, scale {args.peer_scale})")
        columns = [
            "workload",
            "rels",
            "policyd_check_per_s",
            "spicedb_check_per_s",
            "check_ratio",
            "policyd_p99_ms",
            "spicedb_p99_ms",
            "policyd_batch_per_s",
            "spicedb_bulk_per_s",
            "batch_ratio",
            "policyd_list_all_ms",
            "spicedb_lookup_all_ms",
            "lookup_ratio",
            "policyd_wrong",
            "spicedb_wrong",
            "disagree",
            "disagree_lists",
            "skipped",
        ]
        print(table(rows, [c for c in columns if any(c in r for r in rows)]))
        for row in rows:
            for line in row.get("disagreements", []):
                print(f"  disagreement on {row['workload']}: {line}")
        print(flush=True)

    if "python" in sections:
        rows = isolated(python_rows, (args.seed, args.seconds), args.timeout, isolate)
        rows = rows if isinstance(rows, list) else [{"peer": "all", **rows}]
        results["python"] = rows
        print(
            "\n== policyd vs Python-native peers (1,000 users, 100 groups nested 5 deep, 10k docs)"
        )
        print(table(rows), flush=True)

    if "grpc" in sections:
        scale = args.scale if args.grpc_scale is None else args.grpc_scale
        served = (args.grpc_workload, scale, args.seed, args.seconds, args.workers, clients)
        rows = isolated(grpc_rows, served, args.timeout, isolate)
        rows = rows if isinstance(rows, list) else [{"rpc": "all", **rows}]
        results["grpc"] = rows
        print(f"\n== over gRPC: policyd serve --workers {args.workers} (scale {scale})")
        print(table(rows), flush=True)

    scale = args.scale if args.grpc_scale is None else args.grpc_scale
    for section, title in SERVING.items():
        if section not in sections:
            continue
        name = args.fairness_workload if section == "grpc-fairness" else args.grpc_workload
        section_arguments = (section, name, scale, args.seed, args.seconds, args.workers, clients)
        rows = isolated(serving_rows, section_arguments, args.timeout, isolate)
        rows = rows if isinstance(rows, list) else [{"section": section, **rows}]
        results[section] = rows
        print(f"\n== {title} ({name}, scale {scale}; load average {load_average()})")
        print(table(rows), flush=True)

    if "xrpc" in sections:
        measured = isolated(xrpc_rows, (args.seconds,), args.timeout, isolate)
        results["xrpc"] = measured
        print("\n== checkUserAccess over XRPC: policyd serve --xrpc-listen, one process")
        if "skipped" in measured:
            print(f"  skipped: {measured['skipped']}")
        else:
            print(table(measured["verify"]))
            print(table(measured["load"]), flush=True)

    if "ingest" in sections:
        rows = isolated(ingest_rows, (args.ingest_events, args.seed), args.timeout, isolate)
        rows = rows if isinstance(rows, list) else [{"workload": "all", **rows}]
        results["ingest"] = rows
        print("\n== policyd ingest: a loopback firehose into SQLite (synchronous FULL)")
        print(table(rows), flush=True)

    if "startup" in sections:
        scale = args.scale if args.startup_scale is None else args.startup_scale
        started = (args.startup_workload, scale, args.seed)
        rows = isolated(startup_rows, started, args.timeout, isolate)
        rows = rows if isinstance(rows, list) else [{"start": "all", **rows}]
        results["startup"] = rows
        print(
            f"\n== policyd serve: spawn to first Check answered, and RSS after it (scale {scale}; "
            "above_empty: less the RSS of a server on an empty store)"
        )
        print(table(rows), flush=True)

    if "postgres" in sections:
        if not args.pg_dsn:
            print("\n== postgres: skipped (give --pg-dsn)")
        else:
            from policyd.bench.postgres import postgres_rows

            pg_args = (
                args.pg_dsn,
                args.pg_read_dsn,
                args.pg_import,
                args.seconds,
                args.pg_startup,
                args.pg_delay_ms,
            )
            rows = isolated(postgres_rows, pg_args, args.timeout, isolate)
            rows = rows if isinstance(rows, list) else [{"measure": "all", **rows}]
            results["postgres"] = rows
            print(
                "\n== PostgreSQL: imports, single writes from two servers, propagation, a "
                "standby, serve start-up (durability: the server's own; load average "
                f"{load_average()})"
            )
            print(table(rows), flush=True)

    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
