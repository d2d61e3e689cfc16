"""Package grpc_load measures policyd over gRPC: `policyd serve --workers N` on loopback under load.

It loads a workload into a SQLite file, starts ``policyd serve`` as a
subprocess on a free 127.0.0.1 port with a bearer token, and drives it from 1
and N client processes (``PolicydClient``): single Check throughput and
p50/p99, BatchCheck(100) decisions/s, and the ceiling, an empty unary RPC (the
health Check) measured the same way. If ``h2load`` (Debian's nghttp2-client)
is installed it also drives the empty RPC and Check with it, since one Python
client process cannot saturate a server; h2load does not read gRPC status, so
the Check it sends is verified with the Python client first. Every loop is
bounded by seconds and by a count; only loopback addresses are used.

One module over 500 lines: every section shares the served process, the
verification of what it answers and the row format, and is a few short steps
of the same kind.
"""

from __future__ import annotations

import multiprocessing
import queue
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policyd.bench.measure import percentile
from policyd.bench.workloads import Query, Workload

LOOPBACK = "127.0.0.1"
BATCH_SIZE = 100


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """What each client process does: ``kind`` is check, batch or empty."""

    kind: str
    target: str
    token: str
    seconds: float
    max_requests: int
    queries: tuple[Query, ...]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True, slots=True)
class Served:
    """A running ``policyd serve``: its address, process id and metrics URL (if asked for)."""

    target: str
    pid: int
    metrics_url: str | None


@contextmanager
def serve(db: Path, workers: int, token: str, startup_seconds: float = 300.0) -> Iterator[str]:
    """Run ``policyd serve`` on ``db`` until the block ends; yields ``host:port``."""
    with serve_process(db, workers, token, startup_seconds=startup_seconds) as served:
        yield served.target


@contextmanager
def serve_process(
    db: Path | str,
    workers: int,
    token: str,
    options: Sequence[str] = (),
    metrics: bool = False,
    startup_seconds: float = 300.0,
) -> Iterator[Served]:
    """Run ``policyd serve`` on ``db`` (a SQLite file or a store URL) until the block ends.

    It runs with extra ``options`` and yields once every worker has printed
    that it listens. With ``metrics`` the server serves /metrics on a free
    loopback port.

    Raises:
        RuntimeError: the server exited or did not come up within ``startup_seconds``.
    """
    target = f"{LOOPBACK}:{free_port()}"
    command = [
        sys.executable,
        "-m",
        "policyd.cli",
        "serve",
        "--listen",
        target,
        "--db",
        str(db),
        "--token",
        token,
        "--workers",
        str(workers),
        "--metrics-listen",
        f"{LOOPBACK}:0" if metrics else "off",
        "--grace",
        "1",
        "--log-level",
        "warning",
        *options,
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    lines: queue.Queue[str] = queue.Queue()
    output: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        listening = 0
        metrics_url = None
        deadline = time.monotonic() + startup_seconds
        while listening < workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"policyd serve did not start in {startup_seconds}s")
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"policyd serve exited with {process.returncode}: {''.join(output)}"
                    ) from None
                continue
            output.append(line)
            if line.startswith("policyd metrics on ") and metrics_url is None:
                metrics_url = line.split()[-1]
            # Each worker prints "policyd listening on HOST:PORT"; the supervisor adds
            # "with N workers" to its own line.
            if re.fullmatch(r"policyd listening on \S+\s*", line):
                listening += 1
        yield Served(target, process.pid, metrics_url)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _client_loop(spec: LoadSpec, barrier: Any, results: Any) -> None:
    """One client process: warm up, wait for the others, then call until time or count."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from policyd.client import PolicydClient
    from policyd.decisions import CheckRequest

    client = PolicydClient(spec.target, token=spec.token, timeout=30, retries=2)
    channel = grpc.insecure_channel(spec.target)
    health = health_pb2_grpc.HealthStub(channel)
    queries = spec.queries
    batches = [
        [CheckRequest(q.resource, q.permission, q.subject, q.context) for q in queries[i : i + 100]]
        for i in range(0, max(1, len(queries) - BATCH_SIZE + 1), BATCH_SIZE)
    ]
    expected_batches = [
        [q.expected for q in queries[i : i + BATCH_SIZE]]
        for i in range(0, max(1, len(queries) - BATCH_SIZE + 1), BATCH_SIZE)
    ]
    wrong = 0
    decisions = 0

    def call(i: int) -> None:
        nonlocal wrong, decisions
        if spec.kind == "empty":
            health.Check(health_pb2.HealthCheckRequest(), timeout=30)
            decisions += 1
        elif spec.kind == "check":
            q = queries[i % len(queries)]
            allowed = client.check(q.resource, q.permission, q.subject, context=q.context).allowed
            decisions += 1
            if q.expected is not None and allowed != q.expected:
                wrong += 1
        else:
            k = i % len(batches)
            answers = client.check_many(batches[k])
            decisions += len(answers)
            wrong += sum(
                1
                for a, e in zip(answers, expected_batches[k], strict=True)
                if e is not None and a.allowed != e
            )

    for i in range(20):
        call(i)
    wrong = decisions = 0
    barrier.wait(timeout=120)
    latencies: list[float] = []
    clock = time.perf_counter
    started = clock()
    deadline = started + spec.seconds
    i = 0
    while i < spec.max_requests and clock() < deadline:
        t0 = clock()
        call(i)
        latencies.append(clock() - t0)
        i += 1
    elapsed = clock() - started
    client.close()
    channel.close()
    results.put(
        {
            "calls": i,
            "decisions": decisions,
            "wrong": wrong,
            "elapsed": elapsed,
            "latencies": latencies,
        }
    )


def gather(
    function: Callable[..., None], specs: Sequence[Any], seconds: float
) -> list[dict[str, Any]]:
    """Run ``function(spec, barrier, results)`` in a spawned process per spec; their results.

    Each process gets ready, waits at the barrier with the others and this
    one, measures for about ``seconds`` and puts one dict on ``results``.
    """
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(specs) + 1)
    results = context.Queue()
    children = [
        context.Process(target=function, args=(spec, barrier, results), daemon=True)
        for spec in specs
    ]
    for child in children:
        child.start()
    collected: list[dict[str, Any]] = []
    try:
        barrier.wait(timeout=180)
        for _ in children:
            collected.append(results.get(timeout=seconds + 180))
    finally:
        for child in children:
            child.join(timeout=10)
            if child.is_alive():
                child.terminate()
    return collected


def run_clients(spec: LoadSpec, processes: int) -> dict[str, object]:
    """Drive the server from ``processes`` client processes at once; aggregate their numbers."""
    collected = gather(_client_loop, [spec] * processes, spec.seconds)
    latencies = [x for r in collected for x in r["latencies"]]
    elapsed = max(r["elapsed"] for r in collected)
    decisions = sum(r["decisions"] for r in collected)
    return {
        "calls": sum(r["calls"] for r in collected),
        "per_s": round(decisions / elapsed) if elapsed else None,
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 3),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
        "wrong": sum(r["wrong"] for r in collected),
    }


# ---- h2load ----------------------------------------------------------------------------------


def _grpc_frame(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(4, "big") + message


H2LOAD_MISSING = "h2load is not installed (apt-get install nghttp2-client)"


def h2load_command(
    target: str,
    path: str,
    body: Path,
    token: str,
    requests: int,
    connections: int,
    streams: int = 10,
    duration: float | None = None,
) -> list[str]:
    """The h2load command sending ``body`` (a gRPC frame in a file) to one method.

    ``duration`` seconds, when given, bound the run instead of ``requests``.

    Raises:
        FileNotFoundError: h2load is not installed.
    """
    executable = shutil.which("h2load")
    if executable is None:
        raise FileNotFoundError(H2LOAD_MISSING)
    bound = ["-D", f"{duration:g}"] if duration is not None else ["-n", str(requests)]
    return [
        executable,
        *bound,
        "-c",
        str(connections),
        "-m",
        str(streams),
        "-t",
        "1",
        "-d",
        str(body),
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "-H",
        f"authorization: Bearer {token}",
        f"http://{target}{path}",
    ]


def write_frame(message: bytes, file: Any) -> None:
    """Write ``message`` as one gRPC frame to an open binary file, for h2load's ``-d``."""
    file.write(_grpc_frame(message))
    file.flush()


