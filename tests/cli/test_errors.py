"""Every way the first hour went wrong (issue 16): each error's message and exit code."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from policyd.api.server import PolicydServer, ServerConfig
from policyd.cli import main
from policyd.engine import Engine
from policyd.relationship import parse_relationship
from policyd.store.memory import MemoryStore
from policyd.store.sqlite import SqliteStore
from tests.certificates import self_signed
from tests.cli.conftest import POLICY, ROOT, TOKEN


def _start(
    store: MemoryStore | SqliteStore,
    listen: str = "127.0.0.1:0",
    registry: CollectorRegistry | None = None,
) -> PolicydServer:
    server = PolicydServer(
        Engine(store), store, ServerConfig(listen=listen, token=TOKEN),
        registry or CollectorRegistry(),
    )  # fmt: skip
    server.start()
    return server


@pytest.fixture
def empty_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[PolicydServer]:
    """A second server, with no policy, for restores."""
    server = _start(MemoryStore())
    yield server
    server.stop(grace=1)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# ---- reaching the server ---------------------------------------------------------------------


def test_a_client_command_waits_for_a_server_that_is_starting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"127.0.0.1:{_free_port()}"
    monkeypatch.setenv("POLICYD_TOKEN", TOKEN)
    started: list[PolicydServer] = []
    starter = threading.Timer(1.0, lambda: started.append(_start(MemoryStore(), address)))
    starter.start()
    try:
        assert main(["read", "--server", address, "--wait-for-ready", "30"]) == 0
    finally:
        starter.join()
        for server in started:
            server.stop(grace=1)


def test_no_server_is_an_error_with_a_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"127.0.0.1:{_free_port()}"
    code = main(["read", "--server", address, "--wait-for-ready", "0", "--rpc-timeout", "5"])
    assert code == 2
    err = capsys.readouterr().err
    assert "error: unavailable:" in err
    assert f"hint: is `policyd serve` running at {address}?" in err


def test_a_missing_token_gets_a_hint(
    remote: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("POLICYD_TOKEN")
    assert main(["read"]) == 2
    assert "hint: the server wants a bearer token: set POLICYD_TOKEN" in capsys.readouterr().err


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[PolicydServer, Path]]:
    """A server speaking TLS with a self-signed certificate, and the certificate's file."""
    cert, key = self_signed(tmp_path)
    store = MemoryStore()
    config = ServerConfig(listen="127.0.0.1:0", token=TOKEN, tls_cert=cert, tls_key=key)
    server = PolicydServer(Engine(store), store, config, CollectorRegistry())
    server.start()
    yield server, tmp_path / "cert.pem"
    server.stop(grace=1)


