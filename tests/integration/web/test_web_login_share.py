"""One login's flood of requests does not take the console from everyone else (``login_share.py``).

Pages run their database work in worker threads that every user shares. One login's script asking for 45 exports at
once held all 40 of them, and another client's list page waited for a thread (measured: 15 s behind 40 exports of
5,000 claims). Now a login has at most 4 requests running and 16 waiting on the event loop; more are answered 429.

The real Starlette app over httpx's ASGI transport; the export is held on a gate, so "running" lasts exactly as long
as the test needs.
"""

from __future__ import annotations

import asyncio
import re
import threading
from typing import Any

import httpx
import pytest

from gateway.entrypoints.web.login_share import IN_FLIGHT, WAITING
from gateway.services import console as console_service
from tests.integration.web.conftest import PASSWORDS, Console

GUARD = 60.0  # only against a hang of the old code: no assertion depends on it
FLOOD = 45  # more than the 40 worker threads


class HeldExports:
    """Stands in for ``console.export_csv``: counts exports running at once and holds each until released."""

    def __init__(self) -> None:
        self.running, self.most = 0, 0
        self.release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, *args: Any) -> bytes:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            self.release.wait(GUARD)
            return b"reference\r\n"
        finally:
            with self._lock:
                self.running -= 1


async def _logged_in(console: Console, login: str) -> httpx.AsyncClient:
    c = httpx.AsyncClient(transport=httpx.ASGITransport(app=console.web), base_url="https://testserver")
    page = await c.get("/login")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found
    r = await c.post("/login", data={"csrf": found.group(1), "login": login, "password": PASSWORDS[login]})
    assert r.status_code == 303
    return c


def test_one_logins_flood_waits_its_turn_and_another_login_is_served(console: Console,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    held = HeldExports()
    monkeypatch.setattr(console_service, "export_csv", held)

    async def flood() -> None:
        anna, ben = await _logged_in(console, "anna"), await _logged_in(console, "ben")
        tasks = [asyncio.create_task(anna.get("/claims/export.csv")) for _ in range(FLOOD)]
        try:
            refused = FLOOD - IN_FLIGHT - WAITING

            async def settled() -> None:
                while held.running < IN_FLIGHT or sum(t.done() for t in tasks) < refused:
                    await asyncio.sleep(0.01)
            await asyncio.wait_for(settled(), GUARD)
            # anna's four run (held), sixteen wait for their turn, the rest were answered at once
            answered = [t.result() for t in tasks if t.done()]
            assert len(answered) == refused and held.running == IN_FLIGHT
            for r in answered:
                assert r.status_code == 429 and r.headers["retry-after"] == "2"
                assert "Zu viele gleichzeitige Anfragen dieses Zugangs" in r.text
                assert r.headers["x-frame-options"] == "DENY"  # through the security headers like any page
            page = await asyncio.wait_for(ben.get("/claims"), GUARD)  # another login: served now
            assert page.status_code == 200 and "Forderungen" in page.text
            held.release.set()
            done = await asyncio.wait_for(asyncio.gather(*(t for t in tasks if not t.done())), GUARD)
            assert [r.status_code for r in done] == [200] * (IN_FLIGHT + WAITING)
            assert held.most == IN_FLIGHT
            assert (await anna.get("/claims")).status_code == 200  # its turn is back
        finally:
            held.release.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await anna.aclose()
            await ben.aclose()
    asyncio.run(flood())


def test_a_copy_of_an_ended_sessions_cookie_does_not_take_its_logins_share(console: Console,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Only requests of a session the server still has are counted: a logged-out cookie's flood is logged out,
    request by request, and the login's own session keeps its share."""
    held = HeldExports()
    monkeypatch.setattr(console_service, "export_csv", held)

    async def flood() -> None:
        stale = await _logged_in(console, "anna")
        copy = stale.cookies.get("__Host-gw_session")
        page = await stale.get("/claims")
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found and (await stale.post("/logout", data={"csrf": found.group(1)})).status_code == 303
        stale.cookies.set("__Host-gw_session", copy)  # the copy of the ended session's cookie
        anna = await _logged_in(console, "anna")
        answers = await asyncio.wait_for(asyncio.gather(*(stale.get("/claims/export.csv") for _ in range(FLOOD))),
                                         GUARD)
        assert {r.status_code for r in answers} == {303}  # logged out, every one: none counted, none 429
        held.release.set()
        assert (await anna.get("/claims/export.csv")).status_code == 200
        await stale.aclose()
        await anna.aclose()
    try:
        asyncio.run(flood())
    finally:
        held.release.set()
