"""``policyd serve`` in a subprocess, driven over loopback by the Python client."""

from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from policyd.client import PolicydClient
from policyd.consistency import Consistency
from policyd.decisions import CheckRequest
from policyd.errors import (
    AlreadyExistsError,
    InvalidRequestError,
    PolicydError,
    PolicyErrors,
    RevisionUnavailableError,
    UnauthenticatedError,
)
from policyd.filters import RelationshipFilter
from policyd.relationship import (
    Operation,
    Relationship,
    RelationshipUpdate,
    parse_relationship,
    parse_subject,
)
from policyd.tokens import TokenCodec, new_store_identity
from tests.e2e.server import (
    BOB,
    POLICY_FILE,
    POST,
    SPACE_WITH_A_POST,
    ServerFactory,
    ServerProcess,
)

ALICE = parse_subject("account:did:plc:alice")
SETUP = [*SPACE_WITH_A_POST, f"{POST}#author@account:did:plc:alice"]


def _setup(client: PolicydClient) -> str:
    return client.touch(parse_relationship(r) for r in SETUP)


def test_every_rpc(server: ServerProcess) -> None:
    with server.client() as client:
        policy, token = client.read_policy()
        assert policy == POLICY_FILE.read_text()
        assert client.validate_policy(policy).valid
        token, _warnings = client.write_policy(policy)  # unchanged text: a new revision, allowed
        token = _setup(client)
        fresh = Consistency.at_least_as_fresh(token)
        assert client.check(POST, "view", BOB, consistency=fresh).allowed
        decisions = client.check_many(
            [
                CheckRequest(POST, "view", BOB),
                CheckRequest(POST, "view", parse_subject("account:x1")),
            ],
            consistency=fresh,
        )
        assert [d.allowed for d in decisions] == [True, False]
        listed = client.list_objects("post", "view", BOB)
        assert [o.found.resource_id for o in listed] == [POST.id]
        subjects = {str(s.found.subject) for s in client.list_subjects(POST, "view", "account")}
        assert subjects == {str(ALICE), str(BOB)}
        tree, _ = client.expand(POST, "view")
        assert tree.target == f"{POST}#view"
        assert len(list(client.read(RelationshipFilter(resource_type="space")))) == 2
        exported = list(client.export_relationships(consistency=fresh))
        assert sorted(str(r) for r in exported) == sorted(SETUP)
        token, deleted = client.delete(RelationshipFilter(resource_type="post"))
        assert deleted == 2
        moved = [r for r in exported if r.resource.type == "post"]
        token, count = client.import_relationships(moved)
        assert count == 2
        kinds: list[str] = []
        for change in client.watch(fresh.token, timeout=10):
            kinds.extend(kind for kind, _ in change.updates)
            if change.token == token:
                break
        assert kinds == ["delete", "delete", "touch", "touch"]


def test_write_token_makes_following_check_see_it(server: ServerProcess) -> None:
    with server.client() as client:
        _setup(client)
        carol = parse_subject("account:did:plc:carol")
        for i in range(20):  # every write's token must make the next check see it
            relationship = parse_relationship(f"post:p{i}#viewer@{carol}")
            token = client.touch([relationship])
            decision = client.check(
                relationship.resource,
                "view",
                carol,
                consistency=Consistency.at_least_as_fresh(token),
            )
            assert decision.allowed, i


def test_watch_resumes_from_a_token(server: ServerProcess) -> None:
    with server.client() as client:
        start = _setup(client)
        written = [parse_relationship(f"space:dogs#member@account:did:plc:{n}") for n in "abc"]
        tokens = [client.touch([r]) for r in written]
        seen: list[tuple[str, Relationship | None]] = []
        resume = start
        for change in client.watch(start, timeout=10):
            seen.extend(change.updates)
            resume = change.token
            if len(seen) == 1:
                break
        assert resume == tokens[0]
        for change in client.watch(resume, timeout=10):
            seen.extend(change.updates)
            if len(seen) == 3:
                break
        assert seen == [("touch", r) for r in written]


