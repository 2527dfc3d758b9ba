"""Per-claim outbox operations (cancel, report_payment, send_message, request_monitoring, refresh, set_labels).

What a partner accepts is its adapter's declared ``capabilities``, narrowed by the partner's config
(``partners.<id>.capabilities``). The use cases ask ``require`` before they queue anything, so an
operation a partner cannot take is refused at once (``Unsupported``) and never reaches the outbox.

The dispatcher leases operation rows like batches. An API partner (http, soap) gets a call through the
adapter's ``operate``, with claim + partner + operation + the outbox row as its idempotency key, and its
answer is the acknowledgement (``partner_ack``). A file partner (directory, sftp) gets a signed,
encrypted instruction document (``render_instruction``) named by the outbox key, handed over exactly
once like a batch (``instruction_delivered``); the agency's receipt comes back later as a status update
(``partner_ack`` with the instruction id). A request about a claim the partner has not received yet (its
batch queued, on its way or failed, or the claim held again by the operator) waits, without using up attempts,
until the claim's receipt is recorded: sent earlier, it would reach a partner that does not know the claim. A
request about a claim that ended before any batch took it (cancelled, closed as paid before the handover) is
not sent: the partner never had the claim. Its row is settled as done without a call (the receipt says
``not_forwarded``) and the claim's history says so (``request_not_forwarded``). An operation that became unsupported
after it was queued (the config changed) fails its row as a dead letter (``partner_op_failed``): never a
done row.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from adapters import adapter_class
from adapters.base import (CAPABILITY_TEXT, OPERATION_CAPABILITY, OPERATIONS, Batch, InstructionAdapter, Operation,
                           OperationResult, UpdatingAdapter)
from gateway.bootstrap import App
from gateway.domain.lifecycle import TERMINAL, Actor, State
from gateway.errors import DeliveryError, Unsupported
from gateway.services.partner_updates import apply_updates
from gateway.services.render_instruction import InstructionMeta, render_instruction
from gateway.store import claims as claim_store
from gateway.store import event_notes
from gateway.store import messages as message_store
from gateway.store import outbox as outbox_store
from gateway.store.db import read_tx, write_tx
from gateway.store.outbox import OutboxItem
from gateway.store.schema import claims

if TYPE_CHECKING:
    from gateway.services.dispatch import Dispatcher

log = logging.getLogger(__name__)
# A claim in these states has not (as far as the gateway knows) reached its partner: its batch is queued or
# on its way, or its delivery failed and waits for an operator's retry, or the operator held it again (it waits
# for the client's release).
NOT_YET_AT_PARTNER = frozenset({State.QUEUED, State.DELIVERING, State.FAILED, State.HELD})
# Looked at less often: these wait for a person (the operator's retry, the client's release).
_SLOW_WAIT = frozenset({State.FAILED, State.HELD})
# States a claim reaches only through a delivery attempt: one of them in its history, and the partner may have it.
_SENT = (State.DELIVERING.value, State.HANDED_OVER.value, State.IN_PROGRESS.value, State.PAUSED.value,
         State.DISPUTED.value, State.INSTALMENT_PLAN.value)


def capabilities(app: App, partner_id: str) -> frozenset[str]:
    """What the partner accepts: its adapter's declared set, narrowed by its config."""
    pcfg = app.config.partners.get(partner_id)
    if pcfg is None:
        return frozenset()
    declared: frozenset[str] = adapter_class(pcfg.adapter, partner_id).capabilities
    return declared if pcfg.capabilities is None else declared & frozenset(pcfg.capabilities)


def accepts(app: App, partner_id: str, operation: str) -> bool:
    """True if the partner takes this per-claim operation."""
    return OPERATION_CAPABILITY.get(operation, operation) in capabilities(app, partner_id)


def require(app: App, partner_id: str, operation: str) -> None:
    """Raise ``Unsupported`` (naming the partner and the operation) unless the partner takes it."""
    if not accepts(app, partner_id, operation):
        capability = OPERATION_CAPABILITY.get(operation, operation)
        raise Unsupported(partner_id, operation, CAPABILITY_TEXT.get(capability, capability))


def partner_reference(events: list[dict[str, Any]]) -> str | None:
    """The partner's file number from a claim's events (the latest one that names it)."""
    for event in reversed(events):
        ref = (event.get("data") or {}).get("partner_reference")
        if ref and not str(ref).endswith(".p7m"):  # a file partner's receipt names the file, not a case
            return str(ref)
    return None


