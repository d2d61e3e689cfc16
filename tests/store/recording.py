"""A SqliteStore that notes each group commit in a file, for the writer-process tests.

The writer process opens it from a pickled opener, so it lives in a module of
its own that the child can import.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from policyd.errors import StoreError
from policyd.store.base import GroupRequest, Outcome, Revision
from policyd.store.sqlcommon import SqlCursor
from policyd.store.sqlite import SqliteStore


class RecordingStore(SqliteStore):
    """Appends each group's size to ``log``; can fail its first group, or hang in the first."""

    def __init__(
        self, path: Path, log: Path, *, fail_first: bool = False, hang: bool = False
    ) -> None:
        super().__init__(path)
        self._log = log
        self._fail = fail_first
        self._hang = hang

    def write_group(self, requests: Sequence[GroupRequest]) -> list[Outcome]:
        with self._log.open("a") as log:
            log.write(f"{len(requests)}\n")
        if self._fail:
            self._fail = False
            raise StoreError("the disk is on fire")
        return super().write_group(requests)

    def _apply_request(
        self, cur: SqlCursor, request: GroupRequest
    ) -> Revision | tuple[Revision, int]:
        applied = super()._apply_request(cur, request)
        if self._hang and "hang" not in self._log.read_text():
            # Inside the transaction, after the request: wait to be killed (once; the
            # writer started after that one does not hang).
            self._log.write_text(f"hang {os.getpid()}\n")
            time.sleep(600)
        return applied
