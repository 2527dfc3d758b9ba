"""A running `gateway serve` (descriptor limit 1024, as systemd gives a service) under hostile clients at the
connection level, from 127.0.0.1, while an honest ERP and an honest browser come from 127.0.0.2: slowloris on
the SOAP endpoint and the console (TLS connections sending their header a byte at a time), silent TCP and half
TLS handshakes, slow bodies, oversized and compressed requests. Every front keeps answering the honest
clients, /healthz keeps answering, and SIGTERM in the middle of it stops `serve` within 10 s.

Before: 1,000 trickling TLS connections to the console (uvicorn keeps them for ever) or to SOAP (opened within
its 10 s header timeout) used up the descriptors; the inbox watcher failed until the supervisor gave up and
`serve` exited. Two connections sending a SOAP body a byte at a time took both of a 4-thread server's
workers, and with them every other client's TLS handshake."""

from __future__ import annotations

import base64
import gzip
import re
import resource
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import zeep
from requests_toolbelt.adapters.source import SourceAddressAdapter  # type: ignore[import-untyped]
from zeep.transports import Transport

from tests.conftest import write_config
from tests.integration.soap.conftest import PASSWORDS, claim, client_config
from tests.support import wait_for

ATTACKER, HONEST = "127.0.0.1", "127.0.0.2"
STOP_WITHIN = 10.0  # seconds: the documented bound
FDS = 1024


@dataclass
class Running:
    proc: subprocess.Popen[str]
    log: Path
    base: Path
    ports: dict[str, int]

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def start(base: Path, fds: tuple[int, int] = (FDS, FDS), **overrides: Any) -> Running:
    overrides.setdefault("clients", client_config())
    cfg = write_config(base, f"sqlite:///{base / 'var' / 'gateway.db'}", dispatcher={"enabled": False}, **overrides)
    for args in (("keys", "init"), ("db", "upgrade")):
        out = subprocess.run([sys.executable, "-m", "gateway.entrypoints.cli", "--config", str(cfg), *args],
                             capture_output=True, text=True, timeout=120, cwd=base)
        assert out.returncode == 0, out.stderr
    log = base / "serve.log"
    with open(log, "w") as out_file:
        proc = subprocess.Popen([sys.executable, "-m", "gateway.entrypoints.cli", "--config", str(cfg), "serve"],
                                stdout=out_file, stderr=subprocess.STDOUT, text=True, cwd=base,
                                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, fds))
    wait_for("serve to be ready", lambda: "serve.ready" in log.read_text() or proc.poll() is not None, 60)
    assert proc.poll() is None, log.read_text()
    text = log.read_text()
    ports = {front: int(m.group(1)) for front in ("soap", "web", "health")
             if (m := re.search(rf"{front}\.listening url=https?://[^/\s]+:(\d+)", text))}
    if m := re.search(r"sftp\.listening host=\S+ port=(\d+)", text):
        ports["sftp"] = int(m.group(1))
    return Running(proc, log, base, ports)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for r in started:
        if r.proc.poll() is None:
            r.proc.kill()
            r.proc.wait(30)


def tls(base: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(base / "var" / "keys" / "tls.crt"))


def connect(port: int, source: str, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))


def exchange(r: Running, front: str, request: bytes, source: str = HONEST) -> bytes:
    """One request over a fresh TLS connection (plain HTTP for health); the whole answer."""
    sock = connect(r.ports[front], source, 30)
    if front != "health":
        sock = tls(r.base).wrap_socket(sock, server_hostname="127.0.0.1")
    data = b""
    with sock:
        try:
            sock.sendall(request)
            while chunk := sock.recv(65536):
                data += chunk
        except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError):
            pass  # a server answering before it read everything closes with data unread: the peer sees a reset
    return data


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def honest_get(r: Running, front: str) -> int:
    path = {"soap": "/soap?wsdl", "web": "/login", "health": "/healthz"}[front]
    return status(exchange(r, front, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()))


