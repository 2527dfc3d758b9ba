"""Size limits of the canonical claim: the longest text and the most entries each field may hold.

The text limits are the SOAP interface's (``schemas/gateway-soap-v1.wsdl``, ``maxLength``), so a
claim that arrives as a file is held to what a SOAP client is held to by the schema; the counts of
repeated fields bound what one claim may carry on every channel (the SOAP schema leaves them open).
Without them a 900,000-character last name was accepted from a file and handed to a partner.
Findings name the field, the length and the limit, never the value.
"""

from __future__ import annotations

import operator
from typing import Any

from gateway.domain.findings import TOO_LONG, TOO_MANY, Finding
from gateway.domain.model import Claim

CLAIM_TEXT = {"creditor_reference": 128, "invoice_number": 128, "reason": 500, "memo": 2000, "partner_id": 64}
DEBTOR_TEXT = {"title": 50, "first_name": 100, "last_name": 100, "company": 200, "legal_form": 50,
               "representative": 200, "contact_person": 200, "customer_number": 64}
ADDRESS_TEXT = {"street": 200, "house_number": 20, "postal_code": 20, "city": 100, "address_extra": 200}
BANK_TEXT = {"bic": 11, "holder": 200}  # the IBAN's length is checked by its own rule (invalid_iban)
EMAIL, PHONE, LABEL = 254, 40, 64
FEE_DESCRIPTION, PAYMENT_REFERENCE, INVOICE_NUMBER, INVOICE_DESCRIPTION = 200, 128, 128, 200
DOCUMENT_NAME, DOCUMENT_MEDIA_TYPE = 255, 128

MAX_COUNT = {"debtor.addresses": 10, "debtor.phones": 10, "debtor.emails": 10, "debtor.bank_accounts": 10,
             "fees": 100, "payments_received": 1000, "invoices": 1000, "labels": 50, "documents": 100}


_Spec = tuple[tuple[str, ...], Any, tuple[int, ...], int]


def _spec(limits: dict[str, int], prefix: str = "") -> _Spec:
    return (tuple(prefix + n for n in limits), operator.attrgetter(*limits), tuple(limits.values()),
            min(limits.values()))


_CLAIM, _DEBTOR, _ADDRESS, _BANK = _spec(CLAIM_TEXT), _spec(DEBTOR_TEXT, "debtor."), _spec(ADDRESS_TEXT), _spec(BANK_TEXT)


def _too_long(field: str, value: str, limit: int) -> Finding:
    return Finding(code=TOO_LONG, field=field,
                   message=f"the text has {len(value)} characters, at most {limit} are allowed")


def _texts(out: list[Finding], obj: object, spec: _Spec, prefix: str = "") -> None:
    names, get, limits, shortest = spec
    values = get(obj)
    if max(map(len, filter(None, values)), default=0) <= shortest:  # the common case, decided in C
        return
    for name, value, limit in zip(names, values, limits):
        if value is not None and len(value) > limit:
            out.append(_too_long(prefix + name, value, limit))


def _each(out: list[Finding], field: str, items: list[str], limit: int) -> None:
    if not items or max(map(len, items)) <= limit:
        return
    for i, value in enumerate(items[:MAX_COUNT[field]]):
        if len(value) > limit:
            out.append(_too_long(f"{field}[{i}]", value, limit))


def size_findings(claim: Claim) -> list[Finding]:
    """A ``too_long`` finding for each text over its limit, ``too_many`` for each list over its count.

    On the ingest hot path (every row): attribute tuples are fetched in one call each, a group whose
    longest text is under its shortest limit is passed in C, and nothing is built unless a limit is
    exceeded; it costs about as much as the other rules together (measured 0.9-1.0x of them).
    """
    out: list[Finding] = []
    debtor = claim.debtor
    _texts(out, claim, _CLAIM)
    _texts(out, debtor, _DEBTOR)
    for i, addr in enumerate(debtor.addresses[:MAX_COUNT["debtor.addresses"]]):
        _texts(out, addr, _ADDRESS, f"debtor.addresses[{i}].")
    for i, account in enumerate(debtor.bank_accounts[:MAX_COUNT["debtor.bank_accounts"]]):
        _texts(out, account, _BANK, f"debtor.bank_accounts[{i}].")
    _each(out, "debtor.emails", debtor.emails, EMAIL)
    _each(out, "debtor.phones", debtor.phones, PHONE)
    _each(out, "labels", claim.labels, LABEL)
    if claim.fees or claim.payments_received or claim.invoices or claim.documents:
        _rare(out, claim)
    if (len(debtor.addresses) <= 10 and len(debtor.phones) <= 10 and len(debtor.emails) <= 10
            and len(debtor.bank_accounts) <= 10 and len(claim.labels) <= 50 and not claim.fees
            and not claim.payments_received and not claim.invoices and not claim.documents):
        return out  # the common case: no list near its count
    for name, items in (("debtor.addresses", debtor.addresses), ("debtor.phones", debtor.phones),
                        ("debtor.emails", debtor.emails), ("debtor.bank_accounts", debtor.bank_accounts),
                        ("fees", claim.fees), ("payments_received", claim.payments_received),
                        ("invoices", claim.invoices), ("labels", claim.labels), ("documents", claim.documents)):
        if len(items) > MAX_COUNT[name]:
            out.append(Finding(code=TOO_MANY, field=name,
                               message=f"{len(items)} entries, at most {MAX_COUNT[name]} are allowed"))
    return out


def _rare(out: list[Finding], claim: Claim) -> None:
    checks: list[tuple[str, str | None, int]] = []
    checks += [(f"fees[{i}].description", f.description, FEE_DESCRIPTION)
               for i, f in enumerate(claim.fees[:MAX_COUNT["fees"]])]
    checks += [(f"payments_received[{i}].reference", p.reference, PAYMENT_REFERENCE)
               for i, p in enumerate(claim.payments_received[:MAX_COUNT["payments_received"]])]
    for i, inv in enumerate(claim.invoices[:MAX_COUNT["invoices"]]):
        checks += [(f"invoices[{i}].number", inv.number, INVOICE_NUMBER),
                   (f"invoices[{i}].description", inv.description, INVOICE_DESCRIPTION)]
    for i, doc in enumerate(claim.documents[:MAX_COUNT["documents"]]):
        checks += [(f"documents[{i}].name", doc.name, DOCUMENT_NAME),
                   (f"documents[{i}].media_type", doc.media_type, DOCUMENT_MEDIA_TYPE)]
    out.extend(_too_long(field, value, limit) for field, value, limit in checks
               if value is not None and len(value) > limit)
