"""The console's HTTPS listener: uvicorn on ``serve``'s own asyncio loop, with the SOAP certificate.

uvicorn's ``Server.serve()`` would install its own SIGINT/SIGTERM handlers over ``serve``'s, so this
drives its public steps instead (``main_loop``, ``shutdown``) and ``serve`` stops it like every other part.
The socket is accepted from by ``connections.Listener`` rather than uvicorn's ``startup``: uvicorn keeps a
connection that never completes its request for ever and any number of them (``connections.py``). Access
logs are off: ``serve`` logs what a user did (login, action) by ids only.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import sys
from collections.abc import Callable
from pathlib import Path

import uvicorn
from uvicorn.config import create_ssl_context

from gateway.bootstrap import App
from gateway.entrypoints.connection_limits import ConnectionLimits
from gateway.entrypoints.web.connections import GuardedH11Protocol, Listener, listening_socket
from gateway.entrypoints.web.app import build_web_app
from gateway.entrypoints.web.users import UserBook
from gateway.entrypoints.tls_follow import CertificateFollower
from gateway.errors import GatewayError, KeyStoreError
from gateway.services.keys import TLS_CERT_FILE, TLS_KEY_FILE

log = logging.getLogger("gateway.web")


class WebServer:
    """Start and stop the console; ``port`` is the bound port (useful with port 0)."""

    def __init__(self, app: App, *, port: int | None = None) -> None:
        cfg, soap = app.config, app.config.soap
        cert = cfg.path(soap.certificate) if soap.certificate else cfg.keys_dir / TLS_CERT_FILE
        key = cfg.path(soap.private_key) if soap.private_key else cfg.keys_dir / TLS_KEY_FILE
        for path in (cert, key):
            if not Path(path).is_file():
                raise KeyStoreError(f"no TLS file at {path}: run 'gateway keys init' or set soap.certificate")
        self._cert, self._key = Path(cert), Path(key)
        self.users = UserBook(cfg, app.login_throttle)
        self.web = build_web_app(app, self.users)
        self.config = uvicorn.Config(
            self.web, host=cfg.web.host, port=cfg.web.port if port is None else port, ssl_certfile=str(cert),
            ssl_keyfile=str(key), ssl_version=ssl.PROTOCOL_TLS_SERVER, lifespan="off", log_config=None,
            access_log=False, server_header=False, proxy_headers=False, timeout_graceful_shutdown=5,
            h11_max_incomplete_event_size=64 * 1024)
        self.server = uvicorn.Server(self.config)
        self.port_asked = cfg.web.port if port is None else port
        self.limits = ConnectionLimits("web", cfg.web.max_connections_per_address, cfg.web.max_connections)
        self.header_timeout, self.request_timeout = cfg.web.header_timeout_seconds, cfg.web.request_timeout_seconds
        self._sock: socket.socket | None = None
        self._listener: Listener | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        assert self._sock is not None
        return int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        host = self.config.host
        return f"https://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self.port}/"

    async def start(self) -> None:
        """Bind and serve on the running loop; returns once the socket listens."""
        if not self.config.loaded:
            self.config.load()
        assert self.config.ssl is not None
        self.server.lifespan = self.config.lifespan_class(self.config)
        try:
            self._sock = listening_socket(self.config.host, self.port_asked)
        except OSError as exc:
            raise GatewayError(f"the web console cannot listen on {self.config.host}:{self.port_asked}: "
                               f"{exc.strerror or exc}") from None
        self.server.servers, self.server.started = [], True  # what uvicorn's startup would have set
        self._listener = Listener(self._sock, self.config.ssl, self.limits, self._protocol, self.header_timeout)
        self._accepting = asyncio.create_task(self._listener.serve(), name="web-accept")
        self._task = asyncio.create_task(self.server.main_loop(), name="web-server")
        log.info("web.listening url=%s", self.url)

    def certificate_follower(self) -> CertificateFollower[ssl.SSLContext]:
        """What takes a renewed certificate while serving: the listener starts TLS on each new connection with the
        context it holds at the accept."""
        c = self.config

        def build() -> ssl.SSLContext:
            return create_ssl_context(self._cert, self._key, c.ssl_keyfile_password, c.ssl_version, c.ssl_cert_reqs,
                                      c.ssl_ca_certs, c.ssl_ciphers)

        def install(context: ssl.SSLContext) -> None:
            c.ssl = context
            if self._listener is not None:
                self._listener.context = context
        return CertificateFollower("web", self._cert, self._key, build, install)

    def _protocol(self, on_lost: Callable[[], None]) -> asyncio.Protocol:
        return GuardedH11Protocol(config=self.config, server_state=self.server.server_state,
                                  app_state=self.server.lifespan.state, header_timeout=self.header_timeout,
                                  request_timeout=self.request_timeout, on_lost=on_lost)

    def print_demo_logins(self) -> None:
        """Shown on the terminal of ``serve`` (not logged): the demo logins made by ``keys init``."""
        if not self.users.demo:
            return
        lines = [f"Web console: {self.url}"]
        for login, password in sorted(self.users.demo.items()):
            user = self.users.get(login)
            if user is None:  # its client is disabled: it cannot log in
                continue
            what = "operator" if user.operator else f"client {user.client_id}"
            lines.append(f"  DEMO login {login!r} ({what}), password: {password}")
        print("\n".join(lines), file=sys.stdout, flush=True)

    def alive(self) -> bool:
        return (self._task is not None and not self._task.done() and self._accepting is not None
                and not self._accepting.done())

    async def stop(self) -> None:
        """Stop accepting, let running requests finish (up to 5 s), close."""
        if self._accepting is not None:  # first: the socket is closed once nothing waits on it
            self._accepting.cancel()
            try:
                await self._accepting
            except asyncio.CancelledError:
                pass
            self._accepting = None
        if self._listener is not None:
            self._listener.close()
        self.server.should_exit = True
        if self._task is not None:
            await self._task
            self._task = None
        if self.server.started:
            await self.server.shutdown()
        log.info("web.stopped")
