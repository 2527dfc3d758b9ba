"""Size limits of the canonical claim: the longest text and the most entries each field may hold.

The text limits are the SOAP interface's (``schemas/gateway-soap-v1.wsdl``, ``maxLength``), so a
claim that arrives as a file is held to what a SOAP client is held to by the schema; the counts of
repeated fields bound what one claim may carry on every channel (the SOAP schema leaves them open).
Without them a 900,000-character last name was accepted from a file and handed to a partner.
Findings name the field, the length and the limit, never the value.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

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


def _text(field: str, value: str | None, limit: int) -> Iterator[Finding]:
    if value is not None and len(value) > limit:
        yield Finding(code=TOO_LONG, field=field,
                      message=f"the text has {len(value)} characters, at most {limit} are allowed")


def _count(field: str, items: Sequence[object]) -> Iterator[Finding]:
    limit = MAX_COUNT[field]
    if len(items) > limit:
        yield Finding(code=TOO_MANY, field=field, message=f"{len(items)} entries, at most {limit} are allowed")


def size_findings(claim: Claim) -> Iterator[Finding]:
    """A ``too_long`` finding for each text over its limit, ``too_many`` for each list over its count."""
    for name, limit in CLAIM_TEXT.items():
        yield from _text(name, getattr(claim, name), limit)
    debtor = claim.debtor
    for name, limit in DEBTOR_TEXT.items():
        yield from _text(f"debtor.{name}", getattr(debtor, name), limit)
    for i, addr in enumerate(debtor.addresses[:MAX_COUNT["debtor.addresses"]]):
        for name, limit in ADDRESS_TEXT.items():
            yield from _text(f"debtor.addresses[{i}].{name}", getattr(addr, name), limit)
    for i, account in enumerate(debtor.bank_accounts[:MAX_COUNT["debtor.bank_accounts"]]):
        for name, limit in BANK_TEXT.items():
            yield from _text(f"debtor.bank_accounts[{i}].{name}", getattr(account, name), limit)
    for i, email in enumerate(debtor.emails[:MAX_COUNT["debtor.emails"]]):
        yield from _text(f"debtor.emails[{i}]", email, EMAIL)
    for i, phone in enumerate(debtor.phones[:MAX_COUNT["debtor.phones"]]):
        yield from _text(f"debtor.phones[{i}]", phone, PHONE)
    for i, label in enumerate(claim.labels[:MAX_COUNT["labels"]]):
        yield from _text(f"labels[{i}]", label, LABEL)
    for i, fee in enumerate(claim.fees[:MAX_COUNT["fees"]]):
        yield from _text(f"fees[{i}].description", fee.description, FEE_DESCRIPTION)
    for i, pay in enumerate(claim.payments_received[:MAX_COUNT["payments_received"]]):
        yield from _text(f"payments_received[{i}].reference", pay.reference, PAYMENT_REFERENCE)
    for i, inv in enumerate(claim.invoices[:MAX_COUNT["invoices"]]):
        yield from _text(f"invoices[{i}].number", inv.number, INVOICE_NUMBER)
        yield from _text(f"invoices[{i}].description", inv.description, INVOICE_DESCRIPTION)
    for i, doc in enumerate(claim.documents[:MAX_COUNT["documents"]]):
        yield from _text(f"documents[{i}].name", doc.name, DOCUMENT_NAME)
        yield from _text(f"documents[{i}].media_type", doc.media_type, DOCUMENT_MEDIA_TYPE)
    lists: dict[str, Sequence[object]] = {
        "debtor.addresses": debtor.addresses, "debtor.phones": debtor.phones, "debtor.emails": debtor.emails,
        "debtor.bank_accounts": debtor.bank_accounts, "fees": claim.fees, "payments_received": claim.payments_received,
        "invoices": claim.invoices, "labels": claim.labels, "documents": claim.documents}
    for name, items in lists.items():
        yield from _count(name, items)
