"""``gateway serve``: one asyncio loop, every background task under one supervisor.

Blocking work (ingest, SQLAlchemy, CMS) runs in threads on purpose, never on the loop; the SFTP
server (asyncssh) and the SOAP endpoint join this same loop. Every loop (inbox, SFTP ingest, delivery,
partner sync, status files, mapping watch) is a step the supervisor runs (``entrypoints.supervisor``).

Stopping: the first SIGTERM/SIGINT stops taking work, tells threads to end at their next safe point
(``App.stopping``: between ingest chunks, partner pages), and waits ``supervisor.stop_grace_seconds``;
whatever still runs then is abandoned (every unit of work is a transaction and leases expire, so
nothing is half-written) and the process exits. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import logging.handlers
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from gateway.bootstrap import App
from gateway.entrypoints.health import HealthServer
from gateway.entrypoints.config_watch import ClientReloader, ConfigWatcher
from gateway.entrypoints.intake_tasks import InboxTask
from gateway.entrypoints.mapping_watch import MappingWatcher
from gateway.entrypoints.partner_tasks import PartnerTasks
from gateway.entrypoints.sftp import SftpInbox, status_files_step
from gateway.entrypoints.supervisor import Supervisor, describe
from gateway.entrypoints.watcher import InboxWatcher
from gateway.errors import Interrupted
from gateway.entrypoints.commands import refused_at_start
from gateway.faults import database_refused, is_transient
from gateway.services.dispatch import Dispatcher, Lanes
from gateway.entrypoints.tls_follow import CHECK_SECONDS as TLS_CHECK_SECONDS
from gateway.entrypoints.tls_follow import step_all as step_all_followers
from gateway.services.ingest_snapshot import clear_spool
from gateway.services.cert_expiry import CHECK_SECONDS as CERT_CHECK_SECONDS, CertificateWatch
from gateway.services.clock import CHECK_SECONDS as CLOCK_CHECK_SECONDS, ClockWatch
from gateway.services.inbox import UploadBook, flush_archive_indexes, refresh_archive_indexes, resume_unfinished
from gateway.services.node import NodeLock, release_own_leases, resolve_node_id

log = logging.getLogger("gateway.serve")
_T = TypeVar("_T")
EXIT_SECOND_SIGNAL = 130


def run_server(app: App) -> int:
    """Run until SIGINT or SIGTERM; returns the exit code."""
    _raise_descriptor_limit()
    return asyncio.run(serve(app))


def _raise_descriptor_limit() -> None:
    """Every connection, open upload and database file is a descriptor of this one process, and a service
    manager's default soft limit is 1024 (systemd's hard limit is far higher): take the hard limit. The fronts
    bound their own connections and handles besides (docs/operations.md)."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            log.info("serve.descriptors soft=%d raised_from=%d", want, soft)
    except (ImportError, ValueError, OSError) as exc:  # not POSIX, or not allowed: the soft limit stays
        log.warning("serve.descriptors_unchanged error=%s", exc)


def _hard_exit(code: int) -> None:
    logging.shutdown()
    os._exit(code)


async def serve(app: App, *, signals: bool = True, stop: asyncio.Event | None = None,
                hard_exit: Callable[[int], None] = _hard_exit) -> int:
    """The gateway until ``stop`` (set by the first signal); returns the exit code."""
    cfg = app.config
    # The data keys now, not at the first file: a key file missing at start is exit 1 (a key error), not a
    # gateway that looks ready and then fails every client's file. Loaded once, they stay in use if the file
    # goes away later (``FieldCipher`` follows changes of it).
    _ = app.cipher
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    sc = cfg.supervisor
    sup = Supervisor(stop, backoff_base=sc.backoff_base_seconds, backoff_max=sc.backoff_max_seconds,
                     give_up_after=sc.give_up_after)
    if signals:
        def on_signal(signum: int) -> None:
            if stop.is_set():
                log.warning("serve.stop_now signal=%s: exiting without waiting", signal.Signals(signum).name)
                hard_exit(EXIT_SECOND_SIGNAL)
            log.info("serve.signal signal=%s", signal.Signals(signum).name)
            stop.set()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        # Their default action ends the process without a word, and systemd counts a SIGHUP death as clean (no
        # restart): logrotate's postrotate or a `systemctl reload` would stop the gateway for good.
        for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            loop.add_signal_handler(sig, _other_signal, sig)
    loop.set_exception_handler(lambda _loop, ctx: _loop_error(sup, ctx))
    node = resolve_node_id(app)
    node_lock = NodeLock(app)
    node_lock.acquire(node)  # one process per node id: only then may it take its own leases back at once
    app.lease_owner = node
    parts = _Parts(app, sup)
    try:
        try:
            await parts.start()
        except _StoppedWhileStarting:
            pass  # a signal came while the database was away: stop as after any other signal
        else:
            parts.health.started = True
            log.info("serve.ready node=%s database=%s", node,
                     app.engine.url.render_as_string(hide_password=True))
            await stop.wait()
    finally:
        log.info("serve.stopping")
        app.stopping.set()
        abandoned = await parts.stop(cfg.supervisor.stop_grace_seconds)
        await asyncio.to_thread(flush_archive_indexes, app)  # the files of the last second in the listing too
        node_lock.release()
    if abandoned:
        log.warning("serve.abandoned tasks=%s: exiting; their work resumes at the next start", ",".join(abandoned))
        hard_exit(sup.exit_code)
    log.info("serve.stopped exit_code=%d", sup.exit_code)
    return sup.exit_code


