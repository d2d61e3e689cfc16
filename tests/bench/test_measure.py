"""What the benchmarks read about processes: the tree under a pid, its CPU time and memory."""

from __future__ import annotations

import os
import subprocess
import sys

from policyd.bench.measure import cpu_seconds, load_average, process_tree, rss_of_mib


def test_process_tree_cpu_and_memory() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        tree = process_tree(os.getpid())
        assert tree[0] == os.getpid()
        assert child.pid in tree
        assert cpu_seconds(tree) > 0
        assert rss_of_mib([os.getpid()]) > 0
    finally:
        child.kill()
        child.wait()
    assert process_tree(child.pid) == []
    assert len(load_average().split()) == 3
