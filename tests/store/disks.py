"""Small real filesystems for the full-disk and read-only tests: a tmpfs of a few MiB.

Mounting needs root (CI containers run as root); elsewhere the tests that need
one skip with the reason. A tmpfs is a real filesystem for what these tests
need: it refuses to grow a file past its size (ENOSPC) and a read-only remount
refuses every write (EROFS), whatever the caller's permissions.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

SIZE = "4m"


@contextlib.contextmanager
def small_disk(path: Path) -> Iterator[Path]:
    """Mount a 4 MiB tmpfs at ``path`` for the block (skips the test when that is not allowed)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for the full-disk test needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path) -> Path:
    """Fill the disk to the last byte with one file; returns it (truncate it to free space)."""
    filler = disk / "filler"
    with contextlib.suppress(OSError), filler.open("ab", buffering=0) as out:
        while True:
            out.write(b"\0" * 4096)
    return filler


def set_read_only(disk: Path, read_only: bool) -> None:
    """Remount the disk read-only or read-write."""
    mode = "ro" if read_only else "rw"
    subprocess.run(["mount", "-o", f"remount,{mode}", str(disk)], check=True)
