"""Package authzed serves SpiceDB's API, authzed.api.v1, beside policyd.v1 on the same server.

SpiceDB's official clients (``@authzed/authzed-node``, ``authzed`` for Python,
authzed-go, authzed-java, authzed-rb) then work against policyd unchanged,
with the same bearer token and port. The servicers derive from the base
classes the ``authzed`` PyPI package generates (no protos are vendored) and
translate to the same Engine calls the policyd.v1 servicers make; nothing
here decides anything. SpiceDB's shapes are kept where clients see them: its
status codes, messages and ErrorInfo reasons (errors.py), ZedTokens (policyd
consistency tokens as they are), cursors (cursors.py), per-item errors in
CheckBulkPermissions, caveat context and partial results, expirations, debug
traces. Object ids may be DIDs and AT-URIs: the id grammar is SpiceDB's
widened with ``:``, ``.``, ``~`` and ``%`` (``errors.ID_PATTERN``).
"""

from __future__ import annotations

from typing import Any

from authzed.api.v1 import (
    permission_service_pb2,
    permission_service_pb2_grpc,
    schema_service_pb2,
    schema_service_pb2_grpc,
    watch_service_pb2,
    watch_service_pb2_grpc,
)

from policyd.api.authzed.permissions import PermissionsServicer
from policyd.api.authzed.schema import SchemaServicer
from policyd.api.authzed.watch import WatchServicer
from policyd.api.limits import Limits
from policyd.api.metrics import Metrics
from policyd.api.scheduling import Threads
from policyd.api.watch import ChangeFeed
from policyd.engine import Engine
from policyd.store.base import Store

SERVICE_NAMES = (
    permission_service_pb2.DESCRIPTOR.services_by_name["PermissionsService"].full_name,
    schema_service_pb2.DESCRIPTOR.services_by_name["SchemaService"].full_name,
    watch_service_pb2.DESCRIPTOR.services_by_name["WatchService"].full_name,
)


def add_authzed_services(
    server: Any,
    engine: Engine,
    store: Store,
    limits: Limits,
    feed: ChangeFeed,
    writes: Threads,
    reads: Threads,
    metrics: Metrics | None = None,
) -> None:
    """Register PermissionsService, SchemaService and WatchService on a grpc.aio server."""
    permission_service_pb2_grpc.add_PermissionsServiceServicer_to_server(
        PermissionsServicer(engine, store, limits, feed, writes, reads, metrics), server
    )
    schema_service_pb2_grpc.add_SchemaServiceServicer_to_server(
        SchemaServicer(engine, store, writes, reads), server
    )
    watch_service_pb2_grpc.add_WatchServiceServicer_to_server(WatchServicer(engine, feed), server)


__all__ = ["SERVICE_NAMES", "add_authzed_services"]
