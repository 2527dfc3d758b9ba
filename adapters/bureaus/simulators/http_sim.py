"""The ``http_json`` bureau simulator: its JSON API on a real loopback HTTP server (stdlib).

Faults (``BureauBook.fault``): slow answers, a closed listener (``down``), HTTP 503, and garbage bodies.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from adapters.bureaus.http_json import FEATURES, SCALE
from adapters.bureaus.simulators.book import BureauBook, Fault

_TYPES = {v: k for k, v in FEATURES.items()}


def answer(book: BureauBook, body: dict[str, Any]) -> dict[str, Any]:
    """The bureau's JSON answer to a check request."""
    s = body["subject"]
    name = s.get("companyName") if s.get("type") == "business" else \
        " ".join(p for p in (s.get("firstName"), s.get("lastName")) if p)
    record = book.lookup(name or "", str(body.get("purpose") or ""))
    query = f"HJ-{body.get('queryId', '')}"
    if record is None:
        return {"result": "no_match", "queryId": query}
    return {"result": "match", "queryId": query,
            "score": None if record.score is None else record.score * SCALE // 100,
            "negativeFeatures": [{"type": _TYPES.get(k, k.upper()), "date": d, "amount": a}
                                 for k, d, a in record.entries]}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read the book, not logs
        pass

    def _reply(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _down(self) -> bool:
        # a keep-alive connection opened before the bureau went down is cut, as a crashed server would
        if self.server.sim.book.fault is not Fault.DOWN:
            return False
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)
        return True

    def do_GET(self) -> None:
        if self._down():
            return
        status, body, ctype = self.server.sim.get(self.path)
        self._reply(status, body, ctype)

    def do_POST(self) -> None:
        if self._down():
            return
        sim = self.server.sim
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        book = sim.book
        if book.fault is Fault.SLOW:
            time.sleep(book.delay_seconds)
        if book.fault is Fault.ERROR:
            return self._reply(503, b'{"error": "maintenance"}', "application/json")
        try:
            status, body, ctype = sim.post(self.path, raw)
        except (ValueError, KeyError, TypeError):
            status, body, ctype = 400, b'{"error": "bad request"}', "application/json"
        if book.fault is Fault.GARBAGE:
            status, body = 200, b"<html>\x00\xff not what you asked for"
        try:
            if book.fault in (Fault.HUGE, Fault.TRICKLE):
                self._stream(status, body, ctype, book.fault, book.delay_seconds)
            else:
                self._reply(status, body, ctype)
        except OSError:  # the caller gave up (timeout, too large) while we were slow
            pass

    def _stream(self, status: int, body: bytes, ctype: str, fault: Fault, delay: float) -> None:
        """The body without Content-Length, the connection closed after it (HTTP/1.1 allows that)."""
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Connection", "close")
        self.end_headers()
        if fault is Fault.HUGE:
            self.wfile.write(body)
            for _ in range(32):
                self.wfile.write(b" " * 65536)
            return
        for i in range(len(body)):
            self.wfile.write(body[i:i + 1])
            self.wfile.flush()
            time.sleep(delay)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], sim: HttpBureauSimulator) -> None:
        self.sim = sim
        super().__init__(addr, _Handler)


class HttpBureauSimulator:
    """Serves one bureau on 127.0.0.1 (an ephemeral port unless given); ``down`` closes the listener."""

    def __init__(self, book: BureauBook | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.book, self.host, self.port = book or BureauBook(), host, port
        self._server: _Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def get(self, path: str) -> tuple[int, bytes, str]:
        return 404, b'{"error": "not found"}', "application/json"

    def post(self, path: str, raw: bytes) -> tuple[int, bytes, str]:
        if path != "/v1/checks":
            return 404, b'{"error": "not found"}', "application/json"
        return 200, json.dumps(answer(self.book, json.loads(raw))).encode(), "application/json"

    def start(self) -> HttpBureauSimulator:
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         name=f"bureau-sim-{self.port}", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def set_fault(self, fault: Fault, delay_seconds: float | None = None) -> None:
        """Show ``fault`` from the next request on (``down`` closes the listener, anything else opens it)."""
        self.book.fault = fault
        if delay_seconds is not None:
            self.book.delay_seconds = delay_seconds
        if fault is Fault.DOWN:
            self.stop()
        elif self._server is None:
            self.start()


def refused_port() -> int:
    """A loopback port nothing listens on (bound once, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
