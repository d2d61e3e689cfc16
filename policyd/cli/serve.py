"""Package serve holds ``policyd serve``: its settings, one server process, and the supervisor.

The command parses its flags into one ``ServeSettings``. With ``--workers N``
the supervisor spawns N ``python -m policyd.cli.worker`` processes and hands
each the same settings as JSON (the token through ``POLICYD_TOKEN``, never on a
command line), so a flag added here reaches the workers with no more code.
It runs past 500 lines because serving has many flags, each an option and a
setting beside the checks of its value.
"""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import ipaddress
import json
import logging
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from policyd.cli.exits import EXIT_NO, EXIT_OK, CommandError, print_diagnostic
from policyd.cli.options import read_bytes, read_text, sqlite_file, store_options, store_url
from policyd.engine.cache import DEFAULT_CAPACITY
from policyd.errors import InvalidRequestError

if TYPE_CHECKING:
    from policyd.atproto import XrpcSettings
    from policyd.engine import Engine

MAX_WORKER_RESTARTS = 10
MIN_TOKEN_LENGTH = 16
WORKER_SETTINGS_ENV = "POLICYD_WORKER_SETTINGS"
"""The environment variable that carries a worker's ``ServeSettings`` as JSON."""

LOG = logging.getLogger("policyd")


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """Everything ``policyd serve`` was told, checked; a worker gets the same (as JSON)."""

    listen: str = "127.0.0.1:50051"
    metrics_listen: str = "127.0.0.1:9090"
    store: str = "policyd.db"
    insecure_no_auth: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    workers: int = 1
    policy: str | None = None
    threads: int = 16
    grace: float = 10.0
    max_message_bytes: int = 4 * 1024 * 1024
    max_depth: int = 50
    decision_cache_size: int = DEFAULT_CAPACITY
    index_snapshot: str | None = None
    """``--index-snapshot``: a file, "off", or None for the store's default."""
    log_level: str = "info"
    reuse_port: bool = False
    xrpc_listen: str | None = None
    service_did: str | None = None
    plc_url: str | None = None
    spaces_config: str | None = None
    insecure_loopback_http: bool = False
    read_dsn: str | None = None
    gc_every: float = 600.0
    gc_window: float = 86400.0

    def to_json(self) -> str:
        """The settings as a JSON object."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        """Settings written by ``to_json``."""
        return cls(**json.loads(text))

    def for_worker(self, index: int, listen: str) -> ServeSettings:
        """A worker's settings: the shared port, no metrics port of its own, XRPC on worker 0."""
        xrpc = index == 0
        return dataclasses.replace(
            self,
            listen=listen,
            reuse_port=True,
            workers=1,
            metrics_listen="off",
            policy=None,  # the supervisor wrote it once
            xrpc_listen=self.xrpc_listen if xrpc else None,
        )


