"""Package ingest.testing.encode builds firehose frames, Jetstream messages and repo CARs (libipld).

Records, commits and Merkle Search Tree nodes are DAG-CBOR blocks addressed by
CIDv1 (dag-cbor, sha-256); CARs are v1 (a varint-framed header, then
varint-framed CID + block pairs). Frames are a header ``{op, t}`` followed by a
body, as ``com.atproto.sync.subscribeRepos`` sends them. The MST puts each key
on the layer given by the leading zero bits of its SHA-256, two bits a layer
(fan-out 4), as atproto repos do, so a large repo has a real multi-level tree.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import libipld

FOLLOW = "app.bsky.graph.follow"
BLOCK = "app.bsky.graph.block"
LISTITEM = "app.bsky.graph.listitem"
POST = "app.bsky.feed.post"
TIME = "2026-01-01T00:00:00.000Z"


def cid_of(block: bytes) -> bytes:
    """The CIDv1 (dag-cbor, sha-256) of an encoded block, as bytes (libipld's CID form)."""
    return bytes([0x01, 0x71, 0x12, 0x20]) + hashlib.sha256(block).digest()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def car(root: bytes, blocks: Iterable[bytes]) -> bytes:
    """A CAR v1 file with ``root`` and the given encoded blocks."""
    header = libipld.encode_dag_cbor({"version": 1, "roots": [root]})
    out = [_varint(len(header)), header]
    for block in blocks:
        cid = cid_of(block)
        out += [_varint(len(cid) + len(block)), cid, block]
    return b"".join(out)


def _layer(key: str) -> int:
    digest = hashlib.sha256(key.encode()).digest()
    zeros = 0
    for byte in digest:
        if byte == 0:
            zeros += 8
            continue
        zeros += 8 - byte.bit_length()
        break
    return zeros // 2


def mst(entries: Sequence[tuple[str, bytes]], blocks: list[bytes]) -> bytes:
    """Build the MST of (key, record CID) entries into ``blocks``; returns the root CID."""
    items = sorted((key, cid, _layer(key)) for key, cid in entries)
    top = max((layer for _, _, layer in items), default=0)
    return _node(items, top, blocks)


def _node(items: list[tuple[str, bytes, int]], level: int, blocks: list[bytes]) -> bytes:
    left: bytes | None = None
    node_entries: list[dict[str, Any]] = []
    group: list[tuple[str, bytes, int]] = []
    previous = b""

    def subtree() -> bytes | None:
        if not group:
            return None
        built = _node(list(group), level - 1, blocks)
        group.clear()
        return built

    for key, cid, layer in items:
        if layer < level:
            group.append((key, cid, layer))
            continue
        sub = subtree()
        if node_entries:
            node_entries[-1]["t"] = sub
        else:
            left = sub
        raw = key.encode()
        prefix = 0
        while prefix < min(len(previous), len(raw)) and previous[prefix] == raw[prefix]:
            prefix += 1
        node_entries.append({"p": prefix, "k": raw[prefix:], "v": cid, "t": None})
        previous = raw
    sub = subtree()
    if node_entries:
        node_entries[-1]["t"] = sub
    else:
        left = sub
    block = libipld.encode_dag_cbor({"l": left, "e": node_entries})
    blocks.append(block)
    return cid_of(block)


def _commit_block(did: str, rev: str, data: bytes) -> bytes:
    return libipld.encode_dag_cbor(
        {"did": did, "version": 3, "data": data, "rev": rev, "prev": None, "sig": b"\x00" * 64}
    )


def frame(kind: str, body: dict[str, Any]) -> bytes:
    """A subscribeRepos frame: the header ``{op: 1, t: kind}`` and the body."""
    return libipld.encode_dag_cbor({"op": 1, "t": kind}) + libipld.encode_dag_cbor(body)


def error_frame(name: str, message: str) -> bytes:
    """An error frame (``op`` -1), after which a server closes the stream."""
    return libipld.encode_dag_cbor({"op": -1}) + libipld.encode_dag_cbor(
        {"error": name, "message": message}
    )


@dataclass(frozen=True, slots=True)
class Op:
    """One record operation of a commit; ``record`` is None for deletes."""

    action: str
    collection: str
    rkey: str
    record: dict[str, Any] | None = None


def follow(subject: str) -> dict[str, Any]:
    """An app.bsky.graph.follow record."""
    return {"$type": FOLLOW, "subject": subject, "createdAt": TIME}


def block(subject: str) -> dict[str, Any]:
    """An app.bsky.graph.block record."""
    return {"$type": BLOCK, "subject": subject, "createdAt": TIME}


def listitem(list_uri: str, subject: str) -> dict[str, Any]:
    """An app.bsky.graph.listitem record."""
    return {"$type": LISTITEM, "list": list_uri, "subject": subject, "createdAt": TIME}


def post(text: str) -> dict[str, Any]:
    """An app.bsky.feed.post record (no mapping reads it)."""
    return {"$type": POST, "text": text, "createdAt": TIME}


def commit_frame(
    seq: int, repo: str, rev: str, ops: Sequence[Op], *, drop_blocks: bool = False
) -> bytes:
    """A ``#commit`` frame: record blocks, an MST node over them and the commit, in a CAR."""
    blocks: list[bytes] = []
    raw_ops = []
    entries = []
    for op in ops:
        path = f"{op.collection}/{op.rkey}"
        cid = None
        if op.record is not None:
            encoded = libipld.encode_dag_cbor(op.record)
            cid = cid_of(encoded)
            if not drop_blocks:
                blocks.append(encoded)
            entries.append((path, cid))
        raw_ops.append({"action": op.action, "path": path, "cid": cid})
    root = mst(entries, blocks)
    commit = _commit_block(repo, rev, root)
    blocks.append(commit)
    body = {
        "seq": seq,
        "rebase": False,
        "tooBig": False,
        "repo": repo,
        "commit": cid_of(commit),
        "rev": rev,
        "since": None,
        "blocks": car(cid_of(commit), blocks),
        "ops": raw_ops,
        "blobs": [],
        "time": TIME,
    }
    return frame("#commit", body)


def account_frame(seq: int, did: str, active: bool, status: str | None = None) -> bytes:
    """An ``#account`` frame."""
    body: dict[str, Any] = {"seq": seq, "did": did, "time": TIME, "active": active}
    if status is not None:
        body["status"] = status
    return frame("#account", body)


def identity_frame(seq: int, did: str, handle: str) -> bytes:
    """An ``#identity`` frame."""
    return frame("#identity", {"seq": seq, "did": did, "time": TIME, "handle": handle})


def repo_car(did: str, rev: str, records: Sequence[tuple[str, str, dict[str, Any]]]) -> bytes:
    """A whole repo as ``getRepo`` returns it: commit root, MST, every record."""
    blocks: list[bytes] = []
    entries = []
    for collection, rkey, record in records:
        encoded = libipld.encode_dag_cbor(record)
        blocks.append(encoded)
        entries.append((f"{collection}/{rkey}", cid_of(encoded)))
    root = mst(entries, blocks)
    commit = _commit_block(did, rev, root)
    blocks.append(commit)
    return car(cid_of(commit), blocks)


def jetstream_commit(
    time_us: int, did: str, rev: str, op: Op, *, record: dict[str, Any] | None = None
) -> str:
    """A Jetstream commit message for one op."""
    commit: dict[str, Any] = {
        "rev": rev,
        "operation": op.action,
        "collection": op.collection,
        "rkey": op.rkey,
    }
    if op.record is not None:
        commit["record"] = op.record
        commit["cid"] = "bafyrei" + "a" * 52
    return json.dumps({"did": did, "time_us": time_us, "kind": "commit", "commit": commit})


def jetstream_account(time_us: int, did: str, active: bool, status: str | None = None) -> str:
    """A Jetstream account message."""
    account: dict[str, Any] = {"active": active, "did": did, "seq": 1, "time": TIME}
    if status is not None:
        account["status"] = status
    return json.dumps({"did": did, "time_us": time_us, "kind": "account", "account": account})


def tid(n: int) -> str:
    """A revision string that sorts in ``n``'s order (the order TIDs have)."""
    return f"3l{n:011d}"


@dataclass
class Timeline:
    """Frames with seq 1, 2, … and the ground truth they lead to, for scripted streams."""

    frames: list[tuple[int, bytes]] = field(default_factory=list)

    def commit(self, repo: str, *ops: Op) -> int:
        """Append a commit of ``ops`` to ``repo``; returns its seq."""
        seq = len(self.frames) + 1
        self.frames.append((seq, commit_frame(seq, repo, tid(seq), ops)))
        return seq

    def account(self, did: str, active: bool, status: str | None = None) -> int:
        """Append an ``#account`` event; returns its seq."""
        seq = len(self.frames) + 1
        self.frames.append((seq, account_frame(seq, did, active, status)))
        return seq

    def identity(self, did: str, handle: str) -> int:
        """Append an ``#identity`` event; returns its seq."""
        seq = len(self.frames) + 1
        self.frames.append((seq, identity_frame(seq, did, handle)))
        return seq
