"""Inbox use cases: ingest a file a client dropped, and finish what a crash interrupted.

``UploadBook`` is the durable record of what the gateway's SFTP server is doing in
``inbox/<client>/upload``: a file is ``writing`` from before it exists until its handle closes, then
``complete`` (closed normally) or ``incomplete`` (the connection dropped), ``processing`` while it is
ingested, and forgotten once its submission is finished. An upload whose write was refused (over the
size limit or the quota) stays ``writing`` until its partial file is deleted, then gets a ``failed`` ack
and is forgotten. The watcher leaves tracked files alone, so nothing is ingested twice and a
half-written or refused file is never ingested at all.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import logging
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import RowMapping

from gateway.bootstrap import App
from gateway.domain.findings import Finding
from gateway.episodes import Episodes
from gateway.errors import ConfigError, InputError
from gateway.faults import describe
from gateway.services.ack import AckWriter, private_temp_name, remove_stale_temps, safe_cell, sibling
from gateway.services.client_files import LINK_REFUSED, LinkRefused, is_link
from gateway.services.file_writers import has_writer, remove_unless_written
from gateway.services.ingest import (MAX_RESUMES, IngestResult, ack_path_for, give_up_resume, ingest_file, resume,
                                     uncount_unless_the_files_fault)
from gateway.services.node import LeaseLost, client_ingest_lease, leased
from gateway.store import submissions as sub_store
from gateway.store import uploads as upload_store
from gateway.store.db import read_tx, write_tx

log = logging.getLogger(__name__)

TEMP_SUFFIXES = (".part", ".filepart", ".tmp", ".partial", ".crdownload", ".done")


def is_candidate(path: Path) -> bool:
    """A file that may be a finished upload: not a temp name, not a dot file, not a marker."""
    name = path.name
    return not name.startswith(".") and not name.lower().endswith(TEMP_SUFFIXES) and not name.startswith("~$")


def name_problem(name: str) -> str | None:
    """Why a file name cannot be taken (not UTF-8, control characters), or None.

    Such a name cannot be stored as the submission's file name (the database's text is UTF-8) nor written
    into a log line as it is (a line break would forge a line)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "the file name is not valid UTF-8"
    if any(ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0 for c in name):
        return "the file name holds control characters (a line break, a tab, ...)"
    return None


def shown(name: str) -> str:
    """``name`` for a log line or a derived file name: as it is when it is fine, else escaped (``bad\\xff.csv``)."""
    return name if name_problem(name) is None else ascii(name)[1:-1].replace("\\udc", "\\x")


def refuse_name(app: App, client_id: str, path: Path, problem: str) -> IngestResult:
    """A failed ack (under the escaped name) for a file whose name cannot be taken; the file stays untouched."""
    name = shown(path.name)
    check_ack_folder(app, client_id)
    ack = ack_path_for(app, client_id, name)
    if not ack.exists():  # once, not at every start
        with AckWriter(ack) as w:
            w.row(None, None, "failed", None, [Finding(
                code="invalid_file_name",
                message=f"{problem}; the file was not processed: rename it (letters, digits, '-', '_', '.') "
                        "and send it again")])
            w.commit()
    log.warning("inbox.name_refused client=%s file=%s reason=%s", client_id, name, problem)
    return IngestResult(submission=None, status="failed", client_id=client_id, filename=name, ack_path=str(ack),
                        error=problem)


