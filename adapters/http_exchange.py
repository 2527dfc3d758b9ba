"""One HTTP exchange with a partner, bounded in time and in size whatever the partner's server does.

httpx's ``timeout`` bounds each network operation, not the call: a partner that sends its answer one byte a
second (a broken proxy, a stuck server) keeps every read within it and the call never ends, holding the
dispatcher's lane for that partner. And ``Response.content`` keeps whatever arrives, a body of gigabytes or a
gzip bomb decoded in one piece. So each exchange runs in a short event loop of its own under one deadline
(``asyncio.timeout``, which ends it wherever it waits), the body is read in pieces up to a limit, and a
``Content-Encoding: gzip``/``deflate`` body is inflated here, piece by piece under the same limit.

Redirects are never followed: a case file or a debtor's data must not go to another host or over plain HTTP
because a partner's server said so.
"""

from __future__ import annotations

import asyncio
import email.utils
import ssl
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import httpx

from adapters.tls import PartnerTls

DEFAULT_DEADLINE = 120.0  # seconds for one whole exchange: connect, send, the answer's last byte
DEFAULT_MAX_ANSWER_BYTES = 64 * 1024 * 1024  # an answer (decoded) larger than this is refused
ERROR_BODY_BYTES = 64 * 1024  # of an error answer only its error code is used: the rest is not read


class AnswerTooLarge(Exception):
    """The answer (after decoding) is longer than the limit; nothing of it is kept."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the answer is larger than {limit} bytes")
        self.limit = limit


class AnswerEncoding(Exception):
    """The answer's ``Content-Encoding`` is one the gateway did not ask for, or its data does not inflate."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: httpx.Headers
    content: bytes  # decoded; for an error status at most ERROR_BODY_BYTES of it


class _Inflater:
    """Decodes ``identity``, ``gzip`` or ``deflate`` piece by piece, never holding more than the limit."""

    def __init__(self, encoding: str, limit: int) -> None:
        self.limit, self.out = limit, bytearray()
        name = encoding.strip().lower()
        if name in ("", "identity"):
            self._z: Any = None
        elif name in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif name == "deflate":
            self._z = zlib.decompressobj(zlib.MAX_WBITS)
        else:
            raise AnswerEncoding(f"content encoding {name[:40]!r} was not asked for")

    def feed(self, data: bytes) -> None:
        if self._z is None:
            self._keep(data)
            return
        try:
            while data:
                # at most one byte past the limit: enough to know it is exceeded, never a bomb's whole output
                room = self.limit + 1 - len(self.out)
                piece = self._z.decompress(data, room)
                self._keep(piece)
                data = self._z.unconsumed_tail
        except zlib.error as exc:
            raise AnswerEncoding(f"the answer does not inflate ({exc})") from None

    def _keep(self, piece: bytes) -> None:
        if len(self.out) + len(piece) > self.limit:
            raise AnswerTooLarge(self.limit)
        self.out += piece

    def finish(self) -> bytes:
        if self._z is not None:
            self._keep(self._z.flush())
        return bytes(self.out)


class Exchange:
    """Requests to one partner's base URL; each one ends by ``deadline`` and holds at most ``max_bytes``."""

    def __init__(self, base_url: str, headers: Mapping[str, str], *, timeout: float, deadline: float,
                 max_bytes: int, ca_file: str | None = None,
                 default_tls: Callable[[], ssl.SSLContext] = httpx.create_ssl_context, where: str = "partner") -> None:
        self.base_url, self.timeout, self.deadline, self.max_bytes = base_url, timeout, deadline, max_bytes
        # Only what the gateway can inflate under its limit: no br or zstd, whatever httpx could decode.
        self.headers = {**headers, "Accept-Encoding": "gzip"}
        # The partner's certificate is verified against ``ca_file`` (a partner's private CA), else ``default_tls``
        # (httpx's: SSL_CERT_FILE, SSL_CERT_DIR, else certifi's bundle); host names always (``adapters.tls``).
        self.ca_file, self.default_tls, self.where = ca_file, default_tls, where
        self._tls = PartnerTls(where, ca_file, default_tls)  # made again when ca_file changes on disk

    def request(self, method: str, path: str, *, json: Any = None, content: bytes | None = None,
                params: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None,
                within: float | None = None) -> Answer:
        """One request (``path`` relative to the base URL, or absolute) and its whole answer; TimeoutError past
        the deadline, AnswerTooLarge, AnswerEncoding, httpx errors as raised; DeliveryError (retryable) when
        ``ca_file`` cannot be loaded.

        ``within``: the seconds left of a call this request is one step of (a SOAP call's WSDL, its schemas and the
        operation); the request ends by then if that is sooner than its own deadline."""
        seconds = self.deadline if within is None else min(self.deadline, within)
        if seconds <= 0:
            raise TimeoutError("the call's deadline has passed")
        return asyncio.run(self._bounded(self._tls.context(), seconds, method, path, json, content, params,
                                         headers or {}))

    async def _bounded(self, tls: ssl.SSLContext, seconds: float, method: str, path: str, json: Any,
                       content: bytes | None, params: Mapping[str, str] | None, headers: Mapping[str, str]) -> Answer:
        async with asyncio.timeout(seconds):
            async with httpx.AsyncClient(base_url=self.base_url, headers=self.headers, timeout=self.timeout,
                                         verify=tls, follow_redirects=False) as client:
                async with client.stream(method, path, json=json, content=content, params=params,
                                         headers=headers) as r:
                    if 300 <= r.status_code < 400:
                        return Answer(r.status_code, r.headers, b"")
                    limit = ERROR_BODY_BYTES if r.status_code >= 400 else self.max_bytes
                    inflater = _Inflater(r.headers.get("content-encoding", ""), limit)
                    try:
                        async for chunk in r.aiter_raw():
                            inflater.feed(chunk)
                        body = inflater.finish()
                    except (AnswerTooLarge, AnswerEncoding):
                        if r.status_code < 400:
                            raise
                        body = b""  # an error's status says enough
                    return Answer(r.status_code, r.headers, body)


MAX_RETRY_AFTER = 86400.0  # a partner asking for more is waited on this long, then asked again


def retry_after(r: Answer) -> float | None:
    """The wait a 429/503 asks for (``Retry-After``: seconds or an HTTP date), at most a day; None if none."""
    value = r.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():  # str.isdigit alone takes '²', which float() refuses
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
