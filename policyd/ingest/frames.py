"""Package ingest.frames decodes the network's events: firehose frames, Jetstream JSON, repo CARs.

The only importer of ``libipld`` (DAG-CBOR and CAR, in Rust). What comes out is
plain values (``CommitEvent``, ``AccountEvent``, ``IdentityEvent``,
``OtherEvent``), whichever stream they came from; a frame that cannot be
decoded raises ``FrameError`` and yields nothing, so a malformed frame is never
applied in part.

Firehose (``com.atproto.sync.subscribeRepos``): each binary WebSocket message
is two DAG-CBOR objects, a header ``{op, t}`` and a body; ``op`` 1 is a message
of type ``t`` (``#commit``, ``#sync``, ``#identity``, ``#account``, ``#info``),
``op`` -1 an error (``FutureCursor``, ``ConsumerTooSlow``) after which the
server closes (the subscribeRepos lexicon; framing as described in
bluesky-social/atproto discussion #1137). A ``#commit`` body carries ``seq``,
``repo``, ``rev``, ``time``, ``ops`` (``action``, ``path`` =
``collection/rkey``, ``cid``) and ``blocks``, a CAR slice holding the new
records. The CAR is decoded only when an op touches a wanted collection: most
of the network's traffic is posts and likes (see ``DECODE`` in the README for
the speeds measured).

Jetstream: one JSON object per text message, ``{did, time_us, kind, commit |
identity | account}``, a commit holding one op (``operation``, ``collection``,
``rkey``, ``rev``, ``record``); its position is ``time_us`` (field names as in
microcosm-rs' jetstream/src/events.rs).

Repo CAR (``com.atproto.sync.getRepo``, for backfill): the root is the signed
commit ``{did, rev, data, …}``; ``data`` is the root of the Merkle Search
Tree, whose nodes are ``{l, e: [{p, k, v, t}]}``: ``l`` the subtree left of
every entry, each entry's key the first ``p`` bytes of the previous key plus
``k``, ``v`` the record's CID, ``t`` the subtree right of it.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import libipld

from policyd.errors import PolicydError


class FrameError(PolicydError, ValueError):
    """A frame or message that does not decode as the stream's format says."""

    code = "malformed-frame"


@dataclass(frozen=True, slots=True)
class RecordOp:
    """One record written or deleted: ``record`` is ``None`` for deletes and unwanted records."""

    action: str
    collection: str
    rkey: str
    record: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class CommitEvent:
    """A repo commit: its ops, the repo revision (``rev``) and the stream position."""

    position: int
    repo: str
    rev: str
    time: str
    ops: tuple[RecordOp, ...]


@dataclass(frozen=True, slots=True)
class AccountEvent:
    """An account's hosting status changed (``status`` is None when active)."""

    position: int
    did: str
    active: bool
    status: str | None
    time: str


@dataclass(frozen=True, slots=True)
class IdentityEvent:
    """An account's identity (handle, DID document) changed."""

    position: int
    did: str
    handle: str | None
    time: str


@dataclass(frozen=True, slots=True)
class OtherEvent:
    """Anything else: ``#sync``, ``#info``, an error frame, an unknown type; logged, not applied.

    ``position`` is ``None`` for frames without one (``#info``, errors).
    """

    position: int | None
    kind: str
    detail: str
    error: bool = False


Event: TypeAlias = CommitEvent | AccountEvent | IdentityEvent | OtherEvent


