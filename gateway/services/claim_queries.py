"""What a client may read about its own claims: one claim, its history, lists, changes, explanations.

Every query is scoped to the calling client: another client's claim or submission is "not found".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, RowMapping, func, select

from gateway.domain.unicode_forms import stored_forms
from gateway.bootstrap import App
from gateway.domain.lifecycle import State
from gateway.domain.model import Claim, from_minor
from gateway.errors import NotFound
from gateway.services.claim_ops import InvalidRequest, owned_row
from gateway.store import claim_search
from gateway.store import event_notes
from gateway.store import claims as claim_store
from gateway.store import documents as doc_store
from gateway.store import labels as label_store
from gateway.store import submissions as sub_store
from gateway.store.claim_search import ClaimFilter
from gateway.store.projection import MONEY
from gateway.store.db import read_tx
from gateway.store.schema import claim_current, claim_events, claims, submissions
from gateway.store.sql import loads, utcnow
from gateway.services.partner_updates import collection_run_status

MAX_PAGE = 500

# What would fix a claim held or rejected for a code: the answer ExplainClaim gives a client.
FIXES = {
    "awaiting_release": "release it with ReleaseClaims (by claim id or submission) to start the handover",
    "debtor_minor": "name the debtor's legal representative and submit the claim again, or release it after review",
    "no_partner": "ask the operator to configure a partner for this claim (routing rule or default partner)",
    "missing_field": "fill in the named field and submit the claim again",
    "invalid_iban": "correct the IBAN (check digits) or leave the bank account out",
    "invalid_amount": "send the amount with at most the currency's decimal places",
    "amount_not_positive": "amounts must be greater than 0",
    "date_in_future": "correct the date; only dates up to today are accepted there",
    "no_contact": "add a postal address or an e-mail address of the debtor",
    "nothing_open": "nothing is open: do not hand over a paid claim",
    "time_barred": ("the limitation period has ended, so the agency could not enforce the claim: if it restarted or "
                    "was suspended (acknowledgement, part payment, court dunning order, negotiations), send that date "
                    "with the claim, or release it with a reason (e.g. 'limitation interrupted by acknowledgement on "
                    "2025-03-01'), which is kept in its history; otherwise do not hand it over"),
    "limitation_near": "nothing to do: the claim was accepted, and the agency receives the limitation date to act first",
    "duplicate_reference": "use a new creditor reference for a different claim",
    "delivery_failed": "nothing to do for you: the gateway retries; the operator sees the error",
    "partner_rejected": "read the partner's reason; correct the claim and submit it with a new reference",
}


@dataclass
class ClaimView:
    claim_id: int
    state: str
    state_since: Any
    created_at: Any
    submission: str
    claim: Claim
    labels: list[str]
    documents: list[dict[str, Any]]
    account: CaseAccount


@dataclass
class CaseAccount:
    """The claim's case account now (amounts as Decimal in its currency) and where it stands at the partner."""

    currency: str
    principal: Decimal
    fees: Decimal
    interest: Decimal
    agency_costs: Decimal
    paid_direct: Decimal
    paid_agency: Decimal
    payouts: Decimal
    written_off: Decimal
    open: Decimal
    overpaid: Decimal
    stage: str | None
    partner_file_number: str | None
    closing_reason: str | None
    unread: bool


def case_account(row: dict[str, Any]) -> CaseAccount:
    """The projection row of a claim as its case account."""
    cur = row["currency"]
    money = {m: from_minor(row[f"{m}_minor"], cur) for m in (*MONEY, "open", "overpaid")}
    return CaseAccount(currency=cur, stage=row["stage"], partner_file_number=row["partner_file_number"],
                       closing_reason=row["closing_reason"],
                       unread=row["changed_event_id"] > row["seen_event_id"], **money)


@dataclass
class Reason:
    code: str
    message: str
    fix: str
    field: str | None = None


@dataclass
class Explanation:
    claim_id: int
    state: str
    summary: str
    reasons: list[Reason] = field(default_factory=list)