def process_inbox_file(app: App, client_id: str, path: Path, channel: str = "watch") -> IngestResult:
    """Ingest a complete upload, then remove it from the inbox (its bytes are kept encrypted).

    It is removed only if it is still the file that was ingested (same inode, size and modification
    time) and no process has it open for writing; otherwise it stays, with a warning in the log.
    A symbolic link (or anything but a plain file) is never followed or read: it gets a failed ack and
    is removed (the link only; what it points to is not touched).
    """
    try:
        before = os.lstat(path)
    except FileNotFoundError:
        raise InputError("no such file", file=path.name) from None
    try:
        result = ingest_file(app, path, client_id, channel=channel, jail=app.config.inbox_dir / client_id / "upload")
    except LinkRefused as exc:
        return _refuse_link(app, client_id, path, exc)
    if result.status == "duplicate":
        ack = ack_path_for(app, client_id, result.filename)
        if not ack.exists():  # a re-upload under a new name gets its own answer; an old ack is never replaced
            with AckWriter(ack) as w:
                w.row(None, None, "duplicate", None, [Finding(
                    code="duplicate_file", message=f"this file was already submitted as {result.duplicate_of}")])
                w.commit()
        result.ack_path = str(ack)
    # The submission (with the raw bytes) is committed: removing the plain copy loses nothing, unless
    # a writer is still adding to it (then the rest would go into a deleted file).
    try:
        kept = remove_unless_written(path, before)
    except OSError as exc:  # a read-only or otherwise refusing folder: stored and answered all the same
        kept = f"cannot_remove ({exc.strerror or type(exc).__name__})"
    if kept is not None:
        log.warning("inbox.kept client=%s file=%s reason=%s submission=%s", client_id, path.name, kept,
                    result.submission or result.duplicate_of)
        return result
    marker = sibling(path, ".done")
    if marker is not None:
        with contextlib.suppress(OSError):
            marker.unlink(missing_ok=True)
    return result


def _refuse_link(app: App, client_id: str, path: Path, exc: LinkRefused) -> IngestResult:
    ack = write_refused_ack(app, client_id, path.name, LINK_REFUSED, exc.message)
    with contextlib.suppress(OSError):
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            os.unlink(path)  # removes the link itself, never its target; else every sweep would find it again
    return IngestResult(submission=None, status="failed", client_id=client_id, filename=path.name,
                        ack_path=str(ack), error=str(exc))


def resume_unfinished(app: App) -> list[IngestResult]:
    """Finish every submission left in ``processing`` whose client no node is ingesting for now.

    A submission another node (or thread) works on holds its client's ingest lease and is skipped;
    once that owner is gone (its lease ran out, or it is this node restarted) the next call resumes it
    from the stored raw bytes. Each resume is counted (committed) before it runs, so a file whose
    processing kills the process is resumed at most ``MAX_RESUMES`` times, then marked failed with a
    failed ack.
    """
    with read_tx(app.engine) as conn:
        pending = sub_store.unfinished(conn)
    results = []
    for sub in pending:
        if app.stopping.is_set():
            break
        with leased(app, client_ingest_lease(sub["client_id"])) as lease:
            if lease is None:
                continue
            with write_tx(app.engine) as conn:
                current = sub_store.get(conn, sub["id"])
                if current["status"] != "processing":  # finished while we looked
                    continue
                attempt = sub_store.count_resume(conn, sub["id"])
            if attempt > MAX_RESUMES:
                results.append(give_up_resume(app, current, attempt - 1))
                _resumed_into_archive(app, sub)
                continue
            log.warning("ingest.resume submission=%s file=%s attempt=%d", sub["reference"], sub["filename"], attempt)
            with tempfile.TemporaryDirectory(prefix="gateway-resume-") as tmp:
                path = Path(tmp) / (sub["filename"] or "payload")
                with read_tx(app.engine) as conn, open(path, "wb") as fh:
                    for chunk in sub_store.read_payload(conn, app.cipher, sub["id"]):
                        fh.write(chunk)
                try:
                    results.append(resume(app, current, path))
                    _resumed_into_archive(app, sub)
                except LeaseLost as exc:
                    # this node stood still past the lease (frozen, paused): the node that took the client over
                    # finishes the submission; nothing of this resume committed after that
                    uncount_unless_the_files_fault(app, sub["id"], exc)
                    log.warning("ingest.resume_taken_over submission=%s: another node finishes it", sub["reference"])
                except Exception as exc:
                    uncount_unless_the_files_fault(app, sub["id"], exc)
                    raise
    return results


