"""A request body's text encoding, settled before spyne sees it: one encoding, checked, handed on as UTF-8.

An ERP may declare its encoding in the ``Content-Type`` charset, in the XML declaration, or both. spyne
decodes with the header's charset and lets a decoding error escape: a body sent as ``charset=utf-8`` but
written in Windows-1252 (an "ü" as byte 0xFC) was answered with an empty HTTP 500, and the server's stderr
got the traceback with the whole body (debtor data) in it. When header and declaration disagree, spyne
silently took the header's, so a UTF-8 body labelled ``charset=windows-1252`` would have been stored as
mojibake. Here the body is decoded strictly with the one encoding both agree on (UTF-8 when neither says),
a mismatch or an undecodable byte is a clear sentence naming the place (never the bytes around it), and
spyne gets UTF-8 with a declaration and a header that say so.
"""

from __future__ import annotations

import codecs
import re

# codecs' canonical names (codecs.lookup(...).name): ISO-8859-1 and "latin-1" are both "iso8859-1"
ACCEPTED = frozenset({"utf-8", "ascii", "iso8859-1", "iso8859-15", "cp1252"})
_DECLARED = re.compile(rb"^(\s*<\?xml[^>]*?encoding\s*=\s*[\"'])([A-Za-z0-9._-]+)([\"'])")
_CHARSET = re.compile(r";\s*charset\s*=\s*\"?([A-Za-z0-9._-]+)", re.IGNORECASE)
_BOM = b"\xef\xbb\xbf"


class EncodingRefused(Exception):
    """The body's encoding cannot be settled or the body does not decode; the message is for the client."""


def _codec(name: str, where: str) -> str:
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        raise EncodingRefused(f"{where} names the unknown encoding '{name[:40]}'; send UTF-8") from None
    if codec not in ACCEPTED:
        raise EncodingRefused(f"{where} names the encoding '{name[:40]}', which is not accepted; send UTF-8")
    return codec


def _place(body: bytes, offset: int) -> str:
    line = body.count(b"\n", 0, offset) + 1
    column = offset - (body.rfind(b"\n", 0, offset) + 1) + 1
    return f"byte 0x{body[offset]:02X} at line {line}, column {column}"


def as_utf8(body: bytes, content_type: str) -> bytes:
    """``body`` as UTF-8 (the declaration, if any, saying so); EncodingRefused says why it cannot be."""
    text = body[len(_BOM):] if body.startswith(_BOM) else body
    header = _CHARSET.search(content_type or "")
    declared = _DECLARED.match(text)
    by_header = _codec(header.group(1), "the Content-Type charset") if header else None
    by_declaration = _codec(declared.group(2).decode("ascii"), "the XML declaration") if declared else None
    if body.startswith(_BOM) and (by_header or by_declaration or "utf-8") != "utf-8":
        raise EncodingRefused("the body starts with a UTF-8 byte order mark but declares another encoding")
    if by_header and by_declaration and by_header != by_declaration and not text.isascii():
        raise EncodingRefused(f"the Content-Type says charset={header.group(1)[:40] if header else ''} but the XML "
                              f"declaration says encoding=\"{by_declaration}\": they must agree (best: UTF-8 in both)")
    codec = by_declaration or by_header or "utf-8"
    try:
        decoded = text.decode(codec)
    except UnicodeDecodeError as exc:
        name = "UTF-8" if codec == "utf-8" else codec
        raise EncodingRefused(f"the request is not valid {name}: {_place(text, exc.start)}; "
                              "send UTF-8 and say so (Content-Type: text/xml; charset=utf-8)") from None
    if codec == "utf-8":
        return text
    utf8 = decoded.encode("utf-8")
    if declared:
        utf8 = _DECLARED.sub(lambda m: m.group(1) + b"UTF-8" + m.group(3), utf8, count=1)
    return utf8
