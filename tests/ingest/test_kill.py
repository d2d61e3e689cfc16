"""SIGKILL ``policyd ingest`` at random moments; the store must always equal the ground truth.

After every kill the store holds exactly what the events up to its stored
position lead to (the position and the writes commit together), and after a
last run to the end of the stream, exactly what all of them lead to.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest

from policyd import Engine
from policyd.ingest.source import source_name
from policyd.ingest.testing.encode import BLOCK, FOLLOW, POST, Op, Timeline, block, follow, post
from policyd.ingest.testing.server import StreamScript, StreamServer
from policyd.store.sqlite import SqliteStore

from .conftest import POLICY, WAIT_SECONDS, relationships
from .process import start_ingest

pytestmark = pytest.mark.slow

EVENTS = 6000
KILLS = 5
FAST = ("--batch-size", "40", "--batch-seconds", "0.01")


class Truth:
    """The events as a model: each record's relationships, folded in seq order."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, str, frozenset[str]]] = []  # (kind, key, relationships)

    def at(self, position: int) -> set[str]:
        records: dict[str, frozenset[str]] = {}
        for kind, key, rels in self.steps[:position]:
            if kind == "record":
                records[key] = rels
            elif kind == "repo-deleted":
                records = {u: r for u, r in records.items() if not u.startswith(f"at://{key}/")}
        return set().union(*records.values()) if records else set()


def script(seed: int) -> tuple[Timeline, Truth]:
    rng = random.Random(seed)
    t, truth = Timeline(), Truth()
    repos = [f"did:plc:repo{i}" for i in range(40)]
    subjects = [f"did:plc:subject{i}" for i in range(60)]
    live: dict[str, tuple[str, str]] = {}  # uri → (collection, subject)
    counter = 0
    while len(t.frames) < EVENTS:
        roll = rng.random()
        repo = rng.choice(repos)
        mine = [u for u in live if u.startswith(f"at://{repo}/")]
        if roll < 0.01 and len(repos) > 10:
            repos.remove(repo)
            t.account(repo, False, "deleted")
            truth.steps.append(("repo-deleted", repo, frozenset()))
            for uri in mine:
                del live[uri]
            continue
        if roll < 0.03:
            t.identity(repo, f"{repo[8:]}.test")
            truth.steps.append(("none", "", frozenset()))
            continue
        if roll < 0.08:
            counter += 1
            t.commit(repo, Op("create", POST, f"p{counter}", post("hello")))
            truth.steps.append(("none", "", frozenset()))
            continue
        if mine and roll < 0.35:
            uri = rng.choice(mine)
            collection, rkey = uri.split("/")[3], uri.split("/")[4]
            if rng.random() < 0.5:
                t.commit(repo, Op("delete", collection, rkey))
                del live[uri]
                truth.steps.append(("record", uri, frozenset()))
                continue
            subject = rng.choice(subjects)
            record = follow(subject) if collection == FOLLOW else block(subject)
            t.commit(repo, Op("update", collection, rkey, record))
            live[uri] = (collection, subject)
            truth.steps.append(("record", uri, frozenset({_text(repo, collection, subject)})))
            continue
        counter += 1
        collection = FOLLOW if rng.random() < 0.8 else BLOCK
        subject = rng.choice(subjects)
        record = follow(subject) if collection == FOLLOW else block(subject)
        rkey = f"r{counter}"
        uri = f"at://{repo}/{collection}/{rkey}"
        t.commit(repo, Op("create", collection, rkey, record))
        live[uri] = (collection, subject)
        truth.steps.append(("record", uri, frozenset({_text(repo, collection, subject)})))
    return t, truth


def _text(repo: str, collection: str, subject: str) -> str:
    if collection == FOLLOW:
        return f"account:{subject}#follower@account:{repo}"
    return f"account:{repo}#blocked@account:{subject}"


def test_sigkill_at_random_moments_never_loses_or_repeats(tmp_path: Path) -> None:
    timeline, truth = script(seed=14)
    db = tmp_path / "kill.db"
    store = SqliteStore(db)
    Engine(store).write_policy(POLICY)
    server = StreamServer(StreamScript(frames=list(timeline.frames)))
    name = source_name(server.url)
    rng = random.Random(1)
    positions = []
    try:
        for _ in range(KILLS):
            process = start_ingest(server.url, db, *FAST)
            time.sleep(rng.uniform(0.05, 0.8))  # a random moment to kill at, not a wait
            process.send_signal(signal.SIGKILL)
            process.wait(WAIT_SECONDS)
            position = store.ingest_position(name) or 0
            positions.append(position)
            assert relationships(store) == truth.at(position), f"after a kill at {position}"
        process = start_ingest(server.url, db, *FAST)
        deadline = time.monotonic() + WAIT_SECONDS * 4
        while (store.ingest_position(name) or 0) < EVENTS and time.monotonic() < deadline:
            if process.poll() is not None:
                break
            time.sleep(0.05)  # polling the store for the last position
        process.send_signal(signal.SIGTERM)
        assert process.wait(WAIT_SECONDS) == 0
    finally:
        server.close()
    assert store.ingest_position(name) == EVENTS
    assert relationships(store) == truth.at(EVENTS)
    assert len(truth.at(EVENTS)) > 100
    assert any(0 < p < EVENTS for p in positions), positions
    store.close()
