"""Package workloads generates seeded benchmark workloads: a policy, its relationships, and queries.

Each workload is deterministic for a seed and a size, so runs compare like
with like. Queries mix grants and denials; each carries the answer a correct
engine must give where the generator knows it (``expected``), so a benchmark
also catches a fast wrong answer.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
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


def chain(depth: int, seed: int = 1, queries: int = 2000, members: int = 0) -> Workload:
    """Groups nested ``depth`` deep; the user at the bottom reaches the document at the top.

    ``members`` extra users join the bottom group, so the top document is shared
    with a group of that many members nested ``depth`` deep.
    """
    rng = random.Random(seed)
    rels = [_rel("group", f"g{i}", "member", "group", f"g{i + 1}", "member") for i in range(depth)]
    rels.append(_rel("group", f"g{depth}", "member", "user", "deep"))
    rels.append(_rel("document", "top", "viewer", "group", "g0", "member"))
    for i in range(depth + 1):
        rels.append(_rel("group", f"g{i}", "member", "user", f"u{i}"))
    for m in range(members):
        rels.append(_rel("group", f"g{depth}", "member", "user", f"m{m}"))
    top = ObjectRef("document", "top")
    qs = []
    for _ in range(queries):
        roll = rng.random()
        if roll < 0.4:
            qs.append(Query(top, "view", SubjectRef("user", "deep"), True))
        elif roll < 0.6 and members:
            qs.append(Query(top, "view", SubjectRef("user", f"m{rng.randrange(members)}"), True))
        elif roll < 0.7:
            qs.append(Query(top, "view", SubjectRef("user", f"u{rng.randrange(depth + 1)}"), True))
        else:
            qs.append(Query(top, "view", SubjectRef("user", f"nobody{rng.randrange(100)}"), False))
    name = f"chain-{depth}" if not members else f"group-{members}m-{depth}deep"
    return Workload(
        name, GROUPS_POLICY, rels, qs, [("document", "view", SubjectRef("user", "deep"))]
    )


def groups(
    users: int, groups_count: int, docs: int, depth: int = 4, seed: int = 1, queries: int = 5000
) -> Workload:
    """Users in groups nested ``depth`` levels in a tree; documents shared to groups and users.

    Every query carries its exact answer: through the group tree or as the owner.
    """
    rng = random.Random(seed)
    users, groups_count, docs = max(1, users), max(depth, groups_count), max(1, docs)
    rels: list[Relationship] = []
    per_level = max(1, groups_count // depth)
    levels = [[f"g{level}_{i}" for i in range(per_level)] for level in range(depth)]
    parent_of: dict[str, str] = {}
    for level in range(1, depth):
        for g in levels[level]:
            parent = rng.choice(levels[level - 1])
            parent_of[g] = parent
            rels.append(_rel("group", parent, "member", "group", g, "member"))
    user_group: dict[str, str] = {}
    for u in range(users):
        g = rng.choice(levels[-1])
        user_group[f"u{u}"] = g
        rels.append(_rel("group", g, "member", "user", f"u{u}"))
    doc_group: dict[str, str] = {}
    doc_owner: dict[str, str] = {}
    for d in range(docs):
        level = rng.randrange(depth)
        g = rng.choice(levels[level])
        doc_group[f"d{d}"] = g
        rels.append(_rel("document", f"d{d}", "viewer", "group", g, "member"))
        if d % 10 == 0:
            owner = f"u{rng.randrange(users)}"
            doc_owner[f"d{d}"] = owner
            rels.append(_rel("document", f"d{d}", "owner", "user", owner))

    ancestors: dict[str, frozenset[str]] = {}
    for g in levels[-1]:
        chain_up = [g]
        while chain_up[-1] in parent_of:
            chain_up.append(parent_of[chain_up[-1]])
        ancestors[g] = frozenset(chain_up)

    qs = []
    for _ in range(queries):
        user = f"u{rng.randrange(users)}"
        doc = f"d{rng.randrange(docs)}"
        granted = doc_group[doc] in ancestors[user_group[user]] or doc_owner.get(doc) == user
        qs.append(Query(ObjectRef("document", doc), "view", SubjectRef("user", user), granted))
    listq = [
        ("document", "view", SubjectRef("user", f"u{rng.randrange(users)}")) for _ in range(20)
    ]
    return Workload(f"groups-{users}u-{groups_count}g-{docs}d", GROUPS_POLICY, rels, qs, listq)


def did(n: int) -> str:
    """A stable, realistic-looking did:plc identifier for account number ``n``."""
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    rng = random.Random(n * 7919)
    return "did:plc:" + "".join(rng.choice(alphabet) for _ in range(24))


SOCIAL_NOW = datetime(2026, 11, 25, tzinfo=UTC)
"""The request time of every social query; half the subscriptions have expired by then."""


def social(
    accounts: int, posts: int, follows_per_account: int = 50, seed: int = 1, queries: int = 5000
) -> Workload:
    """Accounts with a power-law follow graph, posts with AT-URI ids, spaces, tiers and blocks.

    At 100k accounts and 50 follows each this makes about 5M follows (repeats
    of a popular account collapse). Queries carry answers from ``social_oracle``.
    """
    rng = random.Random(seed)
    accounts, posts = max(2, accounts), max(1, posts)
    rels: list[Relationship] = []
    dids = [did(i) for i in range(accounts)]
    # Cumulative weights once: passing plain weights makes every call O(accounts).
    cumulative = list(itertools.accumulate(1.0 / (i + 1) ** 0.8 for i in range(accounts)))
    population = range(accounts)
    for a in range(accounts):
        for b in set(rng.choices(population, cum_weights=cumulative, k=follows_per_account)):
            if a != b:
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
        rels.append(_rel("space", f"s{s}", "moderator", "account", dids[rng.randrange(accounts)]))
        for _ in range(20):
            rels.append(_rel("space", f"s{s}", "member", "account", dids[rng.randrange(accounts)]))
        for _ in range(2):
            rels.append(_rel("space", f"s{s}", "banned", "account", dids[rng.randrange(accounts)]))
        if s > 0 and rng.random() < 0.3:
            rels.append(_rel("space", f"s{rng.randrange(s)}", "member", "space", f"s{s}", "member"))
    creators = max(1, accounts // 200)
    for c in range(creators):
        for tier, count in (("silver", 10), ("gold", 3)):
            for _ in range(count):
                expires = SOCIAL_NOW + timedelta(days=rng.randint(-30, 30), seconds=1)
                rels.append(
                    Relationship(
                        ObjectRef("creator", dids[c]),
                        tier,
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
    context: dict[str, object] = {"now": SOCIAL_NOW.strftime("%Y-%m-%dT%H:%M:%SZ")}
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
    workload = Workload(f"social-{accounts}a-{posts}p", SOCIAL_POLICY, rels, qs, listq)
    oracle = social_oracle(workload.relationships)
    workload.queries = [
        Query(q.resource, q.permission, q.subject, oracle(q), q.context) for q in qs
    ]
    return workload


def social_oracle(relationships: list[Relationship]) -> Callable[[Query], bool]:
    """A direct reading of SOCIAL_POLICY over ``relationships``: the answer to a post query.

    Independent of any engine: plain dicts and sets, following each permission's
    definition by hand. Subscriptions compare their expiry with the query's ``now``.
    """
    by_relation: dict[tuple[str, str], dict[str, set[str]]] = {}
    space_children: dict[str, set[str]] = {}
    subscriptions: dict[tuple[str, str], dict[str, dict[str, datetime]]] = {}
    for rel in relationships:
        resource, subject = rel.resource, rel.subject
        if subject.relation is not None:
            space_children.setdefault(resource.id, set()).add(subject.id)
            continue
        key = (resource.type, rel.relation)
        if rel.caveat_name is not None:
            expires = datetime.fromisoformat(str(rel.caveat_context["expires"]))
            subscriptions.setdefault(key, {}).setdefault(resource.id, {})
            subscriptions[key][resource.id][subject.id] = expires
        by_relation.setdefault(key, {}).setdefault(resource.id, set()).add(subject.id)

    def related(rtype: str, relation: str, rid: str) -> set[str]:
        return by_relation.get((rtype, relation), {}).get(rid, set())

    def single(rtype: str, relation: str, rid: str) -> str | None:
        found = related(rtype, relation, rid)
        return next(iter(found)) if found else None

    def space_members(space: str) -> set[str]:
        members: set[str] = set()
        seen: set[str] = set()
        pending = [space]
        while pending:
            s = pending.pop()
            if s in seen:
                continue
            seen.add(s)
            members |= related("space", "member", s)
            pending.extend(space_children.get(s, ()))
        return members

    def reads_space(post: str, viewer: str) -> bool:
        space = single("post", "space", post)
        if space is None:
            return False
        moderators = related("space", "owner", space) | related("space", "moderator", space)
        allowed = viewer in moderators or viewer in space_members(space)
        return allowed and viewer not in related("space", "banned", space)

    def sees_followers_only(author: str, viewer: str) -> bool:
        audience = related("account", "follower", author) | related(
            "account", "close_friend", author
        )
        return viewer in audience and viewer not in related("account", "blocked", author)

    def subscribed(tier: str, creator: str, viewer: str, now: datetime) -> bool:
        expires = subscriptions.get(("creator", tier), {}).get(creator, {}).get(viewer)
        return expires is not None and now < expires

    def answer(q: Query) -> bool:
        post, viewer = q.resource.id, q.subject.id
        author = single("post", "author", post)
        if viewer == author:
            return True
        assert author is not None
        permission = q.permission
        if permission == "view_followers":
            return sees_followers_only(author, viewer)
        if permission == "view_space":
            return reads_space(post, viewer)
        if permission == "view_paid":
            creator = single("post", "creator", post)
            now = datetime.fromisoformat(str(q.context["now"]))
            return creator is not None and any(
                subscribed(tier, creator, viewer, now) for tier in ("silver", "gold")
            )
        if permission == "view":
            viewers = related("post", "viewer", post)
            return (
                "*" in viewers
                or viewer in viewers
                or sees_followers_only(author, viewer)
                or reads_space(post, viewer)
            )
        raise ValueError(f"the social oracle knows no permission {permission!r}")

    return answer


def batched(items: list[Relationship], size: int) -> Iterator[list[Relationship]]:
    """Slices of at most ``size`` items."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


