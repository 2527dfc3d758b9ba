"""One pass over a file's rows: prepare chunks (here or in worker processes), store them in order, ack.

Chunks are cut by row count (``dispatcher.batch_size``), or earlier once their cells hold a 32nd of
``limits.memory_mb`` of text, the same way in every mode, so a resumed run sees the same chunks. At most
``workers + 1`` chunks are in flight, which keeps memory flat: also for a few kilobytes of spreadsheet that
unfold into megabytes per row (an ODS ``<text:s text:c="4000000"/>``), which 5,000 rows to a chunk made
gigabytes.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from sqlalchemy import RowMapping

from gateway import liveness
from gateway.bootstrap import App
from gateway.domain.findings import Finding, Outcome, row_outcome
from gateway.errors import InputError, Interrupted
from gateway.mapping.spec import MappingSpec
from gateway.readers.base import Reader, SourceRow
from gateway.services.ack import AckWriter
from gateway.services.ingest_prepare import Preparer, PreparedRow
from gateway.services.ingest_store import (MAX_STORED_FINDINGS, ChunkStore, ChunkTurns, StoreContext, StoredChunk,
                                           encode_rows, init_worker as init_store_worker,
                                           work as store_work)
from gateway.services.node import current_lease, fence
from gateway.store import submissions as sub_store
from gateway.store.db import read_tx

log = logging.getLogger(__name__)
MAX_RESULTS = 50_000  # per-row results kept in memory for the caller; the ack file has every row
# Optional progress callback (rows done so far), called after every chunk. A context variable rather
# than a parameter: the CLI sets it around one ingest (``gateway ingest``'s progress line), and runs
# in serve's threads never see it.
PROGRESS: ContextVar[Callable[[int], None] | None] = ContextVar("ingest_progress", default=None)


@dataclass(slots=True)  # up to MAX_RESULTS of them are kept: slots halve their memory
class RowResult:
    row: int | None
    reference: str | None
    outcome: str
    claim_id: int | None = None
    findings: list[Finding] = field(default_factory=list)


@dataclass
class IngestResult:
    submission: str | None
    status: str
    client_id: str
    filename: str
    rows: int = 0
    accepted: int = 0
    held: int = 0
    rejected: int = 0
    total_amount: str = "0"
    currency: str | None = None
    duplicate_of: str | None = None
    ack_path: str | None = None
    error: str | None = None
    dry_run: bool = False
    results: list[RowResult] = field(default_factory=list)
    results_truncated: bool = False


_GC_LOCK = threading.Lock()
_gc_users = 0
_gc_saved: tuple[int, int, int] | None = None


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """The cyclic GC's thresholds raised while any ingest runs in this process, restored after the last.

    A chunk keeps thousands of rows' objects alive until it is stored, so at the default thresholds the
    collector runs full passes over the whole heap every chunk or two; ingest itself makes almost no
    cyclic garbage. Measured: ~7 % less CPU per row (30k demo rows, 3 interleaved runs each).
    """
    global _gc_users, _gc_saved
    with _GC_LOCK:
        if _gc_users == 0:
            _gc_saved = gc.get_threshold()
            gc.set_threshold(10_000, 50, 100)
        _gc_users += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _gc_users -= 1
            if _gc_users == 0 and _gc_saved is not None:
                gc.set_threshold(*_gc_saved)


class IngestRun:
    """Reads, prepares, stores and acknowledges the rows of one opened file."""

    def __init__(self, app: App, spec: MappingSpec, reader: Reader, client_id: str,
                 submission: RowMapping | None, result: IngestResult, name: str) -> None:
        self.app, self.spec, self.reader, self.client_id = app, spec, reader, client_id
        self.submission, self.result, self.name = submission, result, name
        self.writer: AckWriter | None = None
        self.today = (submission["received_at"] if submission else app.now()).date()
        self.preparer = Preparer(app.config, spec, reader.header, reader.header_row, name, client_id, self.today,
                                 cipher=app.cipher)
        self.reference_column = self.preparer.mapper.column_for("creditor_reference")
        self.progress = submission["progress_row"] if submission else 0
        ctx = StoreContext(client_id, submission["id"] if submission else None, result.submission,
                           self.reference_column, self.progress)
        self.store = ChunkStore(ctx, app.engine, app.cipher, app.now, lambda conn: fence(app, conn))
        self.chunk_size = max(1, app.config.dispatcher.batch_size)
        self.chunk_text = max(1, app.config.limits.memory_mb // 32) << 20  # characters of cell text per chunk
        self.chunk_no = self.stored_findings = 0
        if submission is not None and self.progress:  # a resumed submission: what its earlier runs kept counts
            with read_tx(app.engine) as conn:
                self.stored_findings = sub_store.count_findings(conn, int(submission["id"]))
        self.total = Decimal(0)
        self.error: InputError | None = None

    def run(self, workers: int = 0) -> None:
        """Every row, in order; an InputError from the reader is raised after the rows before it are stored."""
        with _fewer_collections():
            self._run(workers)

    def _run(self, workers: int) -> None:
        if self.spec.group is not None:  # grouping merges neighbouring rows: one ordered pass
            self._serial_grouped()
        elif workers > 0:
            self._parallel(workers)
        else:
            for chunk in self._chunks(self.reader):
                self._flush(self.preparer.chunk(chunk))
        self.result.total_amount = str(self.total)
        if self.error is not None:
            raise self.error
        if self.result.rows == 0:
            where = f" after the header (row {self.reader.header_row})" if self.reader.header_row else ""
            raise InputError(f"the file has no data rows{where}", file=self.name)

    def _chunks(self, rows: Iterable[SourceRow]) -> Iterator[list[SourceRow]]:
        chunk: list[SourceRow] = []
        text, size, budget = 0, self.chunk_size, self.chunk_text
        try:
            for src in rows:
                chunk.append(src)
                text += sum(map(len, src.values))
                if len(chunk) >= size or text >= budget:
                    yield chunk
                    chunk, text = [], 0
        except InputError as exc:
            self.error = exc  # the rows before it are still prepared and stored
        if chunk:
            yield chunk

    def _parallel(self, workers: int) -> None:
        """Chunks prepared and stored by worker processes, in file order; this process reads and acks.

        Storing in the workers as well takes the database's share of the work off this process, which
        otherwise bounds the whole run: it would store every chunk the workers prepared.
        """
        ctx = multiprocessing.get_context("spawn")  # not fork: the parent may run threads (serve) holding locks
        turns = ChunkTurns(ctx, self.chunk_no + 1, self.stored_findings)
        args = (self.app.config, self.spec, self.reader.header, self.reader.header_row, self.name, self.today,
                self.store.ctx, current_lease(), turns, os.getpid())
        chunks = self._chunks(self.reader)
        pending: deque[tuple[int, list[SourceRow], Future[StoredChunk | None]]] = deque()
        unsent: list[SourceRow] | None = None
        lost: BrokenProcessPool | None = None
        pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=init_store_worker, initargs=args)
        try:
            for chunk in chunks:
                unsent = chunk
                self._check_stop()
                self.chunk_no += 1
                pending.append((self.chunk_no, chunk, pool.submit(store_work, self.chunk_no, encode_rows(chunk))))
                unsent = None
                if len(pending) > workers:
                    self._collect(pending[0][2])
                    pending.popleft()  # popped only once reported: a lost worker loses nothing
            while pending:
                self._collect(pending[0][2])
                pending.popleft()
        except BrokenProcessPool as exc:
            lost = exc
        except BaseException:
            turns.abort()  # chunks not yet storing store nothing; one storing now finishes, in order
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # every worker gone before anything else writes
        if lost is None:
            return
        # A worker died (killed, out of memory): finish here, in order, from the oldest chunk not reported.
        # Rows of a chunk stored just before the loss are found as this submission's own and not stored twice.
        log.warning("ingest.workers_lost file=%s error=%s: continuing in this process", self.name, lost)
        self._refresh_progress()
        if pending:
            self.chunk_no = pending[0][0] - 1
        elif unsent is not None:
            self.chunk_no -= 1
        for chunk in [c for _, c, _ in pending] + ([unsent] if unsent is not None else []):
            self._flush(self.preparer.chunk(chunk))
        for chunk in chunks:
            self._flush(self.preparer.chunk(chunk))

    def _refresh_progress(self) -> None:
        # Chunks the lost workers committed without reporting them are below the stored progress marker: their
        # rows are then only reported (found as this submission's own), not stored or their findings kept again;
        # and the findings they kept count against the cap like the others.
        if self.submission is None:
            return
        sid = int(self.submission["id"])
        with read_tx(self.app.engine) as conn:
            progress = int(sub_store.get(conn, sid)["progress_row"] or 0)
            kept = sub_store.count_findings(conn, sid)
        self.store.ctx = replace(self.store.ctx, progress=max(self.store.ctx.progress, progress))
        self.stored_findings = max(self.stored_findings, kept)

    def _collect(self, future: Future[StoredChunk | None]) -> None:
        done = future.result()
        if done is None:  # the run was aborted: the workers saw this process stop it
            raise Interrupted(f"stopping: submission {self.result.submission} resumes at the next start")
        self._reported(done)

    def _serial_grouped(self) -> None:
        chunk: list[PreparedRow] = []
        for mapped in self.preparer.mapper.map_rows(self._guard(self.reader), self.client_id):
            chunk.append(self.preparer.finish(mapped))
            if len(chunk) >= self.chunk_size:
                self._flush(chunk)
                chunk = []
        if chunk:
            self._flush(chunk)

    def _guard(self, rows: Iterable[SourceRow]) -> Iterator[SourceRow]:
        try:
            yield from rows
        except InputError as exc:
            self.error = exc

    def _flush(self, chunk: list[PreparedRow]) -> None:
        self._check_stop()
        self.chunk_no += 1
        done = self.store.store(self.chunk_no, chunk, MAX_STORED_FINDINGS - self.stored_findings)
        self._reported(done)

    def _check_stop(self) -> None:
        liveness.beat()
        if self.submission is not None and self.app.stopping.is_set():
            # Chunks commit with progress_row: stopping between them leaves a resumable submission.
            raise Interrupted(f"stopping: submission {self.result.submission} resumes at the next start")

    def _reported(self, done: StoredChunk) -> None:
        liveness.beat()
        self.stored_findings += done.findings
        self._report_chunk(done.rows, done.stored, done.stored_ok)
        progress = PROGRESS.get()
        if progress is not None:
            progress(self.result.rows)

    def _report_chunk(self, chunk: list[PreparedRow], stored: dict[int, Any], stored_ok: set[int]) -> None:
        """``_report`` for every row of a chunk, rows without findings (nearly all) in one go."""
        r, writer = self.result, self.writer
        accepted = Outcome.ACCEPTED.value
        plain: list[tuple[int, str | None, str, Any]] = []  # ack entries waiting to be written, in row order
        results: list[RowResult] = []
        for p in chunk:
            if p.findings or p.sheet is not None or p.xpath is not None:
                if plain and writer is not None:
                    writer.plain_rows(plain)
                plain = []
                self._add_results(results)
                results = []
                self._report(p, stored.get(p.row), p.row in stored_ok)
                continue
            claim_id = stored.get(p.row)
            r.rows += 1
            r.accepted += 1
            if p.total is not None and p.row in stored_ok:
                r.currency = r.currency or p.currency
                if p.currency == r.currency:
                    self.total += p.total
            plain.append((p.row, p.reference, accepted, claim_id))
            results.append(RowResult(p.row, p.reference, accepted, claim_id, p.findings))
        if plain and writer is not None:
            writer.plain_rows(plain)
        self._add_results(results)

    def _add_results(self, results: list[RowResult]) -> None:
        room = MAX_RESULTS - len(self.result.results)
        if len(results) > room:
            self.result.results_truncated = True
        self.result.results.extend(results[:max(room, 0)])

    def _report(self, p: PreparedRow, claim_id: int | None, stored: bool) -> None:
        outcome = row_outcome(p.findings) if p.findings else Outcome.ACCEPTED
        r = self.result
        r.rows += 1
        if outcome in (Outcome.REJECTED, Outcome.CONFLICT):
            r.rejected += 1
        else:
            r.accepted += outcome is Outcome.ACCEPTED
            r.held += outcome is Outcome.HELD
            if stored and p.total is not None:
                # The submission total is in its first claim's currency; others are counted, not summed.
                r.currency = r.currency or p.currency
                if p.currency == r.currency:
                    self.total += p.total
        if self.writer is not None:
            self.writer.row(p.row, p.reference, outcome, claim_id, p.findings, sheet=p.sheet, xpath=p.xpath)
        if len(r.results) < MAX_RESULTS:
            r.results.append(RowResult(p.row, p.reference, outcome.value, claim_id, p.findings))
        else:
            r.results_truncated = True
