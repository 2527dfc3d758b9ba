"""Read use cases the web console needs beyond ``claim_queries``: a claim page, paged runs and the outbox.

Each call is one read (or, for a client opening a claim, one read and the read mark) and scoped the way
the caller is: a client's calls see only that client's claims and submissions (another client's id is
``NotFound``, like an unknown one); the operator's calls see everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import RowMapping

from gateway.bootstrap import App
from gateway.domain.lifecycle import TERMINAL, State
from gateway.services import claim_ops, claim_queries, operations, projection_ops
from gateway.services.claim_queries import ClaimView, Explanation
from gateway.services.listing import Page, outbox_page, submissions_page
from gateway.store import submissions as sub_store
from gateway.store.db import read_tx

# States whose claim a client may cancel from the console (claim_ops.cancel decides the rest).
CANCELLABLE = frozenset(State) - TERMINAL - {State.RECEIVED}
EXPLAINED = frozenset({State.HELD, State.FAILED, State.REJECTED})


@dataclass
class ClaimPage:
    view: ClaimView
    history: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    explanation: Explanation | None  # for held, failed and rejected claims
    actions: set[str] = field(default_factory=set)  # cancel, report_payment, send_message (the partner takes)


def _actions(app: App, view: ClaimView) -> set[str]:
    state = State(view.state)
    if state in TERMINAL:
        return set()
    partner = view.claim.partner_id
    at_partner = state in claim_ops.AT_PARTNER and state is not State.FAILED

    def offered(operation: str) -> bool:  # before the handover the gateway alone records it
        return not at_partner or bool(partner and operations.accepts(app, partner, operation))
    out = {op for op in ("report_payment", "send_message") if offered(op)}
    if state in CANCELLABLE and offered("cancel"):
        out.add("cancel")
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


def operator_claim_page(app: App, claim_id: int) -> ClaimPage:
    """A claim of any client for the operator: read only (no actions, no read mark)."""
    view = claim_queries.operator_claim(app, claim_id)
    client = view.claim.client_id
    history = claim_queries.history(app, client, claim_id)
    explanation = claim_queries.explain(app, client, claim_id) if State(view.state) in EXPLAINED else None
    return ClaimPage(view, history, claim_ops.messages(app, client, claim_id), explanation, set())


def submissions(app: App, client_id: str | None, *, limit: int, offset: int) -> Page:
    """A page of collection runs, newest first: one client's, or every client's for the operator."""
    with read_tx(app.engine) as conn:
        return submissions_page(conn, client_id=client_id, status=None, since=None, until=None, limit=limit,
                                offset=offset)


@dataclass
class RunPage:
    submission: RowMapping
    findings: list[RowMapping]
    handover: str
    claims: list[RowMapping]
    held: list[RowMapping]  # claims of the run still held, to preview and release
    minors: set[int]  # held claims whose debtor is a minor without a representative: left out by default


def run_page(app: App, client_id: str | None, reference: str, *, limit: int = 500) -> RunPage:
    """One collection run with its findings and claims; ``client_id`` None: the operator (any client)."""
    if client_id is None:
        with read_tx(app.engine) as conn:
            owner = str(sub_store.get(conn, reference)["client_id"])
    else:
        owner = client_id
    sub, findings, handover = claim_queries.get_submission(app, owner, reference)
    rows = claim_queries.operator_list(app, client_id=owner, submission=str(sub["reference"]), limit=limit)
    held = [r for r in rows if r["state"] == State.HELD.value]
    minor_refs = {f["reference"] for f in findings if f["code"] == "debtor_minor"}
    return RunPage(sub, findings, handover, rows, held,
                   {int(r["id"]) for r in held if r["creditor_reference"] in minor_refs})


def outbox(app: App, *, status: str | None, limit: int, offset: int) -> Page:
    """A page of outbox rows, newest first (the operator's view; ``dead`` are the dead letters)."""
    with read_tx(app.engine) as conn:
        return outbox_page(conn, status=status, partner_id=None, limit=limit, offset=offset)
