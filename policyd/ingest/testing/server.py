"""Package ingest.testing.server replays scripted frames over a real WebSocket; serves getRepo.

It runs its own event loop in a daemon thread, so an ingester under test can
run in the test's thread or in another process. A client's ``cursor`` query
parameter is honoured as a relay does: only frames with a position above it
are sent. ``drop_after`` closes the first connection abruptly after that many
frames; ``extra_first`` frames are sent once, on the first connection only
(duplicates, out-of-order or malformed frames that have no position).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

Frame = tuple[int | None, bytes | str]


@dataclass
class StreamScript:
    """What the server sends: frames in order (position, payload), and how it misbehaves."""

    frames: list[Frame] = field(default_factory=list)
    extra_first: list[Frame] = field(default_factory=list)
    drop_after: int | None = None
    repos: dict[str, bytes] = field(default_factory=dict)
    """getRepo answers: DID → CAR bytes."""


class StreamServer:
    """The server; ``url`` is ws://127.0.0.1:PORT, ``paths`` every request path seen."""

    def __init__(self, script: StreamScript) -> None:
        self.script = script
        self.paths: list[str] = []
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._server: Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("stream server did not start")
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        self.url: str = f"ws://127.0.0.1:{port}"
        self.http_url: str = f"http://127.0.0.1:{port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await serve(
                self._handle,
                "127.0.0.1",
                0,
                process_request=self._http,
                max_size=None,
                compression=None,
            )
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        self.paths.append(request.path)
        parts = urlsplit(request.path)
        if not parts.path.endswith("com.atproto.sync.getRepo"):
            return None
        did = parse_qs(parts.query).get("did", [""])[0]
        car = self.script.repos.get(did)
        if car is None:
            return connection.respond(400, '{"error": "RepoNotFound"}')
        headers = Headers([("Content-Type", "application/vnd.ipld.car")])
        headers["Content-Length"] = str(len(car))
        return Response(200, "OK", headers, car)

    async def _handle(self, connection: ServerConnection) -> None:
        self.connections += 1
        first = self.connections == 1
        assert connection.request is not None
        query = parse_qs(urlsplit(connection.request.path).query)
        cursor = int(query["cursor"][0]) if "cursor" in query else None
        frames: Sequence[Frame] = [
            f for f in self.script.frames if cursor is None or (f[0] or 0) > cursor
        ]
        if first:
            frames = [*self.script.extra_first, *frames]
        for sent, (_, payload) in enumerate(frames):
            if first and self.script.drop_after is not None and sent == self.script.drop_after:
                connection.transport.abort()  # no close frame: a dropped TCP connection
                return
            await connection.send(payload)
        await connection.wait_closed()

    def close(self) -> None:
        """Stop serving and end the thread."""

        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
