"""The request gate: everything a SOAP request must pass before spyne sees a byte of it.

In order: path and method; ``Content-Type`` (text/xml or application/soap+xml, else 415); the declared
size; then the sender. With HTTP Basic the sender is checked from the header alone, before the body is
read. A WS-Security UsernameToken is in the body, so such a body is read (capped at the size limit) by at
most ``soap.max_unauthenticated_reads`` requests at once, and not at all from an address the login
throttle refuses. Then DTDs, entity declarations and hidden encodings are refused (billion laughs,
XXE), and bodies with more tags or attributes than ``soap.max_request_tags`` (before any tree is built,
the WS-Security look-up's included), and at most ``soap.max_inflight`` authenticated requests work at once.

The WSDL names ``soap.public_url`` (default: this listener's own https address), built once: never the
Host header of whoever asked, since generated ERP clients send their passwords wherever it points.
"""

from __future__ import annotations

import io
import logging
import math
import re
import secrets
import socket
import sys
import threading
import zlib
from collections.abc import Callable, Iterable
from typing import Any

from gateway.bootstrap import App
from gateway.domain.sandbox import is_sandbox_client
from gateway.faults import describe
from gateway.entrypoints.soap import faults
from gateway.entrypoints.soap.auth import (ENV_LOGIN, Authenticator, Outcome, TokenError, basic_credentials,
                                           username_token)
from gateway.entrypoints.soap.connection import ENV_CONNECTION
from gateway.entrypoints.soap.encoding import EncodingRefused, as_utf8
from gateway.entrypoints.soap.service import ENV_BODY, ENV_CLIENT, ENV_READ_ONLY
from gateway.entrypoints.soap.types import TNS
from gateway.entrypoints.soap.v2 import PATH_V2, TNS_V2

