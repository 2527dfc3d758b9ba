"""Business rules on a canonical claim: pure functions from a claim to findings.

Each rule names a stable code and the canonical field it is about; the mapping layer adds
where the value came from. No I/O: ``today`` is passed in, so rules are testable for any date.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from decimal import Decimal

from gateway.domain import findings as f
from gateway.domain.countries import COUNTRIES, CURRENCIES
from gateway.domain.findings import Finding, Severity
from gateway.domain.iban import iban_problem
from gateway.domain.limitation import STATUTORY, LimitationPolicy, limitation_in_full, plainly_not_near
from gateway.domain.limits import size_findings, sizes_fit
from gateway.domain.model import Claim, Debtor, DebtorKind, minor_digits

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DE_POSTCODE = re.compile(r"^[0-9]{5}$")
_PAST_DATES = ("contract_date", "invoice_date", "first_dunning_date", "last_dunning_date", "default_date")
# No collection claim comes near a billion; the bound keeps every amount, and the sums of a claim and of a
# whole file, inside the 64-bit minor units the store keeps (a 25-digit amount crashed the ingest with
# OverflowError in the INSERT instead of rejecting its row).
MAX_AMOUNT = Decimal("999999999.999")


def validate_claim(claim: Claim, today: date) -> list[Finding]:
    """Every rule failure of a claim, in a stable order."""
    found = _quick_findings(claim, today)
    return all_rules(claim, today) if found is None else found


def all_rules(claim: Claim, today: date) -> list[Finding]:
    """``validate_claim`` without its quick path: every rule run (what it must always agree with)."""
    return [*_claim_rules(claim, today), *_debtor_rules(claim.debtor, today), *size_findings(claim)]


def check_claim(claim: Claim, today: date, policy: LimitationPolicy = STATUTORY) -> list[Finding]:
    """``validate_claim`` and then ``limitation_findings``: the same findings in the same order, in one call."""
    found = _quick_findings(claim, today)
    if found is None:
        found = all_rules(claim, today)
    if plainly_not_near(claim, today, policy):
        return found
    return [*found, *limitation_in_full(claim, today, policy)]


def age_on(birth_date: date, day: date) -> int:
    """Full years of age on ``day``."""
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))


def _err(code: str, field: str, message: str, severity: Severity = Severity.ERROR, *,
         client_message: str | None = None) -> Finding:
    """``message`` names no value (it is stored); ``client_message`` may, for the client's ack."""
    return Finding(code=code, field=field, message=message, severity=severity, client_message=client_message)


def _claim_rules(claim: Claim, today: date) -> Iterator[Finding]:
    if not claim.creditor_reference.strip():
        yield _err(f.MISSING_FIELD, "creditor_reference", "the claim has no reference")
    if claim.currency not in CURRENCIES:
        yield _err(f.INVALID_CURRENCY, "currency", "is not an ISO 4217 currency code",
                   client_message=f"'{claim.currency[:20]}' is not an ISO 4217 currency code")
    digits = minor_digits(claim.currency)
    yield from _amount("principal_amount", claim.principal_amount, digits)
    for i, fee in enumerate(claim.fees):
        yield from _amount(f"fees[{i}].amount", fee.amount, digits)
    for i, pay in enumerate(claim.payments_received):
        yield from _amount(f"payments_received[{i}].amount", pay.amount, digits)
        if pay.date > today:
            yield _err(f.DATE_IN_FUTURE, f"payments_received[{i}].date", "the payment date is in the future",
                       client_message=f"payment date {pay.date} is in the future")
    amounts = [claim.principal_amount, *(x.amount for x in claim.fees), *(p.amount for p in claim.payments_received)]
    # a NaN is a finding above; comparing one raises (Decimal's InvalidOperation), so the sum is not checked then
    if all(a.is_finite() for a in amounts) and claim.principal_amount > 0 and claim.total_open_amount <= 0:
        yield _err(f.NOTHING_OPEN, "total_open_amount",
                   "nothing is open: the payments received cover the claim",
                   client_message=f"nothing is open: payments of {claim.payments_total} cover the claim")
    for name in _PAST_DATES:
        value: date | None = getattr(claim, name)
        if value is not None and value > today:
            yield _err(f.DATE_IN_FUTURE, name, f"the {name.replace('_', ' ')} is in the future",
                       client_message=f"{name.replace('_', ' ')} {value} is in the future")
    if claim.due_date and claim.invoice_date and claim.due_date < claim.invoice_date:
        yield _err(f.DATE_ORDER, "due_date",
                   "the due date is before the invoice date", Severity.WARNING,
                   client_message=f"due date {claim.due_date} is before invoice date {claim.invoice_date}")
    if claim.due_date and claim.due_date > today:
        yield _err(f.DATE_IN_FUTURE, "due_date", "the claim is not due yet",
                   client_message=f"the claim is not due yet (due {claim.due_date})")
    if claim.interest and claim.interest.kind.value == "fixed" and claim.interest.rate is None:
        yield _err(f.MISSING_FIELD, "interest.rate", "a fixed interest needs a rate")


