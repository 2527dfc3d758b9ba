"""What the database knows about a running gateway, on one screen (``gateway status``).

``serve``'s supervised tasks live in another process, so this reads their traces: the outbox by state
and partner, dead letters, the oldest waiting row, each partner's last sync and error, each client's
last file, submissions still processing with their rows done, and the named and outbox leases held (a partner's
``Retry-After`` hold among them, ``partner_hold:<partner>``, and as the partner's ``held_until``).
No debtor data: counts, ids, file names the client chose, and error texts the gateway composed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from gateway.bootstrap import App
from gateway.store import outbox as outbox_store
from gateway.store.db import read_tx
from gateway.store.sql import aggregate_time
from gateway.store.schema import leases, outbox, partner_sync, submissions

OPEN = ("pending", "leased")


def _age(now: datetime, then: datetime | None) -> float | None:
    return round((now - then).total_seconds(), 1) if then is not None else None


def gateway_status(app: App) -> dict[str, Any]:
    """The status document; every list is small (per partner, client or lease)."""
    now = app.now()
    with read_tx(app.engine) as conn:
        backlog = [dict(r) for r in conn.execute(
            select(outbox.c.partner_id, outbox.c.status, func.count().label("rows"))
            .where(outbox.c.status.in_((*OPEN, "dead")))
            .group_by(outbox.c.partner_id, outbox.c.status).order_by(outbox.c.partner_id, outbox.c.status))
            .mappings()]
        oldest = conn.execute(select(func.min(outbox.c.created_at)).where(outbox.c.status.in_(OPEN))).scalar()
        # per partner, when its earliest pending row is due: later than now means all of them wait (a backoff, or
        # the partner's Retry-After hold); a partner's hold is the partner's: none of its rows goes out before it ends
        due = {r[0]: r[1] for r in conn.execute(
            select(outbox.c.partner_id, func.min(outbox.c.available_at)).where(outbox.c.status == "pending")
            .group_by(outbox.c.partner_id))}
        holds = outbox_store.holds(conn, now)
        syncs = {r["partner_id"]: r for r in conn.execute(
            select(partner_sync.c.partner_id, partner_sync.c.last_sync_at, partner_sync.c.last_error,
                   partner_sync.c.updates)).mappings()}
        latest = (select(submissions.c.client_id, func.max(submissions.c.id).label("id"))
                  .group_by(submissions.c.client_id).subquery())
        files = {r["client_id"]: r for r in conn.execute(
            select(submissions.c.client_id, submissions.c.reference, submissions.c.filename, submissions.c.channel,
                   submissions.c.status, submissions.c.rows, submissions.c.received_at)
            .join(latest, latest.c.id == submissions.c.id)).mappings()}
        processing = [dict(r) for r in conn.execute(
            select(submissions.c.reference, submissions.c.client_id, submissions.c.filename,
                   submissions.c.progress_row.label("rows_done"), submissions.c.received_at)
            .where(submissions.c.status == "processing").order_by(submissions.c.id)).mappings()]
        # leases are judged by the lease clock (the database's on PostgreSQL); a partner's hold, kept in the same
        # table, by this node's clock, as the dispatcher judges it (``outbox.hold_of``)
        lease_now = app.lease_now(conn)
        held = [{"name": r["name"], "owner": r["owner"], "expires_at": r["expires_at"],
                 "expired": r["expires_at"] <= (now if r["name"].startswith(outbox_store.HOLD_PREFIX) else lease_now)}
                for r in conn.execute(
            select(leases.c.name, leases.c.owner, leases.c.expires_at).order_by(leases.c.name)).mappings()]
        held += [{"name": f"outbox:{r['id']}", "owner": r["lease_owner"], "expires_at": r["lease_until"],
                  "expired": r["lease_until"] is not None and r["lease_until"] <= lease_now} for r in conn.execute(
            select(outbox.c.id, outbox.c.lease_owner, outbox.c.lease_until)
            .where(outbox.c.status == "leased").order_by(outbox.c.id)).mappings()]
    partners = []
    for pid in sorted(set(app.config.partners) | set(syncs)):
        s = syncs.get(pid)
        partners.append({"partner": pid, "last_sync_at": s["last_sync_at"] if s else None,
                         "last_error": s["last_error"] if s else None, "updates": s["updates"] if s else 0,
                         "pending": _count(backlog, pid, "pending"), "leased": _count(backlog, pid, "leased"),
                         "dead": _count(backlog, pid, "dead"), "held_until": holds.get(pid),
                         "next_try_at": _next_try(due.get(pid), holds.get(pid), now, _count(backlog, pid, "pending"))})
    clients = []
    for cid in sorted(set(app.config.clients) | set(files)):
        f = files.get(cid)
        clients.append({"client": cid, "last_file": f["filename"] if f else None,
                        "submission": f["reference"] if f else None, "channel": f["channel"] if f else None,
                        "status": f["status"] if f else None, "rows": f["rows"] if f else None,
                        "received_at": f["received_at"] if f else None})
    return {
        "at": now, "database": app.engine.url.render_as_string(hide_password=True),
        "outbox": {"pending": sum(r["rows"] for r in backlog if r["status"] == "pending"),
                   "leased": sum(r["rows"] for r in backlog if r["status"] == "leased"),
                   "dead": sum(r["rows"] for r in backlog if r["status"] == "dead"),
                   "oldest_pending_seconds": _age(now, oldest)},
        "partners": partners, "clients": clients, "processing": processing, "leases": held,
    }


def _next_try(due: Any, held: datetime | None, now: datetime, pending: int) -> datetime | None:
    """When the partner's next pending row goes out, if later than now: its earliest row's time, or the end of the
    partner's hold if that is later (a row queued just as the hold was recorded is due, but waits for it)."""
    when = _later(due, now)
    if held is None or not pending:
        return when
    return held if when is None or held > when else when


def _later(when: Any, now: datetime) -> datetime | None:
    """``when`` (a UTC time from the store) if it is after ``now``, else None (due now)."""
    if when is None:
        return None
    due = aggregate_time(when)
    return due if due > now else None


def _count(backlog: list[dict[str, Any]], partner: str, status: str) -> int:
    return sum(r["rows"] for r in backlog if r["partner_id"] == partner and r["status"] == status)
