"""Package server builds and runs the policyd gRPC server: services, health, reflection, TLS.

``PolicydServer`` owns a sync grpcio server over one Engine and Store. It
turns SO_REUSEPORT off unless asked (so a second server cannot silently bind
the same port), honours the configured message size, and shuts down
gracefully: health goes NOT_SERVING, Watch streams end, in-flight calls get
``grace`` seconds to finish, then the store is closed.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

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
from policyd.engine import Engine
from policyd.errors import InvalidRequestError
from policyd.store.base import Store

LOG = logging.getLogger("policyd.api")

SERVICE_NAMES = (
    permission_service_pb2.DESCRIPTOR.services_by_name["PermissionService"].full_name,
    relationship_service_pb2.DESCRIPTOR.services_by_name["RelationshipService"].full_name,
    policy_service_pb2.DESCRIPTOR.services_by_name["PolicyService"].full_name,
)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """How to serve: address, auth, TLS, threads and limits.

    ``token`` None means no auth (the caller must have been told explicitly);
    ``tls_cert`` and ``tls_key`` are PEM bytes, both or neither.
    """

    listen: str = "127.0.0.1:50051"
    token: str | None = None
    tls_cert: bytes | None = None
    tls_key: bytes | None = None
    threads: int = 16
    reuse_port: bool = False
    limits: Limits = field(default_factory=Limits)


class PolicydServer:
    """A running (after ``start``) gRPC server over one Engine."""

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
        self.metrics = (
            Metrics(registry, revision=store.head_revision, engine_stats=engine.stats)
            if registry is not None
            else None
        )
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._stop_hooks: list[Callable[[], None]] = []
        interceptors: list[grpc.ServerInterceptor[Any, Any]] = [ObservingInterceptor(self.metrics)]
        if config.token is not None:
            interceptors.append(AuthInterceptor(config.token))
        limits = config.limits
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="policyd-grpc"),
            interceptors=interceptors,
            options=[
                ("grpc.so_reuseport", 1 if config.reuse_port else 0),
                ("grpc.max_receive_message_length", limits.max_message_bytes),
                ("grpc.max_send_message_length", limits.max_message_bytes),
            ],
        )
        permission_service_pb2_grpc.add_PermissionServiceServicer_to_server(
            PermissionServicer(engine, limits, self.metrics), self._server
        )
        relationship_service_pb2_grpc.add_RelationshipServiceServicer_to_server(
            RelationshipServicer(engine, store, limits, self._stopping), self._server
        )
        policy_service_pb2_grpc.add_PolicyServiceServicer_to_server(
            PolicyServicer(engine), self._server
        )
        self._health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server
        )
        self.port = self._bind()

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
                f"cannot listen on {self.config.listen}: {e}", field="listen"
            ) from e
        if port == 0:
            raise InvalidRequestError(f"cannot listen on {self.config.listen}", field="listen")
        return port

    @property
    def address(self) -> str:
        """``host:port`` with the port actually bound."""
        host = self.config.listen.rpartition(":")[0]
        return f"{host}:{self.port}"

    def start(self) -> None:
        """Start serving and report SERVING to health checks."""
        self._server.start()
        self._health.set("", health_pb2.HealthCheckResponse.SERVING)
        for name in SERVICE_NAMES:
            self._health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace: float = 10.0) -> None:
        """Stop accepting calls, let in-flight calls finish within ``grace``, close the store."""
        if self._stopping.is_set():
            self._stopped.wait(grace + 5)
            return
        self._stopping.set()
        self._health.enter_graceful_shutdown()
        self._server.stop(grace).wait(grace + 5)
        for hook in self._stop_hooks:
            hook()
        self.store.close()
        self._stopped.set()
        LOG.info("stopped")

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
