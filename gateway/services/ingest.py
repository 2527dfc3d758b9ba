"""Ingest one client file: durable submission first, then read, map, validate, store in chunks, ack.

Crash safety: the submission row and the encrypted raw bytes commit before any row is read. Rows
are then stored in chunks; each chunk's claims, first events, findings, outbox rows and the
submission's ``progress_row`` commit in one transaction. Re-running an unfinished submission
(``resume``) maps every row again (deterministic: same mapping, same received date) and inserts
only rows after ``progress_row``, so nothing is lost or stored twice.

Speed: the database-free work (map, validate, route, encrypt: ``ingest_prepare``) may run in worker
processes, chunk by chunk, while this process reads the file and stores the prepared chunks strictly
in file order; the chunks, their transactions and the resume rule are the same either way. A file
that turns unreadable half way (a broken quote, a bad byte) keeps the rows read before it: they are
stored and listed in the ack, which ends with the error.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Connection, RowMapping

from gateway import metrics
from gateway.bootstrap import App
from gateway.config import LimitsConfig
from gateway.domain.findings import Finding
from gateway.domain.model import to_minor
from gateway.errors import GatewayError, InputError, Interrupted
from gateway.faults import describe, is_transient
from gateway.mapping.spec import MappingSpec, load_mapping
from gateway.mapping.engine import date_columns
from gateway.readers.base import Reader, open_reader
from gateway.services.ack import ACK_NAME_MAX, AckUnwritable, AckWriter, ack_suffix, fit_name
from gateway.services.client_files import ClientFile
from gateway.services.ingest_run import IngestResult, IngestRun, RowResult
from gateway.services.ingest_snapshot import snapshot
from gateway.services.node import LeaseBusy, client_ingest_lease, fence, leased
from gateway.store import submissions as sub_store
from gateway.store.db import write_tx

__all__ = ["MAX_RESUMES", "IngestResult", "RowResult", "ack_path_for", "give_up_resume", "ingest_file", "resume",
           "sha256_file"]
log = logging.getLogger(__name__)
CHUNK_BYTES = 1 << 20
MAX_RESUMES = 3  # resumes of one unfinished submission (start-up or the same file again) before it is given up


def sha256_file(path: Path) -> tuple[str, int]:
    """Hex digest and size, reading in chunks."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            yield chunk


def ack_path_for(app: App, client_id: str, filename: str) -> Path:
    """Where the ack of a client's file goes: ``inbox/<client>/ack/<file>.ack.csv`` (or ``.ack.xml``)."""
    client = app.config.clients.get(client_id)
    suffix = ack_suffix(client.ack_format if client else "auto", filename)
    return app.config.inbox_dir / client_id / "ack" / f"{fit_name(filename, ACK_NAME_MAX - len(suffix))}{suffix}"


_slots_lock = threading.Lock()
_slots_used = 0
MAX_WORKER_PROCESSES = 3  # at once in one gateway process, over all the files it ingests at the same time


@contextmanager
def _worker_slots(wanted: int) -> Iterator[int]:
    """As many of ``wanted`` worker processes as are free in this process (0: the file runs here alone).

    ``serve`` ingests several files at once (``sftp.ingest_workers``): without a shared bound each would start
    its own workers, several hundred MB and more processes than cores.
    """
    global _slots_used
    with _slots_lock:
        granted = max(0, min(wanted, MAX_WORKER_PROCESSES - _slots_used))
        _slots_used += granted
    try:
        yield granted
    finally:
        with _slots_lock:
            _slots_used -= granted


def default_workers(limits: LimitsConfig, size: int) -> int:
    """Worker processes for a file of ``size`` bytes: ``limits.ingest_processes``, else by the usable cores.

    With the storing in the workers, the ingesting process only reads and acks (a tenth of the work), so
    even two cores are best used by two workers (docs/benchmarks.md); more than three do not help, as
    chunks are stored one at a time, in order.
    """
    if size < limits.parallel_from_mb * (1 << 20):
        return 0
    if limits.ingest_processes is not None:
        return max(0, limits.ingest_processes)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cores < 2 else min(3, cores)


