"""Peers agree with the workloads' known answers (and so with policyd); missing peers skip."""

from __future__ import annotations

import pytest

from policyd.bench import workloads
from policyd.bench.peers import python_peers, spicedb

GROUPS = workloads.groups(200, 20, 500, depth=5, queries=400)


@pytest.mark.parametrize("name", list(python_peers.PEERS), ids=lambda n: n)
def test_python_peer_answers_like_policyd(name: str) -> None:
    module, builder = python_peers.PEERS[name]
    reason = python_peers.unavailable(module)
    if reason is not None:
        pytest.skip(reason)
    check = builder(python_peers.GroupsModel.from_workload(GROUPS))
    wrong = [q for q in GROUPS.queries if check(q) != q.expected]
    assert wrong == []


def test_naive_cte_answers_like_policyd() -> None:
    with python_peers.naive_cte(GROUPS) as check:
        assert [q for q in GROUPS.queries if check(q) != q.expected] == []


def test_groups_model_refuses_other_policies() -> None:
    with pytest.raises(ValueError, match="not a nested-groups workload"):
        python_peers.GroupsModel.from_workload(workloads.social(10, 10))


@pytest.mark.parametrize(
    "object_id",
    ["plain", "did:plc:abc", "at://did:plc:x/app.bsky.feed.post/3k1", "=starts", "*", "a.b"],
)
def test_spicedb_ids_round_trip(object_id: str) -> None:
    encoded = spicedb.encode_id(object_id)
    assert spicedb.decode_id(encoded) == object_id
    assert ":" not in encoded
    assert "." not in encoded


@pytest.mark.parametrize(
    "workload",
    [workloads.chain(12), GROUPS, workloads.social(80, 400, queries=300)],
    ids=lambda w: w.name,
)
def test_spicedb_answers_like_the_workload_expects(workload: workloads.Workload) -> None:
    reason = spicedb.unavailable()
    if reason is not None:
        pytest.skip(reason)
    peer = spicedb.SpiceDBPeer()
    try:
        loaded = spicedb.load(peer, workload, seconds=120)
        assert loaded["complete"]
        answers = [peer.check(peer.check_request(q)) for q in workload.queries]
        assert [q for q, a in zip(workload.queries, answers, strict=True) if a != q.expected] == []
        bulk = peer.check_bulk(peer.bulk_request(workload.queries[:100]))
        assert bulk == answers[:100]
        rtype, permission, subject = workload.list_queries[0]
        context = workload.queries[0].context
        found = peer.lookup_resources(rtype, permission, subject, context)
        assert len(found) == len(set(found))
    finally:
        peer.close()
