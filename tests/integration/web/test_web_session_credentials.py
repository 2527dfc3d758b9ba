"""A session is bound to its login's credential: a reset password or a removed login ends the login's sessions at
once, a login re-added (for another client) or re-pointed by hand in the config file never takes over an old
session; search texts stay on the server, never in the (signed, not encrypted) cookie; an admin change written
to the config file but not applicable is not called "not saved". Tests of this module run in this order: the
last one leaves the config file unapplicable."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml
from sqlalchemy import func, select

from gateway.config import load_config
from gateway.entrypoints.web.app import SESSION_COOKIE
from gateway.store.schema import web_sessions
from tests.integration.web.conftest import Console


def _sessions(console: Console, login: str) -> int:
    with console.app.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(web_sessions)
                                .where(web_sessions.c.login == login)).scalar_one())


def _signed_out(c: object) -> bool:
    r = c.get("/claims")  # type: ignore[attr-defined]
    return bool(r.status_code == 303 and r.headers["location"] == "/login")


def test_password_reset_ends_the_login_s_sessions(console: Console) -> None:
    victim = console.client("vera")  # a session opened with the old password (say, a stolen one)
    assert victim.get("/claims").status_code == 200
    op = console.client("olga")
    token = console.csrf(op, "/operator/clients/demo")
    r = op.post("/operator/clients/demo/password", data={"csrf": token, "kind": "web", "login": "vera"})
    assert r.status_code == 200
    assert _sessions(console, "vera") == 0  # deleted, not only refused
    assert _signed_out(victim)


def test_old_session_of_a_removed_login_does_not_return_for_another_client(console: Console) -> None:
    old = console.client("anna")  # anna works for client demo
    assert old.get("/claims").status_code == 200
    op = console.client("olga")
    token = console.csrf(op, "/operator/clients/demo")
    r = op.post("/operator/clients/demo/logins/remove", data={"csrf": token, "login": "anna"})
    assert r.status_code == 303
    assert "sofort" in op.get(r.headers["location"]).text  # the page's promise ...
    assert _sessions(console, "anna") == 0  # ... is kept
    r = op.post("/operator/clients/other/logins", data={"csrf": token, "login": "anna", "role": "submit"})
    assert r.status_code == 200  # a new person named anna at client other, with a new password
    assert _signed_out(old), "demo's old anna session is now signed in as other's anna"


def test_a_login_re_pointed_by_hand_does_not_keep_its_sessions(console: Console) -> None:
    old = console.client("ben")  # ben works for client other
    assert old.get("/claims").status_code == 200
    path = Path(console.app.config.source)
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["web"]["users"]["ben"]["client"] = "demo"  # same name, same password, another client
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    console.web.state.apply_config(load_config(path))  # what serve's config watcher does
    assert _signed_out(old), "other's ben session now shows demo's claims"
    assert _sessions(console, "ben") == 0  # ended for good: it does not return if the change is undone
    doc["web"]["users"]["ben"]["client"] = "other"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    console.web.state.apply_config(load_config(path))
    assert _signed_out(old)
    assert console.client("ben").get("/claims").status_code == 200  # a new login works


def test_search_texts_are_not_readable_in_the_cookie(console: Console) -> None:
    c = console.client("ben")
    token = console.csrf(c, "/claims")
    assert c.post("/claims/search", data={"csrf": token, "q": "Quetzalwurm"}).status_code == 303
    run = c.get("/runs").text
    assert c.post("/runs/R1/search", data={"csrf": token, "q": "Quetzalotl"}).status_code == 303
    raw = str(c.cookies.get(SESSION_COOKIE))
    payload = raw.split(".")[0]
    decoded = base64.b64decode(payload + "=" * (-len(payload) % 4))
    assert b"Quetzal" not in decoded, decoded[:200]
    assert run  # the runs page rendered
    assert "Keine Forderungen gefunden" in c.get("/claims").text  # the search is still applied
    other = console.client("ben")  # another session of the same login does not share it
    assert "Keine Forderungen gefunden" not in other.get("/claims").text
    token = console.csrf(c, "/claims")
    assert c.post("/claims/search", data={"csrf": token, "q": ""}).status_code == 303  # cleared
    assert "Keine Forderungen gefunden" not in c.get("/claims").text


def test_not_saved_means_not_saved(console: Console) -> None:
    path = Path(console.app.config.source)
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["web"]["users"]["kiosk"] = {"client": "demo", "password_file": "var/keys/no-such-file"}
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    op = console.client("olga")
    token = console.csrf(op, "/operator/clients")
    r = op.post("/operator/clients", data={"csrf": token, "client_id": "neu", "name": "Neu GmbH",
                                           "default_partner": "demo-agency"})
    assert r.status_code == 303
    page = op.get(r.headers["location"]).text
    assert "neu" in yaml.safe_load(path.read_text(encoding="utf-8"))["clients"]
    assert "Nicht gespeichert" not in page
    assert "gespeichert, aber noch nicht wirksam" in page
