"""``policyd ingest`` as a subprocess, started and read up to its first line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def start_ingest(url: str, db: Path, *options: str) -> subprocess.Popen[str]:
    """Run ``policyd ingest URL --db sqlite:///DB OPTIONS…`` until it says where it starts."""
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "policyd.cli", "ingest", url, "--db", f"sqlite:///{db}"),
            *("--metrics-listen", "off", *options),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("policyd ingest:"), line
    return process
