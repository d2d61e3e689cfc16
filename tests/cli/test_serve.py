"""What `policyd serve` does to its own process before it listens."""

from __future__ import annotations

import subprocess
import sys

from policyd.cli.serve import COLLECT_EVERY

PROBE = """
import gc
from policyd.cli.serve import settle_collector
kept = [[i] for i in range(1000)]
settle_collector()
print(gc.get_threshold()[0], gc.get_freeze_count() >= len(kept))
"""


def test_settle_collector_freezes_the_loaded_heap_and_collects_less_often() -> None:
    # In a child: the thresholds are process-wide and must not leak into the test run.
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out == [str(COLLECT_EVERY), "True"]
