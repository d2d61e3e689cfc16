"""PostgreSQL clusters of a test's own, from Debian's binaries: to stop, restart and replicate.

The shared test server (``POLICYD_TEST_PG_DSN``) must keep running for every
other test, so a test that stops PostgreSQL, or needs a streaming standby,
makes its own cluster here: ``initdb`` into a fresh directory, a free port on
127.0.0.1, trust authentication on loopback (nothing else can reach it).
Running as root (as CI does), the server runs as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

START_TIMEOUT = 60


def bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin directory, or None."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Cluster:
    """One PostgreSQL cluster: a data directory and a port."""

    def __init__(self, bindir: Path, data: Path, port: int) -> None:
        self.bindir = bindir
        self.data = data
        self.port = port

    def _run(self, *args: str, timeout: float = START_TIMEOUT) -> str:
        command = [str(a) for a in args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stdout}{done.stderr}")
        return done.stdout

    @classmethod
    def create(cls, bindir: Path, data: Path) -> Cluster:
        """``initdb`` a new cluster in ``data`` (created, owned by the server's user)."""
        cluster = cls(bindir, data, free_port())
        cluster._own(data)
        cluster._run(
            str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8"
        )
        return cluster

    @staticmethod
    def _own(directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(directory, user.pw_uid, user.pw_gid)
        directory.chmod(0o700)

    def start(self) -> None:
        """Start the server on 127.0.0.1:port and wait until it accepts connections."""
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.data} -c max_connections=100 -c fsync=off"
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.data / "server.log"),
            "-w",
            "-t",
            str(START_TIMEOUT),
            "-o",
            options,
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: sessions are ended, as an operator's restart does)."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        """Whether the server is up."""
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "status")
        except RuntimeError:
            return False
        return True

    @property
    def dsn(self) -> str:
        """The DSN of its ``postgres`` database as the superuser."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def standby(self, data: Path) -> Cluster:
        """A streaming hot standby of this cluster in ``data``, started."""
        standby = Cluster(self.bindir, data, free_port())
        self._own(data)
        self._run(
            str(self.bindir / "pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-D",
            str(data),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
        )
        standby.start()
        return standby


@contextlib.contextmanager
def scratch_directory() -> Iterator[Path]:
    """A directory the ``postgres`` user can reach (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="policyd-pg-", dir="/var/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def require_binaries() -> Path:
    """The PostgreSQL bin directory; skips locally, fails in CI, when there is none."""
    bindir = bin_dir()
    if bindir is None:
        reason = "no PostgreSQL server binaries in /usr/lib/postgresql (bash .ci/postgres.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run the PostgreSQL fault tests, not skip them")
        pytest.skip(reason)
    return bindir


@contextlib.contextmanager
def own_cluster() -> Iterator[Cluster]:
    """A started cluster of the caller's own, stopped and removed afterwards."""
    bindir = require_binaries()
    with scratch_directory() as root:
        cluster = Cluster.create(bindir, root / "primary")
        cluster.start()
        try:
            yield cluster
        finally:
            if cluster.running():
                cluster.stop("immediate")


def wait_until(condition: object, timeout: float = 30.0, interval: float = 0.05) -> bool:
    """Poll ``condition()`` until it is true or ``timeout`` passes; its last value."""
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return bool(condition())
        time.sleep(interval)
