"""The HTTPS server for the SOAP endpoint: cheroot, in a thread next to ``serve``'s asyncio loop.

cheroot (CherryPy's server) is a production WSGI server with a thread pool, keep-alive and TLS of its
own (``ssl`` from the standard library): spyne and SQLAlchemy are blocking, so worker threads are
the right model, and no TLS-terminating proxy is needed for the embedded default. (waitress has no
TLS; gunicorn is process-based and would need its own supervisor.)
"""

from __future__ import annotations

import logging
import math
import ssl
import threading
from pathlib import Path

from cheroot.wsgi import Server

from gateway.bootstrap import App
from gateway.entrypoints.connection_limits import ConnectionLimits
from gateway.entrypoints.soap.app import PATH, build_wsgi
from gateway.entrypoints.soap.connection import MAX_HEADER, DeferredHandshakeAdapter, GuardedConnection, connection_class
from gateway.entrypoints.soap.waiting_room import WaitingRoom
from gateway.entrypoints.tls_follow import CertificateFollower
from gateway.entrypoints.soap.gate import default_public_url
from gateway.entrypoints.soap.credit_service import CreditService
from gateway.entrypoints.soap.service import GatewayService
from gateway.errors import ConfigError, KeyStoreError
from gateway.metrics import SoapMetrics
from gateway.services.keys import TLS_CERT_FILE, TLS_KEY_FILE

log = logging.getLogger("gateway.soap")


class _Server(Server):
    """cheroot's WSGI server, whose connections waiting for a body-wait slot go to the waiting room, not the
    selector (connection.py)."""

    room: WaitingRoom | None = None

    def put_conn(self, conn: GuardedConnection) -> None:
        if self.ready and conn.parked and self.room is not None:
            self.room.park(conn)
        else:
            super().put_conn(conn)


class SoapServer:
    """Start and stop the SOAP endpoint over HTTPS; ``port`` is the bound port (useful with port 0)."""

    def __init__(self, app: App, *, host: str | None = None, port: int | None = None) -> None:
        cfg = app.config.soap
        cert = app.config.path(cfg.certificate) if cfg.certificate else app.config.keys_dir / TLS_CERT_FILE
        key = app.config.path(cfg.private_key) if cfg.private_key else app.config.keys_dir / TLS_KEY_FILE
        for path in (cert, key):
            if not Path(path).is_file():
                raise KeyStoreError(f"no TLS file at {path}: run 'gateway keys init' or set soap.certificate")
        if cfg.threads < 1 or cfg.max_request_bytes < 1024:
            raise ConfigError("soap.threads must be >= 1 and soap.max_request_bytes >= 1024",
                              file=app.config.source, key="soap")
        self.gate = build_wsgi(app)  # its ``auth.reload(config)`` takes changed logins while serving
        self._server = _Server((host or cfg.host, cfg.port if port is None else port), self.gate,
                              numthreads=cfg.threads, server_name="inkasso-gateway",
                              timeout=max(1, math.ceil(cfg.header_timeout_seconds)), request_queue_size=64)
        # A peer is waited for in the selector, never in a worker (connection.py); cheroot's timeout above is
        # how long an idle or silent connection is kept.
        self.limits = ConnectionLimits("soap", cfg.max_connections_per_address, cfg.max_connections,
                                       busy_per_address=min(cfg.max_body_waits_per_address, max(1, cfg.threads // 2)))
        self.room = self._server.room = WaitingRoom(self._server.process_conn, self.limits)
        self._server.ConnectionClass = connection_class(cfg.header_timeout_seconds, cfg.read_timeout_seconds,
                                                        cfg.request_timeout_seconds, self.limits,
                                                        cfg.max_request_bytes, self.room)
        self._server.max_request_header_size = MAX_HEADER
        # At a stop, workers still busy after this have their socket's reading side shut (cheroot): a peer
        # trickling a body would otherwise hold the stop until its read times out. Answers still get written.
        self._server.shutdown_timeout = 2
        self._public_url = cfg.public_url
        # cheroot's own limit is a backstop; the gate answers oversized requests with a SOAP fault first.
        self._server.max_request_body_size = cfg.max_request_bytes * 2
        self._cert, self._key = Path(cert), Path(key)
        self._server.ssl_adapter = self._tls()
        # counted and timed per operation and status (gateway.metrics), around everything the gate answers
        self._server.wsgi_app = SoapMetrics(self._server.wsgi_app,
                                            [*GatewayService.public_methods, *CreditService.public_methods])
        self._thread: threading.Thread | None = None

    def _tls(self) -> DeferredHandshakeAdapter:
        adapter = DeferredHandshakeAdapter(str(self._cert), str(self._key))
        adapter.context.minimum_version = ssl.TLSVersion.TLSv1_2
        return adapter

    def certificate_follower(self) -> CertificateFollower[DeferredHandshakeAdapter]:
        """What takes a renewed certificate while serving: cheroot wraps each new connection with the adapter
        the server holds at its accept."""
        return CertificateFollower("soap", self._cert, self._key, self._tls,
                                   lambda adapter: setattr(self._server, "ssl_adapter", adapter))

    @property
    def port(self) -> int:
        return int(self._server.bind_addr[1])

    @property
    def url(self) -> str:
        host = self._server.bind_addr[0]
        return f"https://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self.port}{PATH}"

    def start(self) -> None:
        """Bind and serve in a background thread; returns once the socket listens."""
        self._server.prepare()
        self.gate.publish(self._public_url or default_public_url(self._server.bind_addr[0], self.port))
        self._thread = threading.Thread(target=self._server.serve, name="soap-server", daemon=True)
        self._thread.start()
        self.room.start()
        log.info("soap.listening url=%s", self.url)

    def alive(self) -> bool:
        """True while the server thread serves and the waiting room hands over late requests (readiness)."""
        return self._thread is not None and self._thread.is_alive() and self.room.alive()

    def stop(self) -> None:
        """Stop accepting, finish running requests, join the thread."""
        # First: a request still waiting for a slot is closed, and none is handed to workers that are stopping
        self.room.close()
        self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        log.info("soap.stopped")
