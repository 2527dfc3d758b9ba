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
    """A ``too_long`` finding for each text over its limit, ``too_many`` for each list over its count."""
    if sizes_fit(claim):
        return []
    return sizes_in_full(claim)


_REFERENCE, _INVOICE_NUMBER, _MEMO = CLAIM_TEXT["creditor_reference"], CLAIM_TEXT["invoice_number"], CLAIM_TEXT["memo"]
_REASON, _PARTNER = CLAIM_TEXT["reason"], CLAIM_TEXT["partner_id"]
_FIRST_NAME, _LAST_NAME = DEBTOR_TEXT["first_name"], DEBTOR_TEXT["last_name"]
_COMPANY, _CUSTOMER = DEBTOR_TEXT["company"], DEBTOR_TEXT["customer_number"]
_DEBTOR_LIMITS = tuple(DEBTOR_TEXT.values())
_STREET, _HOUSE, _CITY = ADDRESS_TEXT["street"], ADDRESS_TEXT["house_number"], ADDRESS_TEXT["city"]
_POSTCODE, _EXTRA = ADDRESS_TEXT["postal_code"], ADDRESS_TEXT["address_extra"]
_BIC, _HOLDER = BANK_TEXT["bic"], BANK_TEXT["holder"]
_MAX_FEES, _MAX_LABELS = MAX_COUNT["fees"], MAX_COUNT["labels"]
_MAX_ADDRESSES, _MAX_EMAILS = MAX_COUNT["debtor.addresses"], MAX_COUNT["debtor.emails"]
_MAX_PHONES, _MAX_ACCOUNTS = MAX_COUNT["debtor.phones"], MAX_COUNT["debtor.bank_accounts"]


def sizes_fit(claim: Claim) -> bool:
    """True only if ``size_findings`` finds nothing (False: it has to look field by field).

    On the ingest hot path (every row): plain attribute reads and length comparisons, the fields most
    claims leave empty tested as a group first; ``sizes_in_full`` builds the findings where one does not fit.
    """
    reference, number, memo = claim.creditor_reference, claim.invoice_number, claim.memo
    if (len(reference) > _REFERENCE or (number is not None and len(number) > _INVOICE_NUMBER)
            or (memo is not None and len(memo) > _MEMO)):
        return False
    fees = claim.fees
    if fees:
        if len(fees) > _MAX_FEES:
            return False
        for fee in fees:
            if fee.description is not None and len(fee.description) > FEE_DESCRIPTION:
                return False
    if ((claim.payments_received or claim.invoices or claim.documents or claim.labels or claim.reason is not None
         or claim.partner_id is not None) and not _rare_fit(claim)):
        return False
    debtor = claim.debtor
    first, last, company, customer = debtor.first_name, debtor.last_name, debtor.company, debtor.customer_number
    if (debtor.title is not None or debtor.legal_form is not None or debtor.representative is not None
            or debtor.contact_person is not None):
        for text, limit in zip(_DEBTOR[1](debtor), _DEBTOR_LIMITS):
            if text is not None and len(text) > limit:
                return False
    elif ((first is not None and len(first) > _FIRST_NAME) or (last is not None and len(last) > _LAST_NAME)
          or (company is not None and len(company) > _COMPANY)
          or (customer is not None and len(customer) > _CUSTOMER)):
        return False
    addresses, emails, phones, accounts = debtor.addresses, debtor.emails, debtor.phones, debtor.bank_accounts
    if (len(addresses) > _MAX_ADDRESSES or len(emails) > _MAX_EMAILS or len(phones) > _MAX_PHONES
            or len(accounts) > _MAX_ACCOUNTS):
        return False
    for addr in addresses:
        street, code, city = addr.street, addr.postal_code, addr.city
        house, extra = addr.house_number, addr.address_extra
        if ((street is not None and len(street) > _STREET) or (code is not None and len(code) > _POSTCODE)
                or (city is not None and len(city) > _CITY) or (house is not None and len(house) > _HOUSE)
                or (extra is not None and len(extra) > _EXTRA)):
            return False
    for email in emails:
        if len(email) > EMAIL:
            return False
    for phone in phones:
        if len(phone) > PHONE:
            return False
    for account in accounts:
        bic, holder = account.bic, account.holder
        if (bic is not None and len(bic) > _BIC) or (holder is not None and len(holder) > _HOLDER):
            return False
    return True


def _rare_fit(claim: Claim) -> bool:
    reason, partner, labels = claim.reason, claim.partner_id, claim.labels
    if ((reason is not None and len(reason) > _REASON) or (partner is not None and len(partner) > _PARTNER)
            or len(labels) > _MAX_LABELS or len(claim.payments_received) > MAX_COUNT["payments_received"]
            or len(claim.invoices) > MAX_COUNT["invoices"] or len(claim.documents) > MAX_COUNT["documents"]):
        return False
    return (all(len(label) <= LABEL for label in labels)
            and all(p.reference is None or len(p.reference) <= PAYMENT_REFERENCE for p in claim.payments_received)
            and all((i.number is None or len(i.number) <= INVOICE_NUMBER)
                    and (i.description is None or len(i.description) <= INVOICE_DESCRIPTION) for i in claim.invoices)
            and all(len(d.name) <= DOCUMENT_NAME and len(d.media_type) <= DOCUMENT_MEDIA_TYPE
                    for d in claim.documents))


def sizes_in_full(claim: Claim) -> list[Finding]:
    """``size_findings`` without ``sizes_fit`` in front: every text and list looked at and reported."""
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
