"""The console while its PostgreSQL cannot be reached (a restart, a failover): pages answer 503 "try again in a few
seconds" with Retry-After, not the 500 "an error occurred" of a bug, and work again once the database is back.

The database is the real PostgreSQL behind the loopback relay of ``tests/e2e/test_serve_database_away.py``,
closed (connections cut and refused) and opened again."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from gateway.bootstrap import build_app
from gateway.entrypoints.web.app import build_web_app
from gateway.entrypoints.web.users import UserBook
from tests.e2e.test_serve_database_away import Relay
from tests.integration.web.conftest import Console, console_config


def test_pages_say_try_again_while_the_database_is_away(tmp_path: Path, db_url: str,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("a database server that goes away: PostgreSQL")
    url = make_url(db_url)
    relay = Relay((url.host or "127.0.0.1", url.port or 5432))
    relay.open()
    app = build_app(console_config(tmp_path, url.set(port=relay.port).render_as_string(hide_password=False)),
                    migrate=True)
    try:
        console = Console(app, build_web_app(app, UserBook(app.config)))
        c = console.client("anna")
        assert c.get("/claims").status_code == 200

        relay.close()
        caplog.set_level(logging.WARNING)
        away = c.get("/claims")
        assert away.status_code == 503 and away.headers.get("Retry-After") == "10", away.text
        assert "nicht erreichbar" in away.text and "Fehler ist aufgetreten" not in away.text
        assert any(r.getMessage().startswith("web.busy ") for r in caplog.records)  # a warning, not an error

        relay.open()
        assert c.get("/claims").status_code == 200  # the same session: nothing was lost meanwhile
    finally:
        relay.close()
        app.close()
