"""Faults across processes: SIGKILL mid-write and mid-group, racing CREATEs, writers in order."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from policyd.filters import RelationshipFilter
from policyd.store import open_store
from policyd.store.base import ChangeKind, Store
from tests.store.schemas import POLICY_TEXT, base_schema

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite-file"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of a shared store with the base policy written, for several processes."""
    if request.param == "sqlite":
        url = f"sqlite://{tmp_path / 'shared.db'}"
    else:
        dsn = request.getfixturevalue("pg_dsn")
        sep = "&" if "?" in dsn else "?"
        url = f"{dsn}{sep}schema=f_{uuid.uuid4().hex[:12]}"
    store = open_store(url)
    store.write_policy(POLICY_TEXT, base_schema())
    store.close()
    yield url
    if request.param == "postgres":
        from policyd.store.postgres import PostgresStore

        store = open_store(url)
        assert isinstance(store, PostgresStore)
        store.drop()
        store.close()


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.store.worker", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def finish(proc: subprocess.Popen[str]) -> list[str]:
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    return out.splitlines()


def everything(store: Store) -> list[str]:
    return [str(r) for r in store.snapshot().export_relationships()]


@pytest.mark.slow
@pytest.mark.parametrize("use_import", [False, True], ids=["write", "import"])
def test_sigkill_mid_write_leaves_no_partial_batch(store_url: str, use_import: bool) -> None:
    big = "300000" if use_import else "100000"
    proc = spawn(
        "big-write", store_url, "--count", "25", "--big", big, *(["--import"] * use_import)
    )
    assert proc.stdout is not None
    acked: list[tuple[int, str]] = []
    for line in proc.stdout:
        word, *rest = line.split()
        if word == "ack":
            acked.append((int(rest[0]), rest[1]))
        if word == "big":
            break
    time.sleep(0.4)
    proc.send_signal(signal.SIGKILL)
    tail = proc.stdout.read()
    proc.wait()
    assert "done" not in tail, "the big batch finished before the kill; make it bigger"
    assert len(acked) == 25
    store = open_store(store_url)
    try:
        assert store.head_revision() == acked[-1][0]
        assert everything(store) == sorted(
            (text for _, text in acked), key=lambda t: (t.split("#")[0], t)
        )
        store.write_policy(POLICY_TEXT, base_schema())  # the store still takes writes
    finally:
        store.close()


@pytest.mark.slow
def test_sigkill_mid_group_loses_no_acknowledged_write_and_splits_no_request(
    store_url: str,
) -> None:
    """Kill a writer process and the process feeding it while groups of requests commit."""
    store = open_store(store_url)
    start = store.head_revision()
    store.close()
    size = 20  # relationships per request, so a group takes a while to apply
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.store.worker",
            "group-writes",
            store_url,
            "--size",
            str(size),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        start_new_session=True,  # the writer process joins its process group
    )
    assert proc.stdout is not None
    acked: dict[str, int] = {}
    for line in proc.stdout:
        _, revision, request = line.split()
        acked[request] = int(revision)
        if len(acked) >= 400:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    for line in proc.stdout.read().splitlines():  # acknowledged before the kill landed
        _, revision, request = line.split()
        acked[request] = int(revision)
    proc.wait()
    store = open_store(store_url)
    dense = store_url.startswith("sqlite")  # PostgreSQL numbers by transaction id, which skips
    try:
        if not dense:
            from policyd.store.postgres import PostgresStore

            assert isinstance(store, PostgresStore)
            store.advance()  # past a group that committed as the kill landed, before its head
        found: dict[str, set[int]] = {}
        count: dict[str, int] = {}
        for event in store.changes(start, limit=1_000_000):
            assert event.relationship is not None
            request = event.relationship.resource.id
            found.setdefault(request, set()).add(event.revision)
            count[request] = count.get(request, 0) + 1
        for request, at in acked.items():
            assert found.get(request) == {at}, f"acknowledged {request} lost"
        for request, where in found.items():
            assert count[request] == size, f"{request} written in part"
            assert len(where) == 1, f"{request} split across revisions"
        # One revision per request, up to the head, with no gaps where numbering is dense.
        every = sorted(r for rs in found.values() for r in rs)
        assert len(set(every)) == len(every)
        head = store.head_revision()
        assert every[-1] == head
        if dense:
            assert every == list(range(start + 1, head + 1))
    finally:
        store.close()


def test_racing_creates_have_exactly_one_winner(store_url: str) -> None:
    start = f"{time.time() + 1.5:.3f}"
    procs = [spawn("race", store_url, "--count", "30", "--start-at", start) for _ in range(2)]
    outcomes = [finish(p) for p in procs]
    for i in range(30):
        results = sorted(
            next(line.split()[0] for line in out if line.endswith(f" {i}")) for out in outcomes
        )
        assert results == ["lost", "won"], f"relationship {i}: {results}"
    store = open_store(store_url)
    try:
        assert (
            len(store.snapshot().read(RelationshipFilter(resource_type="document")).relationships)
            == 30
        )
    finally:
        store.close()


def test_concurrent_writers_commit_in_revision_order(store_url: str) -> None:
    store = open_store(store_url)
    start_revision = store.head_revision()
    start = f"{time.time() + 1.5:.3f}"
    procs = [
        spawn("writer", store_url, "--name", name, "--count", "150", "--start-at", start)
        for name in ("a", "b")
    ]
    try:
        # While they write, note what each head a reader sees comes with: no revision may
        # turn up at or below a head later (revisions need not be dense numbers, so this is
        # asked of the change log at the end, not of the numbers).
        observed: list[tuple[int, set[int]]] = []
        while any(p.poll() is None for p in procs):
            head = store.head_revision()
            revisions = {e.revision for e in store.changes(start_revision, limit=100_000)}
            observed.append((head, {r for r in revisions if r <= head}))
        acks = [finish(p) for p in procs]
        by_revision: dict[int, str] = {}
        for out in acks:
            revs = [int(line.split()[1]) for line in out]
            assert revs == sorted(revs)
            for line in out:
                _, rev, text = line.split()
                assert int(rev) not in by_revision
                by_revision[int(rev)] = text
        assert len(by_revision) == 300
        assert min(by_revision) > start_revision
        assert store.head_revision() == max(by_revision)
        final = {e.revision for e in store.changes(start_revision, limit=1000)}
        assert final == set(by_revision)
        assert observed
        for head, seen in observed:
            assert seen == {r for r in final if r <= head}
        for event in store.changes(start_revision, limit=1000):
            assert event.kind is ChangeKind.TOUCH
            assert str(event.relationship) == by_revision[event.revision]
    finally:
        store.close()
