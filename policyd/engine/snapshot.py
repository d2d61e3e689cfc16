"""Package snapshot saves the in-memory index to a file and loads it back, so a restart is quick.

Building the index from the store reads every relationship (about 10 s per
million from SQLite and 11-12 s per million from PostgreSQL, build included,
measured: ``policyd bench --sections startup`` and ``--pg-startup``), in
every process at every start. The index's arrays and tries can instead be
written as they are and read back in one pass: the file is the index at one
revision of one store, and a process that loads it applies the store's change
log from that revision on (engine/revisions.py).

A snapshot is used only when everything about it checks out, and rebuilt
otherwise, never served: the magic and format version, the byte order, the
store identity (``Store.identity``: a snapshot of another store is foreign),
a revision not above the store's head and committed at the time the snapshot
recorded (``ChangeLog.revision_stamp``: a store restored from an older copy
and written since has the same identity and revision numbers but another
history), and a BLAKE2b checksum of every byte.
It is written to a temporary file beside the target, fsynced, renamed over
it, and the directory fsynced, so a crash leaves the old snapshot or the new
one, never half of one.

Layout: ``MAGIC``, the header length (8 bytes, little-endian), the header
(JSON: format, byte order, store identity, revision and its stamp, and per type and kind
the lengths of its sections and its changes since the build), the sections
(raw arrays and tries) in header order, and a 32-byte BLAKE2b digest of all
that precedes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policyd.engine.index import (
    COMPACT_AT,
    Adjacency,
    Built,
    Edge,
    Kind,
    KindKey,
    Names,
    RelationshipIndex,
    numbers,
)
from policyd.errors import PolicydError, RevisionUnavailableError
from policyd.store.base import Revision, Store

LOG = logging.getLogger("policyd.engine")

MAGIC = b"policyd-index\n"
FORMAT = 2
"""Bumped whenever the layout changes; a snapshot of another format is rebuilt."""
_DIGEST = 32


class SnapshotUnusableError(PolicydError):
    """An index snapshot that must not be served: corrupt, foreign, of another format or too new."""

    code = "index-snapshot-unusable"


@dataclass(frozen=True, slots=True)
class Loaded:
    """A snapshot read back: the index contents, the revision they are at and its stamp."""

    built: Built
    revision: Revision
    stamp: int | None


StampOf = Callable[[Revision], "int | None"]
"""When a revision committed (``ChangeLog.revision_stamp``)."""


@dataclass(frozen=True, slots=True)
class _Captured:
    """What a snapshot holds, taken from the index under its lock; serialised outside it."""

    revision: Revision
    size: int
    names: dict[str, tuple[Names, list[str]]]
    kinds: list[tuple[Kind, dict[str, Any]]]


def _changes(adjacency: Adjacency) -> dict[str, list[list[int]]]:
    """An adjacency's changes since its build as JSON: [key, target…] lists."""
    return {
        "added": [[key, *sorted(targets)] for key, targets in adjacency.added.items()],
        "removed": [[key, *sorted(targets)] for key, targets in adjacency.removed.items()],
    }


def _capture(index: RelationshipIndex) -> _Captured:
    with index.lock:
        names = {t: (n, n.later()) for t, n in index.names.items()}
        kinds = [
            (
                kind,
                {
                    "forward": _changes(kind.forward),
                    "reverse": _changes(kind.reverse),
                    "values": [
                        [r, s, v.caveat_name, v.context, v.expires_at]
                        for (r, s), v in kind.values.items()
                    ],
                },
            )
            for kind in index.kinds.values()
        ]
        return _Captured(index.revision, index.size, names, kinds)


