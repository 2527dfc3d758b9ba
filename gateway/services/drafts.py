"""A claim as plain data (what a SOAP ``ClaimInput`` or the console's hand-over form becomes) as a canonical
draft for ``submit.submit_claims``: document checks, ``partner_id`` refused, type errors as findings.

One translation for every synchronous channel, so a claim typed into the console meets the same rules as one
sent over SOAP. The entry points make the plain data (SOAP: ``soap.translate.to_plain``; the console: its
form fields) and call ``draft_of``.

A finding's ``message`` is stored and shown to operators, so it never quotes what the client sent (a document's
file name is often the debtor's, "Rechnung Müller.pdf"); the value goes in ``client_message`` only.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from gateway.domain import findings as codes
from gateway.domain.findings import Finding
from gateway.domain.model import Claim
from gateway.services.submit import Draft, Upload

_QUOTED = re.compile(r"'.*'", re.S)  # a value msgspec quotes in its message (greedy: it may hold quotes)
MEDIA_TYPES = frozenset({"application/pdf", "image/jpeg", "image/png", "image/tiff", "image/heic", "image/webp"})


def draft_of(client_id: str, plain: dict[str, Any], max_document_bytes: int) -> Draft:
    """One claim of a request as a canonical draft; what cannot be converted becomes findings.

    ``plain`` is changed (its documents are taken out); documents are ``{name, media_type, kind?, content}``
    with ``content`` a list of byte strings.
    """
    reference = plain.get("creditor_reference")
    uploads, found = [], []
    for i, doc in enumerate(plain.pop("documents", None) or []):
        content = b"".join(doc.get("content") or [])
        where = f"documents[{i}]"
        if len(content) > max_document_bytes:
            limit = f"has {len(content)} bytes, at most {max_document_bytes} allowed"
            found.append(Finding(code="document_too_large", field=f"{where}.content",
                                 message=f"document {i + 1} {limit}",
                                 client_message=f"document '{doc['name']}' {limit}"))
        elif not content:
            found.append(Finding(code=codes.MISSING_FIELD, field=f"{where}.content",
                                 message=f"document {i + 1} is empty",
                                 client_message=f"document '{doc['name']}' is empty"))
        if doc["media_type"] not in MEDIA_TYPES:
            accepted = f"is not accepted (one of {', '.join(sorted(MEDIA_TYPES))})"
            found.append(Finding(code=codes.INVALID_VALUE, field=f"{where}.media_type",
                                 message=f"the media type {accepted}",
                                 client_message=f"media type '{str(doc['media_type'])[:100]}' {accepted}"))
        uploads.append(Upload(name=doc["name"], media_type=doc["media_type"], kind=doc.get("kind") or "other",
                              content=content))
    if plain.get("partner_id"):  # which agency gets a claim is routing policy, not the client's choice
        found.append(Finding(code=codes.INVALID_VALUE, field="partner_id",
                             message="partner_id is chosen by the gateway's routing and cannot be set"))
    try:
        claim = msgspec.convert({**plain, "client_id": client_id}, Claim)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at `$.")
        # msgspec quotes the value it refused ("Invalid enum value 'Jürgen Müller'"): stored without it
        return Draft(reference=reference, claim=None,
                     findings=[*found, Finding(code=codes.TYPE_ERROR, message=_QUOTED.sub("(value)", message),
                                               client_message=message, field=where.rstrip("`") or None)])
    return Draft(reference=reference, claim=None if found else claim, findings=found, uploads=uploads)
