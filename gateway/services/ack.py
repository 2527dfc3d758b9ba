"""Acknowledgement files: one line per source row, in the client's own column names.

Written to a temporary name while the file is processed and renamed into place at the end, so a
client never reads half an ack. CSV cells that a spreadsheet would run as a formula are defused.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from types import TracebackType

from gateway.domain.findings import Finding, Outcome

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: str) -> str:
    """Defuse CSV formula injection: a cell starting like a formula gets a leading quote."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def describe(f: Finding) -> str:
    """A finding as a person reads it, naming the client's column where there is one."""
    where = f.column or f.field
    return f"{where}: {f.message}" if where else f.message


class AckWriter:
    """Streams ack lines to ``<final>.tmp`` and moves the file into place on ``commit``."""

    HEADER = ("row", "reference", "outcome", "claim_id", "codes", "messages")

    def __init__(self, final: Path, *, delimiter: str = ";", reference_column: str | None = None) -> None:
        self.final = final
        final.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = final.with_name(f".{final.name}.tmp")
        self._fh = open(self._tmp, "w", encoding="utf-8", newline="")
        self._csv = csv.writer(self._fh, delimiter=delimiter, lineterminator="\r\n")
        header = list(self.HEADER)
        if reference_column:
            header[1] = reference_column  # the client's own name for its reference
        self._csv.writerow(header)

    def row(self, row: int | None, reference: str | None, outcome: Outcome | str, claim_id: int | None,
            findings: list[Finding]) -> None:
        codes = ",".join(dict.fromkeys(f.code for f in findings))
        messages = " | ".join(describe(f) for f in findings)
        self._csv.writerow((row if row is not None else "", safe_cell(reference or ""),
                            outcome.value if isinstance(outcome, Outcome) else outcome,
                            claim_id if claim_id is not None else "", codes, safe_cell(messages)))

    def commit(self) -> Path:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self._tmp, self.final)
        return self.final

    def abort(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "AckWriter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self._fh.closed:
            self.abort()