def h2load(
    target: str,
    path: str,
    message: bytes,
    token: str,
    requests: int,
    connections: int,
    streams: int = 10,
    timeout: float = 120.0,
    duration: float | None = None,
) -> dict[str, object]:
    """Drive one gRPC method with h2load; requests/s and mean latency as h2load reports them."""
    if shutil.which("h2load") is None:
        return {"skipped": H2LOAD_MISSING}
    with tempfile.NamedTemporaryFile(suffix=".grpc") as body:
        write_frame(message, body)
        command = h2load_command(
            target, path, Path(body.name), token, requests, connections, streams, duration
        )
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            return {"skipped": f"h2load did not finish in {timeout}s"}
    text = done.stdout
    rate = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", text)
    succeeded = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", text)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", text)
    if rate is None or succeeded is None:
        return {"skipped": f"h2load output not understood: {text[-300:]} {done.stderr[-300:]}"}
    return {
        "calls": int(succeeded.group(1)),
        "per_s": round(float(rate.group(3))),
        "mean_ms": _ms(mean.group(1)) if mean else None,
    }


def _ms(value: str) -> float | None:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", value)
    if match is None:
        return None
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
    return round(float(match.group(1)) * scale, 3)


def _check_fields(q: Query) -> dict[str, Any]:
    """The fields a Check and a BatchCheck item share, as protobuf values."""
    from google.protobuf import struct_pb2

    from policyd.api.gen import core_pb2

    context = struct_pb2.Struct()
    values: dict[str, Any] = dict(q.context)
    context.update(values)
    return {
        "resource": core_pb2.ObjectReference(object_type=q.resource.type, object_id=q.resource.id),
        "permission": q.permission,
        "subject": core_pb2.SubjectReference(
            object=core_pb2.ObjectReference(object_type=q.subject.type, object_id=q.subject.id),
            optional_relation=q.subject.relation or "",
        ),
        "context": context,
    }


