"""Package startup measures ``policyd serve`` from spawn to its first answered Check, and its RSS.

It loads a workload into a SQLite file and starts one server process four
times: with no index snapshot (every relationship read from the store, as
before snapshots), with a snapshot path but no file yet (read from the
store, then the snapshot written), and from that snapshot. For each it
reports the seconds from spawning the process to the first Check answered
over gRPC on loopback (the answer verified), and the server's RSS
(``VmRSS`` of its process) right after that Check, in total and less the RSS
of the same server on an empty store, per relationship. A fourth start from
a snapshot corrupted on purpose must rebuild and answer the same.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from policyd.bench.grpc_load import load_database, serve_process
from policyd.bench.workloads import GROUPS_POLICY, Query, Workload
from policyd.client import PolicydClient
from policyd.errors import UnavailableError
from policyd.relationship import ObjectRef, SubjectRef

FIRST_CHECK_SECONDS = 600.0
"""Give up on a server that has not answered a Check this long after it listens."""


def server_rss(pid: int) -> int:
    """The resident set size of process ``pid``, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"process {pid} has no VmRSS")


def first_check(target: str, token: str, query: Query) -> bool:
    """The first Check a server answers (retried while it is unavailable)."""
    deadline = time.monotonic() + FIRST_CHECK_SECONDS
    with PolicydClient(target, token=token, timeout=60) as client:
        while True:
            try:
                return client.check(
                    query.resource, query.permission, query.subject, context=query.context
                ).allowed
            except UnavailableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


@dataclass(frozen=True, slots=True)
class Start:
    """One start of a server: seconds to its first Check, its RSS then, and wrong answers."""

    first_check_s: float
    rss: int
    wrong: int


def start_once(db: Path | str, snapshot: str, query: Query, *more: Query) -> Start:
    """Start ``policyd serve`` on ``db`` (a file or store URL), time it to the first Check.

    The queries in ``more`` are asked after the RSS is read, so that it is
    the RSS after one Check whatever they are; every answer is verified.
    """
    token = secrets.token_hex(16)
    started = time.perf_counter()
    options = ["--index-snapshot", snapshot]
    with serve_process(db, 1, token, options, startup_seconds=FIRST_CHECK_SECONDS) as served:
        answers = [first_check(served.target, token, query)]
        seconds = time.perf_counter() - started
        rss = server_rss(served.pid)
        answers += [first_check(served.target, token, q) for q in more]
    wrong = sum(
        q.expected is not None and a != q.expected
        for q, a in zip((query, *more), answers, strict=True)
    )
    return Start(seconds, rss, wrong)


def start_columns(start: Start, count: int, baseline: int, snapshot: Path) -> dict[str, object]:
    """A start's columns in a table: ``baseline`` is the RSS on an empty store, ``count`` rels."""
    return {
        "first_check_s": round(start.first_check_s, 2),
        "rss_mib": round(start.rss / 2**20),
        "rss_b_per_rel": round(start.rss / max(count, 1), 1),
        "above_empty_b_per_rel": round((start.rss - baseline) / max(count, 1), 1),
        "snapshot_mib": round(snapshot.stat().st_size / 2**20, 1) if snapshot.exists() else 0,
        "wrong": start.wrong,
    }


EMPTY_QUERY = Query(ObjectRef("document", "d0"), "view", SubjectRef("user", "u0"), False)


def measure_startup(workload: Workload, workdir: Path) -> list[dict[str, object]]:
    """The start-up table for ``workload``: one row per way of starting.

    The last start is from the snapshot with one byte flipped: it must be
    rebuilt from the store, and answer the same.
    """
    empty = workdir / "empty.db"
    load_database(Workload("empty", GROUPS_POLICY, [], []), empty)
    baseline = start_once(empty, "off", EMPTY_QUERY).rss
    db = workdir / f"startup-{workload.name}.db"
    load_database(workload, db)
    count = len(workload.relationships)
    snapshot = workdir / "startup.index"
    starts = [
        ("no snapshot", "off"),
        ("snapshot path, no file: build, save", str(snapshot)),
        ("from the snapshot", str(snapshot)),
        ("from a corrupt snapshot: rebuild", str(snapshot)),
    ]
    rows: list[dict[str, object]] = []
    for name, path in starts:
        if name.startswith("from a corrupt"):
            data = bytearray(snapshot.read_bytes())
            data[len(data) // 2] ^= 0x01
            snapshot.write_bytes(bytes(data))
        start = start_once(db, path, workload.queries[0])
        rows.append(
            {
                "workload": workload.name,
                "rels": count,
                "start": name,
                **start_columns(start, count, baseline, snapshot),
            }
        )
    return rows
