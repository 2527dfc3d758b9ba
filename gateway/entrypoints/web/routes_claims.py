"""A client's claims: the list (sort, state filter, search, pages), one claim, and its actions.

The search text may be a debtor's name, so it is POSTed and kept in the session, never put in a URL.
"""

from __future__ import annotations

import logging
import re
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.domain.lifecycle import State
from gateway.entrypoints.web.pages import PAGE_SIZE, flash, int_param, post, redirect, render
from gateway.entrypoints.web.security import client_user, field, recalled, remember, text_field
from gateway.errors import GatewayError, IllegalTransition, Unsupported
from gateway.services import claim_ops, claim_queries, console, credit
from gateway.services import labels as label_service
from gateway.services.claim_ops import InvalidRequest
from gateway.store.claim_search import SORTABLE, ClaimFilter

log = logging.getLogger("gateway.web")
COLUMNS = ("reference", "invoice_number", "received", "state", "amount", "partner", "last_change")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
REFUSED = (InvalidRequest, IllegalTransition, Unsupported)


THREE_MONTHS = 91  # days the list looks back unless the user changes the range


def _date(request: Request, name: str, default: date | None) -> date | None:
    """A date of the query (ISO, as <input type=date> sends it); absent: the default, empty: no bound."""
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return default


async def list_filter(request: Request) -> ClaimFilter:
    """The list's filter from the query (and the search text kept for the session on the server); bad values
    are ignored."""
    kept = await recalled(request, "q")
    q, limit = request.query_params, PAGE_SIZE
    state, sort, partner = q.get("state", ""), q.get("sort", "last_change"), q.get("partner", "")
    since = date.today() - timedelta(days=THREE_MONTHS)
    return ClaimFilter(states=[state] if state in {s.value for s in State} else [],
                       label=q.get("label", "")[:64] or None,
                       partner=partner if partner in request.app.state.gateway.config.partners else None,
                       date_from=_date(request, "from", since), date_to=_date(request, "to", None),
                       sort=sort if sort in SORTABLE else "last_change", descending=q.get("dir", "desc") != "asc",
                       limit=limit, offset=int_param(request, "page") * limit, text=kept if isinstance(kept, str) and kept else None)


def _query(f: ClaimFilter, **more: object) -> str:
    """The filter as a query string for links (sort, pages, export); the search text stays in the session."""
    keep = {"state": f.states[0] if f.states else "", "label": f.label or "", "partner": f.partner or "",
            "from": f.date_from.isoformat() if f.date_from else "", "to": f.date_to.isoformat() if f.date_to else "",
            "sort": f.sort, "dir": "desc" if f.descending else "asc", **more}
    return urlencode(keep)


async def claims_list(request: Request) -> Response:
    user, client = client_user(request)
    f = await list_filter(request)
    gw = request.app.state.gateway
    rows, total, exact = await run_in_threadpool(claim_queries.list_claims, gw, client, f)
    ids = [int(r["claim_id"]) for r in rows]
    changes = await run_in_threadpool(console.last_changes, gw, client, ids)
    row_labels = await run_in_threadpool(console.page_labels, gw, client, ids)
    labels = await run_in_threadpool(label_service.catalogue, gw, client)
    partners = await run_in_threadpool(console.client_partners, gw, client)
    return render(request, "claims.html", {
        "rows": rows, "total": total, "exact": exact, "state": f.states[0] if f.states else "", "sort": f.sort,
        "dir": "desc" if f.descending else "asc", "page": f.offset // PAGE_SIZE, "columns": COLUMNS,
        "states": [s.value for s in State], "searching": bool(f.text), "page_size": PAGE_SIZE, "f": f,
        "changes": changes, "labels": labels, "colours": label_service.colours(labels), "row_labels": row_labels,
        "partners": partners, "query": lambda **more: _query(f, **more)})


async def claims_export(request: Request) -> Response:
    user, client = client_user(request)
    fmt = request.path_params["fmt"]
    if fmt not in ("csv", "xlsx"):
        raise HTTPException(404)
    call = console.export_csv if fmt == "csv" else console.export_xlsx
    data = await run_in_threadpool(call, request.app.state.gateway, client, await list_filter(request))
    log.info("web.export login=%s format=%s bytes=%d", user.login, fmt, len(data))
    media = "text/csv; charset=utf-8" if fmt == "csv" else XLSX
    return Response(data, media_type=media,
                    headers={"content-disposition": f'attachment; filename="claims-{date.today().isoformat()}.{fmt}"'})


async def claims_search(request: Request, form: FormData) -> Response:
    client_user(request)
    text = text_field(form, "q", 128)
    await remember(request, "q", text or None)
    return redirect("/claims")


