"""The command line: every command's help, in-process check, and the client commands on a server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from policyd.api.server import PolicydServer
from policyd.cli import cli, main, relationship_from_json, relationship_to_json
from policyd.cli.serve import ServeSettings, serve, serve_settings
from policyd.errors import InvalidRelationshipError
from policyd.relationship import parse_relationship
from policyd.tokens import TokenCodec

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "atproto.policy"


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


COMMANDS = sorted(_commands(cli))


def test_the_commands_are_all_there() -> None:
    names = {c[0] for c in COMMANDS}
    assert {"fmt", "lint", "validate", "check", "serve", "write", "read", "delete", "watch",
            "import", "export", "policy", "list-objects", "list-subjects", "expand",
            "batch-check", "convert", "playground", "lsp", "bench"} <= names  # fmt: skip
    assert {("policy", "write"), ("policy", "read"), ("policy", "validate"),
            ("policy", "diff")} <= set(COMMANDS)  # fmt: skip


@pytest.mark.parametrize(
    "command", [c for c in COMMANDS if c != ("bench",)], ids=lambda c: " ".join(c)
)
def test_every_command_has_help(
    command: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: policyd " + " ".join(command))
    assert "Example" in out or command == ("policy",)


def test_every_command_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [" ".join(c) for c in COMMANDS if f"policyd {' '.join(c)}" not in readme]
    assert not missing


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == "policyd 0.1.0\n"


def test_a_mistyped_command_gets_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chek", "doc:1#view@user:a"]) == 2
    assert "did you mean 'check'?" in capsys.readouterr().err
    assert main(["policy", "writ", "x.policy"]) == 2
    assert "did you mean 'write'?" in capsys.readouterr().err


def test_write_check_explain_read(remote: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["write", "space:cats#member@account:did:plc:bob", "post:1#space@space:cats"]) == 0
    token = capsys.readouterr().out.strip()
    query = "post:1#view@account:did:plc:bob"
    args = ["check", query, "--server", remote, "--explain", "--at-least-as-fresh", token]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("has_permission\n✓ post:1#view")
    assert main(["check", "post:1#view@account:did:plc:eve", "--server", remote]) == 1
    assert capsys.readouterr().out == "no_permission\n"
    assert main(["read", "--resource-type", "post"]) == 0
    assert capsys.readouterr().out == "post:1#space@space:cats\n"


def test_list_objects_and_subjects(remote: str, capsys: pytest.CaptureFixture[str]) -> None:
    relationships = [
        "space:cats#member@account:did:plc:bob",
        "post:1#space@space:cats",
        "post:2#viewer@account:*",
        "post:2#viewer@account:did:plc:bob",
    ]
    assert main(["write", *relationships]) == 0
    token = capsys.readouterr().out.strip()
    fresh = ["--at-least-as-fresh", token]
    assert main(["list-objects", "post#view@account:did:plc:bob", *fresh]) == 0
    assert capsys.readouterr().out == "post:1\npost:2\n"
    assert main(["list-subjects", "post:2#view", "account", *fresh]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "account:did:plc:bob",
        "account:*",
    ]  # the wildcard comes last
    assert main(["list-objects", "post#view"]) == 2
    assert "invalid-request" in capsys.readouterr().err


def test_write_create_twice_fails(remote: str, capsys: pytest.CaptureFixture[str]) -> None:
    rel = "space:cats#owner@account:did:plc:alice"
    assert main(["write", "--operation", "create", rel]) == 0
    assert main(["write", "--operation", "create", rel]) == 2
    assert "already-exists" in capsys.readouterr().err


def test_bad_relationship_text_is_reported(remote: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["write", "not a relationship"]) == 2
    assert "invalid-relationship" in capsys.readouterr().err


def test_wrong_token(remote: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["read", "--token", "nope"]) == 2
    err = capsys.readouterr().err
    assert "error: unauthenticated: missing or invalid bearer token" in err
    assert "hint: the token differs from the server's: check POLICYD_TOKEN or --token" in err


@pytest.mark.parametrize("fmt", ["text", "ndjson"])
def test_export_then_import(
    remote: str, fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    relationships = [
        "space:cats#member@account:did:plc:bob",
        "space:cats#member@space:kittens#member",
        'creator:zoe#gold@account:did:plc:bob[active_subscription:{"expires":"2030-01-01T00:00:00Z"}]',
        "post:2#viewer@account:*",
    ]
    source = tmp_path / "in.txt"
    source.write_text("// a comment\n\n" + "\n".join(relationships) + "\n")
    assert main(["import", str(source)]) == 0
    assert capsys.readouterr().out.startswith("imported 4\n")
    assert main(["export", "--format", fmt]) == 0
    exported = capsys.readouterr().out
    assert len(exported.splitlines()) == 4 + (fmt == "ndjson")  # ndjson: the policy first
    dump = tmp_path / f"dump.{fmt}"
    dump.write_text(exported)
    assert main(["delete", "--resource-type", "space"]) == 0
    assert main(["delete", "--resource-type", "creator"]) == 0
    assert main(["delete", "--resource-type", "post"]) == 0
    capsys.readouterr()
    assert main(["import", "--format", fmt, str(dump)]) == 0
    capsys.readouterr()
    assert main(["export", "--format", fmt]) == 0
    assert capsys.readouterr().out == exported


def test_watch_prints_changes(
    server: PolicydServer, remote: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "read"]) == 0
    assert capsys.readouterr().out == POLICY.read_text()
    assert main(["write", "space:cats#member@account:did:plc:bob"]) == 0
    assert main(["write", "--operation", "delete", "space:cats#member@account:did:plc:bob"]) == 0
    capsys.readouterr()
    assert main(["watch", "--after", _token_of(server, 1), "--count", "2", "--timeout", "10"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        "touch space:cats#member@account:did:plc:bob",
        "delete space:cats#member@account:did:plc:bob",
    ]


def test_watch_permission_prints_the_holders_then_changes(
    server: PolicydServer, remote: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["write", "space:cats#member@account:did:plc:bob"]) == 0
    capsys.readouterr()
    query = ["watch-permission", "space:cats#read", "account", "--timeout", "10"]
    assert main([*query, "--count", "1"]) == 0
    token, *holders = capsys.readouterr().out.splitlines()
    assert token.endswith(" reset")
    assert holders == ["+ account:did:plc:bob"]
    assert main(["write", "space:cats#banned@account:did:plc:bob"]) == 0
    capsys.readouterr()
    assert main([*query, "--after", token.split()[0], "--count", "1", "--json"]) == 0
    change = json.loads(capsys.readouterr().out)
    assert change["reset"] is False
    assert [(s["subject"], s["permissionship"]) for s in change["subjects"]] == [
        ("account:did:plc:bob", "no_permission")
    ]


def test_policy_validate(remote: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.policy"
    bad.write_text("definition account {\n  relation friend: nobody\n}\n")
    assert main(["policy", "validate", str(bad)]) == 1
    assert f"{bad}:2:" in capsys.readouterr().err
    assert main(["policy", "validate", str(POLICY)]) == 0


def test_check_in_process_with_a_validation_file(tmp_path: Path) -> None:
    file = tmp_path / "v.yaml"
    file.write_text(
        "schema: |\n  definition user {}\n  definition doc {\n    relation viewer: user\n"
        "    permission view = viewer\n  }\nrelationships: |\n  doc:1#viewer@user:ann\n"
    )
    assert main(["check", "doc:1#view@user:ann", "--file", str(file)]) == 0
    assert main(["check", "doc:1#view@user:bob", "--file", str(file)]) == 1


def test_ndjson_form_round_trips() -> None:
    rel = parse_relationship(
        'creator:z#gold@account:did:plc:a[active_subscription:{"expires":"x"}][expiration:2030-01-01T00:00:00Z]'
    )
    record = relationship_to_json(rel)
    assert record["caveat_context"] == {"expires": "x"}
    back = relationship_from_json(json.dumps(record))
    assert back == rel
    assert back.caveat_context == rel.caveat_context


def test_ndjson_keeps_an_expiry_to_the_microsecond() -> None:
    rel = parse_relationship("doc:1#viewer@user:ann[expiration:2030-01-01T00:00:00.123456Z]")
    record = relationship_to_json(rel)
    assert record["expires_at"] == "2030-01-01T00:00:00.123456Z"
    assert relationship_from_json(json.dumps(record)) == rel


def test_ndjson_with_a_malformed_expiry_names_the_field() -> None:
    record = relationship_to_json(parse_relationship("doc:1#viewer@user:ann"))
    with pytest.raises(InvalidRelationshipError) as raised:
        relationship_from_json(json.dumps({**record, "expires_at": "next tuesday"}))
    assert raised.value.field == "expires_at"


def test_serve_refuses_without_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("POLICYD_TOKEN", raising=False)
    assert main(["serve", "--store", "memory"]) == 2
    assert "bearer token is required" in capsys.readouterr().err


@pytest.mark.parametrize("port", ["\u00b2", "\uff18\uff10", "80\n", " 80"], ids=repr)
def test_serve_refuses_a_port_that_is_not_ascii_digits(
    port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["serve", "--store", "memory", "--token", "t", "--listen", f"127.0.0.1:{port}"])
    assert code == 2
    assert "expected HOST:PORT" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "size"),
    [([], 100_000), (["--no-decision-cache"], 0), (["--decision-cache-size", "5"], 5)],
    ids=["default", "off", "sized"],
)
def test_serve_decision_cache_size(arguments: list[str], size: int) -> None:
    with serve.make_context("serve", ["--store", "memory", *arguments]) as ctx:
        assert serve_settings(ctx).decision_cache_size == size


@pytest.mark.parametrize("size", ["-1", "1.5", "many"])
def test_serve_refuses_a_cache_size_that_is_not_a_count(
    size: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--decision-cache-size", size]) == 2
    assert "expected a whole number" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "url"),
    [
        ([], "policyd.db"),
        (["--db", "x.db"], "x.db"),
        (["--store", "x.db"], "x.db"),
        (["--store", "sqlite:///tmp/x.db"], "sqlite:///tmp/x.db"),
        (["--store", "memory"], "memory://"),
        (["--store", "postgres", "--dsn", "postgresql://h/db"], "postgresql://h/db"),
        (["--store", "postgresql://h/db"], "postgresql://h/db"),
    ],
    ids=["default", "db", "path", "url", "memory", "postgres-dsn", "postgres-url"],
)
def test_one_store_url_syntax(arguments: list[str], url: str) -> None:
    with serve.make_context("serve", arguments) as ctx:
        assert serve_settings(ctx).store == url


def test_worker_settings_round_trip_through_json() -> None:
    with serve.make_context("serve", ["--store", "x.db", "--workers", "2", "--threads", "3",
                                      "--policy", "p.policy", "--xrpc-listen", "127.0.0.1:0"]
                            ) as ctx:  # fmt: skip
        settings = serve_settings(ctx)
    worker = ServeSettings.from_json(settings.for_worker(1, "127.0.0.1:5000").to_json())
    assert (worker.store, worker.threads, worker.listen, worker.workers) == (
        "x.db", 3, "127.0.0.1:5000", 1)  # fmt: skip
    assert worker.reuse_port
    assert worker.xrpc_listen is None  # worker 0 alone serves XRPC
    assert settings.for_worker(0, "127.0.0.1:5000").xrpc_listen == "127.0.0.1:0"


def _token_of(server: PolicydServer, revision: int) -> str:
    return TokenCodec(server.store.identity).token(revision)


def test_convert_openfga_model_and_store_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = ROOT / "tests" / "openfga" / "models"
    assert main(["convert", str(models / "github.fga")]) == 0
    assert "permission reader = direct_reader + triager + owner->repo_reader" in (
        capsys.readouterr().out
    )
    converted = tmp_path / "github.yaml"
    assert main(["convert", str(models / "github.fga.yaml"), "-o", str(converted)]) == 0
    assert main(["validate", str(converted)]) == 0
    broken = tmp_path / "old.fga"
    broken.write_text("model\n  schema 1.0\ntype user\n", encoding="utf-8")
    assert main(["convert", str(broken)]) == 1
    error = capsys.readouterr().err
    assert "old.fga:2:1: no-equivalent: OpenFGA schema 1.0: only schema 1.1 converts" in error
