"""The console attacked: what a hostile client user or an outsider tried, each a defect once.

Every test here failed on the code before its fix.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import select

from gateway.store.schema import web_sessions
from tests.integration.web.conftest import Console
from tests.integration.web.test_web_runs_operator import run_ref
from tests.integration.web.test_web_sessions import cookie_session


def test_a_search_kept_for_the_session_is_not_in_the_database_in_plain(console: Console) -> None:
    """A search may be a debtor's name: kept on the server for the session, it is encrypted like the claims'
    names (a database copy or backup without the keys must not hold it in plain)."""
    c = console.client("anna")
    token = console.csrf(c, "/claims")
    run = run_ref(console, "demo")
    assert c.post("/claims/search", data={"csrf": token, "q": "Jürgen Müller"}).status_code == 303
    assert c.post(f"/runs/{run}/search", data={"csrf": token, "q": "Becker"}).status_code == 303
    key = hashlib.sha256(str(cookie_session(c)["sid"]).encode()).hexdigest()
    with console.app.engine.connect() as conn:
        kept = conn.execute(select(web_sessions.c.search).where(web_sessions.c.token_hash == key)).scalar()
    assert kept
    for planted in ("Müller", "M\\u00fcller", "Jürgen", "J\\u00fcrgen", "Becker"):
        assert planted not in kept, planted
    listed = c.get("/claims").text  # the search still works: the name's claim alone
    assert "RE-2025-0001" in listed and "RE-2025-0002" not in listed
    assert "RE-2025-0004" in c.get(f"/runs/{run}").text  # Lukas Becker's claim of the run
    assert c.post("/claims/search", data={"csrf": token, "q": ""}).status_code == 303
    assert "RE-2025-0002" in c.get("/claims").text
