"""Package store.group_commit runs the writer: one process that group-commits a server's writes.

Concurrent write requests queue to one writer, which applies each pending
request in its own savepoint of one transaction and commits once
(``Writer.write_group``): one fsync for the whole group, each request still
all or nothing with its own revision, each caller answered only after the
commit. With SQLite's ``synchronous=FULL`` one commit per request gave
1.4–2.3k writes/s on these machines; a commit costs about the same whether
it carries 1 request or 64 (``benchmarks``: 4,180 commits/s of one row,
2,752/s of 16 rows, 1,590/s of 64 rows on the same disk).

Why a process and not a thread: every sqlite3 call releases the GIL and must
take it back, and a thread that wants the GIL back from a busy thread waits
the 5 ms switch interval. A write does 10–20 such calls, so a writer thread
beside an event loop busy with Checks managed 28–42 writes/s (issue 11);
requests handed to a pool of 16 threads and back cost 1.8–2.9 ms of server
CPU each, measured with ``policyd bench --sections writes`` and py-spy.
The writer process has a GIL of its own, and the server's event loop talks
to it over a socket pair without any thread: it sends each request as it
arrives and wakes each caller when its group's answer comes back.

Durability: an answer is sent only after the group's COMMIT returned, so at
``synchronous=FULL`` every acknowledged write survives a crash and a power
loss; a write still in a group when the power goes is lost whole (never in
part), and its caller was never told it succeeded. With ``synchronous=NORMAL``
in WAL mode the last acknowledged groups can be lost on power loss (not on a
process crash).

Several processes on one SQLite file (``--workers N``) each run their own
writer; the writers take turns on SQLite's write lock (``BEGIN IMMEDIATE``,
waiting up to the busy timeout), which costs a waiting writer SQLite's
busy-handler sleeps (1, 2, 5, 10 ms…) but makes its next group larger.
PostgreSQL runs the same writer: writers there number their revisions by
transaction id and commit side by side (see ``PostgresStore._write_plain``),
but each commit still costs a round trip, a WAL flush and a move of the head,
which a group pays once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from policyd.errors import InternalError, PolicydError, StoreError
from policyd.store.base import GroupRequest, Outcome, Revision, Store, apply_request

LOG = logging.getLogger("policyd.writer")

MAX_GROUP = 1000
"""The most requests one transaction takes; more wait for the next group."""

_HEADER = struct.Struct("!I")
_READ_SIZE = 1 << 20

StoreOpener = Callable[[], Store]
"""Opens the same store again, in another process (``SqliteStore.opener``)."""


def _frame(value: object) -> bytes:
    body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(body)) + body


class _Frames:
    """Splits a byte stream into the values of its frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        """Add bytes; return the values of every frame now complete."""
        buffer = self._buffer
        buffer += data
        values = []
        start = 0
        while len(buffer) - start >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer, start)
            end = start + _HEADER.size + size
            if len(buffer) < end:
                break
            values.append(pickle.loads(buffer[start + _HEADER.size : end]))
            start = end
        del buffer[:start]
        return values


# ---- the writer process ----------------------------------------------------------------------


def commit_groups(store: Store, connection: socket.socket) -> None:
    """Serve one connection until it closes: each read of it becomes one group commit.

    Requests that arrive while a group commits wait in the socket and form
    the next group. A store failure fails every request of its group with
    the StoreError and the writer goes on: the next group tries again (a
    full disk refuses writes until space is freed, then they resume).
    """
    frames = _Frames()
    pending: list[tuple[int, GroupRequest]] = []
    while True:
        if not pending:
            data = connection.recv(_READ_SIZE)
            if not data:
                return
            pending.extend(frames.feed(data))
        connection.setblocking(False)
        try:
            while len(pending) < MAX_GROUP:
                data = connection.recv(_READ_SIZE)
                if not data:
                    break
                pending.extend(frames.feed(data))
        except BlockingIOError:
            pass
        finally:
            connection.setblocking(True)
        group, pending = pending[:MAX_GROUP], pending[MAX_GROUP:]
        outcomes = _commit(store, [request for _, request in group])
        connection.sendall(
            _frame([(ident, outcome) for (ident, _), outcome in zip(group, outcomes, strict=True)])
        )


def _commit(store: Store, requests: list[GroupRequest]) -> list[Outcome]:
    try:
        return store.write_group(requests)
    except PolicydError as e:
        return [e] * len(requests)
    except Exception as e:  # a broken invariant must not stop the writer; log it
        LOG.exception("the group commit failed")
        return [InternalError(f"the group commit failed: {e}")] * len(requests)


def main() -> None:
    """The writer process: read the store opener, open it, answer ready, then commit groups."""
    connection = socket.socket(fileno=int(sys.argv[1]))
    frames = _Frames()
    opened: list[Any] = []
    while not opened:
        data = connection.recv(_READ_SIZE)
        if not data:
            return
        opened = frames.feed(data)
    opener: StoreOpener = opened[0]
    try:
        store = opener()
    except PolicydError as e:
        connection.sendall(_frame(e))
        return
    connection.sendall(_frame(None))
    try:
        commit_groups(store, connection)
    finally:
        store.close()


