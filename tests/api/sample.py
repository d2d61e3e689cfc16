"""The example atproto policy and the relationships the API tests load into it."""

from __future__ import annotations

from pathlib import Path

POLICY = (Path(__file__).resolve().parents[2] / "policies" / "atproto.policy").read_text()

RELATIONSHIPS = [
    "space:cats#owner@account:did:plc:alice",
    "space:cats#member@account:did:plc:bob",
    "space:cats#member@space:kittens#member",
    "space:kittens#member@account:did:plc:carol",
    "space:cats#banned@account:did:plc:mallory",
    "space:cats#member@account:did:plc:mallory",
    "post:at://did:plc:alice/app.bsky.feed.post/1#space@space:cats",
    "post:at://did:plc:alice/app.bsky.feed.post/1#author@account:did:plc:alice",
    "post:at://did:plc:dave/app.bsky.feed.post/2#viewer@account:*",
    "post:at://did:plc:dave/app.bsky.feed.post/2#author@account:did:plc:dave",
    "creator:zoe#gold@account:did:plc:bob[active_subscription]",
]
