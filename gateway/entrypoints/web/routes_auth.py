"""Log in, log out, and the start page (which sends each kind of user to its own pages)."""

from __future__ import annotations

import logging
import math

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.entrypoints.web.pages import flash, post, redirect, render
from gateway.entrypoints.web.security import current_user, field, peer, users
from gateway.services import web_sessions

log = logging.getLogger("gateway.web")


async def home(request: Request) -> Response:
    user = current_user(request)
    if user is None:
        return redirect("/login")
    return redirect("/operator/runs" if user.operator else "/claims")


async def login_page(request: Request) -> Response:
    return render(request, "login.html")


async def login(request: Request, form: FormData) -> Response:
    name, password = field(form, "login", 128).strip(), field(form, "password", 1024)
    address = peer(request)
    outcome = await users(request).check(name, password, address)
    if outcome.user is None:
        # the login name may be a mistyped password: it is not logged
        log.info("web.login_failed address=%s throttled=%s busy=%s", address,
                 outcome.retry_after > 0 and not outcome.busy, outcome.busy)
        if not outcome.retry_after:
            return render(request, "login.html", {"error": ("login_failed", {})}, status=401)
        # every hash slot taken gets the throttle's answer: try again in a moment
        seconds = math.ceil(outcome.retry_after)
        page = render(request, "login.html", {"error": ("login_throttled", {"seconds": seconds})}, status=429)
        page.headers["retry-after"] = str(seconds)
        return page
    earlier = request.session.get("sid")
    if isinstance(earlier, str):  # a login over a session ends it on the server: a copy of its cookie too
        await run_in_threadpool(web_sessions.end, request.app.state.gateway, earlier)
    request.session.clear()  # nothing of an earlier session carries over (a new CSRF token too)
    credential = users(request).credential(outcome.user.login, request.app.state.credential_key)
    if credential is None:  # removed by a reload while its password was checked
        return render(request, "login.html", {"error": ("login_failed", {})}, status=401)
    request.session["sid"] = await run_in_threadpool(web_sessions.start, request.app.state.gateway,
                                                     outcome.user.login, credential)
    request.session["login"] = outcome.user.login
    log.info("web.login login=%s address=%s", outcome.user.login, address)
    return redirect("/")


async def logout(request: Request, form: FormData) -> Response:
    user = current_user(request)
    sid = request.session.get("sid")
    if isinstance(sid, str):  # ended on the server: a copy of the cookie is logged out too
        await run_in_threadpool(web_sessions.end, request.app.state.gateway, sid)
    request.session.clear()
    if user is not None:
        log.info("web.logout login=%s", user.login)
    flash(request, "logged_out")
    return redirect("/login")


ROUTES = [
    Route("/", home, methods=["GET"]),
    Route("/login", login_page, methods=["GET"]),
    post("/login", login),
    post("/logout", logout),
]
