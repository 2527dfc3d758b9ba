"""The simulated agency's books on disk, so a demo agency keeps its numbering across ``serve`` restarts.

A real agency does not forget its cases, file numbers or status journal when the gateway restarts;
the demo one must not either, or the gateway's cursor points past a journal that began again at 1 and
the demo claims never move on. The books are one JSON file, replaced atomically on every change.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec

from adapters.base import PartnerUpdate


class StoredCase(msgspec.Struct, kw_only=True):
    claim_id: int
    file_number: str
    key: str
    created_at: float  # wall-clock seconds: a persisted agency runs on time.time
    code: str
    step: int
    open_amount: str | None
    labels: list[str]
    monitoring: bool
    client_messages: list[str]
    direct_payments: list[dict[str, str]] = []
    scenario: str = "paid"  # books saved before scenarios existed played the default one


class Books(msgspec.Struct, kw_only=True):
    """Everything the agency must remember."""

    version: int = 1
    next_number: int
    cases: list[StoredCase]
    create_requests: dict[int, int]
    cases_created: dict[int, int]
    batches: dict[str, dict[int, str]]
    operations: dict[str, dict[str, Any]]
    journal: list[PartnerUpdate]
    committed: int


_decoder = msgspec.json.Decoder(Books)


def load_books(path: Path) -> Books | None:
    """The books saved at ``path``, or None when the agency starts fresh."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ValueError(f"{path}: not the simulated agency's books ({exc}); move it away to start afresh") from exc


def save_books(path: Path, books: Books) -> None:
    """Write the books whole under a temp name and rename: a reader sees the old or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(msgspec.json.encode(books))
    os.replace(tmp, path)