@pytest.mark.parametrize(
    ("flags", "hint"),
    [
        ((), "hint: the server may speak TLS: pass --tls, or --tls-ca PEM for a private CA"),
        (("--tls",), "hint: TLS failed: trust the server's CA with --tls-ca PEM"),
    ],
    ids=["plaintext-to-tls", "untrusted-certificate"],
)
def test_a_tls_mismatch_gets_a_hint(
    tls_server: tuple[PolicydServer, Path],
    flags: tuple[str, ...],
    hint: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, _ = tls_server
    command = ["policy", "read", "--server", server.address, *flags]
    assert main([*command, "--wait-for-ready", "0", "--rpc-timeout", "5"]) == 2
    assert hint in capsys.readouterr().err


def test_the_servers_ca_makes_tls_work(
    tls_server: tuple[PolicydServer, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    server, cert = tls_server
    command = [
        "policy",
        "read",
        "--server",
        server.address,
        "--tls-ca",
        str(cert),
        "--token",
        TOKEN,
    ]
    assert main([*command, "--rpc-timeout", "5"]) == 2  # reached it: it has no policy yet
    assert "not-found" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--at-least-as-fresh", "--at-exact-snapshot"])
def test_an_empty_consistency_token_is_refused(
    remote: str, flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "post:1#view@account:did:plc:bob", flag, ""]) == 2
    assert f"Invalid value for '{flag}': must not be empty" in capsys.readouterr().err


def test_two_consistency_modes_are_refused(remote: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["read", "--minimize-latency", "--fully-consistent"])
    assert code == 2
    assert "--minimize-latency and --fully-consistent exclude each other" in (
        capsys.readouterr().err
    )


def test_check_asks_policyd_server_and_creates_no_file(
    remote: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["write", "post:1#viewer@account:did:plc:bob"]) == 0
    capsys.readouterr()
    assert main(["check", "post:1#view@account:did:plc:bob"]) == 0  # POLICYD_SERVER
    assert capsys.readouterr().out == "has_permission\n"
    assert main(["check", "post:1#view@account:did:plc:bob", "--store", "missing.db"]) == 2
    assert "error: missing.db: no such store file" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_check_in_process_from_a_store_url_or_a_bare_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "local.db"
    store = SqliteStore(str(path))
    engine = Engine(store)
    engine.write_policy(POLICY.read_text())
    engine.touch([parse_relationship("post:1#viewer@account:did:plc:a")])
    engine.close()
    store.close()
    for store_arg in (str(path), f"sqlite://{path}", f"sqlite:///{path}".replace("////", "///")):
        assert main(["check", "post:1#view@account:did:plc:a", "--store", store_arg]) == 0
    assert main(["check", "post:1#view@account:did:plc:b", "--db", str(path)]) == 1


def test_check_exit_codes(remote: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["write", "creator:zoe#gold@account:did:plc:bob[active_subscription]"]) == 0
    query = "creator:zoe#gold_content@account:did:plc:bob"
    assert main(["check", query, "--context", '{"now": "2026-01-01T00:00:00Z"}']) == 3
    assert main(["check", query, "--context", "not json"]) == 2
    capsys.readouterr()
    assert main(["check", query, "--json", "--context", '{"now": "2026-01-01T00:00:00Z"}']) == 3
    answer = json.loads(capsys.readouterr().out)
    assert (answer["permissionship"], answer["missing_context"]) == ("conditional", ["expires"])


# ---- files -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["serve", "--store", "memory", "--token", TOKEN, "--policy", "nope.policy"],
         "error: nope.policy: no such policy file"),
        (["serve", "--store", "memory", "--token", TOKEN, "--tls-cert", "c.pem", "--tls-key",
          "k.pem"], "error: c.pem: no such TLS certificate file"),
        (["check", "doc:1#view@user:a", "--file", "nope.yaml"],
         "error: nope.yaml: no such validation file"),
        (["fmt", "."], "error: .: is a directory, not a policy file"),
        (["lint", "nope.policy"], "error: nope.policy: no such policy file"),
        (["validate", "nope.yaml"], "error: nope.yaml: no such validation file"),
        (["convert", "nope.fga"], "error: nope.fga: no such model file"),
        (["fmt", "latin1.policy"], "error: latin1.policy:2: not UTF-8 text"),
    ],
    ids=["serve-policy", "serve-tls-cert", "check-file", "directory", "lint", "validate",
         "convert", "not-utf8"],
)  # fmt: skip
def test_unreadable_files_are_named_without_a_traceback(
    arguments: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "latin1.policy").write_bytes(b"definition user {}\n// caf\xe9\n")
    assert main(arguments) == 2
    assert capsys.readouterr().err.startswith(message)


