"""A client's claims: the list (sort, state filter, search, pages), one claim, and its actions.

The search text may be a debtor's name, so it is POSTed and kept in the session, never put in a URL.
"""

from __future__ import annotations

import logging
from datetime import date
from decimal import Decimal, InvalidOperation

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.domain.lifecycle import State
from gateway.entrypoints.web.pages import PAGE_SIZE, flash, int_param, post, redirect, render
from gateway.entrypoints.web.security import client_user, field
from gateway.errors import GatewayError, IllegalTransition, Unsupported
from gateway.services import claim_ops, claim_queries, console
from gateway.services.claim_ops import InvalidRequest
from gateway.store.claim_search import SORTABLE, ClaimFilter

log = logging.getLogger("gateway.web")
COLUMNS = ("reference", "invoice_number", "received", "state", "amount", "partner", "last_change")
REFUSED = (InvalidRequest, IllegalTransition, Unsupported)


async def claims_list(request: Request) -> Response:
    user, client = client_user(request)
    q = request.query_params
    state = q.get("state", "")
    sort = q.get("sort", "last_change")
    f = ClaimFilter(states=[state] if state in {s.value for s in State} else [],
                    sort=sort if sort in SORTABLE else "last_change", descending=q.get("dir", "desc") != "asc",
                    limit=PAGE_SIZE, offset=int_param(request, "page") * PAGE_SIZE,
                    text=request.session.get("q") or None)
    rows, total, exact = await run_in_threadpool(claim_queries.list_claims, request.app.state.gateway, client, f)
    return render(request, "claims.html", {
        "rows": rows, "total": total, "exact": exact, "state": f.states[0] if f.states else "", "sort": f.sort,
        "dir": "desc" if f.descending else "asc", "page": f.offset // PAGE_SIZE, "columns": COLUMNS,
        "states": [s.value for s in State], "searching": bool(f.text), "page_size": PAGE_SIZE})


async def claims_search(request: Request, form: FormData) -> Response:
    client_user(request)
    text = field(form, "q", 128).strip()
    if text:
        request.session["q"] = text
    else:
        request.session.pop("q", None)
    return redirect("/claims")


async def claim_page(request: Request) -> Response:
    user, client = client_user(request)
    claim_id = int(request.path_params["claim_id"])
    page = await run_in_threadpool(console.claim_page, request.app.state.gateway, client, claim_id)
    return render(request, "claim.html", {"p": page, "c": page.view.claim, "a": page.view.account,
                                          "can_submit": user.can_submit})


async def _act(request: Request, what: str, call: object, *args: object, **kwargs: object) -> Response:
    user, client = client_user(request, submit=True)
    claim_id = int(request.path_params["claim_id"])
    try:
        await run_in_threadpool(call, request.app.state.gateway, client, claim_id, *args, **kwargs)  # type: ignore[arg-type]
    except REFUSED as exc:
        flash(request, "refused", "error", detail=str(exc))
    else:
        log.info("web.claim_action login=%s claim=%d action=%s", user.login, claim_id, what)
        flash(request, {"cancel": "cancelled", "payment": "payment_reported", "message": "message_sent"}[what])
    return redirect(f"/claims/{claim_id}")


async def cancel(request: Request, form: FormData) -> Response:
    return await _act(request, "cancel", claim_ops.cancel, field(form, "reason", 1000) or None)


def _amount(text: str) -> Decimal:
    text = text.strip().replace(" ", "")
    if "," in text:  # German notation: 1.234,56
        text = text.replace(".", "").replace(",", ".")
    try:
        return Decimal(text)
    except InvalidOperation:
        raise InvalidRequest("not an amount", "amount") from None


async def payment(request: Request, form: FormData) -> Response:
    try:
        amount, on = _amount(field(form, "amount", 32)), date.fromisoformat(field(form, "date", 10))
    except (GatewayError, ValueError):
        client_user(request, submit=True)
        flash(request, "refused", "error", detail="amount/date")
        return redirect(f"/claims/{int(request.path_params['claim_id'])}")
    return await _act(request, "payment", claim_ops.report_payment, amount, on,
                      overpayment=form.get("overpayment") == "1")


async def message(request: Request, form: FormData) -> Response:
    return await _act(request, "message", claim_ops.send_message, field(form, "text", claim_ops.MAX_MESSAGE_LEN + 1))


ROUTES = [
    Route("/claims", claims_list, methods=["GET"]),
    post("/claims/search", claims_search),
    Route("/claims/{claim_id:int}", claim_page, methods=["GET"]),
    post("/claims/{claim_id:int}/cancel", cancel),
    post("/claims/{claim_id:int}/payment", payment),
    post("/claims/{claim_id:int}/message", message),
]
