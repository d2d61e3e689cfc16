"""Every RPC through a real gRPC server on loopback, driven by the Python client."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import CollectorRegistry

from policyd.api.gen import permission_service_pb2, permission_service_pb2_grpc
from policyd.api.server import PolicydServer, ServerConfig
from policyd.client import Change, PolicydClient
from policyd.consistency import Consistency
from policyd.decisions import CheckRequest, ExpandKind, Permissionship
from policyd.engine import Engine
from policyd.errors import (
    AlreadyExistsError,
    InvalidRelationshipError,
    InvalidRequestError,
    NotFoundError,
    PolicyChangeRefusedError,
    PolicydError,
    PolicyErrors,
    PreconditionFailedError,
    RevisionUnavailableError,
    UnauthenticatedError,
)
from policyd.filters import Precondition, RelationshipFilter
from policyd.relationship import (
    ObjectRef,
    Operation,
    Relationship,
    RelationshipUpdate,
    SubjectRef,
    parse_object,
    parse_relationship,
    parse_subject,
)
from policyd.store.memory import MemoryStore
from policyd.tokens import TokenCodec
from tests.api.sample import POLICY, RELATIONSHIPS

POST1 = parse_object("post:at://did:plc:alice/app.bsky.feed.post/1")
POST2 = parse_object("post:at://did:plc:dave/app.bsky.feed.post/2")
ALICE = parse_subject("account:did:plc:alice")
BOB = parse_subject("account:did:plc:bob")
CAROL = parse_subject("account:did:plc:carol")
MALLORY = parse_subject("account:did:plc:mallory")
GRANT = parse_relationship("space:dogs#member@account:did:plc:erin")


@pytest.mark.parametrize(
    ("resource", "subject", "expected"),
    [
        (POST1, ALICE, Permissionship.HAS_PERMISSION),
        (POST1, BOB, Permissionship.HAS_PERMISSION),
        (POST1, CAROL, Permissionship.HAS_PERMISSION),
        (POST1, MALLORY, Permissionship.NO_PERMISSION),
        (POST2, MALLORY, Permissionship.HAS_PERMISSION),
    ],
    ids=["author", "member", "nested-member", "banned", "public"],
)
def test_check(
    client: PolicydClient,
    loaded: str,
    resource: ObjectRef,
    subject: SubjectRef,
    expected: Permissionship,
) -> None:
    decision = client.check(
        resource, "view", subject, consistency=Consistency.at_least_as_fresh(loaded)
    )
    assert decision.permissionship is expected
    assert decision.token


def test_check_conditional_names_missing_context(client: PolicydClient, loaded: str) -> None:
    creator = parse_object("creator:zoe")
    decision = client.check(creator, "gold_content", BOB, context={"now": "2025-01-01T00:00:00Z"})
    assert decision.permissionship is Permissionship.CONDITIONAL
    assert decision.missing == ("expires",)
    granted = client.check(
        creator,
        "gold_content",
        BOB,
        context={"now": "2025-01-01T00:00:00Z", "expires": "2026-01-01T00:00:00Z"},
    )
    assert granted.allowed


def test_check_explain(client: PolicydClient, loaded: str) -> None:
    decision = client.check(POST1, "view", CAROL, explain=True)
    assert decision.explanation is not None
    assert decision.explanation.what == f"{POST1}#view"
    assert decision.explanation.result is Permissionship.HAS_PERMISSION
    assert decision.explanation.children


def test_write_token_makes_check_see_it(client: PolicydClient, loaded: str) -> None:
    dan = parse_subject("account:did:plc:dan")
    assert not client.check(POST1, "view", dan, consistency=Consistency.fully_consistent()).allowed
    token = client.touch([parse_relationship(f"space:kittens#member@{dan}")])
    decision = client.check(POST1, "view", dan, consistency=Consistency.at_least_as_fresh(token))
    assert decision.allowed


def test_batch_check_answers_in_order(client: PolicydClient, loaded: str) -> None:
    items = [CheckRequest(POST1, "view", s) for s in (ALICE, MALLORY, CAROL)]
    decisions = client.check_many(items)
    assert [d.allowed for d in decisions] == [True, False, True]
    assert len({d.token for d in decisions}) == 1


def test_batch_check_error_names_the_item(client: PolicydClient, loaded: str) -> None:
    items = [CheckRequest(POST1, "view", ALICE), CheckRequest(POST1, "nope", ALICE)]
    with pytest.raises(InvalidRequestError) as caught:
        client.check_many(items)
    assert caught.value.field == "items[1].permission"


def test_list_objects_streams_every_page(client: PolicydClient, loaded: str) -> None:
    found = list(client.list_objects("post", "view", ALICE))
    assert [f.found.resource_id for f in found] == sorted([POST1.id, POST2.id])


def test_list_objects_limit_and_cursor(client: PolicydClient, loaded: str) -> None:
    token = client.touch(
        parse_relationship(f"post:p{i}#viewer@account:did:plc:erin") for i in range(5)
    )
    erin = parse_subject("account:did:plc:erin")
    consistency = Consistency.at_least_as_fresh(token)
    expected = sorted([POST2.id, "p0", "p1", "p2", "p3", "p4"])  # POST2 is public
    first = list(client.list_objects("post", "view", erin, limit=3, consistency=consistency))
    assert [f.found.resource_id for f in first] == expected[:3]
    assert first[-1].after_cursor
    assert not any(f.after_cursor for f in first[:-1])
    rest = list(client.list_objects("post", "view", erin, cursor=first[-1].after_cursor))
    assert [f.found.resource_id for f in rest] == expected[3:]


def test_list_subjects_with_wildcard_exclusions(client: PolicydClient, loaded: str) -> None:
    found = {str(f.found.subject): f for f in client.list_subjects(POST1, "view", "account")}
    assert set(found) == {str(ALICE), str(BOB), str(CAROL)}
    public = {str(f.found.subject) for f in client.list_subjects(POST2, "view", "account")}
    assert "account:*" in public


def test_expand_tree(client: PolicydClient, loaded: str) -> None:
    tree, token = client.expand(POST1, "view")
    assert token
    assert tree.kind is ExpandKind.UNION
    assert tree.target == f"{POST1}#view"
    leaves = [c for c in tree.children if c.kind is ExpandKind.LEAF and c.relationships]
    assert any(str(r.subject) == str(ALICE) for leaf in leaves for r in leaf.relationships)


def test_create_existing_is_already_exists(client: PolicydClient, loaded: str) -> None:
    existing = parse_relationship(RELATIONSHIPS[0])
    with pytest.raises(AlreadyExistsError):
        client.write([RelationshipUpdate(Operation.CREATE, existing)])


def test_preconditions(client: PolicydClient, loaded: str) -> None:
    new = parse_relationship("space:cats#moderator@account:did:plc:bob")
    must_not = Precondition.must_not_match(
        RelationshipFilter(resource_type="space", relation="owner")
    )
    with pytest.raises(PreconditionFailedError):
        client.write([RelationshipUpdate(Operation.TOUCH, new)], [must_not])
    must = Precondition.must_match(RelationshipFilter(resource_type="space", relation="owner"))
    assert client.write([RelationshipUpdate(Operation.TOUCH, new)], [must])


def test_delete_with_filter_and_limit(client: PolicydClient, loaded: str) -> None:
    _, deleted = client.delete(
        RelationshipFilter(resource_type="space", relation="member"), limit=2
    )
    assert deleted == 2
    token, deleted = client.delete(RelationshipFilter(resource_type="space", relation="member"))
    assert deleted == 2
    remaining = client.read(
        RelationshipFilter(resource_type="space", relation="member"),
        consistency=Consistency.at_least_as_fresh(token),
    )
    assert list(remaining) == []


def test_read_pages_and_resumes(client: PolicydClient, loaded: str) -> None:
    everything = [r.relationship for r in client.read()]
    assert sorted(str(r) for r in everything) == sorted(RELATIONSHIPS)
    assert [r.key for r in everything] == sorted(r.key for r in everything)
    first = list(client.read(limit=3))
    assert len(first) == 3
    rest = list(client.read(cursor=first[-1].after_cursor))
    assert [r.relationship for r in first + rest] == everything


def test_watch_resumes_from_a_token(client: PolicydClient, loaded: str) -> None:
    changes: list[Change] = []

    def watch(after: str, count: int) -> None:
        for change in client.watch(after, timeout=10):
            changes.append(change)
            if len(changes) >= count:
                return

    start = loaded
    first = parse_relationship("space:dogs#member@account:did:plc:bob")
    second = parse_relationship("space:dogs#member@account:did:plc:carol")
    t1 = client.touch([first])
    client.touch([second])
    watch(start, 2)
    assert [c.updates[0][1] for c in changes] == [first, second]
    assert changes[0].token == t1
    changes.clear()
    watch(t1, 1)  # resume after the first change: only the second comes again
    assert [c.updates for c in changes] == [(("touch", second),)]


def test_watch_sees_live_writes(client: PolicydClient, loaded: str) -> None:
    seen: list[Change] = []
    done = threading.Event()

    def run() -> None:
        for change in client.watch(loaded, timeout=10):
            seen.append(change)
            if any(kind == "delete" for kind, _ in change.updates):
                break
        done.set()

    thread = threading.Thread(target=run)
    thread.start()
    rel = parse_relationship("space:dogs#owner@account:did:plc:alice")
    client.touch([rel])
    client.write([RelationshipUpdate(Operation.DELETE, rel)])
    assert done.wait(10)
    thread.join(10)
    assert [u for c in seen for u in c.updates] == [("touch", rel), ("delete", rel)]


def test_import_then_export_round_trip(client: PolicydClient) -> None:
    client.write_policy(POLICY)
    relationships = [parse_relationship(f"space:s{i}#member@account:did:plc:{i}") for i in range(7)]
    token, count = client.import_relationships(relationships, chunk_size=3)
    assert count == 7
    exported = list(client.export_relationships(consistency=Consistency.at_least_as_fresh(token)))
    assert sorted(exported, key=lambda r: r.key) == sorted(relationships, key=lambda r: r.key)


def test_import_duplicate_fails_whole(client: PolicydClient, loaded: str) -> None:
    fresh = parse_relationship("space:new#member@account:did:plc:x")
    with pytest.raises(AlreadyExistsError):
        client.import_relationships([fresh, parse_relationship(RELATIONSHIPS[0])])
    assert not list(
        client.read(
            RelationshipFilter(resource_id="new"), consistency=Consistency.fully_consistent()
        )
    )


def test_caveat_context_and_expiry_round_trip(client: PolicydClient, loaded: str) -> None:
    text = (
        "creator:zoe#silver@account:did:plc:erin"
        '[active_subscription:{"expires":"2030-01-01T00:00:00Z"}]'
    )
    rel = parse_relationship(text)
    token = client.touch([rel])
    [read] = [
        r.relationship
        for r in client.read(
            RelationshipFilter(resource_type="creator", relation="silver"),
            consistency=Consistency.at_least_as_fresh(token),
        )
    ]
    assert read == rel
    assert str(read) == str(rel)
    assert read.caveat_context == {"expires": "2030-01-01T00:00:00Z"}


def test_policy_write_read_validate(client: PolicydClient) -> None:
    with pytest.raises(NotFoundError):
        client.read_policy()
    token, warnings = client.write_policy(POLICY, "atproto.policy")
    assert warnings == ()
    text, read_token = client.read_policy(consistency=Consistency.at_least_as_fresh(token))
    assert text == POLICY
    assert read_token == token
    assert client.validate_policy(POLICY).valid


def test_invalid_policy_is_refused_with_diagnostics(client: PolicydClient) -> None:
    bad = "definition account {\n  relation friend: nope\n}\n"
    result = client.validate_policy(bad, "bad.policy")
    assert not result.valid
    assert result.diagnostics[0].span.file == "bad.policy"
    assert result.diagnostics[0].span.line == 2
    with pytest.raises(PolicyErrors) as caught:
        client.write_policy(bad, "bad.policy")
    assert caught.value.diagnostics == result.diagnostics


def test_syntax_error_is_a_diagnostic(client: PolicydClient) -> None:
    result = client.validate_policy("definition {", "x.policy")
    assert not result.valid
    assert result.diagnostics[0].code == "syntax-error"


def test_orphaning_policy_change_is_refused(client: PolicydClient, loaded: str) -> None:
    smaller = "definition account {}\n"
    with pytest.raises(PolicyChangeRefusedError) as caught:
        client.write_policy(smaller)
    assert caught.value.blockers


def test_future_token_is_revision_unavailable(
    server: PolicydServer, client: PolicydClient, loaded: str
) -> None:
    future = TokenCodec(server.store.identity).token(10**6)
    with pytest.raises(RevisionUnavailableError) as caught:
        client.check(POST1, "view", ALICE, consistency=Consistency.at_exact_snapshot(future))
    assert caught.value.field == "consistency.token"


@pytest.fixture
def other_client(registry: CollectorRegistry) -> Iterator[PolicydClient]:
    """A client of a second server over another store, loaded like the first."""
    store = MemoryStore()
    other = PolicydServer(Engine(store), store, ServerConfig(listen="127.0.0.1:0", token="s3cret"))
    other.start()
    with PolicydClient(other.address, token="s3cret", timeout=10, retries=1) as c:
        c.write_policy(POLICY, "atproto.policy")
        c.touch(parse_relationship(r) for r in RELATIONSHIPS)
        yield c
    other.stop(grace=1)


FOREIGN: list[tuple[str, Callable[[PolicydClient, PolicydClient], Any], str]] = [
    (
        "check-at-least-as-fresh",
        lambda c, o: c.check(
            POST1, "view", ALICE, consistency=Consistency.at_least_as_fresh(o.touch([GRANT]))
        ),
        "consistency.token",
    ),
    (
        "check-at-exact-snapshot",
        lambda c, o: c.check(
            POST1, "view", ALICE, consistency=Consistency.at_exact_snapshot(o.touch([GRANT]))
        ),
        "consistency.token",
    ),
    (
        "watch-start",
        lambda c, o: next(iter(c.watch(o.touch([GRANT]), timeout=5))),
        "optional_start_token.token",
    ),
    (
        "list-objects-cursor",
        lambda c, o: list(
            c.list_objects(
                "space",
                "read",
                ALICE,
                cursor=next(iter(o.list_objects("space", "read", ALICE, limit=1))).after_cursor,
            )
        ),
        "cursor",
    ),
    (
        "read-cursor",
        lambda c, o: list(c.read(cursor=next(iter(o.read(limit=1))).after_cursor)),
        "cursor",
    ),
]


@pytest.mark.parametrize(("call", "field"), [f[1:] for f in FOREIGN], ids=[f[0] for f in FOREIGN])
def test_tokens_and_cursors_of_another_store_are_refused(
    client: PolicydClient,
    other_client: PolicydClient,
    loaded: str,
    call: Callable[[PolicydClient, PolicydClient], Any],
    field: str,
) -> None:
    client.touch([GRANT])  # this store is as far along as the other one
    with pytest.raises(RevisionUnavailableError, match="another store") as caught:
        call(client, other_client)
    assert caught.value.field == field


# ---- bad input names the field ---------------------------------------------------------------

CheckCall = Callable[[PolicydClient], Any]

BAD_INPUTS: list[tuple[str, CheckCall, str]] = [
    (
        "bad-object-id",
        lambda c: c.check(ObjectRef("post", "a b"), "view", ALICE),
        "resource.object_id",
    ),
    (
        "empty-object-type",
        lambda c: c.check(ObjectRef("", "1"), "view", ALICE),
        "resource.object_type",
    ),
    ("unknown-type", lambda c: c.check(ObjectRef("nope", "1"), "view", ALICE), "resource.type"),
    ("empty-permission", lambda c: c.check(POST1, "", ALICE), "permission"),
    (
        "bad-subject-relation",
        lambda c: c.check(POST1, "view", SubjectRef("space", "x", "Bad")),
        "subject.optional_relation",
    ),
    (
        "bad-token",
        lambda c: c.check(POST1, "view", ALICE, consistency=Consistency.at_least_as_fresh("xx")),
        "consistency.at_least_as_fresh.token",
    ),
    (
        "missing-token",
        lambda c: c.check(POST1, "view", ALICE, consistency=Consistency.at_exact_snapshot("")),
        "consistency.at_exact_snapshot.token",
    ),
    (
        "newline-resource-id",
        lambda c: c.check(ObjectRef("post", "1\n"), "view", ALICE),
        "resource.object_id",
    ),
    (
        "newline-subject-id",
        lambda c: c.check(POST1, "view", SubjectRef("account", "did:plc:mallory\n")),
        "subject.object.object_id",
    ),
    (
        "newline-subject-relation",
        lambda c: c.check(POST1, "view", SubjectRef("space", "cats", "member\n")),
        "subject.optional_relation",
    ),
    (
        "newline-batch-subject-id",
        lambda c: c.check_many(
            [
                CheckRequest(POST1, "view", ALICE),
                CheckRequest(POST1, "view", SubjectRef("account", "b\n")),
            ]
        ),
        "items[1].subject.object.object_id",
    ),
    (
        "newline-write-subject-id",
        lambda c: c.touch(
            [Relationship(ObjectRef("space", "cats"), "member", SubjectRef("account", "m\n"))]
        ),
        "updates[0].relationship.subject.object.object_id",
    ),
    (
        "newline-list-objects-subject-id",
        lambda c: list(c.list_objects("post", "view", SubjectRef("account", "m\n"))),
        "subject.object.object_id",
    ),
    (
        "wildcard-check-subject",
        lambda c: c.check(POST1, "view", SubjectRef("account", "*")),
        "subject.id",
    ),
    (
        "wildcard-batch-subject",
        lambda c: c.check_many(
            [
                CheckRequest(POST1, "view", ALICE),
                CheckRequest(POST1, "view", SubjectRef("account", "*")),
            ]
        ),
        "items[1].subject.id",
    ),
    (
        "wildcard-list-objects-subject",
        lambda c: list(c.list_objects("post", "view", SubjectRef("account", "*"))),
        "subject.id",
    ),
    (
        "newline-delete-filter",
        lambda c: c.delete(RelationshipFilter(resource_type="space", resource_id="cats\n")),
        "filter.resource_id",
    ),
    (
        "newline-read-filter",
        lambda c: list(c.read(RelationshipFilter(subject_id="m\n"))),
        "filter.subject_id",
    ),
    (
        "newline-precondition-filter",
        lambda c: c.write(
            [RelationshipUpdate(Operation.TOUCH, GRANT)],
            [Precondition.must_match(RelationshipFilter(resource_type="space\n"))],
        ),
        "preconditions[0].filter.resource_type",
    ),
    ("empty-delete-filter", lambda c: c.delete(RelationshipFilter()), "filter"),
    ("empty-write", lambda c: c.write([]), "updates"),
    ("bad-cursor", lambda c: list(c.read(cursor="nope")), "cursor"),
    ("empty-list-type", lambda c: list(c.list_objects("", "view", ALICE)), "resource_type"),
    (
        "empty-subject-type",
        lambda c: list(c.list_subjects(POST1, "view", "")),
        "subject_type",
    ),
    ("empty-policy", lambda c: c.write_policy(""), "policy"),
]


@pytest.mark.parametrize(
    ("call", "field"), [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS]
)
def test_bad_input_is_invalid_argument_naming_the_field(
    client: PolicydClient, loaded: str, call: CheckCall, field: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        call(client)
    assert caught.value.field == field


def test_bad_relationship_in_write_names_the_update(server: PolicydServer, loaded: str) -> None:
    channel = grpc.insecure_channel(server.address)
    from policyd.api.gen import core_pb2, relationship_service_pb2, relationship_service_pb2_grpc

    stub = relationship_service_pb2_grpc.RelationshipServiceStub(channel)
    good = core_pb2.Relationship(
        resource=core_pb2.ObjectReference(object_type="space", object_id="a"),
        relation="member",
        subject=core_pb2.SubjectReference(
            object=core_pb2.ObjectReference(object_type="account", object_id="did:plc:a")
        ),
    )
    bad = core_pb2.Relationship()
    bad.CopyFrom(good)
    bad.subject.object.object_id = "not ok"
    update = core_pb2.RelationshipUpdate.OPERATION_TOUCH
    request = relationship_service_pb2.WriteRelationshipsRequest(
        updates=[
            core_pb2.RelationshipUpdate(operation=update, relationship=good),
            core_pb2.RelationshipUpdate(operation=update, relationship=bad),
        ]
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub.WriteRelationships(request, metadata=(("authorization", "Bearer s3cret"),))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    from policyd.client import error_from_rpc

    error = error_from_rpc(caught.value)
    assert isinstance(error, InvalidRelationshipError)
    assert error.field == "updates[1].relationship.subject.object.object_id"
    channel.close()


# ---- malformed caveat input: INVALID_ARGUMENT with a reason, never INTERNAL -------------------

CREATOR = parse_object("creator:zoe")
BOB = parse_subject("account:did:plc:bob")


@pytest.mark.parametrize(
    ("context", "words"),
    [
        pytest.param({"now": math.nan}, "NaN", id="nan"),
        pytest.param({"now": math.inf}, "Infinity", id="infinity"),
        pytest.param({"unused": -math.inf}, "Infinity", id="infinity-under-another-key"),
    ],
)
def test_non_finite_context_numbers_are_invalid_argument(
    client: PolicydClient, loaded: str, context: dict[str, Any], words: str
) -> None:
    with pytest.raises(PolicydError, match=words) as caught:
        client.check(CREATOR, "gold_content", BOB, context=context)
    assert caught.value.code in ("invalid-request", "caveat-error")
    with pytest.raises(PolicydError, match=words) as caught:
        client.touch(
            [Relationship(CREATOR, "gold", BOB, "active_subscription", caveat_context=context)]
        )
    assert caught.value.code in ("invalid-request", "invalid-relationship")


def test_context_nested_past_protobufs_limit_is_invalid_argument(
    server: PolicydServer, loaded: str
) -> None:
    request = permission_service_pb2.CheckRequest(permission="gold_content")
    request.resource.object_type, request.resource.object_id = "creator", "zoe"
    request.subject.object.object_type = "account"
    request.subject.object.object_id = "did:plc:bob"
    level = request.context
    for _ in range(34):  # the client cannot build it: protobuf refuses to parse it
        level = level.fields["now"].struct_value
    with grpc.insecure_channel(server.address) as channel:
        check = channel.unary_unary(
            "/policyd.v1.PermissionService/Check",
            request_serializer=lambda raw: raw,
            response_deserializer=permission_service_pb2.CheckResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as caught:
            check(
                request.SerializeToString(),
                metadata=(("authorization", "Bearer s3cret"),),
                timeout=5,
            )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "nest" in (caught.value.details() or "")


def test_caveat_of_a_thousand_nots_is_written_and_evaluated(client: PolicydClient) -> None:
    policy = POLICY.replace("now < expires", "!" * 1000 + "(now < expires)")
    client.write_policy(policy, "nots.policy")
    token = client.touch(
        [
            Relationship(
                CREATOR,
                "gold",
                BOB,
                "active_subscription",
                caveat_context={"expires": "2030-01-01T00:00:00Z"},
            )
        ]
    )
    decision = client.check(
        CREATOR,
        "gold_content",
        BOB,
        context={"now": "2025-01-01T00:00:00Z"},
        consistency=Consistency.at_least_as_fresh(token),
    )
    assert decision.permissionship is Permissionship.HAS_PERMISSION


# ---- auth, health, reflection, internal errors, metrics ---------------------------------------


@pytest.mark.parametrize(
    "token", [None, "wrong", "s3cret ", "S3CRET"], ids=["missing", "wrong", "suffix", "case"]
)
def test_wrong_token_is_unauthenticated(server: PolicydServer, token: str | None) -> None:
    with PolicydClient(server.address, token=token, retries=0) as c:
        with pytest.raises(UnauthenticatedError) as caught:
            c.read_policy()
        with pytest.raises(UnauthenticatedError):
            list(c.read())
    assert "s3cret" not in str(caught.value)


def test_health_and_reflection_need_no_token(server: PolicydServer) -> None:
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        response = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
        service = health.Check(
            health_pb2.HealthCheckRequest(service="policyd.v1.PermissionService"), timeout=5
        )
        assert service.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        [answer] = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
        names = {s.name for s in answer.list_services_response.service}
        assert {"policyd.v1.PermissionService", "policyd.v1.RelationshipService"} <= names


def test_unknown_error_is_internal_and_hidden(
    server: PolicydServer, client: PolicydClient, loaded: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from policyd.engine import Engine

    def boom(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("secret database password")

    monkeypatch.setattr(Engine, "check", boom)
    with pytest.raises(PolicydError) as caught:
        client.check(POST1, "view", ALICE)
    assert caught.value.code == "internal"
    assert "secret" not in str(caught.value)


def test_raw_stub_sees_status_codes(server: PolicydServer, loaded: str) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = permission_service_pb2_grpc.PermissionServiceStub(channel)
        request = permission_service_pb2.CheckRequest(permission="view")
        metadata = (("authorization", "Bearer s3cret"),)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Check(request, metadata=metadata, timeout=5)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.ListObjects(permission_service_pb2.ListObjectsRequest(), timeout=5))
        assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_metrics_count_requests_errors_and_decisions(
    client: PolicydClient, registry: CollectorRegistry, loaded: str
) -> None:
    client.check(POST1, "view", ALICE)
    client.check(POST1, "view", MALLORY)
    with pytest.raises(InvalidRequestError):
        client.check(POST1, "nope", ALICE)
    check = "/policyd.v1.PermissionService/Check"
    value = registry.get_sample_value
    assert value("policyd_grpc_requests_total", {"method": check, "code": "OK"}) == 2
    assert (
        value(
            "policyd_grpc_errors_total",
            {"method": check, "code": "INVALID_ARGUMENT", "error": "invalid-request"},
        )
        == 1
    )
    assert value("policyd_grpc_request_duration_seconds_count", {"method": check}) == 3
    assert value("policyd_decisions_total", {"result": "has_permission"}) == 1
    assert value("policyd_decisions_total", {"result": "no_permission"}) == 1
    assert (value("policyd_revision") or 0) >= 2
    client.check(POST1, "view", ALICE)  # asked before: now stored (DecisionCache.admit)
    client.check(POST1, "view", ALICE)  # and served from the cache
    hits = value("policyd_decision_cache_hits_total") or 0
    misses = value("policyd_decision_cache_misses_total") or 0
    assert hits >= 1
    assert misses >= 2
    assert value("policyd_decision_cache_hit_ratio") == pytest.approx(hits / (hits + misses))
    assert (value("policyd_index_relationships") or 0) > 0
    assert value("policyd_revision_lag") == 0


def test_fresh_registry_per_server(server: PolicydServer, registry: CollectorRegistry) -> None:
    assert registry.get_sample_value("policyd_decisions_total", {"result": "has_permission"}) == 0
