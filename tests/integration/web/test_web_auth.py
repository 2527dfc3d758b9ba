"""Login, logout, throttling, session cookie, security headers and languages of the web console."""

from __future__ import annotations

import re

from gateway.entrypoints.web.app import SESSION_COOKIE
from gateway.entrypoints.web.security import CSP
from tests.integration.web.conftest import PASSWORDS, Console


def test_login_logout_and_where_each_user_lands(console: Console) -> None:
    c = console.client()
    assert c.get("/claims").headers["location"] == "/login"
    assert c.get("/").headers["location"] == "/login"
    page = c.get("/login")
    assert page.status_code == 200 and "Anmelden" in page.text
    wrong = console.login(c, "anna", "not the password")
    assert wrong.status_code == 401 and "Benutzername oder Passwort falsch" in wrong.text
    unknown = console.login(c, "nobody", "whatever")
    assert unknown.status_code == 401
    assert console.login(c, "anna", PASSWORDS["anna"]).headers["location"] == "/"
    assert c.get("/").headers["location"] == "/claims"
    assert c.get("/claims").status_code == 200
    out = c.post("/logout", data={"csrf": console.csrf(c, "/claims")})
    assert out.headers["location"] == "/login"
    assert "Sie sind abgemeldet" in c.get("/login").text
    assert c.get("/claims").headers["location"] == "/login"
    op = console.client("olga")
    assert op.get("/").headers["location"] == "/operator/runs"


def test_failed_logins_are_throttled_even_for_the_right_password(console: Console) -> None:
    c = console.client()
    for _ in range(3):  # soap.login.delay_after in the test config
        assert console.login(c, "anna", "wrong").status_code == 401
    throttled = console.login(c, "anna", PASSWORDS["anna"])
    assert throttled.status_code == 429 and "Zu viele Fehlversuche" in throttled.text
    assert console.client().get("/claims").status_code == 303  # and no session came of it
    # another login from the same address is not held up by anna's count (the address allows 5x more)
    assert console.login(console.client(), "ben", PASSWORDS["ben"]).status_code == 303


def test_session_cookie_and_security_headers(console: Console) -> None:
    c = console.client()
    page = c.get("/login")
    cookie = page.headers["set-cookie"]
    # __Host-: a browser takes it only Secure, for Path=/, without a Domain, from this HTTPS origin
    assert cookie.startswith("__Host-gw_session=")
    flags = [f.strip().lower() for f in cookie.split(";")[1:]]
    for flag in ("httponly", "secure", "samesite=lax", "max-age=43200", "path=/"):
        assert flag in flags
    assert not any(f.startswith("domain") for f in flags)
    for r in (page, c.get("/static/console.css"), c.get("/no/such/page")):
        assert r.headers["content-security-policy"] == CSP
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["strict-transport-security"] == "max-age=31536000"  # HTTPS only, remembered for a year
    assert page.headers["cache-control"] == "no-store"
    assert "'unsafe-inline'" not in CSP and "script-src" not in CSP  # default-src 'none': no script at all
    # no inline style or script in any page
    logged = console.client("anna")
    for path in ("/claims", "/runs", "/upload"):
        html = logged.get(path).text
        assert "<script" not in html and "style=" not in html and "<style" not in html
    # a session cookie signed with another key is no session
    forged = console.client()
    forged.cookies.set(SESSION_COOKIE, cookie.split(";")[0].split("=", 1)[1][:-4] + "AAAA", domain="testserver")
    assert forged.get("/claims").headers["location"] == "/login"


def test_german_by_default_english_by_choice_and_remembered(console: Console) -> None:
    c = console.client("anna")
    assert "Forderungen" in c.get("/claims").text
    en = c.get("/claims?lang=en")
    assert "Claims" in en.text and '<html lang="en">' in en.text
    assert "lang=en" in en.headers["set-cookie"]
    assert '<html lang="en">' in c.get("/runs").text
    assert '<html lang="de">' in c.get("/runs?lang=de").text


def test_every_text_key_in_the_templates_is_in_the_catalog() -> None:
    from gateway.entrypoints.web.pages import HERE
    from gateway.entrypoints.web.texts import STATES, TEXTS
    used = set()
    for template in (HERE / "templates").glob("*.html"):
        used |= set(re.findall(r"\bt\('([a-z_]+)'\s*[,)]", template.read_text()))
    assert used and used - set(TEXTS) - set(STATES) == set()
    assert all(len(pair) == 2 and all(pair) for pair in TEXTS.values())


def test_an_unexpected_error_is_a_plain_500_logged_without_values(console: Console, caplog: object,
                                                                  monkeypatch: object) -> None:
    import logging

    import pytest

    from gateway.services import claim_queries
    assert isinstance(caplog, pytest.LogCaptureFixture) and isinstance(monkeypatch, pytest.MonkeyPatch)
    caplog.set_level(logging.DEBUG)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Jürgen Müller DE89370400440532013000")
    monkeypatch.setattr(claim_queries, "list_claims", broken)
    c = console.client("anna")
    r = c.get("/claims")
    assert r.status_code == 500 and "Ein Fehler ist aufgetreten" in r.text
    assert r.headers["content-security-policy"] == CSP
    assert "web.error path=/claims error=RuntimeError" in caplog.text and "Müller" not in caplog.text
