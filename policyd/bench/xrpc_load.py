"""Package xrpc_load measures checkUserAccess: verified requests/s and latency over loopback HTTP.

It starts ``policyd serve --xrpc-listen`` (SQLite, ``policies/spaces.policy``,
a space of 1,000 members) as a subprocess, with a loopback PLC stand-in and
did:web host serving the authority's DID document, and drives it from one
client process holding ``connections`` keep-alive connections, one request in
flight on each (a closed loop). Every request carries its own service-auth
JWT, minted before the clock starts, so the server verifies a signature and
remembers a ``jti`` each time; DID documents are cached after the warm-up, and
the server logs its audit line for every decision (to a file).
Half the users asked about are members. It reports requests/s, p50 and p99
latency as the client sees them, and the server's CPU time per request read
from /proc, which the client's own CPU use does not distort.

It also times one signature verification with each library that could do it
(``policyd.atproto.keys`` says why ES256K goes to coincurve). Every loop is
bounded by seconds and by a count; only 127.0.0.1 is used.
"""

from __future__ import annotations

import base64
import os
import queue
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path
from typing import Any
from urllib.parse import quote

from policyd.atproto.keys import ES256, ES256K, K256Key, Keypair
from policyd.atproto.spaces import METHOD
from policyd.atproto.testing import DirectoryServer, Identity, random_plc_did
from policyd.bench.measure import percentile, time_calls

APP = "did:plc:65zuidf2qgvu3noukzn2obpi#policyd"
MEMBERS = 1_000
POLICY = Path(__file__).resolve().parents[2] / "policies" / "spaces.policy"
WARMUP = 200