def split_address(address: str, what: str = "listen") -> tuple[str, int]:
    """``HOST:PORT`` in its parts, or InvalidRequestError."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()):
        raise InvalidRequestError(f"expected HOST:PORT, got {address!r}", field=what)
    return host, int(port)


def _is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _count(_ctx: click.Context, param: click.Parameter, value: object) -> int:
    """A whole number, zero or more, said plainly when it is not."""
    text = str(value)
    if not (text.isascii() and text.isdigit()):
        raise click.BadParameter(f"expected a whole number, 0 or more, got {text!r}", param=param)
    return int(text)


@click.command()
@click.option(
    "--listen",
    default="127.0.0.1:50051",
    envvar="POLICYD_LISTEN",
    show_envvar=True,
    metavar="HOST:PORT",
    help="gRPC address (default: 127.0.0.1:50051; port 0 picks a free one)",
)
@click.option(
    "--metrics-listen",
    default="127.0.0.1:9090",
    envvar="POLICYD_METRICS_LISTEN",
    show_envvar=True,
    metavar="HOST:PORT|off",
    help="Prometheus /metrics address (default: 127.0.0.1:9090); 'off' disables it. "
    "With --workers N the one endpoint reports the sum of all workers",
)
@store_options(default="policyd.db")
@click.option(
    "--read-dsn",
    metavar="URL",
    help="a PostgreSQL hot standby of the store (streaming replication) for snapshot reads; "
    "writes, the head and the change log stay on the primary",
)
@click.option(
    "--gc-every",
    type=click.FloatRange(min=0),
    default=600.0,
    metavar="SECONDS",
    help="collect old row versions this often; 0 never (default: 600)",
)
@click.option(
    "--gc-window",
    type=click.FloatRange(min=0),
    default=86400.0,
    metavar="SECONDS",
    help="history kept readable for at_exact_snapshot and Watch (default: 86400)",
)
@click.option(
    "--token",
    envvar="POLICYD_TOKEN",
    show_envvar=True,
    help="preshared bearer token (default: $POLICYD_TOKEN)",
)
@click.option(
    "--insecure-no-auth",
    is_flag=True,
    help="serve without a token; anyone who can connect may read and write everything",
)
@click.option("--tls-cert", metavar="PEM", help="TLS certificate chain (gRPC, and XRPC if served)")
@click.option("--tls-key", metavar="PEM", help="TLS private key")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    help="server processes sharing the port and the database (default: 1)",
)
@click.option(
    "--policy", metavar="FILE", help="write this policy at start unless it is already in force"
)
@click.option("--threads", type=click.IntRange(min=1), default=16, help="threads per process")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=10.0,
    help="seconds in-flight calls get to finish on SIGTERM (default: 10)",
)
@click.option(
    "--max-message-bytes",
    type=click.IntRange(min=1024),
    default=4 * 1024 * 1024,
    help="largest request or response message (default: 4 MiB)",
)
@click.option("--max-depth", type=click.IntRange(min=1), default=50, help="deepest nesting")
@click.option(
    "--decision-cache-size",
    callback=_count,
    default=str(DEFAULT_CAPACITY),
    metavar="N",
    help=f"decisions each worker caches (default: {DEFAULT_CAPACITY:,}; 0 turns the cache off)",
)
@click.option(
    "--no-decision-cache",
    is_flag=True,
    help="compute every decision (--decision-cache-size 0), e.g. to measure cold checks",
)
@click.option(
    "--index-snapshot",
    metavar="FILE|off",
    help="the in-memory index is saved here and a restart loads it and replays the change "
    "log since, instead of reading every relationship (default: beside the SQLite file, "
    "DB.index; off for PostgreSQL and memory unless given)",
)
@click.option(
    "--log-level",
    default="info",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="log level (debug logs one line per request)",
)
@click.option("--reuse-port", is_flag=True, hidden=True)
@click.option(
    "--xrpc-listen",
    metavar="HOST:PORT",
    help="atproto spaces: serve com.atproto.simplespace.checkUserAccess over HTTP here "
    "(default: off; with --workers, worker 0 serves it)",
)
@click.option(
    "--service-did",
    metavar="DID#FRAGMENT",
    help="atproto spaces: this app's service identifier, the managingApp of its spaces and "
    "the aud of the service-auth tokens it accepts",
)
@click.option(
    "--plc-url", metavar="URL", help="PLC directory resolving did:plc (default: plc.directory)"
)
@click.option(
    "--spaces-config",
    metavar="YAML",
    help="settings of the request-to-check mapping, token checks and DID cache (README)",
)
@click.option(
    "--insecure-loopback-http",
    is_flag=True,
    help="for tests: fetch DID documents over plain HTTP from loopback hosts",
)
def serve(**_parsed: Any) -> int:
    """Serve the gRPC API and Prometheus metrics until SIGTERM or SIGINT.

    The store is a SQLite file (./policyd.db by default), a PostgreSQL URL or
    memory://. A bearer token is required (--token or POLICYD_TOKEN) unless
    --insecure-no-auth.

    Example: POLICYD_TOKEN=… policyd serve --policy policies/atproto.policy
    """
    ctx = click.get_current_context()
    settings = serve_settings(ctx)
    token = ctx.params["token"] or None
    _check(settings, token)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    _warn_about_exposure(settings, token)
    xrpc = xrpc_settings(settings)
    if settings.workers > 1:
        return _supervise(settings, token, xrpc)
    return serve_one(settings, token, xrpc)


def serve_settings(ctx: click.Context) -> ServeSettings:
    """The settings the parsed ``serve`` flags give."""
    params = dict(ctx.params)
    store = store_url(params.pop("store"), params.pop("db"), params.pop("dsn"), "policyd.db")
    assert store is not None
    params.pop("token")
    if params.pop("no_decision_cache"):
        source = ctx.get_parameter_source("decision_cache_size")
        if source is click.core.ParameterSource.COMMANDLINE and params["decision_cache_size"]:
            raise click.UsageError(
                "--no-decision-cache and --decision-cache-size exclude each other"
            )
        params["decision_cache_size"] = 0
    return ServeSettings(store=store, **params)


def index_snapshot(settings: ServeSettings) -> Path | None:
    """The index snapshot file ``--index-snapshot`` names, or the store's default (SQLite only)."""
    chosen = settings.index_snapshot
    if chosen == "off" or settings.store.startswith("memory:"):
        return None
    if chosen:
        return Path(chosen)
    database = sqlite_file(settings.store)
    return Path(f"{database}.index") if database is not None else None


