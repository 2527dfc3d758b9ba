"""What ``gateway serve`` runs for partners besides delivery: scheduled pulls, webhooks, demo simulators.

Webhooks are one small HTTP/1.1 endpoint per partner (``partners.<id>.webhook.listen``): a POST whose
body is a JSON array of updates and whose ``X-Signature-SHA256`` header is the HMAC-SHA256 of the body
under the partner's secret. Anything unsigned or wrongly signed is refused with 401 and changes nothing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from typing import Any

import msgspec

from adapters.base import decode_updates
from adapters.rest import SIGNATURE_HEADER, verify_signature
from gateway.bootstrap import App
from gateway.config import PartnerConfig
from gateway.entrypoints.connection_limits import ConnectionLimits
from gateway.entrypoints.supervisor import Supervisor, describe
from gateway.errors import ConfigError, GatewayError
from gateway.services.partner_overview import WEBHOOK_TASK
from gateway.services.partner_sync import sync_due
from gateway.services.partner_updates import apply_updates

log = logging.getLogger("gateway.partners")
MAX_BODY = 10 * 1024 * 1024
# A request must arrive whole within this (a sender that drips it, or opens and says nothing, holds a connection
# and its memory for ever otherwise), with at most this many header lines.
READ_SECONDS = 30.0
MAX_HEADERS = 100
# Open connections of one webhook listener, per sender address and in all: each is a descriptor of ``serve``,
# shared with the database, the inbox and the other fronts; a partner pushes with one or a few at a time.
MAX_CONNECTIONS_PER_ADDRESS = 16
MAX_CONNECTIONS = 64
SYNC_CHECK_SECONDS = 1.0
FIRST_TRY_SECONDS = 10.0  # how long serve's start waits for each webhook listener's first try


class PartnerTasks:
    """Demo simulators and webhook listeners (started once) and the sync schedule (a supervised step)."""

    def __init__(self, app: App, sup: Supervisor) -> None:
        self.app, self.sup = app, sup
        self.sims: list[Any] = []
        self.servers: list[asyncio.Server] = []

    async def start(self) -> None:
        from gateway.entrypoints.demo_partners import start_simulators
        try:
            self.sims = await asyncio.to_thread(start_simulators, self.app)
        except (GatewayError, OSError) as exc:  # delivery goes on; the operator sees why status back does not
            log.error("partners.start_error error=%s", describe(exc))
        # Each partner's webhook listener is a supervised task of its own, started until it listens: an address in
        # use or a secret not there yet is retried with backoff and shown as a failing task (health, the partners
        # page) until mended, and never keeps the other partners' listeners from starting. Started in one go
        # before, the first listener that failed left the rest unstarted, said once in the log, for good.
        listeners = {f"{WEBHOOK_TASK}{pid}": self.sup.start(f"{WEBHOOK_TASK}{pid}",
                                                            functools.partial(self._listen, pid, pcfg), every=5.0,
                                                            once=True, give_up=False, partner=pid)
                     for pid, pcfg in self.app.config.partners.items() if pcfg.webhook.listen}
        # serve is ready with its listeners as before: each has listened, or failed once (and goes on trying)
        deadline = time.monotonic() + FIRST_TRY_SECONDS
        while time.monotonic() < deadline and not all(
                task.done() or self.sup.health[name].consecutive for name, task in listeners.items()):
            await asyncio.sleep(0.01)
        from gateway.entrypoints.demo_bureaus import start_bureau_simulators
        self.sims += await asyncio.to_thread(start_bureau_simulators, self.app)  # demo credit bureaus
        if any(p.sync.enabled for p in self.app.config.partners.values()):
            # A partner's failures come from outside: retried for ever, never a reason to restart the gateway.
            self.sup.start("partner_sync", self._sync_step, every=SYNC_CHECK_SECONDS, give_up=False)

    async def _listen(self, partner_id: str, pcfg: PartnerConfig) -> bool:
        self.servers.append(await _webhook(self.app, self.sup, partner_id, pcfg))
        return True

    async def _sync_step(self) -> bool:
        def on_error(partner_id: str, exc: BaseException) -> None:
            self.sup.report("partner_sync", exc, partner=partner_id)
        await asyncio.to_thread(sync_due, self.app, on_error)
        return False

    async def close(self) -> None:
        for server in self.servers:
            server.close()
            await server.wait_closed()
        for sim in self.sims:
            await asyncio.to_thread(sim.stop)


def webhook_secret(app: App, partner_id: str, pcfg: PartnerConfig) -> bytes:
    """The partner's webhook secret from the environment or a file; never from the config itself."""
    hook, key = pcfg.webhook, f"partners.{partner_id}.webhook"
    if hook.secret_env and os.environ.get(hook.secret_env):
        return os.environ[hook.secret_env].encode()
    if hook.secret_file:
        path = app.config.path(hook.secret_file)
        try:
            return path.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read webhook secret {path}: {exc.strerror}", file=app.config.source,
                              key=f"{key}.secret_file") from exc
    raise ConfigError("a webhook needs a secret: set secret_env (and that variable) or secret_file",
                      file=app.config.source, key=key)


