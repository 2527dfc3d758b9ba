"""The SOAP endpoint against hostile clients: the WSDL's address, login throttling, reading before
authentication, slow peers, media types and token faults, several credentials per client.

Everything runs against the real HTTPS endpoint on 127.0.0.1 (cheroot, TLS, spyne) with httpx, zeep
and raw sockets; every loop and every socket count is bounded.
"""

from __future__ import annotations

import base64
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import zeep
from lxml import etree

from gateway.bootstrap import App, build_app
from gateway.config import load_config
from gateway.entrypoints.soap.server import SoapServer
from gateway.services.keys import init_keys
from tests.conftest import write_config
from tests.integration.soap.conftest import PASSWORDS, Endpoint, cheap_hash, client_config
from tests.support import wait_for

PUBLIC = "https://soap.gateway.example:9443/soap"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
ENVELOPE = ('<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:g="urn:inkasso-gateway:soap:v1">{header}<s:Body><g:GetChanges/></s:Body></s:Envelope>')
ROT = {"rot-old": "old password 1111", "rot-new": "new password 2222", "rot-read": "read password 3333"}


def _token(user: str, password: str, kind: str = "PasswordText") -> str:
    return (f'<s:Header><w:Security xmlns:w="{WSSE}"><w:UsernameToken><w:Username>{user}</w:Username>'
            f'<w:Password Type="{WSSE[:-len("wssecurity-secext-1.0.xsd")]}username-token-profile-1.0#{kind}">'
            f'{password}</w:Password></w:UsernameToken></w:Security></s:Header>')


@pytest.fixture
def make_endpoint(tmp_path: Path, db_url: str) -> Iterator[Any]:
    """Start the real endpoint with extra ``soap`` settings; stopped and closed at the end."""
    with ExitStack() as stack:
        def start(**soap: Any) -> Endpoint:
            clients = client_config(rot={"name": "Rot", "mapping": "demo", "default_partner": "demo-agency",
                                         "soap": {"credentials": [
                                             {"username": u, "password_hash": cheap_hash(p),
                                              "role": "read" if u == "rot-read" else "submit"}
                                             for u, p in ROT.items()]}})
            path = write_config(tmp_path, db_url, clients=clients, soap={
                "threads": 4, "max_request_bytes": 256 * 1024, "changes_settle_seconds": 0, **soap})
            init_keys(load_config(path))
            app = build_app(path, migrate=True)
            stack.callback(app.close)
            server = SoapServer(app, host="127.0.0.1", port=0)
            server.start()
            stack.callback(server.stop)
            return Endpoint(app, server, app.config.keys_dir / "tls.crt")
        yield start


def _http(ep: Endpoint) -> httpx.Client:
    return httpx.Client(verify=ssl.create_default_context(cafile=str(ep.cert)), trust_env=False, timeout=30)


def _post(ep: Endpoint, auth: tuple[str, str] | None = None, header: str = "",
          content_type: str = "text/xml; charset=utf-8") -> httpx.Response:
    with _http(ep) as http:
        return http.post(ep.url, content=ENVELOPE.format(header=header).encode(), auth=auth,
                         headers={"Content-Type": content_type, "SOAPAction": '"GetChanges"'})


def _fault(r: httpx.Response) -> tuple[str, str]:
    root = etree.fromstring(r.content)
    return root.findtext(".//faultcode") or "", root.findtext(".//faultstring") or ""


def _address(wsdl: bytes) -> str:
    root = etree.fromstring(wsdl)
    # one port per service class (claims, credit checks), all at the same address
    (loc,) = set(root.xpath("//*[local-name()='address']/@location"))
    return str(loc)