def instruction_id(item: OutboxItem) -> str:
    """The instruction document's id: the outbox key, written with '-' for ':' like a batch id."""
    return item.idempotency_key.replace(":", "-")


def run_operation(worker: Dispatcher, item: OutboxItem) -> None:
    """Send one per-claim operation to its partner and record the answer on the claim."""
    if item.operation not in OPERATIONS:
        raise DeliveryError(f"unknown outbox operation '{item.operation}'", retryable=False)
    app = worker.app
    try:
        require(app, item.partner_id, item.operation)  # queued earlier; the config may have changed since
    except Unsupported as exc:
        raise DeliveryError(str(exc), retryable=False) from exc
    claim_id = int(item.payload["claim_id"])
    _forget_text(app, item)
    with read_tx(app.engine) as conn:
        state = claim_store.current_states(conn, [claim_id]).get(claim_id)
        events = claim_store.history(conn, claim_id)
    ref = partner_reference(events)
    if state in NOT_YET_AT_PARTNER:
        return _wait_for_claim(worker, item, claim_id, state)
    if state in TERMINAL and not any(e["state"] in _SENT for e in events):
        return _not_forwarded(worker, item, claim_id, state)
    with read_tx(app.engine) as conn:
        data = _data_for_partner(app, conn, item, claim_id)
    adapter = worker._adapter(item.partner_id)
    if isinstance(adapter, InstructionAdapter):
        return _send_instruction(worker, item, adapter, claim_id, ref, data)
    if not isinstance(adapter, UpdatingAdapter):
        raise DeliveryError(f"partner {item.partner_id} declares {item.operation} but its adapter has no "
                            f"operate", retryable=False)
    op = Operation(operation=item.operation, key=f"{claim_id}:{item.partner_id}:{item.operation}:{item.id}",
                   claim_id=claim_id, partner_reference=ref, data=data)
    result: OperationResult = worker.call(item.partner_id, adapter.operate, op, item=item)
    with write_tx(app.engine) as conn:
        if not _settle(conn, item, {"operation": item.operation, "detail": result.detail}, app):
            return
        claim_store.annotate(conn, claim_id, Actor.PARTNER, "partner_ack",
                             {"operation": item.operation, "outbox": item.id, "detail": result.detail}, now=app.now())
        if result.updates:  # a refresh: the claim's history at the partner
            apply_updates(app, item.partner_id, result.updates, conn=conn)
    log.info("dispatch.operation outbox=%d partner=%s op=%s claim=%d", item.id, item.partner_id, item.operation,
             claim_id)


def _forget_text(app: App, item: OutboxItem) -> None:
    # A row queued before the text was kept in ``messages`` only carries it in plain JSON; migration 0015 took it
    # out of done and dead rows only, so such a row sent now would keep it when done, for good, and after the
    # claim's erasure. Its holder drops it at the first lease: the text is read from ``messages`` like any other.
    if item.operation == "send_message" and "text" in item.payload and "message_id" in item.payload:
        payload = {k: v for k, v in item.payload.items() if k != "text"}
        with write_tx(app.engine) as conn:
            if outbox_store.replace_payload(conn, item, payload):
                item.payload = payload


def _data_for_partner(app: App, conn: Connection, item: OutboxItem, claim_id: int) -> dict[str, Any]:
    """The operation's data as the partner gets it. A message's text is kept encrypted in ``messages`` only and
    read here, when it is sent (a row without the message's id, hand-written, is sent as it is); a cancel's
    reason is opened here with the claim's key (``event_notes``)."""
    data = {k: v for k, v in item.payload.items() if k != "claim_id"}
    if item.operation == "send_message" and "message_id" in data:
        try:
            message_id = int(data["message_id"])
        except (TypeError, ValueError):
            raise DeliveryError(f"outbox row {item.id}: message id {str(data['message_id'])[:40]!r} is not a "
                                "message of the gateway's", retryable=False) from None
        text = message_store.text_of(conn, app.cipher, message_id, claim_id)
        if text is None:
            raise DeliveryError(f"message {data['message_id']} of claim {claim_id} is no longer stored",
                                retryable=False)
        data["text"] = text
    if event_notes.SEALED in data:  # a cancel reason, sealed under the claim's key; gone with an erasure
        reason = event_notes.open_reason(event_notes.claim_deks(conn, app.cipher, [claim_id]), claim_id,
                                         data.pop(event_notes.SEALED))
        if reason:
            data["reason"] = reason
    data.pop(event_notes.WITHHELD, None)
    return data


