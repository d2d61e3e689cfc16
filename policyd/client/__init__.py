"""Package client is a small typed, synchronous Python client for a policyd server.

    from policyd import Consistency, PolicydClient, parse_object, parse_relationship, parse_subject

    with PolicydClient("127.0.0.1:50051", token="…") as client:
        token = client.touch([parse_relationship("post:1#viewer@account:did:plc:a")])
        decision = client.check(
            parse_object("post:1"), "view", parse_subject("account:did:plc:a"),
            consistency=Consistency.at_least_as_fresh(token),
        )
        assert decision.allowed

Calls retry on UNAVAILABLE with exponential backoff, by gRPC's own retry
policy in the channel's service config (a stream only before its first
response, which is when gRPC commits a call), and raise the policyd error the
server sent, with its code and field, e.g.
``InvalidRequestError(field="resource.object_id")``.
"""

from __future__ import annotations

from policyd.client.answers import Change, Listed, PolicyValidation, ReadResult
from policyd.client.connection import DEFAULT_TIMEOUT, PolicydClient
from policyd.client.messages import (
    consistency_message,
    filter_message,
    relationship_message,
    relationship_value,
)
from policyd.client.rpc_errors import error_from_rpc

__all__ = [
    "DEFAULT_TIMEOUT",
    "Change",
    "Listed",
    "PolicyValidation",
    "PolicydClient",
    "ReadResult",
    "consistency_message",
    "error_from_rpc",
    "filter_message",
    "relationship_message",
    "relationship_value",
]
