"""``gateway serve``: one asyncio loop running the inbox watcher and the delivery workers.

Blocking work (ingest, SQLAlchemy, CMS) runs in threads on purpose, never on the loop; the SFTP
server (asyncssh) and the SOAP endpoint join this same loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket

from gateway.bootstrap import App
from gateway.entrypoints.mapping_watch import MappingWatcher
from gateway.entrypoints.watcher import InboxWatcher
from gateway.errors import GatewayError
from gateway.services.dispatch import Dispatcher
from gateway.entrypoints.partner_tasks import run_partner_tasks
from gateway.entrypoints.sftp import SftpInbox, run_status_files
from gateway.services.inbox import UploadBook, ingest_dropped, resume_unfinished

log = logging.getLogger("gateway.serve")


def run_server(app: App) -> int:
    """Run until SIGINT or SIGTERM; returns the exit code."""
    return asyncio.run(_main(app))


async def _main(app: App) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    cfg = app.config
    # Finish what a crash interrupted before taking anything new.
    for result in await asyncio.to_thread(resume_unfinished, app):
        log.info("serve.resumed submission=%s status=%s", result.submission, result.status)
    book = UploadBook(app)  # SFTP uploads: recovered before the watcher's first sweep (issue 4)
    pending = await asyncio.to_thread(lambda: book.recover(release=not cfg.sftp.enabled))
    tasks = []
    if cfg.sftp.enabled:
        sftp = SftpInbox(app, book)
        await sftp.start()
        tasks.append(asyncio.create_task(sftp.run(stop, pending)))
    tasks.append(asyncio.create_task(run_status_files(app, stop)))
    mapping_watcher = MappingWatcher(app.mappings, cfg.mappings_dir)  # hot reload of mappings/
    await asyncio.to_thread(mapping_watcher.start)
    if cfg.watcher.enabled:
        dirs = {cid: cfg.inbox_dir / cid / "upload" for cid, c in cfg.clients.items() if c.watch}
        watcher = InboxWatcher(dirs, cfg.watcher.stable_seconds, ignore=book.is_tracked)
        tasks.append(asyncio.create_task(_watch(app, book, watcher, stop)))
        log.info("serve.watching inbox=%s clients=%s", cfg.inbox_dir, ",".join(sorted(dirs)))
    if cfg.dispatcher.enabled:
        owner = f"{socket.gethostname()}-{os.getpid()}"
        tasks.append(asyncio.create_task(_dispatch(Dispatcher(app, owner=owner), stop)))
    # partner status back (issue 6): scheduled pulls, webhooks, and the demo's simulated agencies
    tasks.append(asyncio.create_task(run_partner_tasks(app, stop)))
    soap = None
    if cfg.soap.enabled:  # SOAP for ERP systems (issue 5): cheroot's thread pool, started and stopped from here
        from gateway.entrypoints.soap.server import SoapServer  # spyne is imported only when SOAP is on
        soap = SoapServer(app)
        await asyncio.to_thread(soap.start)
    log.info("serve.ready database=%s", app.engine.url.render_as_string(hide_password=True))
    await stop.wait()
    log.info("serve.stopping")
    if soap is not None:
        await asyncio.to_thread(soap.stop)
    await asyncio.gather(*tasks, return_exceptions=True)
    mapping_watcher.stop()
    return 0


async def _watch(app: App, book: UploadBook, watcher: InboxWatcher, stop: asyncio.Event) -> None:
    watcher.start()
    last_sweep = asyncio.get_running_loop().time()
    try:
        while not stop.is_set():
            for client_id, path in watcher.ready():
                try:
                    r = await asyncio.to_thread(ingest_dropped, app, book, client_id, path)
                    if r is None:  # the SFTP server owns it
                        continue
                    log.info("serve.ingested client=%s file=%s status=%s submission=%s ack=%s", client_id,
                             path.name, r.status, r.submission or r.duplicate_of, r.ack_path)
                except GatewayError as exc:  # a config or mapping problem: the file stays for a retry
                    log.error("serve.ingest_error client=%s file=%s error=%s", client_id, path.name, exc)
            now = asyncio.get_running_loop().time()
            if now - last_sweep >= app.config.watcher.sweep_seconds:
                watcher.sweep()
                last_sweep = now
            await _sleep(stop, 0.2)
    finally:
        watcher.stop()


async def _dispatch(worker: Dispatcher, stop: asyncio.Event) -> None:
    poll = worker.app.config.dispatcher.poll_seconds
    try:
        while not stop.is_set():
            try:
                busy = await asyncio.to_thread(worker.run_once)
            except GatewayError as exc:
                log.error("serve.dispatch_error error=%s", exc)
                busy = False
            if not busy:
                await _sleep(stop, poll)
    finally:
        worker.close()


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except asyncio.TimeoutError:
        pass
