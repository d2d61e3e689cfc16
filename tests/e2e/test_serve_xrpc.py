"""``policyd serve --xrpc-listen``: checkUserAccess beside gRPC, one worker or several.

The space authority's DID document comes from a loopback PLC stand-in; the
membership is written over gRPC and the answer read over XRPC.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from policyd.atproto import METHOD
from policyd.atproto.testing import DirectoryServer, Identity, random_plc_did
from policyd.relationship import parse_relationship
from tests.e2e.server import ROOT, START_TIMEOUT, ServerFactory, ServerProcess

SPACES_POLICY = ROOT / "policies" / "spaces.policy"
APP = "did:plc:65zuidf2qgvu3noukzn2obpi#policyd"
USER = "did:plc:bobx5k4ce2yxvqnm3mhvn4lq"


@pytest.fixture
def directory() -> Iterator[DirectoryServer]:
    server = DirectoryServer()
    yield server
    server.close()


def ask(server: ServerProcess, authority: Identity, space: str, user: str) -> tuple[int, object]:
    query = urllib.parse.urlencode({"space": space, "user": user})
    request = urllib.request.Request(
        f"{server.xrpc_url}/xrpc/{METHOD}?{query}",
        headers={"authorization": f"Bearer {authority.token(APP, METHOD)}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def xrpc_flags(directory: DirectoryServer) -> list[str]:
    return [
        "--policy", str(SPACES_POLICY),
        "--xrpc-listen", "127.0.0.1:0",
        "--service-did", APP,
        "--plc-url", directory.url,
        "--insecure-loopback-http",
    ]  # fmt: skip


def wait_for_xrpc(server: ServerProcess) -> None:
    """Read the server's output until worker 0 has said where it serves XRPC."""
    deadline = time.monotonic() + START_TIMEOUT
    while not server.xrpc_url:
        line = server.lines.get(timeout=max(0.1, deadline - time.monotonic()))
        if line.startswith("policyd xrpc on "):
            server.xrpc_url = line.split()[-1]


@pytest.mark.parametrize(
    "workers", [1, pytest.param(2, marks=pytest.mark.slow)], ids=["one-process", "two-workers"]
)
def test_membership_written_over_grpc_answers_over_xrpc(
    start_server: ServerFactory, directory: DirectoryServer, tmp_path: Path, workers: int
) -> None:
    authority = Identity(random_plc_did())
    directory.publish(authority)
    space = f"at://{authority.did}/space/com.example.group/club"
    flags = xrpc_flags(directory)
    if workers > 1:
        # A write lands on either worker; worker 0 answers XRPC and reads the head revision.
        config = tmp_path / "spaces.yaml"
        config.write_text("consistency: fully_consistent\n")
        flags += ["--workers", str(workers), "--spaces-config", str(config)]
    server = start_server(*flags)
    wait_for_xrpc(server)
    assert ask(server, authority, space, USER) == (200, {"authorized": False})
    with server.client(retries=8) as client:
        client.touch([parse_relationship(f"space:{space}#member@account:{USER}")])
    assert ask(server, authority, space, USER) == (200, {"authorized": True})
    assert ask(server, Identity(random_plc_did()), space, USER)[0] == 401
    assert server.terminate(timeout=30) == 0  # SIGTERM stops XRPC too, then the store closes


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--xrpc-listen", "127.0.0.1:0"], "--xrpc-listen needs --service-did"),
        (["--xrpc-listen", "127.0.0.1:0", "--service-did", "did:plc:x"], "did:…#fragment"),
        (["--xrpc-listen", "nowhere", "--service-did", APP], "expected HOST:PORT"),
        (
            ["--xrpc-listen", "127.0.0.1:0", "--service-did", APP, "--plc-url", "http://plc.test"],
            "must be https://",
        ),
        (
            ["--xrpc-listen", "127.0.0.1:0", "--service-did", APP, "--spaces-config", "<typo>"],
            "unknown setting 'read_permision'",
        ),
        (
            ["--xrpc-listen", "127.0.0.1:0", "--service-did", APP, "--policy", "<social>"],
            "no 'space#write'",
        ),
        (["--xrpc-listen", "127.0.0.1:0", "--service-did", APP], "needs a policy in force"),
    ],
    ids=[
        "no-service-did",
        "no-fragment",
        "bad-listen",
        "http-plc",
        "config-typo",
        "policy",
        "none",
    ],
)
def test_configuration_errors_fail_at_start(tmp_path: Path, flags: list[str], message: str) -> None:
    typo = tmp_path / "spaces.yaml"
    typo.write_text("read_permision: view\n")
    social = ROOT / "policies" / "social.policy"
    flags = [str(typo) if f == "<typo>" else str(social) if f == "<social>" else f for f in flags]
    result = subprocess.run(
        [sys.executable, "-m", "policyd.cli", "serve", "--insecure-no-auth", "--store", "memory",
         "--listen", "127.0.0.1:0", "--metrics-listen", "off", *flags],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "policyd listening" not in result.stdout