def _amount(field: str, amount: Decimal, digits: int) -> Iterator[Finding]:
    if not amount.is_finite():
        yield _err(f.INVALID_AMOUNT, field, "is not an amount", client_message=f"{amount} is not an amount")
        return
    if amount <= 0:
        yield _err(f.AMOUNT_NOT_POSITIVE, field, "amount must be greater than 0",
                   client_message=f"amount must be greater than 0, got {amount}")
    elif amount > MAX_AMOUNT:
        yield _err(f.INVALID_AMOUNT, field, "the amount is a billion or more: not a claim the gateway takes",
                   client_message=f"{amount} is a billion or more: not a claim the gateway takes")
        return
    if -amount.as_tuple().exponent > digits:  # type: ignore[operator]
        yield _err(f.INVALID_AMOUNT, field, f"the amount has more than {digits} decimal places",
                   client_message=f"{amount} has more than {digits} decimal places")


def _debtor_rules(debtor: Debtor, today: date) -> Iterator[Finding]:
    if debtor.kind is DebtorKind.BUSINESS:
        if not debtor.company:
            yield _err(f.MISSING_FIELD, "debtor.company", "a business debtor needs a company name")
    else:
        if not debtor.last_name:
            yield _err(f.MISSING_FIELD, "debtor.last_name", "a consumer debtor needs a last name")
        incomplete = _consumer_incomplete(debtor)
        if incomplete is not None:
            yield incomplete
    if debtor.birth_date is not None:
        if debtor.birth_date > today:
            yield _err(f.DATE_IN_FUTURE, "debtor.birth_date", "the birth date is in the future",
                       client_message=f"birth date {debtor.birth_date} is in the future")
        elif (debtor.kind is DebtorKind.CONSUMER and age_on(debtor.birth_date, today) < 18
              and not debtor.representative):
            yield _err(f.DEBTOR_MINOR, "debtor.birth_date",
                       "the debtor is under 18 and no legal representative is named: held for review",
                       Severity.HOLD)
    yield from _contact_rules(debtor)
    for i, account in enumerate(debtor.bank_accounts):
        problem = iban_problem(account.iban)
        if problem:
            yield _err(f.INVALID_IBAN, f"debtor.bank_accounts[{i}].iban", f"IBAN {problem}")


def _consumer_incomplete(debtor: Debtor) -> Finding | None:
    missing = [n for n, v in (("first name", debtor.first_name), ("birth date", debtor.birth_date)) if not v]
    if not missing:
        return None
    return _err(f.CONSUMER_INCOMPLETE, "debtor.first_name" if not debtor.first_name else "debtor.birth_date",
                f"consumer without {' and '.join(missing)}: the partner may not identify the debtor",
                Severity.WARNING)


def _contact_rules(debtor: Debtor) -> Iterator[Finding]:
    usable = False
    for i, addr in enumerate(debtor.addresses):
        complete = bool(addr.street and addr.postal_code and addr.city)  # the common case, checked cheaply
        if not complete:
            for name in ("street", "postal_code", "city"):
                if not getattr(addr, name):
                    yield _err(f.MISSING_FIELD, f"debtor.addresses[{i}].{name}",
                               f"the address has no {name.replace('_', ' ')}")
        if addr.country == "DE":
            if addr.postal_code and not _DE_POSTCODE.match(addr.postal_code):
                yield _err(f.INVALID_VALUE, f"debtor.addresses[{i}].postal_code",
                           "a German postal code must have 5 digits",
                           client_message=f"German postal code '{addr.postal_code[:40]}' must have 5 digits")
        elif addr.country not in COUNTRIES:
            yield _err(f.INVALID_COUNTRY, f"debtor.addresses[{i}].country", "is not an ISO 3166 country code",
                       client_message=f"'{addr.country[:40]}' is not an ISO 3166 country code")
        usable = usable or complete
    for i, email in enumerate(debtor.emails):
        if not _EMAIL.match(email):
            yield _err(f.INVALID_VALUE, f"debtor.emails[{i}]", "is not an e-mail address",
                       client_message=f"'{email[:254]}' is not an e-mail address")
        else:
            usable = True
    if not usable and not debtor.addresses:
        yield _err(f.NO_CONTACT, "debtor.addresses", "the debtor needs a postal address or an e-mail address")