def _other_signal(signum: int) -> None:
    """SIGHUP, SIGUSR1, SIGUSR2: noted, nothing stops. The log file is reopened when it was moved or removed
    (``WatchedFileHandler``, at the next line); the config file and mappings are watched and need no signal."""
    name = signal.Signals(signum).name
    if signum == signal.SIGHUP:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.handlers.WatchedFileHandler):
                # under the handler's lock (a worker thread may be writing a line), and a file that cannot be
                # reopened (its folder gone) is the handler's to report at the next line, not this callback's
                with handler.lock or contextlib.nullcontext(), contextlib.suppress(OSError):
                    handler.reopenIfNeeded()
        log.info("serve.signal signal=%s: log file reopened if it was moved; config and mappings reload when "
                 "their files change; still serving", name)
    else:
        log.info("serve.signal signal=%s: ignored; still serving (SIGTERM or SIGINT stops)", name)


def _loop_error(sup: Supervisor, ctx: dict[str, Any]) -> None:
    """Errors asyncio would print on its own (a callback, a connection handler): reported, never lost."""
    exc = ctx.get("exception")
    if isinstance(exc, BaseException):
        sup.report("loop", exc)
    else:
        log.error("supervisor.loop_error message=%s", str(ctx.get("message", ""))[:300])


class _StoppedWhileStarting(Exception):
    """A stop signal came while a start-up step waited for the database to come back."""