log = logging.getLogger("gateway.soap")
PATH = "/soap"
ENV_ROUTE = "gateway.route"  # the contract version's path a request came to
_NAMESPACES = {PATH: TNS, PATH_V2: TNS_V2}
SANDBOX_HEADER = "X-Inkasso-Sandbox"  # on every answer to a sandbox login
StartResponse = Callable[..., Any]
_MEDIA = frozenset({"text/xml", "application/soap+xml"})
_SKIP = 64 * 1024  # an unread body up to this is drained (so the client reads our answer); more: close
_REFUSED = re.compile(rb"<!\s*(DOCTYPE|ENTITY|ELEMENT|ATTLIST)", re.IGNORECASE)
_DECLARED = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")
_ENCODINGS = frozenset({"utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "iso-8859-15", "latin-1", "windows-1252"})
_CHALLENGE = ("WWW-Authenticate", 'Basic realm="inkasso-gateway", charset="UTF-8"')


class Undecodable(Exception):
    """A compressed request body that does not decompress (cut short, corrupt, trailing bytes)."""


_CODINGS = {"gzip": 31, "x-gzip": 31, "deflate": 15}  # zlib's wbits: a gzip member, a zlib stream


def content_coding(environ: dict[str, Any]) -> str | None:
    """The request's ``Content-Encoding`` (None for a plain body); ValueError for one not accepted."""
    coding = (environ.get("HTTP_CONTENT_ENCODING") or "").strip().lower()
    if coding in ("", "identity"):
        return None
    if coding not in _CODINGS:
        raise ValueError(coding[:40])
    return coding


def inflate(raw: bytes, coding: str, limit: int) -> bytes | None:
    """``raw`` decompressed; None when it unpacks to more than ``limit`` bytes (no more than that is unpacked: a
    small gzip of gigabytes costs ``limit``, not gigabytes)."""
    wbits = _CODINGS[coding]
    for attempt in ((wbits, -15) if coding == "deflate" else (wbits,)):  # "deflate" is sent raw by some clients
        d = zlib.decompressobj(wbits=attempt)
        try:
            out = d.decompress(raw, limit + 1)
        except zlib.error:
            continue
        if len(out) > limit or d.unconsumed_tail:
            return None
        if not d.eof or d.unused_data:
            raise Undecodable(f"the {coding} body is cut short or has bytes after its end")
        return out
    raise Undecodable(f"the body is not valid {coding} data")


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


def markup_refusal(body: bytes, max_tags: int) -> str | None:
    """Why a body is refused for its amount of markup, or None; counted before any parser builds a tree."""
    # What a parsed request costs is set by its nodes, not its bytes: 2 MB of ``<a/>`` or of attributes
    # took 300-700 MB of lxml and spyne memory per request, so eight at once took gigabytes. Every tag
    # starts with '<' and every attribute has an '=', so two byte counts bound both (text rarely has many).
    # Attributes get a quarter: each one the schema does not allow costs an entry in the validator's error log
    # (200,000 of them: +300 MB), while a request has few of its own (namespace declarations, and xsi:nil on
    # the empty elements some .NET clients write: at most one for every two tags).
    tags = body.count(b"<")
    if tags > max_tags:
        return f"the request has more than {max_tags} XML tags: send fewer claims per call"
    max_attributes = max(1000, max_tags // 4)
    if body.count(b"=") > max_attributes:
        return f"the request has more than {max_attributes} XML attributes (or '=' characters): send fewer claims per call"
    return None


_XSI = "http://www.w3.org/2001/XMLSchema-instance "  # expat's "<namespace> <name>"
MAX_UNDECLARED_ATTRIBUTES = 1000


class _Enough(Exception):
    pass


def undeclared_attributes(body: bytes, stop_at: int = MAX_UNDECLARED_ATTRIBUTES) -> int:
    """Attributes outside the xsi namespace, counted up to ``stop_at`` by expat, which builds no tree.

    The WSDL's schema declares no attribute, so the validator logs one error per such attribute (~1.1 KB each):
    99,000 of them took a request to +145 MB, and eight at once the process to 1.16 GB. Counted only for
    heavy requests with many '='; a body that does not parse counts what was seen (the parser's own fault
    comes later). DTDs were refused before this is called."""
    import xml.parsers.expat

    parser = xml.parsers.expat.ParserCreate(namespace_separator=" ")
    parser.ordered_attributes = True
    found = 0

    def start(name: str, attributes: list[str]) -> None:
        nonlocal found
        found += sum(1 for key in attributes[0::2] if not key.startswith(_XSI))
        if found >= stop_at:
            raise _Enough

    parser.StartElementHandler = start
    try:
        parser.Parse(body, True)
    except _Enough:
        pass
    except xml.parsers.expat.ExpatError:
        pass
    return found


def default_public_url(host: str, port: int) -> str:
    """https://<host>:<port>/soap of a listener; a wildcard address is named by this machine's name."""
    name = socket.getfqdn() if host in ("", "0.0.0.0", "::") else host
    return f"https://{f'[{name}]' if ':' in name else name}:{port}{PATH}"


class RequestGate:
    """WSGI middleware: media type, size, authentication, XML safety and concurrency, before spyne."""

    def __init__(self, inner: Any, app: App, versions: dict[str, tuple[Any, str]] | None = None) -> None:
        cfg = app.config.soap
        self.inner, self.max_bytes, self.busy_wait = inner, cfg.max_request_bytes, cfg.busy_wait_seconds
        self.max_tags = cfg.max_request_tags
        # path -> (spyne WSGI application, its namespace): v1 at PATH, later contract versions beside it
        self.routes: dict[str, tuple[Any, str]] = {PATH: (inner, TNS), **(versions or {})}
        self.auth = Authenticator(app.config, app.login_throttle)
        self.slots = threading.BoundedSemaphore(max(1, cfg.max_inflight))
        self.heavy_tags = cfg.heavy_request_tags
        self.heavy = threading.BoundedSemaphore(max(1, cfg.max_heavy_inflight))
        self.unauthenticated = threading.BoundedSemaphore(max(1, cfg.max_unauthenticated_reads))
        self.public_url = cfg.public_url or default_public_url(cfg.host, cfg.port)
        self._wsdl: dict[str, bytes] = {}
        self._wsdl_lock = threading.Lock()

    def publish(self, url: str) -> None:
        """Advertise ``url`` in the WSDL (the server calls this once it knows its port)."""
        with self._wsdl_lock:
            self.public_url, self._wsdl = url, {}

    def wsdl(self, path: str = PATH) -> bytes:
        """The WSDL of the contract at ``path`` naming ``public_url`` (plus the version's suffix), built once."""
        inner = self.routes[path][0]
        with self._wsdl_lock:
            if path not in self._wsdl:
                doc = inner.doc.wsdl11
                doc.build_interface_document(self.public_url + path[len(PATH):])
                self._wsdl[path] = inner._wsdl = doc.get_interface_document()  # spyne's own cache too
            return self._wsdl[path]

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        path = path[:-1] if path.endswith("/") and path != "/" else path
        if path not in self.routes:
            where = " and ".join(f"{p} (WSDL at {p}?wsdl)" for p in self.routes)
            return _plain(start_response, "404 Not Found", f"the SOAP endpoints are {where}")
        environ[ENV_ROUTE] = path
        if environ["REQUEST_METHOD"] == "GET":
            if environ.get("QUERY_STRING", "").lower() not in ("wsdl", "wsdl="):
                return _plain(start_response, "404 Not Found", f"GET {path}?wsdl for the WSDL; POST SOAP requests")
            body = self.wsdl(path)  # the contract is public, like any WSDL
            start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(body)))])
            return [body]
        if environ["REQUEST_METHOD"] != "POST":
            return _plain(start_response, "405 Method Not Allowed", "POST SOAP 1.1 requests")
        return self._post(environ, start_response)

    def _post(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        media = (environ.get("CONTENT_TYPE") or "").split(";")[0].strip().lower()
        if media not in _MEDIA:
            return self._fault(environ, start_response, "415 Unsupported Media Type", faults.VALIDATION,
                               f"Content-Type '{media[:60] or 'none'}' is not accepted: send text/xml (SOAP 1.1)")
        try:
            content_coding(environ)
        except ValueError as exc:
            return self._fault(environ, start_response, "415 Unsupported Media Type", faults.VALIDATION,
                               f"Content-Encoding '{exc}' is not accepted: send the body plain, gzip or deflate")
        try:
            declared = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            declared = -1
        if declared > self.max_bytes:
            unasked = _body_unasked(environ)
            if not unasked:
                self._drain(environ["wsgi.input"], declared)
            return self._fault(environ, start_response, "413 Payload Too Large", faults.TOO_LARGE,
                               f"the request has {declared} bytes, at most {self.max_bytes} accepted",
                               read=not unasked)
        address = environ.get("REMOTE_ADDR")
        basic = environ.get("HTTP_AUTHORIZATION")
        if basic:  # the sender is known from the header: nothing of the body is read for a stranger
            creds = basic_credentials(basic)
            if creds is None:
                return self._fault(environ, start_response, "401 Unauthorized", faults.AUTHENTICATION,
                                   "the Authorization header is not valid HTTP Basic", [_CHALLENGE])
            outcome = self.auth.check(creds[0], creds[1], address)
            if outcome.principal is None:
                return self._refused(environ, start_response, outcome, creds[0])
            try:
                body = self._read(environ, declared)
            except Undecodable as exc:
                return self._fault(environ, start_response, "500 Internal Server Error", faults.VALIDATION, str(exc),
                                   read=True)
        else:
            wait = self.auth.throttle.wait_for(username=None, address=address)
            if wait > 0:
                return self._refused(environ, start_response, Outcome(retry_after=wait), "-")
            if not self.unauthenticated.acquire(timeout=self.busy_wait):
                return self._fault(environ, start_response, "503 Service Unavailable", faults.BUSY,
                                   "too many requests at once: retry later", [("Retry-After", "5")])
            try:  # the body and its token are looked at inside the bound, authentication included
                body = self._read(environ, declared)
                why = (refusal(body) or markup_refusal(body, self.max_tags)) if body is not None else None
                outcome = self._token_login(body, address) if body is not None and not why else Outcome()
            except TokenError as exc:
                return self._fault(environ, start_response, "401 Unauthorized", faults.AUTHENTICATION, str(exc),
                                   [_CHALLENGE], read=True)
            except Undecodable as exc:
                return self._fault(environ, start_response, "500 Internal Server Error", faults.VALIDATION, str(exc),
                                   read=True)
            finally:
                self.unauthenticated.release()
        if body is None:
            return self._fault(environ, start_response, "413 Payload Too Large", faults.TOO_LARGE,
                               f"the request is larger than {self.max_bytes} bytes", read=True)
        why = refusal(body)
        if why:
            return self._fault(environ, start_response, "500 Internal Server Error", faults.VALIDATION, why, read=True)
        why = markup_refusal(body, self.max_tags)
        if why:
            return self._fault(environ, start_response, "413 Payload Too Large", faults.TOO_LARGE, why, read=True)
        try:
            body = as_utf8(body, environ.get("CONTENT_TYPE") or "")
        except EncodingRefused as exc:
            return self._fault(environ, start_response, "500 Internal Server Error", faults.VALIDATION, str(exc),
                               read=True)
        environ["CONTENT_TYPE"] = f"{media}; charset=utf-8"
        if outcome.principal is None:
            return self._refused(environ, start_response, outcome, "(ws-security)", read=True)
        # What a parse costs is set by the markup: a few heavy requests at once, however many slots are free
        attributes = body.count(b"=")
        heavy = body.count(b"<") + attributes > self.heavy_tags
        if heavy and not self.heavy.acquire(timeout=self.busy_wait):
            return self._fault(environ, start_response, "503 Service Unavailable", faults.BUSY,
                               "too many large requests at once: retry later", [("Retry-After", "5")], read=True)
        if heavy and attributes >= MAX_UNDECLARED_ATTRIBUTES and undeclared_attributes(body) >= MAX_UNDECLARED_ATTRIBUTES:
            self.heavy.release()
            return self._fault(environ, start_response, "500 Internal Server Error", faults.VALIDATION,
                               f"the request has {MAX_UNDECLARED_ATTRIBUTES} or more XML attributes the WSDL's "
                               "schema does not declare: send the claims as the WSDL describes them", read=True)
        if not self.slots.acquire(timeout=self.busy_wait):
            if heavy:
                self.heavy.release()
            return self._fault(environ, start_response, "503 Service Unavailable", faults.BUSY,
                               "too many requests at once: retry later", [("Retry-After", "5")], read=True)
        try:
            environ.update({"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)), ENV_BODY: body,
                            ENV_CLIENT: outcome.principal.client_id, ENV_READ_ONLY: outcome.principal.read_only,
                            ENV_LOGIN: outcome.principal.login})
            if is_sandbox_client(outcome.principal.client_id):  # every answer to a sandbox login says so
                start_response = _sandbox_marked(start_response)
            try:
                return list(self.routes[environ[ENV_ROUTE]][0](environ, start_response))  # the work, in the slot
            except Exception as exc:  # noqa: BLE001 - spyne let it escape: the server would print it with the body
                incident = secrets.token_hex(6)
                log.error("soap.internal_error incident=%s client=%s error=%s", incident,
                          outcome.principal.client_id, describe(exc))
                info = sys.exc_info()
                return self._fault(environ, lambda status, headers: start_response(status, headers, info),
                                   "500 Internal Server Error", faults.INTERNAL,
                                   f"internal error (incident {incident})", read=True)
        finally:
            self.slots.release()
            if heavy:
                self.heavy.release()

    def _token_login(self, body: bytes, address: str | None) -> Outcome:
        creds = username_token(body)
        if creds is None:
            raise TokenError("no credentials: send HTTP Basic or a WS-Security UsernameToken (PasswordText)")
        return self.auth.check(creds[0], creds[1], address)

    def _refused(self, environ: dict[str, Any], start_response: StartResponse, outcome: Outcome, user: str,
                 *, read: bool = False) -> list[bytes]:
        reason = "throttled" if outcome.retry_after > 0 else "busy" if outcome.busy else "wrong"
        # A name that is no login may be a password typed into the username field (an ERP's settings
        # swapped): only configured logins are named, like the web console's failed logins.
        named = user if user in ("-", "(ws-security)") or self.auth.knows(user) else "(unknown)"
        log.info("soap.auth_failed user=%s remote=%s reason=%s", named[:64], environ.get("REMOTE_ADDR"), reason)
        if outcome.retry_after > 0:
            seconds = math.ceil(outcome.retry_after)
            return self._fault(environ, start_response, "429 Too Many Requests", faults.THROTTLED,
                               f"too many failed logins: retry in {seconds} s", [("Retry-After", str(seconds))],
                               read=read)
        if outcome.busy:
            return self._fault(environ, start_response, "503 Service Unavailable", faults.BUSY,
                               "too many logins at once: retry later", [("Retry-After", "5")], read=read)
        return self._fault(environ, start_response, "401 Unauthorized", faults.AUTHENTICATION,
                           "authentication failed: wrong username or password", [_CHALLENGE], read=read)

    def _read(self, environ: dict[str, Any], declared: int) -> bytes | None:
        """The body, decompressed when it came compressed; None when it is larger than the limit, compressed or
        not (the rest is then drained). ``Undecodable`` for compressed data that does not decompress."""
        body: bytes = environ["wsgi.input"].read(declared if declared >= 0 else self.max_bytes + 1)
        if len(body) > self.max_bytes:
            self._drain(environ["wsgi.input"], -1)
            return None
        coding = content_coding(environ)
        if coding is None:
            return body
        environ.pop("HTTP_CONTENT_ENCODING", None)  # what goes on is the plain body
        return inflate(body, coding, self.max_bytes)

    def _drain(self, stream: Any, declared: int) -> None:
        """Read and drop what the client still sends (up to twice the limit), so it can read our answer."""
        left = min(declared if declared >= 0 else 2 * self.max_bytes, 2 * self.max_bytes)
        while left > 0:
            chunk = stream.read(min(left, 65536))
            if not chunk:
                break
            left -= len(chunk)

    @staticmethod
    def _fault(environ: dict[str, Any], start_response: StartResponse, status: str, code: str, message: str,
               headers: list[tuple[str, str]] | None = None, *, read: bool = False) -> list[bytes]:
        extra = list(headers or [])
        if not read:  # answered from the header: a small body is drained, a larger one never read
            try:
                declared = int(environ.get("CONTENT_LENGTH") or -1)
            except ValueError:
                declared = -1
            conn = environ.get(ENV_CONNECTION)
            if conn is not None and _body_unasked(environ):  # the client waits for 100 Continue: this answer instead
                conn.discard_body()
                extra.append(("Connection", "close"))
            elif 0 <= declared <= _SKIP or conn is None:
                environ["wsgi.input"].read(min(max(declared, 0), _SKIP))
            else:
                conn.discard_body()
                extra.append(("Connection", "close"))
        body = faults.envelope(code, message, _NAMESPACES.get(environ.get(ENV_ROUTE, PATH), TNS))
        start_response(status, [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(body))),
                                *extra])
        return [body]


def _body_unasked(environ: dict[str, Any]) -> bool:
    """The client sent ``Expect: 100-continue`` and waits: none of its body is sent until the gate reads it.

    The connection is then closed after the answer, since the client may still send the body after its own wait."""
    conn = environ.get(ENV_CONNECTION)
    return conn is not None and bool(conn.body_unasked())


def _sandbox_marked(start_response: StartResponse) -> StartResponse:
    """``start_response`` adding the header that marks an answer from a client's sandbox (docs/sandbox.md)."""
    def marked(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
        return start_response(status, [*headers, (SANDBOX_HEADER, "true")], *args)
    return marked


def _plain(start_response: StartResponse, status: str, text: str) -> list[bytes]:
    body = text.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]
