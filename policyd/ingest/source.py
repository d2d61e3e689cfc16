"""Package ingest.source follows a firehose or Jetstream over WebSocket and feeds the applier.

Two tasks share one bounded queue: the receiver reads messages, decodes them
(``ingest.frames``) and queues the events; the applier task takes what is
queued, up to ``batch_size`` events or ``batch_seconds`` after the first,
and commits it in one store transaction on a worker thread, so receiving and
decoding go on while SQLite writes. A full queue stops the receiver (and
with it the socket), which is all the back-pressure a relay needs: one that
gives up on a slow consumer is reconnected to from the stored position.

Connections: the stream is opened at the position stored for this source
(the firehose's ``cursor`` is the last seq seen, the subscribeRepos lexicon's
"last known event seq number to backfill from"; Jetstream's is ``time_us``).
Any failure (refused, dropped, an error frame such as ``ConsumerTooSlow``)
is retried with exponential backoff and jitter, from the last position
received. A malformed frame is logged, counted and skipped.

Backfill: each repo named is fetched with ``com.atproto.sync.getRepo`` and
loaded (``Applier.load_repo``) once the stream is open and before any
stream event is applied, so a commit made while the CAR downloads is queued,
and stale stream events (at or below the CAR's revision) change nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
import websockets
from websockets.asyncio.client import ClientConnection, connect

from policyd.errors import InvalidRequestError
from policyd.ingest.applier import Applier
from policyd.ingest.frames import (
    Event,
    FrameError,
    OtherEvent,
    decode_frame,
    decode_jetstream,
    decode_repo,
)
from policyd.ingest.metrics import IngestMetrics

log = logging.getLogger("policyd.ingest")

SUBSCRIBE_REPOS = "/xrpc/com.atproto.sync.subscribeRepos"
JETSTREAM_SUBSCRIBE = "/subscribe"
GET_REPO = "/xrpc/com.atproto.sync.getRepo"
MAX_FRAME_BYTES = 16 * 1024 * 1024
# No permessage-deflate: inflating cost about 28 µs a frame, more than decoding it (profiled
# under policyd bench's ingest workload), and CBOR full of hashes compresses poorly anyway.
COMPRESSION = None


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """How to follow one stream."""

    url: str
    jetstream: bool = False
    batch_size: int = 5000
    batch_seconds: float = 0.25
    backoff_initial: float = 0.25
    backoff_max: float = 30.0
    backfill: tuple[str, ...] = ()
    backfill_from: str | None = None
    stop_after: int | None = None
    """Stop once this many events were applied (tests and benchmarks)."""


def source_name(url: str) -> str:
    """The name a stream's position is stored under: its URL without query or fragment."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query="", fragment="")).rstrip("/")


def stream_url(settings: StreamSettings, position: int | None, collections: Sequence[str]) -> str:
    """The URL to connect to: the endpoint path when none is given, cursor, collections."""
    parts = urlsplit(settings.url)
    if parts.scheme not in ("ws", "wss"):
        raise InvalidRequestError(
            f"stream URL must be ws:// or wss://, got {settings.url!r}", field="url"
        )
    path = parts.path.rstrip("/")
    query: list[tuple[str, str]] = []
    if settings.jetstream:
        path = path or JETSTREAM_SUBSCRIBE
        query += [("wantedCollections", c) for c in collections]
    else:
        path = path or SUBSCRIBE_REPOS
    if position is not None:
        query.append(("cursor", str(position)))
    extra = urlencode(query)
    joined = "&".join(q for q in (parts.query, extra) if q)
    return urlunsplit(parts._replace(path=path, query=joined))


