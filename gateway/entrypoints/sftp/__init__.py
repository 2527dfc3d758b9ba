"""The gateway's own SFTP server (asyncssh) for clients, and the ingest hand-off of finished uploads.

A file whose write handle the client closed normally goes straight onto a queue; workers ingest it
in threads (one file at a time per client). Status files are written on their own schedule.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable
from pathlib import Path

import asyncssh

from gateway.bootstrap import App
from gateway.entrypoints.sftp.auth import FailureLimiter, GatewaySSHServer, load_credentials
from gateway.entrypoints.sftp.jail import JailContext, JailedSFTPServer
from gateway.errors import GatewayError, KeyStoreError
from gateway.services.inbox import UploadBook, ingest_upload
from gateway.services.keys import HOST_KEY_FILE
from gateway.services.status_files import write_due_status_files

log = logging.getLogger("gateway.sftp")

__all__ = ["SftpInbox", "host_key_path", "run_status_files"]


def host_key_path(app: App) -> Path:
    cfg = app.config
    return cfg.path(cfg.sftp.host_key) if cfg.sftp.host_key else cfg.keys_dir / HOST_KEY_FILE


class SftpInbox:
    """The SFTP server plus the workers that ingest what it receives."""

    def __init__(self, app: App, book: UploadBook) -> None:
        self.app, self.book = app, book
        self.queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.acceptor: asyncssh.SSHAcceptor | None = None
        self.port = 0

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
        credentials = load_credentials(cfg)
        limiter = FailureLimiter(server.max_auth_failures, server.auth_failure_window_seconds)

        def per_client(attr: str, default: int, client_id: str) -> int:
            value = getattr(cfg.clients[client_id].sftp, attr)
            return int(value if value is not None else default)

        ctx = JailContext(inbox=cfg.inbox_dir, book=self.book, on_complete=self.hand_off,
                          max_file_bytes=functools.partial(per_client, "max_file_bytes", server.max_file_bytes),
                          quota_bytes=functools.partial(per_client, "quota_bytes", server.quota_bytes))
        self.acceptor = await asyncssh.listen(
            server.host, server.port, server_host_keys=[host_key],
            server_factory=functools.partial(GatewaySSHServer, credentials, limiter),
            sftp_factory=functools.partial(JailedSFTPServer, ctx=ctx), allow_scp=server.allow_scp,
            login_timeout=server.login_timeout_seconds, agent_forwarding=False, x11_forwarding=False,
            allow_pty=False)
        self.port = self.acceptor.get_port()
        log.info("sftp.listening host=%s port=%d clients=%s host_key=%s", server.host, self.port,
                 ",".join(sorted(credentials)) or "none", host_key.get_fingerprint())

    async def run(self, stop: asyncio.Event, pending: Iterable[tuple[str, str]] = ()) -> None:
        """Serve until ``stop``; ``pending`` (from ``UploadBook.recover``) and new uploads are ingested."""
        for key in pending:
            self.hand_off(*key)
        if self.acceptor is None:
            await self.start()
        workers = [asyncio.create_task(self._worker()) for _ in range(max(1, self.app.config.sftp.ingest_workers))]
        retry = self.app.config.watcher.sweep_seconds
        try:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), timeout=retry)
                except asyncio.TimeoutError:
                    for key in self.book.ready_uploads():  # those an error left behind
                        self.hand_off(*key)
        finally:
            await self.close()
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def close(self) -> None:
        if self.acceptor is not None:
            self.acceptor.close()
            await self.acceptor.wait_closed()
            self.acceptor = None

    async def _worker(self) -> None:
        while True:
            client_id, name = await self.queue.get()
            try:
                r = await asyncio.to_thread(ingest_upload, self.app, self.book, client_id, name)
                if r is not None:
                    log.info("sftp.ingested client=%s file=%s status=%s submission=%s ack=%s", client_id, name,
                             r.status, r.submission or r.duplicate_of, r.ack_path)
            except GatewayError as exc:  # config or mapping: the file stays and is retried
                log.error("sftp.ingest_error client=%s file=%s error=%s", client_id, name, exc)
            finally:
                self.queue.task_done()


async def run_status_files(app: App, stop: asyncio.Event) -> None:
    """Write each client's due status file now and then, until ``stop``."""
    every = min(60.0, max(0.5, app.config.sftp.status_interval_seconds / 10))
    while not stop.is_set():
        try:
            for path in await asyncio.to_thread(write_due_status_files, app):
                log.info("status.written file=%s", path)
        except GatewayError as exc:
            log.error("status.error error=%s", exc)
        try:
            await asyncio.wait_for(stop.wait(), timeout=every)
        except asyncio.TimeoutError:
            pass