def test_the_wsdl_names_the_configured_address_never_the_host_header(make_endpoint: Any) -> None:
    ep = make_endpoint(public_url=PUBLIC)
    with _http(ep) as http:
        hostile = http.get(ep.url + "?wsdl", headers={"Host": "monitoring-probe.internal:9999"})
        after = http.get(ep.url + "?wsdl")
    assert hostile.status_code == after.status_code == 200
    assert _address(hostile.content) == _address(after.content) == PUBLIC

    # Without soap.public_url: the listener's own address, whoever asked first.
    ep.app.config.soap = msgspec.structs.replace(ep.app.config.soap, public_url=None)
    second = SoapServer(ep.app, host="127.0.0.1", port=0)
    second.start()
    try:
        with _http(ep) as http:
            first = http.get(second.url + "?wsdl", headers={"Host": "evil.example:1"})
            later = http.get(second.url + "?wsdl")
        assert _address(first.content) == _address(later.content) == second.url
    finally:
        second.stop()


def test_wrong_passwords_are_throttled_and_other_clients_still_get_in(make_endpoint: Any) -> None:
    ep = make_endpoint(login={"delay_after": 2, "delay_seconds": 60, "block_after": 50, "address_factor": 10})
    auth = ep.server.gate.auth
    assert _post(ep, ("demo-erp", PASSWORDS["demo-erp"])).status_code == 200  # a client working already
    statuses, costs = [], []
    for _ in range(8):  # a guessing client, bounded
        before = auth.verifications
        statuses.append(_post(ep, ("other-erp", "guess")).status_code)
        costs.append(auth.verifications - before)
    assert statuses == [401, 401] + [429] * 6, statuses
    assert costs == [1, 1] + [0] * 6  # a throttled attempt costs no scrypt
    code, message = _fault(_post(ep, ("other-erp", "guess")))
    assert code.endswith("Client.Throttled") and "retry in" in message
    # The right password of the throttled username waits too; other clients do not.
    assert _post(ep, ("other-erp", PASSWORDS["other-erp"])).status_code == 429
    assert _post(ep, ("demo-erp", PASSWORDS["demo-erp"])).status_code == 200
    zeep_client = ep.client("viewer")  # never logged in before: a full check, from the same address
    assert zeep_client.service.GetChanges(0).more is False


def test_failures_block_a_username_and_then_an_address(make_endpoint: Any) -> None:
    ep = make_endpoint(login={"delay_after": 100, "block_after": 3, "block_seconds": 600, "address_factor": 3})
    assert _post(ep, ("demo-erp", PASSWORDS["demo-erp"])).status_code == 200
    assert [_post(ep, ("other-erp", "x")).status_code for _ in range(5)] == [401, 401, 401, 429, 429]
    # Sprayed usernames (WS-Security in the body, so the address is refused before the body is read).
    sprayed = [_post(ep, header=_token(f"nobody-{i}", "x")).status_code for i in range(8)]
    assert sprayed[-1] == 429 and sprayed.count(401) == 6, sprayed  # 9 failures from 127.0.0.1: blocked
    assert _post(ep, ("viewer", PASSWORDS["viewer"])).status_code == 429  # an unproven login from there
    assert _post(ep, ("demo-erp", PASSWORDS["demo-erp"])).status_code == 200  # a proven one still works


def _tls(ep: Endpoint) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(ep.cert))
    raw = socket.create_connection(("127.0.0.1", ep.server.port), timeout=30)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def _head(length: int, extra: str = "") -> bytes:
    return (f"POST /soap HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\nContent-Length: {length}\r\n"
            f"{extra}\r\n").encode()


def test_basic_auth_is_refused_before_the_body_is_read(make_endpoint: Any) -> None:
    ep = make_endpoint(read_timeout_seconds=60)
    bad = base64.b64encode(b"demo-erp:wrong").decode()
    with _tls(ep) as s:  # 200 KB announced, 10 bytes sent: an answer now means the body was not awaited
        s.sendall(_head(200_000, f"Authorization: Basic {bad}\r\n") + b"<s:Envelo")
        answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 401") and b"Connection: close" in answer


