"""Decoding: firehose frames, Jetstream messages and repo CARs, against the builders' encodings."""

from __future__ import annotations

import libipld
import pytest

from policyd.ingest.frames import (
    AccountEvent,
    CommitEvent,
    FrameError,
    IdentityEvent,
    OtherEvent,
    RecordOp,
    decode_frame,
    decode_jetstream,
    decode_repo,
)
from policyd.ingest.testing.encode import (
    FOLLOW,
    POST,
    Op,
    account_frame,
    commit_frame,
    error_frame,
    follow,
    frame,
    identity_frame,
    jetstream_commit,
    post,
    repo_car,
    tid,
)

BOB = "did:plc:bob"


def test_a_commit_decodes_only_the_wanted_records() -> None:
    raw = commit_frame(
        7,
        BOB,
        tid(7),
        [Op("create", FOLLOW, "f1", follow("did:plc:a")), Op("create", POST, "p1", post("x"))],
    )
    event = decode_frame(raw, {FOLLOW})
    assert event == CommitEvent(
        7,
        BOB,
        tid(7),
        "2026-01-01T00:00:00.000Z",
        (
            RecordOp("create", FOLLOW, "f1", follow("did:plc:a")),
            RecordOp("create", POST, "p1", None),
        ),
    )


def test_account_identity_and_other_frames() -> None:
    assert decode_frame(account_frame(1, BOB, False, "deleted")) == AccountEvent(
        1, BOB, False, "deleted", "2026-01-01T00:00:00.000Z"
    )
    assert decode_frame(identity_frame(2, BOB, "bob.test")) == IdentityEvent(
        2, BOB, "bob.test", "2026-01-01T00:00:00.000Z"
    )
    assert decode_frame(frame("#info", {"name": "OutdatedCursor"})) == OtherEvent(
        None, "#info", "OutdatedCursor"
    )
    assert decode_frame(error_frame("FutureCursor", "no")) == OtherEvent(
        None, "error", "FutureCursor: no", error=True
    )


MALFORMED = [
    pytest.param(b"", id="empty"),
    pytest.param(b"\xff\xfe", id="not-cbor"),
    pytest.param(libipld.encode_dag_cbor({"op": 1, "t": "#commit"}), id="header-only"),
    pytest.param(frame("#commit", {"seq": 1}), id="commit-without-fields"),
    pytest.param(frame("#account", {"seq": 1, "did": BOB, "time": "t"}), id="account-no-active"),
    pytest.param(
        commit_frame(1, BOB, tid(1), [Op("create", FOLLOW, "f", follow(BOB))], drop_blocks=True),
        id="record-missing-from-car",
    ),
    pytest.param(libipld.encode_dag_cbor({"op": 2}) + libipld.encode_dag_cbor({}), id="op-2"),
]


@pytest.mark.parametrize("raw", MALFORMED)
def test_malformed_frames_raise_frame_error(raw: bytes) -> None:
    with pytest.raises(FrameError):
        decode_frame(raw, {FOLLOW})


def test_jetstream_messages() -> None:
    message = jetstream_commit(5, BOB, tid(5), Op("create", FOLLOW, "f", follow("did:plc:a")))
    event = decode_jetstream(message, {FOLLOW})
    assert isinstance(event, CommitEvent)
    assert event.position == 5
    assert event.ops == (RecordOp("create", FOLLOW, "f", follow("did:plc:a")),)
    with pytest.raises(FrameError):
        decode_jetstream('{"kind": "commit"}')
    with pytest.raises(FrameError):
        decode_jetstream("[1, 2")


def test_a_repo_car_walks_a_multi_level_tree_in_key_order() -> None:
    records = [(FOLLOW, f"{i:05d}", follow(f"did:plc:u{i}")) for i in range(500)]
    records += [(POST, f"{i:05d}", post(str(i))) for i in range(50)]
    car = repo_car(BOB, tid(9), records)
    _, blocks = libipld.decode_car(car)
    nodes = [b for b in blocks.values() if isinstance(b, dict) and "e" in b]
    assert len(nodes) > 10  # 550 keys at fan-out 4: several layers
    repo = decode_repo(car, {FOLLOW})
    assert (repo.did, repo.rev) == (BOB, tid(9))
    assert list(repo.records) == sorted(records[:500], key=lambda r: r[1])
    assert len(decode_repo(car).records) == 550