def erp(r: Running) -> zeep.Client:
    """An ERP's zeep client, from the honest address."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(r.base / "var" / "keys" / "tls.crt")
    session.auth = ("demo-erp", PASSWORDS["demo-erp"])
    session.mount("https://", SourceAddressAdapter(HONEST))
    return zeep.Client(f"https://127.0.0.1:{r.ports['soap']}/soap?wsdl", transport=Transport(session=session))


class Flood:
    """Hostile connections from ATTACKER, held open: TLS sending a header byte by byte (``trickle``), silent TCP
    (``silent``), a ClientHello cut short (``hello``)."""

    def __init__(self, r: Running) -> None:
        self.r, self.ctx = r, tls(r.base)
        self.held: list[tuple[str, socket.socket]] = []

    def open(self, front: str, kind: str, count: int) -> None:
        for _ in range(count):
            try:
                sock = connect(self.r.ports[front], ATTACKER, 5)
                if kind == "trickle":
                    sock = self.ctx.wrap_socket(sock, server_hostname="127.0.0.1")
                    sock.sendall(b"POST /soap HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                elif kind == "hello":
                    sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
                self.held.append((kind, sock))
            except OSError:  # closed by the server as it arrived (over a bound)
                pass

    def trickle(self) -> int:
        """One more header byte on every trickling connection; how many connections the server still keeps."""
        alive = []
        for kind, sock in self.held:
            try:
                if kind == "trickle":
                    sock.send(b"x")  # the first send after the server closed gets a reset, the next one fails
                else:
                    sock.setblocking(False)
                    if sock.recv(1) == b"":
                        raise ConnectionResetError
            except (BlockingIOError, ssl.SSLWantReadError):
                alive.append((kind, sock))
            except OSError:
                sock.close()
            else:
                alive.append((kind, sock))
        self.held = alive
        return len(alive)

    def close(self) -> None:
        for _, sock in self.held:
            sock.close()
        self.held = []


def test_a_thousand_slow_and_silent_connections_leave_every_front_answering(running: list[Running],
                                                                           tmp_path: Path) -> None:
    r = start(tmp_path, soap={"enabled": True, "port": 0, "threads": 8, "header_timeout_seconds": 3},
              web={"enabled": True, "port": 0, "header_timeout_seconds": 3,
                   "users": {"demo": {"client": "demo", "password_file": "var/keys/web-demo.password"}}})
    running.append(r)
    flood = Flood(r)
    try:
        for front in ("web", "soap"):
            flood.open(front, "trickle", 550)
            flood.open(front, "silent", 250)
            flood.open(front, "hello", 250)
        held = flood.trickle()
        assert held <= 4 * 64, held  # each front keeps at most 64 of one address's connections
        for front in ("soap", "web", "health"):
            assert honest_get(r, front) == 200, (front, r.text()[-3000:])
        result = erp(r).service.SubmitClaims(claims={"ClaimInput": [claim("FLOOD-1")]})
        assert result.results.ClaimResult[0].outcome == "accepted"
        log = r.text()
        assert "web.connection_refused peer=127.0.0.1 reason=too_many_from_address" in log
        assert "soap.connection_refused peer=127.0.0.1 reason=too_many_from_address" in log
        # The held connections are closed by the fronts once their header is late, however they trickle.
        wait_for("the fronts to close every connection whose header is late", lambda: flood.trickle() == 0, 60)

        # SIGTERM in the middle of a fresh flood: serve stops in time.
        for front in ("web", "soap"):
            flood.open(front, "trickle", 300)
            flood.open(front, "hello", 100)
        assert honest_get(r, "health") == 200
        t0 = time.monotonic()
        r.proc.send_signal(signal.SIGTERM)
        code = r.proc.wait(60)
        took = time.monotonic() - t0
    finally:
        flood.close()
    assert code == 0 and took < STOP_WITHIN, (code, took, r.text()[-3000:])
    log = r.text()
    assert "Too many open files" not in log and "supervisor.gave_up" not in log, log[-3000:]
    assert "serve.stopped exit_code=0" in log


def test_slow_bodies_from_one_address_leave_soap_workers_for_the_others(running: list[Running],
                                                                       tmp_path: Path) -> None:
    r = start(tmp_path, soap={"enabled": True, "port": 0, "threads": 4, "header_timeout_seconds": 3})
    running.append(r)
    slow: list[ssl.SSLSocket] = []
    auth = base64.b64encode(f"demo-erp:{PASSWORDS['demo-erp']}".encode()).decode()
    answers: dict[int, bytes] = {}

    def trickle_and_read() -> bool:
        for i, sock in enumerate(slow):
            try:
                sock.send(b"a")
            except OSError:
                pass
            sock.setblocking(False)
            try:
                answers[i] = answers.get(i, b"") + sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError):
                pass
            except OSError:
                answers.setdefault(i, b"")
        return len([a for a in answers.values() if a]) >= 10
    try:
        for i in range(12):  # half of them authenticated, half with the token in a body that never comes
            sock = tls(r.base).wrap_socket(connect(r.ports["soap"], ATTACKER), server_hostname="127.0.0.1")
            sock.sendall((f"POST /soap HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: 100000\r\n"
                          f"{'Authorization: Basic ' + auth + chr(13) + chr(10) if i % 2 else ''}\r\n<").encode())
            slow.append(sock)
        trickle_and_read()
        # two of the four workers wait on this address's bodies; its other ten wait in the selector, not in workers
        result = erp(r).service.SubmitClaims(claims={"ClaimInput": [claim("SLOW-1")]})
        assert result.results.ClaimResult[0].outcome == "accepted"
        assert honest_get(r, "soap") == 200
        # ... until the header's deadline: then Server.Busy, their bodies unread
        wait_for("Server.Busy for the requests over the address's share of the workers", trickle_and_read, 30)
        for answer in answers.values():
            if answer:
                assert status(answer) == 503 and b"Retry-After: 5" in answer and b"Server.Busy" in answer, answer
        result = erp(r).service.SubmitClaims(claims={"ClaimInput": [claim("SLOW-2")]})
        assert result.results.ClaimResult[0].outcome == "accepted"
        # SIGTERM while two workers still wait on bodies trickling in
        trickle_and_read()
        t0 = time.monotonic()
        r.proc.send_signal(signal.SIGTERM)
        code = r.proc.wait(60)
        took = time.monotonic() - t0
    finally:
        for sock in slow:
            sock.close()
    assert code == 0 and took < STOP_WITHIN, (code, took, r.text()[-3000:])


def test_oversized_and_compressed_requests_are_refused_without_being_read(running: list[Running],
                                                                          tmp_path: Path) -> None:
    r = start(tmp_path, soap={"enabled": True, "port": 0, "max_request_bytes": 64 * 1024},
              web={"enabled": True, "port": 0, "max_upload_bytes": 1024 * 1024, "request_timeout_seconds": 3})
    running.append(r)
    auth = "Authorization: Basic " + base64.b64encode(f"demo-erp:{PASSWORDS['demo-erp']}".encode()).decode()
    huge_header = b"X-Big: " + b"a" * 200_000 + b"\r\n"
    soap = f"POST /soap HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}\r\nContent-Type: text/xml\r\n".encode()
    form = (b"POST /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n")
    # a header over 64 KB: refused at 64 KB (the answer can be lost in the reset of what was not read)
    assert exchange(r, "soap", soap + huge_header + b"\r\n")[:12] in (b"", b"HTTP/1.1 413")
    assert exchange(r, "web", b"GET /login HTTP/1.1\r\nHost: x\r\n" + huge_header + b"\r\n")[:12] in (
        b"", b"HTTP/1.1 400")
    assert honest_get(r, "soap") == 200 and honest_get(r, "web") == 200
    # a Content-Length over the limit: answered from the header, the body (never sent) not waited for
    assert status(exchange(r, "soap", soap + b"Content-Length: 100000000000\r\n\r\n")) == 413
    assert status(exchange(r, "web", form + b"Content-Length: 100000000000\r\n\r\n")) == 413
    assert status(exchange(r, "web", form + b"Transfer-Encoding: chunked\r\n\r\n3\r\na=b\r\n")) == 411
    # a gzip bomb (50 MB in 49 KB): SOAP unpacks no more than its limit, the console inflates nothing
    bomb = gzip.compress(b"<" + b"a" * 50_000_000 + b">")
    gz = f"Content-Encoding: gzip\r\nContent-Length: {len(bomb)}\r\n\r\n".encode() + bomb
    answer = exchange(r, "soap", soap + gz)
    assert status(answer) == 413 and b"Client.TooLarge" in answer
    assert status(exchange(r, "web", form + gz)) == 403  # no CSRF token found in what was sent: nothing inflated
    # a form body that never ends is dropped after web.request_timeout_seconds
    sock = tls(r.base).wrap_socket(connect(r.ports["web"], HONEST), server_hostname="127.0.0.1")
    with sock:
        sock.sendall(form + b"Content-Length: 1000\r\n\r\ncsrf=")
        sock.settimeout(60)
        assert sock.recv(65536) == b""  # closed, no answer to half a form
    assert honest_get(r, "web") == 200
    # SIGTERM while an upload form and a SOAP body are still on their way
    web_slow = tls(r.base).wrap_socket(connect(r.ports["web"], HONEST), server_hostname="127.0.0.1")
    soap_slow = tls(r.base).wrap_socket(connect(r.ports["soap"], HONEST), server_hostname="127.0.0.1")
    with web_slow, soap_slow:
        web_slow.sendall(form.replace(b"Connection: close", b"X-Slow: 1") + b"Content-Length: 1000\r\n\r\ncsrf=")
        soap_slow.sendall(soap + b"Content-Length: 1000\r\n\r\n<s:Envelope")
        assert honest_get(r, "health") == 200
        t0 = time.monotonic()
        r.proc.send_signal(signal.SIGTERM)
        code = r.proc.wait(60)
        took = time.monotonic() - t0
    assert code == 0 and took < STOP_WITHIN, (code, took, r.text()[-3000:])
    log = r.text()
    assert "Traceback" not in log and " ERROR " not in log and "serve.abandoned" not in log, log[-3000:]
    assert "web.client_gone path=/login" in log  # the form cut off: the client's doing, not an error


def test_serve_takes_the_hard_descriptor_limit(running: list[Running], tmp_path: Path) -> None:
    r = start(tmp_path, fds=(FDS, 4 * FDS))  # a service manager's default: soft 1024, a higher hard limit
    running.append(r)
    limits = Path(f"/proc/{r.proc.pid}/limits").read_text()
    assert re.search(r"Max open files\s+4096\s+4096", limits), limits
    assert "serve.descriptors soft=4096 raised_from=1024" in r.text()
    r.proc.send_signal(signal.SIGTERM)
    assert r.proc.wait(30) == 0