def _resumed_into_archive(app: App, sub: RowMapping) -> None:
    """A file's submission finished by a resume is listed with its outcome in the client's archive index (it said
    ``processing`` until the client's next file)."""
    if sub["channel"] in INBOX_CHANNELS:
        update_archive_index(app, str(sub["client_id"]))


def refresh_archive_indexes(app: App) -> list[str]:
    """At start: rewrite each archive index older than its client's latest submission (received or finished). A
    node killed in the second between a file's ack and the index's write (``update_archive_index`` waits up to
    ``ARCHIVE_EVERY_SECONDS``) left the file out of the listing until the client's next file. Returns the clients
    whose index was rewritten."""
    with read_tx(app.engine) as conn:
        latest = sub_store.latest_activity(conn, INBOX_CHANNELS)
    done: list[str] = []
    for client_id, when in latest.items():
        if client_id not in app.config.clients:
            continue  # a client removed from the configuration: its folders are not made again
        index = app.config.inbox_dir / client_id / "archive" / ARCHIVE_INDEX
        try:
            written = index.stat().st_mtime
        except FileNotFoundError:
            written = float("-inf")
        except OSError:
            continue  # an unusable folder: the next file's write says so
        if when.timestamp() > written:
            _write_archive_logged(app, client_id)
            done.append(client_id)
    return done


class UploadBusy(Exception):
    """The file is being uploaded or processed: overwriting, renaming or removing it is refused."""


WRITING, INCOMPLETE, COMPLETE, PROCESSING = "writing", "incomplete", "complete", "processing"


