"""Seeded workload generators for the benchmarks: a policy, its relationships, and queries.

Each workload is deterministic for a seed and a size, so runs compare like
with like. Queries mix grants and denials; each carries the answer a correct
engine must give where the generator knows it (``expected``), so a benchmark
also catches a fast wrong answer.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from policyd.relationship import ObjectRef, Relationship, SubjectRef

GROUPS_POLICY = """
definition user {}

definition group {
    relation member: user | group#member
}

definition document {
    relation owner: user
    relation viewer: user | group#member
    permission view = owner + viewer
}
"""

SOCIAL_POLICY = """
use expiration

definition account {
    relation follower: account
    relation close_friend: account
    relation blocked: account
    permission see_followers_only = follower + close_friend - blocked
    permission see_close_friends = close_friend - blocked
}

definition space {
    relation owner: account
    relation moderator: account
    relation member: account | space#member
    relation banned: account
    permission moderate = owner + moderator
    permission read = (member + moderate) - banned
}

caveat active_subscription(now timestamp, expires timestamp) {
    now < expires
}

definition creator {
    relation gold: account with active_subscription
    relation silver: account with active_subscription
    permission gold_content = gold
    permission silver_content = silver + gold_content
}

definition post {
    relation author: account
    relation audience: account
    relation space: space
    relation creator: creator
    relation viewer: account | account:*
    permission view_followers = author + author->see_followers_only
    permission view_close_friends = author + author->see_close_friends
    permission view_space = author + space->read
    permission view_paid = author + creator->silver_content
    permission view = author + viewer + author->see_followers_only + space->read
}
"""


@dataclass(frozen=True, slots=True)
class Query:
    """One check: resource#permission@subject, with its known answer if the generator knows it."""

    resource: ObjectRef
    permission: str
    subject: SubjectRef
    expected: bool | None = None
    context: dict[str, object] = field(default_factory=dict)


@dataclass(slots=True)
class Workload:
    """A named policy, its relationships (each once), and check and list queries."""

    name: str
    policy: str
    relationships: list[Relationship]
    queries: list[Query]
    list_queries: list[tuple[str, str, SubjectRef]] = field(default_factory=list)

    def __post_init__(self) -> None:
        unique: dict[tuple[str, ...], Relationship] = {}
        for rel in self.relationships:
            unique.setdefault(rel.key, rel)
        self.relationships = list(unique.values())


def _rel(
    rtype: str, rid: str, relation: str, stype: str, sid: str, srel: str | None = None
) -> Relationship:
    return Relationship(ObjectRef(rtype, rid), relation, SubjectRef(stype, sid, srel))


def chain(depth: int, seed: int = 1, queries: int = 2000) -> Workload:
    """Groups nested ``depth`` deep; the user at the bottom reaches the document at the top."""
    rng = random.Random(seed)
    rels = [_rel("group", f"g{i}", "member", "group", f"g{i + 1}", "member") for i in range(depth)]
    rels.append(_rel("group", f"g{depth}", "member", "user", "deep"))
    rels.append(_rel("document", "top", "viewer", "group", "g0", "member"))
    for i in range(depth + 1):
        rels.append(_rel("group", f"g{i}", "member", "user", f"u{i}"))
    qs = []
    for _ in range(queries):
        if rng.random() < 0.5:
            qs.append(Query(ObjectRef("document", "top"), "view", SubjectRef("user", "deep"), True))
        else:
            qs.append(
                Query(ObjectRef("document", "top"), "view", SubjectRef("user", "nobody"), False)
            )
    return Workload(
        f"chain-{depth}",
        GROUPS_POLICY,
        rels,
        qs,
        [("document", "view", SubjectRef("user", "deep"))],
    )


