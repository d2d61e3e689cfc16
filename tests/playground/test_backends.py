"""The read-only server backend: a real policyd server answers the playground's checks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from policyd.client import PolicydClient
from policyd.playground.backends import ServerBackend
from policyd.playground.scenario import parse_scenario, split_documents
from policyd.playground.server import Playground
from policyd.playground.workbench import Workbench
from policyd.playground.workspace import Workspace
from tests.playground.conftest import SERVER_TOKEN

POLICIES = Path(__file__).resolve().parents[2] / "policies"
ALICE = "did:plc:ragtjsm2j2vknwkz3zp4oxrd"
MALLORY = "did:plc:mallorypz3q6bx4wvk2tefhy"


@pytest.fixture
def backend(social_server: str) -> Iterator[ServerBackend]:
    """A backend reading the server that holds social.test.yaml's first scenario."""
    client = PolicydClient(social_server, token=SERVER_TOKEN)
    try:
        yield ServerBackend(client)
    finally:
        client.close()


def test_assertions_are_asked_of_the_server(backend: ServerBackend) -> None:
    text = (POLICIES / "social.test.yaml").read_text(encoding="utf-8")
    scenario = parse_scenario(split_documents(text)[0], "social.test.yaml", POLICIES)
    scenario.policy, scenario.relationships = backend.policy(), backend.sample()
    report = Workbench(backend).report(scenario)
    assert report.ran
    assert report.diagnostics == ()
    assert len(report.outcomes) == 24
    assert all(o.passed for o in report.outcomes)
    assert report.summary.startswith("ok: 24 assertions passed; expected relations are run")


def test_checks_and_graphs_come_from_the_server(backend: ServerBackend) -> None:
    workbench = Workbench(backend)
    state = Playground(workbench, Workspace(POLICIES), server_address="x").state({})
    scenario = parse_scenario("schema: x", "x.yaml", None)
    assert state["mode"] == "server"
    assert len(state["scenario"]["relationships"].split("\n")) == 16  # the scenario's all
    post = f"post:at://{ALICE}/app.bsky.feed.post/3kgpub2a2cs2x"
    answer = workbench.check(scenario, f"{post}#view_public@account:{MALLORY}", "")
    assert answer.permissionship == "no_permission"
    assert any("removes" in n.classes for n in answer.graph.nodes)
    graph = workbench.around(scenario, f"account:{MALLORY}", 2)
    assert {e.label for e in graph.edges} >= {"blocked", "follower", "author"}