@pytest.mark.parametrize("token", [None, "nope"], ids=["missing-token", "wrong-token"])
def test_auth_failures_but_health_is_open(server: ServerProcess, token: str | None) -> None:
    with server.client(token=token, retries=0) as client:
        with pytest.raises(UnauthenticatedError) as caught:
            client.check(POST, "view", BOB)
        assert "e2e-token" not in str(caught.value)
        with pytest.raises(UnauthenticatedError):
            list(client.export_relationships())
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("post:a b#viewer@account:did:plc:a", "updates[0].relationship.resource.object_id"),
        (
            "post:1#viewer@account:did:plc:a#Bad",
            "updates[0].relationship.subject.optional_relation",
        ),
        (
            "post:1#viewer@account:did:plc:mallory\n",
            "updates[0].relationship.subject.object.object_id",
        ),
    ],
    ids=["bad-resource-id", "bad-subject-relation", "newline-subject-id"],
)
def test_bad_input_names_the_field(server: ServerProcess, text: str, field: str) -> None:
    resource_text, _, subject_text = text.partition("@")
    resource, _, relation = resource_text.rpartition("#")
    subject_obj, _, subject_relation = subject_text.partition("#")
    subject_type, _, subject_id = subject_obj.partition(":")
    from policyd.relationship import ObjectRef, SubjectRef

    bad = Relationship(
        ObjectRef(*resource.split(":", 1)),
        relation,
        SubjectRef(subject_type, subject_id, subject_relation or None),
    )
    with server.client() as client, pytest.raises(InvalidRequestError) as caught:
        client.write([RelationshipUpdate(Operation.TOUCH, bad)])
    assert caught.value.field == field


def test_a_token_of_another_store_is_refused(server: ServerProcess) -> None:
    elsewhere = TokenCodec(new_store_identity()).token(1)
    with server.client() as client:
        _setup(client)
        for consistency in (
            Consistency.at_least_as_fresh(elsewhere),
            Consistency.at_exact_snapshot(elsewhere),
        ):
            with pytest.raises(RevisionUnavailableError, match="another store") as caught:
                client.check(POST, "view", BOB, consistency=consistency)
            assert caught.value.field == "consistency.token"
        with pytest.raises(RevisionUnavailableError) as caught:
            next(iter(client.watch(elsewhere, timeout=10)))
        assert caught.value.field == "optional_start_token.token"


def test_a_wildcard_subject_is_refused(server: ServerProcess) -> None:
    everyone = parse_subject("account:*")
    with server.client() as client:
        _setup(client)
        with pytest.raises(InvalidRequestError, match="wildcard") as caught:
            client.check(POST, "view", everyone)
        assert caught.value.field == "subject.id"
        with pytest.raises(InvalidRequestError, match="wildcard") as caught:
            client.check_many(
                [CheckRequest(POST, "view", BOB), CheckRequest(POST, "view", everyone)]
            )
        assert caught.value.field == "items[1].subject.id"


def test_policy_errors_and_duplicates(server: ServerProcess) -> None:
    with server.client() as client:
        with pytest.raises(PolicyErrors) as caught:
            client.write_policy("definition account {\n  relation friend: nobody\n}\n", "x.policy")
        assert caught.value.diagnostics[0].span.file == "x.policy"
        _setup(client)
        with pytest.raises(AlreadyExistsError):
            client.write([RelationshipUpdate(Operation.CREATE, parse_relationship(SETUP[0]))])


def test_metrics_scraped_over_http(server: ServerProcess) -> None:
    with server.client() as client:
        _setup(client)
        client.check(POST, "view", BOB)
        with pytest.raises(PolicydError):
            client.check(POST, "nope", BOB)
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        text = response.read().decode()
    check = 'method="/policyd.v1.PermissionService/Check"'
    assert f'policyd_grpc_requests_total{{code="OK",{check}}} 1.0' in text
    assert 'policyd_decisions_total{result="has_permission"} 1.0' in text
    assert "policyd_grpc_errors_total" in text
    assert "policyd_grpc_request_duration_seconds_bucket" in text
    assert "policyd_revision " in text