def groups(
    users: int, groups_count: int, docs: int, depth: int = 4, seed: int = 1, queries: int = 5000
) -> Workload:
    """Users in groups nested ``depth`` levels in a tree; documents shared to groups and users."""
    rng = random.Random(seed)
    rels: list[Relationship] = []
    per_level = max(1, groups_count // depth)
    levels = [[f"g{level}_{i}" for i in range(per_level)] for level in range(depth)]
    parent_of: dict[str, str] = {}
    for level in range(1, depth):
        for g in levels[level]:
            parent = rng.choice(levels[level - 1])
            parent_of[g] = parent
            rels.append(_rel("group", parent, "member", "group", g, "member"))
    user_groups: dict[str, list[str]] = {}
    for u in range(users):
        g = rng.choice(levels[-1])
        user_groups[f"u{u}"] = [g]
        rels.append(_rel("group", g, "member", "user", f"u{u}"))
    doc_groups: dict[str, str] = {}
    for d in range(docs):
        level = rng.randrange(depth)
        g = rng.choice(levels[level])
        doc_groups[f"d{d}"] = g
        rels.append(_rel("document", f"d{d}", "viewer", "group", g, "member"))
        if d % 10 == 0:
            rels.append(_rel("document", f"d{d}", "owner", "user", f"u{rng.randrange(users)}"))

    def ancestors(g: str) -> set[str]:
        out = {g}
        while g in parent_of:
            g = parent_of[g]
            out.add(g)
        return out

    qs = []
    for _ in range(queries):
        u = f"u{rng.randrange(users)}"
        d = f"d{rng.randrange(docs)}"
        # Owners are ignored in the expectation, so only denials through groups are known.
        granted = doc_groups[d] in ancestors(user_groups[u][0])
        qs.append(Query(ObjectRef("document", d), "view", SubjectRef("user", u), granted or None))
    listq = [
        ("document", "view", SubjectRef("user", f"u{rng.randrange(users)}")) for _ in range(20)
    ]
    return Workload(f"groups-{users}u-{groups_count}g-{docs}d", GROUPS_POLICY, rels, qs, listq)


def did(n: int) -> str:
    """A stable, realistic-looking did:plc identifier for account number ``n``."""
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    rng = random.Random(n * 7919)
    return "did:plc:" + "".join(rng.choice(alphabet) for _ in range(24))


def social(
    accounts: int, posts: int, follows_per_account: int = 20, seed: int = 1, queries: int = 5000
) -> Workload:
    """Accounts with a power-law follow graph, posts with AT-URI ids, spaces, tiers and blocks."""
    rng = random.Random(seed)
    rels: list[Relationship] = []
    dids = [did(i) for i in range(accounts)]
    weights = [1.0 / (i + 1) ** 0.8 for i in range(accounts)]
    followers: dict[int, set[int]] = {}
    for a in range(accounts):
        for b in set(rng.choices(range(accounts), weights, k=follows_per_account)):
            if a != b:
                followers.setdefault(b, set()).add(a)
                rels.append(_rel("account", dids[b], "follower", "account", dids[a]))
        if rng.random() < 0.05:
            rels.append(
                _rel("account", dids[a], "blocked", "account", dids[rng.randrange(accounts)])
            )
        if rng.random() < 0.2:
            rels.append(
                _rel("account", dids[a], "close_friend", "account", dids[rng.randrange(accounts)])
            )
    spaces = max(1, accounts // 100)
    for s in range(spaces):
        rels.append(_rel("space", f"s{s}", "owner", "account", dids[rng.randrange(accounts)]))
        for _ in range(20):
            rels.append(_rel("space", f"s{s}", "member", "account", dids[rng.randrange(accounts)]))
        if s > 0 and rng.random() < 0.3:
            rels.append(_rel("space", f"s{rng.randrange(s)}", "member", "space", f"s{s}", "member"))
    now = datetime(2026, 11, 25, tzinfo=UTC)
    creators = max(1, accounts // 200)
    for c in range(creators):
        for _ in range(10):
            expires = now + timedelta(days=rng.randint(-30, 30))
            rels.append(
                Relationship(
                    ObjectRef("creator", dids[c]),
                    "silver",
                    SubjectRef("account", dids[rng.randrange(accounts)]),
                    "active_subscription",
                    {"expires": expires.strftime("%Y-%m-%dT%H:%M:%SZ")},
                )
            )
    post_ids = []
    for p in range(posts):
        author = min(int(rng.paretovariate(1.2)) - 1, accounts - 1)
        uri = f"at://{dids[author]}/app.bsky.feed.post/3k{p:010d}"
        post_ids.append(uri)
        rels.append(_rel("post", uri, "author", "account", dids[author]))
        kind = rng.random()
        if kind < 0.1:
            rels.append(_rel("post", uri, "viewer", "account", "*"))
        elif kind < 0.2:
            rels.append(_rel("post", uri, "space", "space", f"s{rng.randrange(spaces)}"))
        elif kind < 0.25:
            rels.append(_rel("post", uri, "creator", "creator", dids[rng.randrange(creators)]))
    qs = []
    context = {"now": now.strftime("%Y-%m-%dT%H:%M:%SZ")}
    for _ in range(queries):
        uri = rng.choice(post_ids)
        viewer = dids[rng.randrange(accounts)]
        permission = rng.choice(["view", "view", "view_followers", "view_space", "view_paid"])
        qs.append(
            Query(ObjectRef("post", uri), permission, SubjectRef("account", viewer), None, context)
        )
    listq = [
        ("post", "view", SubjectRef("account", dids[rng.randrange(accounts)])) for _ in range(10)
    ]
    return Workload(f"social-{accounts}a-{posts}p", SOCIAL_POLICY, rels, qs, listq)


def batched(items: list[Relationship], size: int) -> Iterator[list[Relationship]]:
    """Slices of at most ``size`` items."""
    for i in range(0, len(items), size):
        yield items[i : i + size]