def get_claim(app: App, client_id: str, claim_id: int) -> ClaimView:
    with read_tx(app.engine) as conn:
        owned_row(conn, client_id, claim_id)
        return _view(app, conn, claim_id)


def claim_by_reference(app: App, client_id: str, reference: str) -> ClaimView:
    """The client's claim with its own creditor reference (trimmed, as stored)."""
    ref = reference.strip()
    with read_tx(app.engine) as conn:
        found = claim_store.existing_references(conn, client_id, [ref]) if ref else {}
        if ref not in found:
            raise NotFound("no claim with this creditor_reference")
        return _view(app, conn, int(found[ref]["id"]))


MAX_STATUSES = 1000


@dataclass
class ClaimStatus:
    """Where one claim stands, by the client's reference; ``found`` False: no claim of this client has it."""

    creditor_reference: str
    found: bool
    claim_id: int | None = None
    state: str | None = None
    state_since: datetime | None = None
    stage: str | None = None
    partner_id: str | None = None
    partner_file_number: str | None = None
    currency: str | None = None
    open_amount: Decimal | None = None
    overpaid_amount: Decimal | None = None
    unread: bool | None = None


def statuses(app: App, client_id: str, references: list[str]) -> list[ClaimStatus]:
    """The status of up to MAX_STATUSES claims by reference, in the order asked (from the projection)."""
    refs = [r.strip() for r in references]
    if not 1 <= len(refs) <= MAX_STATUSES:
        raise InvalidRequest(f"send 1 to {MAX_STATUSES} references, got {len(refs)}", "references")
    cc = claim_current
    # A non-ASCII reference also in its decomposed form: stored so before every channel composed its input.
    decomposed = {r: d for r in refs if r for d in stored_forms(r) if d != r}
    wanted = sorted({r for r in refs if r} | set(decomposed.values()))
    rows: dict[str, RowMapping] = {}
    with read_tx(app.engine) as conn:
        for i in range(0, len(wanted), 500):  # stay under every driver's parameter limit
            q = (select(claims.c.creditor_reference, cc.c.claim_id, cc.c.state, cc.c.updated_at, cc.c.stage,
                        cc.c.partner_id, cc.c.partner_file_number, cc.c.currency, cc.c.open_minor,
                        cc.c.overpaid_minor, (cc.c.changed_event_id > cc.c.seen_event_id).label("unread"))
                 .join(cc, cc.c.claim_id == claims.c.id)
                 .where(claims.c.client_id == client_id, claims.c.creditor_reference.in_(wanted[i:i + 500])))
            rows.update({r["creditor_reference"]: r for r in conn.execute(q).mappings()})
    out = []
    for ref in refs:
        r = rows.get(ref) or (rows.get(decomposed[ref]) if ref in decomposed else None)
        out.append(ClaimStatus(creditor_reference=ref, found=False) if r is None else ClaimStatus(
            creditor_reference=ref, found=True, claim_id=r["claim_id"], state=r["state"],
            state_since=r["updated_at"], stage=r["stage"], partner_id=r["partner_id"],
            partner_file_number=r["partner_file_number"], currency=r["currency"],
            open_amount=from_minor(r["open_minor"], r["currency"]),
            overpaid_amount=from_minor(r["overpaid_minor"], r["currency"]), unread=bool(r["unread"])))
    return out


def _view(app: App, conn: Connection, claim_id: int) -> ClaimView:
    row = claim_store.get_row(conn, claim_id)
    now = claim_store.current(conn, claim_id)
    ref = conn.execute(select(submissions.c.reference).where(submissions.c.id == row["submission_id"])).scalar()
    labels = label_store.for_claims(conn, [claim_id]).get(claim_id, [])
    docs = doc_store.for_claims(conn, app.cipher, [claim_id], content=False).get(claim_id, [])
    claim = claim_store.decode(row, app.cipher)
    return ClaimView(claim_id=claim_id, state=now["state"], state_since=now["updated_at"],
                     created_at=row["created_at"], submission=str(ref), claim=claim, labels=labels, documents=docs,
                     account=case_account(now))


