"""What ``serve`` runs for files: the inbox watch step and the per-file retry rule shared with SFTP.

A file whose ingest raises is not lost and does not stop the task: the failure is reported to the
supervisor with client and file, and the file is offered again after a backoff. Transient errors
(a locked or lost database) are retried for as long as they last, and so are configuration errors (a
client's mapping broken with no good version to fall back on, a client no longer configured): the file
is held in the inbox until the operator mends the cause, not failed for it. Any other error counts, and after
``supervisor.file_attempts`` of them the file is set aside with a failed ack (``services.set_aside``),
so one poisonous file can neither loop for ever nor take the gateway down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from gateway.bootstrap import App
from gateway.entrypoints.supervisor import Supervisor, describe, is_transient
from gateway.faults import database_broken
from gateway.entrypoints.watcher import InboxWatcher
from gateway.errors import ConfigError, Interrupted
from gateway.services.inbox import UploadBook, ingest_dropped, shown
from gateway.services.ingest_snapshot import FileChanging
from gateway.services.node import LeaseBusy
from gateway.services.set_aside import set_aside

log = logging.getLogger("gateway.serve")
Key = tuple[str, str]  # client id, file name


class FileAttempts:
    """Failures per file: when to offer it again, and when to set it aside."""

    def __init__(self, app: App, sup: Supervisor, task: str) -> None:
        self.app, self.sup, self.task = app, sup, task
        self.limit = max(1, app.config.supervisor.file_attempts)
        self._tries: dict[Key, int] = {}     # every failure, for the backoff
        self._counted: dict[Key, int] = {}   # failures that were not transient
        self._retry_at: dict[Key, tuple[float, Path]] = {}

    def failed(self, client_id: str, path: Path, exc: BaseException) -> bool:
        """Record a failure (in a thread: may set the file aside); True when the file will be offered again."""
        key = (client_id, path.name)
        self.sup.report(self.task, exc, client=client_id, file=shown(path.name))
        tries = self._tries[key] = self._tries.get(key, 0) + 1
        # The gateway's own database broken is no fault of the file: the report above ends the gateway, and the
        # file waits in the inbox for the next start.
        if not is_transient(exc) and not isinstance(exc, ConfigError) and not database_broken(exc):
            counted = self._counted[key] = self._counted.get(key, 0) + 1
            if counted >= self.limit:
                try:
                    set_aside(self.app, client_id, path, describe(exc), counted)
                except Exception as aside_exc:  # noqa: BLE001 - try again later rather than lose the file
                    self.sup.report(self.task, aside_exc, client=client_id, file=shown(path.name))
                else:
                    self.forget(client_id, path.name)
                    return False
        self._retry_at[key] = (time.monotonic() + self.sup.backoff(tries), path)
        return True

    def succeeded(self, client_id: str, name: str) -> None:
        self.forget(client_id, name)
        self.sup.ok(self.task)

    def forget(self, client_id: str, name: str) -> None:
        key = (client_id, name)
        self._tries.pop(key, None)
        self._counted.pop(key, None)
        self._retry_at.pop(key, None)

    def waiting(self, client_id: str, name: str) -> bool:
        """True while a failed file waits out its backoff."""
        return (client_id, name) in self._retry_at

    def due(self) -> list[tuple[str, Path]]:
        """Failed files whose backoff is over (removed from the waiting list)."""
        now = time.monotonic()
        out = [(k[0], p) for k, (at, p) in self._retry_at.items() if at <= now]
        for client_id, path in out:
            del self._retry_at[(client_id, path.name)]
        return out


class InboxTask:
    """The watch step: ingest what the watcher says is complete, sweep now and then."""

    def __init__(self, app: App, book: UploadBook, watcher: InboxWatcher, sup: Supervisor) -> None:
        self.app, self.book, self.watcher, self.sup = app, book, watcher, sup
        self.attempts = FileAttempts(app, sup, "inbox")
        self.last_sweep = self.last_check = time.monotonic()

    async def step(self) -> bool:
        for client_id, path in self.attempts.due():
            self.watcher.release(client_id, path)
        did = False
        for client_id, path in await asyncio.to_thread(self.watcher.ready):  # stats and writer checks: disk I/O
            if self.sup.stop.is_set():
                break
            try:
                r = await asyncio.to_thread(ingest_dropped, self.app, self.book, client_id, path)
            except Interrupted:
                break  # stopping: the submission resumes at the next start, the file stays
            except LeaseBusy:  # another node (or thread) ingests for this client now: not a failure
                self.watcher.release(client_id, path, delay=1.0)
                continue
            except FileChanging:  # written to while it was copied for its ingest: nothing was recorded
                log.info("inbox.changing client=%s file=%s: taken once it stays the same", client_id,
                         shown(path.name))
                self.watcher.release(client_id, path, delay=max(1.0, self.app.config.watcher.stable_seconds))
                continue
            except Exception as exc:  # noqa: BLE001 - contained to this file; it is offered again or set aside
                await asyncio.to_thread(self.attempts.failed, client_id, path, exc)
                continue
            self.attempts.succeeded(client_id, path.name)
            did = True
            if r is not None:  # None: the SFTP server owns it
                log.info("serve.ingested client=%s file=%s status=%s submission=%s ack=%s", client_id,
                         shown(path.name), r.status, r.submission or r.duplicate_of, r.ack_path)
        now = time.monotonic()
        if now - self.last_sweep >= self.app.config.watcher.sweep_seconds or (
                now - self.last_check >= 1.0 and await asyncio.to_thread(self.watcher.folders_changed)):
            # an upload folder gone, replaced or back: the sweep logs it and watches the folder anew
            await asyncio.to_thread(self.watcher.sweep)
            self.last_sweep = time.monotonic()
        if now - self.last_check >= 1.0:
            self.last_check = now
        return did
