"""Status files a file-based partner (directory, SFTP) writes back: ``status/<sortable name>.json``.

Each file is a JSON array of updates (see ``adapters.base.PartnerUpdate``). The gateway's cursor is the
last file name it stored, so names must sort in the order the partner wrote them; dot files and
temp names are still being written and are skipped.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

import msgspec

from adapters.base import PartnerUpdate, decode_updates
from gateway.errors import DeliveryError

STATUS_DIR = "status"
# A status file is read whole into memory: one larger than this is refused with its name and size (the cursor
# stays before it), and a sync reads further files only while their total stays under it.
MAX_STATUS_BYTES = 64 * 1024 * 1024
INSTRUCTION_DIR = "instructions"  # where file-based partners receive instruction documents


def pending_names(names: Iterable[str], cursor: str | None, limit: int = 100) -> list[str]:
    """Complete status files after ``cursor``, oldest first."""
    done = [n for n in names if n.endswith(".json") and not n.startswith(".") and (cursor is None or n > cursor)]
    return sorted(done)[:limit]


def status_name(first_seq: int, last_seq: int) -> str:
    """The name a simulator gives a status file with journal entries first..last."""
    return f"status-{first_seq:010d}-{last_seq:010d}.json"


def decode_status_file(where: str, name: str, data: bytes) -> list[PartnerUpdate]:
    """A status file's updates; one that is not a whole JSON array of updates (still being written under its
    final name, or broken) is a retryable error naming the file and what is wrong, never its content: the
    cursor stays before it, so neither it nor a later file is applied until it reads whole."""
    try:
        return decode_updates(data)
    except msgspec.DecodeError as exc:  # its text says where (byte, $[i].field), not the values
        raise DeliveryError(f"{where}: status file {name} ({len(data)} bytes) is not a whole JSON array of "
                            f"updates: {exc}; read again at the next sync", retryable=True) from None


def check_size(where: str, name: str, size: int) -> None:
    """Refuse a status file too large to be read whole (``MAX_STATUS_BYTES``), naming it and its size."""
    if size > MAX_STATUS_BYTES:
        raise DeliveryError(f"{where}: status file {name} has {size} bytes, more than the {MAX_STATUS_BYTES} a status "
                            f"file may have; nothing after it is read until it is split or moved aside",
                            retryable=True)


def within_budget(sizes: list[tuple[str, int]]) -> list[str]:
    """The leading names whose files together stay within ``MAX_STATUS_BYTES`` (at least the first)."""
    taken: list[str] = []
    total = 0
    for name, size in sizes:
        total += size
        if taken and total > MAX_STATUS_BYTES:
            break
        taken.append(name)
    return taken


def read_local(folder: Path, cursor: str | None, where: str = "") -> tuple[list[PartnerUpdate], str | None]:
    """Updates in a local status folder after the cursor, and the new cursor (OSError passes up)."""
    where = where or str(folder)
    names = pending_names(os.listdir(folder), cursor) if folder.is_dir() else []
    names = within_budget([(n, (folder / n).stat().st_size) for n in names])
    updates: list[PartnerUpdate] = []
    for n in names:
        # Not blocking: a named pipe under a status name would wait for a writer for ever (the partner's sync
        # hung without a word); it, a device or a folder is refused like a broken file, the cursor before it.
        fd = os.open(folder / n, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise DeliveryError(f"{where}: status file {n} is not a regular file (a folder, named pipe or "
                                    "device); nothing after it is read until it is moved aside", retryable=True)
            data = fh.read(MAX_STATUS_BYTES + 1)  # a file that grew since its size was read is refused too
        check_size(where, n, len(data))
        updates.extend(decode_status_file(where, n, data))
    return updates, names[-1] if names else cursor