# The quick path. Every ingest row pays for the rules, and almost every row passes them all; running each
# rule as a generator that yields nothing, and the size limits field by field, cost ~10 us a row. The
# quick path tests conditions that imply that no rule finds anything, with plain attribute reads and
# comparisons, then ``sizes_fit``; where one does not hold, ``validate_claim`` runs the full rules, so the
# findings (and their order) never depend on it. It may only answer where its answer is the full rules'
# (tests/unit/test_rules_quick.py checks it against them on many claims, valid and not).
_CENTS_CURRENCIES = CURRENCIES - {c for c in CURRENCIES if minor_digits(c) != 2}
_CENT = Decimal("0.01")
_BUSINESS = DebtorKind.BUSINESS


def _cents(amount: Decimal) -> bool:
    """A finite amount above 0 and at most ``MAX_AMOUNT``, with at most 2 decimal places (as ``_amount`` sees it)."""
    if not amount.is_finite() or amount <= 0 or amount > MAX_AMOUNT:
        return False
    return amount.same_quantum(_CENT) or amount.as_tuple().exponent >= -2  # type: ignore[operator]


def _quick_findings(claim: Claim, today: date) -> list[Finding] | None:
    """What the rules and size limits find, for a claim plain enough to tell cheaply; None: run them in full.

    Nothing, or only the warning of a consumer without a first name or birth date (files without the
    column give it on every row).
    """
    interest = claim.interest
    if interest is not None and interest.kind.value == "fixed" and interest.rate is None:
        return None
    if (not claim.creditor_reference.strip() or claim.currency not in _CENTS_CURRENCIES
            or not _cents(claim.principal_amount)):
        return None
    for fee in claim.fees:
        if not _cents(fee.amount):
            return None
    payments = claim.payments_received
    if payments:
        for pay in payments:
            if not _cents(pay.amount) or pay.date > today:
                return None
        if claim.total_open_amount <= 0:
            return None
    # (Without payments every amount is above 0, and so is the total open.)
    due, invoiced, dunned = claim.due_date, claim.invoice_date, claim.last_dunning_date
    if ((due is not None and (due > today or (invoiced is not None and due < invoiced)))
            or (invoiced is not None and invoiced > today) or (dunned is not None and dunned > today)):
        return None
    contract, first_dunned, default = claim.contract_date, claim.first_dunning_date, claim.default_date
    if ((contract is not None and contract > today) or (first_dunned is not None and first_dunned > today)
            or (default is not None and default > today)):
        return None
    debtor = claim.debtor
    born = debtor.birth_date
    incomplete = None
    if debtor.kind is _BUSINESS:
        if not debtor.company or (born is not None and born > today):
            return None
    else:
        # A consumer born before the year 18 years ago is of age whatever the day.
        if not debtor.last_name or (born is not None and born.year >= today.year - 18):
            return None
        if born is None or not debtor.first_name:
            incomplete = _consumer_incomplete(debtor)
    addresses, emails = debtor.addresses, debtor.emails
    if not addresses and not emails:
        return None
    for addr in addresses:
        code = addr.postal_code
        if not addr.street or not code or not addr.city:
            return None
        if addr.country == "DE":
            if len(code) != 5 or not code.isascii() or not code.isdigit():
                return None
        elif addr.country not in COUNTRIES:
            return None
    for email in emails:
        if not _EMAIL.match(email):
            return None
    for account in debtor.bank_accounts:
        if iban_problem(account.iban) is not None:
            return None
    if not sizes_fit(claim):
        return None
    return [] if incomplete is None else [incomplete]
