"""The ``http`` partner simulator: the agency's JSON API on a real loopback HTTP server (stdlib).

Faults from ``agency.faults`` apply per request; ``refuse()`` closes the listener so connections are
refused until ``accept()``. ``push_webhook`` posts new journal entries to the gateway, signed.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import msgspec

from adapters.base import encode_updates
from adapters.rest import SIGNATURE_HEADER, sign_body
from adapters.simulators.agency import Agency, Fault

_OP_PATHS = {"cancel": "cancel", "payments": "report_payment", "messages": "send_message",
             "monitoring": "request_monitoring", "labels": "set_labels"}
_CLAIM_OP = re.compile(r"^/v1/claims/(\d+)/(\w+)$")
_CLAIM = re.compile(r"^/v1/claims/(\d+)$")


Routed = tuple[int, bytes, str]  # status, body, content type


def json_reply(status: int, doc: Any) -> Routed:
    return status, json.dumps(doc).encode(), "application/json"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read state, not logs
        pass

    def _drop(self) -> None:
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _handle(self, method: str) -> None:
        agency = self.server.agency
        length = int(self.headers.get("Content-Length") or 0)
        fault = agency.faults.take() if not self.path.endswith("?wsdl") else None
        if fault in (Fault.DROP, Fault.REFUSE):
            return self._drop()  # before reading the body: a transfer cut off mid-way
        raw = self.rfile.read(length) if length else b""
        if agency.faults.delay_seconds:
            time.sleep(agency.faults.delay_seconds)
        if agency.faults.hold is not None:
            agency.faults.hold.wait(agency.faults.hold_seconds)
        if fault is Fault.TIMEOUT:
            time.sleep(agency.faults.hang_seconds)
            return self._drop()
        if fault in (Fault.ERROR_500, Fault.ERROR_503, Fault.RATE_LIMITED):
            status, body, ctype = json_reply(int(fault.value), {"error": "simulated failure"})
        else:
            try:
                status, body, ctype = self.server.route(self, method, urlsplit(self.path), raw)
            except KeyError as exc:
                status, body, ctype = json_reply(404, {"error": f"unknown claim {exc}"})
        if fault is Fault.LOSE_ANSWER:
            return self._drop()  # done at the agency, but the caller never hears it
        self.send_response(status)
        if status in (429, 503) and agency.faults.retry_after is not None:
            self.send_header("Retry-After", agency.faults.retry_after)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")


def rest_route(handler: _Handler, method: str, url: Any, raw: bytes) -> Routed:
    """The agency's JSON API."""
    agency, path = handler.server.agency, url.path
    body: Any = json.loads(raw) if raw else {}
    key = handler.headers.get("Idempotency-Key") or ""
    if method == "POST" and path == "/v1/claims":
        refs = agency.receive_batch(body["batch_id"], [(int(c["external_id"]), c["idempotency_key"])
                                                       for c in body["claims"]])
        return json_reply(201, {"claims": [{"external_id": c, "file_number": n, "status": "draft"}
                                           for c, n in refs.items()]})
    if method == "POST" and path == "/v1/claims/release":
        return json_reply(200, {"released": len(body["external_ids"])})
    if method == "GET" and path == "/v1/events":
        after = parse_qs(url.query).get("after", ["0"])[0]
        events, nxt = agency.updates_after(after)
        return json_reply(200, {"events": msgspec.to_builtins(events), "next": nxt})
    if m := _CLAIM.match(path):
        cid = int(m.group(1))
        events = agency.claim_updates(cid)
        return json_reply(200, {"file_number": agency.cases[cid].file_number, "status": agency.cases[cid].code,
                                "events": msgspec.to_builtins(events)})
    if method == "POST" and (m := _CLAIM_OP.match(path)) and m.group(2) in _OP_PATHS:
        if not key:
            return json_reply(400, {"error": "Idempotency-Key header required"})
        return json_reply(200, agency.operate(key, _OP_PATHS[m.group(2)], int(m.group(1)), body))
    return json_reply(404, {"error": f"no route {method} {path}"})


Router = Callable[[_Handler, str, Any, bytes], Routed]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], agency: Agency, route: Router) -> None:
        self.agency, self.route = agency, route
        super().__init__(addr, _Handler)


class HttpAgencySimulator:
    """Serves the agency on 127.0.0.1 (an ephemeral port unless given)."""

    route: Router = staticmethod(rest_route)

    def __init__(self, agency: Agency, host: str = "127.0.0.1", port: int = 0) -> None:
        self.agency, self.host, self.port = agency, host, port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._pushed = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> HttpAgencySimulator:
        self._server = _Server((self.host, self.port), self.agency, type(self).route)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"http-sim-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    refuse = stop  # a closed listener: the next connect is refused

    def accept(self) -> None:
        """Listen again on the same port after ``refuse``."""
        if self._server is None:
            self.start()

    def push_webhook(self, url: str, secret: bytes) -> int:
        """POST journal entries not pushed yet to the gateway's webhook; returns how many were accepted."""
        self.agency.advance()
        with self.agency.lock:
            entries = self.agency.journal[self._pushed:]
        if not entries:
            return 0
        body = encode_updates(list(entries))
        r = httpx.post(url, content=body, headers={SIGNATURE_HEADER: sign_body(secret, body),
                                                   "Content-Type": "application/json"}, timeout=10)
        r.raise_for_status()
        self._pushed += len(entries)
        return len(entries)
