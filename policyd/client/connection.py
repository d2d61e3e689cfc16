"""``PolicydClient``: one channel to a server, its retry policy, and a method per RPC."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import grpc

from policyd.api.gen import (
    core_pb2,
    permission_service_pb2,
    permission_service_pb2_grpc,
    policy_service_pb2,
    policy_service_pb2_grpc,
    relationship_service_pb2,
    relationship_service_pb2_grpc,
)
from policyd.client.answers import Change, Listed, PolicyValidation, ReadResult
from policyd.client.messages import (
    PERMISSIONSHIPS,
    consistency_message,
    diagnostic_value,
    expand_node_value,
    explanation_value,
    filter_message,
    found_subject_value,
    object_message,
    precondition_message,
    relationship_message,
    relationship_value,
    struct_message,
    subject_message,
)
from policyd.client.rpc_errors import error_from_rpc
from policyd.consistency import Consistency
from policyd.decisions import (
    AudienceChange,
    CheckRequest,
    CheckResult,
    ExpandNode,
    FoundObject,
    FoundSubject,
)
from policyd.errors import (
    Diagnostic,
)
from policyd.filters import Precondition, RelationshipFilter
from policyd.relationship import (
    ObjectRef,
    Operation,
    Relationship,
    RelationshipUpdate,
    SubjectRef,
)

DEFAULT_TIMEOUT = 30.0

T = TypeVar("T")

_MAX_ATTEMPTS = 5
"""gRPC caps a retry policy's attempts at five (gRFC A6); more are silently cut to five."""


