"""Package bench.delay_proxy is a TCP proxy that delays every byte by a fixed time each way.

Loopback has no network to speak of, so a lock held across a transaction's
round trips costs almost nothing there; between a policyd server and a
PostgreSQL on another host each round trip costs 0.1–1 ms, and a lock held
for a whole transaction is held for all of them. ``policyd bench --sections
postgres --pg-delay-ms D`` puts this proxy (a process of its own, so it takes
no CPU from the writers' interpreter) between the stores and PostgreSQL to
model that: each direction is delayed by D/2 ms, so a round trip gains D.
Order within each direction is kept; the kernel's own buffering is the only
bandwidth limit.

    python -m policyd.bench.delay_proxy LISTEN_PORT TARGET_HOST TARGET_PORT ONE_WAY_MS

It prints the port it listens on (LISTEN_PORT, or the one it was given for 0).
"""

from __future__ import annotations

import contextlib
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator


def _pipe(source: socket.socket, target: socket.socket, delay: float) -> None:
    """Copy ``source`` to ``target``, each chunk sent ``delay`` seconds after it arrived.

    Threads and ``time.sleep`` rather than asyncio: the event loop's timers
    round up to whole milliseconds, which would swamp a 0.25 ms delay.
    """
    chunks: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()

    def send() -> None:
        with contextlib.suppress(OSError):
            while True:
                due, data = chunks.get()
                if not data:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    threading.Thread(target=send, daemon=True).start()
    with contextlib.suppress(OSError):
        while data := source.recv(1 << 16):
            chunks.put((time.monotonic() + delay, data))
    chunks.put((time.monotonic() + delay, b""))


def _serve(listen_port: int, host: str, port: int, delay: float) -> None:
    """Accept connections forever, each one relayed to ``host:port`` by two pipes."""
    listener = socket.create_server(("127.0.0.1", listen_port))
    print(listener.getsockname()[1], flush=True)
    while True:
        client, _ = listener.accept()
        try:
            server = socket.create_connection((host, port))
        except OSError:
            client.close()
            continue
        for s in (client, server):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for a, b in ((client, server), (server, client)):
            threading.Thread(target=_pipe, args=(a, b, delay), daemon=True).start()


@contextlib.contextmanager
def delayed(host: str, port: int, round_trip_ms: float) -> Iterator[int]:
    """Run the proxy in a child process; yields the local port that reaches ``host:port``."""
    child = subprocess.Popen(
        [sys.executable, "-m", __name__, "0", host, str(port), str(round_trip_ms / 2)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()  # the port it listens on, once it does
        if not line.strip().isdigit():
            raise RuntimeError("the delay proxy did not start")
        yield int(line)
    finally:
        child.terminate()
        child.wait()


if __name__ == "__main__":
    listen_port, target_host, target_port, one_way_ms = sys.argv[1:5]
    with contextlib.suppress(KeyboardInterrupt):
        _serve(int(listen_port), target_host, int(target_port), float(one_way_ms) / 1000)
