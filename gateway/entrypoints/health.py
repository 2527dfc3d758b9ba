"""Plain-HTTP health and metrics listener of ``gateway serve`` (``health.listen``, 127.0.0.1 by default).

A listener of its own, without TLS or credentials, so that a service manager, a load balancer or
Prometheus can probe it; it answers three GET paths and nothing else:

- ``/healthz`` (liveness): 200 while every running supervised task has finished a step (done work,
  idled or failed and been restarted) within max(3 x its interval, ``health.stale_seconds``) and no
  task made the supervisor give up, and no partner's delivery has been in flight for longer than
  ``dispatcher.stuck_seconds`` (``dispatch:<partner>``: deliveries run in threads of their own, beside the
  step); else 503 naming the stale tasks. A step or a delivery that hangs (a call that never returns)
  makes it stale; a restart is what mends that.
- ``/readyz`` (readiness): 200 when start-up is done, the database answers and is migrated, the data
  keys load and the SFTP and SOAP listeners (when enabled) are up; else 503 with the reasons.
- ``/metrics``: Prometheus text format (``gateway.metrics``), with the backlog read at scrape time.

Database checks run in a thread and are bounded by ``health.check_timeout_seconds``; a check still
running from an earlier request is awaited again rather than started twice, so a hung database
cannot pile up threads. Connections are bounded per peer address and in all (``connection_limits``), as the
SOAP and console fronts are: each is a descriptor of serve held up to 10 s for its request line, so a flood of
idle connections (from any local process, the listener being on loopback) could otherwise use them all up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.bootstrap import App
from gateway.entrypoints.connection_limits import ConnectionLimits
from gateway.entrypoints.supervisor import Supervisor
from gateway.metrics import Backlog, BacklogCollector, Exposition
from gateway.services.monitoring import backlog, database_problems, key_problems

log = logging.getLogger("gateway.health")
T = TypeVar("T")
MAX_REQUEST_BYTES = 8192


class HealthServer:
    """The listener; ``listener_problems`` says which of serve's own listeners are not up."""

    def __init__(self, app: App, sup: Supervisor, listener_problems: Callable[[], list[str]]) -> None:
        self.app, self.sup, self.listener_problems = app, sup, listener_problems
        self.cfg = app.config.health
        self.started = False  # set by serve once every part has started
        # Work handed to threads of its own (a partner's delivery): partner -> seconds in flight; stale past
        # ``stuck_seconds`` (the task that started it goes on stepping, so its own age says nothing of it).
        self.in_flight: Callable[[], dict[str, float]] = dict
        self.clock_skew: Callable[[], float | None] = lambda: None  # this clock minus the database's
        self.certificates: Callable[[], dict[tuple[str, ...], float]] = dict  # (role, name) -> seconds left
        self.stuck_seconds = float("inf")
        self.server: asyncio.Server | None = None
        self.limits = ConnectionLimits("health", self.cfg.max_connections_per_address, self.cfg.max_connections)
        self._checks: dict[str, asyncio.Future[Any]] = {}

    async def start(self) -> None:
        if not self.cfg.listen:
            return
        host, _, port = self.cfg.listen.rpartition(":")
        try:
            self.server = await asyncio.start_server(self._handle, host or "127.0.0.1", int(port))
        except OSError as exc:  # serve goes on: its work matters more than its probes; the operator is told
            log.error("health.listen_failed listen=%s error=%s", self.cfg.listen, exc.strerror or exc)
            return
        bound = self.server.sockets[0].getsockname()
        log.info("health.listening url=http://%s:%d", bound[0], bound[1])

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    # -- the three answers --------------------------------------------------------------------
    def liveness(self) -> tuple[int, dict[str, Any]]:
        now = time.monotonic()
        stale: dict[str, float] = {}
        for name in sorted({t.get_name() for t in self.sup.tasks if not t.done()}):
            health = self.sup.health[name]
            age = now - health.last_step
            if age > max(3 * health.every, self.cfg.stale_seconds):
                stale[name] = round(age, 1)
        for partner, age in self.in_flight().items():
            if age > self.stuck_seconds:
                stale[f"dispatch:{partner}"] = round(age, 1)
        failing = sorted(n for n, h in self.sup.health.items() if h.consecutive)
        if self.sup.exit_code:
            return 503, {"status": "gave_up", "exit_code": self.sup.exit_code, "stale": stale}
        if stale:
            return 503, {"status": "stale", "stale": stale, "failing": failing}
        return 200, {"status": "ok", "failing": failing}

    async def readiness(self) -> list[str]:
        if self.sup.stop.is_set():
            return ["stopping"]
        if not self.started:
            return ["starting"]
        problems = list(self.listener_problems())
        db = await self._bounded("database", lambda: database_problems(self.app))
        problems += db if db is not None else ["database check timed out"]
        keys = await self._bounded("keys", lambda: key_problems(self.app))
        problems += keys if keys is not None else ["key check timed out"]
        return problems

    async def metrics(self) -> bytes:
        problems = await self.readiness()
        snapshot = await self._bounded("backlog", lambda: _safe_backlog(self.app))
        now = time.monotonic()
        tasks = {n: now - self.sup.health[n].last_step for n in {t.get_name() for t in self.sup.tasks}
                 if n in self.sup.health}
        deliveries = self.in_flight()  # partner -> seconds its row in flight has been worked on
        collector = BacklogCollector(lambda: snapshot, lambda: tasks, lambda: not problems, lambda: deliveries,
                                     self.clock_skew, self.certificates)
        return generate_latest(Exposition(collector))

    async def _bounded(self, key: str, fn: Callable[[], T]) -> T | None:
        """``fn`` in a thread, at most one at a time per key, waited for at most the check timeout."""
        future = self._checks.get(key)
        if future is None or future.done():
            future = self._checks[key] = asyncio.ensure_future(asyncio.to_thread(fn))
        try:
            result: T = await asyncio.wait_for(asyncio.shield(future), timeout=self.cfg.check_timeout_seconds)
        except asyncio.TimeoutError:
            return None
        return result

    # -- HTTP/1.1, GET only -------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if peer else "?"
        if not self.limits.admit(address):  # over a bound: closed as it arrives (logged by the limits)
            writer.close()
            return
        try:
            await self._answer(reader, writer)
        finally:
            self.limits.release(address)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            method, path = (head.split(b"\r\n", 1)[0].decode("latin-1").split(" ") + ["", ""])[:2]
            status, ctype, body = await self._route(method, path.split("?", 1)[0])
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError):
            writer.close()
            return
        except Exception as exc:  # noqa: BLE001 - a probe gets an answer, never a dropped connection
            log.warning("health.error error=%s", type(exc).__name__)
            status, ctype, body = 500, "application/json", b'{"status": "error"}'
        reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error",
                  503: "Service Unavailable"}[status]
        writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                     "Cache-Control: no-store\r\nConnection: close\r\n\r\n".encode() + body)
        try:
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _route(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method != "GET":
            return 405, "application/json", b'{"error": "GET only"}'
        if path == "/healthz":
            code, doc = self.liveness()
            return code, "application/json", _json(doc)
        if path == "/readyz":
            problems = await self.readiness()
            return (503 if problems else 200), "application/json", _json(
                {"status": "not_ready" if problems else "ready", "problems": problems})
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, await self.metrics()
        return 404, "application/json", b'{"error": "GET /healthz, /readyz or /metrics"}'


def _json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True).encode() + b"\n"


def _safe_backlog(app: App) -> Backlog | None:
    try:
        return backlog(app)
    except Exception as exc:  # noqa: BLE001 - the scrape answers without the backlog; readiness says why
        log.debug("health.backlog_failed error=%s", type(exc).__name__)
        return None