def test_unauthenticated_bodies_are_read_by_a_bounded_number_at_once(make_endpoint: Any) -> None:
    ep = make_endpoint(max_unauthenticated_reads=2, busy_wait_seconds=0.5, read_timeout_seconds=60)
    with ExitStack() as stack:
        for _ in range(2):  # two strangers trickling WS-Security bodies hold both reads
            s = stack.enter_context(_tls(ep))
            s.sendall(_head(100_000) + b"<s:Envelope")
        started = time.monotonic()
        third = _post(ep, header=_token("demo-erp", PASSWORDS["demo-erp"]))
        assert third.status_code == 503 and _fault(third)[0].endswith("Server.Busy")
        assert time.monotonic() - started < 20
        assert _post(ep, ("demo-erp", PASSWORDS["demo-erp"])).status_code == 200  # Basic needs no such read
    # The strangers gone, WS-Security works again.
    wait_for("a WS-Security read slot", lambda: _post(ep, header=_token("demo-erp", PASSWORDS["demo-erp"]))
             .status_code == 200)


def test_stalled_connections_do_not_hold_up_a_client(make_endpoint: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ep = make_endpoint(threads=4, header_timeout_seconds=60)
    with ExitStack() as stack:
        for i in range(20):  # silent TCP, a partial TLS hello, a TLS session with a partial header
            if i % 3 == 2:
                s: socket.socket = stack.enter_context(_tls(ep))
                s.sendall(b"POST /soap HTTP/1.1\r\nHost: x\r\n")
            else:
                s = stack.enter_context(socket.create_connection(("127.0.0.1", ep.server.port), timeout=30))
                if i % 3 == 1:
                    s.sendall(b"\x16\x03\x01\x02\x00\x01")
        started = time.monotonic()
        r = _post(ep, ("demo-erp", PASSWORDS["demo-erp"]))
        elapsed = time.monotonic() - started
        assert r.status_code == 200
        with capsys.disabled():
            print(f"\n[soap] a request beside 20 stalled connections (4 workers) took {elapsed * 1000:.0f} ms")
        assert elapsed < 15  # generous; the stalled sockets are still open here


def test_media_type_and_token_faults_say_what_is_wrong(make_endpoint: Any) -> None:
    ep = make_endpoint()
    wrong = _post(ep, ("demo-erp", PASSWORDS["demo-erp"]), content_type="application/json")
    assert wrong.status_code == 415 and "Content-Type 'application/json'" in _fault(wrong)[1]
    assert _post(ep, ("demo-erp", PASSWORDS["demo-erp"]), content_type="application/soap+xml").status_code != 415
    digest = _post(ep, header=_token("demo-erp", "c29tZWRpZ2VzdA==", "PasswordDigest"))
    code, message = _fault(digest)
    assert digest.status_code == 401 and code.endswith("Client.Authentication")
    assert "PasswordDigest is not supported" in message and "PasswordText" in message
    none = _fault(_post(ep))[1]
    assert "no credentials" in none
    assert _post(ep, header=_token("demo-erp", PASSWORDS["demo-erp"])).status_code == 200


def test_several_credentials_with_roles_rotate_without_restart(make_endpoint: Any, tmp_path: Path) -> None:
    ep = make_endpoint()
    for user in ("rot-old", "rot-new", "rot-read"):
        assert ep.client(user, ROT[user]).service.GetChanges(0).more is False
    with pytest.raises(zeep.exceptions.Fault) as exc:
        ep.client("rot-read", ROT["rot-read"]).service.CancelClaim(1, "no")
    assert exc.value.code.endswith("Client.Authorization")
    assert ep.client("demo-erp").service.GetChanges(0).more is False  # the single username/password_hash form
    # Rotation: the old credential leaves the config; the running endpoint takes it (as the config watcher does).
    doc = load_config(tmp_path / "gateway.yaml")
    rot = doc.clients["rot"]
    rot.soap.credentials = [c for c in rot.soap.credentials if c.username != "rot-old"]
    ep.server.gate.auth.reload(doc)
    assert _post(ep, ("rot-old", ROT["rot-old"])).status_code == 401
    assert _post(ep, ("rot-new", ROT["rot-new"])).status_code == 200
