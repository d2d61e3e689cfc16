"""WatchPermission over a real gRPC server: the listing, live changes, resumption, errors.

The engine's property test (tests/engine/test_audience.py) proves the
changes; these prove the stream: pages joined into whole changes (the
server's page size is 2), tokens to resume from, a restatement on a new
policy, and the folded stream equal to a fresh ListSubjects over the wire.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest

from policyd.api.server import PolicydServer
from policyd.client import PolicydClient
from policyd.consistency import Consistency
from policyd.decisions import Audience, AudienceChange, Permissionship
from policyd.errors import InvalidRequestError
from policyd.relationship import (
    Operation,
    RelationshipUpdate,
    parse_object,
    parse_relationship,
    parse_subject,
)
from tests.api.sample import POLICY, RELATIONSHIPS

POST = parse_object("post:at://did:plc:alice/app.bsky.feed.post/1")


def held(change: AudienceChange) -> dict[str, Permissionship]:
    return {str(s.subject): s.permissionship for s in change.subjects}


def watch(client: PolicydClient, after: str | None = None) -> Iterator[AudienceChange]:
    return client.watch_permission(POST, "view", "account", after=after, timeout=10)


def test_the_first_change_is_the_whole_audience(client: PolicydClient, loaded: str) -> None:
    first = next(watch(client))
    assert first.reset
    listing = {
        str(listed.found.subject): listed.found.permissionship
        for listed in client.list_subjects(POST, "view", "account")
    }
    assert held(first) == listing
    assert len(listing) > 2  # more than one page: the client joined them


def test_live_changes_add_and_remove_subjects(client: PolicydClient, loaded: str) -> None:
    changes: list[AudienceChange] = []
    started = threading.Event()
    done = threading.Event()

    def follow() -> None:
        for change in watch(client):
            changes.append(change)
            started.set()
            if len(changes) == 3:
                break
        done.set()

    thread = threading.Thread(target=follow)
    thread.start()
    assert started.wait(10)
    # dan joins through the nested space, carol is banned: one change each.
    client.touch([parse_relationship("space:kittens#member@account:did:plc:dan")])
    client.touch([parse_relationship("space:cats#banned@account:did:plc:carol")])
    assert done.wait(10)
    thread.join(10)
    assert not changes[1].reset
    assert not changes[2].reset
    assert held(changes[1]) == {"account:did:plc:dan": Permissionship.HAS_PERMISSION}
    assert held(changes[2]) == {"account:did:plc:carol": Permissionship.NO_PERMISSION}


def test_resuming_sends_only_later_changes(client: PolicydClient, loaded: str) -> None:
    first = next(watch(client))
    client.touch([parse_relationship("space:cats#member@account:did:plc:erin")])
    unrelated = client.touch([parse_relationship("space:dogs#member@account:did:plc:frank")])
    resumed = next(watch(client, after=first.token))
    assert not resumed.reset
    assert held(resumed) == {"account:did:plc:erin": Permissionship.HAS_PERMISSION}
    # The unrelated write changes nobody: a checkpoint carries the token past it.
    checkpoint = next(watch(client, after=resumed.token))
    assert checkpoint.subjects == ()
    assert checkpoint.token == unrelated


def test_a_new_policy_restates_the_audience(client: PolicydClient, loaded: str) -> None:
    first = next(watch(client))
    client.write_policy(POLICY, "atproto.policy")
    restated = next(watch(client, after=first.token))
    assert restated.reset
    assert held(restated) == held(first)


def test_a_stream_behind_garbage_collection_restates_at_the_head(
    client: PolicydClient, server: PolicydServer, loaded: str
) -> None:
    first = next(watch(client))
    client.touch([parse_relationship("space:cats#member@account:did:plc:erin")])
    head = client.touch([parse_relationship("space:cats#member@account:did:plc:frank")])
    server.store.gc(timedelta(0))
    restated = next(watch(client, after=first.token))
    assert restated.reset
    assert restated.token == head
    assert held(restated)["account:did:plc:frank"] is Permissionship.HAS_PERMISSION
    # The process's change feed, which GC may have passed too, still follows new writes.
    later = client.touch([parse_relationship("space:cats#member@account:did:plc:gina")])
    assert next(client.watch(head, timeout=10)).token == later


def test_a_question_the_policy_cannot_answer_is_refused(client: PolicydClient, loaded: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        next(client.watch_permission(POST, "nope", "account", timeout=10))
    assert caught.value.field == "permission"
    with pytest.raises(InvalidRequestError) as caught:
        next(watch(client, after="not-a-token"))
    assert caught.value.field == "optional_after_token.token"


def test_the_folded_stream_equals_a_fresh_listing(client: PolicydClient, loaded: str) -> None:
    rng = random.Random(7)
    pool = [
        parse_relationship(text)
        for who in ("bob", "carol", "dan", "mallory")
        for text in (
            f"space:cats#member@account:did:plc:{who}",
            f"space:kittens#member@account:did:plc:{who}",
            f"space:cats#banned@account:did:plc:{who}",
        )
    ] + [parse_relationship("space:cats#member@space:kittens#member")]
    audience = Audience()
    stream = watch(client)
    audience.apply(next(stream))
    present = {str(r) for r in pool} & set(RELATIONSHIPS)
    for _ in range(12):
        relationship = rng.choice(pool)
        # A write that changes the store, so its revision has events to follow.
        operation = Operation.DELETE if str(relationship) in present else Operation.TOUCH
        present ^= {str(relationship)}
        token = client.write([RelationshipUpdate(operation, relationship)])
        while audience.token != token:
            audience.apply(next(stream))
        fresh = {
            str(listed.found.subject): listed.found
            for listed in client.list_subjects(
                POST, "view", "account", consistency=Consistency.at_exact_snapshot(token)
            )
        }
        for who in ("alice", "bob", "carol", "dan", "mallory", "zed"):
            subject = parse_subject(f"account:did:plc:{who}")
            found = fresh.get(str(subject))
            expected = found.permissionship if found else Permissionship.NO_PERMISSION
            assert audience.answer_for(subject)[0] == expected, (who, token)