def test_a_restart_starts_from_the_index_snapshot_and_rebuilds_a_corrupt_one(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    snapshot = tmp_path / "policyd.db.index"  # the default: beside the SQLite file
    server = start_server("--policy", str(POLICY_FILE))
    with server.client() as client:
        _setup(client)
    assert server.terminate() == 0  # SIGTERM saves the index at its last revision
    assert snapshot.exists()
    server = start_server()
    with server.client() as client:
        assert client.check(POST, "view", BOB).allowed
        assert not client.check(POST, "view", parse_subject("account:did:plc:eve")).allowed
        client.touch([parse_relationship(f"{POST}#viewer@account:did:plc:eve")])
    assert server.terminate() == 0
    assert f"index loaded from {snapshot}" in "".join(server.stderr)
    data = bytearray(snapshot.read_bytes())
    data[len(data) // 2] ^= 0x01
    snapshot.write_bytes(bytes(data))
    server = start_server()
    with server.client() as client:
        assert client.check(POST, "view", parse_subject("account:did:plc:eve")).allowed
    server.terminate()
    assert "the file is corrupt; building from the store" in "".join(server.stderr)


def test_refuses_to_start_without_a_token(start_server: ServerFactory) -> None:
    with pytest.raises(RuntimeError, match="bearer token is required"):
        start_server(env={"POLICYD_TOKEN": ""})


def test_insecure_no_auth_warns_loudly(start_server: ServerFactory) -> None:
    server = start_server("--insecure-no-auth", env={"POLICYD_TOKEN": ""})
    with server.client(token=None) as client, pytest.raises(PolicydError):
        client.read_policy()  # no policy yet: NOT_FOUND, not UNAUTHENTICATED
    assert any("WITHOUT AUTHENTICATION" in line for line in server.stderr)


def test_second_server_cannot_bind_the_same_port(
    server: ServerProcess, start_server: ServerFactory, tmp_path: object
) -> None:
    with pytest.raises(RuntimeError, match="cannot listen") as raised:
        start_server("--listen", server.address, "--db", "other.db")
    assert "address already in use" in str(raised.value)
    assert "Traceback" not in str(raised.value)


def test_warns_beyond_loopback_without_tls_and_of_a_short_token(
    start_server: ServerFactory,
) -> None:
    server = start_server(
        "--listen", "0.0.0.0:0", "--store", "memory", env={"POLICYD_TOKEN": "short"}
    )
    text = "".join(server.stderr)
    assert "the bearer token is 5 characters long; use at least 16" in text
    assert "listening on 0.0.0.0:0 beyond loopback without TLS" in text


@pytest.mark.slow
def test_graceful_shutdown_under_load_loses_no_acknowledged_write(
    start_server: ServerFactory,
) -> None:
    server = start_server("--policy", str(POLICY_FILE))
    acknowledged: list[Relationship] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def writer(worker: int) -> None:
        with server.client(retries=0) as client:
            for i in range(100_000):
                if stop.is_set():
                    return
                relationship = parse_relationship(f"space:w{worker}#member@account:did:plc:{i}")
                try:
                    client.touch([relationship])
                except PolicydError as e:
                    failures.append(e)
                    return
                acknowledged.append(relationship)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.terminate(timeout=30) == 0
    stop.set()
    for thread in threads:
        thread.join(30)
    assert len(acknowledged) >= 200
    assert failures, "the writers should have seen the server go away"
    restarted = start_server()
    with restarted.client() as client:
        stored = {str(r) for r in client.export_relationships()}
    missing = [str(r) for r in acknowledged if str(r) not in stored]
    assert not missing


@pytest.mark.slow
def test_workers_share_the_port_and_stop_on_sigterm(start_server: ServerFactory) -> None:
    server = start_server("--workers", "2", "--policy", str(POLICY_FILE))
    with server.client(wait_for_ready=True) as client:
        token = _setup(client)
        for _ in range(20):  # connections land on either worker; all see the same database
            with server.client(wait_for_ready=True) as other:
                fresh = Consistency.at_least_as_fresh(token)
                assert other.check(POST, "view", BOB, consistency=fresh).allowed
    assert server.terminate(timeout=30) == 0


@pytest.mark.slow
@pytest.mark.postgres
def test_two_servers_on_one_postgres_see_each_others_writes(
    start_server: ServerFactory, pg_url: str
) -> None:
    first = start_server("--store", "postgres", "--dsn", pg_url, "--policy", str(POLICY_FILE))
    second = start_server("--store", "postgres", "--dsn", pg_url)
    with first.client() as a, second.client() as b:
        token = _setup(a)
        assert b.check(POST, "view", BOB, consistency=Consistency.at_least_as_fresh(token)).allowed
        carol = parse_subject("account:did:plc:carol")
        token = b.touch([parse_relationship(f"space:cats#member@{carol}")])
        assert a.check(
            POST, "view", carol, consistency=Consistency.at_least_as_fresh(token)
        ).allowed
        policy, _ = b.read_policy()
        assert policy == POLICY_FILE.read_text()
