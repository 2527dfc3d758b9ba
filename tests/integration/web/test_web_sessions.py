"""Server-side sessions: a logout ends the session for every copy of its cookie, an expired session is logged
out, a session is bound to its login, and the table holds the token's hash, never the token."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from gateway.config import load_config
from gateway.entrypoints.web.app import SESSION_COOKIE
from gateway.errors import ConfigError
from gateway.store.schema import web_sessions
from tests.conftest import write_config
from tests.integration.web.conftest import Console


def cookie_session(c: object) -> dict[str, object]:
    """The session the signed cookie carries (its payload is base64 JSON before the signature)."""
    raw = c.cookies[SESSION_COOKIE]  # type: ignore[attr-defined]
    payload = raw.split(".")[0]
    return dict(json.loads(base64.b64decode(payload + "=" * (-len(payload) % 4))))


def test_logout_ends_a_copied_cookie_too(console: Console) -> None:
    c = console.client("anna")
    copy = console.client()  # another browser with the same cookie (stolen or copied)
    copy.cookies.set(SESSION_COOKIE, c.cookies[SESSION_COOKIE])
    assert copy.get("/claims").status_code == 200
    token = cookie_session(c)["sid"]
    with console.app.engine.connect() as conn:
        stored = conn.execute(select(web_sessions.c.token_hash, web_sessions.c.login)).all()
    assert (hashlib.sha256(str(token).encode()).hexdigest(), "anna") in [tuple(r) for r in stored]
    assert all(str(token) not in r[0] for r in stored)  # only its hash
    assert c.post("/logout", data={"csrf": console.csrf(c, "/claims")}).status_code == 303
    refused = copy.get("/claims")
    assert refused.status_code == 303 and refused.headers["location"] == "/login"
    assert c.get("/claims").headers["location"] == "/login"


def test_an_expired_session_is_logged_out_and_a_used_one_is_extended(console: Console) -> None:
    c = console.client("vera")
    token_hash = hashlib.sha256(str(cookie_session(c)["sid"]).encode()).hexdigest()
    soon = console.app.now() + timedelta(seconds=30)
    with console.app.engine.begin() as conn:
        conn.execute(update(web_sessions).where(web_sessions.c.token_hash == token_hash).values(expires_at=soon))
    assert c.get("/claims").status_code == 200  # used: moved on by the session's max age
    with console.app.engine.connect() as conn:
        expires = conn.execute(select(web_sessions.c.expires_at).where(web_sessions.c.token_hash == token_hash)
                               ).scalar_one()
    assert expires > soon + timedelta(hours=1)
    with console.app.engine.begin() as conn:
        conn.execute(update(web_sessions).where(web_sessions.c.token_hash == token_hash)
                     .values(expires_at=console.app.now() - timedelta(seconds=1)))
    assert c.get("/claims").headers["location"] == "/login"


def test_a_session_token_counts_only_for_its_own_login(console: Console) -> None:
    anna, ben = console.client("anna"), console.client("ben")
    # a cookie that names another login than its server-side session (a forged mix) is logged out
    forged = dict(cookie_session(anna), sid=cookie_session(ben)["sid"])
    assert forged["login"] == "anna" and forged["sid"] != cookie_session(anna)["sid"]
    from itsdangerous import TimestampSigner
    from gateway.entrypoints.web.app import session_secret
    signer = TimestampSigner(session_secret(console.app))
    value = signer.sign(base64.b64encode(json.dumps(forged).encode())).decode()
    other = console.client()
    other.cookies.set(SESSION_COOKIE, value)
    assert other.get("/claims").headers["location"] == "/login"


def test_a_session_cookie_under_its_earlier_name_is_logged_out_and_dropped(console: Console) -> None:
    """The cookie is named __Host-gw_session (a sibling host cannot plant or shadow it); a browser still sending a
    valid, signed session under the earlier name gw_session is simply logged out and told to drop it."""
    anna = console.client("anna")
    value = anna.cookies[SESSION_COOKIE]
    old = console.client()
    old.cookies.set("gw_session", value)
    for path in ("/claims", "/"):
        r = old.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/login"
        assert any(h.startswith("gw_session=;") and "max-age=0" in h.lower()
                   for h in r.headers.get_list("set-cookie"))
    assert old.get("/login").status_code == 200  # the login page, no crash
    assert anna.get("/claims").status_code == 200  # the session itself lives on under its own name


def test_a_session_ends_its_absolute_lifetime_after_login_however_busy(console: Console) -> None:
    """Use moves a session's idle expiry on, but never past web.session_absolute_seconds (12 h) after its login:
    a cookie kept busy (a script, a desk where someone clicks now and then) does not stay logged in for ever."""
    assert console.app.config.web.session_absolute_seconds == 12 * 3600
    c = console.client("vera")
    token_hash = hashlib.sha256(str(cookie_session(c)["sid"]).encode()).hexdigest()
    row = web_sessions.c.token_hash == token_hash
    now = console.app.now()
    login_at = now - timedelta(hours=11, minutes=50)  # logged in nearly 12 h ago, in use all along
    with console.app.engine.begin() as conn:
        conn.execute(update(web_sessions).where(row).values(created_at=login_at, expires_at=now + timedelta(
            seconds=30)))
    assert c.get("/claims").status_code == 200  # used: moved on, but only up to 12 h after the login
    with console.app.engine.connect() as conn:
        expires = conn.execute(select(web_sessions.c.expires_at).where(row)).scalar_one()
    assert expires == login_at + timedelta(hours=12)
    with console.app.engine.begin() as conn:  # 12 h after the login, with the idle expiry still hours away
        conn.execute(update(web_sessions).where(row).values(created_at=now - timedelta(hours=12, seconds=1),
                                                            expires_at=now + timedelta(hours=7)))
    assert c.get("/claims").headers["location"] == "/login"
    with console.app.engine.connect() as conn:
        assert conn.execute(select(web_sessions.c.token_hash).where(row)).first() is None  # gone for good


@pytest.mark.parametrize("key", ["session_max_age_seconds", "session_absolute_seconds"])
def test_a_session_lifetime_under_a_minute_is_a_config_error(tmp_path: Path, key: str) -> None:
    path = write_config(tmp_path, f"sqlite:///{tmp_path / 'g.db'}", web={"enabled": True, key: 0})
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert f"web.{key}" in str(refused.value)