def _check(settings: ServeSettings, token: str | None) -> None:
    """Refuse settings that cannot work, before anything starts; read the files named."""
    if token is None and not settings.insecure_no_auth:
        raise CommandError(
            "a bearer token is required: --token or POLICYD_TOKEN "
            "(or --insecure-no-auth to serve without one)"
        )
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise CommandError("--tls-cert and --tls-key go together")
    for path, what in ((settings.tls_cert, "TLS certificate"), (settings.tls_key, "TLS key")):
        if path:
            read_bytes(path, what)
    if settings.policy:
        read_text(settings.policy, "policy")
    if settings.spaces_config:
        read_text(settings.spaces_config, "spaces config")
    split_address(settings.listen)
    if settings.metrics_listen != "off":
        split_address(settings.metrics_listen, "metrics_listen")
    if settings.workers > 1 and settings.store.startswith("memory"):
        raise CommandError("--workers needs a shared store, not memory://")


def _warn_about_exposure(settings: ServeSettings, token: str | None) -> None:
    """Warn when the service is reachable beyond loopback without TLS, or has a weak token."""
    host, _port = split_address(settings.listen)
    if token is None:
        LOG.warning(
            "SERVING WITHOUT AUTHENTICATION (--insecure-no-auth): anyone who can reach "
            "%s can read and change every relationship and the policy",
            settings.listen,
        )
    elif len(token) < MIN_TOKEN_LENGTH:
        LOG.warning(
            "the bearer token is %d characters long; use at least %d random ones "
            "(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')",
            len(token),
            MIN_TOKEN_LENGTH,
        )
    if not _is_loopback(host) and not settings.tls_cert:
        LOG.warning(
            "listening on %s beyond loopback without TLS: the token and every answer cross "
            "the network in clear text (--tls-cert/--tls-key, or a TLS proxy in front)",
            settings.listen,
        )


def xrpc_settings(settings: ServeSettings) -> XrpcSettings | None:
    """The checkUserAccess settings of ``--xrpc-listen`` and its flags, checked; None without it."""
    if not settings.xrpc_listen:
        return None
    from policyd.atproto import XrpcSettings, load_config
    from policyd.atproto.did import DEFAULT_PLC_URL

    if not settings.service_did:
        raise InvalidRequestError(
            "--xrpc-listen needs --service-did: this app's did:…#fragment, the managingApp "
            "its spaces name",
            field="service_did",
        )
    xrpc = XrpcSettings(
        settings.xrpc_listen,
        settings.service_did,
        load_config(settings.spaces_config),
        settings.plc_url or DEFAULT_PLC_URL,
        settings.insecure_loopback_http,
        settings.tls_cert,
        settings.tls_key,
    )
    xrpc.validate()
    return xrpc


