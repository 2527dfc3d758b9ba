"""Use cases on the current-state projection: rebuild it from the event log, mark claims seen."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from gateway.bootstrap import App
from gateway.services.claim_ops import InvalidRequest
from gateway.services.submit import serial_write_tx
from gateway.store import projection
from gateway.store.db import write_tx
from gateway.store.projection import RebuildCounts

log = logging.getLogger(__name__)
MAX_MARK = 10_000


def rebuild_projection(app: App) -> RebuildCounts:
    """Fold every claim's events again into ``claim_current``; rows that already agree are left alone.

    One transaction, so readers see the old projection or the new one, never half; the read marks
    (``seen_event_id``) are kept.
    """
    with write_tx(app.engine) as conn:
        counts = projection.rebuild(conn)
    log.info("projection.rebuilt claims=%d events=%d added=%d changed=%d unchanged=%d", counts.claims,
             counts.events, counts.added, counts.changed, counts.unchanged)
    return counts


def mark_seen(app: App, client_id: str, claim_ids: Sequence[int] | None) -> int:
    """Mark the client's claims (all of them if ``claim_ids`` is None) as seen; returns how many were unread.

    Ids of other clients' claims or unknown ids are passed over, like claims without news.
    """
    if claim_ids is not None and len(claim_ids) > MAX_MARK:
        raise InvalidRequest(f"{len(claim_ids)} claim ids, at most {MAX_MARK} per call", "claim_ids")
    with serial_write_tx(app) as conn:
        return projection.mark_seen(conn, client_id, claim_ids)