def backfill_host(settings: StreamSettings) -> str:
    """Where getRepo is asked: ``backfill_from``, or the firehose's own host over HTTP."""
    if settings.backfill_from:
        return settings.backfill_from.rstrip("/")
    if settings.jetstream:
        raise InvalidRequestError(
            "--backfill with --jetstream needs --backfill-from (a PDS or relay URL)",
            field="backfill_from",
        )
    parts = urlsplit(settings.url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return urlunsplit((scheme, parts.netloc, "", "", ""))


class Ingester:
    """Follows one stream into the store until stopped (or ``stop_after`` events)."""

    def __init__(
        self, applier: Applier, settings: StreamSettings, metrics: IngestMetrics | None = None
    ) -> None:
        self.applier = applier
        self.settings = settings
        self.metrics = metrics
        self.applied_events = 0
        self._collections = sorted(applier.mapping.collections)
        self._socket: ClientConnection | None = None
        self._connected = asyncio.Event()
        self._decode: Callable[[bytes | str], Event] = self._decoder()

    def _decoder(self) -> Callable[[bytes | str], Event]:
        wanted = self.applier.mapping.collections
        if self.settings.jetstream:
            return lambda message: decode_jetstream(message, wanted)

        def firehose(message: bytes | str) -> Event:
            if isinstance(message, str):
                raise FrameError("a firehose frame must be binary")
            return decode_frame(message, wanted)

        return firehose

    async def run(self, stop: asyncio.Event) -> None:
        """Receive and apply until ``stop`` is set; the last batch is committed before return.

        Raises:
            PolicydError: the store refused a batch (the policy changed under the mapping).
        """
        queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=4 * self.settings.batch_size)
        applying = asyncio.create_task(self._apply_loop(queue, stop))
        closer = asyncio.create_task(self._close_on(stop))
        try:
            await self._receive_loop(queue, stop, applying)
        finally:
            closer.cancel()
            if not applying.done():
                await queue.put(None)
            await applying  # re-raises the applier's failure

    async def _close_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        if self._socket is not None:
            await self._socket.close()

    async def _receive_loop(
        self, queue: asyncio.Queue[Event | None], stop: asyncio.Event, applying: asyncio.Task[None]
    ) -> None:
        position = await asyncio.to_thread(lambda: self.applier.position)
        attempt = 0
        while not stop.is_set():
            url = stream_url(self.settings, position, self._collections)
            try:
                async with connect(
                    url, max_size=MAX_FRAME_BYTES, open_timeout=10, compression=COMPRESSION
                ) as socket:
                    self._socket = socket
                    self._connected.set()
                    log.info("ingest: connected to %s", url)
                    async for message in socket:
                        attempt = 0
                        try:
                            event = self._decode(message)
                        except FrameError as e:
                            if self.metrics is not None:
                                self.metrics.malformed += 1
                            log.warning("ingest: skipped a malformed frame: %s", e)
                            continue
                        if isinstance(event, OtherEvent) and event.error:
                            log.warning("ingest: the stream sent an error: %s", event.detail)
                            break
                        if event.position is not None:
                            position = max(position or 0, event.position)
                        if not await _put(queue, event, applying):
                            return
            except (OSError, TimeoutError, websockets.WebSocketException) as e:
                log.warning("ingest: stream %s failed: %s", url, e)
            finally:
                self._socket = None
            if stop.is_set() or applying.done():
                return
            delay = min(self.settings.backoff_max, self.settings.backoff_initial * 2**attempt)
            attempt += 1
            if self.metrics is not None:
                self.metrics.reconnects += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay * random.uniform(0.5, 1.0))

    async def _apply_loop(self, queue: asyncio.Queue[Event | None], stop: asyncio.Event) -> None:
        try:
            await self._backfill(stop)
            loop = asyncio.get_running_loop()
            size, seconds = self.settings.batch_size, self.settings.batch_seconds
            done = False
            while not done:
                first = await queue.get()
                if first is None:
                    return
                batch = [first]
                deadline = loop.time() + seconds
                while len(batch) < size:
                    try:
                        item = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        left = deadline - loop.time()
                        if left <= 0:
                            break
                        try:
                            item = await asyncio.wait_for(queue.get(), left)
                        except TimeoutError:
                            break
                    if item is None:
                        done = True
                        break
                    batch.append(item)
                await asyncio.to_thread(self.applier.apply, batch)
                self.applied_events += len(batch)
                limit = self.settings.stop_after
                if limit is not None and self.applied_events >= limit:
                    stop.set()
        except BaseException:
            stop.set()
            raise

    async def _backfill(self, stop: asyncio.Event) -> None:
        if not self.settings.backfill:
            return
        waits = [asyncio.ensure_future(e.wait()) for e in (self._connected, stop)]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for waiting in waits:
            waiting.cancel()
        if stop.is_set():
            return
        host = backfill_host(self.settings)
        timeout = aiohttp.ClientTimeout(total=300)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for did in self.settings.backfill:
                async with session.get(f"{host}{GET_REPO}", params={"did": did}) as response:
                    if response.status != 200:
                        body = await response.text()
                        raise InvalidRequestError(
                            f"getRepo {did} at {host}: HTTP {response.status}: {body[:200]}",
                            field="backfill",
                        )
                    car = await response.read()
                repo = decode_repo(car, self.applier.mapping.collections)
                result = await asyncio.to_thread(self.applier.load_repo, repo)
                log.info(
                    "ingest: backfilled %s at rev %s: %d records, %d applied",
                    did,
                    repo.rev,
                    len(repo.records),
                    result.applied.applied,
                )


async def _put(
    queue: asyncio.Queue[Event | None], event: Event, applying: asyncio.Task[None]
) -> bool:
    """Queue ``event``; False when the applier has stopped (it will take no more)."""
    try:
        queue.put_nowait(event)
        return True
    except asyncio.QueueFull:
        pass
    putting = asyncio.ensure_future(queue.put(event))
    await asyncio.wait({putting, applying}, return_when=asyncio.FIRST_COMPLETED)
    if not putting.done():
        putting.cancel()
        return False
    return True