WORKLOADS = ("chain-10", "chain-25", "chain-45", "deep-30", "groups", "social")
"""The harness's default workloads, in the order it runs them."""


def known(name: str) -> bool:
    """Whether ``build`` makes a workload of this name."""
    kind, _, number = name.partition("-")
    return (kind in ("chain", "deep") and number.isdigit()) or name in ("groups", "social", "peers")


def build(name: str, scale: float = 1.0, seed: int = 1, queries: int | None = None) -> Workload:
    """The workload called ``name`` at ``scale`` × the issue's sizes.

    ``chain-N``: groups nested N deep (not scaled). ``deep-N``: a group of 1M
    members nested N deep. ``groups``: 100k users in 10k groups nested 4 deep,
    1M documents. ``social``: 100k accounts (about 5M follows), 1M posts.
    ``peers``: 1,000 users, 100 groups nested 5 deep, 10k documents (not scaled),
    the workload the Python-native peers can express. ``queries`` overrides how
    many check queries the workload's generator makes.

    Raises:
        ValueError: for an unknown name.
    """
    kind, _, number = name.partition("-")
    asked = {} if queries is None else {"queries": queries}
    if kind == "chain" and number.isdigit():
        return chain(int(number), seed, **asked)
    if kind == "deep" and number.isdigit():
        return chain(int(number), seed, members=max(1, int(1_000_000 * scale)), **asked)
    if name == "groups":
        size = (int(100_000 * scale), int(10_000 * scale), int(1_000_000 * scale))
        return groups(*size, 4, seed, **asked)
    if name == "social":
        return social(int(100_000 * scale), int(1_000_000 * scale), seed=seed, **asked)
    if name == "peers":
        return groups(1000, 100, 10_000, depth=5, seed=seed, **asked)
    raise ValueError(f"unknown workload {name!r}: chain-N, deep-N, groups, social or peers")