def _settle(conn: Connection, item: OutboxItem, receipt: dict[str, Any], app: App) -> bool:
    """Done with the partner's answer; an answer that came after the lease ran out still counts, unless another
    worker has recorded one already (the partner folded both by the idempotency key)."""
    if outbox_store.complete(conn, item, receipt, now=app.now()):
        outbox_store.end_hold(conn, item.partner_id, now=app.now())  # the partner took work: its wait is over
        return True
    if outbox_store.settle_late(conn, item, receipt, now=app.now()):
        log.warning("dispatch.lease_lost outbox=%d: the partner's late answer settles it", item.id)
        outbox_store.end_hold(conn, item.partner_id, now=app.now())
        return True
    log.warning("dispatch.lease_lost outbox=%d: another worker recorded it", item.id)
    return False


def _wait_for_claim(worker: Dispatcher, item: OutboxItem, claim_id: int, state: State) -> None:
    # Sent now, the request would reach a partner that does not know the claim yet (an answer of "unknown
    # claim", a dead letter, the request lost) or carry no file number; it goes once the receipt is recorded
    # (or a status of the partner shows it has the claim). Waiting costs no attempt.
    cfg = worker.app.config.dispatcher
    quick = max(cfg.backoff_base_seconds, cfg.poll_seconds)
    # a failed claim waits for an operator (or the partner's word that it has the claim), a held one for the
    # client's release: looked at less often
    retry_in = max(quick, min(cfg.backoff_max_seconds, 60.0)) if state in _SLOW_WAIT else quick
    with write_tx(worker.app.engine) as conn:
        outbox_store.defer(conn, item, f"waiting: claim {claim_id} is {state.value}, not yet received by the partner",
                           retry_in=retry_in, now=worker.app.now())
    log.info("dispatch.operation_waits outbox=%d partner=%s op=%s claim=%d state=%s", item.id, item.partner_id,
             item.operation, claim_id, state.value)


def _not_forwarded(worker: Dispatcher, item: OutboxItem, claim_id: int, state: State) -> None:
    # The claim ended (cancelled, closed as paid, ...) before any batch took it, and will not move again. Sent,
    # the request would reach a partner that never had the claim: an "unknown claim" dead letter, or a message
    # (with whatever the client wrote about the debtor) filed by an agency that was never given the case.
    app = worker.app
    why = f"claim {claim_id} is {state.value} and never reached the partner: not forwarded"
    with write_tx(app.engine) as conn:
        if not outbox_store.complete(conn, item, {"operation": item.operation, "not_forwarded": why}, now=app.now()):
            log.warning("dispatch.lease_lost outbox=%d: another worker has it", item.id)
            return
        claim_store.annotate(conn, claim_id, Actor.SYSTEM, "request_not_forwarded",
                             {"operation": item.operation, "outbox": item.id, "state": state.value}, now=app.now())
    log.info("dispatch.operation_not_forwarded outbox=%d partner=%s op=%s claim=%d state=%s", item.id,
             item.partner_id, item.operation, claim_id, state.value)


def _send_instruction(worker: Dispatcher, item: OutboxItem, adapter: InstructionAdapter, claim_id: int,
                      ref: str | None, data: dict[str, Any]) -> None:
    app = worker.app
    iid = instruction_id(item)
    with read_tx(app.engine) as conn:
        creditor_reference = conn.execute(select(claims.c.creditor_reference)
                                          .where(claims.c.id == claim_id)).scalar_one()
    meta = InstructionMeta(instruction_id=iid, operation=item.operation, created_at=app.now(),
                           sender=app.config.gateway_id, client_id=item.client_id, partner_id=item.partner_id,
                           claim_id=claim_id, creditor_reference=creditor_reference, file_number=ref)
    xml = render_instruction(meta, data)
    document = Batch(batch_id=iid, partner_id=item.partner_id, filename=f"{iid}.xml.p7m",
                     payload=worker.seal(item.partner_id, xml), claim_ids=[claim_id])
    receipt = worker.call(item.partner_id, adapter.deliver_instruction, document, item=item)
    with write_tx(app.engine) as conn:
        if not _settle(conn, item, {"operation": item.operation, "instruction": iid,
                                    "partner_reference": receipt.partner_reference, "detail": receipt.detail}, app):
            return
        claim_store.annotate(conn, claim_id, Actor.SYSTEM, "instruction_delivered",
                             {"operation": item.operation, "instruction": iid, "outbox": item.id}, now=app.now())
    log.info("dispatch.instruction outbox=%d partner=%s op=%s claim=%d instruction=%s", item.id, item.partner_id,
             item.operation, claim_id, iid)