def ensure_policy(engine: Engine, path: str) -> None:
    """Write the policy file unless the same text is already in force."""
    from policyd.consistency import Consistency
    from policyd.errors import NotFoundError

    text = read_text(path, "policy")
    try:
        current, _revision = engine.read_policy(Consistency.fully_consistent())
    except NotFoundError:
        current = None
    if current != text:
        written = engine.write_policy(text, path)
        for warning in written.warnings:
            print_diagnostic(warning)
        LOG.info("wrote policy %s at revision %d", path, written.revision)


def serve_one(settings: ServeSettings, token: str | None, xrpc: XrpcSettings | None) -> int:
    """Run one server process until it is told to stop."""
    from prometheus_client import CollectorRegistry

    from policyd.api.limits import Limits
    from policyd.api.metrics import (
        MetricsPublisher,
        WorkerRegistry,
        multiprocess_dir,
        serve_metrics,
    )
    from policyd.api.server import PolicydServer, ServerConfig
    from policyd.engine import Engine
    from policyd.store import open_store

    store = open_store(settings.store, read_dsn=settings.read_dsn)
    engine = Engine(
        store,
        max_depth=settings.max_depth,
        cache_capacity=settings.decision_cache_size,
        index_snapshot=index_snapshot(settings),
    )
    if settings.policy:
        ensure_policy(engine, settings.policy)
    config = ServerConfig(
        listen=settings.listen,
        token=token,
        tls_cert=read_bytes(settings.tls_cert, "TLS certificate") if settings.tls_cert else None,
        tls_key=read_bytes(settings.tls_key, "TLS key") if settings.tls_key else None,
        threads=settings.threads,
        reuse_port=settings.reuse_port,
        limits=Limits(max_message_bytes=settings.max_message_bytes),
        gc_every=settings.gc_every,
        gc_window=timedelta(seconds=settings.gc_window),
    )
    # A worker of --workers N writes its metrics where the supervisor serves their sum.
    shared = WorkerRegistry() if multiprocess_dir() is not None else None
    registry = shared if shared is not None else CollectorRegistry()
    xrpc_server = None
    if xrpc is not None:
        from policyd.atproto import XrpcServer

        xrpc_server = XrpcServer(engine, xrpc, registry, grace=settings.grace)
    server = PolicydServer(engine, store, config, registry)
    if shared is not None:
        publisher = MetricsPublisher(shared)
        publisher.start()
        server.on_stop(publisher.stop)
    metrics_server = None
    if settings.metrics_listen != "off":
        metrics_server, metrics_port = serve_metrics(registry, settings.metrics_listen)
        host = settings.metrics_listen.rpartition(":")[0]
        click.echo(f"policyd metrics on http://{host}:{metrics_port}/metrics")
    if xrpc_server is not None:
        xrpc_server.start()
        server.on_stop(xrpc_server.stop)
        click.echo(f"policyd xrpc on {xrpc_server.url}")
    settle_collector()
    server.start()
    server.stop_on_signals(grace=settings.grace)
    click.echo(f"policyd listening on {server.address}")
    sys.stdout.flush()
    while not server.wait(1.0):
        pass
    if metrics_server is not None:
        metrics_server.shutdown()
    return EXIT_OK


COLLECT_EVERY = 100_000
"""Net new container objects between the cyclic collector's youngest-generation runs."""


