"""Fixtures of the command-line tests: a real gRPC server on loopback over a MemoryStore."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from policyd.api.server import PolicydServer, ServerConfig
from policyd.cli import main
from policyd.engine import Engine
from policyd.store.memory import MemoryStore

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "atproto.policy"
TOKEN = "cli-token-0123456789"


@pytest.fixture
def server() -> Iterator[PolicydServer]:
    store = MemoryStore()
    running = PolicydServer(
        Engine(store),
        store,
        ServerConfig(listen="127.0.0.1:0", token=TOKEN),
        CollectorRegistry(),
    )
    running.start()
    yield running
    running.stop(grace=1)


@pytest.fixture
def remote(server: PolicydServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("POLICYD_SERVER", server.address)
    monkeypatch.setenv("POLICYD_TOKEN", TOKEN)
    assert main(["policy", "write", str(POLICY), "--server", server.address]) == 0
    return server.address