class UploadBook:
    """Thread-safe record of SFTP uploads, kept in memory and in ``sftp_uploads``."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._state: dict[tuple[str, str], str] = {}
        self._client_locks: dict[str, threading.Lock] = {}
        self._refused: set[tuple[str, str]] = set()  # names whose latest upload was refused (their ack says so)
        self.node = app.lease_owner  # uploads are recorded with the node whose SFTP front receives them
        self._elsewhere: dict[tuple[str, str], tuple[bool, float]] = {}  # another node's upload? (cached 1 s)

    def upload_dir(self, client_id: str) -> Path:
        return self.app.config.inbox_dir / client_id / "upload"

    def client_lock(self, client_id: str) -> threading.Lock:
        """One ingest at a time per client (references are checked then inserted)."""
        with self._lock:
            return self._client_locks.setdefault(client_id, threading.Lock())

    def state(self, client_id: str, name: str) -> str | None:
        with self._lock:
            return self._state.get((client_id, name))

    def is_tracked(self, client_id: str, path: Path) -> bool:
        """True for files an SFTP server owns, this node's or another's on a shared inbox (hands off)."""
        if self.state(client_id, path.name) is not None:
            return True
        key, now = (client_id, path.name), time.monotonic()
        with self._lock:
            cached = self._elsewhere.get(key)
        if cached is not None and now - cached[1] < 1.0:
            return cached[0]
        with read_tx(self.app.engine) as conn:
            row = upload_store.get(conn, client_id, path.name)
        elsewhere = row is not None and row["node_id"] is not None and row["node_id"] != self.node
        with self._lock:
            if len(self._elsewhere) > 10_000:
                self._elsewhere.clear()
            self._elsewhere[key] = (elsewhere, now)
        return elsewhere

    def recover(self, *, release: bool = False) -> list[tuple[str, str]]:
        """Load the record after a start; returns complete uploads still waiting for ingest.

        ``release`` (the SFTP server is off now): complete uploads are forgotten instead, so the
        watcher takes them like any dropped file; incomplete ones stay tracked and are never ingested.
        """
        with read_tx(self.app.engine) as conn:  # this node's uploads; another node's are its own business
            rows = [r for r in upload_store.all_uploads(conn) if r["node_id"] in (None, self.node)]
        todo = []
        for row in rows:
            key, path = (row["client_id"], row["name"]), self.upload_dir(row["client_id"]) / row["name"]
            if row["client_id"] not in self.app.config.clients or not path.exists():
                self._write(key, None)
                continue
            state = row["state"]
            if state == WRITING:  # the gateway stopped during the upload: the file is not whole
                self._write(key, INCOMPLETE)
                write_incomplete_ack(self.app, *key)
                state = INCOMPLETE
            elif state == PROCESSING:
                state = COMPLETE
            if state == COMPLETE and release:
                self._write(key, None)
                continue
            with self._lock:
                self._state[key] = state
            if state == COMPLETE and is_candidate(path):
                todo.append(key)
        return todo

    def begin_write(self, client_id: str, name: str) -> None:
        """Before a file is opened for writing; raises UploadBusy if it is being written or processed."""
        key = (client_id, name)
        with self._lock:
            before = self._state.get(key)
            if before in (WRITING, PROCESSING):
                raise UploadBusy(f"{name} is being {'processed' if before == PROCESSING else 'uploaded'}")
            self._state[key] = WRITING
        try:
            self._write(key, WRITING)
        except BaseException:
            with self._lock:
                if before is None:
                    self._state.pop(key, None)
                else:
                    self._state[key] = before
            raise
        with self._lock:
            was_refused = key in self._refused
            self._refused.discard(key)
        if before == INCOMPLETE or was_refused:  # a fresh upload: the "incomplete"/"failed" answer goes
            ack_path_for(self.app, client_id, name).unlink(missing_ok=True)

    def end_write(self, client_id: str, name: str, *, complete: bool) -> bool:
        """After the write handle closed; True when the file is now ready for ingest."""
        state = COMPLETE if complete else INCOMPLETE
        self._settle((client_id, name), state)
        if not complete:
            write_incomplete_ack(self.app, client_id, name)
        return complete and is_candidate(Path(name))

    def refused(self, client_id: str, name: str, code: str, message: str) -> Path:
        """After a write was refused and the partial file deleted: a ``failed`` ack, then the upload is forgotten."""
        ack = write_refused_ack(self.app, client_id, name, code, message)
        with self._lock:
            self._refused.add((client_id, name))
        self._write((client_id, name), None)  # only now: until the file was gone, the watcher had to keep off it
        return ack

    def check_free(self, client_id: str, name: str) -> None:
        """Raise UploadBusy when ``name`` is being written or processed."""
        state = self.state(client_id, name)
        if state in (WRITING, PROCESSING):
            raise UploadBusy(f"{name} is being {'processed' if state == PROCESSING else 'uploaded'}")

    def renamed(self, client_id: str, old: str, new: str) -> bool:
        """After a rename inside upload/; True when the new name is a complete upload to ingest."""
        with self._lock:
            state = self._state.pop((client_id, old), None)
            if state is not None:
                self._state[(client_id, new)] = state
            else:
                self._state.pop((client_id, new), None)
        with write_tx(self.app.engine) as conn:
            if state is None:
                upload_store.forget(conn, client_id, new)
            else:
                upload_store.rename(conn, client_id, old, new)
        if state == INCOMPLETE:
            write_incomplete_ack(self.app, client_id, new)
        return state == COMPLETE and is_candidate(Path(new))

    def removed(self, client_id: str, name: str) -> None:
        self._settle((client_id, name), None)

    def start_processing(self, client_id: str, name: str) -> bool:
        key = (client_id, name)
        with self._lock:
            if self._state.get(key) != COMPLETE:
                return False
            self._state[key] = PROCESSING
        try:
            self._write(key, PROCESSING)
        except BaseException:  # not started: complete as before (see _settle)
            with self._lock:
                if self._state.get(key) == PROCESSING:
                    self._state[key] = COMPLETE
            raise
        return True

    def drop_stale_incomplete(self, older_than_seconds: float,
                              failed: Callable[[tuple[str, str], BaseException], None] | None = None,
                              ) -> list[tuple[str, str]]:
        """Delete uploads that broke off and were not touched for ``older_than_seconds``: a partial file holds
        plain client data, and a client that never finishes it would leave it on the gateway's disk for good.
        One the client is resuming (open for writing, or written meanwhile) stays. Returns those deleted.

        ``failed(key, exc)``: told of a file that could not be looked at or deleted (a folder made read-only,
        say), which stays and is tried again at the next look; the others go on. Without it the error is
        raised after the others were done."""
        first: BaseException | None = None
        dropped = []
        for key in self._stale_incomplete():
            try:
                if self._drop_one(key, older_than_seconds):
                    dropped.append(key)
            except Exception as exc:  # noqa: BLE001 - one file's trouble keeps no other from going
                if failed is None:
                    first = first or exc
                else:
                    failed(key, exc)
        if first is not None:
            raise first
        return dropped

    def _stale_incomplete(self) -> list[tuple[str, str]]:
        with self._lock:
            return [k for k, v in self._state.items() if v == INCOMPLETE]

    def _drop_one(self, key: tuple[str, str], older_than_seconds: float) -> bool:
        """Delete one broken-off upload if it is stale and nobody writes it; True when deleted."""
        path = self.upload_dir(key[0]) / key[1]
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            self._settle(key, None)
            return False
        if time.time() - st.st_mtime < older_than_seconds:
            return False
        with self._lock:  # taken out of the client's reach while it goes: a resume now is refused as busy
            if self._state.get(key) != INCOMPLETE:
                return False
            self._state[key] = PROCESSING
        try:
            kept = remove_unless_written(path, st)
        except BaseException:
            with self._lock:
                self._state[key] = INCOMPLETE
            raise
        if kept is not None:
            with self._lock:
                self._state[key] = INCOMPLETE
            return False
        self._settle(key, None)  # its "incomplete" ack stays: the client may not have read it yet
        log.info("inbox.incomplete_removed client=%s file=%s untouched_hours=%.0f", key[0], shown(key[1]),
                 (time.time() - st.st_mtime) / 3600)
        return True

    def ready_uploads(self) -> list[tuple[str, str]]:
        """Complete uploads under a final name that wait for ingest (for a retry after an error)."""
        with self._lock:
            return [k for k, v in self._state.items() if v == COMPLETE and is_candidate(Path(k[1]))]

    def set_complete(self, client_id: str, name: str) -> None:
        self._settle((client_id, name), COMPLETE)

    def _settle(self, key: tuple[str, str], state: str | None) -> None:
        """Record that the upload's write or processing has ended in ``state`` (None: forgotten).

        The database first: until then the name stays busy here, so no new upload of it can start and then
        have its record overwritten by this one. If the database fails (cut away for a moment), the state is
        taken here all the same and the error raised: left "being uploaded" or "being processed", every retry
        skipped the file and every new upload of the name was refused, until a restart. The record that
        missed the change is mended at the next start (``recover``: "writing" -> incomplete, "processing" ->
        complete, a file gone -> forgotten) or by the name's next upload.
        """
        try:
            self._write(key, state)
        except BaseException:
            with self._lock:
                if state is None:
                    self._state.pop(key, None)
                else:
                    self._state[key] = state
            raise
        if state is not None:
            with self._lock:
                self._state[key] = state

    def _write(self, key: tuple[str, str], state: str | None) -> None:
        with write_tx(self.app.engine) as conn:
            if state is None:
                upload_store.forget(conn, *key)
            else:
                upload_store.set_state(conn, *key, state, node_id=self.node)
        if state is None:
            with self._lock:
                self._state.pop(key, None)


def check_ack_folder(app: App, client_id: str) -> None:
    """Raise ConfigError when the client's ack folder cannot take an ack (a file in its place, not creatable).

    Asked before a file is taken: its answer could not be written, so the file waits in the inbox (a
    ConfigError is not counted against it) instead of being stored unanswered and then failed for it."""
    folder = ack_path_for(app, client_id, "x").parent
    try:
        folder.mkdir(parents=True, exist_ok=True)  # FileExistsError when something else has the name
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(folder))
    except OSError as exc:
        raise ConfigError(f"the ack folder cannot be used ({exc.strerror or type(exc).__name__}); files of this "
                          "client wait in upload/ until it can", file=str(folder)) from None


def ingest_upload(app: App, book: UploadBook, client_id: str, name: str) -> IngestResult | None:
    """Ingest a complete SFTP upload (None when it is not complete or already gone)."""
    with book.client_lock(client_id):
        if book.state(client_id, name) != COMPLETE:
            return None
        check_ack_folder(app, client_id)
        if not book.start_processing(client_id, name):
            return None
        path = book.upload_dir(client_id) / name
        try:
            result = process_inbox_file(app, client_id, path, channel="sftp") if path.is_file() else None
        except BaseException:
            book.set_complete(client_id, name)  # a config or mapping problem: the file stays for a retry
            raise
        book.removed(client_id, name)
        update_archive_index(app, client_id)
        return result


def ingest_dropped(app: App, book: UploadBook, client_id: str, path: Path) -> IngestResult | None:
    """Ingest a file placed by other means (the watcher), unless the SFTP server owns it or it is being written."""
    problem = name_problem(path.name)
    if problem is not None:
        return refuse_name(app, client_id, path, problem)
    with book.client_lock(client_id):
        link = is_link(path)  # refused by process_inbox_file, never followed by is_file/has_writer
        if book.is_tracked(client_id, path) or (not link and (not path.is_file() or has_writer(path))):
            return None  # owned by the SFTP server, gone, or opened for writing again since the watcher took it
        check_ack_folder(app, client_id)
        try:
            result = process_inbox_file(app, client_id, path)
        except InputError as exc:
            # Gone since the check above: on a shared inbox another node took it (it has stored and acked it)
            # between that check and our open; or the client took it back. As gone as before the check: no
            # failure of the task, nothing counted against the name, no ack.
            if exc.message == "no such file" and not os.path.lexists(path):
                return None
            raise
    update_archive_index(app, client_id)
    return result


def write_incomplete_ack(app: App, client_id: str, name: str) -> Path:
    """Tell the client its upload broke off: the file stays and is not processed."""
    ack = _file_ack(app, client_id, name, "incomplete", Finding(
        code="upload_incomplete",
        message="the connection ended before the file was closed; the file was not processed, upload it again"))
    log.warning("inbox.incomplete client=%s file=%s", client_id, name)
    return ack


def write_refused_ack(app: App, client_id: str, name: str, code: str, message: str) -> Path:
    """Tell the client its upload was refused (``message`` names size and limit): nothing of it was kept."""
    ack = _file_ack(app, client_id, name, "failed", Finding(
        code=code, message=f"{message}; the upload was discarded and nothing of it was processed"))
    log.warning("inbox.refused client=%s file=%s code=%s", client_id, name, code)
    return ack


def _file_ack(app: App, client_id: str, name: str, outcome: str, finding: Finding) -> Path:
    ack = ack_path_for(app, client_id, name)
    with AckWriter(ack) as w:
        w.row(None, None, outcome, None, [finding])
        w.commit()
    return ack


ARCHIVE_INDEX = "received.csv"
INBOX_CHANNELS = ("sftp", "watch")  # submissions of files in the inbox: listed in the client's archive index
ARCHIVE_LIMIT = 1000


_archive_trouble = Episodes()  # client id -> why its archive index could not be written, logged once


ARCHIVE_EVERY_SECONDS = 1.0  # the archive index of a client is rewritten at most this often
_archive_lock = threading.Lock()
_archive_written: dict[Path, float] = {}  # client folder -> when its index was last written (monotonic)
_archive_due: dict[Path, threading.Timer] = {}  # client folder -> the write scheduled for it


def update_archive_index(app: App, client_id: str) -> None:
    """``write_archive_index`` after a file was taken, at most once a second per client: the index lists the
    client's latest 1,000 files, and writing it after each of 3,000 small files arriving at once took a third of
    the gateway's CPU. A file taken within a second of the last write is listed by a write scheduled for the end
    of that second, which lists every file taken meanwhile."""
    key = app.config.inbox_dir / client_id
    with _archive_lock:
        if key in _archive_due:
            return  # the scheduled write lists this file too
        wait = _archive_written.get(key, float("-inf")) + ARCHIVE_EVERY_SECONDS - time.monotonic()
        if wait > 0:
            timer = threading.Timer(wait, _scheduled_archive_write, (app, client_id, key))
            timer.daemon = True
            _archive_due[key] = timer
            timer.start()
            return
        _archive_written[key] = time.monotonic()
    _write_archive_logged(app, client_id)


def flush_archive_indexes(app: App) -> None:
    """Write now the archive indexes scheduled for later (``serve`` stopping): the last second's files listed."""
    with _archive_lock:
        due = [(key, timer) for key, timer in _archive_due.items() if key.parent == app.config.inbox_dir]
        for key, timer in due:
            timer.cancel()
            del _archive_due[key]
    for key, _ in due:
        try:
            _write_archive_logged(app, key.name)
        except Exception as exc:  # noqa: BLE001 - the database may be away at a stop: said; the next file writes it
            log.warning("inbox.archive_not_written client=%s error=%s", key.name, describe(exc))