def operator_claim(app: App, claim_id: int) -> ClaimView:
    """One claim of any client, for the operator (``gateway claims show``)."""
    with read_tx(app.engine) as conn:
        return _view(app, conn, claim_id)


def operator_list(app: App, *, client_id: str | None = None, state: str | None = None,
                  submission: str | None = None, since: datetime | None = None, until: datetime | None = None,
                  limit: int = 100, offset: int = 0) -> list[RowMapping]:
    """Claims of any (or one) client with their current state, for the operator (``gateway claims list``)."""
    with read_tx(app.engine) as conn:
        sid = sub_store.get(conn, submission)["id"] if submission else None
        return claim_store.listing(conn, client_id=client_id, state=state, submission_id=sid, since=since,
                                   until=until, limit=limit, offset=offset)


def history(app: App, client_id: str, claim_id: int) -> list[dict[str, Any]]:
    with read_tx(app.engine) as conn:
        owned_row(conn, client_id, claim_id)
        return event_notes.reveal(conn, app.cipher, claim_store.history(conn, claim_id))


def get_submission(app: App, client_id: str, reference: str) -> tuple[RowMapping, list[RowMapping], str]:
    """A submission of the client with its findings and its handover status (processing|handed_over)."""
    with read_tx(app.engine) as conn:
        sub = sub_store.get_owned(conn, reference, client_id)
        return sub, sub_store.findings(conn, sub["id"]), collection_run_status(conn, sub["id"])


def list_claims(app: App, client_id: str, f: ClaimFilter) -> tuple[list[RowMapping], int, bool]:
    """A page of the client's claims, the total and whether it is exact (see ``claim_search.COUNT_AHEAD``)."""
    if f.sort not in claim_search.SORTABLE:
        raise InvalidRequest(f"cannot sort by '{f.sort}' (one of {', '.join(claim_search.SORTABLE)})", "sort")
    if f.date_field not in claim_search.DATE_FIELDS:
        raise InvalidRequest(f"no date '{f.date_field}' (one of {', '.join(claim_search.DATE_FIELDS)})",
                             "date_field")
    bad = [s for s in f.states if s not in {st.value for st in State}]
    if bad:
        raise InvalidRequest(f"unknown state(s) {', '.join(bad)}", "states")
    if not 1 <= f.limit <= MAX_PAGE or f.offset < 0:
        raise InvalidRequest(f"limit must be 1..{MAX_PAGE} and offset >= 0", "limit")
    if f.text:
        f.text = f.text.strip()[:128]
        f.debtor_tokens = app.cipher.blind_indexes(f.text, client_id)
    with read_tx(app.engine) as conn:
        return claim_search.search(conn, client_id, f)


def changes(app: App, client_id: str, cursor: int, limit: int, *, from_now: bool = False,
            strict: bool = True) -> tuple[list[dict[str, Any]], int, bool]:
    """Events after ``cursor``; returns (events, next cursor, whether more are waiting).

    ``from_now`` answers no events and the head (the newest event id) as the cursor, so a new reader starts
    there instead of replaying everything. A cursor beyond the head was never handed out: refused, as is a
    limit outside 1..MAX_PAGE (a silent cut would look like a short page). ``strict=False`` reads them as the
    first contract did (SOAP v1, whose clients rely on it): the limit brought into 1..MAX_PAGE, a negative
    cursor read as 0, a cursor beyond the head answered with no events.
    """
    if not strict:
        limit, cursor = max(1, min(limit, MAX_PAGE)), max(0, cursor)
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"must be 1 to {MAX_PAGE}, got {limit}", "limit")
    if cursor < 0:
        raise InvalidRequest(f"must be 0 or a next_cursor of an earlier answer, got {cursor}", "cursor")
    with read_tx(app.engine) as conn:
        settle = app.config.soap.changes_settle_seconds
        before = utcnow() - timedelta(seconds=settle) if conn.dialect.name == "postgresql" and settle else None
        if from_now:
            return [], _head(conn, client_id, before), False
        rows = claim_search.changes(conn, client_id, cursor, limit + 1, before)
        if strict and not rows and cursor > (newest := _head(conn, client_id)):
            raise InvalidRequest(f"{cursor} is ahead of the newest change ({newest}): send 0, a "
                                 "next_cursor of an earlier answer, or from_now", "cursor")
        more = len(rows) > limit
        events = event_notes.reveal(conn, app.cipher, [{**r, "data": loads(r["data"]), "unread": bool(r["unread"])}
                                                       for r in rows[:limit]])
    return events, (events[-1]["id"] if events else cursor), more


