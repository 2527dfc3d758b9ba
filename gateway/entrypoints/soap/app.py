"""The SOAP WSGI application: a request gate in front of spyne, and core errors mapped to stable faults.

The gate (``RequestGate``) runs before spyne sees a byte: it refuses oversized bodies, DTDs and
entity declarations (billion laughs, XXE) and encodings that could hide them, authenticates the
client (HTTP Basic or WS-Security UsernameToken), and bounds how many requests work at once.
spyne's own lxml parser is configured without DTD loading, entities or network as a second wall.
"""

from __future__ import annotations

import io
import logging
import re
import secrets
import threading
from collections.abc import Callable, Iterable
from typing import Any

import spyne.const
from spyne import Application, Fault
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from gateway.bootstrap import App
from gateway.entrypoints.soap import faults
from gateway.entrypoints.soap.auth import Authenticator, basic_credentials, username_token
from gateway.entrypoints.soap.service import ENV_BODY, ENV_CLIENT, ENV_READ_ONLY, GatewayService
from gateway.entrypoints.soap.types import TNS
from gateway.errors import IllegalTransition, NotFound, Unsupported
from gateway.services.claim_ops import InvalidRequest

log = logging.getLogger("gateway.soap")
PATH = "/soap"
StartResponse = Callable[..., Any]
_REFUSED = re.compile(rb"<!\s*(DOCTYPE|ENTITY|ELEMENT|ATTLIST)", re.IGNORECASE)
_DECLARED = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")
_ENCODINGS = frozenset({"utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "iso-8859-15", "latin-1", "windows-1252"})


def refusal(body: bytes) -> str | None:
    """Why a request body is refused before parsing, or None if it may be parsed."""
    if body.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in body[:64]:
        return "only UTF-8 (or another ASCII-compatible encoding) is accepted"
    text = body[3:] if body.startswith(b"\xef\xbb\xbf") else body
    if not text.lstrip()[:1] == b"<":
        return "the request body is not XML"
    declared = _DECLARED.match(text)
    if declared and declared.group(1).decode().lower() not in _ENCODINGS:
        return f"encoding '{declared.group(1).decode()}' is not accepted; send UTF-8"
    if _REFUSED.search(text):
        return "DTDs and entity declarations are not accepted"
    return None


class GatewayApplication(Application):  # type: ignore[misc]
    """spyne Application that turns the core's exceptions into faults with stable codes."""

    gateway_app: App

    def call_wrapper(self, ctx: Any) -> Any:
        try:
            return super().call_wrapper(ctx)
        except Fault:
            raise
        except NotFound as exc:
            code = faults.UNKNOWN_SUBMISSION if str(exc).startswith("no submission") else faults.UNKNOWN_CLAIM
            raise Fault(faultcode=code, faultstring=str(exc)) from None
        except IllegalTransition as exc:
            raise Fault(faultcode=faults.ILLEGAL_TRANSITION, faultstring=str(exc)) from None
        except Unsupported as exc:
            raise Fault(faultcode=faults.UNSUPPORTED, faultstring=str(exc)) from None
        except InvalidRequest as exc:
            raise Fault(faultcode=faults.VALIDATION, faultstring=str(exc)) from None
        except (OperationalError, PoolTimeout) as exc:
            log.warning("soap.busy error=%s", exc.__class__.__name__)
            raise Fault(faultcode=faults.BUSY, faultstring="the database is busy: retry later") from None
        except Exception:
            incident = secrets.token_hex(6)
            log.exception("soap.internal_error incident=%s", incident)
            raise Fault(faultcode=faults.INTERNAL, faultstring=f"internal error (incident {incident})") from None


def _stable_fault(ctx: Any) -> None:
    """spyne's own faults (schema validation, unknown operation) under our stable codes."""
    err = ctx.out_error
    if isinstance(err, Fault) and err.faultcode not in faults.CODES:
        code = faults.VALIDATION if str(err.faultcode).startswith("Client") else faults.INTERNAL
        ctx.out_error = err = Fault(faultcode=code, faultstring=str(err.faultstring)[:2000])
    if isinstance(err, Fault):
        # A schema fault quotes the submitted value (a birth date, a name): the client gets it, the log does not.
        said = "" if err.faultcode == faults.VALIDATION else str(err.faultstring)[:200]
        log.info("soap.fault code=%s client=%s message=%s", err.faultcode,
                 ctx.transport.req_env.get(ENV_CLIENT) if ctx.transport else None, said)


def build_application(app: App) -> GatewayApplication:
    """The spyne application for ``app`` (one per process)."""
    # spyne runs a full gc.collect() after a request at most once a second, to close uploaded files held in
    # cycles; we take no file uploads, and on a large heap that pause measured ~200 ms: the whole p99.
    spyne.const.MIN_GC_INTERVAL = float("inf")
    # spyne logs every client fault with a traceback; a client's mistake is one line of ours (soap.fault).
    for name in ("spyne.application.client", "spyne.server._base"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    # spyne's DEBUG lines carry every request header (Authorization: the password) and body (debtor data).
    logging.getLogger("spyne").setLevel(max(logging.getLogger("spyne").getEffectiveLevel(), logging.INFO))
    parser = dict(load_dtd=False, resolve_entities=False, no_network=True, huge_tree=False, dtd_validation=False)
    application = GatewayApplication([GatewayService], tns=TNS, name="InkassoGateway",
                                     in_protocol=Soap11(validator="lxml", **parser), out_protocol=Soap11())
    application.gateway_app = app
    application.event_manager.add_listener("method_exception_object", _stable_fault)
    return application


class RequestGate:
    """WSGI middleware: size, XML safety, authentication and concurrency, before spyne."""

    def __init__(self, inner: WsgiApplication, app: App) -> None:
        cfg = app.config.soap
        self.inner, self.max_bytes, self.busy_wait = inner, cfg.max_request_bytes, cfg.busy_wait_seconds
        self.auth = Authenticator(app.config)
        self.slots = threading.BoundedSemaphore(max(1, cfg.max_inflight))

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") not in (PATH, PATH + "/"):
            return _plain(start_response, "404 Not Found", f"the SOAP endpoint is {PATH} (WSDL at {PATH}?wsdl)")
        if environ["REQUEST_METHOD"] == "GET":
            if environ.get("QUERY_STRING", "").lower() not in ("wsdl", "wsdl="):
                return _plain(start_response, "404 Not Found", f"GET {PATH}?wsdl for the WSDL; POST SOAP requests")
            wsdl: Iterable[bytes] = self.inner(environ, start_response)  # the contract is public, like any WSDL
            return wsdl
        if environ["REQUEST_METHOD"] != "POST":
            return _plain(start_response, "405 Method Not Allowed", "POST SOAP 1.1 requests")
        try:
            declared = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            declared = -1
        if declared > self.max_bytes:
            self._drain(environ["wsgi.input"], declared)
            return self._fault(start_response, "413 Payload Too Large", faults.TOO_LARGE,
                               f"the request has {declared} bytes, at most {self.max_bytes} accepted")
        body = environ["wsgi.input"].read(declared if declared >= 0 else self.max_bytes + 1)
        if len(body) > self.max_bytes:
            self._drain(environ["wsgi.input"], -1)
            return self._fault(start_response, "413 Payload Too Large", faults.TOO_LARGE,
                               f"the request is larger than {self.max_bytes} bytes")
        why = refusal(body)
        if why:
            return self._fault(start_response, "500 Internal Server Error", faults.VALIDATION, why)
        creds = basic_credentials(environ.get("HTTP_AUTHORIZATION")) or username_token(body)
        principal = self.auth.check(*creds) if creds else None
        if principal is None:
            log.info("soap.auth_failed user=%s remote=%s", creds[0][:64] if creds else "-", environ.get("REMOTE_ADDR"))
            return self._fault(start_response, "401 Unauthorized", faults.AUTHENTICATION,
                               "authentication failed: send HTTP Basic or a WS-Security UsernameToken",
                               [("WWW-Authenticate", 'Basic realm="inkasso-gateway", charset="UTF-8"')])
        if not self.slots.acquire(timeout=self.busy_wait):
            return self._fault(start_response, "503 Service Unavailable", faults.BUSY,
                               "too many requests at once: retry later", [("Retry-After", "5")])
        try:
            environ.update({"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)), ENV_BODY: body,
                            ENV_CLIENT: principal.client_id, ENV_READ_ONLY: principal.read_only})
            return list(self.inner(environ, start_response))  # the work happens inside the slot
        finally:
            self.slots.release()

    def _drain(self, stream: Any, declared: int) -> None:
        """Read and drop what the client still sends (up to twice the limit), so it can read our answer."""
        left = min(declared if declared >= 0 else 2 * self.max_bytes, 2 * self.max_bytes)
        while left > 0:
            chunk = stream.read(min(left, 65536))
            if not chunk:
                break
            left -= len(chunk)

    @staticmethod
    def _fault(start_response: StartResponse, status: str, code: str, message: str,
               headers: list[tuple[str, str]] | None = None) -> list[bytes]:
        body = faults.envelope(code, message)
        start_response(status, [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(body))),
                                *(headers or [])])
        return [body]


def _plain(start_response: StartResponse, status: str, text: str) -> list[bytes]:
    body = text.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]


def build_wsgi(app: App) -> RequestGate:
    """The whole SOAP endpoint as one WSGI callable."""
    cfg = app.config.soap
    return RequestGate(WsgiApplication(build_application(app), max_content_length=cfg.max_request_bytes), app)
