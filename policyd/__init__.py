"""policyd: relationship-based authorization (Zanzibar-style) for AT Protocol data.

The public API is here, in one place::

    import policyd

    engine = policyd.Engine(policyd.open_store("authz.db"))
    engine.write_policy(
        "definition account {} "
        "definition post { relation viewer: account permission view = viewer }"
    )
    engine.import_relationships(
        [policyd.parse_relationship("post:1#viewer@account:did:plc:ann")]
    )
    post, ann = policyd.parse_object("post:1"), policyd.parse_subject("account:did:plc:ann")
    assert engine.check(post, "view", ann).allowed

or, against a server, ``policyd.PolicydClient("127.0.0.1:50051", token=...)``, whose
``check`` answers with the same ``CheckResult``.
Names load on first use, so ``import policyd`` stays light: it loads neither
grpc nor psycopg nor the CEL libraries until a name that needs them is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from policyd.errors import PolicydError

if TYPE_CHECKING:
    from policyd.client import PolicydClient
    from policyd.consistency import Consistency
    from policyd.decisions import (
        Audience,
        AudienceChange,
        CheckRequest,
        CheckResult,
        Permissionship,
    )
    from policyd.dsl.compiler import compile_policy
    from policyd.engine import Engine
    from policyd.filters import Precondition, RelationshipFilter
    from policyd.relationship import (
        ObjectRef,
        Relationship,
        SubjectRef,
        parse_object,
        parse_relationship,
        parse_subject,
    )
    from policyd.store import open_store

_HOMES = {
    "Audience": "policyd.decisions",
    "AudienceChange": "policyd.decisions",
    "CheckRequest": "policyd.decisions",
    "CheckResult": "policyd.decisions",
    "Consistency": "policyd.consistency",
    "Engine": "policyd.engine",
    "ObjectRef": "policyd.relationship",
    "Permissionship": "policyd.decisions",
    "PolicydClient": "policyd.client",
    "Precondition": "policyd.filters",
    "Relationship": "policyd.relationship",
    "RelationshipFilter": "policyd.filters",
    "SubjectRef": "policyd.relationship",
    "compile_policy": "policyd.dsl.compiler",
    "open_store": "policyd.store",
    "parse_object": "policyd.relationship",
    "parse_relationship": "policyd.relationship",
    "parse_subject": "policyd.relationship",
}
"""Where each public name lives; ``__getattr__`` imports it from there on first use."""

__all__ = [
    "Audience",
    "AudienceChange",
    "CheckRequest",
    "CheckResult",
    "Consistency",
    "Engine",
    "ObjectRef",
    "Permissionship",
    "PolicydClient",
    "PolicydError",
    "Precondition",
    "Relationship",
    "RelationshipFilter",
    "SubjectRef",
    "compile_policy",
    "open_store",
    "parse_object",
    "parse_relationship",
    "parse_subject",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Import a public name from its home the first time it is asked for (PEP 562)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'policyd' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