def verify_costs(seconds: float) -> list[dict[str, object]]:
    """Microseconds per verification of one ES256K or ES256 service-auth JWT, by library."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    def signed(identity: Identity) -> list[tuple[bytes, bytes]]:
        tokens = (identity.token(APP, METHOD).rpartition(".") for _ in range(200))
        return [(m.encode(), base64.urlsafe_b64decode(s + "==")) for m, _, s in tokens]

    def cost(verify: Callable[[tuple[bytes, bytes]], object], items: Sequence[Any]) -> float:
        timing = time_calls(verify, items, seconds, 100_000)
        return _us(timing.seconds, timing.calls)

    k256, p256 = Identity(random_plc_did()), Identity(random_plc_did(), Keypair(ES256))
    k256_items, p256_items = signed(k256), signed(p256)
    assert isinstance(k256.keypair.public, K256Key)
    point = k256.keypair.public.key.format(compressed=True)
    openssl = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), point)

    def verify_openssl(item: tuple[bytes, bytes]) -> None:
        message, signature = item
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        openssl.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))

    return [
        {
            "alg": ES256K,
            "library": "coincurve (libsecp256k1)",
            "us_per_verify": cost(lambda i: k256.keypair.public.verify(*i), k256_items),
        },
        {
            "alg": ES256K,
            "library": "cryptography (OpenSSL), not used",
            "us_per_verify": cost(verify_openssl, k256_items),
        },
        {
            "alg": ES256,
            "library": "cryptography (OpenSSL)",
            "us_per_verify": cost(lambda i: p256.keypair.public.verify(*i), p256_items),
        },
    ]


def _us(seconds: float, calls: int) -> float:
    return round(seconds / calls * 1e6, 1) if calls else 0.0


@contextmanager
def serve_xrpc(tmp: Path, directory: DirectoryServer) -> Iterator[tuple[str, str, int]]:
    """Run ``policyd serve`` with XRPC until the block ends; yields (xrpc, grpc, pid)."""
    command = [
        sys.executable, "-m", "policyd.cli", "serve",
        "--listen", "127.0.0.1:0", "--metrics-listen", "off", "--insecure-no-auth",
        "--db", str(tmp / "spaces.db"), "--policy", str(POLICY), "--grace", "1",
        "--log-level", "info",
        "--xrpc-listen", "127.0.0.1:0", "--service-did", APP,
        "--plc-url", directory.url, "--insecure-loopback-http",
    ]  # fmt: skip
    log = (tmp / "serve.log").open("w")  # the audit lines are written, as in production
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, cwd=tmp)
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    xrpc = grpc = ""
    try:
        deadline = time.monotonic() + 120
        while not grpc:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("policyd serve did not start")
            try:
                line = lines.get(timeout=0.5).strip()
            except queue.Empty:
                continue
            if line.startswith("policyd xrpc on "):
                xrpc = line.split("//")[-1]
            elif line.startswith("policyd listening on "):
                grpc = line.split()[3]
        yield xrpc, grpc, process.pid
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def _requests(identity: Identity, space: str, count: int) -> list[bytes]:
    """``count`` checkUserAccess requests, each with its own token; half ask about members."""
    target = f"/xrpc/{METHOD}?space={quote(space, safe='')}"
    return [
        (
            f"GET {target}&user={quote(_user(i % (2 * MEMBERS)), safe='')} HTTP/1.1\r\n"
            f"host: 127.0.0.1\r\nauthorization: Bearer {identity.token(APP, METHOD)}\r\n"
            "accept: application/json\r\nconnection: keep-alive\r\n\r\n"
        ).encode()
        for i in range(count)
    ]


def _user(i: int) -> str:
    return f"did:plc:user{i:020d}"


def _members_among(count: int) -> int:
    """How many of the first ``count`` requests ask about a member."""
    rounds, rest = divmod(count, 2 * MEMBERS)
    return rounds * MEMBERS + min(rest, MEMBERS)


def drive(
    address: str, requests: Sequence[bytes], connections: int, seconds: float
) -> dict[str, Any]:
    """Send ``requests`` over ``connections`` keep-alive connections, one in flight each."""
    host, _, port = address.rpartition(":")
    selector = selectors.DefaultSelector()
    pending: dict[socket.socket, list[Any]] = {}
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    authorized = 0
    sent = 0
    clock = time.perf_counter
    started = clock()
    deadline = started + seconds
    for _ in range(min(connections, len(requests))):
        connection = socket.create_connection((host, int(port)))
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.sendall(requests[sent])
        pending[connection] = [b"", clock()]
        sent += 1
        selector.register(connection, selectors.EVENT_READ)
    while pending:
        for key, _ in selector.select(timeout=30):
            ready = key.fileobj
            assert isinstance(ready, socket.socket)  # what was registered
            connection = ready
            state = pending[connection]
            chunk = connection.recv(65536)
            if not chunk:
                raise RuntimeError("the server closed a connection")
            state[0] += chunk
            head, found, rest = state[0].partition(b"\r\n\r\n")
            if not found:
                continue
            lowered = head.lower()
            at = lowered.index(b"content-length:") + 15
            length = int(lowered[at : lowered.index(b"\r\n", at)])
            if len(rest) < length:
                continue
            now = clock()
            latencies.append(now - state[1])
            status = int(head[9:12])
            statuses[status] = statuses.get(status, 0) + 1
            authorized += b"true" in rest[:length]
            state[0] = rest[length:]
            if sent < len(requests) and now < deadline:
                connection.sendall(requests[sent])
                state[1] = now
                sent += 1
            else:
                selector.unregister(connection)
                connection.close()
                del pending[connection]
    return {
        "elapsed": clock() - started,
        "latencies": latencies,
        "statuses": statuses,
        "authorized": authorized,
    }


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_xrpc(
    tmp: Path, seconds: float, connections: Sequence[int] = (1, 4, 16)
) -> list[dict[str, object]]:
    """CheckUserAccess under load, per authority key type and connection count."""
    from policyd.client import PolicydClient
    from policyd.relationship import parse_relationship

    directory = DirectoryServer()
    plc = Identity(random_plc_did(), Keypair(ES256K))
    web = Identity(directory.web_did, Keypair(ES256))
    directory.publish(plc)
    directory.publish(web)
    spaces = {
        identity.did: f"at://{identity.did}/space/com.example.group/bench"
        for identity in (plc, web)
    }
    rows: list[dict[str, object]] = []
    pool = get_context("spawn").Pool(1)
    try:
        with serve_xrpc(tmp, directory) as (xrpc, grpc, pid):
            with PolicydClient(grpc, timeout=60) as client:
                client.import_relationships(
                    parse_relationship(f"space:{space}#member@account:{_user(i)}")
                    for space in spaces.values()
                    for i in range(MEMBERS)
                )
            budget = int(seconds * 6_000)
            for identity, label in ((plc, "ES256K, did:plc"), (web, "ES256, did:web")):
                space = spaces[identity.did]
                pool.apply(drive, (xrpc, _requests(identity, space, WARMUP), 4, seconds))
                for count in connections:
                    requests = _requests(identity, space, budget)
                    cpu = _cpu_seconds(pid)
                    result = pool.apply(drive, (xrpc, requests, count, seconds))
                    cpu = _cpu_seconds(pid) - cpu
                    done = len(result["latencies"])
                    rows.append(
                        {
                            "authority": label,
                            "connections": count,
                            "requests": done,
                            "req_per_s": round(done / result["elapsed"]),
                            "p50_ms": round(percentile(result["latencies"], 0.5) * 1000, 2),
                            "p99_ms": round(percentile(result["latencies"], 0.99) * 1000, 2),
                            "server_cpu_us": _us(cpu, done),
                            "authorized": result["authorized"],
                            "wrong": abs(result["authorized"] - _members_among(done)),
                            "not_200": done - result["statuses"].get(200, 0),
                        }
                    )
    finally:
        pool.terminate()
        directory.close()
    return rows
