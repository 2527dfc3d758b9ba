"""Scheduled pull of partner updates (``gateway partners sync``; ``serve`` runs it per partner schedule).

One page at a time: its updates commit in transactions of ``APPLY_CHUNK``, the new cursor with the last, then
the partner is told (``commit_updates``, for partners with a transaction to commit). A crash in between
re-reads the page, and the per-update dedupe in ``partner_updates`` makes that harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.exc import DBAPIError

from adapters.base import NotSupported, UpdatingAdapter
from gateway import metrics
from gateway import liveness
from gateway.bootstrap import App
from gateway.errors import DeliveryError, Interrupted, NotFound
from gateway.faults import database_broken, describe, is_transient
from gateway.services.dispatch import open_adapter
from gateway.services.node import LeaseLost, fence, leased
from gateway.services.partner_updates import ApplyResult, apply_updates, get_cursor, last_sync, save_cursor
from gateway.store.db import read_tx, write_tx

log = logging.getLogger(__name__)
MAX_PAGES = 1000  # a partner that never stops paging is cut off; the next run continues
# A pull cut off at MAX_PAGES (a backlog after an outage, or a partner that never stops paging) goes on this long
# after, not at the partner's next schedule (a day by default): a real backlog drains in minutes, and a paging
# bug costs at most MAX_PAGES requests a minute.
CONTINUE_AFTER_SECONDS = 60.0
# (config file, partner id) -> when its last pull on this node was cut off at MAX_PAGES
_cut_short: dict[tuple[str, str], datetime] = {}
APPLY_CHUNK = 500  # updates per transaction: the write lock is held for a short while only


def sync_partner(app: App, partner_id: str) -> ApplyResult:
    """Pull and apply everything the partner has after our cursor."""
    if partner_id not in app.config.partners:
        raise NotFound(f"no partner '{partner_id}' (configured: {', '.join(sorted(app.config.partners)) or 'none'})")
    adapter = open_adapter(app, partner_id)
    total = ApplyResult()
    seen: set[str | None] = set()  # cursors read from in this pull
    cut = False
    try:
        if not isinstance(adapter, UpdatingAdapter):
            raise NotSupported(partner_id, "fetch_updates")
        for _ in range(MAX_PAGES):
            if app.stopping.is_set():  # each page commits with its cursor: the next run goes on from here
                break
            liveness.beat()
            with read_tx(app.engine) as conn:
                cursor = get_cursor(conn, partner_id)
            seen.add(cursor)
            page = adapter.fetch_updates(cursor)
            # A page is applied in transactions of at most APPLY_CHUNK updates, the cursor moving with the last:
            # one transaction for a page of 15,000 updates held SQLite's write lock for half a minute, and
            # intake and delivery failed with "database is locked" meanwhile. A crash or a stop between two
            # chunks re-reads the page, and the per-update dedupe skips what was applied.
            chunks = [page.updates[i:i + APPLY_CHUNK] for i in range(0, len(page.updates), APPLY_CHUNK)] or [[]]
            for i, chunk in enumerate(chunks):
                with write_tx(app.engine) as conn:
                    fence(app, conn)  # a node that lost the partner's lease must not apply this page too
                    result = apply_updates(app, partner_id, chunk, conn=conn)
                    if i == len(chunks) - 1:
                        save_cursor(conn, partner_id, page.cursor, len(page.updates), now=app.now())
                for outcome, n in result.counts.items():
                    total.counts[outcome] = total.counts.get(outcome, 0) + n
                liveness.beat()
            adapter.commit_updates(page)
            if not page.updates or page.cursor == cursor:
                break
            if page.cursor in seen:
                # A cursor that goes back to one read before (a partner's paging bug) would loop to MAX_PAGES on
                # every pull, re-reading the same pages. What the pages said is applied (each update once);
                # the pull stops, and the sync row says why.
                raise DeliveryError(f"partner {partner_id}: its next cursor is one this pull has read from already "
                                    f"(after {len(seen)} pages): the partner's paging goes in a circle; the pull "
                                    f"stops here", retryable=True)
        else:
            cut = True
            _cut_short[(str(app.config.source), partner_id)] = app.now()
            log.warning("partner_sync.cut_short partner=%s pages=%d: the rest in %g s", partner_id, MAX_PAGES,
                        CONTINUE_AFTER_SECONDS)
    except DeliveryError as exc:
        with write_tx(app.engine) as conn:
            save_cursor(conn, partner_id, get_cursor(conn, partner_id), 0, error=str(exc)[:2000], now=app.now())
        raise
    finally:
        adapter.close()
    if not cut:
        _cut_short.pop((str(app.config.source), partner_id), None)
    # A pull that found nothing is routine (every few seconds with a short schedule): INFO stays quiet.
    log.log(logging.INFO if any(total.counts.values()) else logging.DEBUG, "partner_sync.done partner=%s %s",
            partner_id, " ".join(f"{k}={v}" for k, v in sorted(total.counts.items())))
    return total


def due_partners(app: App, now: datetime | None = None, only: str | None = None) -> list[str]:
    """Partners whose scheduled pull is due (never synced, or ``sync.every_seconds`` ago)."""
    now = now or app.now()
    due = []
    with read_tx(app.engine) as conn:
        for pid, pcfg in sorted(app.config.partners.items()):
            if not pcfg.sync.enabled or (only is not None and pid != only):
                continue
            last = last_sync(conn, pid)
            cut_at = _cut_short.get((str(app.config.source), pid))
            if last is None or now - last >= timedelta(seconds=pcfg.sync.every_seconds) or (
                    cut_at is not None and now - cut_at >= timedelta(seconds=CONTINUE_AFTER_SECONDS)):
                due.append(pid)
    return due


def sync_due(app: App, on_error: Callable[[str, BaseException], None] | None = None) -> dict[str, ApplyResult | str]:
    """Run every due partner's pull; a failing partner is reported and does not stop the others.

    The gateway's own transient or broken database errors and ``Interrupted`` end the round (the caller retries, or
    the supervisor ends the gateway); anything else, a partner's plain timeout or dropped connection included, is
    contained to its partner: recorded on its sync row, so it waits for its next schedule and the partners after it
    in the round are pulled.
    """
    out: dict[str, ApplyResult | str] = {}
    for pid in due_partners(app):
        if app.stopping.is_set():
            break
        try:
            # One node at a time per partner; whoever gets the lease checks the schedule again.
            with leased(app, f"partner_sync:{pid}") as lease:
                if lease is None or pid not in due_partners(app, only=pid):
                    continue
                out[pid] = sync_partner(app, pid)
        except LeaseLost:
            # This node stalled past its lease and another took the partner over (the fence did its job): that
            # node's pull goes on, so nothing failed here; recording an error would also write this node's stale
            # cursor over the one the other node saved.
            log.info("partner_sync.taken_over partner=%s: another node pulls it now", pid)
            continue
        except (DeliveryError, NotFound) as exc:
            metrics.PARTNER_SYNC_ERRORS.labels(pid).inc()
            log.warning("partner_sync.failed partner=%s error=%s", pid, describe(exc))
            out[pid] = str(exc)
        except Exception as exc:
            # the gateway's own database (passing, or broken for the supervisor to end the gateway): no partner's fault
            ours = isinstance(exc, DBAPIError) and (is_transient(exc) or database_broken(exc))
            if isinstance(exc, Interrupted) or ours:
                raise
            metrics.PARTNER_SYNC_ERRORS.labels(pid).inc()
            with write_tx(app.engine) as conn:
                save_cursor(conn, pid, get_cursor(conn, pid), 0, error=describe(exc), now=app.now())
            if on_error is not None:
                on_error(pid, exc)
            else:
                log.error("partner_sync.failed partner=%s error=%s", pid, describe(exc))
            out[pid] = describe(exc)
    return out
