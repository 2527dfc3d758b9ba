"""One login throttle per process for SOAP and the web console (``App.login_throttle``): failures at one
door count at the other, per login name, and a throttled attempt is refused there without a password check.

A real SOAP endpoint (cheroot over HTTPS on 127.0.0.1, ephemeral port) and the console (Starlette's
TestClient) built on the same App, as ``serve`` builds them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.bootstrap import App, build_app
from gateway.config import load_config
from gateway.entrypoints.soap.server import SoapServer
from gateway.entrypoints.web.app import build_web_app
from gateway.services.keys import init_keys
from tests.conftest import write_config
from tests.integration.soap.conftest import PASSWORDS as SOAP_PASSWORDS
from tests.integration.soap.conftest import Endpoint, client_config
from tests.integration.soap.test_soap_hardening import _post
from tests.integration.web.conftest import PASSWORDS, Console, web_config

LOGIN = {"delay_after": 2, "delay_seconds": 60, "block_after": 50, "address_factor": 10}


@pytest.fixture
def both(tmp_path: Path, db_url: str) -> Iterator[tuple[Endpoint, Console]]:
    path = write_config(tmp_path, db_url, clients=client_config(), routing=[], web=web_config(),
                        soap={"login": LOGIN})
    init_keys(load_config(path))
    app: App = build_app(path, migrate=True)
    server = SoapServer(app, host="127.0.0.1", port=0)
    server.start()
    try:
        yield Endpoint(app, server, app.config.keys_dir / "tls.crt"), Console(app, build_web_app(app))
    finally:
        server.stop()
        app.close()


def test_soap_failures_throttle_the_same_login_on_the_console(both: tuple[Endpoint, Console]) -> None:
    ep, console = both
    assert console.web.state.users.throttle is ep.server.gate.auth.throttle is ep.app.login_throttle
    assert [_post(ep, ("anna", "guess")).status_code for _ in range(3)] == [401, 401, 429]
    c = console.client()
    refused = console.login(c, "anna", PASSWORDS["anna"])  # the right password, at the other door
    assert refused.status_code == 429 and "Zu viele Fehlversuche" in refused.text
    assert console.login(c, "ben", PASSWORDS["ben"]).status_code == 303  # other logins are not held up


def test_console_failures_throttle_the_same_login_over_soap(both: tuple[Endpoint, Console]) -> None:
    ep, console = both
    c = console.client()
    assert [console.login(c, "other-erp", "guess").status_code for _ in range(3)] == [401, 401, 429]
    before = ep.server.gate.auth.verifications
    assert _post(ep, ("other-erp", SOAP_PASSWORDS["other-erp"])).status_code == 429
    assert ep.server.gate.auth.verifications == before  # refused without a password check
    assert _post(ep, ("demo-erp", SOAP_PASSWORDS["demo-erp"])).status_code == 200
