"""Erasure of one debtor's or one claim's personal data, and per-client retention.

Erasing a claim deletes its data key (``claim_keys``: crypto-shredding of the value in the append-only
``claims`` row and of its blind name index), its documents, message texts and content fingerprint, and
appends an ``erased`` event (who, when, why; a reason that names the debtor is refused, since it would outlive
the data: ``domain/personal_text``); the client's credit checks of that debtor
lose their data too (their audit rows stay). What stays: the claim's amounts, dates,
references, partner and its whole event history, which accounting needs. ``gateway retention run``
erases the closed claims of clients with ``retention_days_after_close`` and deletes their raw files, and
every sandbox claim (in any state) and raw file older than its sandbox's ``retention_days``
(docs/sandbox.md), and the data of credit checks past their retention (docs/credit.md); ``serve`` runs the
sandbox and the credit check parts every hour.
"""

from __future__ import annotations

import getpass
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import Connection, delete, select

from gateway.domain.personal_text import mention
from gateway.domain.unicode_forms import stored_forms
from gateway.bootstrap import App
from gateway.domain.lifecycle import TERMINAL, Actor
from gateway.errors import NotFound
from gateway.services.claim_ops import InvalidRequest
from gateway.store import claims as claim_store
from gateway.store import credit_checks
from gateway.store.db import read_tx, write_tx
from gateway.store.keys_store import claim_keys
from gateway.store.schema import (claim_current, claim_fingerprints, claims, documents, messages, outbox,
                                  submission_payloads, submissions)

log = logging.getLogger(__name__)
ERASED = "erased"  # the event kind


@dataclass
class ErasureReport:
    erased: list[int] = field(default_factory=list)
    already: list[int] = field(default_factory=list)  # erased before: nothing left to destroy
    credit_checks: int = 0  # credit checks of these debtors at their clients whose data went with them


def find(app: App, *, claim_id: int | None = None, client_id: str | None = None, reference: str | None = None,
         debtor_name: str | None = None) -> list[int]:
    """The claims one erasure request names: an id, a client's reference, or a debtor's name at a client."""
    with read_tx(app.engine) as conn:
        if claim_id is not None:
            claim_store.get_row(conn, claim_id)
            return [claim_id]
        if not client_id or not (reference or debtor_name):
            raise InvalidRequest("name a claim id, or a client with a reference or a debtor name", "claim")
        q = select(claims.c.id).where(claims.c.client_id == client_id)
        # In both Unicode forms: a reference or name stored before every channel composed its input may be
        # decomposed, and an erasure must find it.
        if reference:
            q = q.where(claims.c.creditor_reference.in_(stored_forms(reference)))
        else:
            tokens = app.cipher.blind_indexes(debtor_name or "", client_id)
            q = q.where(claims.c.id.in_(select(claim_keys.c.claim_id).where(claim_keys.c.client_id == client_id,
                                                                            claim_keys.c.name_index.in_(tokens))))
        found = [int(i) for i in conn.execute(q.order_by(claims.c.id)).scalars()]
    if not found:
        raise NotFound("no claim matches (a name must be written as stored; erased claims are not found by name)")
    return found


def erase(app: App, claim_ids: list[int], reason: str, *, actor: Actor = Actor.OPERATOR,
          by: str | None = None, with_credit_checks: bool = True) -> ErasureReport:
    """Destroy the personal data of these claims, each with an ``erased`` event; idempotent.

    With them go the data of the credit checks their client made of the same debtor (by the debtor's blind
    name index, as the claim page links them; the checks' audit rows stay), in the same transaction: erasing
    a debtor is one request, not one per store. Retention passes ``with_credit_checks=False``: checks have a
    retention period of their own.
    """
    if not reason.strip():
        raise InvalidRequest("an erasure needs a reason (kept in the claim's history)", "reason")
    who = by or getpass.getuser()
    report = ErasureReport()
    with write_tx(app.engine) as conn:
        if actor is not Actor.SYSTEM:  # the gateway's own reasons (retention) are fixed texts
            _refuse_personal_reason(conn, app, claim_ids, reason)
        for cid in claim_ids:
            if with_credit_checks:
                report.credit_checks += _erase_checks_of_debtor(conn, cid)
            if _erase_one(conn, cid):
                claim_store.annotate(conn, cid, actor, ERASED, {"by": who, "reason": reason.strip()[:500]},
                                     now=app.now())
                report.erased.append(cid)
            else:
                report.already.append(cid)
    log.info("erasure.done claims=%d already=%d credit_checks=%d by=%s", len(report.erased), len(report.already),
             report.credit_checks, who)
    return report


