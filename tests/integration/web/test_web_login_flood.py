"""A flood of wrong logins from many addresses: the console answers it without parking its worker threads.

Each password check is a scrypt hash in a worker thread. The threads are shared by every page of every user, and
the flood came from so many addresses that the throttle had nothing to say yet: every login waited in a worker
thread for one of the two hash slots, and pages stalled behind them. Now the throttle is asked on the event loop,
and a login that finds both hash slots taken gets the throttle's answer (429, try again) at once.

The real Starlette app over httpx's ASGI transport, one transport per source address; the hash is held on a gate
so that "both slots taken" lasts exactly as long as the test needs, not a moment measured by a clock.
"""

from __future__ import annotations

import asyncio
import re
import threading
from typing import Any

import httpx
import pytest

from gateway.entrypoints.web import users as users_module
from gateway.entrypoints.web.users import MAX_HASHES, UserBook
from tests.integration.web.conftest import PASSWORDS, Console

GUARD = 60.0  # only against a hang of the old code: no assertion depends on it


class HeldHashes:
    """Stands in for ``verify_password``: counts hashes running at once and holds each until released."""

    def __init__(self, real: Any) -> None:
        self.real, self.running, self.most, self.started = real, 0, 0, 0
        self.release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, password: str, stored: str) -> bool:
        with self._lock:
            self.running += 1
            self.started += 1
            self.most = max(self.most, self.running)
        try:
            self.release.wait(GUARD)
            return bool(self.real(password, stored))
        finally:
            with self._lock:
                self.running -= 1


async def _client(console: Console, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=console.web, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="https://testserver")


async def _login(c: httpx.AsyncClient, login: str, password: str) -> httpx.Response:
    page = await c.get("/login")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found
    return await c.post("/login", data={"csrf": found.group(1), "login": login, "password": password})


def test_a_login_flood_from_many_addresses_is_answered_without_waiting_for_a_hash(
        console: Console, monkeypatch: pytest.MonkeyPatch) -> None:
    book: UserBook = console.web.state.users
    held = HeldHashes(users_module.verify_password)
    monkeypatch.setattr(users_module, "verify_password", held)
    # one address already throttled (3 failures: the 4th attempt waits 30 s, conftest's soap.login)
    for _ in range(3):
        book.throttle.failed(username="anna", address="10.9.9.9")

    async def flood() -> None:
        clients = [await _client(console, f"10.0.{i}.1") for i in range(12)]
        throttled, owner = await _client(console, "10.9.9.9"), await _client(console, "10.7.7.7")
        later = await _client(console, "10.8.8.8")
        try:
            first = [asyncio.create_task(_login(c, f"nobody{i}", "guess")) for i, c in enumerate(clients[:MAX_HASHES])]
            while held.running < MAX_HASHES:  # both hash slots taken, held on the gate
                await asyncio.sleep(0.01)
            # every further login is answered while the two hashes still run: none waits for a slot
            rest = await asyncio.wait_for(asyncio.gather(
                *(_login(c, f"nobody{i}", "guess") for i, c in enumerate(clients[MAX_HASHES:], MAX_HASHES)),
                _login(owner, "ben", PASSWORDS["ben"])), GUARD)  # the right password too: try again
            assert held.running == MAX_HASHES and held.started == MAX_HASHES
            for r in rest:
                assert r.status_code == 429 and r.headers["retry-after"] == "1", r.status_code
                assert "Bitte in 1 Sekunden erneut versuchen" in r.text
            # the throttle's own answer comes first, before any hash slot is looked at
            r = await asyncio.wait_for(_login(throttled, "anna", PASSWORDS["anna"]), GUARD)
            assert r.status_code == 429 and int(r.headers["retry-after"]) > 1
            held.release.set()
            assert [r.status_code for r in await asyncio.gather(*first)] == [401] * MAX_HASHES
            # slots given back: the right password of an untouched address logs in
            ok = await _login(later, "ben", PASSWORDS["ben"])
            assert ok.status_code == 303
        finally:
            held.release.set()
            for c in (*clients, throttled, owner, later):
                await c.aclose()
    asyncio.run(flood())
    assert held.most == MAX_HASHES
    assert held.started == MAX_HASHES + 1  # the flood's two and the last login: nothing refused cost a hash