def settle_collector() -> None:
    """Take what start-up loaded out of the cyclic collector's scans, and scan less often.

    A server holds the index, the policy and up to 100k cached decisions (each
    a few tuples and lists) for its whole life, and every request allocates
    thousands of short-lived objects that reference counting frees. At the
    default thresholds the collector kept rescanning the long-lived heap: a
    profile of distinct BatchCheck(100) calls had the collector as much of
    the difference between cache on and off, and with the heap frozen after
    start-up and a youngest generation of 100k objects one worker went from
    11.8-11.9k to 14.7-16.3k decisions/s with the cache on, p99 278-382 →
    56-62 ms (groups workload, scale 0.01, one Python client process on the
    same 2 cores, old and new server run back to back). Cycles are still
    collected, later.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(COLLECT_EVERY, 50, 100)
    release_free_memory()


def release_free_memory() -> None:
    """Hand the C allocator's free pages back to the system (glibc's ``malloc_trim``).

    Building the index from the store frees far more than it keeps (the id
    maps of the build), and glibc holds freed pages for reuse: a server that
    built its index held several times the RSS of one started from a
    snapshot of the same index. Elsewhere than glibc this does nothing.
    """
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def _free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host.strip("[]"), 0))
        port: int = probe.getsockname()[1]
        return port


def _supervise(settings: ServeSettings, token: str | None, xrpc: XrpcSettings | None) -> int:
    """Run ``--workers`` processes sharing the port (SO_REUSEPORT); forward SIGTERM to them.

    Worker 0 alone serves ``--xrpc-listen``, so that one replay cache sees every
    service-auth token (one process answers well past the target; README). The
    supervisor serves ``--metrics-listen``: the sum of every worker's metrics
    (api/metrics.py says how each one combines).
    """
    import signal
    import subprocess
    import time

    from policyd.api.metrics import SharedMetrics, serve_metrics
    from policyd.engine import Engine
    from policyd.store import open_store

    host, port = split_address(settings.listen)
    if port == 0:
        port = _free_port(host)
    if settings.policy or xrpc is not None:
        store = open_store(settings.store)
        try:
            if settings.policy:
                ensure_policy(Engine(store, index=False), settings.policy)
            if xrpc is not None:
                xrpc.check_policy(Engine(store, index=False))
        finally:
            store.close()
    env = dict(os.environ)
    env.pop("POLICYD_TOKEN", None)
    if token is not None:
        env["POLICYD_TOKEN"] = token
    shared = None
    if settings.metrics_listen != "off":
        shared = SharedMetrics()
        env.update(shared.environment())

    def spawn(index: int) -> subprocess.Popen[bytes]:
        worker = settings.for_worker(index, f"{host}:{port}")
        command = [sys.executable, "-m", "policyd.cli.worker"]
        return subprocess.Popen(command, env={**env, WORKER_SETTINGS_ENV: worker.to_json()})

    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in workers:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    metrics_server = None
    if shared is not None:
        metrics_server, metrics_port = serve_metrics(shared.registry, settings.metrics_listen)
        metrics_host = settings.metrics_listen.rpartition(":")[0]
        click.echo(f"policyd metrics on http://{metrics_host}:{metrics_port}/metrics")
    workers = [spawn(i) for i in range(settings.workers)]
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    click.echo(f"policyd listening on {host}:{port} with {settings.workers} workers")
    sys.stdout.flush()
    restarts = 0
    while not stopping:
        time.sleep(0.2)
        for i, child in enumerate(workers):
            if not stopping and child.poll() is not None:
                if shared is not None:
                    shared.worker_exited(child.pid)
                if restarts >= MAX_WORKER_RESTARTS:
                    LOG.error("worker %d exited with %s; giving up", i, child.returncode)
                    forward(signal.SIGTERM, None)
                    break
                LOG.warning("worker %d exited with %s; restarting", i, child.returncode)
                restarts += 1
                workers[i] = spawn(i)
    deadline = time.monotonic() + settings.grace + 10
    status = EXIT_OK
    for child in workers:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(10)
            status = EXIT_NO
    if metrics_server is not None:
        metrics_server.shutdown()
    if shared is not None:
        shared.close()
    return status


def run_worker() -> int:
    """A worker's life: its settings from the environment, then one server."""
    settings = ServeSettings.from_json(os.environ[WORKER_SETTINGS_ENV])
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    return serve_one(settings, os.environ.get("POLICYD_TOKEN") or None, xrpc_settings(settings))
