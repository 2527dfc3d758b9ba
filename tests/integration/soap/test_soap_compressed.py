"""Compressed SOAP requests (``Content-Encoding: gzip`` or ``deflate``, as Apache CXF's GZIP feature or a .NET
client may send them) are taken, bounded by ``soap.max_request_bytes`` unpacked; anything else is refused
clearly. Real HTTPS requests on loopback, bodies compressed by Python's gzip and zlib."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable

from sqlalchemy import func, select

from gateway.store.schema import claims
from tests.integration.soap.conftest import Endpoint
from tests.integration.soap.test_soap_doc_examples import _examples


def submit_example() -> bytes:
    (first, *_) = [t for t in _examples() if "<v1:SubmitClaims>" in t or "SubmitClaims>" in t.split("Body")[1]]
    return first.encode()


def post(endpoint: Endpoint, body: bytes, coding: str | None) -> tuple[int, str]:
    headers = {"Content-Type": "text/xml; charset=utf-8"}
    if coding:
        headers["Content-Encoding"] = coding
    r = endpoint.session().post(endpoint.url, data=body, headers=headers, timeout=60)
    return r.status_code, r.text


def stored(endpoint: Endpoint) -> int:
    with endpoint.app.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(claims)).scalar_one())


def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-15)
    return c.compress(data) + c.flush()


CODINGS: list[tuple[str, Callable[[bytes], bytes]]] = [
    ("gzip", lambda b: gzip.compress(b, mtime=0)),
    ("deflate", zlib.compress),  # a zlib stream, as RFC 9110 says
    ("deflate", _raw_deflate),   # what some clients send under that name
]


def test_a_compressed_request_is_taken_like_a_plain_one(endpoint: Endpoint) -> None:
    # one endpoint for the three (building one costs seconds): the same submission sent three ways, taken once
    for coding, pack in CODINGS:
        status, text = post(endpoint, pack(submit_example()), coding)
        assert status == 200 and "SubmitClaimsResponse" in text, (coding, text[:400])
        assert stored(endpoint) == 1


def test_a_small_gzip_of_gigabytes_is_refused_after_the_limit_is_unpacked(endpoint: Endpoint) -> None:
    limit = endpoint.app.config.soap.max_request_bytes  # 256 KB in these tests
    bomb = gzip.compress(b"<" + b" " * (200 * 1024 * 1024), mtime=0)  # 200 MB unpacked, about 200 KB sent
    assert len(bomb) < limit
    status, text = post(endpoint, bomb, "gzip")
    assert status == 413 and "Client.TooLarge" in text and f"larger than {limit} bytes" in text, text[:400]
    assert stored(endpoint) == 0


REFUSED = [  # (body, coding, HTTP status, what the fault says)
    (gzip.compress(b"<x/>" * 1000, mtime=0)[:-20], "gzip", 500, "cut short"),
    (b"this is not compressed", "gzip", 500, "not valid gzip data"),
    (gzip.compress(b"<x/>", mtime=0) + b"junk", "gzip", 500, "bytes after its end"),
    (b"<x/>", "br", 415, "Content-Encoding 'br' is not accepted"),
]


def test_a_body_that_does_not_decompress_or_an_unknown_coding_is_refused_saying_so(endpoint: Endpoint) -> None:
    for body, coding, status, says in REFUSED:
        got, text = post(endpoint, body, coding)
        assert got == status and says in text and "Client.Validation" in text, (says, text[:400])
