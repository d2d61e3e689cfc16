"""Policy and data the lookup tests share: docs alice sees directly, via groups, on a caveat."""

from __future__ import annotations

from tests.engine.queries import subject

POLICY = """
caveat gate(open bool) {
    open
}

definition user {}

definition group {
    relation member: user | group#member
}

definition doc {
    relation viewer: user | user:* | user with gate | group#member
    relation banned: user | user with gate
    permission view = viewer - banned
}
"""

ALICE = subject("user:alice")


def library(count: int) -> list[str]:
    """``count`` docs alice can view: directly, through a group, or on a caveat (every 5th)."""
    relationships = ["group:eng#member@user:alice"]
    for i in range(count):
        if i % 5 == 0:
            relationships.append(f"doc:d{i:03}#viewer@user:alice[gate]")
        elif i % 2:
            relationships.append(f"doc:d{i:03}#viewer@group:eng#member")
        else:
            relationships.append(f"doc:d{i:03}#viewer@user:alice")
    # Docs alice cannot view: someone else's, and one she is banned from.
    relationships += ["doc:other#viewer@user:bob", "doc:d001#banned@user:alice"]
    return relationships
