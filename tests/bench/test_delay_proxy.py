"""The delay proxy relays both ways, in order, and adds its delay to a round trip."""

from __future__ import annotations

import socket
import threading
import time

from policyd.bench.delay_proxy import delayed


def _echo_server() -> tuple[socket.socket, int]:
    listener = socket.create_server(("127.0.0.1", 0))

    def echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    def serve() -> None:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return listener, listener.getsockname()[1]


def test_bytes_come_back_whole_and_in_order() -> None:
    listener, port = _echo_server()
    with (
        listener,
        delayed("127.0.0.1", port, 0.2) as proxy,
        socket.create_connection(("127.0.0.1", proxy)) as client,
    ):
        sent = b"".join(f"{i:05d}".encode() for i in range(2000))
        for i in range(0, len(sent), 1000):
            client.sendall(sent[i : i + 1000])
        got = b""
        while len(got) < len(sent):
            got += client.recv(65536)
    assert got == sent


def test_a_round_trip_takes_at_least_the_added_delay() -> None:
    # A lower bound only: the delay is a sleep, so no machine can answer sooner.
    listener, port = _echo_server()
    with (
        listener,
        delayed("127.0.0.1", port, 20) as proxy,
        socket.create_connection(("127.0.0.1", proxy)) as client,
    ):
        began = time.monotonic()
        client.sendall(b"ping")
        assert client.recv(16) == b"ping"
        assert time.monotonic() - began >= 0.020
