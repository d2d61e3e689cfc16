"""Package driver loads a gRPC server from client processes sending requests serialized in advance.

``PolicydClient`` turns domain values into protobuf and back on every call,
which on these 2-core machines costs the load generator about as much CPU as
the server spends answering a Check, and that CPU comes out of the server's
share. The driver instead sends request bodies serialized before the clock
starts, as bytes over grpc.aio channels with several calls in flight per
process, and parses only the answers it verifies. Each client process gets
its own slice of distinct requests, each sent once (a run that uses them
up ends early and says so); a working set (``repeat``) is sent round and
round by every connection, each from its own offset. Each process opens
``channels`` connections of its own, since the workers of ``policyd serve
--workers N`` share the port by SO_REUSEPORT, which gives each connection
to one worker by its address hash: several connections per process spread
the load (one per process would leave a worker idle half the time with two
processes), and as every connection walks the whole working set, every
worker's own decision cache sees all of it. A ``Mix`` interleaves kinds by weight
(9 checks to 1 write is a 10% write mix). Latency is measured per call from
the client's side, so it includes the client's own queueing when its process
is busy; every loop is bounded by seconds and by a count.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from policyd.bench.grpc_load import BATCH_SIZE, batch_message, check_message, permission_method
from policyd.bench.measure import percentile
from policyd.bench.workloads import Query
from policyd.relationship import Relationship

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
WRITE = "/policyd.v1.RelationshipService/WriteRelationships"
ALLOWED, DENIED, UNKNOWN = "1", "0", "?"


@dataclass(frozen=True, slots=True)
class Calls:
    """One kind of call: its method, request bodies and the answers they must get.

    ``expected`` holds one string per body with a character per decision
    (``1`` allowed, ``0`` denied, ``?`` not known); empty means unverified.
    """

    kind: str
    method: str
    bodies: tuple[bytes, ...]
    expected: tuple[str, ...] = ()
    decisions_per_call: int = 0
    repeat: bool = False

    def part(self, index: int, parts: int) -> Calls:
        """What client process ``index`` of ``parts`` sends: a slice, or all of a working set."""
        if self.repeat:
            return self
        bodies = self.bodies[index::parts] or self.bodies[:1]
        expected = self.expected[index::parts] or self.expected[:1]
        return replace(self, bodies=bodies, expected=expected)


@dataclass(frozen=True, slots=True)
class Mix:
    """Kinds of calls sent in a repeating pattern by weight: ((checks, 9), (writes, 1))."""

    weighted: tuple[tuple[Calls, int], ...]

    def pattern(self) -> list[int]:
        """Which kind each call in one round of the pattern is, by index into ``weighted``."""
        return [k for k, (_, weight) in enumerate(self.weighted) for _ in range(weight)]


@dataclass(frozen=True, slots=True)
class Load:
    """Where and how hard to drive: processes × calls in flight, bounded by seconds and count."""

    target: str
    token: str
    seconds: float
    processes: int = 1
    in_flight: int = 1
    max_calls: int = 10_000_000
    """Calls per process at most."""
    channels: int = 4
    """Connections per process."""

    def describe(self) -> str:
        """The driver as a row names it: processes × calls in flight, and connections."""
        return f"python {self.processes}×{self.in_flight} ({self.processes * self.channels} conns)"


class Window(Protocol):
    """Observes the server while the clients call it: started once all are connected."""

    def start(self) -> None:
        """Called when every client process has connected, just before they start calling."""

    def stop(self) -> None:
        """Called when every client process has reported."""


def one(calls: Calls) -> Mix:
    """A mix of one kind of call."""
    return Mix(((calls, 1),))


def _expected(queries: Sequence[Query]) -> str:
    return "".join(
        UNKNOWN if q.expected is None else ALLOWED if q.expected else DENIED for q in queries
    )


def check_calls(queries: Sequence[Query], repeat: bool = False) -> Calls:
    """One Check per query."""
    return Calls(
        "Check",
        permission_method("Check"),
        tuple(check_message(q) for q in queries),
        tuple(_expected([q]) for q in queries),
        1,
        repeat,
    )


def batch_calls(queries: Sequence[Query], repeat: bool = False, size: int = BATCH_SIZE) -> Calls:
    """BatchCheck requests of ``size`` consecutive queries (a short tail is dropped)."""
    batches = [list(queries[i : i + size]) for i in range(0, len(queries) - size + 1, size)]
    return Calls(
        f"BatchCheck({size})",
        permission_method("BatchCheck"),
        tuple(batch_message(b) for b in batches),
        tuple(_expected(b) for b in batches),
        size,
        repeat,
    )


def write_calls(relationships: Sequence[Relationship]) -> Calls:
    """One WriteRelationships per relationship, a TOUCH of that one alone."""
    from policyd.api.gen import core_pb2, relationship_service_pb2
    from policyd.client import relationship_message

    touch = core_pb2.RelationshipUpdate.OPERATION_TOUCH
    bodies = tuple(
        relationship_service_pb2.WriteRelationshipsRequest(
            updates=[
                core_pb2.RelationshipUpdate(operation=touch, relationship=relationship_message(r))
            ]
        ).SerializeToString()
        for r in relationships
    )
    return Calls("write", WRITE, bodies)


def empty_calls(method: str = HEALTH_CHECK, kind: str = "empty (health)") -> Calls:
    """An RPC with an empty request, repeated: the health Check unless told another method."""
    return Calls(kind, method, (b"",), repeat=True)


def _wrong(method: str, response: bytes, expected: str) -> int:
    """How many of a response's decisions differ from the expected ones."""
    from policyd.api.gen import permission_service_pb2 as pb

    allowed = pb.PERMISSIONSHIP_HAS_PERMISSION
    if method.endswith("/Check"):
        answers = [pb.CheckResponse.FromString(response).permissionship]
    else:
        answers = [r.permissionship for r in pb.BatchCheckResponse.FromString(response).results]
    if len(answers) != len(expected):
        return len(expected)
    return sum(
        1
        for answer, want in zip(answers, expected, strict=True)
        if want != UNKNOWN and (answer == allowed) != (want == ALLOWED)
    )


