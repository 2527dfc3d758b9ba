"""Status files a file-based partner (directory, SFTP) writes back: ``status/<sortable name>.json``.

Each file is a JSON array of updates (see ``adapters.base.PartnerUpdate``). The gateway's cursor is the
last file name it stored, so names must sort in the order the partner wrote them; dot files and
temp names are still being written and are skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from adapters.base import PartnerUpdate, decode_updates

STATUS_DIR = "status"
INSTRUCTION_DIR = "instructions"  # where file-based partners receive instruction documents


def pending_names(names: Iterable[str], cursor: str | None, limit: int = 100) -> list[str]:
    """Complete status files after ``cursor``, oldest first."""
    done = [n for n in names if n.endswith(".json") and not n.startswith(".") and (cursor is None or n > cursor)]
    return sorted(done)[:limit]


def status_name(first_seq: int, last_seq: int) -> str:
    """The name a simulator gives a status file with journal entries first..last."""
    return f"status-{first_seq:010d}-{last_seq:010d}.json"


def read_local(folder: Path, cursor: str | None) -> tuple[list[PartnerUpdate], str | None]:
    """Updates in a local status folder after the cursor, and the new cursor (OSError passes up)."""
    names = pending_names(os.listdir(folder), cursor) if folder.is_dir() else []
    updates = [u for n in names for u in decode_updates((folder / n).read_bytes())]
    return updates, names[-1] if names else cursor