def _refuse_personal_reason(conn: Connection, app: App, claim_ids: list[int], reason: str) -> None:
    """An erasure's reason outlives the data it erases (the claim's key goes, the event stays): one naming the
    debtor would keep what the erasure removes. Refused before anything is erased; the error names the field,
    never the value."""
    for row in claim_store.rows_by_ids(conn, claim_ids):
        field_name = mention(reason, claim_store.decode(row, app.cipher).debtor)
        if field_name is not None:
            raise InvalidRequest(f"the reason contains the debtor's {field_name} (claim {row['id']}); it stays in "
                                 "the claim's history after the erasure: write the request's reference instead, "
                                 "such as a ticket number", "reason")


def _erase_checks_of_debtor(conn: Connection, claim_id: int) -> int:
    """Erase the credit checks of the claim's debtor at the claim's client, while its name index is still there."""
    row = conn.execute(select(claim_keys.c.client_id, claim_keys.c.name_index)
                       .where(claim_keys.c.claim_id == claim_id)).first()
    if row is None or row.name_index is None:
        return 0
    return credit_checks.erase(conn, row.client_id, subject_index=str(row.name_index))


def _erase_one(conn: Connection, claim_id: int) -> bool:
    gone = conn.execute(delete(claim_keys).where(claim_keys.c.claim_id == claim_id)).rowcount
    conn.execute(delete(documents).where(documents.c.claim_id == claim_id))
    conn.execute(delete(messages).where(messages.c.claim_id == claim_id))
    conn.execute(delete(claim_fingerprints).where(claim_fingerprints.c.claim_id == claim_id))
    return bool(gone)


@dataclass
class RetentionReport:
    claims: dict[str, int] = field(default_factory=dict)  # client -> claims erased
    payloads: dict[str, int] = field(default_factory=dict)  # client -> raw files deleted
    credit_checks: dict[str, int] = field(default_factory=dict)  # client -> credit checks whose data went
    agency_files: dict[str, int] = field(default_factory=dict)  # sandbox partner -> its batch files deleted


def run_retention(app: App, now: datetime | None = None) -> RetentionReport:
    """Erase closed claims and delete raw files older than each client's retention period (sandboxes too)."""
    now = now or app.now()
    report = run_sandbox_retention(app, now)
    for client_id, client in sorted(app.config.clients.items()):
        days = client.retention_days_after_close
        if days is None or client.sandbox_of is not None:
            continue
        cutoff = now - timedelta(days=days)
        with read_tx(app.engine) as conn:
            due = [int(i) for i in conn.execute(
                select(claim_current.c.claim_id)
                .where(claim_current.c.client_id == client_id, claim_current.c.updated_at < cutoff,
                       claim_current.c.state.in_([s.value for s in TERMINAL]),
                       claim_current.c.claim_id.in_(select(claim_keys.c.claim_id)))
                .order_by(claim_current.c.claim_id)).scalars()]
        _erase_due(app, report, client_id, due, f"retention: {days} days after close")
        _drop_payloads(app, report, client_id, cutoff)
    run_credit_retention(app, now, report)
    log.info("retention.done claims=%d files=%d credit_checks=%d", sum(report.claims.values()),
             sum(report.payloads.values()), sum(report.credit_checks.values()))
    return report


def run_credit_retention(app: App, now: datetime | None = None,
                         report: RetentionReport | None = None) -> RetentionReport:
    """Erase the data of credit checks older than the client's ``credit.retention_days`` (else the default
    ``credit.retention_days``); the audit rows stay. A client whose credit section was removed keeps the default."""
    now = now or app.now()
    report = report if report is not None else RetentionReport()
    for client_id, client in sorted(app.config.clients.items()):
        own = client.credit.retention_days if client.credit is not None else None
        days = own if own is not None else app.config.credit.retention_days
        if days is None:
            continue
        with write_tx(app.engine) as conn:
            n = credit_checks.erase(conn, client_id, before=now - timedelta(days=days))
        if n:
            report.credit_checks[client_id] = n
    return report