def ingest_file(app: App, path: Path, client_id: str, *, channel: str = "cli", mapping_path: Path | None = None,
                dry_run: bool = False, ack_path: Path | None = None, filename: str | None = None,
                workers: int | None = None, lease_wait: float = 0.0, jail: Path | None = None) -> IngestResult:
    """Ingest ``path`` for ``client_id``; a mapping/config problem raises, a bad file yields status failed.

    ``lease_wait``: how long to wait while another node or thread ingests for the same client (then
    ``LeaseBusy``). ``workers``: processes that map, validate, encrypt and store chunks beside this one
    (0: none; None: ``default_workers``). ``jail``: the client's folder a
    dropped file must be in; it is opened without following links (``LinkRefused`` for a link) and
    read only through that open file.
    """
    if jail is not None:
        with ClientFile(path, jail) as checked:
            return ingest_file(app, checked.path, client_id, channel=channel, mapping_path=mapping_path,
                               dry_run=dry_run, ack_path=ack_path, filename=filename or path.name,
                               workers=workers, lease_wait=lease_wait)
    app.config.client(client_id)  # unknown client: ConfigError before anything is recorded
    # mapping: an explicit file as is; the installed one through the registry (hot reload, last good kept)
    spec = load_mapping(mapping_path) if mapping_path else app.mappings.get(client_id)
    name = filename or path.name
    if not path.is_file():
        raise InputError("no such file", file=name)
    # Hashed, stored and read from one private copy: a file rewritten in place meanwhile is not read as two
    # (ingest_snapshot.py).
    with snapshot(app.config.var_dir, path, name) as (copy, sha, size):
        if workers is None:
            workers = default_workers(app.config.limits, size)
        if dry_run:
            return _process(app, spec, copy, client_id, name, submission=None, ack=None, workers=workers)
        # One ingest per client at a time on every node: references are checked, then inserted.
        with leased(app, client_ingest_lease(client_id), wait=lease_wait) as lease:
            if lease is None:
                raise LeaseBusy(f"client {client_id} is being ingested elsewhere; {name} waits its turn")
            return _ingest_new(app, spec, copy, client_id, name, sha, size, channel, ack_path, workers)


def _ingest_new(app: App, spec: MappingSpec, path: Path, client_id: str, name: str, sha: str, size: int,
                channel: str, ack_path: Path | None, workers: int) -> IngestResult:
    attempt = 0
    with write_tx(app.engine) as conn:
        dup = sub_store.find_duplicate(conn, client_id, sha)
        if dup is not None and dup["status"] == "failed":
            # The same bytes after a failure (a file unusable under the mapping then, or set aside after errors
            # of the gateway's own) are processed afresh: the operator may have mended the cause, and "duplicate"
            # would leave the client no way to send the file. Claims an earlier run stored stay theirs: their
            # rows are duplicates of them now, never stored twice.
            sub_store.release_dedupe(conn, dup["id"])
            log.info("ingest.again client=%s file=%s failed_before=%s", client_id, name, dup["reference"])
            dup = None
        if dup is None:
            sub = sub_store.create(conn, client_id=client_id, channel=channel, filename=name, sha256=sha,
                                   size=size, dedupe=True, received_at=app.now())
            assert sub is not None  # the write lock is held: nobody inserted it since find_duplicate
            sub_store.store_payload(conn, app.cipher, sub["id"], _chunks(path))
        elif dup["status"] == "processing":
            # Counted like a start-up resume (committed before it runs): in ``serve`` the file still in the inbox
            # (or an SFTP upload recovered) may reach its client's lease before the start-up resume does, and a
            # file whose processing kills the process must not be resumed this way without end.
            attempt = sub_store.count_resume(conn, dup["id"])
    if dup is not None and dup["status"] == "processing":
        if attempt > MAX_RESUMES:
            return give_up_resume(app, dup, attempt - 1)
        # The same bytes again while their submission never finished (a crash): finish it now.
        log.warning("ingest.resume client=%s submission=%s attempt=%d", client_id, dup["reference"], attempt)
        try:
            return _process(app, spec, path, client_id, name, submission=dup,
                            ack=ack_path or ack_path_for(app, client_id, name), workers=workers)
        except Exception as exc:
            uncount_unless_the_files_fault(app, dup["id"], exc)
            raise
    if dup is not None:
        log.info("ingest.duplicate client=%s file=%s submission=%s", client_id, name, dup["reference"])
        return IngestResult(submission=None, status="duplicate", client_id=client_id, filename=name,
                            duplicate_of=dup["reference"], ack_path=dup["ack_path"])
    assert sub is not None
    log.info("ingest.received client=%s submission=%s file=%s bytes=%d", client_id, sub["reference"], name, size)
    metrics.SUBMISSIONS_RECEIVED.labels(client_id, channel).inc()
    return _process(app, spec, path, client_id, name, submission=sub,
                    ack=ack_path or ack_path_for(app, client_id, name), workers=workers)


