"""The console's connections: accepted, bounded and timed here, spoken to by uvicorn's HTTP/1.1 protocol.

uvicorn has no header timeout: a connection that sends its request header a byte at a time, or nothing
after its TLS handshake, is kept for ever; and it has no bound on open connections. 1,000 such connections
from one client used up a 1024-descriptor limit: the inbox watcher failed until the supervisor gave up and
``serve`` exited. So the console's socket is served by ``Listener``: a connection over a bound
(``web.max_connections_per_address``, ``web.max_connections``) is closed as it arrives, before its TLS
handshake; the handshake must end within ``web.header_timeout_seconds``; then ``GuardedH11Protocol`` closes
a connection whose request header is not complete ``web.header_timeout_seconds`` after the connection (or
after its previous answer), or whose body is not complete ``web.request_timeout_seconds`` after its header.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from gateway.entrypoints.connection_limits import ConnectionLimits
from gateway.episodes import Episodes

log = logging.getLogger("gateway.web")
_ACCEPT_PAUSE = 0.1  # after an accept error (no descriptor left): a moment, not a busy loop
_TLS_GOODBYE = 2.0  # seconds a closing connection waits for the peer's TLS close_notify (asyncio's default: 30)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline on every wait for the client (see the module doc)."""

    def __init__(self, *args: Any, header_timeout: float, request_timeout: float,
                 on_lost: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout, self.request_timeout, self._on_lost = header_timeout, request_timeout, on_lost
        self._deadline: asyncio.TimerHandle | None = None
        self._seen: object = None  # the request whose header was last seen complete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        answered = self.cycle
        super().on_response_complete()
        if not self.transport.is_closing():
            if self.cycle is answered:  # waiting for the next request's header (uvicorn's keep-alive is shorter)
                self._arm(self.header_timeout)
            self._follow()  # a pipelined request may have started

    def shutdown(self) -> None:
        """Stopping: a request whose body is still coming in is cut off at once (its client would hold the stop
        for the whole grace); others finish their answer, as uvicorn does."""
        cycle = self.cycle
        if cycle is not None and cycle.more_body and not cycle.response_complete:
            self.transport.abort()  # no TLS goodbye: it would wait for a client that does not read
            return
        super().shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        self._arm(None)
        try:
            super().connection_lost(exc)
        finally:
            self._on_lost()

    def _follow(self) -> None:
        cycle = self.cycle
        if cycle is None:
            return
        if cycle is not self._seen:  # a request header is complete: now its body, if any, has its own deadline
            self._seen = cycle
            self._arm(self.request_timeout if cycle.more_body else None)
        elif not cycle.more_body and not cycle.response_complete:
            self._arm(None)  # the body is in: the answer is ours to give

    def _arm(self, seconds: float | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if seconds is not None:
            self._deadline = self.loop.call_later(seconds, self._expired)

    def _expired(self) -> None:
        self._deadline = None
        self.transport.abort()  # the descriptor goes at once; a graceful TLS close would wait on the peer


class Listener:
    """Accepts the console's connections on ``sock`` and starts TLS and HTTP on those within the bounds."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, limits: ConnectionLimits,
                 protocol: Callable[[Callable[[], None]], asyncio.Protocol], handshake_timeout: float) -> None:
        self.sock, self.context, self.limits, self.protocol = sock, context, limits, protocol
        self.handshake_timeout = handshake_timeout
        self._starting: set[asyncio.Task[None]] = set()

    async def serve(self) -> None:
        """Accept until cancelled."""
        loop = asyncio.get_running_loop()
        trouble = Episodes()
        while True:
            try:
                conn, addr = await loop.sock_accept(self.sock)
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM) and trouble.failed(
                        "accept", exc.strerror or type(exc).__name__):
                    log.warning("web.accept_failed error=%s", exc.strerror)  # once, not ten lines a second
                await asyncio.sleep(_ACCEPT_PAUSE)
                continue
            if trouble.ok("accept") is not None:
                log.info("web.accept_back")
            peer = str(addr[0]) if isinstance(addr, tuple) else "-"
            if not self.limits.admit(peer):
                conn.close()
                continue
            task = asyncio.create_task(self._start(conn, peer), name="web-connection")
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

    async def _start(self, conn: socket.socket, peer: str) -> None:
        loop = asyncio.get_running_loop()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.limits.release(peer)
        try:
            await loop.connect_accepted_socket(lambda: self.protocol(release), conn, ssl=self.context,
                                               ssl_handshake_timeout=self.handshake_timeout,
                                               ssl_shutdown_timeout=_TLS_GOODBYE)
        except asyncio.CancelledError:  # stopping
            conn.close()
            release()
            raise
        except Exception:  # noqa: BLE001 - the handshake failed or timed out: uvicorn never saw the connection
            conn.close()
            release()

    def close(self) -> None:
        """Close the socket (once ``serve`` is cancelled); connections still in their handshake are dropped."""
        self.sock.close()
        for task in list(self._starting):
            task.cancel()


def listening_socket(host: str, port: int) -> socket.socket:
    """A non-blocking TCP socket bound to ``host``:``port`` (0: a free one) and listening."""
    family, kind, proto, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
