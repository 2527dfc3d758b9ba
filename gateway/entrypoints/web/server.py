"""The console's HTTPS listener: uvicorn on ``serve``'s own asyncio loop, with the SOAP certificate.

uvicorn's ``Server.serve()`` would install its own SIGINT/SIGTERM handlers over ``serve``'s, so this
drives its public steps instead (``startup``, ``main_loop``, ``shutdown``) and ``serve`` stops it like
every other part. Access logs are off: ``serve`` logs what a user did (login, action) by ids only.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import sys
from pathlib import Path

import uvicorn

from gateway.bootstrap import App
from gateway.entrypoints.web.app import build_web_app
from gateway.entrypoints.web.users import UserBook
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
        self.users = UserBook(cfg, app.login_throttle)
        self.web = build_web_app(app, self.users)
        self.config = uvicorn.Config(
            self.web, host=cfg.web.host, port=cfg.web.port if port is None else port, ssl_certfile=str(cert),
            ssl_keyfile=str(key), ssl_version=ssl.PROTOCOL_TLS_SERVER, lifespan="off", log_config=None,
            access_log=False, server_header=False, proxy_headers=False, timeout_graceful_shutdown=5,
            h11_max_incomplete_event_size=64 * 1024)
        self.server = uvicorn.Server(self.config)
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        host = self.config.host
        return f"https://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self.port}/"

    async def start(self) -> None:
        """Bind and serve on the running loop; returns once the socket listens."""
        if not self.config.loaded:
            self.config.load()
        self.server.lifespan = self.config.lifespan_class(self.config)
        try:
            await self.server.startup()
        except SystemExit:  # uvicorn's answer to a port it cannot bind (it has logged the OS error)
            raise GatewayError(f"the web console cannot listen on {self.config.host}:{self.config.port}") from None
        self._task = asyncio.create_task(self.server.main_loop(), name="web-server")
        log.info("web.listening url=%s", self.url)

    def print_demo_logins(self) -> None:
        """Shown on the terminal of ``serve`` (not logged): the demo logins made by ``keys init``."""
        if not self.users.demo:
            return
        lines = [f"Web console: {self.url}"]
        for login, password in sorted(self.users.demo.items()):
            user = self.users.get(login)
            what = "operator" if user is None or user.operator else f"client {user.client_id}"
            lines.append(f"  DEMO login {login!r} ({what}), password: {password}")
        print("\n".join(lines), file=sys.stdout, flush=True)

    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Stop accepting, let running requests finish (up to 5 s), close."""
        self.server.should_exit = True
        if self._task is not None:
            await self._task
            self._task = None
        if self.server.started:
            await self.server.shutdown()
        log.info("web.stopped")
