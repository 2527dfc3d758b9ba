"""Per-claim outbox operations (cancel, report_payment, send_message, request_monitoring, refresh, set_labels).

Issue 5's SOAP endpoint enqueues them; the dispatcher leases them like batches and hands each to the
partner adapter's ``operate``. The idempotency key sent to the partner is claim + partner + operation
+ the outbox row, so a retry after a lost answer is folded by the partner. A partner that has no such
operation is recorded as not supported (a ``partner_unsupported`` event), not retried; a ``refresh``
for a partner without per-claim queries pulls its pending updates instead.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from adapters.base import OPERATIONS, NotSupported, Operation, OperationResult, UpdatingAdapter
from gateway.domain.lifecycle import Actor
from gateway.errors import DeliveryError
from gateway.services.partner_updates import apply_updates
from gateway.store import claims as claim_store
from gateway.store import outbox as outbox_store
from gateway.store.db import read_tx, write_tx
from gateway.store.outbox import OutboxItem

if TYPE_CHECKING:
    from gateway.services.dispatch import Dispatcher

log = logging.getLogger(__name__)


def partner_reference(events: list[dict[str, Any]]) -> str | None:
    """The partner's file number from a claim's events (the latest one that names it)."""
    for event in reversed(events):
        ref = (event.get("data") or {}).get("partner_reference")
        if ref:
            return str(ref)
    return None


def run_operation(worker: Dispatcher, item: OutboxItem) -> None:
    """Send one per-claim operation to its partner and record the answer on the claim."""
    if item.operation not in OPERATIONS:
        raise DeliveryError(f"unknown outbox operation '{item.operation}'", retryable=False)
    app = worker.app
    claim_id = int(item.payload["claim_id"])
    with read_tx(app.engine) as conn:
        ref = partner_reference(claim_store.history(conn, claim_id))
    data = {k: v for k, v in item.payload.items() if k != "claim_id"}
    op = Operation(operation=item.operation, key=f"{claim_id}:{item.partner_id}:{item.operation}:{item.id}",
                   claim_id=claim_id, partner_reference=ref, data=data)
    adapter = worker._adapter(item.partner_id)
    try:
        if not isinstance(adapter, UpdatingAdapter):
            raise NotSupported(item.partner_id, item.operation)
        result: OperationResult = worker.call(item.partner_id, adapter.operate, op)
    except NotSupported as exc:
        if item.operation == "refresh" and isinstance(adapter, UpdatingAdapter):
            return _refresh_by_pull(worker, item, claim_id)
        _record(worker, item, claim_id, "partner_unsupported", {"operation": item.operation, "error": str(exc)},
                receipt={"not_supported": True, "error": str(exc)})
        return
    with write_tx(app.engine) as conn:
        if not outbox_store.complete(conn, item, {"operation": item.operation, "detail": result.detail},
                                     now=app.now()):
            return
        claim_store.annotate(conn, claim_id, Actor.PARTNER, "partner_ack",
                             {"operation": item.operation, "outbox": item.id, "detail": result.detail}, now=app.now())
        if result.updates:  # a refresh: the claim's history at the partner
            apply_updates(app, item.partner_id, result.updates, conn=conn)
    log.info("dispatch.operation outbox=%d partner=%s op=%s claim=%d", item.id, item.partner_id, item.operation,
             claim_id)


def _refresh_by_pull(worker: Dispatcher, item: OutboxItem, claim_id: int) -> None:
    # A file partner has no per-claim query: pulling its pending updates is the refresh it can do.
    from gateway.services.partner_sync import sync_partner  # partner_sync builds on the dispatcher module
    result = sync_partner(worker.app, item.partner_id)
    _record(worker, item, claim_id, "partner_ack", {"operation": "refresh", "via": "pull", **result.counts},
            receipt={"operation": "refresh", "via": "pull", **result.counts}, actor=Actor.PARTNER)


def _record(worker: Dispatcher, item: OutboxItem, claim_id: int, kind: str, data: dict[str, Any],
            receipt: dict[str, Any], actor: Actor = Actor.SYSTEM) -> None:
    app = worker.app
    with write_tx(app.engine) as conn:
        if outbox_store.complete(conn, item, receipt, now=app.now()):
            claim_store.annotate(conn, claim_id, actor, kind, {**data, "outbox": item.id}, now=app.now())
