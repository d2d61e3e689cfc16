"""The ingester against a loopback WebSocket server replaying real firehose and Jetstream frames."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from policyd import Engine, parse_object, parse_subject
from policyd.ingest.testing.encode import (
    BLOCK,
    FOLLOW,
    LISTITEM,
    POST,
    Op,
    Timeline,
    block,
    commit_frame,
    error_frame,
    follow,
    jetstream_account,
    jetstream_commit,
    listitem,
    post,
    repo_car,
    tid,
)
from policyd.ingest.testing.server import StreamScript, StreamServer
from policyd.store.base import Store

from .conftest import RunIngester, at_position, relationships

ALICE, BOB, CAROL, DAVE = (f"did:plc:{n}" for n in ("alice", "bob", "carol", "dave"))
LIST = f"at://{ALICE}/app.bsky.graph.list/friends"


@pytest.fixture
def server() -> Iterator[StreamServer]:
    started = StreamServer(StreamScript())
    yield started
    started.close()


def followers_only(store: Store, author: str, viewer: str) -> bool:
    result = Engine(store).check(
        parse_object(f"account:{author}"), "see_followers_only", parse_subject(f"account:{viewer}")
    )
    return result.allowed


def test_creates_updates_and_deletes_follow_the_records(
    store: Store, server: StreamServer, run_ingester: RunIngester
) -> None:
    t = Timeline()
    t.commit(BOB, Op("create", FOLLOW, "f1", follow(ALICE)), Op("create", POST, "p1", post("hi")))
    t.commit(CAROL, Op("create", FOLLOW, "f2", follow(ALICE)))
    t.commit(ALICE, Op("create", BLOCK, "b1", block(CAROL)))
    t.commit(ALICE, Op("create", LISTITEM, "i1", listitem(LIST, DAVE)))
    t.commit(DAVE, Op("create", FOLLOW, "f3", follow(BOB)))
    t.commit(DAVE, Op("update", FOLLOW, "f3", follow(ALICE)))
    last = t.commit(BOB, Op("delete", POST, "p1"), Op("delete", FOLLOW, "f1"))
    server.script.frames = list(t.frames)

    run = run_ingester(server.url, at_position(server.url, last))

    assert relationships(store) == {
        f"account:{ALICE}#follower@account:{CAROL}",
        f"account:{ALICE}#follower@account:{DAVE}",
        f"account:{ALICE}#blocked@account:{CAROL}",
        f"list:{LIST}#member@account:{DAVE}",
    }
    assert followers_only(store, ALICE, DAVE)
    assert not followers_only(store, ALICE, CAROL)  # follows, but blocked
    assert not followers_only(store, ALICE, BOB)  # unfollowed
    assert run.sample("policyd_ingest_events_total", kind="commit") == last
    assert run.sample("policyd_ingest_position") == last
    assert server.paths == ["/xrpc/com.atproto.sync.subscribeRepos"]


def test_account_and_identity_events(
    store: Store, server: StreamServer, run_ingester: RunIngester
) -> None:
    t = Timeline()
    t.commit(BOB, Op("create", FOLLOW, "f1", follow(ALICE)), Op("create", BLOCK, "b1", block(DAVE)))
    t.commit(CAROL, Op("create", FOLLOW, "f2", follow(ALICE)))
    t.commit(ALICE, Op("create", FOLLOW, "f3", follow(BOB)))
    t.identity(BOB, "bob2.test")  # a handle change: relationships name DIDs, nothing changes
    t.account(CAROL, active=False, status="deactivated")  # kept: the repo comes back as it was
    last = t.account(BOB, active=False, status="deleted")  # the deleted account's graph goes
    server.script.frames = list(t.frames)

    run = run_ingester(server.url, at_position(server.url, last))

    assert relationships(store) == {
        f"account:{ALICE}#follower@account:{CAROL}",
        f"account:{BOB}#follower@account:{ALICE}",  # in Alice's repo, which still exists
    }
    assert run.sample("policyd_ingest_events_total", kind="identity") == 1
    assert run.sample("policyd_ingest_events_total", kind="account") == 2


def test_out_of_order_and_duplicate_frames_change_nothing_twice(
    store: Store, server: StreamServer, run_ingester: RunIngester
) -> None:
    created = commit_frame(1, BOB, tid(1), [Op("create", FOLLOW, "f1", follow(ALICE))])
    deleted = commit_frame(2, BOB, tid(2), [Op("delete", FOLLOW, "f1")])
    carol = commit_frame(3, CAROL, tid(3), [Op("create", FOLLOW, "f2", follow(ALICE))])
    # the delete arrives before the create it undoes, and Carol's follow three times
    server.script.frames = [(2, deleted), (1, created), (3, carol), (3, carol)]
    server.script.extra_first = [(3, carol)]

    run = run_ingester(server.url, at_position(server.url, 3))

    assert relationships(store) == {f"account:{ALICE}#follower@account:{CAROL}"}
    assert run.sample("policyd_ingest_records_total", result="stale") == 3
    assert run.sample("policyd_ingest_records_total", result="applied") == 2


def test_a_malformed_frame_is_skipped_whole(
    store: Store, server: StreamServer, run_ingester: RunIngester
) -> None:
    good = commit_frame(1, BOB, tid(1), [Op("create", FOLLOW, "f1", follow(ALICE))])
    # two ops, the second's record block missing: neither op may be applied
    partial = commit_frame(
        2,
        CAROL,
        tid(2),
        [Op("create", FOLLOW, "f2", follow(ALICE)), Op("create", BLOCK, "b2", block(BOB))],
        drop_blocks=True,
    )
    later = commit_frame(4, DAVE, tid(4), [Op("create", FOLLOW, "f4", follow(ALICE))])
    server.script.frames = [
        (1, good),
        (None, b"\xff\x00 not cbor"),
        (2, partial),
        (3, good[: len(good) // 2]),  # truncated
        (4, later),
    ]

    run = run_ingester(server.url, at_position(server.url, 4))

    assert relationships(store) == {
        f"account:{ALICE}#follower@account:{BOB}",
        f"account:{ALICE}#follower@account:{DAVE}",
    }
    assert run.sample("policyd_ingest_malformed_frames_total") == 3


def test_a_dropped_connection_resumes_from_the_last_position(
    store: Store, server: StreamServer, run_ingester: RunIngester
) -> None:
    t = Timeline()
    for i in range(20):
        t.commit(f"did:plc:user{i}", Op("create", FOLLOW, f"f{i}", follow(ALICE)))
    server.script.frames = list(t.frames)
    server.script.drop_after = 7

    run = run_ingester(server.url, at_position(server.url, 20))

    assert relationships(store) == {
        f"account:{ALICE}#follower@account:did:plc:user{i}" for i in range(20)
    }
    assert server.connections >= 2
    assert any("cursor=" in path for path in server.paths[1:])
    assert (run.sample("policyd_ingest_reconnects_total") or 0) >= 1


def test_an_error_frame_reconnects(
    store: Store, server: StreamServer, run_ingester: RunIngester
) -> None:
    t = Timeline()
    last = t.commit(BOB, Op("create", FOLLOW, "f1", follow(ALICE)))
    server.script.extra_first = [(None, error_frame("ConsumerTooSlow", "catch up"))]
    server.script.frames = list(t.frames)

    run_ingester(server.url, at_position(server.url, last))

    assert relationships(store) == {f"account:{ALICE}#follower@account:{BOB}"}
    assert server.connections == 2


def test_restart_resumes_from_the_stored_position(
    store: Store, server: StreamServer, run_ingester: RunIngester
) -> None:
    t = Timeline()
    t.commit(BOB, Op("create", FOLLOW, "f1", follow(ALICE)))
    server.script.frames = list(t.frames)
    run_ingester(server.url, at_position(server.url, 1))
    last = t.commit(CAROL, Op("create", FOLLOW, "f2", follow(ALICE)))
    server.script.frames = list(t.frames)

    run_ingester(server.url, at_position(server.url, last))

    assert server.paths[-1].endswith("?cursor=1")
    assert len(relationships(store)) == 2


def test_jetstream(store: Store, server: StreamServer, run_ingester: RunIngester) -> None:
    base = 1_767_225_600_000_000
    server.script.frames = [
        (
            base + 1,
            jetstream_commit(base + 1, BOB, tid(1), Op("create", FOLLOW, "f1", follow(ALICE))),
        ),
        (
            base + 2,
            jetstream_commit(base + 2, CAROL, tid(2), Op("create", BLOCK, "b1", block(BOB))),
        ),
        (base + 3, jetstream_commit(base + 3, BOB, tid(3), Op("delete", FOLLOW, "f1"))),
        (
            base + 4,
            jetstream_commit(base + 4, DAVE, tid(4), Op("create", FOLLOW, "f2", follow(BOB))),
        ),
        (base + 5, jetstream_account(base + 5, DAVE, False, "deleted")),
        (
            base + 6,
            jetstream_commit(base + 6, ALICE, tid(6), Op("create", FOLLOW, "f3", follow(BOB))),
        ),
    ]

    run_ingester(server.url, at_position(server.url, base + 6), jetstream=True)

    assert relationships(store) == {
        f"account:{CAROL}#blocked@account:{BOB}",
        f"account:{BOB}#follower@account:{ALICE}",
    }
    assert server.paths[0] == (
        "/subscribe?wantedCollections=app.bsky.graph.block"
        "&wantedCollections=app.bsky.graph.follow&wantedCollections=app.bsky.graph.listitem"
    )


def test_backfill_loads_the_repo_then_follows_the_stream(
    store: Store, server: StreamServer, run_ingester: RunIngester
) -> None:
    records = [(FOLLOW, f"f{i:03d}", follow(f"did:plc:friend{i}")) for i in range(300)]
    records.append((POST, "p1", post("not mapped")))
    server.script.repos[ALICE] = repo_car(ALICE, tid(5), records)
    # the stream replays a commit the CAR already holds (rev 3 < 5), then a newer delete
    old = commit_frame(3, ALICE, tid(3), [Op("create", FOLLOW, "f000", follow("did:plc:friend0"))])
    newer = commit_frame(6, ALICE, tid(6), [Op("delete", FOLLOW, "f001")])
    server.script.frames = [(3, old), (6, newer)]

    run = run_ingester(server.url, at_position(server.url, 6), backfill=(ALICE,))

    expected = {f"account:did:plc:friend{i}#follower@account:{ALICE}" for i in range(300)}
    expected.discard(f"account:did:plc:friend1#follower@account:{ALICE}")
    assert relationships(store) == expected
    assert run.sample("policyd_ingest_records_total", result="stale") == 1
    assert server.paths[0] == "/xrpc/com.atproto.sync.subscribeRepos"
    assert server.paths[1] == f"/xrpc/com.atproto.sync.getRepo?did={ALICE}"
