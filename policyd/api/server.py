"""Package server builds and runs the policyd gRPC server: services, health, reflection, TLS.

``PolicydServer`` owns an asyncio grpc server (grpc.aio) over one Engine and
Store, run by an event loop on a thread of its own, so the caller keeps a
plain start/stop/wait API. One loop serves every call: idle streams cost a
coroutine, not a thread, and api/scheduling.py says how cheap calls, heavy
calls and blocking store work share it. The server turns SO_REUSEPORT off
unless asked (so a second server cannot silently bind the same port),
honours the configured message size, and shuts down gracefully: health goes
NOT_SERVING, Watch streams end, in-flight calls get ``grace`` seconds to
finish, then the store is closed.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from types import FrameType
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from policyd.api.authzed import SERVICE_NAMES as AUTHZED_SERVICE_NAMES
from policyd.api.authzed import add_authzed_services
from policyd.api.gen import (
    permission_service_pb2,
    permission_service_pb2_grpc,
    policy_service_pb2,
    policy_service_pb2_grpc,
    relationship_service_pb2,
    relationship_service_pb2_grpc,
)
from policyd.api.interceptors import AuthInterceptor, ObservingInterceptor
from policyd.api.limits import Limits
from policyd.api.metrics import Metrics
from policyd.api.permissions import PermissionServicer
from policyd.api.policies import PolicyServicer
from policyd.api.relationships import RelationshipServicer
from policyd.api.scheduling import Threads
from policyd.api.watch import ChangeFeed
from policyd.engine import Engine
from policyd.errors import InvalidRequestError, PolicydError, StoreError
from policyd.store.base import DEFAULT_GC_WINDOW, Store
from policyd.store.group_commit import writer_for

T = TypeVar("T")

HEALTH_CHECK_SECONDS = 0.5
"""How often the health service looks at whether the store is reachable."""

LOG = logging.getLogger("policyd.api")

SERVICE_NAMES = (
    permission_service_pb2.DESCRIPTOR.services_by_name["PermissionService"].full_name,
    relationship_service_pb2.DESCRIPTOR.services_by_name["RelationshipService"].full_name,
    policy_service_pb2.DESCRIPTOR.services_by_name["PolicyService"].full_name,
    *AUTHZED_SERVICE_NAMES,
)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """How to serve: address, auth, TLS, store threads and limits.

    ``token`` None means no auth (the caller must have been told explicitly);
    ``tls_cert`` and ``tls_key`` are PEM bytes, both or neither. ``threads``
    sizes the pools for blocking store work (writes, and store reads); calls
    themselves run on the event loop.
    """

    listen: str = "127.0.0.1:50051"
    token: str | None = None
    tls_cert: bytes | None = None
    tls_key: bytes | None = None
    threads: int = 4
    reuse_port: bool = False
    limits: Limits = field(default_factory=Limits)
    follow_seconds: float = 0.05
    """How often the index looks for other writers' changes (it is also poked by its own)."""
    gc_every: float = 600.0
    """Seconds between garbage collections of old row versions; 0 turns them off."""
    gc_window: timedelta = DEFAULT_GC_WINDOW
    """How long deleted row versions stay readable (snapshot reads, Watch resumption)."""


