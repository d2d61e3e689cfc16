"""Fixtures: a copy of the example policies to save into, and ``policyd playground`` serving it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

POLICIES = Path(__file__).resolve().parents[2] / "policies"


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    """A copy of policies/, so saves change nothing in the repository."""
    copy = tmp_path / "policies"
    shutil.copytree(POLICIES, copy)
    return copy


@pytest.fixture
def playground(policies: Path) -> Iterator[str]:
    """The URL of ``policyd playground policies/social.test.yaml`` on a free loopback port."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "policyd.cli",
            "playground",
            str(policies / "social.test.yaml"),
            "--listen",
            "127.0.0.1:0",
        ],
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
