"""What the health endpoints and the metrics scrape ask the database: readiness and the backlog.

Both are read-only and cheap: the backlog reads the outbox through its status index (only rows not
done), the partner sync table (one row per partner) and counts the submissions still processing.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from gateway.bootstrap import App
from gateway.domain.sandbox import SANDBOX_SUFFIX
from gateway.faults import describe
from gateway.metrics import Backlog
from gateway.store.db import pending_migrations, read_tx
from gateway.store.schema import outbox, partner_sync, submissions
from gateway.store.sql import aggregate_time

OPEN_STATES = ("pending", "leased", "dead")


def database_problems(app: App) -> list[str]:
    """Why the database is not usable now (empty when it is): unreachable, missing, or not migrated."""
    url = make_url(app.config.database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        # Connecting would create an empty file where the database has gone (moved, deleted, unmounted).
        if not Path(url.database).is_file():
            return [f"database file missing: {url.database}"]
    try:
        with read_tx(app.engine) as conn:
            conn.execute(select(func.count()).select_from(partner_sync)).scalar()
        if pending_migrations(app.engine):
            return ["database schema not migrated: run 'gateway db upgrade'"]
    except Exception as exc:  # noqa: BLE001 - any failure to read means not ready; the reason is the answer
        return [f"database unreachable: {describe(exc)}"[:300]]
    return []


def key_problems(app: App) -> list[str]:
    """Why the data keys cannot be used (empty when they load)."""
    try:
        app.cipher  # noqa: B018 - loads and caches the data keys
    except Exception as exc:  # noqa: BLE001
        return [f"data keys not loaded: {describe(exc)}"[:300]]
    if app.config.dispatcher.enabled and not (app.signing_key_path.is_file() and app.signing_cert_path.is_file()):
        return [f"signing key or certificate missing in {app.config.keys_dir}: run 'gateway keys init'"]
    return []


def backlog(app: App) -> Backlog:
    """Submissions processing, open outbox rows, and partner pulls, as of now."""
    now = app.now()
    out = Backlog()
    with read_tx(app.engine) as conn:
        out.submissions_processing = int(conn.execute(  # production only: a sandbox's are not the operator's worry
            select(func.count()).select_from(submissions).where(
                submissions.c.status == "processing",
                ~submissions.c.client_id.like(f"%{SANDBOX_SUFFIX}"))).scalar() or 0)
        rows = conn.execute(select(outbox.c.partner_id, outbox.c.status, func.count(), func.min(outbox.c.created_at))
                            .where(outbox.c.status.in_(OPEN_STATES))
                            .group_by(outbox.c.partner_id, outbox.c.status))
        for partner, state, n, oldest in rows:
            out.outbox[(str(partner), str(state))] = int(n)
            if state == "pending" and oldest is not None:
                out.oldest_pending_seconds[str(partner)] = max(0.0, (now - aggregate_time(oldest)).total_seconds())
        syncs = {r.partner_id: r for r in conn.execute(
            select(partner_sync.c.partner_id, partner_sync.c.last_sync_at, partner_sync.c.last_error))}
    for pid, pcfg in app.config.partners.items():
        out.outbox.setdefault((pid, "pending"), 0)
        out.outbox.setdefault((pid, "dead"), 0)
        if not pcfg.sync.enabled:
            continue
        out.sync_interval_seconds[pid] = pcfg.sync.every_seconds
        row = syncs.get(pid)
        if row is not None and row.last_sync_at is not None:
            out.sync_age_seconds[pid] = max(0.0, (now - aggregate_time(row.last_sync_at)).total_seconds())
            out.sync_failing[pid] = row.last_error is not None
    return out



