"""The operator's pages: every client's runs and claims (read only), the outbox with its dead letters and
their retry. A client user asking for any of these gets 404, as if they did not exist."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.domain.lifecycle import State
from gateway.entrypoints.web.pages import PAGE_SIZE, flash, int_param, post, redirect, render
from gateway.entrypoints.web.security import operator_user
from gateway.services import claim_queries, console
from gateway.services import labels as label_service
from gateway.services.dispatch import retry_dead

log = logging.getLogger("gateway.web")
OUTBOX_STATES = ("pending", "leased", "done", "dead")


async def runs(request: Request) -> Response:
    operator_user(request)
    page = int_param(request, "page")
    rows = await run_in_threadpool(console.submissions, request.app.state.gateway, None, limit=PAGE_SIZE,
                                   offset=page * PAGE_SIZE)
    return render(request, "runs.html", {"pg": rows, "page": page, "page_size": PAGE_SIZE,
                                         "base": "/operator/runs", "all_clients": True})


async def run_page(request: Request) -> Response:
    operator_user(request)
    run = await run_in_threadpool(console.run_page, request.app.state.gateway, None, request.path_params["ref"])
    return render(request, "run.html", {"r": run, "can_submit": False, "claim_base": "/operator/claims"})


async def claims(request: Request) -> Response:
    operator_user(request)
    page = int_param(request, "page")
    state = request.query_params.get("state", "")
    state = state if state in {s.value for s in State} else ""
    rows = await run_in_threadpool(lambda: claim_queries.operator_list(
        request.app.state.gateway, state=state or None, limit=PAGE_SIZE + 1, offset=page * PAGE_SIZE))
    return render(request, "operator_claims.html", {"rows": rows[:PAGE_SIZE], "more": len(rows) > PAGE_SIZE,
                                                    "page": page, "state": state, "states": [s.value for s in State]})


async def claim_page(request: Request) -> Response:
    operator_user(request)
    gw = request.app.state.gateway
    page = await run_in_threadpool(console.operator_claim_page, gw, int(request.path_params["claim_id"]))
    # the label chips take their colours from the claim's own client's catalogue
    labels = await run_in_threadpool(label_service.catalogue, gw, page.view.claim.client_id)
    return render(request, "claim.html", {"p": page, "c": page.view.claim, "a": page.view.account,
                                          "can_submit": False, "colours": label_service.colours(labels),
                                          "addable": [], "credit_checks": None})


async def outbox(request: Request) -> Response:
    operator_user(request)
    page = int_param(request, "page")
    status = request.query_params.get("status", "dead")
    status = status if status in OUTBOX_STATES else ""
    rows = await run_in_threadpool(lambda: console.outbox(request.app.state.gateway, status=status or None,
                                                          limit=PAGE_SIZE, offset=page * PAGE_SIZE))
    return render(request, "outbox.html", {"pg": rows, "status": status, "page": page, "page_size": PAGE_SIZE,
                                           "states": OUTBOX_STATES})


async def retry(request: Request, form: FormData) -> Response:
    user = operator_user(request)
    row = int(request.path_params["outbox_id"])
    requeued = await run_in_threadpool(retry_dead, request.app.state.gateway, row)
    log.info("web.outbox_retry login=%s outbox=%d claims=%d", user.login, row, requeued)
    flash(request, "retried", id=row, n=requeued)
    return redirect("/operator/outbox")


ROUTES = [
    Route("/operator/runs", runs, methods=["GET"]),
    Route("/operator/runs/{ref}", run_page, methods=["GET"]),
    Route("/operator/claims", claims, methods=["GET"]),
    Route("/operator/claims/{claim_id:id}", claim_page, methods=["GET"]),
    Route("/operator/outbox", outbox, methods=["GET"]),
    post("/operator/outbox/{outbox_id:id}/retry", retry),
]