def _sections(captured: _Captured, header: dict[str, Any]) -> Iterator[bytes]:
    """The sections in order, filling in the header's description of each."""
    types = header["types"] = []
    for type_name, (names, later) in captured.names.items():
        ids, kids, _ = names.parts()
        types.append(
            {
                "name": type_name,
                "compact": names.compact,
                "ids": len(ids),
                "kids": len(kids),
                "later": later,
            }
        )
        yield ids
        yield kids
    kinds = header["kinds"] = []
    for kind, changes in captured.kinds:
        arrays = (
            kind.forward.starts,
            kind.forward.targets,
            kind.reverse.starts,
            kind.reverse.targets,
        )
        kinds.append({"key": list(kind.key), "arrays": [len(a) for a in arrays], **changes})
        for a in arrays:
            yield a.tobytes()


def write_snapshot(
    index: RelationshipIndex, identity: bytes, path: Path, stamp_of: StampOf
) -> tuple[int, Revision]:
    """Write the index to ``path`` atomically; returns the bytes written and their revision.

    ``stamp_of`` gives the stamp of the revision captured, recorded beside it.
    """
    captured = _capture(index)
    header: dict[str, Any] = {
        "format": FORMAT,
        "byteorder": sys.byteorder,
        "number_size": numbers().itemsize,
        "store": identity.hex(),
        "revision": captured.revision,
        "stamp": stamp_of(captured.revision),
        "size": captured.size,
    }
    sections = list(_sections(captured, header))
    head = json.dumps(header, separators=(",", ":")).encode()
    digest = hashlib.blake2b(digest_size=_DIGEST)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    written = 0
    try:
        with temporary.open("wb") as out:
            for part in (MAGIC, len(head).to_bytes(8, "little"), head, *sections):
                digest.update(part)
                out.write(part)
                written += len(part)
            out.write(digest.digest())
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return written + _DIGEST, captured.revision


def _header(data: memoryview, identity: bytes) -> tuple[dict[str, Any], int]:
    """The checked header and the offset of the first section.

    Raises:
        SnapshotUnusableError: anything about the file does not match.
    """
    if len(data) < len(MAGIC) + 8 + _DIGEST or bytes(data[: len(MAGIC)]) != MAGIC:
        raise SnapshotUnusableError("not an index snapshot")
    body = data[:-_DIGEST]
    if hashlib.blake2b(body, digest_size=_DIGEST).digest() != bytes(data[-_DIGEST:]):
        raise SnapshotUnusableError("its checksum does not match: the file is corrupt")
    at = len(MAGIC) + 8
    length = int.from_bytes(data[len(MAGIC) : at], "little")
    header: dict[str, Any] = json.loads(bytes(data[at : at + length]))
    if header.get("format") != FORMAT:
        raise SnapshotUnusableError(f"format {header.get('format')}, not {FORMAT}")
    if header.get("byteorder") != sys.byteorder or header.get("number_size") != 4:
        raise SnapshotUnusableError("written on a machine of another byte order")
    if header.get("store") != identity.hex():
        raise SnapshotUnusableError("it is a snapshot of another store")
    return header, at + length


def _adjacency(starts: array[int], targets: array[int], changes: dict[str, Any]) -> Adjacency:
    adjacency = Adjacency(starts, targets)
    adjacency.added = {row[0]: set(row[1:]) for row in changes["added"]}
    adjacency.removed = {row[0]: set(row[1:]) for row in changes["removed"]}
    return adjacency


