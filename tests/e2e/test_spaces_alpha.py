"""The real spaces alpha PDS asks ``policyd serve`` as a space's managing app.

``../shared/atproto-spaces-alpha`` (beside the repository) holds the reference
PDS built from the atproto ``permissioned-data`` branch, with a local PLC
directory and a control API, runnable offline on loopback (its README). Its
``run.sh`` installs Node 22 and better-sqlite3 from the npm registry on first
use (about a minute), then starts in about a second. The test skips, saying
so, only where that folder is absent.

Here the PDS mints space credentials for users of a ``managing-app`` space
whose managingApp is policyd: it signs a service-auth token with the space
owner's key, calls ``checkUserAccess`` on policyd's XRPC port, and policyd
resolves the owner's DID through that PLC, verifies the token, and answers
from ``policies/spaces.policy``.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from policyd.filters import RelationshipFilter
from policyd.relationship import parse_relationship
from tests.e2e.server import ROOT, ServerFactory, ServerProcess

ALPHA = ROOT.parent / "shared" / "atproto-spaces-alpha"
SPACES_POLICY = ROOT / "policies" / "spaces.policy"
FIRST_START_TIMEOUT = 900.0  # the first run installs Node 22 and compiles better-sqlite3

pytestmark = pytest.mark.skipif(
    not (ALPHA / "run.sh").is_file(),
    reason=f"the spaces alpha peer is not at {ALPHA} (it lives in shared/ beside the repository)",
)


def call(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST ``body`` as JSON (GET without one) and return the JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        answer: dict[str, Any] = json.load(response)
    return answer


def jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    padded = payload + "=" * (-len(payload) % 4)
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return claims


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The alpha's PLC + PDS + control API, stopped when stdin closes or on SIGTERM."""
    log = (tmp_path_factory.mktemp("alpha") / "peer.log").open("w")
    process = subprocess.Popen(
        ["bash", str(ALPHA / "run.sh")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**os.environ, "SPACES_PEER_EXIT_ON_STDIN_EOF": "1"},
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        info: dict[str, Any] = json.loads(lines.get(timeout=FIRST_START_TIMEOUT))
    except (queue.Empty, json.JSONDecodeError):
        process.kill()
        process.wait(10)
        log.close()
        raise RuntimeError(f"the spaces alpha peer did not start; see {log.name}") from None
    yield info
    process.terminate()  # run.sh execs node: this is the peer itself
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
    log.close()


def metric(server: ServerProcess, name: str, **labels: str) -> float:
    """The value of one sample on the server's /metrics (0 when it is not there)."""
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def credential(control: str, user: dict[str, Any], space: str) -> dict[str, Any]:
    """Ask the PDS for a space credential as ``user`` (delegation token, then DPoP-bound mint)."""
    return call(f"{control}/credential", {"user": user["did"], "space": space})


def audit_lines(server: ServerProcess) -> list[dict[str, Any]]:
    """The decisions policyd logged, in order."""
    marker = "policyd.atproto.audit "
    return [json.loads(line.split(marker, 1)[1]) for line in list(server.stderr) if marker in line]


def test_the_alpha_pds_asks_policyd_as_the_managing_app(
    peer: dict[str, Any], start_server: ServerFactory
) -> None:
    control = peer["controlUrl"]
    port = free_port()
    service = call(
        f"{control}/service-did",
        {"serviceId": "policyd", "endpoint": f"http://127.0.0.1:{port}"},
    )
    managing_app = service["serviceRef"]
    server = start_server(
        "--policy", str(SPACES_POLICY),
        "--xrpc-listen", f"127.0.0.1:{port}",
        "--service-did", managing_app,
        "--plc-url", peer["plcUrl"],
        "--insecure-loopback-http",
    )  # fmt: skip
    assert server.xrpc_url == f"http://127.0.0.1:{port}"

    owner, alice, bob, mallory = (call(f"{control}/account", {}) for _ in range(4))
    space = call(
        f"{control}/space",
        {"owner": owner["did"], "policy": "managing-app", "managingApp": managing_app},
    )["uri"]
    member = {
        who["did"]: parse_relationship(f"space:{space}#member@account:{who['did']}")
        for who in (alice, mallory)
    }
    with server.client() as client:
        client.touch(
            [*member.values(), parse_relationship(f"space:{space}#banned@account:{mallory['did']}")]
        )

        # A member gets a credential the authority signed for this space.
        issued = credential(control, alice, space)
        assert issued["issued"] is True, issued
        claims = jwt_claims(issued["credential"])
        assert (claims["iss"], claims["sub"]) == (owner["did"], space)

        # A non-member and a banned member are refused.
        for user in (bob, mallory):
            refused = credential(control, user, space)
            assert (refused["issued"], refused["error"]) == (False, "UserNotAuthorized"), refused

        # Removing the membership in policyd makes the next request fail.
        client.delete(
            RelationshipFilter(
                resource_type="space",
                resource_id=space,
                relation="member",
                subject_type="account",
                subject_id=alice["did"],
            )
        )
        assert credential(control, alice, space)["issued"] is False

    # The PDS never asks about the authority itself (authorizeUser answers that).
    assert credential(control, owner, space)["issued"] is True

    decisions = audit_lines(server)
    assert [(d["user"], d["answer"]) for d in decisions] == [
        (alice["did"], "authorized"),
        (bob["did"], "denied"),
        (mallory["did"], "denied"),
        (alice["did"], "denied"),
    ]
    for decision in decisions:
        assert (decision["space"], decision["iss"], decision["permission"]) == (
            space,
            owner["did"],
            "read",
        )
        assert decision["clientId"] is None
        assert isinstance(decision["revision"], int)
    assert metric(server, "policyd_xrpc_answers_total", answer="authorized") == 1
    assert metric(server, "policyd_xrpc_answers_total", answer="denied") == 3
    assert metric(server, "policyd_xrpc_refusals_total") == 0
    # policyd resolved the authority's key through the alpha's PLC, once, then from its cache.
    assert metric(server, "policyd_did_fetches_total", method="plc", result="ok") == 1


def test_a_token_for_another_app_is_refused_and_the_pds_fails_closed(
    peer: dict[str, Any], start_server: ServerFactory
) -> None:
    """A space naming another service id at policyd's endpoint: policyd says 401, the PDS no."""
    control = peer["controlUrl"]
    port = free_port()
    ours = call(
        f"{control}/service-did", {"serviceId": "policyd", "endpoint": f"http://127.0.0.1:{port}"}
    )
    theirs = call(
        f"{control}/service-did", {"serviceId": "other", "endpoint": f"http://127.0.0.1:{port}"}
    )
    server = start_server(
        "--policy", str(SPACES_POLICY),
        "--xrpc-listen", f"127.0.0.1:{port}",
        "--service-did", ours["serviceRef"],
        "--plc-url", peer["plcUrl"],
        "--insecure-loopback-http",
    )  # fmt: skip
    owner, alice = (call(f"{control}/account", {}) for _ in range(2))
    space = call(
        f"{control}/space",
        {"owner": owner["did"], "policy": "managing-app", "managingApp": theirs["serviceRef"]},
    )["uri"]
    with server.client() as client:
        client.touch([parse_relationship(f"space:{space}#member@account:{alice['did']}")])
    refused = credential(control, alice, space)
    assert (refused["issued"], refused["error"]) == (False, "UserNotAuthorized"), refused
    assert metric(server, "policyd_xrpc_refusals_total", reason="wrong-audience") == 1
    assert audit_lines(server) == []
