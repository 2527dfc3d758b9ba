"""The web console over Starlette's TestClient (httpx) on a gateway with two clients and stored claims.

Users: ``anna`` (client demo, submit), ``ben`` (client other, submit), ``vera`` (client demo, read only),
``olga`` (operator). Password hashes use a low scrypt cost to keep the tests fast.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway.bootstrap import App, build_app
from gateway.config import load_config
from gateway.crypto.passwords import verify_password
from gateway.entrypoints.web.app import build_web_app
from gateway.entrypoints.web.users import UserBook
from gateway.services.dispatch import Dispatcher
from gateway.services.ingest import ingest_file
from gateway.services.keys import init_keys
from tests.conftest import PG_URL, ROOT, _pg_schema_url, write_config

DEMO = ROOT / "examples" / "demo.csv"
PASSWORDS = {"anna": "anna password 1", "ben": "ben password 22", "vera": "vera password 333",
             "olga": "olga password 4444"}


def cheap_hash(password: str) -> str:
    salt = b"0123456789abcdef"
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2 ** 10, r=8, p=1, dklen=32)
    stored = f"scrypt${2 ** 10}$8$1${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    assert verify_password(password, stored)
    return stored


def web_config(**extra: Any) -> dict[str, Any]:
    h = {u: cheap_hash(p) for u, p in PASSWORDS.items()}
    return {"enabled": True, "port": 0, "users": {
        "anna": {"password_hash": h["anna"], "client": "demo", "role": "submit"},
        "ben": {"password_hash": h["ben"], "client": "other", "role": "submit"},
        "vera": {"password_hash": h["vera"], "client": "demo", "role": "read"},
        "olga": {"password_hash": h["olga"], "operator": True}}, **extra}


def console_config(tmp_path: Path, db_url: str, **overrides: Any) -> Path:
    clients = {"demo": {"name": "Demo", "mapping": "demo", "default_partner": "demo-agency"},
               "other": {"name": "Other", "mapping": "demo", "default_partner": "demo-agency"}}
    path = write_config(tmp_path, db_url, clients=clients, routing=[], web=web_config(),
                        soap={"login": {"delay_after": 3, "delay_seconds": 30, "block_after": 6}}, **overrides)
    init_keys(load_config(path))
    return path


@dataclass
class Console:
    app: App
    web: Any

    def client(self, login: str | None = None) -> TestClient:
        c = TestClient(self.web, base_url="https://testserver", follow_redirects=False)
        if login:
            r = self.login(c, login, PASSWORDS[login])
            assert r.status_code == 303, r.text
        return c

    @staticmethod
    def csrf(c: TestClient, path: str = "/login") -> str:
        page = c.get(path)
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found, f"no csrf token on {path}"
        return found.group(1)

    def login(self, c: TestClient, login: str, password: str) -> Any:
        return c.post("/login", data={"csrf": self.csrf(c), "login": login, "password": password})


def claim_ids(app: App, client_id: str) -> dict[str, int]:
    """Reference -> claim id of a client's claims."""
    from gateway.services.claim_queries import operator_list
    return {r["creditor_reference"]: r["id"] for r in operator_list(app, client_id=client_id, limit=500)}


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def stored(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """One gateway per test module and database, with the demo file stored for both clients and delivered.

    Tests of a module share it: each changes only claims no other test of its module looks at.
    """
    yield from stored_gateway(request, tmp_path_factory)


def stored_gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                   **overrides: Any) -> Iterator[App]:
    """``stored`` with config ``overrides`` (a module's own ``stored`` fixture calls this)."""
    base = tmp_path_factory.mktemp("web")
    if request.param == "sqlite":
        urls: Iterator[str] = iter([f"sqlite:///{base / 'var' / 'gateway.db'}"])
    elif not PG_URL:
        pytest.skip("GATEWAY_TEST_PG_URL not set: PostgreSQL run skipped (CI sets it)")
    else:
        urls = _pg_schema_url()
    url = next(urls)
    app = build_app(console_config(base, url, **overrides), migrate=True)
    try:
        ingest_file(app, DEMO, "demo")
        ingest_file(app, DEMO, "other")
        Dispatcher(app, owner="t").drain()  # handed over: news the clients have not seen (bold)
        yield app
    finally:
        app.close()
        for _ in urls:  # drops the PostgreSQL schema
            pass


@pytest.fixture
def console(stored: App) -> Console:
    """A fresh console (its own login throttle, not the module's gateway's shared one) on the module's gateway."""
    return Console(stored, build_web_app(stored, UserBook(stored.config)))