def uncount_unless_the_files_fault(app: App, submission_id: int, exc: BaseException) -> None:
    """A resume that ended with a clean stop (a deploy), a transient fault (the database away, a full disk) or an ack
    folder that stopped taking the ack is not the file's fault: it is not counted against the file's ``MAX_RESUMES``. What crashes the process is
    never seen here, so it stays counted."""
    # LeaseLost: another node took over; AckUnwritable: the ack folder broke, not the file
    if not (isinstance(exc, (Interrupted, LeaseBusy, AckUnwritable)) or is_transient(exc)):
        return
    try:
        with write_tx(app.engine) as conn:
            sub_store.uncount_resume(conn, submission_id)
    except Exception as again:  # noqa: BLE001 - the same fault (the database still away): the count stands
        log.warning("ingest.uncount_failed submission_id=%d error=%s", submission_id, describe(again))


def give_up_resume(app: App, sub: RowMapping, resumes: int) -> IngestResult:
    """Mark a submission failed whose processing was interrupted at every resume: a failed ack says why."""
    error = (f"processing this file was interrupted {resumes + 1} times (the gateway stopped or crashed while "
             "reading it, most likely because of the file); it is not retried: check the file and send it again")
    name = sub["filename"] or "payload"
    ack = Path(sub["ack_path"]) if sub["ack_path"] else ack_path_for(app, sub["client_id"], name)
    writer = AckWriter(ack)
    writer.row(None, None, "failed", None, [Finding(code="input_error", message=error)])
    with _fenced_ack(app, writer) as conn:
        sub_store.finish(conn, sub["id"], status="failed", error=error, ack_path=str(ack))
    log.error("ingest.resume_given_up submission=%s file=%s resumes=%d", sub["reference"], name, resumes)
    return IngestResult(submission=sub["reference"], status="failed", client_id=sub["client_id"], filename=name,
                        ack_path=str(ack), error=error)


def resume(app: App, submission: RowMapping, path: Path) -> IngestResult:
    """Finish a submission a crash left in ``processing`` (its raw bytes restored to ``path``).

    The caller holds the client's ingest lease (``services.node.leased``).
    """
    spec = app.mappings.get(submission["client_id"])
    name = submission["filename"] or path.name
    return _process(app, spec, path, submission["client_id"], name, submission=submission,
                    ack=Path(submission["ack_path"]) if submission["ack_path"]
                    else ack_path_for(app, submission["client_id"], name), workers=0)


