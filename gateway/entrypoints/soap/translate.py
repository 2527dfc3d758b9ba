"""Mapping between the SOAP types and the core: spyne objects in, canonical structs and results out."""

from __future__ import annotations

import enum
from typing import Any

import msgspec
from spyne import ComplexModelBase

from gateway.domain import findings as codes
from gateway.domain.findings import Finding
from gateway.domain.model import Claim, from_minor
from gateway.entrypoints.soap import types as t
from gateway.services.submit import Draft, Upload

MEDIA_TYPES = frozenset({"application/pdf", "image/jpeg", "image/png", "image/tiff", "image/heic", "image/webp"})


def to_plain(obj: Any) -> Any:
    """A spyne object as plain dicts and lists; text trimmed, absent and empty values left out.

    ERP systems pad fixed-width fields; "SAP-4711 " must be the same reference as "SAP-4711".
    """
    if isinstance(obj, ComplexModelBase):
        cls = type(obj)
        return {k: p for k in cls.get_flat_type_info(cls) if (p := to_plain(getattr(obj, k, None))) is not None}
    if isinstance(obj, (list, tuple)):
        return [p for v in obj if (p := to_plain(v)) is not None]
    if isinstance(obj, str):
        return obj.strip() or None
    return obj


def _inner(cls: Any) -> Any:
    info = getattr(cls, "_type_info", None)
    return next(iter(info.values())) if info else cls


def from_struct(cls: Any, value: Any) -> Any:
    """A canonical struct (or list, enum, scalar) as an instance of the SOAP type ``cls``."""
    if isinstance(value, msgspec.Struct):
        cls = getattr(cls, "__orig__", None) or cls  # spyne: a customized (e.g. required) type is not instantiated
        info = cls.get_flat_type_info(cls)
        return cls(**{name: from_struct(ftype, v) for name, ftype in info.items()
                      if (v := getattr(value, name, None)) is not None})
    if isinstance(value, list):
        inner = _inner(cls)
        return [from_struct(inner, v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


def draft_of(client_id: str, item: t.ClaimInput, max_document_bytes: int) -> Draft:
    """One claim of a request as a canonical draft; what cannot be converted becomes findings."""
    plain = to_plain(item)
    reference = plain.get("creditor_reference")
    uploads, found = [], []
    for i, doc in enumerate(plain.pop("documents", None) or []):
        content = b"".join(doc.get("content") or [])
        where = f"documents[{i}]"
        if len(content) > max_document_bytes:
            found.append(Finding(code="document_too_large", field=f"{where}.content",
                                 message=f"document '{doc['name']}' has {len(content)} bytes, "
                                         f"at most {max_document_bytes} allowed"))
        elif not content:
            found.append(Finding(code=codes.MISSING_FIELD, field=f"{where}.content",
                                 message=f"document '{doc['name']}' is empty"))
        if doc["media_type"] not in MEDIA_TYPES:
            found.append(Finding(code=codes.INVALID_VALUE, field=f"{where}.media_type",
                                 message=f"media type '{doc['media_type']}' is not accepted "
                                         f"(one of {', '.join(sorted(MEDIA_TYPES))})"))
        uploads.append(Upload(name=doc["name"], media_type=doc["media_type"], kind=doc.get("kind") or "other",
                              content=content))
    if plain.get("partner_id"):  # which agency gets a claim is routing policy, not the client's choice
        found.append(Finding(code=codes.INVALID_VALUE, field="partner_id",
                             message="partner_id is chosen by the gateway's routing and cannot be set"))
    try:
        claim = msgspec.convert({**plain, "client_id": client_id}, Claim)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at `$.")
        return Draft(reference=reference, claim=None,
                     findings=[*found, Finding(code=codes.TYPE_ERROR, message=message,
                                               field=where.rstrip("`") or None)])
    return Draft(reference=reference, claim=None if found else claim, findings=found, uploads=uploads)


def finding(f: Finding) -> t.Finding:
    return t.Finding(code=f.code, severity=f.severity.value, field=f.field, message=f.message)


def money(minor: int, currency: str) -> Any:
    return from_minor(minor, currency)


def claim_data(claim: Claim) -> t.ClaimData:
    data: t.ClaimData = from_struct(t.ClaimData, claim)
    data.total_open_amount = claim.total_open_amount
    return data