async def claim_page(request: Request) -> Response:
    user, client = client_user(request)
    claim_id = int(request.path_params["claim_id"])
    gw = request.app.state.gateway
    page = await run_in_threadpool(console.claim_page, gw, client, claim_id)
    labels = await run_in_threadpool(label_service.catalogue, gw, client)
    # the credit panel shows when the client makes checks, or made some before they were switched off
    checks = await run_in_threadpool(credit.checks_for_claim, gw, client, claim_id)
    shown = checks if checks or gw.config.client(client).credit is not None else None
    return render(request, "claim.html", {"p": page, "c": page.view.claim, "a": page.view.account,
                                          "credit_checks": shown,
                                          "can_submit": user.can_submit, "colours": label_service.colours(labels),
                                          "addable": [x.name for x in labels if x.name not in page.view.labels]})


async def _act(request: Request, what: str, call: object, *args: object, **kwargs: object) -> Response:
    user, client = client_user(request, submit=True)
    claim_id = int(request.path_params["claim_id"])
    try:
        result: object = await run_in_threadpool(call, request.app.state.gateway, client, claim_id, *args, **kwargs)  # type: ignore[arg-type]
    except REFUSED as exc:
        flash(request, "refused", "error", detail=str(exc))
    else:
        log.info("web.claim_action login=%s claim=%d action=%s", user.login, claim_id, what)
        note = {"cancel": "cancelled", "payment": "payment_reported", "message": "message_sent",
                "refresh": "refresh_requested", "monitoring": "monitoring_requested", "labels": "labels_changed"}[what]
        if what == "payment" and isinstance(result, claim_ops.OpResult) and not result.forwarded \
                and result.state in (State.HELD.value, State.QUEUED.value):
            note = "payment_with_handover"  # the agency does not have the claim yet: its batch will carry it
        if what == "message" and isinstance(result, claim_ops.OpResult) and not result.forwarded:
            note = "message_kept"  # a held claim's message is the gateway's record: "sent" would not be true
        if what == "payment" and isinstance(result, claim_ops.OpResult) and result.state == State.CLOSED_PAID.value:
            note = "paid_before_handover"  # nothing left open before the handover: closed, never handed over
        flash(request, note)
    return redirect(f"/claims/{claim_id}")


async def cancel(request: Request, form: FormData) -> Response:
    return await _act(request, "cancel", claim_ops.cancel, field(form, "reason", 1000) or None)


def amount_text(text: str) -> str:
    """An amount as typed (German notation too: 1.234,56) in the notation Decimal reads."""
    text = text.strip().replace(" ", "")
    return text.replace(".", "").replace(",", ".") if "," in text else text


def _amount(text: str) -> Decimal:
    try:
        return Decimal(amount_text(text))
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


async def refresh(request: Request, form: FormData) -> Response:
    return await _act(request, "refresh", claim_ops.refresh)


async def monitoring(request: Request, form: FormData) -> Response:
    return await _act(request, "monitoring", claim_ops.request_monitoring)


async def claim_labels(request: Request, form: FormData) -> Response:
    """Attach (``add``) or detach (``remove``) one label; the name travels in the form, never in a URL."""
    add, remove = field(form, "add", 200).strip(), field(form, "remove", 200).strip()
    return await _act(request, "labels", claim_ops.edit_labels, add=[add] if add else [],
                      remove=[remove] if remove else [])


def disposition(name: str) -> str:
    """A Content-Disposition that cannot be broken out of: an ASCII fallback of safe characters and the
    real name percent-encoded (RFC 6266 / 5987); path parts and control characters dropped."""
    base = re.split(r"[\\/]", name)[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip().lstrip(".") or "document"
    fallback = re.sub(r"[^A-Za-z0-9._-]+", "_", base)[:100] or "document"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(base[:200], safe='')}"


async def download(request: Request) -> Response:
    user, client = client_user(request)
    claim_id, doc_id = int(request.path_params["claim_id"]), int(request.path_params["doc_id"])
    doc = await run_in_threadpool(console.document, request.app.state.gateway, client, claim_id, doc_id)
    log.info("web.document login=%s claim=%d document=%d bytes=%d", user.login, claim_id, doc_id, len(doc.data))
    # Always an attachment, never shown inline: a stored document is the client's file, not a page of ours.
    return Response(doc.data, media_type="application/octet-stream",
                    headers={"content-disposition": disposition(doc.name)})


ROUTES = [
    Route("/claims", claims_list, methods=["GET"]),
    Route("/claims/export.{fmt:str}", claims_export, methods=["GET"]),
    post("/claims/search", claims_search),
    Route("/claims/{claim_id:id}", claim_page, methods=["GET"]),
    post("/claims/{claim_id:id}/cancel", cancel),
    post("/claims/{claim_id:id}/payment", payment),
    post("/claims/{claim_id:id}/message", message),
    post("/claims/{claim_id:id}/refresh", refresh),
    post("/claims/{claim_id:id}/monitoring", monitoring),
    post("/claims/{claim_id:id}/labels", claim_labels),
    Route("/claims/{claim_id:id}/documents/{doc_id:id}", download, methods=["GET"]),
]
