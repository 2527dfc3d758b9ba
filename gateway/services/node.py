"""Who this node is, and the leases that let several nodes share one database.

A node id is stable across restarts (config ``node.id``, ``$GATEWAY_NODE_ID``, or made once and kept
in ``<var>/node-id``), so a restarted node recognises its own leases and takes them back at once
instead of waiting for them to run out. That is only safe while one process at a time runs as that
node: ``serve`` holds an exclusive lock on ``<var>/node-<id>.lock`` for its lifetime and refuses to start
when another process holds it. Other commands (``gateway ingest``) lease as ``<node>/<pid>``, so they
never pass for a running ``serve``.

Leases (``store.leases``): ``ingest:<client>`` (one ingest per client at a time, across nodes: the
duplicate check reads, then inserts), ``partner_sync:<partner>``, ``status_files``. The ingest lease is
renewed in every chunk's transaction and so fences it: a node that lost its lease cannot commit.

Every lease, named or an outbox row's, is taken, renewed and judged by ``App.lease_now``: the database server's
clock on PostgreSQL, so that the nodes' own clocks, which may disagree, never decide who holds what.
"""

from __future__ import annotations

import contextvars
import fcntl
import logging
import os
import secrets
import socket
import threading
import time
from datetime import datetime
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

from sqlalchemy import Connection

from gateway.bootstrap import App
from gateway.errors import ConfigError, GatewayError
from gateway.faults import describe
from gateway.store import leases as lease_store
from gateway.store import outbox as outbox_store
from gateway.store.db import write_tx

log = logging.getLogger(__name__)
NODE_ID_FILE = "node-id"


class LeaseBusy(GatewayError):
    """The lease is held by another node (or thread): try again later."""


class LeaseLost(LeaseBusy):
    """Another node took over work this node held a lease for: what was not committed is its now.

    A kind of ``LeaseBusy``: the work is another node's now, which is no failure of the work (a file is offered
    again and found done or still busy; it never counts towards setting the file aside)."""


def resolve_node_id(app: App) -> str:
    """The configured, environment or kept node id (made and kept on first use)."""
    configured = app.config.node.id or os.environ.get("GATEWAY_NODE_ID")
    if configured:
        return configured
    path = app.config.var_dir / NODE_ID_FILE
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    made = f"{socket.gethostname()}-{secrets.token_hex(3)}"
    tmp = path.with_name(f".{NODE_ID_FILE}.{os.getpid()}.tmp")
    tmp.write_text(made + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return made


class NodeLock:
    """Held by ``serve``: one process per node id on this machine (an flock, released by the kernel on exit)."""

    def __init__(self, app: App) -> None:
        self.var = app.config.var_dir
        self._fh: IO[str] | None = None

    def acquire(self, node_id: str) -> None:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in node_id)
        self.path = self.var / f"node-{safe}.lock"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise ConfigError(f"another `gateway serve` runs as node '{node_id}' here ({self.path} is locked); "
                              "give each process its own node.id (or $GATEWAY_NODE_ID)") from None
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


@dataclass
class Lease:
    name: str
    owner: str
    seconds: float

    def renew(self, conn: Connection, app: App) -> None:
        """In the caller's transaction: extend the lease, or raise LeaseLost so that nothing commits."""
        _renew(conn, self, app.lease_now(conn))


def renew_lease(conn: Connection, lease: Lease, now: datetime) -> None:
    """``Lease.renew`` where there is no App (an ingest worker process storing chunks under its parent's lease).

    ``now``: this process's clock, the lease clock on SQLite only; on PostgreSQL the database's is read instead."""
    _renew(conn, lease, lease_store.database_clock(conn) or now)


def _renew(conn: Connection, lease: Lease, now: datetime) -> None:
    if not lease_store.renew(conn, lease.name, lease.owner, lease.seconds, now):
        raise LeaseLost(f"lease {lease.name} was taken over by another node; this node stops here")


_current: contextvars.ContextVar[Lease | None] = contextvars.ContextVar("gateway_lease", default=None)
_local_locks: dict[str, threading.Lock] = {}
_local_guard = threading.Lock()


def current_lease() -> Lease | None:
    """The lease the work running in this thread holds (its transactions renew it)."""
    return _current.get()


def fence(app: App, conn: Connection) -> None:
    """In a transaction doing leased work: renew this thread's lease, or raise LeaseLost (nothing commits)."""
    lease = _current.get()
    if lease is not None:
        lease.renew(conn, app)


def owner_of(app: App) -> str:
    """The lease owner for this process: the node id in ``serve``, ``<node>/<pid>`` elsewhere."""
    return app.lease_owner or f"{resolve_node_id(app)}/{os.getpid()}"


@contextmanager
def leased(app: App, name: str, *, wait: float = 0.0) -> Iterator[Lease | None]:
    """Hold lease ``name`` (in this process and in the database) for the block; None if not had in ``wait`` s.

    ``wait > 0``: poll until the lease is free (a CLI ingest while ``serve`` ingests the same client).
    """
    with _local_guard:
        local = _local_locks.setdefault(name, threading.Lock())
    if not (local.acquire(timeout=wait) if wait > 0 else local.acquire(blocking=False)):
        yield None
        return
    try:
        lease = Lease(name, owner_of(app), app.config.node.lease_seconds)
        deadline = time.monotonic() + wait
        while True:
            with write_tx(app.engine) as conn:
                got = lease_store.acquire(conn, name, lease.owner, lease.seconds, app.lease_now(conn))
            if got or time.monotonic() >= deadline:
                break
            time.sleep(min(0.5, max(0.05, deadline - time.monotonic())))
        if not got:
            yield None
            return
        token = _current.set(lease)
        try:
            yield lease
        finally:
            _current.reset(token)
            try:
                with write_tx(app.engine) as conn:
                    lease_store.release(conn, name, lease.owner)
            except Exception as exc:  # noqa: BLE001 - the lease runs out by itself; the work is done
                log.warning("lease.release_failed lease=%s error=%s: it runs out in %g s", name, describe(exc),
                            lease.seconds)
    finally:
        local.release()


def client_ingest_lease(client_id: str) -> str:
    return f"ingest:{client_id}"



def release_own_leases(app: App, owner: str) -> int:
    """At start: outbox rows this node had leased before it stopped become available now (returns how many)."""
    with write_tx(app.engine) as conn:
        return outbox_store.release_owner(conn, owner, app.lease_now(conn))


def break_outbox_lease(app: App, outbox_id: int) -> bool:
    """Operator (``outbox retry --force``): a leased row is available now; False when it was not leased."""
    with write_tx(app.engine) as conn:
        return outbox_store.break_lease(conn, outbox_id, app.now())
