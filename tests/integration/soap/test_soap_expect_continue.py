"""Clients that send ``Expect: 100-continue`` (.NET's HttpWebRequest does for every POST) against the real
HTTPS endpoint on 127.0.0.1, over raw TLS sockets: the client sends its header alone and its body only after
``100 Continue``, like .NET with the expect timeout out of the picture. Every read is bounded by a socket
timeout; no assertion is on time.
"""

from __future__ import annotations

import base64
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from gateway.entrypoints.soap.gate import PATH
from gateway.entrypoints.soap.types import TNS
from tests.integration.soap.conftest import PASSWORDS, Endpoint, serving
from tests.support import wait_for

MAX_BYTES = 2 * 1024 * 1024
ENVELOPE = ('<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:g="urn:inkasso-gateway:soap:v1"><s:Body><g:GetChanges/></s:Body></s:Envelope>')
AUTH = "Authorization: Basic " + base64.b64encode(f"demo-erp:{PASSWORDS['demo-erp']}".encode()).decode() + "\r\n"


@pytest.fixture
def endpoint(request: pytest.FixtureRequest, tmp_path: Path, db_url: str) -> Iterator[Endpoint]:
    """The real endpoint with 16 workers: one address has 4 body-wait slots (soap.max_body_waits_per_address)."""
    header_timeout = getattr(request, "param", 60)
    with serving(tmp_path, db_url, soap={"threads": 16, "max_request_bytes": MAX_BYTES, "changes_settle_seconds": 0,
                                         "header_timeout_seconds": header_timeout}) as ep:
        yield ep


def _tls(ep: Endpoint) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(ep.cert))
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", ep.server.port), timeout=30),
                           server_hostname="127.0.0.1")


def _body(size: int) -> bytes:
    """A GetChanges request of ``size`` bytes (white space after the envelope)."""
    return ENVELOPE.encode().ljust(size, b" ")


def _head(length: int, extra: str = AUTH, expect: bool = True) -> bytes:
    return (f"POST /soap HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml; charset=utf-8\r\n"
            f"SOAPAction: \"GetChanges\"\r\nContent-Length: {length}\r\n{extra}"
            f"{'Expect: 100-continue' + chr(13) + chr(10) if expect else ''}\r\n").encode()


def _block(sock: ssl.SSLSocket, buf: bytearray) -> bytes:
    """The next status line and header block the server sent (an interim 100 or a final answer's head)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {bytes(buf)!r}")
        buf += chunk
    end = buf.index(b"\r\n\r\n") + 4
    head = bytes(buf[:end])
    del buf[:end]
    return head


def _answer(sock: ssl.SSLSocket, buf: bytearray) -> tuple[bytes, bytes]:
    head = _block(sock, buf)
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(buf) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return head, bytes(buf[:length])


def _dotnet_post(ep: Endpoint, body: bytes, expect: bool = True) -> tuple[bytes, bytes, bytes]:
    """POST like .NET: the header, then (after 100 Continue) the body; the interim head, final head and body."""
    with _tls(ep) as s:
        buf = bytearray()
        s.sendall(_head(len(body), expect=expect) + (b"" if expect else body))
        interim = b""
        if expect:
            interim = _block(s, buf)
            if not interim.startswith(b"HTTP/1.1 100 "):
                return b"", interim, b""
            s.sendall(body)
        head, answer = _answer(s, buf)
        return interim, head, answer


def test_a_request_that_will_be_refused_gets_its_final_answer_instead_of_100_continue(endpoint: Endpoint) -> None:
    wrong = "Authorization: Basic " + base64.b64encode(b"demo-erp:wrong").decode() + "\r\n"
    for length, extra, status in ((MAX_BYTES + 1, AUTH, b"413"), (10_000, wrong, b"401")):
        with _tls(endpoint) as s:
            s.sendall(_head(length, extra))  # the body is only sent after 100 Continue, which must not come
            head, answer = _answer(s, bytearray())
            assert head.startswith(b"HTTP/1.1 " + status), head
            assert b"Connection: close" in head and b"<faultcode>" in answer
            assert s.recv(1) == b""  # closed: a body the client may still send is not taken for a request


def test_100_continue_comes_at_once_while_the_address_has_its_body_waits_in_workers(endpoint: Endpoint) -> None:
    with ExitStack() as stack:
        for _ in range(4):  # four bodies trickling in hold the address's four body-wait slots
            slow = stack.enter_context(_tls(endpoint))
            slow.sendall(_head(100_000, expect=False) + b"<s:Envelope")
        wait_for("four requests waiting on their bodies in workers",
                 lambda: endpoint.server.limits.body_waits("127.0.0.1") == 4)
        interim, head, answer = _dotnet_post(endpoint, _body(20_000))  # small: taken by the selector
        assert interim.startswith(b"HTTP/1.1 100 Continue"), interim or head
        assert head.startswith(b"HTTP/1.1 200 "), head + answer


class _Held:
    """The spyne application behind the gate, holding every request (its body read) until ``go`` is set."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.go, self.entered, self._lock = inner, threading.Event(), 0, threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        with self._lock:
            self.entered += 1
        self.go.wait(60)
        return self.inner(environ, start_response)


@pytest.mark.parametrize("expect", [True, False], ids=["expect-100-continue", "body-with-header"])
def test_large_requests_of_one_address_are_served_while_earlier_ones_are_processed(endpoint: Endpoint,
                                                                                   expect: bool) -> None:
    held = _Held(endpoint.server.gate.routes[PATH][0])
    endpoint.server.gate.routes[PATH] = (held, TNS)
    results: list[tuple[bytes, bytes, bytes]] = []
    errors: list[BaseException] = []

    def post() -> None:
        try:
            results.append(_dotnet_post(endpoint, _body(300_000), expect))  # each over the selector's 256 KB
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)
    # Eight at once (soap.max_inflight): the address has four body-wait slots, each held only while a body comes
    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    try:  # every one reaches the service with its body read; an answer now is a refusal
        wait_for("eight requests in the service, or a refusal", lambda: held.entered == 8 or results or errors)
        assert held.entered == 8 and not results and not errors, (held.entered, results, errors)
    finally:
        held.go.set()
        for t in threads:
            t.join(60)
    assert not errors, errors
    assert len(results) == 8
    for interim, head, answer in results:
        assert interim.startswith(b"HTTP/1.1 100 Continue") or not expect, interim
        assert head.startswith(b"HTTP/1.1 200 "), head + answer[:300]


@pytest.mark.parametrize("endpoint", [2], indirect=True)  # soap.header_timeout_seconds
def test_a_large_request_waiting_for_a_slot_gets_server_busy_at_its_deadline(endpoint: Endpoint) -> None:
    with ExitStack() as stack:
        for _ in range(4):  # four bodies trickling in hold the address's four body-wait slots (up to 30 s each)
            slow = stack.enter_context(_tls(endpoint))
            slow.sendall(_head(100_000, expect=False) + b"<s:Envelope")
        wait_for("four requests waiting on their bodies in workers",
                 lambda: endpoint.server.limits.body_waits("127.0.0.1") == 4)
        with _tls(endpoint) as s:  # over 256 KB: waits for a slot without 100 Continue, then is refused
            s.sendall(_head(300_000))
            head, answer = _answer(s, bytearray())
        assert head.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 5" in head and b"Server.Busy" in answer, head
        assert endpoint.server.limits.body_waits("127.0.0.1") == 4  # it never took a worker's wait
