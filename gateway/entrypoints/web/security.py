"""The console's request security in one place: CSRF tokens, security headers, who is logged in.

CSRF: a synchronizer token kept in the signed session cookie and sent back in a hidden form field; every
POST route is registered through ``app.post``, which reads the form through ``checked_form`` before the
handler runs, so none can forget it. (starlette-csrf only reads the token from a header, which a form
without JavaScript cannot send, and binds it to a cookie of its own rather than the session.) The session
cookie is SameSite=Lax besides, so a cross-site form post carries no session at all.

Headers: a strict Content-Security-Policy (own origin only, no inline script or style, no framing, forms
post only here), X-Frame-Options, Referrer-Policy, nosniff, HSTS (the console is HTTPS only), and no caching of
pages (they show debtor data).
"""

from __future__ import annotations

import hmac
import re
import secrets
import unicodedata
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.entrypoints.web.users import UserBook, WebUser
from gateway.services import web_sessions

CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
       "base-uri 'none'")
# The console is served over HTTPS only: a browser that has seen it once does not go to it over plain HTTP for a
# year (an address typed without https:// is not given to someone in between). Not includeSubDomains: the gateway's
# host name may sit under a company domain whose other hosts still serve plain HTTP.
HSTS = "max-age=31536000"
HEADERS = {"content-security-policy": CSP, "x-frame-options": "DENY", "referrer-policy": "no-referrer",
           "x-content-type-options": "nosniff", "cross-origin-opener-policy": "same-origin",
           "strict-transport-security": HSTS}
MAX_FIELDS, MAX_FIELD_BYTES = 1000, 64 * 1024
MAX_FILES = 10  # files in one form (the hand-over form's documents); the body size bounds them too
# A form without a file (login, a search, an action, a release of 5,000 claims, a 60,000-character mapping) is
# far below this. The form is parsed, and held in memory, before its CSRF token can be read: so only a route
# that takes files, and only for a login that may send them, accepts up to web.max_upload_bytes (``pages.post``).
FORM_MAX_BYTES = 1024 * 1024


class SecurityHeaders:
    """Adds the security headers to every answer (pages, static files, errors)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
                if not str(scope.get("path", "")).startswith("/static/"):
                    headers["cache-control"] = "no-store"
            await send(message)
        await self.app(scope, receive, with_headers)


class ServerSessions:
    """Logs a request out whose session the server no longer has (ended by a logout, on any node, or
    expired) or whose login's credential changed since (a new password, another client or role, removed):
    the signed cookie alone is not enough (``services/web_sessions.py``). Inside the session middleware;
    static files are not checked."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        session = scope.get("session") if scope["type"] == "http" else None
        if session and session.get("login") is not None and not str(scope.get("path", "")).startswith("/static/"):
            sid, state, login = session.get("sid"), scope["app"].state, str(session["login"])
            credential = state.users.credential(login, state.credential_key)
            if not isinstance(sid, str) or not await run_in_threadpool(web_sessions.check, state.gateway, sid,
                                                                       login, credential):
                session.clear()
        await self.app(scope, receive, send)


async def recalled(request: Request, name: str) -> object:
    """A search kept for this session on the server (never in the cookie: it may be a debtor's name)."""
    sid = request.session.get("sid")
    if not isinstance(sid, str):
        return None
    return await run_in_threadpool(web_sessions.recall, request.app.state.gateway, sid, name)


async def remember(request: Request, name: str, value: object) -> None:
    """Keep (None: forget) a search for this session on the server."""
    sid = request.session.get("sid")
    if isinstance(sid, str):
        await run_in_threadpool(web_sessions.remember, request.app.state.gateway, sid, name, value)


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def checked_form(request: Request, limit: int = FORM_MAX_BYTES) -> FormData:
    """The POSTed form of at most ``limit`` bytes, if its CSRF token is the session's; 403 otherwise."""
    length = request.headers.get("content-length", "")
    if not length.isdigit():
        raise HTTPException(411)
    if int(length) > limit:  # refused before a byte of it is parsed or spooled
        raise HTTPException(413, str(limit))
    form = await request.form(max_files=MAX_FILES, max_fields=MAX_FIELDS, max_part_size=MAX_FIELD_BYTES)
    sent, expected = form.get("csrf"), request.session.get("csrf")
    if not isinstance(sent, str) or not isinstance(expected, str) or not hmac.compare_digest(sent, expected):
        raise HTTPException(403, "csrf")
    return form


def users(request: Request) -> UserBook:
    book: UserBook = request.app.state.users
    return book


def current_user(request: Request) -> WebUser | None:
    """The logged-in user, if the session names a login that still exists."""
    login = request.session.get("login")
    return users(request).get(login) if isinstance(login, str) else None


class LoginRequired(Exception):
    """Raised by the guards below; the app answers with a redirect to the login page."""


def client_user(request: Request, *, submit: bool = False) -> tuple[WebUser, str]:
    """The logged-in client user and its client id; an operator gets 404 (client pages are not for it)."""
    user = current_user(request)
    if user is None:
        raise LoginRequired()
    if user.client_id is None:
        raise HTTPException(404)
    if submit and not user.can_submit:
        raise HTTPException(403, "read_only")
    return user, user.client_id


def operator_user(request: Request) -> WebUser:
    """The logged-in operator; a client user gets 404, as if the operator pages did not exist."""
    user = current_user(request)
    if user is None:
        raise LoginRequired()
    if not user.operator:
        raise HTTPException(404)
    return user


def peer(request: Request) -> str | None:
    return request.client.host if request.client else None


# What XML 1.0 cannot carry (C0 controls but tab and line breaks, lone surrogates, U+FFFE/FFFF). No keyboard types
# them, but a form post can hold them, and every partner's batch is XML: a hand-over form's claim with one in the
# debtor's name was accepted and then failed at delivery, a dead letter for the operator (SOAP cannot carry them,
# a file's mapping drops them).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def clean(text: str) -> str:
    """``text`` without the characters XML 1.0 cannot carry."""
    return text if text.isprintable() else _NOT_XML.sub("", text)


def field(form: FormData, name: str, limit: int = 10_000) -> str:
    """A text field of a form, '' when missing, cut at ``limit`` characters, without what XML cannot carry."""
    value: Any = form.get(name)
    return clean(value[:limit]) if isinstance(value, str) else ""


def text_field(form: FormData, name: str, limit: int = 10_000) -> str:
    """A field of data (a name, a reference, a search): ``field``, trimmed and in Unicode's composed form
    (NFC), as SOAP takes it, so "Mu\u0308ller" typed or pasted from a decomposed source is "M\u00fcller"."""
    text = field(form, name, limit).strip()
    return text if text.isascii() else unicodedata.normalize("NFC", text)