class _Parts:
    """The parts of a running gateway, started in order and stopped in reverse."""

    def __init__(self, app: App, sup: Supervisor) -> None:
        self.app, self.sup = app, sup
        self.book = UploadBook(app)
        self.sftp: SftpInbox | None = None
        self.soap: Any = None
        self.web: Any = None
        self.watcher: InboxWatcher | None = None
        self.mappings = MappingWatcher(app.mappings, app.config.mappings_dir)  # hot reload of mappings/
        self.partners = PartnerTasks(app, sup)
        self.lanes: Lanes | None = None
        self.config_watch: ConfigWatcher | None = None
        self.health = HealthServer(app, sup, self._own_problems)
        self.start_abandoned: list[str] = []  # start-up steps still waiting on the database when a stop came
        self.archives_refreshed = False  # archive indexes a kill left behind are rewritten at the first resume step
        self.clock = ClockWatch(app.engine, app.config)
        self.certificates = CertificateWatch(app)

    async def start(self) -> None:
        app, cfg, sup = self.app, self.app.config, self.sup
        await self.health.start()  # first: a probe sees "starting" rather than nothing while the parts start
        await asyncio.to_thread(clear_spool, cfg.var_dir)  # plain copies of files a killed ingest was reading
        await asyncio.to_thread(self.mappings.start)
        sup.start("mappings", self._mappings_step, every=5.0)
        if cfg.dispatcher.enabled:
            owner = app.lease_owner or f"{socket.gethostname()}-{os.getpid()}"
            released = await self._with_database("release_leases", lambda: release_own_leases(app, owner))
            if released:  # this node was restarted: its unfinished batches need not wait out their leases
                log.info("serve.leases_taken_back node=%s outbox_rows=%d", owner, released)
            lanes = self.lanes = Lanes(Dispatcher(app, owner=owner), cfg.dispatcher.parallel_partners,
                                       slow_seconds=cfg.dispatcher.stuck_seconds)
            self.health.in_flight = lanes.ages
            self.health.stuck_seconds = cfg.dispatcher.stuck_seconds
            poll = cfg.dispatcher.poll_seconds
            sup.start("dispatch", lambda: asyncio.to_thread(lanes.step, poll), every=poll)
        await self.partners.start()
        # What a crash interrupted is finished in the background, beside new work: a resumed million-row file
        # must not keep SOAP and SFTP closed for a minute. It holds its client's ingest lease, so that client's
        # new files wait their turn (LeaseBusy) exactly as when another node resumes it; other clients go on.
        # The same task looks again now and then for submissions another node left behind.
        sup.start("resume", self._resume_step, every=max(1.0, cfg.node.lease_seconds / 4))
        pending = await self._with_database("recover_uploads", lambda: self.book.recover(release=not cfg.sftp.enabled))
        if cfg.sftp.enabled:
            self.sftp = SftpInbox(app, self.book, sup)
            await self.sftp.start()
            self.sftp.start_tasks(pending)
        if app.engine.dialect.name == "postgresql":  # several nodes may share it: their clocks should agree
            self.health.clock_skew = lambda: self.clock.skew
            sup.start("clock", lambda: asyncio.to_thread(self.clock.step), every=CLOCK_CHECK_SECONDS)
        self.health.certificates = lambda: self.certificates.remaining
        sup.start("certificates", lambda: asyncio.to_thread(self.certificates.step), every=CERT_CHECK_SECONDS)
        sup.start("status_files", lambda: status_files_step(app, sup),
                  every=min(60.0, max(0.5, cfg.sftp.status_interval_seconds / 10)))
        if any(c.sandbox_of for c in cfg.clients.values()):  # sandbox data goes after its retention_days
            sup.start("sandbox_retention", self._sandbox_retention_step, every=3600.0)
        if any(c.credit for c in cfg.clients.values()):  # a credit check's data goes after its retention_days
            sup.start("credit_retention", self._credit_retention_step, every=3600.0)
        if cfg.watcher.enabled:
            dirs = {cid: cfg.inbox_dir / cid / "upload" for cid, c in cfg.clients.items() if c.watch and c.enabled}
            self.watcher = InboxWatcher(dirs, cfg.watcher.stable_seconds, ignore=self.book.is_tracked,
                                        marker_only={cid for cid, c in cfg.clients.items() if c.watch_marker})
            await asyncio.to_thread(self.watcher.start)
            inbox = InboxTask(app, self.book, self.watcher, sup)
            sup.start("inbox", inbox.step, every=0.2)
            log.info("serve.watching inbox=%s clients=%s", cfg.inbox_dir, ",".join(sorted(dirs)))
        if cfg.soap.enabled:  # spyne is imported only when SOAP is on
            from gateway.entrypoints.soap.server import SoapServer
            self.soap = SoapServer(app)
            await asyncio.to_thread(self.soap.start)
        if cfg.web.enabled:  # starlette and uvicorn are imported only when the console is on
            from gateway.entrypoints.web.server import WebServer
            self.web = await asyncio.to_thread(WebServer, app)  # hashes demo passwords (scrypt), ~0.1 s each
            self.web.web.state.supervisor = sup  # the operator's partners page shows the delivery tasks' health
            await self.web.start()
            self.web.print_demo_logins()
        followers = [s.certificate_follower() for s in (self.soap, self.web) if s is not None]
        if followers:  # a renewed TLS certificate is taken while serving (tls_follow.py)
            sup.start("tls", lambda: asyncio.to_thread(step_all_followers, followers),
                      every=TLS_CHECK_SECONDS)
        if not cfg.source.startswith("<"):  # clients changed in the config file (admin CLI) apply at once
            reloader = ClientReloader(app, self.sftp.credentials if self.sftp else None,
                                      self.soap.gate.auth.reload if self.soap else None,
                                      self.web.users.prepare_reload if self.web else None)
            if self.web is not None:  # the console's own admin changes apply through the same reloader at once
                self.web.web.state.apply_config = reloader.apply
            self.config_watch = ConfigWatcher(Path(cfg.source), reloader)
            await asyncio.to_thread(self.config_watch.start)

    async def _with_database(self, step: str, fn: Callable[[], _T]) -> _T:
        """Run a start-up step in a thread; while the database is away (a server restarting, a failover, a
        connection cut), wait for it with the supervisor's backoff instead of ending the process with a
        traceback. A database that refuses the login is not waited for (``GatewayError``, exit 1). A stop signal
        meanwhile ends the start (``_StoppedWhileStarting``)."""
        attempt = 0
        stop = self.sup.stop
        while True:
            work = asyncio.ensure_future(asyncio.to_thread(fn))
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if not work.done():
                # A server that takes the connection and never answers keeps the thread waiting for as long as
                # the driver's connect timeout: the stop does not wait for it (the process exits without
                # joining it, as it does for any work abandoned at a stop).
                self.start_abandoned.append(step)
                raise _StoppedWhileStarting(step)
            try:
                return work.result()
            except Exception as exc:
                if database_refused(exc):  # a login refused: waiting will not mend it (commands.wait_for_schema)
                    raise refused_at_start(exc) from None
                if not is_transient(exc):
                    raise
                attempt += 1
                delay = self.sup.backoff(attempt)
                log.warning("serve.start_waiting step=%s attempt=%d retry_in=%.1fs error=%s", step, attempt, delay,
                            describe(exc))
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except asyncio.TimeoutError:
                continue
            raise _StoppedWhileStarting(step)

    def _own_problems(self) -> list[str]:
        """What ``/readyz`` adds of serve's own: listeners not up."""
        cfg, problems = self.app.config, []
        if cfg.sftp.enabled and (self.sftp is None or self.sftp.acceptor is None):
            problems.append("sftp listener not up")
        if cfg.soap.enabled and (self.soap is None or not self.soap.alive()):
            problems.append("soap listener not up")
        if cfg.web.enabled and (self.web is None or not self.web.alive()):
            problems.append("web listener not up")
        return problems

    async def _sandbox_retention_step(self) -> bool:
        from gateway.services.erasure import run_sandbox_retention
        await asyncio.to_thread(run_sandbox_retention, self.app)
        return False

    async def _credit_retention_step(self) -> bool:
        from gateway.services.erasure import run_credit_retention
        erased = await asyncio.to_thread(run_credit_retention, self.app)
        if erased.credit_checks:
            log.info("retention.credit checks=%d", sum(erased.credit_checks.values()))
        return False

    async def _resume_step(self) -> bool:
        if not self.archives_refreshed:
            rewritten = await asyncio.to_thread(refresh_archive_indexes, self.app)
            self.archives_refreshed = True
            if rewritten:
                log.info("serve.archive_indexes_refreshed clients=%d", len(rewritten))
        try:
            results = await asyncio.to_thread(resume_unfinished, self.app)
        except Interrupted:
            return False
        for result in results:
            log.info("serve.resumed submission=%s status=%s", result.submission, result.status)
        return False

    async def _mappings_step(self) -> bool:
        if not self.mappings.alive():
            self.sup.report("mappings", RuntimeError("the mappings folder watcher stopped"))
            await asyncio.to_thread(self.mappings.restart)
        elif await asyncio.to_thread(self.mappings.folder_replaced):  # its watch stayed with the old folder
            log.info("serve.mappings_folder_replaced folder=%s: watching the new one", self.mappings.folder)
            await asyncio.to_thread(self.mappings.restart)
        if self.config_watch is not None and not self.config_watch.alive():
            self.sup.report("config", RuntimeError("the config file watcher stopped"))
            await asyncio.to_thread(self.config_watch.restart)
        if self.watcher is not None and not self.watcher.alive():
            self.sup.report("inbox", RuntimeError("the inbox folder watcher stopped"))
            await asyncio.to_thread(self.watcher.restart)
        return False

    async def stop(self, grace: float) -> list[str]:
        """Stop everything within ``grace`` seconds; returns what had to be abandoned."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        abandoned: list[str] = list(self.start_abandoned)

        async def bounded(name: str, fn: Callable[[], Any]) -> None:
            try:
                result = fn()
                if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                    await asyncio.wait_for(result, timeout=max(0.1, deadline - loop.time()))
            except asyncio.TimeoutError:
                abandoned.append(name)
            except Exception as exc:  # noqa: BLE001 - stopping goes on whatever one part does
                log.warning("serve.stop_error part=%s error=%s", name, describe(exc))

        self.sup.stop.set()
        if self.soap is not None:
            soap = self.soap
            await bounded("soap", lambda: asyncio.to_thread(soap.stop))
        if self.web is not None:
            await bounded("web", self.web.stop)
        if self.sftp is not None:
            await bounded("sftp", self.sftp.close)
        abandoned += await self.sup.join(max(0.1, deadline - loop.time()))
        await bounded("partners", self.partners.close)
        if self.watcher is not None:
            await bounded("watcher", lambda: asyncio.to_thread(self.watcher.stop) if self.watcher else None)
        await bounded("mappings", lambda: asyncio.to_thread(self.mappings.stop))
        if self.config_watch is not None:
            await bounded("config", lambda: asyncio.to_thread(self.config_watch.stop) if self.config_watch else None)
        if self.lanes is not None and "dispatch" not in abandoned:
            lanes = self.lanes  # rows in flight finish within the grace, or their leases are taken back next start
            if await asyncio.to_thread(lanes.wait, max(0.1, deadline - loop.time())):
                await bounded("dispatcher", lambda: asyncio.to_thread(lanes.close))
            else:
                abandoned.append("dispatch")
        await bounded("health", self.health.close)  # last: /readyz said "stopping" while the rest stopped
        return abandoned
