"""The web console for a client's sandbox login: a banner on every page (German and English), only sandbox claims
and runs; the production login and the operator see no sandbox claim and no banner."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.bootstrap import build_app
from gateway.config import load_config
from gateway.entrypoints.web.app import build_web_app
from gateway.services.dispatch import Dispatcher
from gateway.services.ingest import ingest_file
from gateway.services.keys import init_keys
from tests.conftest import write_config
from tests.integration.web.conftest import DEMO, PASSWORDS, Console, cheap_hash

BANNER_DE, BANNER_EN = "Sandbox: Testdaten", "Sandbox: test data"


@pytest.fixture
def console(tmp_path: Path, db_url: str) -> Iterator[Console]:
    users = {"anna": {"password_hash": cheap_hash(PASSWORDS["anna"]), "client": "demo", "role": "submit"},
             "ben": {"password_hash": cheap_hash(PASSWORDS["ben"]), "client": "demo", "role": "submit",
                     "sandbox": True},
             "olga": {"password_hash": cheap_hash(PASSWORDS["olga"]), "operator": True}}
    path = write_config(
        tmp_path, db_url, web={"enabled": True, "port": 0, "users": users}, routing=[],
        clients={"demo": {"name": "Demo", "mapping": "demo", "default_partner": "demo-agency"}},
        partners={"sandbox": {"adapter": "directory", "certificate": "var/keys/partners/sandbox.crt",
                              "options": {"path": "var/partners/sandbox"}, "sandbox": True,
                              "simulator": {"enabled": True}}})
    init_keys(load_config(path))
    app = build_app(path, migrate=True)
    try:
        ingest_file(app, DEMO, "demo")
        ingest_file(app, DEMO.with_name("demo.csv"), "demo.sandbox", filename="sandbox-run.csv")
        Dispatcher(app, owner="t").drain()
        yield Console(app, build_web_app(app))
    finally:
        app.close()


def _ids(app: object, client: str) -> set[int]:
    from gateway.services.claim_queries import operator_list
    return {int(r["id"]) for r in operator_list(app, client_id=client, limit=500)}  # type: ignore[arg-type]


def test_the_sandbox_login_sees_a_banner_and_only_sandbox_claims(console: Console) -> None:
    sbx, prod = _ids(console.app, "demo.sandbox"), _ids(console.app, "demo")
    assert sbx and prod and not sbx & prod
    c = console.client("ben")
    for path in ("/claims", "/runs", f"/claims/{min(sbx)}"):
        page = c.get(path)
        assert page.status_code == 200 and BANNER_DE in page.text, path
    assert BANNER_EN in c.get("/claims?lang=en").text
    assert c.get(f"/claims/{min(prod)}").status_code == 404  # a production claim is another client's
    runs = c.get("/runs").text
    assert "SBX" in runs

    anna = console.client("anna")
    assert BANNER_DE not in anna.get("/claims").text
    assert anna.get(f"/claims/{min(sbx)}").status_code == 404
    olga = console.client("olga")
    listed = olga.get("/operator/claims").text
    assert BANNER_DE not in listed and "demo.sandbox" not in listed
    assert "SBX" not in olga.get("/operator/runs").text
