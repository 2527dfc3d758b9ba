"""Someone who knows a login name (an ERP's is often the client's name) tries wrong passwords at a running
`gateway serve` until the throttle blocks that name: the login's owner, from the address it logged in from
before, still gets in, over the console and over SOAP; a stranger's address stays blocked. Before, ten wrong
passwords from anywhere locked the console's owner out for 15 minutes, again and again (an ERP only while
SOAP's few minutes' memory of its last good login had lapsed: after a quiet night or a restart)."""

from __future__ import annotations

import re
import sqlite3
import signal
from pathlib import Path

import requests
from requests_toolbelt.adapters.source import SourceAddressAdapter  # type: ignore[import-untyped]

from tests.e2e.test_serve_fronts_flood import ATTACKER, HONEST, Running, erp, running, start  # noqa: F401
from tests.integration.soap.conftest import PASSWORDS, claim

THROTTLE = {"delay_after": 3, "delay_seconds": 0.01, "delay_max_seconds": 0.02, "block_after": 10,
            "block_seconds": 900, "address_factor": 5}


def browser(r: Running, source: str) -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    s.verify = str(r.base / "var" / "keys" / "tls.crt")
    s.mount("https://", SourceAddressAdapter(source))
    return s


def console_login(r: Running, s: requests.Session, login: str, password: str) -> int:
    """Log in through the form as a browser does (its CSRF token first); the answer's status (303: logged in)."""
    url = f"https://127.0.0.1:{r.ports['web']}/login"
    page = s.get(url, timeout=30)
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return s.post(url, data={"csrf": found.group(1), "login": login, "password": password}, allow_redirects=False,
                  timeout=30).status_code


def soap_status(r: Running, source: str, password: str) -> int:
    s = browser(r, source)
    body = ('<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ns0="urn:inkasso-gateway:soap:v1">'
            '<s:Body><ns0:GetClaim><ns0:claim_id>1</ns0:claim_id></ns0:GetClaim></s:Body></s:Envelope>')
    return s.post(f"https://127.0.0.1:{r.ports['soap']}/soap", data=body.encode(), auth=("demo-erp", password),
                  headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=30).status_code


def block(attempt: object) -> int:
    """Wrong passwords until ten were checked (throttled ones are not): the name is blocked then."""
    checked = 0
    for _ in range(500):
        code = attempt()  # type: ignore[operator]
        checked += code == 401
        if checked >= 10:
            return checked
    raise AssertionError("the throttle never let ten attempts through")


def test_a_blocked_login_name_still_lets_its_owner_in_from_where_it_logged_in(running: list[Running],
                                                                               tmp_path: Path) -> None:
    r = start(tmp_path, soap={"enabled": True, "port": 0, "login": THROTTLE},
              web={"enabled": True, "port": 0,
                   "users": {"demo": {"client": "demo", "password_file": "var/keys/web-demo.password"}}})
    running.append(r)
    password = (r.base / "var" / "keys" / "web-demo.password").read_text().strip()
    # the owners log in as every day, from their address
    assert console_login(r, browser(r, HONEST), "demo", password) == 303
    assert erp(r).service.SubmitClaims(claims={"ClaimInput": [claim("LOCK-1")]}).results.ClaimResult[0].outcome \
        == "accepted"

    attacker = browser(r, ATTACKER)
    block(lambda: console_login(r, attacker, "demo", "guess"))
    block(lambda: soap_status(r, ATTACKER, "guess"))
    assert console_login(r, attacker, "demo", password) == 429  # the guesser is blocked, right password or not
    assert console_login(r, browser(r, "127.0.0.3"), "demo", password) == 429  # so is an address never seen

    # the owners, from where they logged in before, are not locked out by the stranger
    assert console_login(r, browser(r, HONEST), "demo", password) == 303
    assert soap_status(r, HONEST, PASSWORDS["demo-erp"]) == 200
    assert console_login(r, attacker, "demo", password) == 429  # and their logins did not unblock the stranger
    r.proc.send_signal(signal.SIGTERM)
    assert r.proc.wait(30) == 0


def test_a_login_scripted_again_and_again_keeps_a_bounded_number_of_sessions(running: list[Running],
                                                                            tmp_path: Path) -> None:
    r = start(tmp_path, web={"enabled": True, "port": 0,
                             "users": {"demo": {"client": "demo", "password_file": "var/keys/web-demo.password"}}})
    running.append(r)
    password = (r.base / "var" / "keys" / "web-demo.password").read_text().strip()
    sessions = []
    for _ in range(40):  # each a new browser: a new session row on the server
        s = browser(r, HONEST)
        assert console_login(r, s, "demo", password) == 303
        sessions.append(s)
    claims = f"https://127.0.0.1:{r.ports['web']}/claims"
    assert sessions[-1].get(claims, allow_redirects=False, timeout=30).status_code == 200
    assert sessions[0].get(claims, allow_redirects=False, timeout=30).headers.get("location") == "/login"
    with sqlite3.connect(r.base / "var" / "gateway.db") as db:
        (rows,) = db.execute("SELECT count(*) FROM web_sessions").fetchone()
    assert rows == 32
    r.proc.send_signal(signal.SIGTERM)
    assert r.proc.wait(30) == 0
