"""Fixtures: a copy of the example policies to save into, and ``policyd playground`` serving it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from policyd.api.server import PolicydServer, ServerConfig
from policyd.engine import Engine
from policyd.store.memory import MemoryStore
from policyd.validationfile import load_validation_files

POLICIES = Path(__file__).resolve().parents[2] / "policies"
SERVER_TOKEN = "playground-test"


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    """A copy of policies/, so saves change nothing in the repository."""
    copy = tmp_path / "policies"
    shutil.copytree(POLICIES, copy)
    return copy


@pytest.fixture
def social_server() -> Iterator[str]:
    """The address of a policyd server holding the first scenario of social.test.yaml."""
    (loaded, *_) = load_validation_files(POLICIES / "social.test.yaml")
    store = MemoryStore()
    engine = Engine(store)
    engine.write_policy(loaded.policy_text, "social.policy")
    engine.import_relationships(loaded.relationships)
    config = ServerConfig(listen="127.0.0.1:0", token=SERVER_TOKEN)
    server = PolicydServer(engine, store, config, CollectorRegistry())
    server.start()
    try:
        yield server.address
    finally:
        server.stop(grace=1)


def start_playground(*arguments: str) -> Iterator[str]:
    """Run ``policyd playground ARGUMENTS`` on a free loopback port; yield its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "policyd.cli", "playground", *arguments, "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("playground on http://127.0.0.1:"), line
        yield line.split()[-1]
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def playground(policies: Path) -> Iterator[str]:
    """The URL of ``policyd playground policies/social.test.yaml``."""
    yield from start_playground(str(policies / "social.test.yaml"))


@pytest.fixture
def server_playground(policies: Path, social_server: str) -> Iterator[str]:
    """The URL of ``policyd playground policies --server`` reading ``social_server``."""
    yield from start_playground(str(policies), "--server", social_server, "--token", SERVER_TOKEN)