def test_import_errors_name_the_file_and_line(
    remote: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.txt"
    source.write_text("// people\nspace:cats#member@account:did:plc:bob\nnot a relationship\n")
    assert main(["import", str(source)]) == 2
    assert capsys.readouterr().err.startswith(
        f"error: {source}:3: invalid-relationship: expected resource#relation@subject"
    )
    source.write_text("space:cats#member@account:did:plc:bob\nspace:cats#nope@account:did:plc:x\n")
    assert main(["import", str(source)]) == 2  # refused by the server, located by the client
    assert capsys.readouterr().err.startswith(f"error: {source}:2: invalid-relationship:")
    source.write_text('{"resource_type": "space"}\n')
    assert main(["import", "--format", "ndjson", str(source)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {source}:1: invalid-request: missing field")
    assert main(["import", str(tmp_path / "nope.txt")]) == 2
    assert "nope.txt: no such input file" in capsys.readouterr().err


def test_write_from_a_file_names_the_line(
    remote: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "w.txt"
    source.write_text("space:cats#member@account:did:plc:bob\n{broken\n")
    assert main(["write", "-f", str(source)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {source}:2: line is not JSON")


def test_a_closed_pipe_ends_quietly(remote: str, tmp_path: Path) -> None:
    lines = "".join(f"space:s{i}#member@account:did:plc:u{i}\n" for i in range(3000))
    (tmp_path / "many.txt").write_text(lines)
    assert main(["import", str(tmp_path / "many.txt")]) == 0
    reader = subprocess.Popen(
        [sys.executable, "-m", "policyd.cli", "read"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert reader.stdout is not None
    assert reader.stderr is not None
    assert reader.stdout.readline().startswith(b"space:")
    reader.stdout.close()
    assert reader.wait(60) == 0
    assert reader.stderr.read() == b""


# ---- backups -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["ndjson", "yaml"])
def test_a_backup_restores_into_an_empty_server_in_one_command(
    remote: str,
    empty_server: PolicydServer,
    fmt: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    relationships = [
        "space:cats#member@account:did:plc:bob",
        'creator:zoe#gold@account:did:plc:bob[active_subscription:{"expires":"2030-01-01T00:00:00Z"}]',
        "space:cats#member@account:did:plc:erin[expiration:2030-01-01T00:00:00.5Z]",
    ]
    assert main(["write", *relationships]) == 0
    capsys.readouterr()
    assert main(["export", "--format", fmt]) == 0
    backup = tmp_path / f"backup.{fmt}"
    backup.write_text(capsys.readouterr().out)
    other = ["--server", empty_server.address]
    assert main(["import", str(backup), *other]) == 0
    assert capsys.readouterr().out.startswith("imported 3\n")
    assert main(["policy", "read", *other]) == 0
    assert capsys.readouterr().out == POLICY.read_text()
    assert main(["export", *other]) == 0
    assert sorted(capsys.readouterr().out.splitlines()) == sorted(
        str(parse_relationship(r)) for r in relationships
    )
    # again: the relationships exist now; --upsert touches them instead
    assert main(["import", str(backup), *other]) == 2
    assert "already-exists" in capsys.readouterr().err
    assert main(["import", "--upsert", str(backup), *other]) == 0
    assert capsys.readouterr().out.startswith("imported 3\n")


def test_a_backup_with_another_policy_is_refused_unless_told(
    remote: str, empty_server: PolicydServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backup = tmp_path / "b.ndjson"
    backup.write_text(json.dumps({"policy": "definition user {}\n"}) + "\n")
    assert main(["import", str(backup)]) == 2
    err = capsys.readouterr().err
    assert f"error: {backup}: its policy differs from the server's" in err
    assert "hint: --replace-policy writes it first" in err
    assert main(["import", "--replace-policy", str(backup)]) == 0
    assert main(["policy", "read"]) == 0
    assert capsys.readouterr().out.endswith("definition user {}\n")


# ---- policy validate is the dry run of write; diff -------------------------------------------


def test_policy_validate_refuses_what_write_refuses(
    remote: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["write", "space:cats#banned@account:did:plc:mallory"]) == 0
    smaller = tmp_path / "smaller.policy"
    smaller.write_text(POLICY.read_text().replace("    relation banned: account\n", "").replace(
        " - banned", ""))  # fmt: skip
    capsys.readouterr()
    assert main(["policy", "validate", str(smaller)]) == 1
    err = capsys.readouterr().err
    assert "the policy would orphan stored relationships" in err
    assert "1 relationship space#banned@account" in err
    assert main(["policy", "write", str(smaller)]) == 2
    assert "policy-change-refused" in capsys.readouterr().err
    assert main(["policy", "diff", str(smaller)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert "- relation space#banned: account" in out
    assert "~ permission space#read: (member + moderate) - banned → member + moderate" in out
    assert any(line.startswith("blocked by 1 relationship space#banned@account") for line in out)
    assert main(["delete", "--relation", "banned"]) == 0
    assert main(["policy", "validate", str(smaller)]) == 0
    assert main(["policy", "write", str(smaller)]) == 0


# ---- watch -------------------------------------------------------------------------------------


def test_watch_reports_a_server_that_stops(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = _start(MemoryStore())
    engine_token = server.engine.write_policy(POLICY.read_text()).token
    stopper = threading.Timer(1.5, lambda: server.stop(grace=0))
    stopper.start()
    try:
        code = main(["watch", "--server", server.address, "--token", TOKEN,
                     "--after", engine_token])  # fmt: skip
    finally:
        stopper.join()
    assert code == 2
    err = capsys.readouterr().err
    assert "error: the server ended the stream (it is stopping)" in err
    assert f"hint: resume with `policyd watch --after {engine_token}`" in err


def test_watch_follow_resumes_on_a_restarted_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = str(tmp_path / "w.db")
    address = f"127.0.0.1:{_free_port()}"
    first = _start(SqliteStore(database), address)
    start = first.engine.write_policy(POLICY.read_text()).token
    events: list[PolicydServer] = []

    def restart_and_write() -> None:
        first.stop(grace=0)
        second = _start(SqliteStore(database), address)
        events.append(second)
        second.engine.touch([parse_relationship(
            "space:cats#member@account:did:plc:bob")])  # fmt: skip

    restarter = threading.Timer(1.5, restart_and_write)
    restarter.start()
    try:
        code = main(["watch", "--follow", "--server", address, "--token", TOKEN,
                     "--after", start, "--count", "1", "--timeout", "60"])  # fmt: skip
    finally:
        restarter.join()
        for server in events:
            server.stop(grace=1)
    assert code == 0
    captured = capsys.readouterr()
    assert captured.out.split(" ", 1)[1] == "touch space:cats#member@account:did:plc:bob\n"
    assert "reconnecting" in captured.err


# ---- the server side ---------------------------------------------------------------------------


def test_cancelled_calls_are_not_counted_as_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = CollectorRegistry()
    server = _start(MemoryStore(), registry=registry)
    monkeypatch.setenv("POLICYD_SERVER", server.address)
    monkeypatch.setenv("POLICYD_TOKEN", TOKEN)
    try:
        assert main(["policy", "write", str(POLICY)]) == 0
        source = tmp_path / "in.txt"
        lines = "".join(f"space:s{i}#member@account:did:plc:u{i}\n" for i in range(2000))
        source.write_text(lines + "not a relationship\n")
        assert main(["import", str(source)]) == 2  # the client cancels its stream mid-way
        assert main(["watch", "--timeout", "0.5"]) == 0  # the deadline cancels the call
    finally:
        server.stop(grace=1)
    samples = [
        s for metric in registry.collect() for s in metric.samples
        if s.name in ("policyd_grpc_errors_total", "policyd_grpc_requests_total")
    ]  # fmt: skip
    failures = [s for s in samples if s.name == "policyd_grpc_errors_total"]
    assert not [s for s in failures if s.labels["code"] in ("INTERNAL", "CANCELLED")]
    assert {s.labels["code"] for s in samples} <= {"OK", "CANCELLED", "DEADLINE_EXCEEDED"}