def _scheduled_archive_write(app: App, client_id: str, key: Path) -> None:
    with _archive_lock:
        if _archive_due.pop(key, None) is None:
            return  # flushed meanwhile
        _archive_written[key] = time.monotonic()
    if app.closed.is_set():
        return  # its engine is gone: the next file (or serve's stop, which flushes) writes it
    try:
        _write_archive_logged(app, client_id)
    except Exception as exc:  # noqa: BLE001 - a thread of its own: said here, or nowhere; the next file writes it
        log.warning("inbox.archive_not_written client=%s error=%s", client_id, describe(exc))


def _write_archive_logged(app: App, client_id: str) -> None:
    """Write the index; a folder that cannot take it (a file in its place) is logged once per problem; the
    file's submission and ack stand, and it must not be offered again for this."""
    try:
        write_archive_index(app, client_id)
    except OSError as exc:
        problem = f"{type(exc).__name__}: {exc.strerror or exc}"
        if _archive_trouble.failed(client_id, problem):
            log.warning("inbox.archive_unusable client=%s error=%s: archive/%s is not updated until it can be",
                        client_id, problem, ARCHIVE_INDEX)
        return
    if _archive_trouble.ok(client_id) is not None:
        log.info("inbox.archive_back client=%s", client_id)


def write_archive_index(app: App, client_id: str) -> Path:
    """``archive/received.csv``: what the gateway received from the client (its bytes stay encrypted in the DB)."""
    folder = app.config.inbox_dir / client_id / "archive"
    folder.mkdir(parents=True, exist_ok=True)
    with read_tx(app.engine) as conn:
        rows = sub_store.listing(conn, client_id=client_id, limit=ARCHIVE_LIMIT)
    final, tmp = folder / ARCHIVE_INDEX, folder / private_temp_name(ARCHIVE_INDEX)
    remove_stale_temps(final)
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, delimiter=";", lineterminator="\r\n")
        w.writerow(("received_at", "reference", "filename", "channel", "sha256", "size", "status", "rows",
                    "accepted", "held", "rejected"))
        for r in rows:
            w.writerow((r["received_at"].isoformat(), r["reference"], safe_cell(r["filename"] or ""), r["channel"],
                        r["sha256"], r["size"], r["status"], r["rows"], r["accepted"], r["held"], r["rejected"]))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    return final