def run_sandbox_retention(app: App, now: datetime | None = None) -> RetentionReport:
    """Erase every sandbox claim received longer ago than its sandbox's ``retention_days``, whatever its state."""
    now = now or app.now()
    report = RetentionReport()
    shortest: dict[str, int] = {}  # sandbox partner -> the shortest retention of the sandboxes using it
    for client_id, client in sorted(app.config.clients.items()):
        if client.sandbox_of is None or client.sandbox is None:
            continue
        days = client.sandbox.retention_days
        cutoff = now - timedelta(days=days)
        with read_tx(app.engine) as conn:
            due = [int(i) for i in conn.execute(
                select(claim_current.c.claim_id)
                .where(claim_current.c.client_id == client_id, claim_current.c.received_at < cutoff,
                       claim_current.c.claim_id.in_(select(claim_keys.c.claim_id)))
                .order_by(claim_current.c.claim_id)).scalars()]
        _erase_due(app, report, client_id, due, f"sandbox retention: {days} days after receipt")
        _drop_payloads(app, report, client_id, cutoff)
        keep = min(days, shortest.get(client.default_partner or "", days))
        shortest[client.default_partner or ""] = keep
    for partner_id, days in sorted(shortest.items()):
        _drop_agency_files(app, report, partner_id, now - timedelta(days=days))
    if report.claims or report.payloads or report.agency_files:
        log.info("retention.sandbox claims=%d files=%d agency_files=%d", sum(report.claims.values()),
                 sum(report.payloads.values()), sum(report.agency_files.values()))
    return report


def _drop_agency_files(app: App, report: RetentionReport, partner_id: str, cutoff: datetime) -> None:
    """The simulated agency's copies of old batches and instructions: they hold debtor data its key opens.

    A sandbox partner's folder serves several sandboxes and a batch file does not name its client, so the
    shortest retention of the sandboxes using it applies. The agency's books keep their cases. Only files
    under a name the gateway issued for a sandbox's batch or instruction to this partner are deleted: should
    the folder ever hold anything else (config refuses a folder shared with another partner), it stays.
    """
    partner = app.config.partners.get(partner_id)
    if partner is None or not partner.sandbox or "path" not in partner.options:
        return
    sandboxes = [cid for cid, c in app.config.clients.items() if c.sandbox_of is not None]
    with read_tx(app.engine) as conn:
        # Batch and instruction files are named after their outbox key (dispatch.py, operations.py).
        ours = {f"{key.replace(':', '-')}.xml.p7m" for key in conn.execute(
            select(outbox.c.idempotency_key).where(outbox.c.partner_id == partner_id,
                                                   outbox.c.client_id.in_(sandboxes))).scalars()}
    root = app.config.path(str(partner.options["path"]))
    folders = [root, root / "processed", root / "instructions"]
    if partner.options.get("instruction_path"):
        folders.append(app.config.path(str(partner.options["instruction_path"])))
    gone = 0
    for folder in dict.fromkeys(folders):
        for path in sorted(folder.glob("*.p7m")) if folder.is_dir() else []:
            if path.name not in ours:
                continue
            try:
                if datetime.fromtimestamp(path.stat().st_mtime, timezone.utc) < cutoff:
                    path.unlink()
                    gone += 1
            except FileNotFoundError:
                continue
    if gone:
        report.agency_files[partner_id] = gone


def _erase_due(app: App, report: RetentionReport, client_id: str, due: list[int], reason: str) -> None:
    for i in range(0, len(due), 500):
        done = erase(app, due[i:i + 500], reason, actor=Actor.SYSTEM, by="retention", with_credit_checks=False)
        report.claims[client_id] = report.claims.get(client_id, 0) + len(done.erased)


def _drop_payloads(app: App, report: RetentionReport, client_id: str, cutoff: datetime) -> None:
    with write_tx(app.engine) as conn:
        old = select(submissions.c.id).where(submissions.c.client_id == client_id,
                                             submissions.c.received_at < cutoff,
                                             submissions.c.status != "processing")
        subs = {int(s) for s in conn.execute(select(submission_payloads.c.submission_id)
                                             .where(submission_payloads.c.submission_id.in_(old))).scalars()}
        conn.execute(delete(submission_payloads).where(submission_payloads.c.submission_id.in_(old)))
    if subs:
        report.payloads[client_id] = report.payloads.get(client_id, 0) + len(subs)