def _service_config(retries: int, backoff: float, max_backoff: float, wait_for_ready: bool) -> str:
    """A service config for every method: how calls retry and whether they wait for a server.

    UNAVAILABLE is retried ``retries`` times at most; with ``wait_for_ready`` a call
    waits (within its deadline) for a server still starting.
    """
    config: dict[str, object] = {"name": [{}], "waitForReady": wait_for_ready}
    if retries >= 1:
        config["retryPolicy"] = {
            "maxAttempts": min(_MAX_ATTEMPTS, retries + 1),
            "initialBackoff": f"{backoff}s",
            "maxBackoff": f"{max_backoff}s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        }
    return json.dumps({"methodConfig": [config]})


class PolicydClient:
    """A connection to one policyd server; thread-safe; close it (or use ``with``) when done.

    Args:
        target: ``host:port``.
        token: the preshared bearer token, unless the server runs without auth.
        tls: False for plaintext, True for TLS with the system roots, or PEM root
            certificates to trust.
        timeout: the deadline of each call, in seconds.
        retries: how many times a call that failed with UNAVAILABLE is retried (at most
            4: gRPC allows five attempts in all).
        backoff: the first retry's delay bound in seconds; each later one doubles, up to
            ``max_backoff`` (gRPC picks a random delay below the bound).
        wait_for_ready: wait for a server that cannot be reached yet (one starting up)
            until the call's deadline, instead of failing UNAVAILABLE at once.
    """

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls: bool | bytes = False,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = 4,
        backoff: float = 0.05,
        max_backoff: float = 2.0,
        tls_server_name: str | None = None,
        wait_for_ready: bool = False,
    ) -> None:
        options = [
            ("grpc.enable_retries", 1),
            (
                "grpc.service_config",
                _service_config(retries, backoff, max_backoff, wait_for_ready),
            ),
        ]
        if tls_server_name is not None:
            options.append(("grpc.ssl_target_name_override", tls_server_name))
        if tls is False:
            self._channel = grpc.insecure_channel(target, options=options)
        else:
            roots = tls if isinstance(tls, bytes) else None
            self._channel = grpc.secure_channel(
                target, grpc.ssl_channel_credentials(root_certificates=roots), options=options
            )
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout = timeout
        self._permissions = permission_service_pb2_grpc.PermissionServiceStub(self._channel)
        self._relationships = relationship_service_pb2_grpc.RelationshipServiceStub(self._channel)
        self._policies = policy_service_pb2_grpc.PolicyServiceStub(self._channel)

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def wait_until_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the channel to connect; whether it did.

        A server still starting (``policyd serve &`` just run) refuses connections
        for a moment; waiting here lets the first call find it up.
        """
        try:
            grpc.channel_ready_future(self._channel).result(timeout=max(0.0, timeout))
        except grpc.FutureTimeoutError:
            return False
        return True

    def __enter__(self) -> PolicydClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- plumbing

    def _call(self, method: Callable[..., T], request: Any) -> T:
        try:
            return method(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as e:
            raise error_from_rpc(e) from e

    def _stream(
        self, method: Callable[..., Iterable[T]], request: Any, timeout: float | None = -1.0
    ) -> Iterator[T]:
        deadline = self._timeout if timeout == -1.0 else timeout
        try:
            yield from method(request, metadata=self._metadata, timeout=deadline)
        except grpc.RpcError as e:
            raise error_from_rpc(e) from e

    # ---- permissions

    def check(
        self,
        resource: ObjectRef,
        permission: str,
        subject: SubjectRef,
        *,
        context: Mapping[str, Any] | None = None,
        consistency: Consistency | None = None,
        explain: bool = False,
    ) -> CheckResult:
        """Decide whether ``subject`` holds ``permission`` on ``resource``."""
        request = permission_service_pb2.CheckRequest(
            consistency=consistency_message(consistency),
            resource=object_message(resource),
            permission=permission,
            subject=subject_message(subject),
            context=struct_message(context or {}),
            explain=explain,
        )
        response = self._call(self._permissions.Check, request)
        return CheckResult(
            resource,
            permission,
            subject,
            PERMISSIONSHIPS[response.permissionship],
            response.consistency_token.token,
            tuple(response.missing_context),
            explanation_value(response.explanation) if response.HasField("explanation") else None,
        )

    def check_many(
        self, items: Sequence[CheckRequest], *, consistency: Consistency | None = None
    ) -> list[CheckResult]:
        """Decide many checks at one revision, in order."""
        request = permission_service_pb2.BatchCheckRequest(
            consistency=consistency_message(consistency),
            items=[
                permission_service_pb2.BatchCheckItem(
                    resource=object_message(item.resource),
                    permission=item.permission,
                    subject=subject_message(item.subject),
                    context=struct_message(item.context),
                )
                for item in items
            ],
        )
        response = self._call(self._permissions.BatchCheck, request)
        token = response.consistency_token.token
        return [
            CheckResult(
                item.resource,
                item.permission,
                item.subject,
                PERMISSIONSHIPS[r.permissionship],
                token,
                tuple(r.missing_context),
            )
            for item, r in zip(items, response.results, strict=True)
        ]

    def list_objects(
        self,
        resource_type: str,
        permission: str,
        subject: SubjectRef,
        *,
        context: Mapping[str, Any] | None = None,
        consistency: Consistency | None = None,
        limit: int = 0,
        cursor: str = "",
    ) -> Iterator[Listed[FoundObject]]:
        """Stream the resources of a type on which the subject holds the permission."""
        request = permission_service_pb2.ListObjectsRequest(
            consistency=consistency_message(consistency),
            resource_type=resource_type,
            permission=permission,
            subject=subject_message(subject),
            context=struct_message(context or {}),
            limit=limit,
            cursor=cursor,
        )
        for r in self._stream(self._permissions.ListObjects, request):
            found = FoundObject(
                r.resource_id, PERMISSIONSHIPS[r.permissionship], tuple(r.missing_context)
            )
            yield Listed(found, r.consistency_token.token, r.after_cursor)

    def list_subjects(
        self,
        resource: ObjectRef,
        permission: str,
        subject_type: str,
        subject_relation: str | None = None,
        *,
        context: Mapping[str, Any] | None = None,
        consistency: Consistency | None = None,
        limit: int = 0,
        cursor: str = "",
    ) -> Iterator[Listed[FoundSubject]]:
        """Stream the subjects of a type that hold the permission on the resource."""
        request = permission_service_pb2.ListSubjectsRequest(
            consistency=consistency_message(consistency),
            resource=object_message(resource),
            permission=permission,
            subject_type=subject_type,
            optional_subject_relation=subject_relation or "",
            context=struct_message(context or {}),
            limit=limit,
            cursor=cursor,
        )
        for r in self._stream(self._permissions.ListSubjects, request):
            yield Listed(found_subject_value(r), r.consistency_token.token, r.after_cursor)

    def watch_permission(
        self,
        resource: ObjectRef,
        permission: str,
        subject_type: str,
        subject_relation: str | None = None,
        *,
        after: str | None = None,
        consistency: Consistency | None = None,
        timeout: float | None = None,
    ) -> Iterator[AudienceChange]:
        """Stream who holds the permission: the subjects first, then each revision's change.

        Each AudienceChange is whole (a restatement's pages are joined): fold them
        into an ``Audience``. Resume with ``after`` set to the last change's token
        (the listing is then not repeated). The stream runs until ``timeout``
        seconds pass (None: until closed or the server stops).
        """
        request = permission_service_pb2.WatchPermissionRequest(
            resource=object_message(resource),
            permission=permission,
            subject_type=subject_type,
            optional_subject_relation=subject_relation or "",
            consistency=consistency_message(consistency),
        )
        if after is not None:
            request.optional_after_token.token = after
        subjects: list[FoundSubject] = []
        reset = False
        for r in self._stream(self._permissions.WatchPermission, request, timeout):
            reset = reset or r.reset
            subjects.extend(found_subject_value(s) for s in r.subjects)
            if r.complete:
                yield AudienceChange(r.consistency_token.token, tuple(subjects), reset)
                subjects, reset = [], False

    def expand(
        self, resource: ObjectRef, permission: str, *, consistency: Consistency | None = None
    ) -> tuple[ExpandNode, str]:
        """The userset tree of ``resource#permission`` and the token of its revision."""
        request = permission_service_pb2.ExpandRequest(
            consistency=consistency_message(consistency),
            resource=object_message(resource),
            permission=permission,
        )
        response = self._call(self._permissions.Expand, request)
        return expand_node_value(response.tree), response.consistency_token.token

    # ---- relationships

    def write(
        self,
        updates: Sequence[RelationshipUpdate],
        preconditions: Sequence[Precondition] = (),
    ) -> str:
        """Apply updates atomically; returns the consistency token of the write."""
        operations = {
            Operation.CREATE: core_pb2.RelationshipUpdate.OPERATION_CREATE,
            Operation.TOUCH: core_pb2.RelationshipUpdate.OPERATION_TOUCH,
            Operation.DELETE: core_pb2.RelationshipUpdate.OPERATION_DELETE,
        }
        request = relationship_service_pb2.WriteRelationshipsRequest(
            updates=[
                core_pb2.RelationshipUpdate(
                    operation=operations[u.operation],
                    relationship=relationship_message(u.relationship),
                )
                for u in updates
            ],
            preconditions=[precondition_message(p) for p in preconditions],
        )
        return self._call(self._relationships.WriteRelationships, request).consistency_token.token

    def touch(self, relationships: Iterable[Relationship]) -> str:
        """Create or replace relationships; returns the token."""
        return self.write([RelationshipUpdate(Operation.TOUCH, r) for r in relationships])

    def delete(self, relationship_filter: RelationshipFilter, limit: int = 0) -> tuple[str, int]:
        """Delete what the filter matches (at most ``limit``); returns the token and the count."""
        request = relationship_service_pb2.DeleteRelationshipsRequest(
            filter=filter_message(relationship_filter), limit=limit
        )
        response = self._call(self._relationships.DeleteRelationships, request)
        return response.consistency_token.token, response.deleted_count

    def read(
        self,
        relationship_filter: RelationshipFilter | None = None,
        *,
        consistency: Consistency | None = None,
        limit: int = 0,
        cursor: str = "",
    ) -> Iterator[ReadResult]:
        """Stream the relationships the filter matches, in key order."""
        request = relationship_service_pb2.ReadRelationshipsRequest(
            consistency=consistency_message(consistency),
            filter=filter_message(relationship_filter or RelationshipFilter()),
            limit=limit,
            cursor=cursor,
        )
        for r in self._stream(self._relationships.ReadRelationships, request):
            yield ReadResult(
                relationship_value(r.relationship), r.consistency_token.token, r.after_cursor
            )

    def watch(self, after: str | None = None, *, timeout: float | None = None) -> Iterator[Change]:
        """Stream changes after the token ``after`` (or from now), one Change per revision.

        The stream runs until ``timeout`` seconds pass (None: until closed or the
        server stops); resume with the last Change's token.
        """
        request = relationship_service_pb2.WatchRequest()
        if after is not None:
            request.optional_start_token.token = after
        kinds = {
            relationship_service_pb2.WatchUpdate.KIND_TOUCH: "touch",
            relationship_service_pb2.WatchUpdate.KIND_DELETE: "delete",
            relationship_service_pb2.WatchUpdate.KIND_POLICY: "policy",
        }
        for r in self._stream(self._relationships.Watch, request, timeout):
            yield Change(
                r.changes_through.token,
                tuple(
                    (
                        kinds.get(u.kind, "unknown"),
                        relationship_value(u.relationship) if u.HasField("relationship") else None,
                    )
                    for u in r.updates
                ),
            )

    def import_relationships(
        self, relationships: Iterable[Relationship], chunk_size: int = 500
    ) -> tuple[str, int]:
        """Load new relationships in one transaction; returns the token and the count.

        An error raised while iterating ``relationships`` (a malformed line of a
        file being streamed) cancels the call, and is raised here as it was,
        not as grpc's "Exception iterating requests!".
        """
        failed: list[Exception] = []

        def chunks() -> Iterator[relationship_service_pb2.ImportRelationshipsRequest]:
            chunk: list[core_pb2.Relationship] = []
            try:
                for relationship in relationships:
                    chunk.append(relationship_message(relationship))
                    if len(chunk) >= chunk_size:
                        yield relationship_service_pb2.ImportRelationshipsRequest(
                            relationships=chunk
                        )
                        chunk = []
            except Exception as e:
                failed.append(e)
                raise
            if chunk:
                yield relationship_service_pb2.ImportRelationshipsRequest(relationships=chunk)

        try:
            response = self._relationships.ImportRelationships(
                chunks(), metadata=self._metadata, timeout=None
            )
        except grpc.RpcError as e:  # not retried: the request stream is consumed
            if failed:
                raise failed[0] from None
            raise error_from_rpc(e) from e
        return response.consistency_token.token, response.loaded_count

    def export_relationships(
        self, *, consistency: Consistency | None = None
    ) -> Iterator[Relationship]:
        """Stream every live relationship at one revision, in key order."""
        request = relationship_service_pb2.ExportRelationshipsRequest(
            consistency=consistency_message(consistency)
        )
        for r in self._stream(self._relationships.ExportRelationships, request, None):
            yield from (relationship_value(m) for m in r.relationships)

    # ---- policy

    def write_policy(self, text: str, source_name: str = "") -> tuple[str, tuple[Diagnostic, ...]]:
        """Store a policy; returns the token and the compiler's warnings."""
        request = policy_service_pb2.WritePolicyRequest(policy=text, source_name=source_name)
        response = self._call(self._policies.WritePolicy, request)
        return response.consistency_token.token, tuple(
            diagnostic_value(w) for w in response.warnings
        )

    def read_policy(self, *, consistency: Consistency | None = None) -> tuple[str, str]:
        """The policy text in force and the token of the revision it was read at."""
        request = policy_service_pb2.ReadPolicyRequest(consistency=consistency_message(consistency))
        response = self._call(self._policies.ReadPolicy, request)
        return response.policy, response.consistency_token.token

    def validate_policy(self, text: str, source_name: str = "") -> PolicyValidation:
        """The dry run of ``write_policy``: compile and check against stored data, store nothing."""
        request = policy_service_pb2.ValidatePolicyRequest(policy=text, source_name=source_name)
        response = self._call(self._policies.ValidatePolicy, request)
        return PolicyValidation(
            response.valid,
            tuple(diagnostic_value(d) for d in response.diagnostics),
            tuple(response.blockers),
        )
