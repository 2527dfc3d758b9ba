"""The gateway's own SFTP server (asyncssh) for clients, and the ingest hand-off of finished uploads.

A file whose write handle the client closed normally goes straight onto a queue; workers (supervised
steps) ingest it in threads, one file at a time per client. A failed ingest is contained to its file
(``intake_tasks.FileAttempts``). Status files are written on their own schedule.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any
from collections.abc import Awaitable, Iterable
from pathlib import Path

import asyncssh

from gateway.bootstrap import App
from gateway.entrypoints.sftp.auth import (ConnectionGate, CredentialTable, FailureLimiter, GatewaySSHServer,
                                          load_credentials)
from gateway.entrypoints.sftp.channels import SessionFactory, supported as channels_supported
from gateway.entrypoints.sftp.jail import JailContext, JailedSFTPServer
from gateway.entrypoints.intake_tasks import FileAttempts
from gateway.entrypoints.supervisor import Supervisor
from gateway.errors import Interrupted, KeyStoreError
from gateway.services.inbox import UploadBook, ingest_upload, shown
from gateway.services.keys import HOST_KEY_FILE
from gateway.services.node import LeaseBusy, leased
from gateway.services.status_files import write_due_status_files

log = logging.getLogger("gateway.sftp")

__all__ = ["SftpInbox", "host_key_path", "status_files_step"]


def host_key_path(app: App) -> Path:
    cfg = app.config
    return cfg.path(cfg.sftp.host_key) if cfg.sftp.host_key else cfg.keys_dir / HOST_KEY_FILE


class SftpInbox:
    """The SFTP server plus the workers that ingest what it receives."""

    def __init__(self, app: App, book: UploadBook, sup: Supervisor | None = None) -> None:
        self.app, self.book, self.sup = app, book, sup
        self._attempts: FileAttempts | None = None
        self.queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.acceptor: asyncssh.SSHAcceptor | None = None
        self.credentials: CredentialTable | None = None
        self.port = 0

    @property
    def attempts(self) -> FileAttempts:
        assert self.sup is not None
        if self._attempts is None:
            self._attempts = FileAttempts(self.app, self.sup, "sftp.ingest")
        return self._attempts

    def hand_off(self, client_id: str, name: str) -> None:
        """A finished upload: queue it for ingest (called on the loop)."""
        self.queue.put_nowait((client_id, name))

    async def start(self) -> None:
        cfg, server = self.app.config, self.app.config.sftp
        path = host_key_path(self.app)
        try:
            host_key = asyncssh.read_private_key(str(path))
        except (OSError, asyncssh.KeyImportError) as exc:
            raise KeyStoreError(f"{path}: cannot read the SSH host key ({exc}); run `gateway keys init`") from None
        credentials = self.credentials = CredentialTable(load_credentials(cfg))  # reloaded by the config watcher
        limiter = FailureLimiter(server.max_auth_failures, server.auth_failure_window_seconds)
        gate = ConnectionGate(server.max_unauthenticated_per_address, server.max_unauthenticated,
                              server.max_connections_per_client)

        def per_client(attr: str, default: int, client_id: str) -> int:
            value = getattr(cfg.clients[client_id].sftp, attr)
            return int(value if value is not None else default)

        ctx = JailContext(inbox=cfg.inbox_dir, book=self.book, on_complete=self.hand_off,
                          max_file_bytes=functools.partial(per_client, "max_file_bytes", server.max_file_bytes),
                          quota_bytes=functools.partial(per_client, "quota_bytes", server.quota_bytes),
                          max_handles=server.max_open_handles_per_client)
        # Sessions are made by GatewaySSHServer.session_requested, which bounds them per connection: an
        # sftp_factory given to listen would have asyncssh open every channel without asking (channels.py)
        sftp_factory = functools.partial(JailedSFTPServer, ctx=ctx)
        own: dict[str, Any] = {}
        sessions: SessionFactory | None = None
        if channels_supported():
            sessions = SessionFactory(server.max_channels_per_connection, sftp_factory, server.allow_scp)
        else:  # an asyncssh release whose sessions are made otherwise: SFTP works, without the per-connection bound
            log.warning("sftp.channel_bound_off asyncssh=%s: channels per connection are not bounded with this "
                        "release of asyncssh", asyncssh.__version__)
            own = {"sftp_factory": sftp_factory, "allow_scp": server.allow_scp}
        self.acceptor = await asyncssh.listen(
            server.host, server.port, server_host_keys=[host_key],
            server_factory=functools.partial(GatewaySSHServer, credentials, limiter, gate, sessions),
            login_timeout=server.login_timeout_seconds, agent_forwarding=False, x11_forwarding=False,
            allow_pty=False, **own)
        self.port = self.acceptor.get_port()
        log.info("sftp.listening host=%s port=%d clients=%s host_key=%s", server.host, self.port,
                 ",".join(sorted(credentials)) or "none", host_key.get_fingerprint())

    async def run(self, stop: asyncio.Event, pending: Iterable[tuple[str, str]] = ()) -> None:
        """Serve until ``stop`` on its own (``serve`` calls ``start`` and ``start_tasks`` instead)."""
        if self.sup is None:
            self.sup = Supervisor(stop)
        if self.acceptor is None:
            await self.start()
        self.start_tasks(pending)
        try:
            await stop.wait()
        finally:
            await self.close()
            await self.sup.join(30)

    def start_tasks(self, pending: Iterable[tuple[str, str]] = ()) -> None:
        """Ingest workers and the retry sweep, under the supervisor; ``pending`` from ``UploadBook.recover``."""
        assert self.sup is not None
        for key in pending:
            self.hand_off(*key)
        for _ in range(max(1, self.app.config.sftp.ingest_workers)):
            self.sup.start("sftp.ingest", self._ingest_step, every=0.0)
        self.sup.start("sftp.retry", self._retry_step, every=self.app.config.watcher.sweep_seconds)
        hours = self.app.config.sftp.incomplete_retention_hours
        if hours is not None:  # uploads that broke off and were never finished, past their retention
            seconds = max(0.0, hours * 3600)
            self.sup.start("sftp.incomplete", lambda: asyncio.to_thread(self._drop_incomplete, seconds),
                           every=min(3600.0, max(1.0, seconds / 4)))

    async def close(self) -> None:
        if self.acceptor is not None:
            self.acceptor.close()
            await self.acceptor.wait_closed()
            self.acceptor = None

    async def _ingest_step(self) -> bool:
        assert self.sup is not None
        try:
            client_id, name = await asyncio.wait_for(self.queue.get(), timeout=1.0)
        except asyncio.TimeoutError:
            return False
        try:
            r = await asyncio.to_thread(ingest_upload, self.app, self.book, client_id, name)
        except Interrupted:
            return False  # stopping: the upload stays complete and is taken at the next start
        except LeaseBusy:  # another node (or thread) ingests for this client now: not a failure
            asyncio.get_running_loop().call_later(1.0, self.hand_off, client_id, name)
            return False
        except Exception as exc:  # noqa: BLE001 - contained to this upload: offered again, or set aside
            path = self.book.upload_dir(client_id) / name
            if not await asyncio.to_thread(self.attempts.failed, client_id, path, exc):
                await asyncio.to_thread(self.book.removed, client_id, name)
            return False
        finally:
            self.queue.task_done()
        self.attempts.succeeded(client_id, name)
        if r is not None:
            log.info("sftp.ingested client=%s file=%s status=%s submission=%s ack=%s", client_id, name,
                     r.status, r.submission or r.duplicate_of, r.ack_path)
        return True

    def _drop_incomplete(self, older_than: float) -> bool:
        def failed(key: tuple[str, str], exc: BaseException) -> None:
            # Counted and logged, not raised: one file that cannot go (its folder made read-only) must neither keep
            # the others nor, failing at every look, end the gateway (the supervisor gives up on a repeated error).
            assert self.sup is not None
            self.sup.report("sftp.incomplete", exc, client=key[0], file=shown(key[1]))
        # Never "busy": a look deletes all it can, and a streak of one file's failures is not over when another went.
        self.book.drop_stale_incomplete(older_than, failed)
        return False

    async def _retry_step(self) -> bool:
        """Complete uploads an error left behind go back on the queue once their backoff is over."""
        for client_id, path in self.attempts.due():
            self.hand_off(client_id, path.name)
        for client_id, name in self.book.ready_uploads():
            if not self.attempts.waiting(client_id, name):
                self.hand_off(client_id, name)
        return False


def status_files_step(app: App, sup: Supervisor | None = None) -> Awaitable[bool]:
    """One round of due status files (a supervised step, task ``status_files``)."""
    failures: list[str] = []

    def failed(client_id: str, exc: BaseException) -> None:
        # Reported, not raised: one client's file that cannot be written (its status folder made read-only, an
        # event that cannot be read) must neither keep the other clients' files back nor, failing at every look,
        # end the gateway (the supervisor gives up on a repeated error). The file is tried again at the next look.
        failures.append(client_id)
        if sup is not None:
            sup.report("status_files", exc, client=client_id)

    def write() -> list[Path]:
        with leased(app, "status_files") as lease:  # one node at a time plans and writes them
            if lease is None:
                return []
            return write_due_status_files(app, failed=failed if sup is not None else None)

    async def step() -> bool:
        failures.clear()
        for path in await asyncio.to_thread(write):
            # The name carries the event range (status_<time>_<first>-<last>): first > last means no news.
            first, _, last = path.stem.rpartition("_")[2].partition("-")
            empty = first.isdigit() and last.isdigit() and int(first) > int(last)
            log.log(logging.DEBUG if empty else logging.INFO, "status.written file=%s", path)
        if sup is not None and not failures:
            sup.ok("status_files")  # a look without a client's failure: an episode of them, if any, is over
        return False
    return step()
