"""Progress of long CLI work on one stderr line: rows, rows/s, elapsed.

Hand-written rather than rich or tqdm: ingest streams its file, so the total is unknown until the end
and a bar could only spin; what an operator needs is "it moves, this fast", one ``\\r``-rewritten line,
which is a dozen lines of code. On a terminal the line is redrawn at most every 0.2 s; otherwise
(a log, a pipe) nothing is drawn and the caller prints one summary line at the end.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class RowProgress:
    """Call with the rows done so far; ``finish`` clears the line and returns the summary text."""

    def __init__(self, label: str, stream: TextIO | None = None, *, live: bool | None = None) -> None:
        self.label, self.stream = label, stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.started = self._last = time.monotonic()
        self.rows = 0

    def __call__(self, rows: int) -> None:
        self.rows = rows
        now = time.monotonic()
        if self.live and now - self._last >= 0.2:
            self._last = now
            self.stream.write(f"\r{self.label}: {self.text(now)}\x1b[K")
            self.stream.flush()

    def text(self, now: float | None = None) -> str:
        elapsed = max(1e-6, (now or time.monotonic()) - self.started)
        return f"{self.rows:,} rows, {self.rows / elapsed:,.0f} rows/s, {elapsed:.1f} s"

    def finish(self) -> str:
        """The summary (``N rows, R rows/s, S s``); the live line is cleared first."""
        if self.live:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
        return self.text()
