"""Each login's fair share of the console: at most ``IN_FLIGHT`` of its requests run at once, ``WAITING`` more
wait for their turn on the event loop, and any further one is answered 429 at once.

The worker threads are shared by every page of every user (each page reads the database in one), and the
connection limits allow 64 connections per address: one login's script asking for 40 exports at once held every
thread, and another client's list page waited 15 s for one. Waiting here costs no thread. Only requests of a
session the server still has are counted (this runs after ``ServerSessions``): a copy of a cookie whose session
ended cannot take its login's share. Requests without a login (the login page) and static files are not counted.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from starlette.requests import HTTPConnection
from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.entrypoints.web.texts import DEFAULT, LANGS, translator

log = logging.getLogger("gateway.web")
IN_FLIGHT = 4  # a browser opens up to 6 connections to a host; a person rarely has 4 pages loading at once
WAITING = 16


@dataclass
class _Share:
    turns: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(IN_FLIGHT))
    present: int = 0  # running and waiting
    refused: int = 0  # answered 429 since its requests last all ended (logged once at the first, once at the end)


class LoginShare:
    """The middleware (inside the server-side session check)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.shares: dict[str, _Share] = {}  # only logins with a request here now: removed when the last ends

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        session = scope.get("session") if scope["type"] == "http" else None
        login = session.get("login") if session else None
        if not isinstance(login, str) or str(scope.get("path", "")).startswith("/static/"):
            await self.app(scope, receive, send)
            return
        share = self.shares.setdefault(login, _Share())
        if share.present >= IN_FLIGHT + WAITING:
            if not share.refused:
                log.warning("web.login_busy login=%s in_flight=%d waiting=%d", login, IN_FLIGHT, WAITING)
            share.refused += 1
            await self._busy(scope, receive, send)
            return
        share.present += 1
        try:
            async with share.turns:
                await self.app(scope, receive, send)
        finally:
            share.present -= 1
            if share.present == 0:
                self.shares.pop(login, None)
                if share.refused:
                    log.info("web.login_busy_over login=%s refused=%d", login, share.refused)

    @staticmethod
    async def _busy(scope: Scope, receive: Receive, send: Send) -> None:
        lang = HTTPConnection(scope).cookies.get("lang")
        t = translator(lang if lang in LANGS else DEFAULT)
        page = HTMLResponse(f"<!doctype html><title>{t('app_name')}</title><p>{t('login_busy')}</p>", 429,
                            headers={"Retry-After": "2"})
        await page(scope, receive, send)
