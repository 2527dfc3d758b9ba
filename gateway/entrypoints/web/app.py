"""Builds the console's Starlette application: routes, static files, sessions, headers, error pages.

Starlette (ASGI) because ``serve`` is one asyncio loop: the console runs on it under uvicorn, and the
blocking use cases run in threads (``run_in_threadpool``). Sessions are Starlette's signed cookies
(itsdangerous) named ``__Host-gw_session``: HttpOnly, Secure, SameSite=Lax, Path=/ and no Domain. The cookie
lives ``web.session_absolute_seconds``; when a session ends (idle or absolutely) is decided on the server
(``services/web_sessions.py``). Nothing here holds business rules: routes (``routes_*.py``) call one use case each.
"""

from __future__ import annotations

import logging
from pathlib import Path

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import ClientDisconnect, HTTPConnection, Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.bootstrap import App
from gateway.entrypoints.config_watch import ClientReloader
from gateway.entrypoints.supervisor import describe, is_transient
from gateway.entrypoints.web import routes_auth, routes_claims, routes_handover, routes_operator, routes_runs
from gateway.entrypoints.web import routes_labels
from gateway.entrypoints.web import routes_clients, routes_mappings, routes_partners
from gateway.entrypoints.web import routes_credit
from gateway.entrypoints.web.login_share import LoginShare
from gateway.entrypoints.web.pages import HERE, lang_of, make_templates, redirect, render, size_text
from gateway.entrypoints.web.security import LoginRequired, SecurityHeaders, ServerSessions
from gateway.entrypoints.web.texts import DEFAULT, translator
from gateway.entrypoints.web.users import UserBook
from gateway.errors import KeyStoreError, NotFound
from gateway.services import web_sessions
from gateway.services.keys import WEB_SESSION_FILE

log = logging.getLogger("gateway.web")
# The __Host- prefix makes a browser take the cookie only when it is Secure, set by this HTTPS origin itself, for
# Path=/ and without a Domain: a sibling host under the same domain (or a plain-HTTP page there) cannot plant a
# session cookie for the console (session fixation) nor shadow it. The console is served over HTTPS only.
SESSION_COOKIE = "__Host-gw_session"
OLD_SESSION_COOKIE = "gw_session"  # the name before the prefix: not read, and removed from a browser that sends it


def session_secret(app: App) -> str:
    """The key that signs session cookies (``web.session_secret_file``, else keys.dir/web-session.key)."""
    cfg = app.config
    path = cfg.path(cfg.web.session_secret_file) if cfg.web.session_secret_file else cfg.keys_dir / WEB_SESSION_FILE
    try:
        secret = Path(path).read_text(encoding="utf-8").strip()
    except OSError:
        raise KeyStoreError(f"no web session secret at {path}: run 'gateway keys init'") from None
    if len(secret) < 32:
        raise KeyStoreError(f"the web session secret in {path} is shorter than 32 characters")
    return secret


async def _login_required(request: Request, exc: Exception) -> Response:
    return redirect("/login")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    key = {403: "csrf_failed" if exc.detail == "csrf" else "read_only" if exc.detail == "read_only" else "forbidden",
           404: "not_found", 400: "form_invalid", 411: "form_invalid", 413: "form_too_large",
           }.get(exc.status_code, "server_error" if exc.status_code >= 500 else "forbidden")
    values: dict[str, str] = {}
    if exc.status_code == 413 and exc.detail.isdigit():  # the limit the form was held to (checked_form)
        values["limit"] = size_text(int(exc.detail), lang_of(request))
    elif exc.status_code == 413:
        key = "form_too_large_plain"
    return render(request, "error.html", {"message": key, "values": values}, status=exc.status_code)


async def _not_found(request: Request, exc: Exception) -> Response:
    return render(request, "error.html", {"message": "not_found"}, status=404)


class _Contained:
    """Any other error: logged once by ``describe`` (never a value, no traceback), a plain 500 page.

    Caught here rather than by a Starlette handler, which would re-raise it for uvicorn to log in full.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)
        try:
            await self.app(scope, receive, watch)
        except ClientDisconnect:  # the client went away (or was cut off for sending its form too slowly)
            route = scope.get("route")
            log.info("web.client_gone path=%s", getattr(route, "path", "?"))
        except Exception as exc:  # noqa: BLE001 - every error ends here as a 500 (503 while it is passing)
            route = scope.get("route")
            # The database away or locked for a moment is no error of the page: "try again" and 503, so that a
            # person (and a load balancer) knows it passes.
            busy = is_transient(exc)
            log.log(logging.WARNING if busy else logging.ERROR, "web.%s path=%s error=%s",
                    "busy" if busy else "error", getattr(route, "path", "?"), describe(exc))
            if not started and scope["type"] == "http":
                t = translator(DEFAULT)
                text, status = (t("server_busy"), 503) if busy else (t("server_error"), 500)
                page = HTMLResponse(f"<!doctype html><title>{t('app_name')}</title><p>{text}</p>", status,
                                    headers={"Retry-After": "10"} if busy else None)
                await page(scope, receive, send)


class _ForgetOldCookie:
    """A browser still sending the session cookie under its earlier name is told to drop it: the console does not
    read it (that request is simply logged out), and it should not ride along with every request for hours."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or OLD_SESSION_COOKIE not in HTTPConnection(scope).cookies:
            await self.app(scope, receive, send)
            return

        async def dropping(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append(
                    "set-cookie", f"{OLD_SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax")
            await send(message)
        await self.app(scope, receive, dropping)


def build_web_app(app: App, users: UserBook | None = None) -> Starlette:
    """The console for ``app``; ``users`` defaults to the configured logins."""
    cfg = app.config.web
    routes = [*routes_auth.ROUTES, *routes_handover.ROUTES, *routes_claims.ROUTES, *routes_runs.ROUTES,
              *routes_labels.ROUTES, *routes_operator.ROUTES, *routes_partners.ROUTES, *routes_clients.ROUTES,
              *routes_mappings.ROUTES, *routes_credit.ROUTES,
              Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")]
    secret = session_secret(app)
    routes_runs.clear_spool(app.config.var_dir)  # an upload cut off by a crash left its file in plain
    try:
        web_sessions.forget_plain_searches(app)  # kept in plain by an earlier version
    except Exception as exc:  # noqa: BLE001 - a clean-up, not the console: the database away now ends no start
        log.warning("web.plain_searches_not_forgotten error=%s: tried again at the next start", describe(exc))
    middleware = [Middleware(SecurityHeaders), Middleware(_Contained), Middleware(_ForgetOldCookie),
                  Middleware(SessionMiddleware, secret_key=secret, session_cookie=SESSION_COOKIE,
                             max_age=cfg.session_absolute_seconds, same_site="lax", https_only=True),
                  Middleware(ServerSessions), Middleware(LoginShare)]
    web = Starlette(routes=routes, middleware=middleware,
                    exception_handlers={LoginRequired: _login_required, HTTPException: _http_error,
                                        NotFound: _not_found})
    web.state.gateway = app
    web.state.credential_key = secret.encode()  # keys the logins' credential fingerprints (web_sessions)
    web.state.users = users or UserBook(app.config, app.login_throttle)
    # What the operator's admin pages changed in the config file, taken at once (serve replaces this with
    # its reloader, which also swaps the SFTP and SOAP logins).
    web.state.apply_config = ClientReloader(app, None, None, web.state.users.prepare_reload).apply
    web.state.templates = make_templates()
    web.state.max_body = cfg.max_upload_bytes + 64 * 1024  # the file and the form's other fields
    web.state.upload_slots = routes_runs.UploadSlots()
    return web
