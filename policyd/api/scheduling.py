"""Package scheduling shares one event loop between cheap calls, heavy calls and blocking I/O.

The server is one asyncio loop per worker process (grpc.aio), so an idle
stream costs a coroutine, not a thread. A Check runs inline: it takes
microseconds, less than handing it to a thread would. A heavy call (a
lookup over a million subjects, Expand) runs on the loop too, a slice at a
time: its engine generator yields at checkpoints, and ``sliced`` gives the
loop back after ``SLICE_SECONDS`` so the Checks that arrived meanwhile run
between slices (no second thread competing for the GIL, so their latency
grows by at most a slice per heavy call ahead of them). Store I/O that
blocks (writes with their fsync, store reads) runs in ``Threads``, whose
threads release the GIL while they wait on the disk or the network.

Deadlines and cancellation: the loop cancels a call's task when its client
cancels or its deadline passes, which surfaces at the next ``await``, so a
sliced call stops within one slice; ``deadline_of`` also hands the deadline
to work that checks it itself.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterator, Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ParamSpec, TypeAlias, TypeVar

import grpc

from policyd.engine.deadline import Deadline

T = TypeVar("T")
P = ParamSpec("P")

if TYPE_CHECKING:
    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
else:  # grpc's classes are not generic at run time; grpc-stubs' are
    Context: TypeAlias = grpc.aio.ServicerContext
"""The context of a call on the asyncio server."""

SLICE_SECONDS = 0.0005
"""How long a heavy call runs before giving the loop back (0.5 ms: three heavy calls ahead
of a Check add at most about 1.5 ms to it)."""


def deadline_of(context: Context) -> Deadline:
    """The call's deadline as the engine checks it; none when the client set none."""
    return Deadline(context.time_remaining())


async def sliced(steps: Generator[T | None, None, object], deadline: Deadline) -> AsyncIterator[T]:
    """The answers of an engine generator, giving the loop back every ``SLICE_SECONDS``.

    The generator is closed however this ends (its caller cancelled, the
    deadline passed), so the engine work stops with it.

    Raises:
        DeadlineExceededError: the deadline passed between slices.
    """
    until = time.monotonic() + SLICE_SECONDS
    try:
        for step in steps:
            if step is not None:
                yield step
                continue
            if time.monotonic() >= until:
                deadline.check()
                await asyncio.sleep(0)
                until = time.monotonic() + SLICE_SECONDS
    finally:
        steps.close()


class Threads:
    """Where blocking store work runs: a small pool, so the loop never waits on a disk."""

    def __init__(self, workers: int, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)

    async def run(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``call(*args, **kwargs)`` in the pool, awaited, in a copy of the caller's context.

        The context carries the call's deadline (``CALL_DEADLINE``) to the store.
        """
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        return await loop.run_in_executor(self._pool, lambda: context.run(call, *args, **kwargs))

    def close(self) -> None:
        """Finish what was started; accept nothing new."""
        self._pool.shutdown(wait=True)