def check_message(q: Query) -> bytes:
    """A serialized CheckRequest for ``q``."""
    from policyd.api.gen import permission_service_pb2

    return permission_service_pb2.CheckRequest(**_check_fields(q)).SerializeToString()


def permission_method(method: str = "Check") -> str:
    """The full gRPC path of a PermissionService method."""
    from policyd.api.gen import permission_service_pb2

    service = permission_service_pb2.DESCRIPTOR.services_by_name["PermissionService"]
    return f"/{service.full_name}/{method}"


# ---- the whole measurement -------------------------------------------------------------------


def load_database(workload: Workload, path: Path) -> None:
    """Write the workload's policy and relationships into a new SQLite file at ``path``."""
    from policyd.engine import Engine
    from policyd.store.sqlite import SqliteStore

    store = SqliteStore(path, synchronous="OFF")
    try:
        engine = Engine(store, index=False)
        engine.write_policy(workload.policy)
        engine.import_relationships(workload.relationships)
    finally:
        store.close()


def measure_grpc(
    workload: Workload,
    workdir: Path,
    workers: int,
    clients: Sequence[int],
    seconds: float,
    max_requests: int = 200_000,
    h2load_requests: int = 100_000,
) -> list[dict[str, object]]:
    """Serve ``workload`` with ``workers`` processes and measure it; one row per measurement."""
    db = workdir / f"grpc-{workload.name}.db"
    load_database(workload, db)
    token = secrets.token_hex(16)
    queries = tuple(workload.queries)
    rows: list[dict[str, object]] = []
    base: dict[str, object] = {
        "workload": workload.name,
        "rels": len(workload.relationships),
        "workers": workers,
    }
    with serve(db, workers, token) as target:
        for kind in ("empty", "check", "batch"):
            for n in clients:
                spec = LoadSpec(kind, target, token, seconds, max_requests, queries)
                row = {**base, "rpc": _RPC_NAMES[kind], "driver": f"python x{n}"}
                row.update(run_clients(spec, n))
                rows.append(row)
        if shutil.which("h2load") is None:
            rows.append(
                {
                    **base,
                    "rpc": "-",
                    "driver": "h2load",
                    "skipped": H2LOAD_MISSING,
                }
            )
            return rows
        from grpc_health.v1 import health_pb2

        empty = health_pb2.HealthCheckRequest().SerializeToString()
        connections = max(2, 2 * workers)
        row = {**base, "rpc": _RPC_NAMES["empty"], "driver": f"h2load c{connections}"}
        row.update(
            h2load(
                target, "/grpc.health.v1.Health/Check", empty, token, h2load_requests, connections
            )
        )
        rows.append(row)
        # h2load reads no gRPC status: verify that this exact request answers correctly first.
        q = next((q for q in queries if q.expected), queries[0])
        verified = _verify_with_client(target, token, q)
        row = {**base, "rpc": _RPC_NAMES["check"], "driver": f"h2load c{connections}"}
        row.update(
            h2load(
                target, permission_method(), check_message(q), token, h2load_requests, connections
            )
        )
        row["wrong"] = 0 if verified else 1
        rows.append(row)
        # BatchCheck(100) from h2load: the same 100 questions each time, verified first.
        batch = list(queries[:100])
        wrong = _verify_batch_with_client(target, token, batch)
        row = {**base, "rpc": _RPC_NAMES["batch"], "driver": f"h2load c{connections}"}
        row.update(
            h2load(
                target,
                permission_method("BatchCheck"),
                batch_message(batch),
                token,
                max(1, h2load_requests // 20),
                connections,
            )
        )
        if isinstance(row.get("per_s"), int):
            row["decisions_per_s"] = row["per_s"] * len(batch)  # type: ignore[operator]
        row["wrong"] = wrong
        rows.append(row)
    return rows


def _verify_batch_with_client(target: str, token: str, batch: list[Query]) -> int:
    from policyd.client import PolicydClient
    from policyd.decisions import CheckRequest

    with PolicydClient(target, token=token, timeout=30) as client:
        answers = client.check_many(
            [CheckRequest(q.resource, q.permission, q.subject, q.context) for q in batch]
        )
    return sum(
        1
        for a, q in zip(answers, batch, strict=True)
        if q.expected is not None and a.allowed != q.expected
    )


def batch_message(batch: list[Query]) -> bytes:
    """A serialized BatchCheckRequest for ``batch``."""
    from policyd.api.gen import permission_service_pb2

    request = permission_service_pb2.BatchCheckRequest(
        items=[permission_service_pb2.BatchCheckItem(**_check_fields(q)) for q in batch]
    )
    return request.SerializeToString()


def _verify_with_client(target: str, token: str, q: Query) -> bool:
    from policyd.client import PolicydClient

    with PolicydClient(target, token=token, timeout=30) as client:
        allowed = client.check(q.resource, q.permission, q.subject, context=q.context).allowed
    return q.expected is None or allowed == q.expected


_RPC_NAMES = {"empty": "empty (health)", "check": "Check", "batch": "BatchCheck(100)"}