def _text(body: dict[str, Any], name: str, kind: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise FrameError(f"{kind} without a string {name!r}")
    return value


def _int(body: dict[str, Any], name: str, kind: str) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise FrameError(f"{kind} without an integer {name!r}")
    return value


def decode_frame(frame: bytes, collections: Collection[str] | None = None) -> Event:
    """Decode one firehose frame; records are decoded only for ``collections`` (None: all).

    Raises:
        FrameError: the frame is not a header and a body of the documented shape.
    """
    try:
        parts = libipld.decode_dag_cbor_multi(frame)
    except (ValueError, TypeError) as e:
        raise FrameError(f"not DAG-CBOR: {e}") from e
    if len(parts) != 2 or not isinstance(parts[0], dict) or not isinstance(parts[1], dict):
        raise FrameError(f"expected a header and a body, got {len(parts)} objects")
    header, body = parts
    op = header.get("op")
    if op == -1:
        return OtherEvent(None, "error", f"{body.get('error')}: {body.get('message')}", True)
    if op != 1:
        raise FrameError(f"unknown frame op {op!r}")
    kind = header.get("t")
    if kind == "#commit":
        return _commit(body, collections)
    if kind == "#account":
        status = body.get("status")
        active = body.get("active")
        if not isinstance(active, bool):
            raise FrameError("#account without a boolean 'active'")
        return AccountEvent(
            _int(body, "seq", kind),
            _text(body, "did", kind),
            active,
            status if isinstance(status, str) else None,
            _text(body, "time", kind),
        )
    if kind == "#identity":
        handle = body.get("handle")
        return IdentityEvent(
            _int(body, "seq", kind),
            _text(body, "did", kind),
            handle if isinstance(handle, str) else None,
            _text(body, "time", kind),
        )
    seq = body.get("seq")
    position = seq if isinstance(seq, int) and not isinstance(seq, bool) else None
    detail = body.get("did") or body.get("repo") or body.get("name") or ""
    return OtherEvent(position, str(kind), str(detail))


def _commit(body: dict[str, Any], collections: Collection[str] | None) -> CommitEvent:
    kind = "#commit"
    seq = _int(body, "seq", kind)
    repo, rev, time = _text(body, "repo", kind), _text(body, "rev", kind), _text(body, "time", kind)
    raw_ops = body.get("ops")
    if not isinstance(raw_ops, list):
        raise FrameError("#commit without a list of 'ops'")
    split: list[tuple[str, str, str, Any]] = []
    wanted = False
    for raw in raw_ops:
        if not isinstance(raw, dict):
            raise FrameError("#commit op is not a map")
        action, path = raw.get("action"), raw.get("path")
        if action not in ("create", "update", "delete") or not isinstance(path, str):
            raise FrameError(f"#commit op with action {action!r} and path {path!r}")
        collection, slash, rkey = path.partition("/")
        if not slash or not collection or not rkey:
            raise FrameError(f"#commit op path {path!r} is not collection/rkey")
        split.append((action, collection, rkey, raw.get("cid")))
        wanted = wanted or (
            action != "delete" and (collections is None or collection in collections)
        )
    blocks: dict[bytes, Any] = {}
    if wanted:
        car = body.get("blocks")
        if not isinstance(car, bytes):
            raise FrameError("#commit without CAR 'blocks'")
        blocks = decode_car(car)[1]
    ops = []
    for action, collection, rkey, cid in split:
        record = None
        if action != "delete" and (collections is None or collection in collections):
            found = blocks.get(cid) if isinstance(cid, bytes) else None
            if not isinstance(found, dict):
                raise FrameError(f"#commit {action} of {collection}/{rkey}: record not in blocks")
            record = found
        ops.append(RecordOp(action, collection, rkey, record))
    return CommitEvent(seq, repo, rev, time, tuple(ops))


def decode_car(car: bytes) -> tuple[dict[str, Any], dict[bytes, Any]]:
    """A CAR file's header and its blocks (CID bytes → decoded DAG-CBOR).

    Raises:
        FrameError: not a CAR of DAG-CBOR blocks.
    """
    try:
        header, blocks = libipld.decode_car(car)
    except (ValueError, TypeError) as e:
        raise FrameError(f"not a CAR file: {e}") from e
    return header, blocks


def decode_jetstream(message: str | bytes, collections: Collection[str] | None = None) -> Event:
    """Decode one Jetstream JSON message; records are kept only for ``collections``.

    Raises:
        FrameError: not JSON, or not an event of the documented shape.
    """
    try:
        event = json.loads(message)
    except ValueError as e:
        raise FrameError(f"not JSON: {e}") from e
    if not isinstance(event, dict):
        raise FrameError("a Jetstream message is not an object")
    kind = event.get("kind")
    position = _int(event, "time_us", "Jetstream event")
    did = _text(event, "did", "Jetstream event")
    time = str(position)
    if kind == "commit":
        commit = event.get("commit")
        if not isinstance(commit, dict):
            raise FrameError("Jetstream commit without 'commit'")
        action = commit.get("operation")
        if action not in ("create", "update", "delete"):
            raise FrameError(f"Jetstream commit with operation {action!r}")
        collection = _text(commit, "collection", "Jetstream commit")
        rkey = _text(commit, "rkey", "Jetstream commit")
        record = commit.get("record")
        if action == "delete" or (collections is not None and collection not in collections):
            record = None
        elif not isinstance(record, dict):
            raise FrameError(f"Jetstream {action} of {collection}/{rkey} without a record")
        op = RecordOp(action, collection, rkey, record)
        return CommitEvent(position, did, _text(commit, "rev", "Jetstream commit"), time, (op,))
    if kind == "account":
        account = event.get("account")
        if not isinstance(account, dict) or not isinstance(account.get("active"), bool):
            raise FrameError("Jetstream account event without 'account.active'")
        status = account.get("status")
        return AccountEvent(
            position, did, account["active"], status if isinstance(status, str) else None, time
        )
    if kind == "identity":
        identity = event.get("identity")
        handle = identity.get("handle") if isinstance(identity, dict) else None
        return IdentityEvent(position, did, handle if isinstance(handle, str) else None, time)
    return OtherEvent(position, str(kind), did)


@dataclass(frozen=True, slots=True)
class RepoContents:
    """A repo as ``getRepo`` sends it: its DID, its revision, and every record in key order."""

    did: str
    rev: str
    records: tuple[tuple[str, str, dict[str, Any]], ...]
    """(collection, rkey, record) for each record."""


def decode_repo(car: bytes, collections: Collection[str] | None = None) -> RepoContents:
    """Read a repo CAR: walk its Merkle Search Tree, keep the records of ``collections``.

    Raises:
        FrameError: not a repo CAR, or a block the tree names is missing.
    """
    header, blocks = decode_car(car)
    roots = header.get("roots")
    if not isinstance(roots, list) or not roots:
        raise FrameError("repo CAR without a root")
    commit = blocks.get(roots[0])
    if not isinstance(commit, dict):
        raise FrameError("repo CAR root is not a commit")
    did, rev = _text(commit, "did", "commit"), _text(commit, "rev", "commit")
    records = []
    for key, cid in _walk(blocks, commit.get("data")):
        collection, _, rkey = key.partition("/")
        if collections is not None and collection not in collections:
            continue
        record = blocks.get(cid)
        if not isinstance(record, dict):
            raise FrameError(f"repo CAR lacks the record {key}")
        records.append((collection, rkey, record))
    return RepoContents(did, rev, tuple(records))


def _walk(blocks: dict[bytes, Any], root: Any) -> Iterator[tuple[str, bytes]]:
    """(key, record CID) of every entry under ``root``, in key order (iteratively)."""
    # An explicit stack of "visit this node" (CID bytes) and "emit this entry" (key, CID).
    work: list[tuple[bool, Any]] = [(False, root)]
    while work:
        is_entry, item = work.pop()
        if is_entry:
            yield item
            continue
        if item is None:
            continue
        node = blocks.get(item)
        if not isinstance(node, dict) or not isinstance(node.get("e"), list):
            raise FrameError("repo CAR lacks a tree node")
        steps: list[tuple[bool, Any]] = [(False, node.get("l"))]
        key = b""
        for entry in node["e"]:
            if not isinstance(entry, dict):
                raise FrameError("malformed tree entry")
            prefix, suffix = entry.get("p"), entry.get("k")
            if not isinstance(prefix, int) or not isinstance(suffix, bytes):
                raise FrameError("malformed tree entry")
            key = key[:prefix] + suffix
            steps.append((True, (key.decode(), entry.get("v"))))
            steps.append((False, entry.get("t")))
        work.extend(reversed(steps))


def event_lag(event: Event, now: float) -> float | None:
    """Seconds from the event's time to ``now``, when the event carries a time."""
    if isinstance(event, OtherEvent):
        return None
    stamp = event.time
    try:
        if stamp.isdigit():
            return now - int(stamp) / 1_000_000
        return now - datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None