def _process(app: App, spec: MappingSpec, path: Path, client_id: str, name: str, *,
             submission: RowMapping | None, ack: Path | None, workers: int = 0) -> IngestResult:
    result = IngestResult(submission=submission["reference"] if submission else None, status="processing",
                          client_id=client_id, filename=name, dry_run=submission is None,
                          ack_path=str(ack) if ack else None)
    writer: AckWriter | None = None
    client = app.config.client(client_id)
    started = time.monotonic()
    try:
        reader: Reader = open_reader(path, spec.format, date_columns=date_columns(spec), limits=app.config.limits)
        try:
            run = IngestRun(app, spec, reader, client_id, submission, result, name)
            if ack is not None:
                delimiter = client.ack_delimiter or getattr(reader, "delimiter", None) or spec.format.delimiter
                writer = AckWriter(ack, delimiter=delimiter if len(delimiter) == 1 else ";",
                                   reference_column=run.reference_column, error_cap=client.ack_error_cap,
                                   source=name, sandbox=client.sandbox_of is not None)
                run.writer = writer
            with _worker_slots(workers) as granted:
                run.run(granted)
        finally:
            reader.close()
    except InputError as exc:
        failed = _fail(app, result, submission, writer, ack, exc)
        if submission is not None:
            metrics.finished(client_id, str(submission["channel"]), result.accepted, result.held, result.rejected,
                             time.monotonic() - started)
        return failed
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    result.status = "completed_with_errors" if result.rejected else "completed"
    if submission is None:
        if writer is not None:
            writer.commit()
        return result
    with _fenced_ack(app, writer) as conn:
        sub_store.finish(conn, submission["id"], status=result.status, counts=_counts(result),
                         ack_path=result.ack_path)
    log.info("ingest.done submission=%s rows=%d accepted=%d held=%d rejected=%d", result.submission,
             result.rows, result.accepted, result.held, result.rejected)
    metrics.finished(client_id, str(submission["channel"]), result.accepted, result.held, result.rejected,
                     time.monotonic() - started)
    return result


@contextmanager
def _fenced_ack(app: App, writer: AckWriter | None) -> Iterator[Connection]:
    """The transaction that records a submission's outcome, with its ack moved into place inside it, under the
    client's ingest lease: renewed first (``fence``), so the lease row stays locked (PostgreSQL; SQLite's write
    lock) until the outcome commits. A node that stood still past its lease (frozen, paused) and was taken over
    gets ``LeaseLost`` here and writes no ack: the node that took the submission over writes it, once (a client
    may have fetched and removed that one already). The ack is still in place before the outcome commits
    (nothing is reported done without its ack); a crash between the two writes the same ack again at the resume.
    """
    try:
        if writer is not None:
            writer.seal()  # written and synced before the lease is held: the rename alone is under it
        with write_tx(app.engine) as conn:
            fence(app, conn)
            if writer is not None:
                writer.commit()
            yield conn
    finally:
        if writer is not None:
            writer.abort()  # the temp file, if the rename did not happen (a no-op after it)


def _counts(result: IngestResult) -> sub_store.SubmissionCounts:
    currency = result.currency or "EUR"
    return sub_store.SubmissionCounts(rows=result.rows, accepted=result.accepted, held=result.held,
                                      rejected=result.rejected, currency=result.currency,
                                      total_minor=to_minor(Decimal(result.total_amount), currency))


def _fail(app: App, result: IngestResult, submission: RowMapping | None, writer: AckWriter | None,
          ack: Path | None, exc: GatewayError) -> IngestResult:
    """The file is unusable (from some row on): say so in the ack and on the submission; rows stored stay."""
    # The error column, the log and the result name the file by its client-side name and hold no value
    # of the file; only the client's own ack may quote its content (``InputError.detail``).
    if isinstance(exc, InputError):
        exc = InputError(exc.message, file=result.filename, row=exc.row, column=exc.column, detail=exc.detail)
    detail = getattr(exc, "detail", None)
    result.status, result.error = "failed", str(exc)
    finding = Finding(code="input_error", message=str(exc), column=getattr(exc, "column", None),
                      client_message=f"{exc} ({detail})" if detail else None)
    if writer is None and ack is not None:
        writer = AckWriter(ack)
    if writer is not None:  # the rows read before the problem keep their lines
        writer.row(getattr(exc, "row", None), None, "failed", None, [finding])
    if submission is None:
        if writer is not None:
            writer.commit()
        return result
    with _fenced_ack(app, writer) as conn:
        sub_store.finish(conn, submission["id"], status="failed", counts=_counts(result), error=str(exc),
                         ack_path=result.ack_path)
    log.warning("ingest.failed submission=%s rows_stored=%d error=%s", result.submission,
                result.accepted + result.held, exc)
    return result
