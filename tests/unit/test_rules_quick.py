"""The quick paths of the rules, the size limits and the limitation rule give exactly the findings of the full
rule set (codes, fields, messages, client messages, severities, order) on every claim, valid or not.

A table of changes, each breaking or just touching one rule, one size limit or one condition the quick path
tests (and its boundary), is applied one at a time and then several at random to a demo-like valid claim,
checked against several days and limitation policies.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from gateway.domain.findings import Finding
from gateway.domain.limitation import (STATUTORY, LimitationPolicy, Period, limitation_findings, limitation_in_full,
                                       plainly_not_near)
from gateway.domain.limits import size_findings, sizes_fit, sizes_in_full
from gateway.domain.model import (Address, BankAccount, Claim, Debtor, DebtorKind, Document, Fee, FeeKind, Interest,
                                  InterestKind, Invoice, Payment)
from gateway.domain.rules import _quick_findings, all_rules, check_claim, validate_claim

TODAYS = [date(2025, 6, 1), date(2026, 11, 30), date(2028, 2, 29), date(2025, 12, 31), date(2026, 1, 1),
          date(2025, 3, 1)]
POLICIES = [STATUTORY, LimitationPolicy(enabled=False), LimitationPolicy(years=0, months=6),
            LimitationPolicy(start="arose"), LimitationPolicy(warn_months=0), LimitationPolicy(warn_months=24),
            LimitationPolicy(by_label={"loan": Period(years=10), "short": Period(years=0, months=6)})]


def base() -> Claim:
    """A claim as the demo mapping makes one: valid, one dunning fee, one address, e-mail and IBAN."""
    debtor = Debtor(first_name="Jürgen", last_name="Müller", birth_date=date(1950, 1, 1), customer_number="K-000000",
                    addresses=[Address(street="Hauptstraße", house_number="1", postal_code="10115", city="Berlin")],
                    emails=["kunde0@example.de"], bank_accounts=[BankAccount(iban="DE58370400440347712782")])
    return Claim(client_id="demo", creditor_reference="RE-00000000", principal_amount=Decimal("3583.48"),
                 debtor=debtor, invoice_number="RE-00000000", invoice_date=date(2025, 1, 1),
                 due_date=date(2025, 2, 1), last_dunning_date=date(2025, 3, 1), memo="Beitrag",
                 fees=[Fee(kind=FeeKind.DUNNING, amount=Decimal("5.00"), date=date(2025, 3, 1))])


Change = Callable[[Claim], Claim]


def c(**kw: Any) -> Change:
    return lambda claim: msgspec.structs.replace(claim, **kw)


def d(**kw: Any) -> Change:
    return lambda claim: msgspec.structs.replace(claim, debtor=msgspec.structs.replace(claim.debtor, **kw))


def addr(**kw: Any) -> Change:
    return lambda claim: msgspec.structs.replace(claim, debtor=msgspec.structs.replace(
        claim.debtor, addresses=[msgspec.structs.replace(a, **kw) for a in claim.debtor.addresses]))


def account(**kw: Any) -> Change:
    return lambda claim: msgspec.structs.replace(claim, debtor=msgspec.structs.replace(
        claim.debtor, bank_accounts=[msgspec.structs.replace(a, **kw) for a in claim.debtor.bank_accounts]))


def fee(amount: str, description: str | None = None) -> Fee:
    return Fee(kind=FeeKind.DUNNING, amount=Decimal(amount), description=description)


def pay(amount: str, day: date) -> Payment:
    return Payment(amount=Decimal(amount), date=day)


X = "x"
CHANGES: dict[str, Change] = {
    # the claim's own fields
    "reference empty": c(creditor_reference=""), "reference blank": c(creditor_reference=" \t"),
    "reference 128": c(creditor_reference=X * 128), "reference 129": c(creditor_reference=X * 129),
    "invoice number 129": c(invoice_number=X * 129), "invoice number none": c(invoice_number=None),
    "memo 2000": c(memo=X * 2000), "memo 2001": c(memo=X * 2001), "memo none": c(memo=None),
    "reason 500": c(reason=X * 500), "reason 501": c(reason=X * 501),
    "partner 64": c(partner_id=X * 64), "partner 65": c(partner_id=X * 65),
    "currency bad": c(currency="EURO"), "currency lower": c(currency="eur"), "currency USD": c(currency="USD"),
    "currency JPY": c(currency="JPY"), "currency JPY whole": c(currency="JPY", principal_amount=Decimal("3583"),
                                                             fees=[]),
    "currency BHD": c(currency="BHD", principal_amount=Decimal("1.234")),
    "principal 0": c(principal_amount=Decimal("0")), "principal -1": c(principal_amount=Decimal("-1.00")),
    "principal -0": c(principal_amount=Decimal("-0")), "principal NaN": c(principal_amount=Decimal("NaN")),
    "principal inf": c(principal_amount=Decimal("Infinity")),
    "principal 3 places": c(principal_amount=Decimal("1.234")),
    "principal 1.230": c(principal_amount=Decimal("1.230")), "principal 1E+2": c(principal_amount=Decimal("1E+2")),
    "principal whole": c(principal_amount=Decimal("100")), "principal 0.5": c(principal_amount=Decimal("0.5")),
    "principal tiny": c(principal_amount=Decimal("0.01")),
    "no fees": c(fees=[]), "fee 0": c(fees=[fee("0")]), "fee -5": c(fees=[fee("-5.00")]),
    "fee 3 places": c(fees=[fee("5.001")]), "fee NaN": c(fees=[fee("NaN")]), "two fees": c(fees=[fee("1"), fee("2.5")]),
    "fee description 200": c(fees=[fee("5", X * 200)]), "fee description 201": c(fees=[fee("5", X * 201)]),
    "100 fees": c(fees=[fee("1")] * 100), "101 fees": c(fees=[fee("1")] * 101),
    "payment": c(payments_received=[pay("10.00", date(2025, 4, 1))]),
    "payment covers": c(payments_received=[pay("3588.48", date(2025, 4, 1))]),
    "payment over": c(payments_received=[pay("4000", date(2025, 4, 1)), pay("0", date(2030, 1, 1))]),
    "payment future": c(payments_received=[pay("1.00", date(2031, 1, 1))]),
    "payment today 2025": c(payments_received=[pay("1.00", date(2025, 6, 1))]),
    "payment 3 places": c(payments_received=[pay("1.001", date(2025, 4, 1))]),
    "payment 0": c(payments_received=[pay("0", date(2025, 4, 1))]),
    "payments leave a cent": c(payments_received=[pay("3000", date(2025, 4, 1)), pay("588.47", date(2025, 5, 1))]),
    "payments cover exactly": c(payments_received=[pay("3000", date(2025, 4, 1)), pay("588.48", date(2025, 5, 1))]),
    "1000 payments": c(payments_received=[pay("0.01", date(2025, 4, 1))] * 1000),
    "1001 payments": c(payments_received=[pay("0.01", date(2025, 4, 1))] * 1001),
    "interest fixed no rate": c(interest=Interest(kind=InterestKind.FIXED, from_date=date(2025, 2, 1))),
    "interest fixed": c(interest=Interest(kind=InterestKind.FIXED, from_date=date(2025, 2, 1), rate=Decimal("5"))),
    "interest statutory": c(interest=Interest(kind=InterestKind.STATUTORY_B2C, from_date=date(2025, 2, 1))),
    "due future": c(due_date=date(2030, 1, 1)), "due before invoice": c(due_date=date(2024, 12, 31)),
    "due = invoice": c(due_date=date(2025, 1, 1)), "due none": c(due_date=None), "invoice none": c(invoice_date=None),
    "no dates": c(due_date=None, invoice_date=None), "invoice future": c(invoice_date=date(2030, 1, 1)),
    "invoice future, no due date": c(due_date=None, invoice_date=date(2030, 1, 1)),
    "due 2028-02-29": c(due_date=date(2028, 2, 29)), "due today 2025-06-01": c(due_date=date(2025, 6, 1)),
    "old due": c(due_date=date(2021, 2, 1), invoice_date=date(2021, 1, 1)),
    "due 2022": c(due_date=date(2022, 3, 1), invoice_date=date(2022, 2, 1)),
    "due 2023": c(due_date=date(2023, 3, 1), invoice_date=date(2023, 2, 1)),
    "contract future": c(contract_date=date(2030, 1, 1)), "contract past": c(contract_date=date(2020, 1, 1)),
    "first dunning future": c(first_dunning_date=date(2030, 1, 1)),
    "last dunning future": c(last_dunning_date=date(2030, 1, 1)), "default future": c(default_date=date(2030, 1, 1)),
    "default past": c(default_date=date(2025, 4, 1)),
    "labels": c(labels=["loan"]), "label short period": c(labels=["x", "short"]),
    "label other": c(labels=["a", "b"]), "label 64": c(labels=[X * 64]),
    "label 65": c(labels=[X * 65]), "51 labels": c(labels=["a"] * 51),
    "invoices": c(invoices=[Invoice(amount=Decimal("1"), number=X * 129)]),
    "invoices ok": c(invoices=[Invoice(amount=Decimal("1"), number="A")]),
    "invoice description 201": c(invoices=[Invoice(amount=Decimal("1"), description=X * 201)]),
    "payment reference 128": c(payments_received=[Payment(amount=Decimal("1"), date=date(2025, 4, 1),
                                                          reference=X * 128)]),
    "payment reference 129": c(payments_received=[Payment(amount=Decimal("1"), date=date(2025, 4, 1),
                                                          reference=X * 129)]),
    "document media type 129": c(documents=[Document(name="a.pdf", media_type=X * 129, sha256="0" * 64)]),
    "document ok": c(documents=[Document(name="a.pdf", media_type="application/pdf", sha256="0" * 64)]),
    "documents": c(documents=[Document(name=X * 256, media_type="application/pdf", sha256="0" * 64)]),
    # limitation inputs
    "acknowledged": c(acknowledgement_date=date(2025, 5, 1)), "ack future": c(acknowledgement_date=date(2031, 1, 1)),
    "last payment": c(last_payment_date=date(2024, 5, 1)),
    "dunning order": c(dunning_order_date=date(2025, 4, 1)),
    "dunning order ended": c(dunning_order_date=date(2025, 4, 1), dunning_order_end_date=date(2025, 5, 1)),
    "dunning end alone": c(dunning_order_end_date=date(2025, 5, 1)),
    "dunning end first": c(dunning_order_date=date(2025, 5, 1), dunning_order_end_date=date(2025, 4, 1)),
    "negotiations": c(negotiation_start_date=date(2025, 4, 1), negotiation_end_date=date(2025, 5, 1)),
    "negotiation end alone": c(negotiation_end_date=date(2025, 5, 1)),
    # the debtor
    "business": d(kind=DebtorKind.BUSINESS, company="Muster GmbH"),
    "business no company": d(kind=DebtorKind.BUSINESS, company=None),
    "business no birth": d(kind=DebtorKind.BUSINESS, company="Muster GmbH", birth_date=None),
    "business born future": d(kind=DebtorKind.BUSINESS, company="M", birth_date=date(2031, 1, 1)),
    "business young": d(kind=DebtorKind.BUSINESS, company="M", birth_date=date(2020, 1, 1)),
    "no last name": d(last_name=None), "empty last name": d(last_name=""), "no first name": d(first_name=None),
    "empty first name": d(first_name=""),
    "no birth, minor boundary": d(birth_date=None, first_name=""),
    "no birth": d(birth_date=None), "no first name no birth": d(first_name=None, birth_date=None),
    "born future": d(birth_date=date(2031, 1, 1)), "minor": d(birth_date=date(2015, 6, 1)),
    "minor represented": d(birth_date=date(2015, 6, 1), representative="Eltern"),
    "18 today 2025": d(birth_date=date(2007, 6, 1)), "18 tomorrow 2025": d(birth_date=date(2007, 6, 2)),
    "born 2008-02-29": d(birth_date=date(2008, 2, 29)), "born 2010-02-28": d(birth_date=date(2010, 2, 28)),
    "born 2008-01-01": d(birth_date=date(2008, 1, 1)), "born 2007-12-31": d(birth_date=date(2007, 12, 31)),
    "title 50": d(title=X * 50), "title 51": d(title=X * 51), "first 101": d(first_name=X * 101),
    "last 100": d(last_name=X * 100), "last 101": d(last_name=X * 101), "company 201": d(company=X * 201),
    "company 60": d(company=X * 60), "legal form 51": d(legal_form=X * 51),
    "representative 201": d(representative=X * 201), "contact 201": d(contact_person=X * 201),
    "customer 64": d(customer_number=X * 64), "customer 65": d(customer_number=X * 65),
    "no address": d(addresses=[]), "no address no mail": d(addresses=[], emails=[]),
    "no contact but phone": d(addresses=[], emails=[], phones=["0301234"]),
    "two addresses": d(addresses=[Address(street="A", postal_code="12345", city="B"),
                                  Address(street=None, postal_code="1", city="C", country="AT")]),
    "10 addresses": d(addresses=[Address(street="A", postal_code="12345", city="B")] * 10),
    "11 addresses": d(addresses=[Address(street="A", postal_code="12345", city="B")] * 11),
    "no street": addr(street=None), "empty city": addr(city=""), "no postal code": addr(postal_code=None),
    "nothing": addr(street=None, postal_code=None, city=None),
    "plz 4": addr(postal_code="1011"), "plz 6": addr(postal_code="101150"), "plz letters": addr(postal_code="1011a"),
    "plz newline": addr(postal_code="10115\n"), "plz arabic": addr(postal_code="١٠١١٥"),
    "plz superscript": addr(postal_code="1011²"),
    "AT": addr(country="AT", postal_code="1010"), "AT long plz": addr(country="AT", postal_code="1" * 21),
    "AT plz 20": addr(country="AT", postal_code="1" * 20), "country XX": addr(country="XX"),
    "country lower": addr(country="de"), "street 200": addr(street=X * 200), "street 201": addr(street=X * 201),
    "house 20": addr(house_number=X * 20), "house 21": addr(house_number=X * 21), "city 101": addr(city=X * 101),
    "extra 201": addr(address_extra=X * 201), "extra": addr(address_extra="Hinterhaus"),
    "email bad": d(emails=["kunde0@example"]), "email space": d(emails=["kunde 0@example.de"]),
    "email newline": d(emails=["kunde0@example.de\n"]), "email 254": d(emails=[X * 242 + "@example.de"]),
    "email 255": d(emails=[X * 243 + "@example.de"]), "no email": d(emails=[]),
    "two emails": d(emails=["a@b.de", "nope"]), "11 emails": d(emails=["a@b.de"] * 11),
    "10 emails": d(emails=["a@b.de"] * 10),
    "phone": d(phones=["030 1234567"]), "phone 41": d(phones=["1" * 41]), "11 phones": d(phones=["1"] * 11),
    "iban bad sum": account(iban="DE58370400440347712783"), "iban spaced": account(iban="de58 3704 0044 0347 7127 82"),
    "iban short": account(iban="DE5837040044034771278"), "iban GB": account(iban="GB82WEST12345698765432"),
    "iban GB bad": account(iban="GB82WEST12345698765433"), "iban junk": account(iban="XX"),
    "iban unknown country": account(iban="QQ12345678901234567"), "iban digits": account(iban="DE5837040044034771278²"),
    "bic 11": account(bic="COBADEFFXXX"), "bic 12": account(bic="COBADEFFXXXX"), "holder 201": account(holder=X * 201),
    "no account": d(bank_accounts=[]),
    "11 accounts": d(bank_accounts=[BankAccount(iban="DE58370400440347712782")] * 11),
}


def _both(claim: Claim, today: date, policy: LimitationPolicy) -> None:
    full = all_rules(claim, today)
    assert size_findings(claim) == sizes_in_full(claim)
    assert validate_claim(claim, today) == full
    timely = limitation_in_full(claim, today, policy)
    assert limitation_findings(claim, today, policy) == timely
    assert check_claim(claim, today, policy) == [*full, *timely]


def _try(claim: Claim, today: date, policy: LimitationPolicy) -> None:
    try:
        _both(claim, today, policy)
    except AssertionError:
        raise
    except Exception as exc:  # the full rules raise on this claim: the quick paths must raise the same
        with pytest.raises(type(exc)):
            validate_claim(claim, today)
        with pytest.raises(type(exc)):
            check_claim(claim, today, policy)


def test_the_demo_claim_takes_the_quick_paths() -> None:
    claim = base()
    for today in TODAYS:
        assert _quick_findings(claim, today) == validate_claim(claim, today) == all_rules(claim, today) == []
        assert sizes_fit(claim)
    assert plainly_not_near(claim, date(2025, 6, 1), STATUTORY)
    no_birth_date = CHANGES["no birth"](claim)
    assert _quick_findings(no_birth_date, date(2025, 6, 1)) == all_rules(no_birth_date, date(2025, 6, 1)) != []
    assert check_claim(claim, date(2025, 6, 1)) == []


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_each_change_alone(name: str) -> None:
    claim = CHANGES[name](base())
    for today in TODAYS:
        for policy in POLICIES:
            _try(claim, today, policy)


def test_every_change_finds_something_somewhere_or_is_meant_to_pass() -> None:
    """The table reaches the rules: most changes give a finding on some day (the rest are boundaries)."""
    def finds(claim: Claim, today: date, policy: LimitationPolicy) -> bool:
        try:
            return bool(check_claim(claim, today, policy))
        except ArithmeticError:  # a NaN amount: the full rules raise (and so does the quick path)
            return True

    found = {name for name, change in CHANGES.items()
             if any(finds(change(base()), today, policy) for today in TODAYS for policy in POLICIES)}
    assert len(found) >= len(CHANGES) * 2 // 3


def test_random_combinations() -> None:
    rnd = random.Random(15)
    names = sorted(CHANGES)
    quick = 0
    for _ in range(3000):
        claim = base()
        for name in rnd.sample(names, rnd.choice((0, 1, 1, 2, 2, 3, 4))):
            claim = CHANGES[name](claim)
        today = rnd.choice(TODAYS) + timedelta(days=rnd.randrange(-400, 400))
        policy = rnd.choice(POLICIES)
        _try(claim, today, policy)
        try:
            quick += _quick_findings(claim, today) is not None and plainly_not_near(claim, today, policy)
        except ArithmeticError:
            pass
    assert quick > 300  # both quick paths were taken, and agreed, many times


def test_quick_limitation_across_years_and_days() -> None:
    """``plainly_not_near`` against the full rule for due dates around every year's end and window edge, with
    part payments (restarts) before, in and after the period."""
    rnd = random.Random(7)
    for _ in range(3000):
        today = date(2024, 1, 1) + timedelta(days=rnd.randrange(0, 3 * 366))
        due = today - timedelta(days=rnd.randrange(0, 8 * 366))
        paid = [pay("1.00", due + timedelta(days=rnd.randrange(-100, 5 * 366)))
                for _ in range(rnd.choice((0, 0, 1, 2)))]
        claim = msgspec.structs.replace(base(), due_date=due, invoice_date=due - timedelta(days=14),
                                        last_dunning_date=None, payments_received=paid)
        policy = rnd.choice(POLICIES)
        assert limitation_findings(claim, today, policy) == limitation_in_full(claim, today, policy)


def _finding_text(found: list[Finding]) -> list[tuple[Any, ...]]:
    return [(f.code, f.field, f.message, f.client_message, f.severity) for f in found]


def test_a_change_after_a_quick_pass_is_seen() -> None:
    """Nothing is remembered per claim: the same object changed in place is judged again."""
    claim = base()
    assert validate_claim(claim, date(2025, 6, 1)) == []
    claim.debtor.bank_accounts[0].iban = "DE58370400440347712783"
    assert _finding_text(validate_claim(claim, date(2025, 6, 1))) == [
        ("invalid_iban", "debtor.bank_accounts[0].iban", "IBAN has a wrong check sum (typo?)", None, "error")]


LETTERS = {ord(c): str(ord(c) - 55) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}  # ISO 13616: A=10 ... Z=35


def _iban_problem_reference(value: str) -> str | None:
    """The IBAN check as it was before its quick path: normalise, shape, length, checksum by translate."""
    import re

    from gateway.domain.iban import _LENGTHS

    iban = "".join(value.split()).upper()
    if not re.match(r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$", iban):
        return "is not shaped like an IBAN (country code, 2 check digits, account)"
    expected = _LENGTHS.get(iban[:2])
    if expected is not None and len(iban) != expected:
        return f"has {len(iban)} characters, {iban[:2]} IBANs have {expected}"
    if int((iban[4:] + iban[:4]).translate(LETTERS)) % 97 != 1:
        return "has a wrong check sum (typo?)"
    return None


def test_iban_quick_path_agrees_with_the_translate_check() -> None:
    from gateway.domain.iban import iban_problem

    rnd = random.Random(97)
    countries = ["DE", "AT", "GB", "NL", "FR", "QQ", "XK", "NO"]
    for _ in range(5000):
        country = rnd.choice(countries)
        length = rnd.choice((15, 18, 20, 22, 24, 27, 34, 35))
        alphabet = "0123456789" if rnd.random() < 0.7 else "0123456789ABCZ"
        account = "".join(rnd.choice(alphabet) for _ in range(length - 4))
        number = int((account + country + "00").translate(LETTERS))
        check = 98 - number % 97 if rnd.random() < 0.8 else rnd.randrange(100)
        value = f"{country}{check:02d}{account}"
        value = rnd.choice((value, value.lower(), " ".join(value[i:i + 4] for i in range(0, len(value), 4)),
                            value + "\n", value[:-1] + "²"))
        assert iban_problem(value) == _iban_problem_reference(value), value


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_totals_keep_their_digits(name: str) -> None:
    """Totals are added in the order and from the zero ``sum`` used: the same value with the same exponent."""
    claim = CHANGES[name](base())
    fees = sum((f.amount for f in claim.fees), Decimal(0))
    paid = sum((p.amount for p in claim.payments_received), Decimal(0))
    assert str(claim.fees_total) == str(fees) and str(claim.payments_total) == str(paid)
    expected = claim.principal_amount if not claim.fees and not claim.payments_received else (
        claim.principal_amount + fees - paid)
    assert str(claim.total_open_amount) == str(expected)


def test_totals_of_unusual_amounts() -> None:
    claim = msgspec.structs.replace(base(), principal_amount=Decimal("1E+2"), fees=[fee("5E+1"), fee("0.10")],
                                    payments_received=[pay("-0", date(2025, 4, 1))])
    assert str(claim.total_open_amount) == str(Decimal("1E+2") + (Decimal(0) + Decimal("5E+1") + Decimal("0.10"))
                                               - (Decimal(0) + Decimal("-0")))
