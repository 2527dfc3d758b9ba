"""The operator's partners page: every configured partner with its sync, errors, backlog and health (read only).
A client user asking for it gets 404, as for every operator page."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.entrypoints.web.pages import render
from gateway.entrypoints.web.security import operator_user
from gateway.services.partner_overview import overview


async def partners(request: Request) -> Response:
    operator_user(request)
    sup = getattr(request.app.state, "supervisor", None)  # set by serve; a bare console has no tasks to show
    view = await run_in_threadpool(overview, request.app.state.gateway, sup.health if sup is not None else None)
    return render(request, "partners.html", {"o": view, "in_serve": sup is not None})


ROUTES = [Route("/operator/partners", partners, methods=["GET"])]
