"""A client's labels: the catalogue page (every label with its colour), define one, give it another colour,
rename it or delete it (on every claim that carries it too). Label names travel in forms, never in URLs of
these pages.
"""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.entrypoints.web.pages import flash, post, redirect, render
from gateway.entrypoints.web.security import client_user, field
from gateway.services import claim_ops
from gateway.services import labels as label_service
from gateway.services.claim_ops import InvalidRequest

log = logging.getLogger("gateway.web")


async def labels_page(request: Request) -> Response:
    user, client = client_user(request)
    labels = await run_in_threadpool(label_service.catalogue, request.app.state.gateway, client)
    return render(request, "labels.html", {"labels": labels, "palette": label_service.PALETTE,
                                           "can_submit": user.can_submit})


async def define(request: Request, form: FormData) -> Response:
    """A new label, or another colour for an existing one."""
    user, client = client_user(request, submit=True)
    try:
        new = await run_in_threadpool(label_service.define, request.app.state.gateway, client,
                                      field(form, "name", 200), field(form, "colour", 16))
    except InvalidRequest as exc:
        flash(request, "refused", "error", detail=str(exc))
    else:
        log.info("web.label login=%s action=%s", user.login, "defined" if new else "recoloured")
        flash(request, "label_saved")
    return redirect("/labels")


async def rename(request: Request, form: FormData) -> Response:
    user, client = client_user(request, submit=True)
    try:
        n = await run_in_threadpool(claim_ops.rename_label, request.app.state.gateway, client,
                                    field(form, "label", 200), field(form, "name", 200))
    except InvalidRequest as exc:
        flash(request, "refused", "error", detail=str(exc))
    else:
        log.info("web.label login=%s action=renamed claims=%d", user.login, n)
        flash(request, "label_renamed", n=n)
    return redirect("/labels")


async def remove(request: Request, form: FormData) -> Response:
    user, client = client_user(request, submit=True)
    n = await run_in_threadpool(claim_ops.delete_label, request.app.state.gateway, client, field(form, "label", 200))
    log.info("web.label login=%s action=deleted claims=%d", user.login, n)
    flash(request, "label_deleted", n=n)
    return redirect("/labels")


ROUTES = [
    Route("/labels", labels_page, methods=["GET"]),
    post("/labels", define),
    post("/labels/rename", rename),
    post("/labels/delete", remove),
]
