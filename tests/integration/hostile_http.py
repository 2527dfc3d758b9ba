"""A partner's HTTP server that misbehaves below HTTP: raw sockets on 127.0.0.1 (port 0), one thread per
connection, the test's ``behave(request, conn)`` deciding what goes back byte by byte."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Behave = Callable[[Request, "Conn"], None]


class Conn:
    """One accepted connection; ``send`` returns False once the client hung up (or the server stops)."""

    def __init__(self, sock: socket.socket, stopping: threading.Event) -> None:
        self.sock, self.stopping = sock, stopping

    def send(self, data: bytes) -> bool:
        if self.stopping.is_set():
            return False
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
               content_type: str = "application/json") -> bool:
        head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", f"Content-Type: {content_type}",
                "Connection: close"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
        return self.send(("\r\n".join(head) + "\r\n\r\n").encode() + body)

    def wait(self, seconds: float) -> bool:
        """Pause (a drip's beat); False when the server stops meanwhile."""
        return not self.stopping.wait(seconds)


@dataclass
class HostileServer:
    behave: Behave
    requests: list[Request] = field(default_factory=list)
    tls: ssl.SSLContext | None = None  # serve HTTPS with this server context

    def __post_init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> HostileServer:
        self._accept.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stopping.set()
        self._sock.close()
        for c in list(self._conns):
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=10)

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(sock)
            t = threading.Thread(target=self._one, args=(sock,), daemon=True)
            self._threads.append(t)
            t.start()

    def _one(self, sock: socket.socket) -> None:
        if self.tls is not None:
            try:
                sock = self.tls.wrap_socket(sock, server_side=True)
            except OSError:
                sock.close()
                return
        with sock:
            request = _read_request(sock)
            if request is None:
                return
            self.requests.append(request)
            conn = Conn(sock, self._stopping)
            self.behave(request, conn)


def _read_request(sock: socket.socket) -> Request | None:
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            piece = sock.recv(65536)
        except OSError:
            return None
        if not piece:
            return None
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        piece = sock.recv(65536)
        if not piece:
            break
        body += piece
    return Request(method, path, headers, body)


def silent(request: Request, conn: Conn) -> None:
    """Accepts the request and never says a word (until the server stops)."""
    conn.wait(3600)