def _head(conn: Connection, client_id: str, settled_before: datetime | None = None) -> int:
    """The client's newest event id (0 before its first), by the (client_id, id) index."""
    q = select(func.max(claim_events.c.id)).where(claim_events.c.client_id == client_id)
    if settled_before is not None:
        q = q.where(claim_events.c.created_at < settled_before)
    return int(conn.execute(q).scalar() or 0)


# What a change is, beside its ``kind``: readers that only want state changes filter on it.
CHANGES = ("state_change", "client_request", "partner_update", "gateway_note")


def change_of(event: Any) -> str:
    """``state_change`` when the state moved, else who recorded the event (client, partner, the gateway)."""
    if event["state"] != event["from_state"]:
        return "state_change"
    if event["actor"] == "client":
        return "client_request"
    if event["actor"] == "partner":
        return "partner_update"
    return "gateway_note"


def explain(app: App, client_id: str, claim_id: int) -> Explanation:
    """Why a claim is where it is, and what would move it on."""
    with read_tx(app.engine) as conn:
        owned_row(conn, client_id, claim_id)
        hist = event_notes.reveal(conn, app.cipher, claim_store.history(conn, claim_id))
        row = conn.execute(select(claims.c.submission_id, claims.c.creditor_reference)
                           .where(claims.c.id == claim_id)).mappings().one()
        findings = [f for f in sub_store.findings(conn, row["submission_id"])
                    if f["reference"] == row["creditor_reference"]]
    last = hist[-1]
    state = State(last["state"])
    out = Explanation(claim_id=claim_id, state=state.value, summary=_SUMMARY.get(state, f"the claim is {state.value}"))
    if state is State.HELD:
        entered = next(e for e in reversed(hist) if e["state"] == "held" and e["from_state"] != "held")
        held_codes = (entered["data"] or {}).get("codes") or []
        by_code = {f["code"]: f for f in findings}
        for code in held_codes or ["held_by_operator"]:
            f = by_code.get(code)
            out.reasons.append(Reason(code=code, message=f["message"] if f else "held",
                                      fix=FIXES.get(code, "ask the operator"), field=f["field"] if f else None))
    elif state in (State.FAILED, State.REJECTED):
        data = last["data"] or {}
        code = "delivery_failed" if state is State.FAILED else str(data.get("code") or "partner_rejected")
        message = str(data.get("error") or data.get("reason") or data.get("message") or last["kind"])
        out.reasons.append(Reason(code=code, message=message, fix=FIXES.get(code, "ask the operator")))
    for f in findings:  # warnings stay useful in every state
        if f["severity"] == "warning":
            out.reasons.append(Reason(code=f["code"], message=f["message"], field=f["field"],
                                      fix=FIXES.get(f["code"], "check the value; the claim was accepted")))
    return out


_SUMMARY = {
    State.HELD: "the claim is held and not handed over yet",
    State.QUEUED: "the claim waits for delivery to the partner",
    State.DELIVERING: "the claim is being delivered to the partner",
    State.HANDED_OVER: "the partner has received the claim",
    State.FAILED: "the delivery failed; the gateway retries",
    State.REJECTED: "the claim was rejected",
}
