"""How much of each client's ``/upload`` quota is spoken for, across every session of the server.

A client's usage is the bytes of the files at rest in its ``upload/`` plus, for every file open for
writing, the furthest byte written so far. A write reserves its extent here *before* it reaches the
disk, so concurrent handles (in one session or several) can never together go past the quota, and a
write far beyond the end of a file (a sparse write) is counted at its full apparent size.

The folder is looked at again when a write handle opens and whenever a write would not fit: files that
left ``upload/`` (ingested, removed) free their space at once, and files placed by other means count.
One instance per server; a lock makes it safe from the event loop and from worker threads alike.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path


class QuotaExceeded(Exception):
    """A write would take the client's ``upload/`` past its quota."""

    def __init__(self, total: int, quota: int) -> None:
        super().__init__(f"{total} bytes in /upload would exceed the quota of {quota} bytes")
        self.total, self.quota = total, quota


class UploadSpace:
    """Per-client reservation book: bytes at rest in ``upload/`` plus bytes held by open write handles."""

    def __init__(self, inbox: Path) -> None:
        self.inbox = inbox
        self._lock = threading.Lock()
        self._rest: dict[str, dict[str, int]] = {}  # client -> name -> size, files not open for writing
        self._open: dict[str, dict[str, int]] = {}  # client -> name -> extent reserved by its write handle

    def opened(self, client_id: str, name: str, size: int) -> None:
        """A write handle on ``name`` opened; the file has ``size`` bytes now (0 after a truncate)."""
        with self._lock:
            self._open.setdefault(client_id, {})[name] = size
            self._rescan(client_id)

    def extend(self, client_id: str, name: str, end: int, quota: int) -> None:
        """Reserve up to byte ``end`` for the open file ``name``; raises QuotaExceeded when that would not fit."""
        with self._lock:
            held = self._open.setdefault(client_id, {})
            before = held.get(name, 0)
            if end <= before:
                return
            total = self._used(client_id) + end - before
            if total > quota:
                self._rescan(client_id)  # what was counted at rest may have left the folder since
                total = self._used(client_id) + end - before
                if total > quota:
                    raise QuotaExceeded(total, quota)
            held[name] = end

    def closed(self, client_id: str, name: str, kept: int | None) -> None:
        """The write handle is gone: the file stays with ``kept`` bytes, or (None) it was discarded."""
        with self._lock:
            self._open.get(client_id, {}).pop(name, None)
            rest = self._rest.setdefault(client_id, {})
            if kept is None:
                rest.pop(name, None)
            else:
                rest[name] = kept

    def used(self, client_id: str) -> int:
        """Bytes counted against the client's quota right now."""
        with self._lock:
            return self._used(client_id)

    def _used(self, client_id: str) -> int:
        return sum(self._rest.get(client_id, {}).values()) + sum(self._open.get(client_id, {}).values())

    def _rescan(self, client_id: str) -> None:
        held = self._open.get(client_id, {})
        rest: dict[str, int] = {}
        try:
            with os.scandir(self.inbox / client_id / "upload") as entries:
                for entry in entries:
                    if entry.name in held:
                        continue  # counted by its reservation, which is never below what is on disk
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if stat.S_ISREG(st.st_mode):
                        rest[entry.name] = st.st_size
        except FileNotFoundError:
            pass
        self._rest[client_id] = rest