async def _webhook(app: App, sup: Supervisor, partner_id: str, pcfg: PartnerConfig) -> asyncio.Server:
    secret = webhook_secret(app, partner_id, pcfg)
    host, _, port = str(pcfg.webhook.listen).rpartition(":")

    limits = ConnectionLimits(f"partners.webhook.{partner_id}", MAX_CONNECTIONS_PER_ADDRESS, MAX_CONNECTIONS)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str((writer.get_extra_info("peername") or ("?",))[0])
        if not limits.admit(peer):
            writer.close()  # over a bound: closed as it arrives, nothing read
            return
        try:
            await _answer(reader, writer)
        finally:
            limits.release(peer)

    async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, doc = await _request(app, partner_id, secret, reader)
        except TimeoutError:
            status, doc = 408, {"error": f"the request did not arrive whole within {READ_SECONDS:g} s"}
        except (asyncio.IncompleteReadError, ValueError, ConnectionError) as exc:
            status, doc = 400, {"error": f"bad request: {type(exc).__name__}"}
        except Exception as exc:  # noqa: BLE001 - the partner is told to send again; the operator sees why
            sup.report("partners.webhook", exc, partner=partner_id)
            status, doc = 503, {"error": "not applied; send again later"}
        body = msgspec.json.encode(doc)
        writer.write(f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        try:
            await writer.drain()
        except OSError:  # ConnectionResetError among them
            pass  # the sender hung up (a reset) before its answer: nothing to tell it, and no error of serve's
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host or "127.0.0.1", int(port))
    log.info("partners.webhook partner=%s listen=%s", partner_id, pcfg.webhook.listen)
    return server


async def _request(app: App, partner_id: str, secret: bytes, reader: asyncio.StreamReader) -> tuple[int, Any]:
    async with asyncio.timeout(READ_SECONDS):
        request_line = (await reader.readline()).decode("latin-1").split()
        headers: dict[str, str] = {}
        lines = 0
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            lines += 1
            if lines > MAX_HEADERS:
                return 431, {"error": f"more than {MAX_HEADERS} header lines"}
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if len(request_line) < 2 or request_line[0] != "POST":
            return 405, {"error": "POST a JSON array of updates"}
        length = int(headers.get("content-length", "0"))
        if length > MAX_BODY:
            return 413, {"error": f"body over {MAX_BODY} bytes"}
        body = await reader.readexactly(length)
    if not verify_signature(secret, body, headers.get(SIGNATURE_HEADER.lower())):
        log.warning("partners.webhook_refused partner=%s reason=signature", partner_id)
        return 401, {"error": f"missing or wrong {SIGNATURE_HEADER}"}
    try:
        updates = decode_updates(body)
    except msgspec.ValidationError as exc:
        return 400, {"error": f"not a list of updates: {exc}"}
    result = await asyncio.to_thread(apply_updates, app, partner_id, updates)
    return 200, {"received": len(updates), **result.counts}