# ---- the server's side -----------------------------------------------------------------------


class InlineWriter:
    """The writer of a store no other process can open (memory): one thread of this process.

    There is no fsync to share, so each request commits on its own.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policyd-writer")

    async def start(self) -> None:
        """Nothing to start."""

    async def apply(self, request: GroupRequest) -> Revision | tuple[Revision, int]:
        """Apply ``request`` in the writer thread; its result, or its error."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, apply_request, self._store, request)

    async def close(self, timeout: float = 30.0) -> None:
        """Finish what was started."""
        self._thread.shutdown(wait=True)


class GroupWriter(Protocol):
    """The writer a server queues its writes to (``WriterProcess`` or ``InlineWriter``)."""

    async def start(self) -> None:
        """Get ready to apply requests (call on the event loop that will call ``apply``)."""
        ...

    async def apply(self, request: GroupRequest) -> Revision | tuple[Revision, int]:
        """The request's result once it committed; raises its error if it failed."""
        ...

    async def close(self, timeout: float = 30.0) -> None:
        """Finish the requests already sent, then stop."""
        ...


def writer_for(store: Store) -> GroupWriter:
    """A writer process when another process can open ``store``, else a writer thread."""
    opener = store.opener()
    return InlineWriter(store) if opener is None else WriterProcess(opener)


class WriterProcess(asyncio.Protocol):
    """The server's handle on its writer process; ``apply`` is called on the event loop."""

    def __init__(self, opener: StoreOpener) -> None:
        self._opener = opener
        self._frames = _Frames()
        self._waiting: dict[int, asyncio.Future[Outcome]] = {}
        self._next_id = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._transport: asyncio.Transport | None = None
        self._ready: asyncio.Future[None] | None = None
        self._starting: asyncio.Task[None] | None = None
        self._outbox: list[bytes] = []

    async def start(self) -> None:
        """Start the writer process and wait until it has opened the store.

        Raises:
            StoreError: the writer could not open the store (writes will try again).
        """
        loop = asyncio.get_running_loop()
        self._frames = _Frames()
        ours, theirs = socket.socketpair()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "policyd.store.group_commit", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        finally:
            theirs.close()
        self._ready = loop.create_future()
        await loop.connect_accepted_socket(lambda: self, ours)
        assert self._transport is not None
        self._transport.write(_frame(self._opener))
        await self._ready

    async def apply(self, request: GroupRequest) -> Revision | tuple[Revision, int]:
        """Queue ``request`` to the writer; its result once its group committed, or its error."""
        if self._transport is None or self._transport.is_closing():
            await self._restart()
        assert self._transport is not None
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        ident = self._next_id
        self._next_id += 1
        self._waiting[ident] = future
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outbox.append(_frame((ident, request)))
        outcome = await future
        if isinstance(outcome, PolicydError):
            raise outcome
        return outcome

    def _flush(self) -> None:
        """Send the requests of this turn of the loop in one write (one system call)."""
        outbox, self._outbox = self._outbox, []
        if self._transport is not None:
            self._transport.write(b"".join(outbox))

    async def _restart(self) -> None:
        """Start a new writer after the last one exited (one start at a time)."""
        if self._starting is None or self._starting.done():
            self._starting = asyncio.get_running_loop().create_task(self.start())
        try:
            await asyncio.shield(self._starting)
        except PolicydError:
            raise
        except Exception as e:
            raise StoreError(f"cannot start the writer process: {e}") from e

    async def close(self, timeout: float = 30.0) -> None:
        """Let the writer finish what it was sent, then stop it."""
        if self._transport is not None:
            self._transport.close()
        process = self._process
        if process is not None:
            loop = asyncio.get_running_loop()
            try:
                await asyncio.wait_for(loop.run_in_executor(None, process.wait), timeout)
            except TimeoutError:
                process.kill()
                await loop.run_in_executor(None, process.wait)

    # ---- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """The socket to the writer is connected."""
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        """Answers from the writer: the ready signal, then one frame per committed group."""
        for value in self._frames.feed(data):
            if self._ready is not None and not self._ready.done():
                if isinstance(value, PolicydError):
                    self._ready.set_exception(value)
                else:
                    self._ready.set_result(None)
                continue
            for ident, outcome in value:
                future = self._waiting.pop(ident, None)
                if future is not None and not future.done():
                    future.set_result(outcome)

    def connection_lost(self, exc: Exception | None) -> None:
        """The writer exited: every request still waiting fails (it may or may not be durable)."""
        self._transport = None
        error = StoreError("the writer process exited; the write may or may not have committed")
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(StoreError("the writer process exited while starting"))
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_result(error)
        with contextlib.suppress(Exception):
            if self._process is not None:
                self._process.poll()


if __name__ == "__main__":
    main()