class PolicydServer:
    """A running (after ``start``) gRPC server over one Engine, on its own event loop."""

    def __init__(
        self,
        engine: Engine,
        store: Store,
        config: ServerConfig,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if (config.tls_cert is None) != (config.tls_key is None):
            raise InvalidRequestError("TLS needs both a certificate and a key", field="tls")
        self.config = config
        self.store = store
        self.engine = engine
        self.metrics = (
            Metrics(registry, revision=store.head_revision, engine_stats=engine.stats)
            if registry is not None
            else None
        )
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._stop_hooks: list[Callable[[], None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._writes = Threads(config.threads, "policyd-write")
        self._reads = Threads(config.threads, "policyd-read")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="policyd-loop", daemon=True
        )
        self._thread.start()
        try:
            self.port = self._on_loop(self._build())
        except BaseException:
            self._close_loop()
            raise

    def _on_loop(self, work: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    async def _build(self) -> int:
        """Make the grpc.aio server (it belongs to the loop it is made on) and bind it."""
        config, limits = self.config, self.config.limits
        interceptors: list[grpc.aio.ServerInterceptor[Any, Any]] = [
            ObservingInterceptor(self.metrics, limits)
        ]
        if config.token is not None:
            interceptors.append(AuthInterceptor(config.token))
        self._server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.so_reuseport", 1 if config.reuse_port else 0),
                ("grpc.max_receive_message_length", limits.max_message_bytes),
                ("grpc.max_send_message_length", limits.max_message_bytes),
            ],
        )
        self._feed = ChangeFeed(
            self.store, self._reads, limits.watch_poll_seconds, limits.page_size
        )
        self._writer = writer_for(self.store)
        try:
            await self._writer.start()
        except StoreError as e:  # serve reads anyway; writes retry starting it
            LOG.warning("the writer could not open the store (writes will retry): %s", e)
        permission_service_pb2_grpc.add_PermissionServiceServicer_to_server(
            PermissionServicer(self.engine, limits, self._feed, self._reads, self.metrics),
            self._server,
        )
        relationship_service_pb2_grpc.add_RelationshipServiceServicer_to_server(
            RelationshipServicer(
                self.engine,
                self.store,
                limits,
                self._feed,
                self._writer,
                self._writes,
                self._reads,
            ),
            self._server,
        )
        policy_service_pb2_grpc.add_PolicyServiceServicer_to_server(
            PolicyServicer(self.engine, self._writes), self._server
        )
        add_authzed_services(
            self._server,
            self.engine,
            self.store,
            limits,
            self._feed,
            self._writes,
            self._reads,
            self.metrics,
        )
        # grpc-stubs describe only the sync servicer; grpc_health ships the asyncio one too.
        self._health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server
        )
        return self._bind()

    def _bind(self) -> int:
        host, _, _ = self.config.listen.rpartition(":")
        if not host:
            raise InvalidRequestError(
                f"listen address {self.config.listen!r} is not HOST:PORT", field="listen"
            )
        try:
            if self.config.tls_cert is not None and self.config.tls_key is not None:
                credentials = grpc.ssl_server_credentials(
                    [(self.config.tls_key, self.config.tls_cert)]
                )
                port = self._server.add_secure_port(self.config.listen, credentials)
            else:
                port = self._server.add_insecure_port(self.config.listen)
        except RuntimeError as e:
            raise InvalidRequestError(
                f"cannot listen on {self.config.listen}: {_bind_problem(self.config.listen) or e}",
                field="listen",
            ) from e
        if port == 0:
            problem = _bind_problem(self.config.listen)
            where = f"cannot listen on {self.config.listen}"
            raise InvalidRequestError(f"{where}: {problem}" if problem else where, field="listen")
        return port

    @property
    def address(self) -> str:
        """``host:port`` with the port actually bound."""
        host = self.config.listen.rpartition(":")[0]
        return f"{host}:{self.port}"

    def start(self) -> None:
        """Start serving and report SERVING to health checks."""
        self._on_loop(self._start())

    async def _start(self) -> None:
        await self._server.start()
        self._feed.start()
        self.engine.follow(self.config.follow_seconds)
        await self._report(serving=True)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._watch_health(), name="health")]
        if self.config.gc_every > 0:
            self._tasks.append(loop.create_task(self._collect(), name="gc"))

    async def _report(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self._health.set("", status)
        for name in SERVICE_NAMES:
            await self._health.set(name, status)

    async def _watch_health(self) -> None:
        """Report NOT_SERVING while the store is unreachable and SERVING again after."""
        serving = True
        while True:
            await asyncio.sleep(HEALTH_CHECK_SECONDS)
            if self.engine.healthy != serving:
                serving = self.engine.healthy
                await self._report(serving)

    async def _collect(self) -> None:
        """Collect old row versions every ``gc_every`` seconds (holds keep what readers need)."""
        while True:
            await asyncio.sleep(self.config.gc_every)
            try:
                result = await self._writes.run(self.store.gc, self.config.gc_window)
            except PolicydError as e:
                LOG.warning("garbage collection failed: %s", e)
            else:
                LOG.info(
                    "garbage collection removed %d row versions; the oldest readable "
                    "revision is %d",
                    result.removed,
                    result.oldest_revision,
                )

    def stop(self, grace: float = 10.0) -> None:
        """Stop accepting calls, let in-flight calls finish within ``grace``, close the store."""
        if self._stopping.is_set():
            self._stopped.wait(grace + 5)
            return
        self._stopping.set()
        try:
            self._on_loop(self._stop(grace))
        finally:
            for hook in self._stop_hooks:
                hook()
            self._writes.close()
            self._reads.close()
            self._close_loop()
            self.store.close()
            self._stopped.set()
            LOG.info("stopped")

    async def _stop(self, grace: float) -> None:
        await self._health.enter_graceful_shutdown()
        for task in self._tasks:
            task.cancel()
        await self._feed.close()
        await self._server.stop(grace)
        await self._writer.close()
        self.engine.close()

    def _close_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def on_stop(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` while stopping, after gRPC calls drained and before the store closes."""
        self._stop_hooks.append(hook)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stops; True if it did within ``timeout``."""
        return self._stopped.wait(timeout)

    def stop_on_signals(self, grace: float = 10.0) -> None:
        """Stop gracefully on SIGTERM and SIGINT (call from the main thread)."""

        def handle(signum: int, _frame: FrameType | None) -> None:
            LOG.info("received %s; shutting down", signal.Signals(signum).name)
            threading.Thread(target=self.stop, args=(grace,), daemon=True).start()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)


def _bind_problem(listen: str) -> str | None:
    """Why ``listen`` cannot be bound, said plainly ("address already in use"), if a probe tells."""
    host, _, port = listen.rpartition(":")
    if not port.isdigit():
        return None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        try:
            probe.bind((host.strip("[]"), int(port)))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return "address already in use (another server listens there?)"
            return e.strerror or str(e)
    return None