async def _drive(load: Load, mix: Mix, part: int, barrier: Any) -> dict[str, Any]:
    """One client process: connect, wait for the others, call until time, count or data run out."""
    import grpc

    own_connection = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.insecure_channel(load.target, options=own_connection) for _ in range(load.channels)
    ]
    for channel in channels:
        await channel.channel_ready()
    kinds = [calls for calls, _ in mix.weighted]
    stubs = [
        [channel.unary_unary(calls.method, None, None) for calls in kinds] for channel in channels
    ]
    metadata = (("authorization", f"Bearer {load.token}"),)
    pattern = mix.pattern()
    sent = 0
    used = [0] * len(kinds)
    """Distinct requests of each kind this process has sent."""
    connections = load.processes * load.channels
    cursors = [
        [(part * load.channels + c) * len(k.bodies) // connections for c in range(load.channels)]
        for k in kinds
    ]
    """Where each connection is in each working set."""
    exhausted = False
    latencies: list[list[float]] = [[] for _ in kinds]
    wrong = [0] * len(kinds)
    errors: list[Counter[str]] = [Counter() for _ in kinds]
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, barrier.wait, 120)  # connected
    await loop.run_in_executor(None, barrier.wait, 120)  # go
    clock = time.perf_counter
    started = clock()
    deadline = started + load.seconds

    async def caller(number: int) -> None:
        nonlocal sent, exhausted
        while sent < load.max_calls and not exhausted and clock() < deadline:
            kind = pattern[sent % len(pattern)]
            sent += 1
            calls = kinds[kind]
            channel = number % len(channels)
            if calls.repeat:
                i = cursors[kind][channel] % len(calls.bodies)
                cursors[kind][channel] += 1
            else:
                i = used[kind]
                used[kind] += 1
                if i >= len(calls.bodies):
                    exhausted = True
                    return
            t0 = clock()
            try:
                response = await stubs[channel][kind](
                    calls.bodies[i], metadata=metadata, timeout=60
                )
            except grpc.aio.AioRpcError as e:
                errors[kind][e.code().name] += 1
                continue
            latencies[kind].append(clock() - t0)
            if calls.expected:
                wrong[kind] += _wrong(calls.method, response, calls.expected[i])

    await asyncio.gather(*(caller(n) for n in range(load.in_flight)))
    elapsed = clock() - started
    for channel in channels:
        await channel.close(None)
    return {
        "elapsed": elapsed,
        "exhausted": exhausted,
        "latencies": latencies,
        "wrong": wrong,
        "errors": [dict(e) for e in errors],
    }


def _client(load: Load, mix: Mix, part: int, barrier: Any, results: Any) -> None:
    """The body of one client process."""
    results.put(asyncio.run(_drive(load, mix, part, barrier)))


def drive(load: Load, mix: Mix, window: Window | None = None) -> list[dict[str, object]]:
    """Drive the server from ``load.processes`` client processes; one row per kind of call.

    Each row has the calls answered, calls (and decisions) per second over the
    run, p50/p99/max latency, wrong answers and failed calls by status code.
    ``window`` is started once every client has connected and stopped when all
    have reported.
    """
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(load.processes + 1)
    results = context.Queue()
    children = []
    for p in range(load.processes):
        part = Mix(tuple((c.part(p, load.processes), w) for c, w in mix.weighted))
        children.append(
            context.Process(target=_client, args=(load, part, p, barrier, results), daemon=True)
        )
    for child in children:
        child.start()
    try:
        barrier.wait(timeout=180)
        if window is not None:
            window.start()
        barrier.wait(timeout=180)
        collected = [results.get(timeout=load.seconds + 180) for _ in children]
        if window is not None:
            window.stop()
    finally:
        for child in children:
            child.join(timeout=10)
            if child.is_alive():
                child.terminate()
    elapsed = max(r["elapsed"] for r in collected)
    rows: list[dict[str, object]] = []
    for k, (calls, _) in enumerate(mix.weighted):
        latencies = [x for r in collected for x in r["latencies"][k]]
        errors: Counter[str] = Counter()
        for r in collected:
            errors.update(r["errors"][k])
        row: dict[str, object] = {
            "driver": load.describe(),
            "rpc": calls.kind,
            "calls": len(latencies),
            "per_s": round(len(latencies) / elapsed) if elapsed else None,
        }
        if calls.decisions_per_call > 1:
            row["decisions_per_s"] = round(len(latencies) * calls.decisions_per_call / elapsed)
        row.update(
            {
                "p50_ms": round(percentile(latencies, 0.5) * 1000, 3),
                "p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
                "max_ms": round(max(latencies, default=0.0) * 1000, 3),
                "wrong": sum(r["wrong"][k] for r in collected),
                "errors": ", ".join(f"{code} {n}" for code, n in sorted(errors.items())) or None,
            }
        )
        if any(r["exhausted"] for r in collected):
            row["note"] = f"distinct requests used up after {elapsed:.1f}s"
        rows.append(row)
    return rows