def read_snapshot(path: Path, identity: bytes) -> Loaded:
    """The index contents saved in ``path`` for the store ``identity``.

    Raises:
        SnapshotUnusableError: the file is missing, corrupt, foreign or of another format.
    """
    try:
        data = memoryview(path.read_bytes())
    except OSError as e:
        raise SnapshotUnusableError(f"it cannot be read: {e}") from e
    header, at = _header(data, identity)

    def take(length: int) -> memoryview:
        nonlocal at
        part = data[at : at + length]
        at += length
        return part

    def array_of(length: int) -> array[int]:
        out = numbers()
        out.frombytes(take(length * out.itemsize))
        return out

    try:
        names: dict[str, Names] = {}
        for entry in header["types"]:
            ids, kids = bytes(take(entry["ids"])), bytes(take(entry["kids"]))
            names[entry["name"]] = Names.from_parts(entry["compact"], ids, kids, entry["later"])
        kinds: list[Kind] = []
        for entry in header["kinds"]:
            rtype, relation, stype, srel = entry["key"]
            key: KindKey = (rtype, relation, stype, srel)
            fs, ft, rs, rt = (array_of(n) for n in entry["arrays"])
            kind = Kind(
                key,
                names[key[0]],
                names[key[2]],
                _adjacency(fs, ft, entry["forward"]),
                _adjacency(rs, rt, entry["reverse"]),
            )
            for r, s, caveat, context, expires in entry["values"]:
                kind.values[(r, s)] = Edge(caveat, context, expires)
            kinds.append(kind)
    except (KeyError, ValueError, TypeError) as e:  # a well-formed digest over a bad layout
        raise SnapshotUnusableError(f"its layout is not understood: {e!r}") from e
    if at != len(data) - _DIGEST:
        raise SnapshotUnusableError("its sections do not add up to its length")
    return Loaded(Built(names, kinds, header["size"]), header["revision"], header.get("stamp"))


class SnapshotFile:
    """The index snapshot of one store at one path: loaded at start, saved now and then."""

    def __init__(self, path: Path, identity: bytes, stamp_of: StampOf) -> None:
        self.path = path
        self.identity = identity
        self.stamp_of = stamp_of
        self.saved: Revision | None = None
        """The revision of the last snapshot saved or loaded here."""

    def start(self, index: RelationshipIndex, store: Store, head: Revision) -> None:
        """Fill ``index`` up to the store's head: from the snapshot if it is usable.

        A snapshot is usable when it checks out (``read_snapshot``), is not
        above ``head``, its revision has the stamp it recorded, and the change
        log still reaches back to it; otherwise the index is built from the
        store, and saved.
        """
        try:
            loaded = read_snapshot(self.path, self.identity)
            if loaded.revision > head:
                raise SnapshotUnusableError(
                    f"its revision {loaded.revision} is above the store's head {head} "
                    "(was the store restored from an older copy?)"
                )
            stamp = self.stamp_of(loaded.revision)
            if stamp is None:  # collected (or never made here): the log cannot replay from it
                raise RevisionUnavailableError(f"the store keeps no revision {loaded.revision}")
            if stamp != loaded.stamp:
                raise SnapshotUnusableError(
                    f"the store's revision {loaded.revision} is not the one it was saved at "
                    "(was the store restored from an older copy and written since?)"
                )
            index.replace(loaded.built, loaded.revision)
            index.catch_up(store)
        except SnapshotUnusableError as e:
            level = logging.INFO if not self.path.exists() else logging.WARNING
            LOG.log(level, "index snapshot %s not used: %s; building from the store", self.path, e)
        except RevisionUnavailableError as e:
            LOG.warning(
                "index snapshot %s not used: the change log no longer reaches back to its "
                "revision (%s); building from the store",
                self.path,
                e,
            )
        else:
            self.saved = loaded.revision
            LOG.info(
                "index loaded from %s at revision %d, caught up to %d",
                self.path,
                loaded.revision,
                index.revision,
            )
            if index.changes() > COMPACT_AT * max(index.size, 1):
                index.compact()
                self.save(index)
            return
        index.load(store.snapshot(head))
        self.save(index)

    def save(self, index: RelationshipIndex) -> None:
        """Write the index's snapshot; a failure is logged, and serving goes on."""
        try:
            written, self.saved = write_snapshot(index, self.identity, self.path, self.stamp_of)
        except (OSError, PolicydError) as e:  # a full disk, or the store gone meanwhile
            LOG.error("saving the index snapshot to %s failed: %s", self.path, e)
            return
        LOG.info(
            "index snapshot at revision %d saved to %s (%d bytes)", self.saved, self.path, written
        )
