"""A store client run as a separate process by the fault tests: ``python -m tests.store.worker``.

Every line it prints is flushed at once, so the parent knows exactly which
writes were acknowledged before it kills the process.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time

from policyd.errors import AlreadyExistsError
from policyd.relationship import Operation, RelationshipUpdate, parse_relationship
from policyd.store import Store, open_store
from policyd.store.base import WriteRequest
from policyd.store.group_commit import WriterProcess


def say(*parts: object) -> None:
    print(*parts, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["big-write", "race", "writer", "group-writes"])
    parser.add_argument("url")
    parser.add_argument("--name", default="w")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--big", type=int, default=200_000)
    parser.add_argument("--import", dest="use_import", action="store_true")
    parser.add_argument("--start-at", type=float, default=0.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--size", type=int, default=3)
    args = parser.parse_args()
    store = open_store(args.url)
    if args.command == "group-writes":
        asyncio.run(group_writes(store, args.clients, args.size))
        return
    if args.command == "big-write":
        for i in range(args.count):
            text = f"document:acked{i}#viewer@user:{args.name}"
            rev = store.write([RelationshipUpdate(Operation.TOUCH, parse_relationship(text))])
            say("ack", rev, text)
        big = [parse_relationship(f"document:big{i}#viewer@user:b") for i in range(args.big)]
        say("big")  # the transaction starts now
        if args.use_import:
            store.import_relationships(big)
        else:
            store.write([RelationshipUpdate(Operation.TOUCH, r) for r in big])
        say("done")
    elif args.command == "race":
        time.sleep(max(0.0, args.start_at - time.time()))
        for i in range(args.count):
            rel = parse_relationship(f"document:race{i}#viewer@user:x")
            try:
                store.write([RelationshipUpdate(Operation.CREATE, rel)])
                say("won", i)
            except AlreadyExistsError:
                say("lost", i)
    else:
        time.sleep(max(0.0, args.start_at - time.time()))
        for i in range(args.count):
            text = f"document:{args.name}{i}#viewer@user:{args.name}"
            rev = store.write([RelationshipUpdate(Operation.TOUCH, parse_relationship(text))])
            say("ack", rev, text)
    store.close()


async def group_writes(store: Store, clients: int, size: int) -> None:
    """Write through a writer process from ``clients`` tasks at once, until killed.

    Request ``g{client}_{i}`` touches ``size`` relationships of document
    ``g{client}_{i}``; each acknowledgement prints ``ack REVISION ID``.
    """
    opener = store.opener()
    assert opener is not None
    writer = WriterProcess(opener)
    await writer.start()

    async def client(c: int) -> None:
        for i in itertools.count():
            request = f"g{c}_{i}"
            texts = [f"document:{request}#viewer@user:u{k}" for k in range(size)]
            updates = [RelationshipUpdate(Operation.TOUCH, parse_relationship(t)) for t in texts]
            revision = await writer.apply(WriteRequest(tuple(updates)))
            say("ack", revision, request)

    await asyncio.gather(*(client(c) for c in range(clients)))


if __name__ == "__main__":
    main()
