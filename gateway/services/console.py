"""Read use cases the web console needs beyond ``claim_queries``: a claim page, paged runs and the outbox.

Each call is one read (or, for a client opening a claim, one read and the read mark) and scoped the way
the caller is: a client's calls see only that client's claims and submissions (another client's id is
``NotFound``, like an unknown one); the operator's calls see everything.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import xlsxwriter  # type: ignore[import-untyped]
from sqlalchemy import RowMapping, func, select

from gateway.bootstrap import App
from gateway.domain.lifecycle import TERMINAL, State
from gateway.domain.model import from_minor
from gateway.errors import NotFound
from gateway.services import claim_export, claim_ops, claim_queries, operations, projection_ops
from gateway.services.ack import safe_cell
from gateway.services.claim_queries import ClaimView, Explanation
from gateway.services.listing import Page, outbox_page, submissions_page
from gateway.services.partner_updates import collection_run_statuses
from gateway.store import documents as doc_store
from gateway.store import labels as label_store
from gateway.store import submissions as sub_store
from gateway.store.claim_search import ClaimFilter
from gateway.store.db import read_tx
from gateway.store.schema import claim_current, claim_events

# States whose claim a client may cancel from the console (claim_ops.cancel decides the rest).
CANCELLABLE = frozenset(State) - TERMINAL - {State.RECEIVED}
EXPLAINED = frozenset({State.HELD, State.FAILED, State.REJECTED})


@dataclass
class ClaimPage:
    view: ClaimView
    history: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    explanation: Explanation | None  # for held, failed and rejected claims
    actions: set[str] = field(default_factory=set)  # cancel, report_payment, send_message, refresh,
    # request_monitoring: what the claim's partner takes in its state


def _actions(app: App, view: ClaimView) -> set[str]:
    state = State(view.state)
    if state in TERMINAL:
        return set()
    partner = view.claim.partner_id
    at_partner = state in claim_ops.AT_PARTNER and state is not State.FAILED

    def offered(operation: str, reach: bool = at_partner) -> bool:  # before the handover the gateway alone records it
        return not reach or bool(partner and operations.accepts(app, partner, operation))
    out = {"report_payment"} if offered("report_payment") else set()
    if offered("send_message", at_partner or state is State.QUEUED):  # a queued claim's message follows it
        out.add("send_message")
    if state in CANCELLABLE and offered("cancel"):
        out.add("cancel")
    # Only the partner can answer these: offered while it has the claim and declares them.
    if at_partner and partner:
        out |= {op for op in ("refresh", "request_monitoring") if operations.accepts(app, partner, op)}
    return out


def claim_page(app: App, client_id: str, claim_id: int, *, mark_seen: bool = True) -> ClaimPage:
    """Everything the claim page shows; opening it marks the claim seen for the client."""
    view = claim_queries.get_claim(app, client_id, claim_id)  # NotFound for another client's claim
    history = claim_queries.history(app, client_id, claim_id)
    explanation = claim_queries.explain(app, client_id, claim_id) if State(view.state) in EXPLAINED else None
    messages = claim_ops.messages(app, client_id, claim_id)
    if mark_seen and view.account.unread:
        projection_ops.mark_seen(app, client_id, [claim_id])
    return ClaimPage(view, history, messages, explanation, _actions(app, view))


@dataclass(frozen=True)
class Download:
    name: str
    media_type: str
    data: bytes


def document(app: App, client_id: str, claim_id: int, document_id: int) -> Download:
    """One stored document of the client's claim, decrypted; NotFound for another client's claim or a
    document of another claim (the same answer as an unknown id)."""
    with read_tx(app.engine) as conn:
        claim_ops.owned_row(conn, client_id, claim_id)
        for doc in doc_store.for_claims(conn, app.cipher, [claim_id]).get(claim_id, []):
            if int(doc["id"]) == document_id:
                return Download(str(doc["name"]), str(doc["media_type"]), bytes(doc["data"]))
    raise NotFound(f"no document {document_id} of claim {claim_id}")


def operator_claim_page(app: App, claim_id: int) -> ClaimPage:
    """A claim of any client for the operator: read only (no actions, no read mark)."""
    view = claim_queries.operator_claim(app, claim_id)
    client = view.claim.client_id
    history = claim_queries.history(app, client, claim_id)
    explanation = claim_queries.explain(app, client, claim_id) if State(view.state) in EXPLAINED else None
    return ClaimPage(view, history, claim_ops.messages(app, client, claim_id), explanation, set())


def submissions(app: App, client_id: str | None, *, limit: int, offset: int) -> Page:
    """A page of collection runs, newest first, each with its handover status (``Page.handover``: whether the
    partner confirmed every claim sent): one client's, or every client's for the operator."""
    with read_tx(app.engine) as conn:
        page = submissions_page(conn, client_id=client_id, status=None, since=None, until=None, limit=limit,
                                offset=offset)
        page.handover = collection_run_statuses(conn, [int(r["id"]) for r in page.rows])
        return page


def run_colour(status: str, handover: str) -> str:
    """How a run is shown: failed red, processing yellow, completed yellow until the partner confirmed every
    claim sent (``handover`` handed_over), then green."""
    if status in ("failed", "processing"):
        return status
    return "confirmed" if handover == "handed_over" else "processing"


@dataclass
class RunPage:
    submission: RowMapping
    findings: list[RowMapping]
    handover: str
    claims: list[RowMapping]  # the run's claims matching the search (all without one), in the run's order
    held: list[RowMapping]  # claims of the run still held, to preview and release
    minors: set[int]  # held claims whose debtor is a minor without a representative: left out by default
    time_barred: set[int] = field(default_factory=set)  # held as time-barred: left out, released only with a reason
    total: int = 0  # claims matching the search (``claims`` holds at most the page limit)
    colour: str = "processing"  # run_colour


def run_page(app: App, client_id: str | None, reference: str, *, limit: int = 500,
             text: str | None = None) -> RunPage:
    """One collection run with its findings and claims (those matching ``text``: reference, invoice number
    or the debtor's name, as in the claims list); ``client_id`` None: the operator (any client)."""
    if client_id is None:
        with read_tx(app.engine) as conn:
            owner = str(sub_store.get(conn, reference)["client_id"])
    else:
        owner = client_id
    sub, findings, handover = claim_queries.get_submission(app, owner, reference)
    found, total, _ = claim_queries.list_claims(app, owner, ClaimFilter(
        submission_id=int(sub["id"]), text=text or None, sort="claim_id", descending=False, limit=limit))
    held = claim_queries.operator_list(app, client_id=owner, submission=str(sub["reference"]),
                                       state=State.HELD.value, limit=limit)
    minor_refs = {f["reference"] for f in findings if f["code"] == "debtor_minor"}
    barred_refs = {f["reference"] for f in findings if f["code"] == "time_barred"}
    return RunPage(sub, findings, handover, found, held,
                   {int(r["id"]) for r in held if r["creditor_reference"] in minor_refs},
                   {int(r["id"]) for r in held if r["creditor_reference"] in barred_refs},
                   total=total, colour=run_colour(str(sub["status"]), handover))


def outbox(app: App, *, status: str | None, limit: int, offset: int) -> Page:
    """A page of outbox rows, newest first (the operator's view; ``dead`` are the dead letters)."""
    with read_tx(app.engine) as conn:
        return outbox_page(conn, status=status, partner_id=None, limit=limit, offset=offset)


def last_changes(app: App, client_id: str, claim_ids: list[int], n: int = 3) -> dict[int, list[dict[str, Any]]]:
    """The last ``n`` events of each of a page's claims, newest first: one query for the whole page."""
    if not claim_ids:
        return {}
    e = claim_events
    ranked = (select(e.c.claim_id, e.c.state, e.c.kind, e.c.created_at,
                     func.row_number().over(partition_by=e.c.claim_id, order_by=e.c.id.desc()).label("n"))
              .where(e.c.client_id == client_id, e.c.claim_id.in_(claim_ids)).subquery())
    q = select(ranked).where(ranked.c.n <= n).order_by(ranked.c.claim_id, ranked.c.n)
    out: dict[int, list[dict[str, Any]]] = {}
    with read_tx(app.engine) as conn:
        for r in conn.execute(q).mappings():
            out.setdefault(int(r["claim_id"]), []).append(dict(r))
    return out


def page_labels(app: App, client_id: str, claim_ids: list[int]) -> dict[int, list[str]]:
    """The labels of a page's claims (the client's own; one query)."""
    with read_tx(app.engine) as conn:
        owned = {int(v) for v in conn.execute(select(claim_current.c.claim_id).where(
            claim_current.c.client_id == client_id, claim_current.c.claim_id.in_(claim_ids))).scalars()}
        return label_store.for_claims(conn, sorted(owned))


def client_partners(app: App, client_id: str) -> list[str]:
    """The configured partners that hold claims of the client, for the list's partner filter: one index
    probe per partner (``ix_current_partner_client_updated``), not a scan of the client's claims."""
    found = []
    with read_tx(app.engine) as conn:
        for pid in sorted(app.config.partners):
            probe = select(claim_current.c.claim_id).where(claim_current.c.client_id == client_id,
                                                            claim_current.c.partner_id == pid).limit(1)
            if conn.execute(probe).first() is not None:
                found.append(pid)
    return found


# The console's export: the claims list's own filter (states, label, dates, search), the admin export's columns
# (``claim_export``) that the list reads, every text cell formula-safe (``ack.safe_cell``) in both formats.
EXPORT_COLUMNS = (*(c for c in claim_export.COLUMNS if c not in ("client_id", "claim_type")), "last_change")
MAX_EXPORT = 50_000  # claims in one download: a page-sized request, not a backup (``gateway claims export``)
EXPORT_PAGE = 500


def export_rows(app: App, client_id: str, f: ClaimFilter) -> Iterator[list[str]]:
    """The claims the filter matches in the list's order, as formula-safe text cells (at most MAX_EXPORT)."""
    f = replace(f, limit=EXPORT_PAGE, offset=0)
    while f.offset < MAX_EXPORT:
        page, _, _ = claim_queries.list_claims(app, client_id, f)
        for r in page:
            cur = r["currency"]
            cells = [r["claim_id"], r["creditor_reference"], r["invoice_number"], r["state"], cur,
                     from_minor(r["principal_minor"], cur), from_minor(r["open_minor"], cur), r["partner_id"],
                     r["invoice_date"], r["due_date"], r["received_at"], r["last_change"]]
            yield [safe_cell(_text(v)) for v in cells]
        if len(page) < EXPORT_PAGE:
            return
        f = replace(f, offset=f.offset + EXPORT_PAGE)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def export_csv(app: App, client_id: str, f: ClaimFilter) -> bytes:
    """CSV like ``gateway claims export`` writes it: UTF-8 with BOM (for spreadsheets), ``;``, CRLF."""
    out = io.StringIO()
    w = csv.writer(out, delimiter=";", lineterminator="\r\n")
    w.writerow(EXPORT_COLUMNS)
    w.writerows(export_rows(app, client_id, f))
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def export_xlsx(app: App, client_id: str, f: ClaimFilter) -> bytes:
    """XLSX with every cell written as a string (never through xlsxwriter's formula or number detection)."""
    out = io.BytesIO()
    book = xlsxwriter.Workbook(out, {"in_memory": True, "strings_to_formulas": False, "strings_to_numbers": False,
                                     "strings_to_urls": False})
    sheet = book.add_worksheet("claims")
    bold = book.add_format({"bold": True})
    for c, name in enumerate(EXPORT_COLUMNS):
        sheet.write_string(0, c, name, bold)
    for n, row in enumerate(export_rows(app, client_id, f), start=1):
        for c, value in enumerate(row):
            sheet.write_string(n, c, value)
    book.close()
    return out.getvalue()
