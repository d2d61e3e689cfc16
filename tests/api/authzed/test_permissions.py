from __future__ import annotations

from typing import Any

import grpc
import pytest
from authzed.api.v1 import InsecureClient, core_pb2, debug_pb2
from authzed.api.v1 import permission_service_pb2 as pb
from google.rpc import error_details_pb2, status_pb2

from policyd.client import PolicydClient
from policyd.consistency import Consistency
from policyd.relationship import parse_object, parse_relationship, parse_subject
from tests.api.authzed.scenario import FULL, obj, sub


def fresh(token: str) -> pb.Consistency:
    return pb.Consistency(at_least_as_fresh=core_pb2.ZedToken(token=token))


def failure(call: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value


def reason(error: grpc.RpcError) -> str:
    """The ErrorInfo reason in the call's grpc-status-details-bin."""
    (details,) = [m.value for m in error.trailing_metadata() if m.key == "grpc-status-details-bin"]
    assert isinstance(details, bytes)
    status = status_pb2.Status.FromString(details)
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert status.code == error.code().value[0]
    assert info.domain == "authzed.com"
    return str(info.reason)


@pytest.mark.parametrize(
    ("resource", "permission", "subject", "code", "expected"),
    [
        ("nope:1", "view", "user:a", "FAILED_PRECONDITION", "ERROR_REASON_UNKNOWN_DEFINITION"),
        (
            "doc:1",
            "nope",
            "user:a",
            "FAILED_PRECONDITION",
            "ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION",
        ),
        ("doc:1", "view", "user:*", "INVALID_ARGUMENT", "ERROR_REASON_WILDCARD_NOT_ALLOWED"),
        ("doc:a b", "view", "user:a", "INVALID_ARGUMENT", "ERROR_REASON_UNSPECIFIED"),
    ],
    ids=["unknown-definition", "unknown-permission", "wildcard-subject", "malformed-id"],
)
def test_errors_carry_spicedb_reasons(
    authzed: InsecureClient,
    written: str,
    resource: str,
    permission: str,
    subject: str,
    code: str,
    expected: str,
) -> None:
    error = failure(
        lambda: authzed.CheckPermission(
            pb.CheckPermissionRequest(
                resource=obj(resource), permission=permission, subject=sub(subject)
            )
        )
    )
    assert error.code().name == code
    assert reason(error) == expected


def test_zedtokens_are_policyd_tokens_both_ways(
    authzed: InsecureClient, written: str, client: PolicydClient
) -> None:
    token = client.touch([parse_relationship("doc:new#viewer@user:zoe")])
    allowed = authzed.CheckPermission(
        pb.CheckPermissionRequest(
            consistency=fresh(token),
            resource=obj("doc:new"),
            permission="view",
            subject=sub("user:zoe"),
        )
    )
    assert allowed.permissionship == pb.CheckPermissionResponse.PERMISSIONSHIP_HAS_PERMISSION
    decision = client.check(
        parse_object("doc:d1"),
        "view",
        parse_subject("user:alice"),
        consistency=Consistency.at_least_as_fresh(written),
    )
    assert decision.allowed


def test_a_check_with_tracing_has_spicedb_s_trace(authzed: InsecureClient, written: str) -> None:
    response = authzed.CheckPermission(
        pb.CheckPermissionRequest(
            consistency=fresh(written),
            resource=obj("doc:d1"),
            permission="view",
            subject=sub("user:bob"),
            with_tracing=True,
        )
    )
    trace = response.debug_trace.check
    assert (trace.resource.object_id, trace.permission) == ("d1", "view")
    assert trace.permission_type == debug_pb2.CheckDebugTrace.PERMISSION_TYPE_PERMISSION
    assert trace.result == debug_pb2.CheckDebugTrace.PERMISSIONSHIP_HAS_PERMISSION
    assert trace.sub_problems.traces  # the members it checked beneath
    assert "definition doc" in response.debug_trace.schema_used


def test_every_lookup_cursor_resumes_after_its_answer(
    authzed: InsecureClient, written: str
) -> None:
    def lookup(limit: int = 0, cursor: core_pb2.Cursor | None = None) -> list[Any]:
        return list(
            authzed.LookupResources(
                pb.LookupResourcesRequest(
                    consistency=fresh(written),
                    resource_object_type="doc",
                    permission="view",
                    subject=sub("user:alice"),
                    optional_limit=limit,
                    optional_cursor=cursor,
                )
            )
        )

    everything = [r.resource_object_id for r in lookup()]
    assert everything == [f"d{i}" for i in range(7)]
    page = lookup(limit=4)
    for i, answer in enumerate(page):  # from any answer's cursor, the rest follows
        rest = [r.resource_object_id for r in lookup(cursor=answer.after_result_cursor)]
        assert rest == everything[i + 1 :]


def test_a_cursor_of_another_request_is_refused(authzed: InsecureClient, written: str) -> None:
    first = next(
        iter(
            authzed.LookupResources(
                pb.LookupResourcesRequest(
                    consistency=fresh(written),
                    resource_object_type="doc",
                    permission="view",
                    subject=sub("user:alice"),
                    optional_limit=1,
                )
            )
        )
    )
    for cursor in (first.after_result_cursor, core_pb2.Cursor(token="garbage")):
        error = failure(
            lambda c=cursor: list(
                authzed.LookupResources(
                    pb.LookupResourcesRequest(
                        resource_object_type="doc",
                        permission="edit",
                        subject=sub("user:alice"),
                        optional_cursor=c,
                    )
                )
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert reason(error) == "ERROR_REASON_INVALID_CURSOR"


def test_expirations_round_trip(authzed: InsecureClient, written: str) -> None:
    (found,) = authzed.ReadRelationships(
        pb.ReadRelationshipsRequest(
            consistency=fresh(written),
            relationship_filter=pb.RelationshipFilter(
                resource_type="doc", optional_relation="editor"
            ),
        )
    )
    assert found.relationship.optional_expires_at.ToJsonString() == "2100-01-01T00:00:00Z"


def test_deletes_by_prefix_under_a_precondition(authzed: InsecureClient, written: str) -> None:
    response = authzed.DeleteRelationships(
        pb.DeleteRelationshipsRequest(
            relationship_filter=pb.RelationshipFilter(
                resource_type="doc", optional_resource_id_prefix="d", optional_relation="viewer"
            ),
            optional_preconditions=[
                pb.Precondition(
                    operation=pb.Precondition.OPERATION_MUST_MATCH,
                    filter=pb.RelationshipFilter(resource_type="group"),
                )
            ],
        )
    )
    assert response.relationships_deleted_count == 9  # d0..d6 alice, d2 wildcard, d3 erin
    assert response.deletion_progress == pb.DeleteRelationshipsResponse.DELETION_PROGRESS_COMPLETE
    left = list(
        authzed.ReadRelationships(
            pb.ReadRelationshipsRequest(
                consistency=fresh(response.deleted_at.token),
                relationship_filter=pb.RelationshipFilter(
                    resource_type="doc", optional_relation="viewer"
                ),
            )
        )
    )
    assert left == []


def test_export_pages_resume_from_their_cursor(authzed: InsecureClient, written: str) -> None:
    def export(cursor: core_pb2.Cursor | None) -> list[Any]:
        return list(
            authzed.ExportBulkRelationships(
                pb.ExportBulkRelationshipsRequest(
                    consistency=FULL, optional_limit=5, optional_cursor=cursor
                )
            )
        )

    seen: list[str] = []
    cursor = None
    while batches := export(cursor):
        for batch in batches:  # page_size 2 in this server: batches of 2
            assert len(batch.relationships) <= 2
            seen.extend(str(r) for r in batch.relationships)
        cursor = batches[-1].after_result_cursor
    assert len(seen) == len(set(seen)) == 14
